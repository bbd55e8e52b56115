"""Tab ②, "Guidance on pictures": classifier-free guidance at one step of a chain, eps_c, eps_u, their difference and
the guided eps = eps_u + w (eps_c - eps_u) as images. The chain runs in the shared engine; the parts come from the
library (`DenoisingStep.guidance`, a `GuidanceParts`), so this module only picks the step and draws it."""

from __future__ import annotations

from contextlib import closing
from typing import Any

import gradio as gr

from . import chains, hosting
from .engine import Done, Failed, Progress, Stopped
from .inputs import as_guidance, as_int, as_label, as_seed, as_steps, generator
from .pictures import EPS_RANGE, signed, single
from .state import Space, bind
from .text import LATEX, fmt, text
from .widgets import STOP, Page, digit_and_guidance, picture, seed_box

PART_IDS = ("xt", "eps-u", "eps-c", "diff", "eps-hat", "x0-hat")
PART_LABELS = ("x_t", "ε_u (told nothing)", "ε_c (told the digit)", "ε_c − ε_u (own scale)", "guided ε̂", "x̂₀")
SAMPLER = "ddpm-fixed_small"


def parts_info(step, w: float) -> str:
    """The step and the sizes of the two predictions and of their difference (per-pixel root mean square)."""
    parts = step.guidance

    def rms(x) -> float:
        return float(x.float().pow(2).mean().sqrt())

    return (
        f"**Step {step.step_index + 1} / {step.num_steps}, t = {step.timestep}** · w = {w:g} · "
        "ε shown with −3…3 as black…white, the difference at its own scale\n\n"
        "| | root mean square per pixel | largest absolute value |\n|:--|--:|--:|\n"
        f"| $\\epsilon_u$ | {rms(parts.unconditional):.4f} | {fmt(float(parts.unconditional.abs().max()))} |\n"
        f"| $\\epsilon_c$ | {rms(parts.conditional):.4f} | {fmt(float(parts.conditional.abs().max()))} |\n"
        f"| $\\epsilon_c - \\epsilon_u$ | {rms(parts.difference):.4f} | {fmt(float(parts.difference.abs().max()))} |\n"
        f"| $\\hat\\epsilon = \\epsilon_u + w(\\epsilon_c - \\epsilon_u)$ | {rms(parts.guided):.4f} | "
        f"{fmt(float(parts.guided.abs().max()))} |"
    )


def guidance_at_step(
    space: Space,
    digit: Any = "3",
    guidance: float = 2.0,
    steps: float = 50,
    t: float = 500,
    seed: float = 0,
    request: gr.Request = None,
):
    """Runs one DDPM chain (sigma^2 = beta-tilde) in the shared engine up to the first step at or below t, stops it
    there, and shows that step's guidance.

    Returns: x_t, eps_u, eps_c, eps_c - eps_u, the guided eps, the predicted x_0 (pictures), the numbers (Markdown).
    """
    label, guidance = as_label(space, digit), as_guidance(guidance)
    steps, t, seed = as_steps(space, steps), as_int(t, "t", 0, space.T - 1), as_seed(seed)
    if label is None or guidance in (0, 1):
        why = "“any” digit: there is no ε_c" if label is None else f"w = {guidance:g} needs only one prediction"
        return (None,) * 6 + (f"**Nothing to combine** ({why}). Pick a digit and a w other than 0 and 1.",)
    chain = chains.start(
        space, SAMPLER, guidance, batch_size=1, class_labels=label, num_inference_steps=steps,
        generator=generator(seed),
    )  # fmt: skip
    shown = None
    with closing(chains.submit(space, chain, request, "guidance").updates()) as updates:  # closing it cancels
        for update in updates:
            if isinstance(update, (Progress, Done)):
                shown = update.step
                if shown.timestep <= t:
                    break
            elif isinstance(update, Stopped):
                raise gr.Error("Stopped before reaching that t.")
            elif isinstance(update, Failed):
                raise gr.Error(update.message)
    parts = shown.guidance
    return (
        single(shown.sample),
        single(parts.unconditional, EPS_RANGE),
        single(parts.conditional, EPS_RANGE),
        signed(parts.difference),
        single(parts.guided, EPS_RANGE),
        single(shown.pred_original_sample),
        parts_info(shown, guidance),
    )


def stop_guidance(space: Space, request: gr.Request = None) -> None:
    """Stops this visitor's guidance chain."""
    chains.stop(space, "guidance", request)


def build(space: Space, page: Page) -> dict:
    """ "Guidance on pictures", laid out and wired. Returns its handlers by name (the Space bound)."""
    guidance_ = hosting.on_gpu(bind(space, guidance_at_step), space.pipe.unet, duration=hosting.guidance_seconds)
    stop_ = bind(space, stop_guidance)
    if space.num_classes is None:  # an unconditional model has nothing to guide
        return {}
    with gr.Tab("Guidance on pictures", id="guidance"):
        gr.Markdown(text("guidance_pictures"), latex_delimiters=LATEX)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=290):
                with gr.Row():
                    run = gr.Button("▶ Show the step", variant="primary", scale=2, min_width=80)
                    stop = gr.Button("■ Stop", variant="stop", scale=1, min_width=80)
                digit, guidance = digit_and_guidance(space.num_classes, "3", page.default_guidance)
                steps = gr.Slider(1, space.T, value=min(50, space.T), step=1, label="DDPM steps")
                t = gr.Slider(0, space.T - 1, value=space.T // 2, step=1, label="show the step at t (or just below)")
                seed = seed_box(0)
            with gr.Column(scale=3):
                with gr.Row():
                    pictures = [
                        picture(label, height=170, min_width=130, buttons=False, elem_id=f"gd-{name}")
                        for name, label in zip(PART_IDS, PART_LABELS, strict=True)
                    ]
                info = gr.Markdown(latex_delimiters=LATEX, elem_id="gd-info")
    run.click(
        guidance_, [digit, guidance, steps, t, seed], [*pictures, info], api_name="guidance_at_step", **page.chains
    )
    stop.click(stop_, None, None, **STOP)
    return {"guidance_at_step": guidance_, "stop_guidance": stop_}
