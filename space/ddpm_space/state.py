"""The loaded model and what every tab reads from it (`Space`), and `bind`, which hands it to a tab's handlers."""

from __future__ import annotations

import functools
import inspect
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddpm_hub import DDIMHubScheduler, DDPMHubPipeline, DDPMHubScheduler
from ddpm_hub.data import load_mnist5k

MAX_BATCH = 16  # images per chain
MAX_COPIES = 8  # noise-then-denoise copies of one image
MAX_SEED = 2**31 - 1
STRIP_AT = (0, 50, 100, 200, 400, 600, 800, 999)  # timesteps of the strip, for T = 1000 (rescaled for other T)
UNCONDITIONAL = "any"
SAMPLERS = {  # value -> (label, scheduler class, variance_type)
    "ddpm-fixed_large": ("DDPM · σ²ₜ = βₜ", DDPMHubScheduler, "fixed_large"),
    "ddpm-fixed_small": ("DDPM · σ²ₜ = β̃ₜ", DDPMHubScheduler, "fixed_small"),
    "ddim": ("DDIM · σₜ = η√β̃ₜ", DDIMHubScheduler, None),
}


@dataclass
class Space:
    """The loaded pipeline and the values every tab reads. `scheduler` is the model's own schedule: only its
    formulas are used (never set_timesteps); each chain gets a scheduler of its own (`chains.start`). `engine` (an
    `engine.Engine`) runs every visitor's chains; `session_alive(session_hash)` says whether a visitor's page is
    still connected."""

    pipe: DDPMHubPipeline
    model_id: str
    model_name: str
    x0_pipe: DDPMHubPipeline | None = None  # a second model, trained to predict x_0 (question 3), if one is loaded
    x0_model_id: str | None = None
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ddpm_hub_space_")))
    engine: Any = None
    session_alive: Callable[[str], bool] | None = None

    def __post_init__(self) -> None:
        self.scheduler = self.pipe.scheduler
        self.T = self.scheduler.config.num_train_timesteps
        self.num_classes = self.pipe.num_classes  # None for an unconditional model
        self.channels = self.pipe.unet.config.in_channels
        self.resolution = self.pipe.unet.config.sample_size
        self.linear = DDPMHubScheduler.from_config(self.scheduler.config, beta_schedule="linear")
        self.cosine = DDPMHubScheduler.from_config(self.scheduler.config, beta_schedule="squaredcos_cap_v2")
        self.strip = sorted({min(self.T - 1, round(t * self.T / 1000)) for t in STRIP_AT})
        self.digits, self.digit_labels = load_mnist5k("held_out")  # (N, 1, 28, 28) in [-1, 1], (N,)
        self.schedule_name = {"linear": "linear", "squaredcos_cap_v2": "cosine"}.get(
            self.scheduler.config.beta_schedule, self.scheduler.config.beta_schedule
        )


def bind(space: Space, fn):
    """fn with `space` as its first argument, as Gradio should see it: the same name, docstring, signature (less
    `space`) and type hints (so a `request: gr.Request` parameter is filled in), a generator if fn is one."""
    if inspect.isgeneratorfunction(fn):

        def bound(*args, **kwargs):
            yield from fn(space, *args, **kwargs)  # closing `bound` closes fn's generator too
    else:

        def bound(*args, **kwargs):
            return fn(space, *args, **kwargs)

    functools.update_wrapper(bound, fn)
    signature = inspect.signature(fn)
    bound.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    return bound
