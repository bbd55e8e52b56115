"""Tab ②, "DDPM vs DDIM": both samplers from the same x_T, shown in lockstep by the fraction of their chains."""

from __future__ import annotations

import math
from contextlib import closing
from typing import Any

import gradio as gr
import torch

from . import chains
from .common import Space, chain_settings, generator, grid, make_pipeline, stream_every, to_u8
from .engine import Done, Failed, Progress, Queued, Stopped
from .reverse_tab import ChainClock


def compare(
    space: Space,
    digit: Any = "3",
    guidance: float = 2.0,
    ddpm_steps: float = 1000,
    ddim_steps: float = 50,
    eta: float = 0.0,
    seed: float = 0,
    batch: float = 4,
    request: gr.Request = None,
):
    """DDPM (sigma^2 = beta-tilde) and DDIM from the same x_T, shown in lockstep by the fraction of their chains.

    Both chains run in the shared engine (DDIM, with fewer steps, gets ahead; the page shows the DDIM step at the
    same fraction of its chain as DDPM's). Yields: DDPM x_t, DDPM predicted x_0, DDIM x_t, DDIM predicted x_0
    (grids), progress (Markdown).
    """
    ddpm = chain_settings(space, digit, guidance, "ddpm-fixed_small", 0.0, ddpm_steps, seed, batch)
    ddim = chain_settings(space, digit, guidance, "ddim", eta, ddim_steps, seed, batch)
    shape = (ddpm["batch"], space.channels, space.resolution, space.resolution)
    x_T = torch.randn(shape, generator=generator(ddpm["seed"])) * space.scheduler.init_noise_sigma  # shared x_T

    def prepare(sampler, settings):
        return make_pipeline(space, sampler).prepare_chain(
            batch_size=settings["batch"],
            class_labels=settings["label"],
            guidance_scale=settings["guidance"],
            num_inference_steps=settings["steps"],
            generator=generator(settings["seed"] + 1),
            eta=settings["eta"],
            latents=x_T,
        )

    try:
        ddpm_chain, ddim_chain = prepare("ddpm-fixed_small", ddpm), prepare("ddim", ddim)
    except ValueError as err:
        raise gr.Error(str(err)) from None
    ddpm_ticket, ddim_ticket = chains.submit_all(space, [ddpm_chain, ddim_chain], request, "compare")  # same tick
    ddpm_last = None  # the last DDPM step; every DDIM step's pictures so far: (t, x_t, predicted x_0, x_t')
    ddim_frames: list[tuple] = []
    ddim_final = False

    def take_ddim(updates) -> None:
        nonlocal ddim_final
        for update in updates:
            if isinstance(update, Progress):
                step = update.step
                pictures = (to_u8(step.sample), to_u8(step.pred_original_sample), to_u8(step.prev_sample))
                ddim_frames.append((step.timestep, *pictures))
            elif isinstance(update, Failed):
                raise gr.Error(update.message)
            ddim_final = ddim_final or isinstance(update, (Done, Stopped, Failed))

    def ddim_shown() -> int:
        """How many DDIM steps to show: as large a fraction of its chain as DDPM has done of its own."""
        fraction = 1.0 if ddpm_last is None else (ddpm_last.step_index + 1) / ddpm_last.num_steps
        return max(1, math.ceil(fraction * ddim_chain.num_steps))

    def catch_up(ddim_updates) -> None:
        """Reads the DDIM steps the page needs that the engine has computed or is computing now (the two chains
        share ticks, so it never waits for more than the current one)."""
        take_ddim(ddim_ticket.pending())
        wanted = min(ddim_shown(), ddpm_last.step_index + 1 if ddpm_last is not None else 1)
        while len(ddim_frames) < wanted and ddim_ticket.state == "active" and not ddim_final:
            take_ddim([next(ddim_updates)])

    def frame(info: str, ddpm_done: bool = False, ddim_done: bool = False):
        text = f"**DDPM** step {ddpm_last.step_index + 1} / {ddpm_last.num_steps} (t = {ddpm_last.timestep}) · "
        ddpm_pictures = (
            grid(to_u8(ddpm_last.prev_sample if ddpm_done else ddpm_last.sample)),
            grid(to_u8(ddpm_last.pred_original_sample)),
        )
        if not ddim_frames:
            return (*ddpm_pictures, gr.update(), gr.update(), f"{text}**DDIM** waiting for a slot{info}")
        shown = min(len(ddim_frames), ddim_shown())
        t, x, x0, x_next = ddim_frames[shown - 1]
        ddim_pictures = (grid(x_next if ddim_done and shown == len(ddim_frames) else x), grid(x0))
        text += f"**DDIM** step {shown} / {ddim_chain.num_steps} (t = {t}){info}"
        return (*ddpm_pictures, *ddim_pictures, text)

    unchanged = (gr.update(),) * 4
    every = stream_every(ddpm_chain.num_steps)
    ddpm_clock, ddim_clock = ChainClock(), ChainClock()
    with closing(ddpm_ticket.updates()) as ddpm_updates, closing(ddim_ticket.updates()) as ddim_updates:
        for update in ddpm_updates:
            if isinstance(update, Queued):
                yield (*unchanged, chains.waiting(space, update))
            elif isinstance(update, Progress):
                ddpm_last = update.step
                catch_up(ddim_updates)
                left = ddpm_clock.left(update)
                if update.step.step_index % every == 0:
                    yield frame(f" · {left}")
            elif isinstance(update, Stopped):
                ddim_ticket.cancel()
                if ddpm_last is not None:
                    done = ddpm_last.step_index + 1
                    yield frame(f"\n\n**Stopped at t = {ddpm_last.timestep}** (DDPM), after {done} steps.")
                return
            elif isinstance(update, Failed):
                raise gr.Error(update.message)
        ddim_every = stream_every(ddim_chain.num_steps)
        while not ddim_final:  # DDIM has more steps than DDPM: show the rest of it
            update = next(ddim_updates)
            take_ddim([update])
            if isinstance(update, Stopped):
                return
            left = ddim_clock.left(update) if isinstance(update, Progress) else ""
            if isinstance(update, Progress) and (update.k - 1) % ddim_every == 0 and not ddim_final:
                yield frame(f" · {left}", ddpm_done=True)
    yield frame("", ddpm_done=True, ddim_done=True)


def stop_compare(space: Space, request: gr.Request = None) -> None:
    """Stops this visitor's DDPM vs DDIM chains; the stream ends with a "stopped" frame."""
    chains.stop(space, "compare", request)
