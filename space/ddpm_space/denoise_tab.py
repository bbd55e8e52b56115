"""Tab ②, "Noise, then denoise": a real image noised to t with q(x_t | x_0), then the reverse chain from there."""

from __future__ import annotations

from typing import Any

import gradio as gr

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
):
    """Noises the image to start_t with q(x_t | x_0), then runs the reverse chain from there (streamed).

    Yields: x_0, the noised input, the current x_t, the predicted x_0 (grids), progress (Markdown).
    """
    x0 = image_to_x0(space, image)
    start_t = as_int(start_t, "start t", 0, space.T - 1)
    settings = chain_settings(space, digit, guidance, sampler, eta, steps, seed, copies, max_batch=MAX_COPIES)
    pipeline = make_pipeline(space, settings["sampler"])
    images = x0.expand(settings["batch"], -1, -1, -1)
    original = single(x0)
    noised = step = None
    start = every = 0
    try:
        chain = pipeline.noise_then_denoise_steps(
            images,
            start_t,
            class_labels=settings["label"],
            guidance_scale=settings["guidance"],
            num_inference_steps=settings["steps"],
            generator=generator(settings["seed"]),
            eta=settings["eta"],
        )
        for step in chain:
            if noised is None:  # the first step's x_t is the noised image
                noised, start, every = grid(to_u8(step.sample)), step.timestep, stream_every(step.num_steps)
            if step.step_index % every == 0:
                info = (
                    f"Denoising from t = {start}: step {step.step_index + 1} / {step.num_steps} (t = {step.timestep})"
                )
                yield original, noised, grid(to_u8(step.sample)), grid(to_u8(step.pred_original_sample)), info
    except ValueError as err:
        raise gr.Error(str(err)) from None
    info = (
        f"**Done.** Noised to t = {start} with $q(x_t \\mid x_0)$ "
        f"($\\sqrt{{\\bar\\alpha_t}}$ = {space.scheduler.coefficients(start)['sqrt_alpha_bar_t']:.3f}: that much of "
        f"the image is left), then {step.num_steps} reverse steps back to $x_0$."
    )
    yield original, noised, grid(to_u8(step.prev_sample)), grid(to_u8(step.pred_original_sample)), info
