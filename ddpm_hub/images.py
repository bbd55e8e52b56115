"""One image -> a ``(C, H, W)`` tensor in ``[-1, 1]`` (:func:`preprocess_image`), and back (:func:`to_uint8`,
:func:`to_pil`).

The conversion every source of :mod:`ddpm_hub.data` and the Space's uploads go through (see that module's docstring
for its rules). It builds on :mod:`ddpm_hub.data`'s value ranges, luma weights and ``MAX_IMAGE_PIXELS`` (read there at
each call, so setting ``ddpm_hub.data.MAX_IMAGE_PIXELS`` takes effect); :mod:`ddpm_hub.data` re-exports the public
names here, so ``from ddpm_hub.data import preprocess_image`` keeps working.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from . import data
from .data import rgb_to_luma, to_minus_one_one, to_zero_one

__all__ = ["preprocess_image", "to_pil", "to_uint8"]


# ---------------------------------------------------------------------------------------------------------------------
# preprocess_image
# ---------------------------------------------------------------------------------------------------------------------


def _describe(image: Any) -> str:
    if isinstance(image, Image.Image):
        image = getattr(image, "filename", None) or None
    if isinstance(image, (str, os.PathLike)):
        return f"'{os.fspath(image)}'"
    name = getattr(image, "name", None)  # open file objects
    if isinstance(name, str):
        return f"'{name}'"
    return "the input"


def _check_pixels(width: int, height: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"{what} has no pixels (size {width}x{height})")
    limit = data.MAX_IMAGE_PIXELS  # read at each call: tests and callers set it on ddpm_hub.data
    if limit is not None and width * height > limit:
        raise ValueError(
            f"{what} is too large ({width}x{height} = {width * height:,} pixels, the limit is {limit:,}); this "
            "guards against decompression bombs. Downscale it first, or raise ddpm_hub.data.MAX_IMAGE_PIXELS."
        )


def _open_image(source: Any) -> Image.Image:
    """Open a path / bytes / file object lazily (header only) with human error messages."""
    what = _describe(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ValueError(f"image file {what} does not exist")
        if path.is_dir():
            raise ValueError(f"{what} is a folder, not an image file (use load_image_folder for folders)")
        if path.stat().st_size == 0:
            raise ValueError(f"image file {what} is empty (0 bytes)")
        fp: Any = path
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ValueError("the image data is empty (0 bytes)")
        fp = io.BytesIO(bytes(source))
    else:  # a binary file object
        fp = source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we apply our own limit below
            return Image.open(fp)
    except Image.DecompressionBombError as err:
        raise ValueError(f"{what} is too large to decode safely ({err})") from None
    except UnidentifiedImageError:
        raise ValueError(
            f"{what} is not an image Pillow can read (unknown or corrupt format; expected e.g. PNG, JPEG, GIF, "
            "WebP, BMP or TIFF)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ValueError(f"could not read {what} as an image: {err}") from None


def _array_to_float(arr: np.ndarray) -> np.ndarray:
    """numpy image -> float32 (H, W, C) in [0, 1] with C in {1, 2, 3, 4} (2 = gray + alpha, 4 = RGBA)."""
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(
            f"unsupported array dtype {arr.dtype} for an image (expected uint8, uint16, other integers, bool or float)"
        )
    if arr.size == 0:
        raise ValueError(f"the image array is empty (shape {arr.shape})")
    if arr.ndim == 3 and arr.shape[-1] not in (1, 2, 3, 4) and arr.shape[0] in (1, 2, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(
            f"an image array must be (H, W) or (H, W, C) with C in 1..4 (or (C, H, W)), got shape {arr.shape}"
        )
    _check_pixels(arr.shape[1], arr.shape[0], "the image array")
    kind = arr.dtype.kind
    if kind == "b":
        return arr.astype(np.float32)
    if kind == "f":
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise ValueError("the image array contains NaN or infinite values")
        if out.max() > 1.0:  # float data on the 0..255 scale
            out = out / 255.0
        return np.clip(out, 0.0, 1.0)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > 65535:
        raise ValueError(
            f"integer image values must lie in 0..255 (8-bit) or 0..65535 (16-bit), got the range {lo}..{hi}"
        )
    return arr.astype(np.float32) / (255.0 if hi <= 255 else 65535.0)


def _pil_to_float(img: Image.Image) -> np.ndarray:
    """Loaded PIL image -> float32 (H, W, C) in [0, 1], C in {1, 2, 3, 4} (alpha kept as the last channel)."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(img, dtype=np.float32)[:, :, None] / 65535.0
    if mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size else 0.0
        # 32-bit integer images: 0..255 data is taken as 8-bit, anything larger as 16-bit (the usual source).
        scale = 255.0 if hi <= 255 else max(65535.0, float(hi))
        return np.clip(arr / scale, 0.0, 1.0).astype(np.float32)[:, :, None]
    if mode == "F":
        return _array_to_float(np.asarray(img, dtype=np.float32))
    if mode in ("RGBa", "La"):  # premultiplied alpha = already composited on black
        bands = img.split()[:-1]
        return np.stack([np.asarray(b, dtype=np.float32) / 255.0 for b in bands], axis=-1)
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA")
    elif mode == "1":
        img = img.convert("L")
    elif mode not in ("L", "LA", "RGB", "RGBA"):  # CMYK, YCbCr, LAB, HSV, RGBX, ...
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr if arr.ndim == 3 else arr[:, :, None]


def _resize_float(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize float (H, W, C) to ``size`` = (width, height) per channel with LANCZOS in Pillow's "F" mode."""
    if (arr.shape[1], arr.shape[0]) == size:
        return arr
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(arr[:, :, c])).resize(size, Image.Resampling.LANCZOS))
        for c in range(arr.shape[-1])
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0)


def _target_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    scale = resolution / max(width, height)
    return max(1, min(resolution, round(width * scale))), max(1, min(resolution, round(height * scale)))


def _should_invert(gray: np.ndarray) -> bool:
    """True when the border of a (H, W) image is brighter than its centre (dark ink on light paper)."""
    h, w = gray.shape
    if h < 3 or w < 3:
        return False
    bh, bw = max(1, h // 8), max(1, w // 8)
    border = np.concatenate([gray[:bh].ravel(), gray[-bh:].ravel(), gray[:, :bw].ravel(), gray[:, -bw:].ravel()])
    centre = gray[h // 4 : h - h // 4, w // 4 : w - w // 4]
    return float(border.mean()) > float(centre.mean())


def preprocess_image(
    image: Any,
    resolution: int,
    channels: int,
    *,
    invert: bool | Literal["auto"] = False,
) -> torch.Tensor:
    """Convert one image to a float32 tensor ``(channels, resolution, resolution)`` in ``[-1, 1]``.

    This is the single conversion used everywhere (training data, evaluation, the Gradio Space's uploads).

    Args:
        image: a ``PIL.Image``; a numpy array ``(H, W)``, ``(H, W, C)`` (or ``(C, H, W)``) with C in 1..4 of dtype
            uint8 (0..255), uint16 (0..65535), other integers (0..255, or 0..65535 when larger values occur), bool,
            or float (``[0, 1]``; taken as ``[0, 255]`` when the maximum exceeds 1); a file path; raw file
            ``bytes``; or a binary file object.
        resolution: side of the square output.
        channels: 1 (grayscale, ITU-R 601 luma from RGB) or 3 (RGB; grayscale is repeated).
        invert: ``True`` inverts the image (for black-on-white digit photos); ``"auto"`` inverts when the image's
            border is brighter than its centre; ``False`` (default) leaves it as is. Inversion happens before the
            black padding.

    Handling: alpha (RGBA, LA, palette with transparency) is composited on black; palette ("P") images go via
    RGBA; 16-bit ("I;16") images are divided by 65535; EXIF orientation is applied; animated GIF/WebP use their
    first frame; huge JPEGs are decoded at reduced size (``Image.draft``) and large images are downscaled with
    Pillow's reducing resize. The aspect ratio is kept: the image is resized (LANCZOS) so its longer side is
    ``resolution`` and the shorter side is padded with black, centred (= pad to a square, then resize).

    Raises:
        ValueError: with a readable message for anything that is not a usable image (unreadable / corrupt / empty
            file, non-image bytes, text file, empty or wrongly typed array, more than :data:`MAX_IMAGE_PIXELS`).
    """
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if invert not in (True, False, "auto"):
        raise ValueError(f"invert must be True, False or 'auto', got {invert!r}")

    if isinstance(image, torch.Tensor):
        raise ValueError(
            "preprocess_image takes PIL images, numpy arrays, file paths or bytes, not torch tensors "
            "(tensors are assumed to be preprocessed already)"
        )

    return _finish(_decode(image, resolution), resolution, channels, invert)


def _decode(image: Any, resolution: int) -> np.ndarray:
    """The one decoding path: any accepted source -> float32 (h, w, C) in [0, 1], alpha composited on black, resized
    (LANCZOS) so that its longer side is ``resolution``. Files and bytes are opened as PIL images; PIL images and
    numpy arrays become floats (:func:`_pil_to_float`, :func:`_array_to_float`), and the rest is shared."""
    if isinstance(image, np.ndarray):
        arr = _array_to_float(image)
    else:
        if isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(image, "read"):
            image = _open_image(image)
        elif not isinstance(image, Image.Image):
            raise ValueError(
                f"cannot make an image out of a {type(image).__name__}; expected a PIL image, a numpy array, a file "
                "path or bytes"
            )
        what = _describe(image)
        try:
            arr = _pil_frame_to_float(image, resolution)
        except ValueError:
            raise
        except (OSError, SyntaxError, EOFError, IndexError, KeyError, TypeError) as err:  # truncated / corrupt data
            raise ValueError(f"could not decode {what} (the file is truncated or corrupt: {err})") from None
    arr = _composite(arr)
    return _resize_float(arr, _target_size(arr.shape[1], arr.shape[0], resolution))


def _pil_frame_to_float(img: Image.Image, resolution: int) -> np.ndarray:
    """The first frame of a PIL image, EXIF orientation applied, as float (H, W, C) (:func:`_pil_to_float`); huge
    JPEGs are decoded at reduced size (>= 2x the target, DCT scaling). The caller's frame is restored."""
    _check_pixels(img.width, img.height, _describe(img))
    original = img
    frame = img.tell() if getattr(img, "is_animated", False) else 0
    if frame:
        img.seek(0)  # animated images: first frame
    try:
        tw, th = _target_size(img.width, img.height, resolution)
        if max(img.width, img.height) > 2 * resolution and img.format == "JPEG":
            img.draft(img.mode, (min(img.width, 2 * tw), min(img.height, 2 * th)))
        img.load()
        img = ImageOps.exif_transpose(img)
        # A large image is first box-reduced in 8 bits to >= 2x the target (as Pillow's `reducing_gap` does), with
        # alpha premultiplied (= composited on black, as the float path does), then converted to floats.
        tw, th = _target_size(img.width, img.height, resolution)
        factor = min(img.width // (2 * tw), img.height // (2 * th))
        if factor >= 2 and img.mode in ("L", "LA", "RGB", "RGBA", "P", "PA", "1"):
            img = img.convert("RGBA") if img.mode in ("P", "PA") else img
            img = img.convert({"LA": "La", "RGBA": "RGBa", "1": "L"}.get(img.mode, img.mode)).reduce(factor)
        return _pil_to_float(img)
    finally:
        if frame:
            try:
                original.seek(frame)  # restore the caller's frame (best effort)
            except Exception:
                pass


def _composite(arr: np.ndarray) -> np.ndarray:
    """float (H, W, C): drop an alpha channel (C = 2 or 4) by compositing on black, i.e. colour * alpha."""
    if arr.shape[-1] in (2, 4):
        return arr[:, :, :-1] * arr[:, :, -1:]
    return arr


def _finish(arr: np.ndarray, resolution: int, channels: int, invert: bool | str) -> torch.Tensor:
    """float (h, w, C) in [0, 1] without alpha (h, w <= resolution) -> channels, invert, pad -> (C, res, res)."""
    if channels == 1 and arr.shape[-1] == 3:
        arr = rgb_to_luma(arr, channel_dim=-1)
    elif channels == 3 and arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if invert == "auto":
        invert = _should_invert(arr.mean(axis=-1))
    if invert:
        arr = 1.0 - arr
    h, w = arr.shape[:2]
    out = np.zeros((resolution, resolution, channels), dtype=np.float32)
    top, left = (resolution - h) // 2, (resolution - w) // 2
    out[top : top + h, left : left + w] = arr
    return to_minus_one_one(torch.from_numpy(out).permute(2, 0, 1).contiguous()).clamp_(-1.0, 1.0)


# ---------------------------------------------------------------------------------------------------------------------
# Back to pixels
# ---------------------------------------------------------------------------------------------------------------------


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Map ``[-1, 1]`` images to uint8 ``[0, 255]`` (clamped, rounded), channels last.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)`` tensor / array in ``[-1, 1]``.

    Returns:
        uint8 array ``(B, H, W, C)`` or ``(H, W, C)``.
    """
    x = torch.as_tensor(images).detach().to("cpu", torch.float32)
    if x.ndim not in (3, 4):
        raise ValueError(f"expected (B, C, H, W) or (C, H, W) images, got shape {tuple(x.shape)}")
    x = (to_zero_one(x.clamp(-1.0, 1.0)) * 255.0).round().to(torch.uint8)
    return x.movedim(-3, -1).contiguous().numpy()


def to_pil(images: torch.Tensor | np.ndarray) -> list[Image.Image]:
    """``(B, C, H, W)`` or ``(C, H, W)`` images in ``[-1, 1]`` → list of PIL images (1 channel → mode "L",
    3 → "RGB", 4 → "RGBA"). A single ``(C, H, W)`` image gives a list of one."""
    arr = to_uint8(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"to_pil needs 1, 3 or 4 channels, got {arr.shape[-1]}")
    if arr.shape[-1] == 1:
        return [Image.fromarray(a[:, :, 0], mode="L") for a in arr]
    return [Image.fromarray(a) for a in arr]
