"""Tab ②, "DDPM vs DDIM": both samplers from the same x_T, shown in lockstep by the fraction of their chains."""

from __future__ import annotations

import math
from contextlib import closing
from typing import Any

import gradio as gr
import torch

from . import chains, hosting
from .engine import Done, Failed, Progress, Queued, Stopped
from .inputs import as_eta, as_guidance, as_int, as_label, as_seed, as_steps, generator
from .pictures import grid, to_u8
from .reverse_tab import ChainClock
from .state import MAX_BATCH, Space, bind
from .text import LATEX, text
from .widgets import STOP, Page, digit_and_guidance, eta_slider, picture, seed_box


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
    label, guidance, eta = as_label(space, digit), as_guidance(guidance), as_eta(eta, "ddim")
    ddpm_steps, ddim_steps = as_steps(space, ddpm_steps), as_steps(space, ddim_steps)
    seed, batch = as_seed(seed), as_int(batch, "batch size", 1, MAX_BATCH)
    shape = (batch, space.channels, space.resolution, space.resolution)
    x_T = torch.randn(shape, generator=generator(seed))  # the shared x_T, unit variance (prepare_chain scales it)
    both = dict(batch_size=batch, class_labels=label, latents=x_T)
    ddpm_chain = chains.start(
        space, "ddpm-fixed_small", guidance, num_inference_steps=ddpm_steps, generator=generator(seed + 1), **both
    )
    ddim_chain = chains.start(
        space, "ddim", guidance, num_inference_steps=ddim_steps, generator=generator(seed + 1), eta=eta, **both
    )
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
    every = chains.stream_every(ddpm_chain.num_steps)
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
        ddim_every = chains.stream_every(ddim_chain.num_steps)
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


def build(space: Space, page: Page) -> dict:
    """ "DDPM vs DDIM", laid out and wired. Returns its handlers by name (the Space bound)."""
    # On ZeroGPU both chains get a GPU for the call (ddpm_space/hosting.py); elsewhere a no-op.
    compare_ = hosting.on_gpu(bind(space, compare), space.pipe.unet, duration=hosting.compare_seconds)
    stop_ = bind(space, stop_compare)
    with gr.Tab("DDPM vs DDIM", id="compare"):
        gr.Markdown(text("compare_intro"), latex_delimiters=LATEX)
        with gr.Row(equal_height=False, elem_classes=["split"]):
            with gr.Column(scale=1, min_width=300, elem_classes=["controls"]):
                with gr.Row(elem_classes=["run-row"]):
                    run = gr.Button("▶ Run both", variant="primary", scale=2, min_width=80)
                    stop = gr.Button("■ Stop", variant="stop", scale=1, min_width=80)
                digit, guidance = digit_and_guidance(space.num_classes, "5", page.default_guidance)
                ddpm_steps = gr.Slider(1, space.T, value=space.T, step=1, label="DDPM steps")
                ddim_steps = gr.Slider(1, space.T, value=min(50, space.T), step=1, label="DDIM steps")
                eta = eta_slider()
                with gr.Row():
                    seed = seed_box(7)
                    batch = gr.Slider(1, MAX_BATCH, value=4, step=1, label="Images", min_width=120)
            with gr.Column(scale=3, elem_classes=["outputs"]):  # both rows and the progress line
                with gr.Row():  # fit in the first screen at 1366 x 768
                    ddpm_x = picture("DDPM: x_t", height=180, elem_id="cmp-ddpm-x")
                    ddpm_x0 = picture("DDPM: predicted x̂₀", height=180, elem_id="cmp-ddpm-x0")
                with gr.Row():
                    ddim_x = picture("DDIM: x_t", height=180, elem_id="cmp-ddim-x")
                    ddim_x0 = picture("DDIM: predicted x̂₀", height=180, elem_id="cmp-ddim-x0")
                info = gr.Markdown(elem_id="cmp-info", label="progress")

    run.click(
        compare_,
        [digit, guidance, ddpm_steps, ddim_steps, eta, seed, batch],
        [ddpm_x, ddpm_x0, ddim_x, ddim_x0, info],
        api_name="compare",
        **page.chains,
    )
    stop.click(stop_, None, None, **STOP)
    return {"compare": compare_, "stop_compare": stop_}
