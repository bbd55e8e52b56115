"""Tab ②, "Noise, then denoise": a real image noised to t with q(x_t | x_0), then the reverse chain from there."""

from __future__ import annotations

from contextlib import closing
from typing import Any

import gradio as gr

from . import chains
from .common import (
    MAX_COPIES,
    UNCONDITIONAL,
    Space,
    as_int,
    chain_settings,
    generator,
    grid,
    image_to_x0,
    make_pipeline,
    single,
    stream_every,
    to_u8,
)
from .engine import Failed, Progress, Queued, Stopped
from .reverse_tab import ChainClock


def noise_denoise(
    space: Space,
    image: Any,
    start_t: float = 500,
    digit: Any = UNCONDITIONAL,
    guidance: float = 2.0,
    sampler: str = "ddpm-fixed_small",
    eta: float = 0.0,
    steps: float = 1000,
    seed: float = 0,
    copies: float = 4,
    request: gr.Request = None,
):
    """Noises the image to start_t with q(x_t | x_0), then runs the reverse chain from there in the shared engine
    (streamed). Stop (`stop_noise_denoise`) ends it with a "stopped" frame.

    Yields: x_0, the noised input, the current x_t, the predicted x_0 (grids), progress (Markdown).
    """
    x0 = image_to_x0(space, image)
    start_t = as_int(start_t, "start t", 0, space.T - 1)
    settings = chain_settings(space, digit, guidance, sampler, eta, steps, seed, copies, max_batch=MAX_COPIES)
    try:
        chain = make_pipeline(space, settings["sampler"]).prepare_noise_then_denoise_chain(
            x0.expand(settings["batch"], -1, -1, -1),
            start_t,
            class_labels=settings["label"],
            guidance_scale=settings["guidance"],
            num_inference_steps=settings["steps"],
            generator=generator(settings["seed"]),
            eta=settings["eta"],
        )
    except ValueError as err:
        raise gr.Error(str(err)) from None
    original, noised = single(x0), grid(to_u8(chain.sample))  # the chain starts from the noised image
    start, every = chain.timesteps[0], stream_every(chain.num_steps)
    step = None
    clock = ChainClock()
    with closing(chains.submit(space, chain, request, "denoise").updates()) as updates:
        for update in updates:
            if isinstance(update, Queued):
                yield original, noised, gr.update(), gr.update(), chains.waiting(space, update)
            elif isinstance(update, Progress):
                step = update.step
                left = clock.left(update)
                if step.step_index % every == 0:
                    info = (
                        f"Denoising from t = {start}: step {update.k} / {update.num_steps} (t = {step.timestep}) · "
                        f"{left}"
                    )
                    yield original, noised, grid(to_u8(step.sample)), grid(to_u8(step.pred_original_sample)), info
            elif isinstance(update, Stopped):
                if step is not None:
                    done = f"{step.step_index + 1} of {step.num_steps}"
                    info = f"**Stopped at t = {step.timestep}**, after {done} steps."
                    yield original, noised, grid(to_u8(step.sample)), grid(to_u8(step.pred_original_sample)), info
                return
            elif isinstance(update, Failed):
                raise gr.Error(update.message)
    info = (
        f"**Done.** Noised to t = {start} with $q(x_t \\mid x_0)$ "
        f"($\\sqrt{{\\bar\\alpha_t}}$ = {space.scheduler.coefficients(start)['sqrt_alpha_bar_t']:.3f}: that much of "
        f"the image is left), then {step.num_steps} reverse steps back to $x_0$."
    )
    yield original, noised, grid(to_u8(step.prev_sample)), grid(to_u8(step.pred_original_sample)), info


def stop_noise_denoise(space: Space, request: gr.Request = None) -> None:
    """Stops this visitor's noise-then-denoise chain; the stream ends with a "stopped" frame."""
    chains.stop(space, "denoise", request)
