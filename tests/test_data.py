"""Tests for ddpm_hub.data: mnist5k split, image folders, Hub datasets, preprocess_image, to_pil / to_uint8."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, features

import ddpm_hub.data as data
from ddpm_hub.data import (
    MNIST5K_HELD_OUT,
    ImageTensorDataset,
    load_hub_dataset,
    load_image_folder,
    load_mnist5k,
    mnist5k_split_indices,
    preprocess_image,
    rgb_to_luma,
    to_minus_one_one,
    to_pil,
    to_uint8,
    to_zero_one,
)


def _png_bytes(img: Image.Image, fmt: str = "PNG", **save_kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **save_kwargs)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------------------------
# mnist5k
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "split, n", [("train", 5000 - MNIST5K_HELD_OUT), ("held_out", MNIST5K_HELD_OUT), ("all", 5000)]
)
def test_mnist5k_shapes_ranges_and_sizes(split, n):
    images, labels = load_mnist5k(split)
    assert images.shape == (n, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (n,) and labels.dtype == torch.int64
    assert images.min().item() == -1.0 and images.max().item() == 1.0
    # White digits on black: most pixels are background (-1), the corners always are.
    assert (images == -1).float().mean() > 0.7
    assert (images[:, :, 0, 0] == -1).all()
    # Stratified: every digit equally often.
    assert torch.bincount(labels, minlength=10).tolist() == [n // 10] * 10


def test_mnist5k_split_is_disjoint_complete_and_consistent():
    train_idx, held_idx, all_idx = (mnist5k_split_indices(s) for s in ("train", "held_out", "all"))
    assert len(np.intersect1d(train_idx, held_idx)) == 0
    assert np.array_equal(np.union1d(train_idx, held_idx), all_idx)
    x_all, y_all = load_mnist5k("all")
    x_train, y_train = load_mnist5k("train")
    x_held, y_held = load_mnist5k("held_out")
    assert torch.equal(x_all[train_idx], x_train) and torch.equal(y_all[train_idx], y_train)
    assert torch.equal(x_all[held_idx], x_held) and torch.equal(y_all[held_idx], y_held)
    # No held-out image also appears (pixel for pixel) in the training split.
    train_rows = {row.tobytes() for row in x_train.numpy()}
    assert not any(row.tobytes() in train_rows for row in x_held.numpy())


def test_mnist5k_is_deterministic_and_returns_fresh_tensors():
    x1, y1 = load_mnist5k("held_out")
    x1.fill_(0.0)  # mutating the result must not leak into later calls
    x2, y2 = load_mnist5k("held_out")
    x3, y3 = load_mnist5k("held_out")
    assert torch.equal(x2, x3) and torch.equal(y1, y2) and torch.equal(y2, y3)
    assert x2.min().item() == -1.0
    with pytest.raises(ValueError, match="split"):
        load_mnist5k("test")


# ---------------------------------------------------------------------------------------------------------------------
# Image folders
# ---------------------------------------------------------------------------------------------------------------------


def _write_image(path: Path, value: int = 255, size=(8, 8), mode="L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value,) * 3).save(path)


def test_image_folder_labels_from_subfolders(tmp_path):
    _write_image(tmp_path / "zebra" / "a.png", 255)
    _write_image(tmp_path / "zebra" / "deeper" / "b.JPG", 255, mode="RGB")  # nested + upper-case extension
    _write_image(tmp_path / "apple" / "c.bmp", 0)
    _write_image(tmp_path / ".ipynb_checkpoints" / "d.png", 128)  # hidden folder: ignored
    (tmp_path / "apple" / "notes.txt").write_text("not an image")  # other extension: ignored
    images, labels, names = load_image_folder(tmp_path, resolution=16, channels=1)
    assert names == ["apple", "zebra"]
    assert images.shape == (3, 1, 16, 16) and images.dtype == torch.float32
    # Sorted paths: apple/c.bmp, zebra/a.png, zebra/deeper/b.JPG
    assert labels.tolist() == [0, 1, 1]
    assert torch.allclose(images[0], torch.full((1, 16, 16), -1.0))
    assert images[1].min() > 0.99 and images[2].min() > 0.95  # JPEG is lossy


def test_image_folder_without_subfolders_has_no_labels(tmp_path):
    for i in range(3):
        _write_image(tmp_path / f"{i}.png", 60 * i, size=(8, 4))
    images, labels, names = load_image_folder(tmp_path, resolution=8, channels=3)
    assert images.shape == (3, 3, 8, 8)
    assert labels is None and names is None
    # 8x4 image keeps its aspect ratio: padded with black above and below.
    assert (images[2, :, :2] == -1).all() and (images[2, :, 2:6] > -1).all()


def test_image_folder_mixed_layout_warns_and_drops_labels(tmp_path):
    _write_image(tmp_path / "loose.png")
    _write_image(tmp_path / "cls" / "x.png")
    with pytest.warns(UserWarning, match="sub-folders"):
        images, labels, names = load_image_folder(tmp_path, resolution=8, channels=1)
    assert images.shape[0] == 2 and labels is None and names is None


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_image_folder(tmp_path / "missing", 8, 1)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"no images found.*\.png"):
        load_image_folder(tmp_path / "empty", 8, 1)
    bad = tmp_path / "bad"
    _write_image(bad / "good.png")
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    with pytest.raises(ValueError, match="broken.png"):
        load_image_folder(bad, 8, 1)


# ---------------------------------------------------------------------------------------------------------------------
# Hub datasets (offline: the packaged "imagefolder" builder over a local folder)
# ---------------------------------------------------------------------------------------------------------------------


def test_load_hub_dataset_imagefolder_and_missing_columns(tmp_path):
    root = tmp_path / "ds"
    for cls, value in (("one", 255), ("zero", 0)):
        for i in range(2):
            _write_image(root / cls / f"{i}.png", value)
    cache = tmp_path / "cache"
    images, labels, names = load_hub_dataset(
        "imagefolder", data_dir=str(root), resolution=8, channels=1, cache_dir=cache
    )
    assert images.shape == (4, 1, 8, 8)
    assert names == ["one", "zero"]
    assert sorted(labels.tolist()) == [0, 0, 1, 1]
    for image, label in zip(images, labels, strict=True):
        assert image.mean().item() == (1.0 if label == 0 else -1.0)

    unconditional, none_labels, none_names = load_hub_dataset(
        "imagefolder", data_dir=str(root), resolution=8, channels=3, label_column=None, cache_dir=cache
    )
    assert unconditional.shape == (4, 3, 8, 8) and none_labels is None and none_names is None

    with pytest.raises(ValueError, match=r"no column.*'pixels'.*available columns: 'image', 'label'"):
        load_hub_dataset("imagefolder", data_dir=str(root), image_column="pixels", resolution=8, channels=1,
                         cache_dir=cache)  # fmt: skip
    with pytest.raises(ValueError, match=r"'digit'.*label_column=None"):
        load_hub_dataset("imagefolder", data_dir=str(root), label_column="digit", resolution=8, channels=1,
                         cache_dir=cache)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# preprocess_image
# ---------------------------------------------------------------------------------------------------------------------


def test_preprocess_grayscale_exact_values():
    arr = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    out = preprocess_image(Image.fromarray(arr, mode="L"), resolution=2, channels=1)
    assert out.shape == (1, 2, 2) and out.dtype == torch.float32
    assert torch.allclose(out[0], torch.tensor(arr / 127.5 - 1.0, dtype=torch.float32))
    # Same result from the numpy array, from a path and from bytes.
    assert torch.equal(preprocess_image(arr, 2, 1), out)
    assert torch.equal(preprocess_image(_png_bytes(Image.fromarray(arr)), 2, 1), out)


def test_preprocess_rgba_composited_on_black():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., :3] = 255  # white everywhere ...
    rgba[:2, :, 3] = 255  # ... opaque in the top half
    rgba[2:, :, 3] = 0  # ... fully transparent in the bottom half
    out = preprocess_image(Image.fromarray(rgba, mode="RGBA"), resolution=4, channels=1)
    assert torch.allclose(out[0, :2], torch.ones(2, 4)) and torch.allclose(out[0, 2:], -torch.ones(2, 4))
    rgba[..., 3] = 128  # half transparent white -> mid gray
    half = preprocess_image(rgba, 4, 3)
    assert half.shape == (3, 4, 4) and torch.allclose(half, torch.full_like(half, 128 / 255 * 2 - 1), atol=1e-5)
    la = Image.fromarray(rgba[..., [0, 3]], mode="LA")
    assert torch.allclose(preprocess_image(la, 4, 1), half[:1], atol=1e-5)


def test_preprocess_palette_with_transparency():
    img = Image.new("P", (4, 4), 0)
    img.putpalette([255, 255, 255, 255, 0, 0] + [0] * (254 * 3))  # index 0 white, 1 red
    img.putpixel((0, 0), 1)
    img.info["transparency"] = 0  # white is transparent -> black
    out = preprocess_image(img, 4, 3)
    assert out.shape == (3, 4, 4)
    assert torch.allclose(out[:, 1:, 1:], -torch.ones(3, 3, 3))
    assert out[:, 0, 0].tolist() == [1.0, -1.0, -1.0]  # opaque red stays red
    # Round trip through a GIF file (a palette format).
    gray = preprocess_image(_png_bytes(img.convert("RGB").convert("P"), "GIF"), 4, 1)
    assert gray.shape == (1, 4, 4)


def test_preprocess_16_bit():
    arr = np.array([[0, 65535], [32768, 16384]], dtype=np.uint16)
    img = Image.fromarray(arr)
    assert img.mode == "I;16"
    expected = torch.tensor(arr / 65535 * 2 - 1, dtype=torch.float32)[None]
    assert torch.allclose(preprocess_image(img, 2, 1), expected, atol=1e-6)
    assert torch.allclose(preprocess_image(arr, 2, 1), expected, atol=1e-6)
    # 16-bit PNG file.
    assert torch.allclose(preprocess_image(_png_bytes(img), 2, 1), expected, atol=1e-6)
    # 32-bit integer mode "I" holding 16-bit data.
    assert torch.allclose(preprocess_image(Image.fromarray(arr.astype(np.int32)), 2, 1), expected, atol=1e-6)


def test_preprocess_float_and_other_arrays():
    unit = np.array([[0.0, 1.0], [0.25, 0.5]], dtype=np.float64)
    expected = torch.tensor(unit * 2 - 1, dtype=torch.float32)[None]
    assert torch.allclose(preprocess_image(unit, 2, 1), expected)
    assert torch.allclose(preprocess_image(unit * 255, 2, 1), expected)  # float on the 0..255 scale
    assert torch.allclose(preprocess_image(unit.astype(np.float32)[:, :, None], 2, 1), expected)  # (H, W, 1)
    assert torch.allclose(preprocess_image(np.array([[False, True]] * 2), 2, 1)[0, 0], torch.tensor([-1.0, 1.0]))
    # (C, H, W) is recognised when the last axis cannot be channels (more than 4 long).
    big = np.kron(unit, np.ones((3, 3)))  # 6 x 6
    chw = np.stack([big] * 3).astype(np.float32)
    assert torch.allclose(preprocess_image(chw, 6, 3), preprocess_image(big, 6, 1).expand(3, 6, 6))


def test_preprocess_channel_conversion():
    red = Image.new("RGB", (3, 3), (255, 0, 0))
    gray = preprocess_image(red, 3, 1)
    assert gray.shape == (1, 3, 3)
    assert torch.allclose(gray, torch.full_like(gray, 0.299 * 2 - 1), atol=1e-5)  # ITU-R 601 luma
    rgb = preprocess_image(Image.new("L", (3, 3), 200), 3, 3)
    assert rgb.shape == (3, 3, 3) and torch.equal(rgb[0], rgb[1]) and torch.equal(rgb[1], rgb[2])
    with pytest.raises(ValueError, match="channels"):
        preprocess_image(red, 3, 2)


def test_preprocess_keeps_aspect_ratio_and_resizes():
    wide = np.full((10, 20), 255, dtype=np.uint8)  # 20 wide, 10 high
    out = preprocess_image(wide, 8, 1)[0]
    assert out.shape == (8, 8)
    assert (out[:2] == -1).all() and (out[-2:] == -1).all()  # black bars above and below
    assert (out[2:6] > 0.99).all()
    assert preprocess_image(np.zeros((28, 28), np.uint8), 64, 3).shape == (3, 64, 64)  # upscaling


def test_preprocess_1x1():
    out = preprocess_image(Image.new("L", (1, 1), 255), 28, 1)
    assert out.shape == (1, 28, 28) and torch.allclose(out, torch.ones_like(out))
    assert preprocess_image(np.array([[0.5]]), 4, 3).shape == (3, 4, 4)


def test_preprocess_huge_image():  # its speed is a benchmark's business, not a test's
    big = Image.new("L", (6000, 4000), 0)
    big.paste(255, (0, 0, 3000, 4000))  # left half white
    jpeg = _png_bytes(big, "JPEG", quality=90)
    from_jpeg = preprocess_image(jpeg, 28, 1)[0]
    from_pil = preprocess_image(big, 28, 1)[0]
    for out in (from_jpeg, from_pil):
        # 3:2 -> 28 x 19 content, 4-5 black rows above and below; left half white, right half black.
        assert (out[:4] == -1).all() and (out[-4:] == -1).all()
        assert out[6:22, :12].min() > 0.9 and out[6:22, 16:].max() < -0.9


def test_preprocess_applies_exif_orientation():
    img = Image.new("L", (20, 10), 255)  # stored landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° CW to display": displayed portrait
    out = preprocess_image(_png_bytes(img, "JPEG", exif=exif.tobytes()), 8, 1)[0]
    assert (out[:, :2] < -0.9).all() and (out[:, -2:] < -0.9).all()  # bars left and right, not top and bottom
    assert (out[:, 3:5] > 0.9).all()


def test_preprocess_animated_gif_uses_first_frame():
    frames = [Image.new("L", (6, 6), v) for v in (255, 0, 128)]
    gif = _png_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(gif)).n_frames == 3
    assert torch.allclose(preprocess_image(gif, 6, 1), torch.ones(1, 6, 6))
    opened = Image.open(io.BytesIO(gif))
    opened.seek(1)
    assert torch.allclose(preprocess_image(opened, 6, 1), torch.ones(1, 6, 6))
    assert opened.tell() == 1  # the caller's frame is restored


@pytest.mark.skipif(not features.check("webp"), reason="Pillow without WebP support")
def test_preprocess_animated_webp_uses_first_frame():
    frames = [Image.new("RGB", (6, 6), (v, v, v)) for v in (255, 0)]
    webp = _png_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50, lossless=True)
    assert Image.open(io.BytesIO(webp)).n_frames == 2
    assert torch.allclose(preprocess_image(webp, 6, 1), torch.ones(1, 6, 6), atol=1e-2)


def test_preprocess_invert():
    paper = np.full((28, 28), 255, dtype=np.uint8)
    paper[6:22, 12:16] = 0  # a black "1" on white paper
    auto = preprocess_image(paper, 28, 1, invert="auto")[0]
    assert auto[0, 0] == -1 and auto[14, 14] == 1  # now white on black
    assert torch.equal(auto, preprocess_image(paper, 28, 1, invert=True)[0])
    plain = preprocess_image(paper, 28, 1)[0]
    assert plain[0, 0] == 1 and plain[14, 14] == -1
    digit = load_mnist5k("held_out")[0][0, 0]  # already white on black: "auto" leaves it alone
    mnist_u8 = ((digit + 1) * 127.5).round().numpy().astype(np.uint8)
    assert torch.equal(preprocess_image(mnist_u8, 28, 1, invert="auto")[0], digit)
    # Inversion happens before padding: the padding stays black.
    wide = np.full((14, 28), 255, dtype=np.uint8)
    wide[5:9, 10:18] = 0
    out = preprocess_image(wide, 28, 1, invert="auto")[0]
    assert (out[:7] == -1).all() and (out[7:21, 0] == -1).all() and (out[7 + 6, 14] == 1)


def test_preprocess_rejects_non_images(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("certainly not an image\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    truncated = _png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)))
    cases = {
        "bytes": (b"\x00\x01 definitely not an image", "not an image"),
        "empty bytes": (b"", "empty"),
        "text file": (text, "notes.txt"),
        "empty file": (empty, "empty"),
        "missing file": (tmp_path / "nope.png", "does not exist"),
        "folder": (tmp_path, "folder"),
        "truncated": (truncated[: len(truncated) // 2], "truncated|corrupt|could not"),
        "zero-size array": (np.zeros((0, 4), dtype=np.uint8), "empty"),
        "object array": (np.array([[None, 1]], dtype=object), "dtype"),
        "complex array": (np.ones((4, 4), dtype=np.complex64), "dtype"),
        "string array": (np.array([["a", "b"]]), "dtype"),
        "nan array": (np.full((4, 4), np.nan), "NaN"),
        "5-d array": (np.zeros((2, 2, 2, 2, 2), dtype=np.float32), "shape"),
        "negative ints": (np.full((4, 4), -3, dtype=np.int32), "range"),
        "int": (42, "int"),
        "None": (None, "NoneType"),
    }
    for name, (value, message) in cases.items():
        with pytest.raises(ValueError, match=message) as info:
            preprocess_image(value, 8, 1)
        assert "Traceback" not in str(info.value), name
        assert info.value.__cause__ is None or isinstance(info.value.__cause__, ValueError), name


def test_preprocess_decompression_bomb_guard(monkeypatch):
    monkeypatch.setattr(data, "MAX_IMAGE_PIXELS", 32 * 32)
    preprocess_image(Image.new("L", (32, 32)), 8, 1)  # at the limit: fine
    png = _png_bytes(Image.new("L", (33, 33)))
    with pytest.raises(ValueError, match="too large"):
        preprocess_image(png, 8, 1)
    with pytest.raises(ValueError, match="too large"):
        preprocess_image(np.zeros((40, 40), dtype=np.float32), 8, 1)
    monkeypatch.setattr(data, "MAX_IMAGE_PIXELS", None)
    assert preprocess_image(png, 8, 1).shape == (1, 8, 8)


# ---------------------------------------------------------------------------------------------------------------------
# Back to pixels; torch Dataset
# ---------------------------------------------------------------------------------------------------------------------


def test_to_uint8_and_to_pil_round_trip():
    images = load_mnist5k("held_out")[0][:5]
    u8 = to_uint8(images)
    assert u8.shape == (5, 28, 28, 1) and u8.dtype == np.uint8
    assert to_uint8(images[0]).shape == (28, 28, 1)
    pils = to_pil(images)
    assert len(pils) == 5 and all(p.mode == "L" and p.size == (28, 28) for p in pils)
    back = torch.stack([preprocess_image(p, 28, 1) for p in pils])
    assert torch.equal(back, images)  # exact: mnist5k values are k / 127.5 - 1
    assert len(to_pil(images[0])) == 1

    rgb = torch.rand(2, 3, 5, 7) * 2 - 1
    rgb_pils = to_pil(rgb)
    assert rgb_pils[0].mode == "RGB" and rgb_pils[0].size == (7, 5)
    assert torch.allclose(torch.stack([preprocess_image(p, 7, 3)[:, 1:6] for p in rgb_pils]), rgb, atol=1 / 255)
    clamped = to_uint8(torch.tensor([[[[-3.0, -1.0, 0.0, 1.0, 5.0]]]]))
    assert clamped.ravel().tolist() == [0, 0, 128, 255, 255]


def test_image_tensor_dataset_with_dataloader():
    images, labels = load_mnist5k("held_out")
    ds = ImageTensorDataset(images[:10], labels[:10])
    assert len(ds) == 10
    item = ds[3]
    assert item["images"].shape == (1, 28, 28) and item["labels"] == int(labels[3])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["images"].shape == (4, 1, 28, 28) and batch["labels"].dtype == torch.int64
    assert torch.equal(batch["images"], images[:4])  # no flipping by default
    unlabelled = next(iter(torch.utils.data.DataLoader(ImageTensorDataset(images[:4]), batch_size=4)))
    assert set(unlabelled) == {"images"}
    flipped = ImageTensorDataset(images[:1], random_flip=True)
    seen = {torch.equal(flipped[0]["images"], images[0].flip(-1)) for _ in range(40)}
    assert seen == {True, False}
    with pytest.raises(ValueError):
        ImageTensorDataset(images[:3], labels[:2])


# ---------------------------------------------------------------------------------------------------------------------
# The value-range and luma conversions: written once, in ddpm_hub/data.py
# ---------------------------------------------------------------------------------------------------------------------


def test_range_conversions_round_trip_and_match_to_uint8():
    unit = torch.linspace(0, 1, 11)
    signed = to_minus_one_one(unit)
    assert signed[0] == -1 and signed[-1] == 1 and torch.allclose(to_zero_one(signed), unit)
    assert np.allclose(to_minus_one_one(unit.numpy()), signed.numpy())
    images, _ = load_mnist5k("held_out")
    assert torch.equal(to_minus_one_one(torch.from_numpy(to_uint8(images)).movedim(-1, 1) / 255.0), images)


def test_rgb_to_luma_is_pil_s_conversion_for_tensors_and_arrays():
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    pil_gray = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)
    from_array = rgb_to_luma(rgb.astype(np.float32), channel_dim=-1)[:, :, 0]
    from_tensor = rgb_to_luma(torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None])[0, 0]
    assert np.abs(from_array - pil_gray).max() <= 0.5 + 1e-3  # PIL rounds to integers
    np.testing.assert_allclose(from_tensor.numpy(), from_array, rtol=1e-6)


def test_luma_weights_are_written_once():
    """Every RGB -> gray conversion (data, evaluation, training, benchmarks, Space) calls ddpm_hub.data."""
    root = Path(__file__).resolve().parents[1]
    sources = [p for folder in ("ddpm_hub", "training", "benchmarks", "space") for p in (root / folder).rglob("*.py")]
    sources = [p for p in sources if "default_model" not in p.parts]  # a saved pipeline's code copies
    holders = sorted(str(p.relative_to(root)) for p in sources if "0.587" in p.read_text(encoding="utf-8"))
    assert holders == ["ddpm_hub/data.py"]


def test_one_decoding_path_for_pil_images_and_arrays():
    """A PIL image, its uint8 array and its float array decode alike, resized or not; a large image is box-reduced
    in 8 bits first, which moves no pixel by more than about one 8-bit level."""
    rng = np.random.default_rng(0)
    rgba = (rng.random((45, 60, 4)) * 255).astype(np.uint8)
    for size in (60, 20):
        from_pil = preprocess_image(Image.fromarray(rgba), size, 3)
        torch.testing.assert_close(preprocess_image(rgba, size, 3), from_pil, rtol=0, atol=1e-6)
        torch.testing.assert_close(preprocess_image(rgba / 255.0, size, 3), from_pil, rtol=0, atol=1e-5)
    y, x = np.mgrid[0:600, 0:800]
    large = np.stack([x / 800, y / 600, (x + y) / 1400, 1 - y / 1200], axis=-1)  # smooth RGBA ramps
    large = np.round(large * 255).astype(np.uint8)
    reduced = preprocess_image(Image.fromarray(large), 28, 1)
    assert (reduced - preprocess_image(large.astype(np.float32) / 255, 28, 1)).abs().max() <= 2 * 2 / 255
