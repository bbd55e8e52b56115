"""Tab ②, "DDPM vs DDIM": both samplers from the same x_T, advanced in lockstep."""

from __future__ import annotations

from typing import Any

import gradio as gr
import torch

from .common import Space, chain_settings, generator, grid, make_pipeline, stream_every, to_u8


def compare(
    space: Space,
    digit: Any = "3",
    guidance: float = 2.0,
    ddpm_steps: float = 1000,
    ddim_steps: float = 50,
    eta: float = 0.0,
    seed: float = 0,
    batch: float = 4,
):
    """DDPM (sigma^2 = beta-tilde) and DDIM from the same x_T, advanced in lockstep by the fraction of their chains.

    Yields: DDPM x_t, DDPM predicted x_0, DDIM x_t, DDIM predicted x_0 (grids), progress (Markdown).
    """
    ddpm = chain_settings(space, digit, guidance, "ddpm-fixed_small", 0.0, ddpm_steps, seed, batch)
    ddim = chain_settings(space, digit, guidance, "ddim", eta, ddim_steps, seed, batch)
    shape = (ddpm["batch"], space.channels, space.resolution, space.resolution)
    x_T = torch.randn(shape, generator=generator(ddpm["seed"])) * space.scheduler.init_noise_sigma  # shared x_T

    def chain(pipeline, settings):
        return pipeline.denoising_steps(
            batch_size=settings["batch"],
            class_labels=settings["label"],
            guidance_scale=settings["guidance"],
            num_inference_steps=settings["steps"],
            generator=generator(settings["seed"] + 1),
            eta=settings["eta"],
            latents=x_T,
        )

    ddpm_chain = chain(make_pipeline(space, "ddpm-fixed_small"), ddpm)
    ddim_chain = chain(make_pipeline(space, "ddim"), ddim)
    every = stream_every(ddpm["steps"])
    last_ddpm = last_ddim = None
    done_ddim = 0

    def info() -> str:
        return (
            f"**DDPM** step {last_ddpm.step_index + 1} / {ddpm['steps']} (t = {last_ddpm.timestep}) · "
            f"**DDIM** step {done_ddim} / {ddim['steps']} (t = {last_ddim.timestep})"
        )

    def frame(final: bool = False):
        pictures = (
            last_ddpm.prev_sample if final else last_ddpm.sample,
            last_ddpm.pred_original_sample,
            last_ddim.prev_sample if final else last_ddim.sample,
            last_ddim.pred_original_sample,
        )
        return (*(grid(to_u8(x)) for x in pictures), info())

    try:
        for last_ddpm in ddpm_chain:
            fraction = (last_ddpm.step_index + 1) / ddpm["steps"]
            while done_ddim < ddim["steps"] and (last_ddim is None or done_ddim / ddim["steps"] < fraction):
                last_ddim = next(ddim_chain)
                done_ddim += 1
            if last_ddpm.step_index % every == 0:
                yield frame()
    except ValueError as err:
        raise gr.Error(str(err)) from None
    yield frame(final=True)
