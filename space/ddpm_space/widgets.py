"""The page's recurring components, so that app.py's layout reads as a layout."""

from __future__ import annotations

import gradio as gr

from .common import MAX_SEED, SAMPLERS, UNCONDITIONAL


def picture(label: str, height: int = 250, **kwargs) -> gr.Image:
    """An output picture: crisp pixels, PNG, download and fullscreen buttons."""
    return gr.Image(
        label=label,
        interactive=False,
        format="png",
        height=height,
        buttons=["download", "fullscreen"],
        elem_classes=["pixelated"],
        **kwargs,
    )


def upload(label: str, elem_id: str) -> gr.Image:
    """An image input; its events run with preprocess=False so that every file reaches `preprocess_image`."""
    return gr.Image(
        label=label,
        type="filepath",
        image_mode=None,
        sources=["upload", "clipboard"],
        height=230,
        elem_classes=["pixelated", "upload-box"],
        placeholder="Drop any image here",
        elem_id=elem_id,
    )


def digit_index(value: int, count: int, **kwargs) -> gr.Number:
    """The number of a held-out digit."""
    return gr.Number(
        value=value, label="Held-out digit #", precision=0, minimum=0, maximum=count - 1, min_width=110, **kwargs
    )


def digit_picker(num_classes: int | None, value: str = "3") -> gr.Radio:
    choices = [("any", UNCONDITIONAL)] + [(str(d), str(d)) for d in range(num_classes or 0)]
    return gr.Radio(
        choices,
        value=value if num_classes else UNCONDITIONAL,
        label='Digit y ("any" = unconditional)',
        visible=num_classes is not None,
    )


def guidance_slider(num_classes: int | None) -> gr.Slider:
    return gr.Slider(
        0,
        8,
        value=2.0,
        step=0.5,
        label="Guidance scale w",
        info="0: ignore the digit · 1: conditional · >1: more so",
        visible=num_classes is not None,
    )


def sampler_picker() -> gr.Radio:
    return gr.Radio(
        [(label, value) for value, (label, _, _) in SAMPLERS.items()], value="ddpm-fixed_small", label="Sampler"
    )


def eta_slider() -> gr.Slider:
    return gr.Slider(0, 1, value=0.0, step=0.1, label="DDIM η", info="0: deterministic · 1: like DDPM with β̃ₜ")


def seed_box(value: int = 0) -> gr.Number:
    return gr.Number(value=value, label="Seed", precision=0, minimum=0, maximum=MAX_SEED, min_width=100)
