"""The page's pictures: uint8 grids of tensors, upscaled with nearest neighbour; and picture outputs written once,
atomically, so that a picture being served is never rewritten.

Gradio 6.31 caches an image output under a content-hash name and rewrites that file on every save:
`gr.Image.postprocess` -> `image_utils.postprocess_image` -> `image_utils.save_image` ->
`processing_utils.save_img_array_to_cache` -> `processing_utils.save_pil_to_cache`, which ends in
`Path(...).write_bytes(...)` (open with truncation, then write) even when the file exists. The page shows the same
frame often (x_T in two panels, both samplers' first frame, the same digit for two visitors), so a file can be
truncated while `/gradio_api/file=` is serving it: Starlette's FileResponse has sent its Content-Length from
`stat()` and then reads fewer bytes ("Too little data for declared Content-Length"), or serves the empty file; the
browser shows a broken picture. (gradio-app/gradio#10279 reports the same.)

`written_once(gr.Image(...))` saves the component's arrays with `save_picture`: PNG bytes under a content-hash folder
of Gradio's cache, written under a temporary name and renamed into place (`os.replace`), and never written again once
there. A path inside Gradio's cache is then served as it is (`Block.move_resource_to_block_cache` copies nothing).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import tempfile
import types
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ddpm_hub.data import to_uint8

SCALE = 4  # display upscaling, nearest neighbour (28 px -> 112 px)
EPS_RANGE = 3.0  # the predicted noise is shown with -3..3 mapped to black..white
GAP = 2  # pixels between the images of a grid (before upscaling)
GRID_BACKGROUND = 64  # gray between the images of a grid
FONT = ImageFont.load_default(size=14)

# ---------------------------------------------------------------------------------------------------------------------
# Grids: uint8 pictures of (B, C, H, W) tensors
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


def signed(images: torch.Tensor) -> np.ndarray:
    """A signed map (B, C, H, W) shown with its own largest |value| as black (-) / white (+): a grid, or one picture
    for B = 1."""
    largest = float(images.abs().max())
    return grid(to_u8(images, largest if largest > 0 else 1.0))


def strip_picture(timesteps: list[int], rows: dict[str, np.ndarray], scale: int = 3) -> np.ndarray:
    """Rows of uint8 (len(timesteps), H, W, C) images -> one labelled picture: a row per name, a column per t."""
    tile, gap, left, top = next(iter(rows.values())).shape[1] * scale, 6, 64, 24
    canvas = Image.new("L", (left + len(timesteps) * (tile + gap), top + len(rows) * (tile + gap)), 255)
    draw = ImageDraw.Draw(canvas)
    for column, t in enumerate(timesteps):
        draw.text((left + column * (tile + gap) + tile // 2, top // 2), f"t = {t}", fill=40, font=FONT, anchor="mm")
    for row, (name, images) in enumerate(rows.items()):
        y = top + row * (tile + gap)
        draw.text((left - 8, y + tile // 2), name, fill=40, font=FONT, anchor="rm")
        for column in range(len(timesteps)):
            canvas.paste(
                Image.fromarray(grid(images[column : column + 1], scale=scale)), (left + column * (tile + gap), y)
            )
    return np.asarray(canvas)


# ---------------------------------------------------------------------------------------------------------------------
# Picture outputs written once
# ---------------------------------------------------------------------------------------------------------------------

NAME = "picture.png"
SALT = b"ddpm-hub picture\0"  # keeps these folders apart from the ones Gradio's own writers name by content hash
# zlib level of the page's PNGs. A streamed chain's pictures are mostly noise, which no level compresses much: level 1
# encodes the Generate grid (8 digits, 232 x 472) in 5 ms where PIL's default (6) takes 13 ms, for a file 1% larger
# (11.2 vs 11.3 kB). With 8 visitors streaming, encoding shares the Space's two cores with the U-Net.
PNG_COMPRESS_LEVEL = 1


def png_bytes(image: np.ndarray | Image.Image) -> bytes:
    """A uint8 array (H, W) or (H, W, C), or a PIL image, as PNG bytes (lossless; fast zlib level)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image.astype(np.uint8, copy=False))
    with io.BytesIO() as buffer:
        image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        return buffer.getvalue()


def save_picture(image: np.ndarray | Image.Image, cache_dir: str | os.PathLike) -> str:
    """Writes `image` as `cache_dir/<sha256 of its PNG>/picture.png` unless that file exists; returns its path.

    The file appears complete or not at all (temporary name, then `os.replace`), and an existing one is only touched
    (Gradio's `delete_cache` ages files by their ctime), never rewritten: a request serving it reads what it sized.
    Two threads writing the same picture at once each replace it with identical bytes.
    """
    data = png_bytes(image)
    folder = Path(cache_dir) / hashlib.sha256(SALT + data).hexdigest()
    path = folder / NAME
    if path.is_file():
        try:
            os.utime(path)
            return str(path)
        except FileNotFoundError:  # deleted by the cache cleaner just now: write it again
            pass
    folder.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(dir=folder, prefix=f".{NAME}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return str(path)


def postprocess(image: gr.Image, value):
    """`gr.Image.postprocess` with arrays and PIL images saved by `save_picture` instead of Gradio's cache writer."""
    if isinstance(value, (np.ndarray, Image.Image)):
        value = save_picture(value, image.GRADIO_CACHE)
    return gr.Image.postprocess(image, value)


def written_once(image: gr.Image) -> gr.Image:
    """`image` with its outputs written by `save_picture` (once, atomically). Not a subclass: Gradio writes a `.pyi`
    stub next to the module of every Component subclass when the class is defined."""
    image.postprocess = types.MethodType(postprocess, image)
    return image


def is_written_once(image: gr.Image) -> bool:
    return getattr(image.postprocess, "__func__", None) is postprocess
