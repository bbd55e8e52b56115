"""The page's recurring components and event settings, so that each tab's `build` reads as a layout."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from . import inputs
from .pictures import written_once
from .state import MAX_SEED, SAMPLERS, UNCONDITIONAL, Space, bind

# How the events run. Quick ones: at most 4 at once, no spinner; while dragging a slider: finish the last value, skip
# the rest. Stop buttons skip the queue. The objective and the questions run one at a time (their own slot).
LIGHT = {"concurrency_limit": 4, "show_progress": "hidden"}
LIVE = {**LIGHT, "trigger_mode": "always_last"}
STOP = {"queue": False, "api_visibility": "private"}
ONE_AT_A_TIME = {"concurrency_id": "objective", "concurrency_limit": 1, "show_progress": "minimal"}
PRIVATE = {"api_visibility": "private", "queue": False}  # the page's own switches: no API endpoint, no queue


@dataclass(frozen=True)
class Page:
    """What every tab's `build` shares besides the Space: the Blocks (for its load event), the example images, how
    many chain handlers may run or wait at once, and the default guidance w of the chain tabs."""

    demo: gr.Blocks
    examples: list[str]
    chain_slots: int
    default_guidance: float

    @property
    def chains(self) -> dict:
        """The chain handlers' event settings: they wait in the engine's queue (which tells each visitor their
        place), not in Gradio's."""
        return {"concurrency_id": "chain", "concurrency_limit": self.chain_slots, "show_progress": "minimal"}


def picture(label: str, height: int = 250, min_width: int = 200, buttons: bool = True, **kwargs) -> gr.Image:
    """An output picture: crisp pixels, PNG, download and fullscreen buttons (`buttons=False`: none, for small ones).
    `min_width` 200 px puts one picture per row on a phone, where two side by side would leave their labels no room.
    Its files are written once, atomically (`pictures.written_once`): never rewritten while they are served."""
    return written_once(
        gr.Image(
            label=label,
            interactive=False,
            format="png",
            height=height,
            min_width=min_width,
            buttons=["download", "fullscreen"] if buttons else [],
            elem_classes=["pixelated"] if buttons else ["pixelated", "no-buttons"],
            **kwargs,
        )
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
        label='Digit y ("any": unconditional)',
        visible=num_classes is not None,
    )


def guidance_slider(num_classes: int | None, interactive: bool = True, value: float = 2.0) -> gr.Slider:
    """w of eps = eps_u + w (eps_c - eps_u); off while the digit is "any" (no eps_c to guide with)."""
    return gr.Slider(
        0,
        8,
        value=value,
        step=0.25,
        label="Guidance scale w",
        info="0: ignore the digit · 1: conditional · > 1: more so (off for “any”)",
        visible=num_classes is not None,
        interactive=interactive,
    )


def sampler_picker() -> gr.Radio:
    return gr.Radio(
        [(label, value) for value, (label, _, _) in SAMPLERS.items()], value="ddpm-fixed_small", label="Sampler"
    )


def eta_slider(interactive: bool = True) -> gr.Slider:
    """DDIM's eta; off while a DDPM sampler is chosen (they take sigma_t from beta or beta-tilde, not from eta)."""
    return gr.Slider(
        0,
        1,
        value=0.0,
        step=0.1,
        label="DDIM η",
        info="DDIM only · 0: deterministic · 1: DDPM with β̃ₜ",
        interactive=interactive,
    )


def digit_and_guidance(num_classes: int | None, digit: str, guidance: float = 2.0) -> tuple[gr.Radio, gr.Slider]:
    """The digit picker and the guidance slider, the slider switched off while the digit is "any" (no eps_c to guide
    with)."""
    picker = digit_picker(num_classes, digit)
    slider = guidance_slider(num_classes, interactive=digit != UNCONDITIONAL, value=guidance)
    picker.change(guidance_control, [picker], [slider], **PRIVATE)
    return picker, slider


def sampler_and_eta() -> tuple[gr.Radio, gr.Slider]:
    """The sampler picker (DDPM by default) and DDIM's eta, the eta slider switched off while a DDPM sampler is on."""
    sampler, eta = sampler_picker(), eta_slider(interactive=False)
    sampler.change(eta_control, [sampler], [eta], **PRIVATE)
    return sampler, eta


def guidance_control(digit: str) -> dict:
    """The guidance slider's state for this digit choice: usable only with a digit."""
    return gr.update(interactive=digit != UNCONDITIONAL)


def eta_control(sampler: str) -> dict:
    """The eta slider's state for this sampler: usable only with DDIM."""
    return gr.update(interactive=sampler == "ddim")


def seed_box(value: int = 0) -> gr.Number:
    return gr.Number(value=value, label="Seed", precision=0, minimum=0, maximum=MAX_SEED, min_width=100)


class ImageSource:
    """An image input with a held-out digit picker (number, Load, Random), a caption and optional examples, built in
    the current layout context and wired at once: Load and Random put a held-out digit in the image (and one on
    page load), an upload clears the caption. Element ids: `elem_id` for the image, `<prefix>-index`,
    `<prefix>-load`, `<prefix>-caption` (prefix: `elem_id` unless given). `api=True` publishes Load and Random as
    the API's `load_digit` and `random_digit` (one source on the page does)."""

    def __init__(
        self,
        space: Space,
        page: Page,
        label: str,
        elem_id: str,
        index: int,
        examples: list[str] | None = None,
        prefix: str | None = None,
        api: bool = False,
    ):
        prefix = prefix or elem_id
        self.image = upload(label, elem_id)
        with gr.Row():
            self.index = digit_index(index, len(space.digits), elem_id=f"{prefix}-index")
            with gr.Column(min_width=110):
                self.load = gr.Button("Load digit", size="sm", elem_id=f"{prefix}-load")
                self.random = gr.Button("🎲 Random digit", size="sm")
        self.caption = gr.Markdown(elem_classes=["subtle"], elem_id=f"{prefix}-caption", label="caption")
        if examples:
            gr.Examples(
                examples,
                inputs=[self.image],
                outputs=[self.caption],
                fn=inputs.no_caption,
                run_on_click=True,
                cache_examples=False,
                label="Examples",
                api_visibility="private",
            )
        private = {"api_visibility": "private"}
        digit = {"fn": bind(space, inputs.load_digit), "inputs": [self.index], "outputs": [self.image, self.caption]}
        self.load.click(**digit, **({"api_name": "load_digit"} if api else private), **LIGHT)
        self.random.click(
            bind(space, inputs.random_digit), None, [self.index], **({"api_name": "random_digit"} if api else private),
            **LIGHT,
        ).then(**digit, **private, **LIGHT)  # fmt: skip
        page.demo.load(**digit, **private, **LIGHT)
        gr.on([self.image.upload, self.image.clear], inputs.no_caption, None, [self.caption], **PRIVATE)
