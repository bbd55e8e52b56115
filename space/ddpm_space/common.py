"""What every tab shares: the loaded model (`Space`), pictures, input validation, dataset digits, the page's text."""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import random
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ddpm_hub import DDIMHubScheduler, DDPMHubPipeline, DDPMHubScheduler
from ddpm_hub.data import load_mnist5k, preprocess_image, to_uint8

TEXT_DIR = Path(__file__).resolve().parent.parent / "text"
MAX_BATCH = 16  # images per chain
MAX_COPIES = 8  # noise-then-denoise copies of one image
MAX_SEED = 2**31 - 1
STREAMED_FRAMES = 100  # at most this many frames of a chain are pushed to the browser (plus the final one)
SCALE = 4  # display upscaling, nearest neighbour (28 px -> 112 px)
EPS_RANGE = 3.0  # the predicted noise is shown with -3..3 mapped to black..white
GAP = 2  # pixels between the images of a grid (before upscaling)
GRID_BACKGROUND = 64  # gray between the images of a grid
STRIP_AT = (0, 50, 100, 200, 400, 600, 800, 999)  # timesteps of the strip, for T = 1000 (rescaled for other T)
UNCONDITIONAL = "any"
SAMPLERS = {  # value -> (label, scheduler class, variance_type)
    "ddpm-fixed_large": ("DDPM · σ²ₜ = βₜ", DDPMHubScheduler, "fixed_large"),
    "ddpm-fixed_small": ("DDPM · σ²ₜ = β̃ₜ", DDPMHubScheduler, "fixed_small"),
    "ddim": ("DDIM · σₜ = η√β̃ₜ", DDIMHubScheduler, None),
}
SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
FONT = ImageFont.load_default(size=14)

# ---------------------------------------------------------------------------------------------------------------------
# The model, loaded once, and what the tabs derive from it
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class Space:
    """The loaded pipeline and the values every tab reads. `scheduler` is the model's own schedule: only its
    formulas are used (never set_timesteps); each chain gets its own scheduler (`make_pipeline`). `engine` (an
    `engine.Engine`) runs every visitor's chains; `session_alive(session_hash)` says whether a visitor's page is
    still connected."""

    pipe: DDPMHubPipeline
    model_id: str
    model_name: str
    x0_pipe: DDPMHubPipeline | None = None  # a second model, trained to predict x_0 (question 3), if one is loaded
    x0_model_id: str | None = None
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ddpm_hub_space_")))
    engine: Any = None
    session_alive: Callable[[str], bool] | None = None

    def __post_init__(self) -> None:
        self.scheduler = self.pipe.scheduler
        self.T = self.scheduler.config.num_train_timesteps
        self.num_classes = self.pipe.num_classes  # None for an unconditional model
        self.channels = self.pipe.unet.config.in_channels
        self.resolution = self.pipe.unet.config.sample_size
        self.linear = DDPMHubScheduler.from_config(self.scheduler.config, beta_schedule="linear")
        self.cosine = DDPMHubScheduler.from_config(self.scheduler.config, beta_schedule="squaredcos_cap_v2")
        self.strip = sorted({min(self.T - 1, round(t * self.T / 1000)) for t in STRIP_AT})
        self.digits, self.digit_labels = load_mnist5k("held_out")  # (N, 1, 28, 28) in [-1, 1], (N,)
        self.schedule_name = {"linear": "linear", "squaredcos_cap_v2": "cosine"}.get(
            self.scheduler.config.beta_schedule, self.scheduler.config.beta_schedule
        )


def load_pipeline(model_id: str, revision: str = "main", default_model: str | None = None) -> DDPMHubPipeline:
    """The pipeline from a local folder or a Hub repo (at `revision`)."""
    if Path(model_id).is_dir():
        if not (Path(model_id) / "model_index.json").is_file():
            raise RuntimeError(
                f"{model_id} has no model_index.json: train the default model first, or set DDPM_HUB_MODEL to a "
                "saved pipeline folder or a Hub repo id (e.g. ddpm-hub/ddpm-mnist-small)."
            )
        pipeline = DDPMHubPipeline.from_pretrained(model_id)
    elif model_id == default_model:
        raise RuntimeError(
            f"The bundled model {model_id} is missing: set DDPM_HUB_MODEL to a saved pipeline folder or a Hub repo id "
            "(e.g. ddpm-hub/ddpm-mnist-small)."
        )
    else:
        pipeline = DDPMHubPipeline.from_pretrained(model_id, revision=revision)
    pipeline.unet.eval()
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def guidance_curve(model_id: str | None) -> dict | None:
    """The guidance curve measured on a local model folder (``evaluation.json``'s ``guidance_curve``, written by
    ``benchmarks/bench_nfe.py --curve guidance --record_in_model``) with its plot's path, or None (a Hub id, or no
    curve recorded)."""
    path = Path(model_id) / "evaluation.json" if model_id else None
    if path is None or not path.is_file():
        return None
    curve = json.loads(path.read_text(encoding="utf-8")).get("guidance_curve")
    if not curve:
        return None
    plot = Path(model_id) / curve["plot"] if curve.get("plot") else None
    return {**curve, "plot_path": str(plot) if plot is not None and plot.is_file() else None}


def guidance_table(curve: dict) -> str:
    """The measured guidance curve as a Markdown table: w, U-Net calls, accuracy, Fréchet ÷ real digits'."""
    rows = ["| chain | w | U-Net calls / image | judge accuracy | Fréchet ÷ real digits' |", "|:--|--:|--:|--:|--:|"]
    page_steps = max(p["steps"] for p in curve["points"])
    for p in curve["points"]:
        ratio = p["frechet_distance"] / p["frechet_distance_real"]
        best = p["guidance_scale"] == curve.get("recommended_guidance_scale") and p["steps"] == page_steps
        cells = [f"{_sampler_name(p)} {p['steps']}", f"{p['guidance_scale']:g}", str(p["nfe_per_image"])]
        cells += [f"{p['mean_accuracy']:.1%}", f"{ratio:.2f}×"]
        rows.append("| " + " | ".join(f"**{c}**" if best else c for c in cells) + " |")
    return "\n".join(rows)


def _sampler_name(point: dict) -> str:
    return {"ddpm": "DDPM", "ddim": "DDIM η = 0"}.get(point["family"], point["scheduler"])


def curve_sampler(curve: dict) -> str:
    """How a recorded curve sampled, e.g. "DDPM 100 steps, and DDPM 1000 steps at w = 1, 1.25"."""
    chains: dict[str, list[str]] = {}
    for p in curve["points"]:
        chains.setdefault(f"{_sampler_name(p)} {p['steps']} steps", []).append(f"{p['guidance_scale']:g}")
    parts = [chain if len(chains) == 1 or i == 0 else f"{chain} at w = {', '.join(ws)}"
             for i, (chain, ws) in enumerate(chains.items())]  # fmt: skip
    return ", and ".join(parts)


def model_name(model_id: str, revision: str, default_model: str) -> str:
    """How the page names the model: the bundled one, a local folder, or a Hub repo at a revision."""
    if model_id == default_model:
        return "ddpm-hub/ddpm-mnist-small, bundled"
    return Path(model_id).name if Path(model_id).is_dir() else f"{model_id}@{revision}"


def bind(space: Space, fn, module: str | None = None):
    """fn with `space` as its first argument, as Gradio should see it: the same name, docstring, signature (less
    `space`) and type hints (so a `request: gr.Request` parameter is filled in), a generator if fn is one."""
    if inspect.isgeneratorfunction(fn):

        def bound(*args, **kwargs):
            yield from fn(space, *args, **kwargs)  # closing `bound` closes fn's generator too
    else:

        def bound(*args, **kwargs):
            return fn(space, *args, **kwargs)

    functools.update_wrapper(bound, fn)
    signature = inspect.signature(fn)
    bound.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    bound.__module__ = module or fn.__module__
    return bound


def make_pipeline(space: Space, sampler: str) -> DDPMHubPipeline:
    """A pipeline sharing the loaded U-Net, with its own scheduler (so concurrent chains never share timesteps)."""
    if sampler not in SAMPLERS:
        raise gr.Error(f"Unknown sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}.")
    _, scheduler_class, variance_type = SAMPLERS[sampler]
    config = {key: value for key, value in space.scheduler.config.items() if key != "variance_type"}
    # variance_type as a keyword: inside `config`, diffusers' from_config would reset it to its default whenever the
    # model's own config left it at the default (its `_use_default_values` names it), so "σ² = β" ran β̃.
    overrides = {} if variance_type is None else {"variance_type": variance_type}
    pipeline = DDPMHubPipeline(unet=space.pipe.unet, scheduler=scheduler_class.from_config(config, **overrides))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


# ---------------------------------------------------------------------------------------------------------------------
# Pictures: uint8 grids, upscaled with nearest neighbour
# ---------------------------------------------------------------------------------------------------------------------


def to_u8(images: torch.Tensor, scale: float = 1.0) -> np.ndarray:
    """(B, C, H, W) in [-scale, scale] -> uint8 (B, H, W, C), once per image."""
    return to_uint8(images if scale == 1.0 else images / scale)


def grid_columns(count: int) -> int:
    """Columns of a grid of `count` images, at most 4: 8 -> 4 x 2, 6 -> 3 x 2, 4 -> 2 x 2, 16 -> 4 x 4."""
    return 2 if count == 4 else math.ceil(count / math.ceil(count / 4))


def grid(images: np.ndarray, columns: int | None = None, scale: int = SCALE) -> np.ndarray:
    """uint8 (B, H, W, C) -> one uint8 picture, `columns` wide (default: at most 4), gray gaps, upscaled by `scale`."""
    count, height, width, channels = images.shape
    columns = columns or grid_columns(count)
    rows = math.ceil(count / columns)
    out = np.full(
        (rows * height + (rows - 1) * GAP, columns * width + (columns - 1) * GAP, channels),
        GRID_BACKGROUND,
        dtype=np.uint8,
    )
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = row * (height + GAP), column * (width + GAP)
        out[top : top + height, left : left + width] = images[index]
    out = out.repeat(scale, axis=0).repeat(scale, axis=1)
    return out[:, :, 0] if channels == 1 else out


def single(image: torch.Tensor, scale: float = 1.0) -> np.ndarray:
    """The first image of a (B, C, H, W) or (C, H, W) tensor in [-scale, scale] -> an upscaled uint8 picture."""
    if image.ndim == 3:
        image = image.unsqueeze(0)
    return grid(to_u8(image[:1], scale))


def strip_picture(space: Space, rows: dict[str, np.ndarray], scale: int = 3) -> np.ndarray:
    """Rows of uint8 (len(strip), H, W, C) images -> one labelled picture: a row per name, a column per t of the
    strip."""
    tile, gap, left, top = space.resolution * scale, 6, 64, 24
    canvas = Image.new("L", (left + len(space.strip) * (tile + gap), top + len(rows) * (tile + gap)), 255)
    draw = ImageDraw.Draw(canvas)
    for column, t in enumerate(space.strip):
        draw.text((left + column * (tile + gap) + tile // 2, top // 2), f"t = {t}", fill=40, font=FONT, anchor="mm")
    for row, (name, images) in enumerate(rows.items()):
        y = top + row * (tile + gap)
        draw.text((left - 8, y + tile // 2), name, fill=40, font=FONT, anchor="rm")
        for column in range(len(space.strip)):
            canvas.paste(
                Image.fromarray(grid(images[column : column + 1], scale=scale)), (left + column * (tile + gap), y)
            )
    return np.asarray(canvas)


def fmt(value: float) -> str:
    """A number for the formulas: 4 significant digits, scientific notation when tiny."""
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    mantissa, exponent = f"{value:.3e}".split("e")
    return f"{mantissa}·10{str(int(exponent)).translate(SUPERSCRIPTS)}"


# ---------------------------------------------------------------------------------------------------------------------
# Inputs: uploads, dataset digits, the controls' values
# ---------------------------------------------------------------------------------------------------------------------


def upload_path(space: Space, image: Any) -> str | None:
    """The file behind an image input: a path, or Gradio's file payload (the events run with preprocess=False)."""
    if image is None or isinstance(image, (str, os.PathLike)):
        return None if image is None else os.fspath(image)
    if isinstance(image, dict):
        path = image.get("path")
        if not path and str(image.get("url") or "").startswith("data:"):
            from gradio.processing_utils import decode_base64_to_file

            path = decode_base64_to_file(image["url"], str(space.work_dir), "png")
        return path or None
    path = getattr(image, "path", None)  # a FileData object
    if path:
        return str(path)
    raise gr.Error(f"Expected an image file, got a {type(image).__name__}.")


def image_to_x0(space: Space, image: Any) -> torch.Tensor:
    """An uploaded image -> x_0, (1, C, H, W) in [-1, 1]; anything unusable becomes a gr.Error with the reason."""
    path = upload_path(space, image)
    if path is None:
        raise gr.Error("Upload an image or pick a digit first.")
    try:
        x0 = preprocess_image(path, space.resolution, space.channels, invert="auto")
    except Exception as err:  # ValueError by contract; anything else must not become a traceback either
        reason = str(err).replace(os.path.dirname(path) + os.sep, "")  # the file's name, not the server's folders
        if not isinstance(err, ValueError):
            reason = f"{type(err).__name__}: {reason}"
        raise gr.Error(f"This upload can't be used: {reason}.") from None
    return x0.unsqueeze(0)


def digit_file(space: Space, index: int) -> str:
    """A held-out MNIST digit as a 28x28 PNG file (the same conversion as any upload then reads it back)."""
    index = as_int(index, "digit index", 0, len(space.digits) - 1)
    path = space.work_dir / f"mnist_held_out_{index}.png"
    if not path.exists():  # written under a temporary name, then renamed: a visitor never gets a half-written file
        handle, staging = tempfile.mkstemp(dir=space.work_dir, prefix=".digit_", suffix=".png")
        with os.fdopen(handle, "wb") as file:
            Image.fromarray(to_u8(space.digits[index : index + 1])[0, :, :, 0]).save(file, format="PNG")  # mode "L"
        os.replace(staging, path)
    return str(path)


def load_digit(space: Space, index: float = 0):
    """A held-out MNIST digit (never seen in training) as the image input. Returns: image file, caption."""
    index = as_int(index, "digit index", 0, len(space.digits) - 1)
    label = int(space.digit_labels[index])
    caption = f"Held-out MNIST digit #{index}: a **{label}**, never seen by the model in training."
    return digit_file(space, index), caption


def no_caption(*_: Any) -> str:
    """The caption of an image that is not a dataset digit (an upload or an example)."""
    return ""


def random_digit(space: Space) -> int:
    """The index of a random held-out digit."""
    return random.randrange(len(space.digits))


def as_int(value: Any, name: str, low: int, high: int) -> int:
    """A control's value as an int in [low, high], or a gr.Error naming the control."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(number) or number != int(number) or not low <= number <= high:
        raise gr.Error(f"{name} must be a whole number from {low} to {high}, got {value!r}.")
    return int(number)


def as_float(value: Any, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number, got {value!r}.") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise gr.Error(f"{name} must be between {low} and {high}, got {value!r}.")
    return number


def as_label(space: Space, digit: Any) -> int | None:
    """The digit control ("any" or "0".."9") -> a class label, or None for unconditional sampling."""
    if digit in (None, "", UNCONDITIONAL) or space.num_classes is None:
        return None
    return as_int(digit, "digit", 0, space.num_classes - 1)


def chain_settings(space: Space, digit, guidance, sampler, eta, steps, seed, batch, max_batch=MAX_BATCH) -> dict:
    if sampler not in SAMPLERS:
        raise gr.Error(f"Unknown sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}.")
    return {
        "label": as_label(space, digit),
        "guidance": as_float(guidance, "guidance scale", 0.0, 20.0),
        "sampler": sampler,
        "eta": as_float(eta, "eta", 0.0, 1.0) if sampler == "ddim" else 0.0,
        "steps": as_int(steps, "number of steps", 1, space.T),
        "seed": as_int(seed, "seed", 0, MAX_SEED),
        "batch": as_int(batch, "batch size", 1, max_batch),
    }


def stream_every(num_steps: int) -> int:
    """Push every k-th step to the browser, so that a chain shows at most STREAMED_FRAMES frames (plus the last)."""
    return max(1, math.ceil(num_steps / STREAMED_FRAMES))


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


# ---------------------------------------------------------------------------------------------------------------------
# The page's prose: Markdown files in space/text/, with {{name}} placeholders
# ---------------------------------------------------------------------------------------------------------------------


def text(name: str, **values: Any) -> str:
    """space/text/<name>.md with each {{key}} replaced by values[key] (LaTeX keeps its own braces)."""
    template = (TEXT_DIR / f"{name}.md").read_text(encoding="utf-8")

    def fill(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"space/text/{name}.md needs a value for {{{{{key}}}}}")
        return str(values[key])

    return re.sub(r"\{\{(\w+)\}\}", fill, template)
