"""What the chain tabs share: `start`, the one place a chain is set up; the sampling engine (`engine.py`) that runs
it; its progress in words.

Every visitor's chains run in the one engine (shared U-Net calls); a visitor is a Gradio session. Stop cancels the
visitor's chains of one tab; a closed tab is noticed by `Space.session_alive`, a stream nobody reads by the engine.
"""

from __future__ import annotations

import math

import gradio as gr

from ddpm_hub import DDPMHubPipeline

from . import hosting
from .engine import Engine, EngineBusy, Progress, Queued, Ticket
from .inputs import as_sampler
from .state import SAMPLERS, Space

STREAMED_FRAMES = 100  # at most this many frames of a chain are pushed to the browser (plus the final one)


def new_scheduler(pipe: DDPMHubPipeline, sampler: str):
    """A scheduler of `sampler`'s class (`SAMPLERS`) on `pipe`'s own schedule, for one chain alone (so concurrent
    chains never share timesteps)."""
    _, scheduler_class, variance_type = SAMPLERS[as_sampler(sampler)]
    config = {key: value for key, value in pipe.scheduler.config.items() if key != "variance_type"}
    # variance_type as a keyword: inside `config`, diffusers' from_config would reset it to its default whenever the
    # model's own config left it at the default (its `_use_default_values` names it), so "σ² = β" ran β̃.
    overrides = {} if variance_type is None else {"variance_type": variance_type}
    return scheduler_class.from_config(config, **overrides)


def start(space: Space, sampler: str, guidance: float, pipe: DDPMHubPipeline | None = None, noised=None, **options):
    """Sets up one reverse chain for any tab: `pipe.prepare_chain` (default pipe: the Space's) with a scheduler of
    its own for this request (`new_scheduler`) and guidance w = `guidance`; with `noised=(images, t)`,
    `pipe.prepare_noise_then_denoise_chain` from those images noised to t. `options` are the library's chain
    options (batch_size, class_labels, num_inference_steps, generator, eta, latents, noise_scale, ...). Returns
    the `DenoisingChain`; the library's ValueErrors become a gr.Error."""
    pipe = pipe or space.pipe
    options.update(scheduler=new_scheduler(pipe, sampler), guidance_scale=guidance)
    try:
        if noised is not None:
            return pipe.prepare_noise_then_denoise_chain(*noised, **options)
        return pipe.prepare_chain(**options)
    except ValueError as err:
        raise gr.Error(str(err)) from None


def stream_every(num_steps: int) -> int:
    """Push every k-th step to the browser, so that a chain shows at most STREAMED_FRAMES frames (plus the last)."""
    return max(1, math.ceil(num_steps / STREAMED_FRAMES))


def owner(request: gr.Request | None) -> str:
    """The visitor: their Gradio session, or "local" for direct calls (tests, scripts)."""
    return getattr(request, "session_hash", None) or "local"


def submit_all(space: Space, chains: list, request: gr.Request | None, tag: str) -> list[Ticket]:
    """Queues `chains` (`DenoisingChain`s) together in the Space's engine for this visitor (they start at the same
    tick when there is room); refusals become a gr.Error."""
    visitor = owner(request)
    alive = None
    if space.session_alive is not None and visitor != "local":
        alive = lambda: space.session_alive(visitor)  # noqa: E731
    # On ZeroGPU each decorated call runs in a worker process that `spaces.GPU` forks, where the app's engine thread
    # does not exist and a GPU runs a chain in seconds: the call steps its own chains on an engine of its own (an idle
    # daemon thread when done, gone with the worker).
    engine = Engine(space.pipe, max_active=len(chains)) if hosting.ZERO_GPU else space.engine
    try:
        return engine.submit_all(chains, owner=visitor, tag=tag, alive=alive)
    except (EngineBusy, ValueError) as err:
        raise gr.Error(str(err)) from None


def submit(space: Space, chain, request: gr.Request | None, tag: str) -> Ticket:
    """Queues one chain in the Space's engine for this visitor (see `submit_all`)."""
    return submit_all(space, [chain], request, tag)[0]


def stop(space: Space, tag: str, request: gr.Request | None = None) -> None:
    """Stops this visitor's running or waiting chains of one tab; their streams end with a "stopped" frame."""
    space.engine.cancel(owner(request), tag)


def seconds(eta_s: float | None) -> str:
    if eta_s is None:
        return "estimating the time"
    if eta_s < 1:
        return "under a second"
    return f"about {math.ceil(eta_s)} s" if eta_s < 90 else f"about {math.ceil(eta_s / 60)} min"


def left(update: Progress) -> str:
    """'about 12 s left' for a running chain, with a word when the U-Net ran in bfloat16."""
    text = "done" if update.k == update.num_steps else f"{seconds(update.eta_s)} left"
    return f"{text} · U-Net in bfloat16 (large shared batch)" if update.bf16 else text


def waiting(space: Space, update: Queued) -> str:
    """The visitor's place in the engine's queue, as the page shows it."""
    stats = space.engine.stats()
    return (
        f"**Waiting for a free slot:** number {update.position} in the queue, {seconds(update.eta_s)} to wait. "
        f"{stats['active']} chains are running now, sharing one U-Net call per step."
    )
