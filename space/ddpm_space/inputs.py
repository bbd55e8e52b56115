"""What a visitor hands in, checked: uploads (any file becomes x_0 or a readable gr.Error), the held-out digits, and
the controls' values (a bad one becomes a gr.Error naming the control)."""

from __future__ import annotations

import math
import os
import random
import tempfile
from typing import Any

import gradio as gr
import torch
from PIL import Image

from ddpm_hub.data import preprocess_image

from .pictures import to_u8
from .state import MAX_SEED, SAMPLERS, UNCONDITIONAL, Space

# ---------------------------------------------------------------------------------------------------------------------
# Uploads and the held-out digits
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


# ---------------------------------------------------------------------------------------------------------------------
# The controls' values
# ---------------------------------------------------------------------------------------------------------------------


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
    """A control's value as a float in [low, high], or a gr.Error naming the control."""
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


def as_sampler(sampler: Any, allowed: tuple[str, ...] = tuple(SAMPLERS)) -> str:
    """The sampler control's value (a key of `SAMPLERS`), or a gr.Error naming the allowed ones."""
    if sampler not in allowed:
        raise gr.Error(f"Unknown sampler {sampler!r}: choose one of {', '.join(allowed)}.")
    return sampler


def as_guidance(value: Any) -> float:
    """w of classifier-free guidance."""
    return as_float(value, "guidance scale", 0.0, 20.0)


def as_eta(value: Any, sampler: str) -> float:
    """DDIM's eta; 0 for the DDPM samplers (their sigma_t comes from beta or beta-tilde)."""
    return as_float(value, "eta", 0.0, 1.0) if sampler == "ddim" else 0.0


def as_steps(space: Space, value: Any) -> int:
    return as_int(value, "number of steps", 1, space.T)


def as_seed(value: Any) -> int:
    return as_int(value, "seed", 0, MAX_SEED)


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with `seed`: a seed gives the same images on every host."""
    return torch.Generator().manual_seed(int(seed))
