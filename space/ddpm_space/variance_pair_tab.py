"""Tab ②, "β vs β̃": two DDPM chains from the same x_T with the same z at every step, one with sigma_t^2 = beta_t
and one with beta-tilde_t, and a switch for noise at the last step. The chains come from the library
(`pipe.prepare_variance_pair`) and run together in the shared engine; this module only reads and draws them."""

from __future__ import annotations

from contextlib import closing
from typing import Any

import gradio as gr

from . import chains, hosting
from .engine import Done, Failed, Progress, Queued, Stopped
from .inputs import as_guidance, as_int, as_label, as_seed, as_steps, generator
from .pictures import grid, signed, to_u8
from .state import MAX_BATCH, Space, bind
from .text import LATEX, fmt, text
from .widgets import STOP, Page, digit_and_guidance, picture, seed_box

NAMES = ("β", "β̃")


def last_step_row(name: str, step) -> str:
    """The last step of one chain: its t, sigma_t (the chain's own, from the step) and what it returned."""
    # beta-tilde of the step to x_0 is 0; the scheduler keeps its log finite (1e-20), so sigma_t comes out 1e-10 there
    sigma = float(step.std.float().max())
    sigma = sigma if sigma > 1e-8 else 0.0
    added = "adds σₜz" if sigma > 0 else "returns the mean (σₜ = 0)"
    return f"| $\\sigma_t^2$ = {name} | t = {step.timestep} → x₀ | {fmt(sigma)} | {added} |"


def pair_info(last: dict, noise_at_last_step: bool) -> str:
    beta, beta_tilde = last["β"], last["β̃"]
    gap = (beta.prev_sample - beta_tilde.prev_sample).abs()
    return (
        f"**Done: {beta.num_steps} steps each**, the same $x_T$ and the same $z$ at every step · noise at the last "
        f"step: **{'on' if noise_at_last_step else 'off'}**\n\n"
        "| chain | last step | $\\sigma_t$ there | so the last step |\n|:--|:--|--:|:--|\n"
        f"{last_step_row('β', beta)}\n{last_step_row('β̃', beta_tilde)}\n\n"
        f"The two $x_0$ differ by {gap.mean():.4f} per pixel on average (largest {gap.max():.3f}), in [−1, 1]."
    )


def variance_pair(
    space: Space,
    digit: Any = "3",
    guidance: float = 2.0,
    steps: float = 100,
    seed: float = 0,
    batch: float = 2,
    noise_at_last_step: bool = False,
    request: gr.Request = None,
):
    """sigma_t^2 = beta_t beside beta-tilde_t, from the same x_T and z (`pipe.prepare_variance_pair`), in the engine.

    Yields: x_T, x_0 with beta, x_0 with beta-tilde, their difference (pictures), progress, then the last step of each
    chain and how far apart their x_0 are (Markdown).
    """
    label, guidance = as_label(space, digit), as_guidance(guidance)
    steps, seed, batch = as_steps(space, steps), as_seed(seed), as_int(batch, "batch size", 1, MAX_BATCH)
    try:
        pair = space.pipe.prepare_variance_pair(
            batch, label, guidance, steps, generator(seed), noise_at_last_step=bool(noise_at_last_step)
        )
    except ValueError as err:
        raise gr.Error(str(err)) from None
    x_T = to_u8(pair[0].sample)  # the shared x_T (both chains start from it)
    tickets = chains.submit_all(space, list(pair), request, "variance_pair")  # one U-Net call per tick for both
    unchanged = (gr.update(),) * 3
    every = chains.stream_every(steps)
    last, final, stopped = {}, set(), []

    def take(name: str, update) -> str | None:
        """Keeps a chain's latest step; returns a frame's text when the page should show one."""
        if isinstance(update, (Done, Stopped, Failed)):
            final.add(name)
        if isinstance(update, Failed):
            raise gr.Error(update.message)
        if isinstance(update, Stopped):
            stopped.append(name)
            return "**Stopped.**"
        if isinstance(update, Queued):
            return chains.waiting(space, update)
        last[name] = update.step
        if isinstance(update, Progress) and name == "β" and (update.k - 1) % every == 0:
            return f"Both chains at step {update.k} / {update.num_steps}…"
        return None

    # The β̃ chain's updates are read as they come (the engine drops a chain nobody reads), the β chain's paced.
    with closing(tickets[0].updates()) as first, closing(tickets[1].updates()) as second:
        for update in first:
            shown = take("β", update)
            for pending in tickets[1].pending():
                take("β̃", pending)
            if shown:
                yield grid(x_T), *unchanged, shown
            if isinstance(update, Stopped):
                return
        while "β̃" not in final:
            take("β̃", next(second))
    if stopped:  # the β̃ chain was stopped (the page closed, or Stop) while the β chain ran on
        yield grid(x_T), *unchanged, "**Stopped.**"
        return
    beta, beta_tilde = last["β"].prev_sample, last["β̃"].prev_sample
    yield (
        grid(x_T),
        grid(to_u8(beta)),
        grid(to_u8(beta_tilde)),
        signed(beta - beta_tilde),
        pair_info(last, bool(noise_at_last_step)),
    )


def stop_variance_pair(space: Space, request: gr.Request = None) -> None:
    """Stops this visitor's β vs β̃ chains."""
    chains.stop(space, "variance_pair", request)


def build(space: Space, page: Page) -> dict:
    """ "β vs β̃", laid out and wired. Returns its handlers by name (the Space bound)."""
    pair_ = hosting.on_gpu(bind(space, variance_pair), space.pipe.unet, duration=hosting.variance_pair_seconds)
    stop_ = bind(space, stop_variance_pair)
    with gr.Tab("β vs β̃", id="variance-pair"):
        gr.Markdown(text("variance_pair"), latex_delimiters=LATEX)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=290):
                with gr.Row():
                    run = gr.Button("▶ Run both chains", variant="primary", scale=2, min_width=80)
                    stop = gr.Button("■ Stop", variant="stop", scale=1, min_width=80)
                digit, guidance = digit_and_guidance(space.num_classes, "3", page.default_guidance)
                steps = gr.Slider(1, space.T, value=min(100, space.T), step=1, label="DDPM steps")
                with gr.Row():
                    seed = seed_box(0)
                    batch = gr.Slider(1, MAX_BATCH, value=2, step=1, label="Images", min_width=120)
                last_noise = gr.Checkbox(False, label="noise at the last step (add σₜz on the step to x₀ too)")
            with gr.Column(scale=3):
                with gr.Row():
                    x_T = picture("x_T (both chains)", height=200, min_width=150, elem_id="vp-xT")
                    beta = picture("x₀ with σₜ² = βₜ", height=200, min_width=150, elem_id="vp-beta")
                    tilde = picture("x₀ with σₜ² = β̃ₜ", height=200, min_width=150, elem_id="vp-beta-tilde")
                    gap = picture("β − β̃ (own scale)", height=200, min_width=150, elem_id="vp-diff")
                info = gr.Markdown(latex_delimiters=LATEX, elem_id="vp-info")
    run.click(
        pair_,
        [digit, guidance, steps, seed, batch, last_noise],
        [x_T, beta, tilde, gap, info],
        api_name="variance_pair",
        **page.chains,
    )
    stop.click(stop_, None, None, **STOP)
    return {"variance_pair": pair_, "stop_variance_pair": stop_}
