"""The Gradio Space (space/app.py): its step functions called directly, then the launched app through gradio_client.

The app is imported with DDPM_HUB_MODEL pointing at a tiny randomly initialised pipeline (T = 50), so every chain
runs in well under a second.
"""

import importlib.util
import json
import math
import os
import re
import socket
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

gr = pytest.importorskip("gradio", reason="the Space needs gradio (pip install -e .[space])")
pytest.importorskip("matplotlib", reason="the Space needs matplotlib (pip install -e .[space])")

from ddpm_space import chains, text  # noqa: E402
from ddpm_space import pictures as pics  # noqa: E402

from ddpm_hub import UNET_PRESETS, DDPMHubPipeline, DDPMHubScheduler, DDPMHubUNet2DModel  # noqa: E402

# gradio's queue uses pandas in ways pandas 3 deprecates; not this package's concern.
pytestmark = pytest.mark.filterwarnings(
    "ignore:'future.no_silent_downcasting' is deprecated", "ignore:The copy keyword is deprecated"
)

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "space"
T = 50  # num_train_timesteps of the test model
SCALE, GAP, GIF_SCALE = 4, 2, 2  # the Space's display upscaling, gaps in a grid, GIF upscaling (checked below)


def save_tiny_pipeline(folder: Path, num_train_timesteps: int = T, prediction_type: str = "epsilon") -> Path:
    """A tiny random pipeline. Its zero-initialised layers (the residual branches, the output) get small random
    weights too, so that its prediction depends on x_t, t and the label (a fresh U-Net predicts zeros)."""
    torch.manual_seed(0 if prediction_type == "epsilon" else 1)
    unet = DDPMHubUNet2DModel(**UNET_PRESETS["tiny"])
    with torch.no_grad():
        for parameter in unet.parameters():
            if not parameter.any():
                parameter.normal_(0, 0.1)
    scheduler = DDPMHubScheduler(num_train_timesteps=num_train_timesteps, prediction_type=prediction_type)
    DDPMHubPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
    return folder


CURVE_W = (0.0, 1.0, 1.5, 2.0)  # the guidance curve recorded in the test model's evaluation.json
CURVE_ACCURACY = (0.1, 0.95, 0.992, 1.0)
CURVE_FRECHET = (40.0, 3.0, 3.6, 6.0)


def record_guidance_curve(folder: Path) -> None:
    """What `bench_nfe.py --curve guidance --record_in_model` writes: the points, the rule's choice, the plot."""
    from PIL import Image

    points = [
        {"scheduler": "DDPMHubScheduler", "family": "ddpm", "steps": 100, "guidance_scale": w, "num_samples": 200,
         "nfe_per_image": 100 if w in (0, 1) else 200, "mean_accuracy": a, "frechet_distance": f,
         "frechet_distance_real": 2.4}
        for w, a, f in zip(CURVE_W, CURVE_ACCURACY, CURVE_FRECHET, strict=True)
    ]  # fmt: skip
    curve = {"num_samples": 200, "points": points, "recommended_guidance_scale": 1.5, "plot": "eval_guidance.png",
             "command": "python benchmarks/bench_nfe.py --curve guidance", "rule": "the rule"}  # fmt: skip
    (folder / "evaluation.json").write_text(json.dumps({"guidance_curve": curve}))
    Image.new("RGB", (60, 40), "white").save(folder / "eval_guidance.png")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """space/app.py imported as a module, with the tiny models (the env vars are read at import time): one that
    predicts the noise, and question 3's x_0-predicting one."""
    model = save_tiny_pipeline(tmp_path_factory.mktemp("tiny_pipeline"))
    record_guidance_curve(model)
    x0_model = save_tiny_pipeline(tmp_path_factory.mktemp("tiny_x0_pipeline"), prediction_type="sample")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DDPM_HUB_MODEL", str(model))
        patch.setenv("DDPM_HUB_X0_MODEL", str(x0_model))
        patch.setenv("DDPM_HUB_THREADS", "1")
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        spec = importlib.util.spec_from_file_location("ddpm_hub_space_app", SPACE / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digit(app):
    """A held-out digit as the image file the UI would hand over."""
    path, caption = app.load_digit(300)
    assert "300" in caption and Path(path).is_file()
    return path


def picture_ok(picture, height=None, width=None):
    assert isinstance(picture, np.ndarray) and picture.dtype == np.uint8 and picture.ndim == 2
    if height is not None:
        assert picture.shape == (height, width)


# ---------------------------------------------------------------------------------------------------------------------
# Forward noising
# ---------------------------------------------------------------------------------------------------------------------


def test_model_comes_from_the_env_var(app):
    assert app.T == T
    assert (pics.SCALE, pics.GAP, app.reverse_tab.GIF_SCALE) == (SCALE, GAP, GIF_SCALE)
    assert Path(app.MODEL_ID).name.startswith("tiny_pipeline") and app.NUM_CLASSES == 10
    assert app.SPACE.strip[0] == 0 and app.SPACE.strip[-1] == T - 1 and app.SPACE.strip == sorted(set(app.SPACE.strip))


def test_forward_outputs(app, digit):
    t = 20
    x0, steps, closed, stats, formula, strip, linear, cosine = app.forward(digit, t, 0)
    size = 28 * SCALE
    for picture in (x0, steps, closed, linear, cosine):
        picture_ok(picture, size, size)
    assert strip.dtype == np.uint8 and strip.shape[1] > strip.shape[0] > 2 * 28 * 3  # two rows of the strip
    coefficients = app.SPACE.scheduler.coefficients(t)
    assert f"{coefficients['sqrt_alpha_bar_t']:.4f}" in formula
    assert f"{coefficients['sqrt_one_minus_alpha_bar_t']:.4f}" in formula
    # The statistics table: both samples' numbers are close to what q(x_t | x_0) predicts.
    numbers = [float(n) for n in re.findall(r"\|\s*(-?\d+\.\d{4})\s*(?=\|)", stats)]
    assert len(numbers) == 4, stats  # single steps (mean, noise std), closed form (mean, noise std)
    predicted_std = coefficients["sqrt_one_minus_alpha_bar_t"]
    assert all(abs(std - predicted_std) < 0.1 for std in numbers[1::2])
    # The same seed gives the same pictures; another seed gives other noise.
    again = app.forward(digit, t, 0)
    assert np.array_equal(again[1], steps) and np.array_equal(again[2], closed)
    assert not np.array_equal(app.forward(digit, t, 1)[2], closed)


def test_forward_without_an_image_is_blank_with_a_hint(app):
    outputs = app.forward(None, 10, 0)
    assert outputs[0] is None and "Upload an image" in outputs[3]


def test_schedules_plot_has_three_panels_and_a_cursor(app):
    figure = app.schedules_plot(30)
    assert len(figure.axes) == 3
    assert all(any(line.get_xdata()[0] == 30 for line in ax.get_lines()) for ax in figure.axes)
    with pytest.raises(gr.Error):
        app.schedules_plot(T)


def test_dataset_digits(app):
    index = app.random_digit()
    assert 0 <= index < len(app.DIGITS)
    path, caption = app.load_digit(index)
    assert f"a **{int(app.SPACE.digit_labels[index])}**" in caption
    with Image.open(path) as image:
        assert image.size == (28, 28) and image.mode == "L"
    with pytest.raises(gr.Error, match="digit index"):
        app.load_digit(len(app.DIGITS))


# ---------------------------------------------------------------------------------------------------------------------
# Uploads of every kind: converted, or refused with a readable gr.Error
# ---------------------------------------------------------------------------------------------------------------------


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that claims width x height pixels (a decompression bomb, without the bytes)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


def make_upload(kind: str, folder: Path) -> Path:
    path = folder / {"animated": "upload.gif", "jpeg": "upload.jpg", "text": "upload.txt", "svg": "upload.svg"}.get(
        kind, "upload.png"
    )
    if kind == "rgba":
        Image.new("RGBA", (40, 30), (255, 255, 255, 128)).save(path)
    elif kind == "palette":
        image = Image.new("P", (20, 20), 1)
        image.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
        image.save(path, transparency=0)
    elif kind == "16-bit":
        Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(path)
    elif kind == "grayscale":
        Image.new("L", (50, 50), 200).save(path)
    elif kind == "1x1":
        Image.new("L", (1, 1), 255).save(path)
    elif kind == "animated":
        frames = [Image.new("L", (32, 32), value) for value in (30, 220)]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    elif kind == "jpeg":
        Image.new("RGB", (1200, 900), (200, 120, 40)).save(path, quality=85)
    elif kind == "huge":
        png_header_only(path, 9000, 9000)  # over ddpm_hub.data.MAX_IMAGE_PIXELS
    elif kind == "bomb":
        png_header_only(path, 20000, 20000)  # over Pillow's own limit too
    elif kind in ("text", "fake-png"):
        path.write_text("hello, I am not an image")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        Image.new("L", (50, 50), 7).save(path)
        path.write_bytes(path.read_bytes()[:60])
    elif kind == "svg":
        path.write_text(
            '<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect width="9" height="9"/></svg>'
        )
    elif kind == "missing":
        pass
    else:
        raise AssertionError(kind)
    return path


CONVERTED = ["rgba", "palette", "16-bit", "grayscale", "1x1", "animated", "jpeg"]
REFUSED = ["huge", "bomb", "text", "fake-png", "empty", "truncated", "svg", "missing"]


@pytest.mark.parametrize("kind", CONVERTED)
def test_uploads_that_are_converted(app, kind, tmp_path):
    path = make_upload(kind, tmp_path)
    x0 = app.image_to_x0(str(path))
    assert x0.shape == (1, 1, 28, 28) and -1 <= x0.min() <= x0.max() <= 1
    picture_ok(app.forward(str(path), 10, 0)[2], 28 * SCALE, 28 * SCALE)
    payload = {"path": str(path), "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}  # preprocess=False
    assert torch.equal(app.image_to_x0(payload), x0)


@pytest.mark.parametrize("kind", REFUSED)
def test_uploads_that_are_refused_with_a_message(app, kind, tmp_path):
    path = make_upload(kind, tmp_path)
    for call in (
        lambda: app.forward(str(path), 10, 0),
        lambda: next(app.noise_denoise(str(path), 10, "any", 1.0, "ddim", 0.0, 5, 0, 1)),
    ):
        with pytest.raises(gr.Error) as error:
            call()
        message = error.value.message
        assert message.startswith("This upload can't be used: ") and len(message) > 40, message
        assert str(tmp_path) not in message  # the file's name, never the server's folders


# ---------------------------------------------------------------------------------------------------------------------
# Reverse generation: streaming, storing, scrubbing, GIF export
# ---------------------------------------------------------------------------------------------------------------------


def test_generate_streams_every_kth_step_and_stores_all(app, monkeypatch):
    monkeypatch.setattr(chains, "STREAMED_FRAMES", 10)
    steps, batch = T, 3
    frames = list(app.generate("3", 2.0, "ddpm-fixed_large", 0.0, steps, 42, batch))
    every = chains.stream_every(steps)
    assert every == 5 and len(frames) == math.ceil(steps / every) + 1  # every 5th step, then the final x_0

    chain = frames[-1][-1]
    assert chain["done"] and len(chain["x"]) == steps + 1 and len(chain["eps"]) == len(chain["x0"]) == steps
    assert chain["t"] == sorted(chain["t"], reverse=True) and chain["t"][-1] == 0 and chain["prev_t"][-1] == -1
    assert all(a.dtype == np.uint8 and a.shape == (batch, 28, 28, 1) for a in chain["x"] + chain["eps"] + chain["x0"])
    assert chain["std"][-1] == 0 and all(s > 0 for s in chain["std"][:-1])

    x, eps, x0, info, slider, state = frames[1]
    assert state is chain and "Step 6 / 50" in info and "σₜ" in info and " left" in info  # the time still to go
    # The scrub slider counts in t: at this frame's t, over the whole chain (-1 = the final x_0).
    assert slider["value"] == chain["t"][every] == T - 1 - every
    assert (slider["minimum"], slider["maximum"]) == (-1, T - 1)
    for picture in (x, eps, x0):
        picture_ok(picture)
        assert picture.shape == frames[-1][0].shape
    x, eps, x0, info, slider, _ = frames[-1]
    assert slider["value"] == -1 and info.startswith("**Done")
    # The last step adds no noise (sigma = 0 although beta_t is not): its formula drops sigma_t z and says why.
    last_step = app.scrub(0, chain)[3]
    assert "no noise" in last_step and "x_0 = " in last_step and "\\sigma_t z" not in last_step
    assert "\\sigma_t z" in app.scrub(T - 1, chain)[3]


def test_the_time_left_waits_for_timed_steps_then_averages(app):
    """No estimate before MIN_TIMED_STEPS steps after the first one were timed (the first U-Net calls are slow);
    then one from the chain's own steps, whatever the engine's running mean says."""
    from ddpm_space.engine import Progress

    clock = app.reverse_tab.ChainClock()
    n = 100
    updates = [Progress(None, k, n, 1e6, k, False) for k in range(1, n + 1)]  # the engine guesses 1e6 s
    texts = [clock.left(update) for update in updates]
    first = app.reverse_tab.MIN_TIMED_STEPS
    assert all(text == "estimating the time left" for text in texts[:first])
    assert texts[first] != "estimating the time left" and "min" not in texts[first]  # its own, not the engine's
    assert texts[-1] == "done"


def test_scrub_shows_stored_frames(app):
    *_, last = app.generate("any", 1.0, "ddim", 0.5, 10, 3, 2)
    chain = last[-1]
    assert chain["t"] == [45, 40, 35, 30, 25, 20, 15, 10, 5, 0]  # 10 of T = 50 steps
    x, eps, x0, info = app.scrub(25, chain)  # by t, not by frame index
    assert np.array_equal(x, pics.grid(chain["x"][4])) and np.array_equal(x0, pics.grid(chain["x0"][4]))
    assert "Step 5 / 10" in info and "t = 25 →" in info and "\\eta = 0.5" in info
    assert "t = 25 →" in app.scrub(27, chain)[3]  # the nearest stored t
    assert app.scrub(-1, chain)[3].startswith("**Done")  # the final x_0
    assert "Step 1 / 10" in app.scrub(999, chain)[3]  # clamped to the first frame
    with pytest.raises(gr.Error, match="Generate a chain first"):
        app.scrub(0, None)


def test_gif_export_name_and_frames(app, monkeypatch):
    *_, last = app.generate("3", 2.0, "ddpm-fixed_small", 0.0, T, 42, 2)
    chain = last[-1]
    path = Path(app.export_gif(chain))
    assert path.name == "ddpm_digit3_seed42_ddpm-fixed_small_50steps_w2.0_batch2.gif"
    with Image.open(path) as gif:
        # every k-th stored frame (x_T ... x_0), at most GIF_FRAMES of them, and the last
        assert gif.n_frames == len(app.reverse_tab.gif_frames(chain)) <= app.reverse_tab.GIF_FRAMES + 1
        assert gif.size == (max(2 * (2 * 28 + GAP) * GIF_SCALE + 12, 330), 28 * GIF_SCALE + 24)
        assert len(set(gif.convert("L").getdata())) <= app.reverse_tab.GIF_LEVELS  # a small palette packs tighter
    monkeypatch.setattr(app.reverse_tab, "GIF_FRAMES", 10)
    selected = app.reverse_tab.gif_frames(chain)
    assert selected[0] == 0 and selected[-1] == T and len(selected) == 11
    with Image.open(app.export_gif(chain)) as gif:
        assert gif.n_frames == len(selected)
    *_, last = app.generate("any", 0.5, "ddim", 0.25, 5, 7, 1)
    assert Path(app.export_gif(last[-1])).name == "ddpm_uncond_seed7_ddim-eta0.25_5steps_w0.5.gif"
    with pytest.raises(gr.Error, match="Generate a chain first"):
        app.export_gif(None)


def test_old_gif_exports_are_purged(app):
    *_, last = app.generate("2", 1.0, "ddim", 0.0, 3, 0, 1)
    old, new = Path(app.export_gif(last[-1])), Path(app.export_gif(last[-1]))
    hours_ago = time.time() - 7200
    os.utime(old.parent, (hours_ago, hours_ago))
    app.reverse_tab.purge_exports(app.SPACE)
    assert not old.exists() and new.exists()


def test_a_stopped_chain_can_be_scrubbed_and_exported(app):
    stream = app.generate("1", 1.0, "ddpm-fixed_large", 0.0, 40, 0, 1)
    for _ in range(3):
        *_, chain = next(stream)
    stream.close()  # what the Stop button does to the running generator
    assert not chain["done"] and len(chain["x"]) == 3
    assert "Step 3 / 40" in app.scrub(10, chain)[3]  # t = 10 is not stored: the nearest kept frame (t = 37)
    path = Path(app.export_gif(chain))
    assert path.name == "ddpm_digit1_seed0_ddpm-fixed_large_40steps_w1.0_stopped-at-step3.gif"
    with Image.open(path) as gif:
        assert gif.n_frames == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (("3", 2.0, "ddpm-fixed_small", 0.0, T + 1, 0, 1), "number of steps"),
        (("3", 2.0, "ddpm-fixed_small", 0.0, 10, 0, 17), "batch size"),
        (("3", 2.0, "euler", 0.0, 10, 0, 1), "Unknown sampler"),
        (("10", 2.0, "ddpm-fixed_small", 0.0, 10, 0, 1), "digit"),
        (("3", -1.0, "ddpm-fixed_small", 0.0, 10, 0, 1), "guidance"),
        (("3", 2.0, "ddim", 1.5, 10, 0, 1), "eta"),
        (("3", 2.0, "ddpm-fixed_small", 0.0, 10, -1, 1), "seed"),
        (("3", 2.0, "ddpm-fixed_small", 0.0, 2.5, 0, 1), "whole number"),
    ],
)
def test_generate_refuses_bad_settings(app, args, message):
    with pytest.raises(gr.Error, match=message):
        next(app.generate(*args))


def test_compare_starts_both_samplers_from_the_same_x_T(app):
    frames = list(app.compare("5", 2.0, 20, 5, 0.0, 7, 4))
    assert len(frames) == 20 + 1  # every DDPM step (20 <= STREAMED_FRAMES), then the final pair
    ddpm_x, ddpm_x0, ddim_x, ddim_x0, info = frames[0]
    assert np.array_equal(ddpm_x, ddim_x)  # the same x_T
    for picture in frames[-1][:4]:
        picture_ok(picture, 2 * 28 * SCALE + GAP * SCALE, 2 * 28 * SCALE + GAP * SCALE)
    assert "DDPM** step 20 / 20" in frames[-1][-1] and "DDIM** step 5 / 5" in frames[-1][-1]


def test_noise_then_denoise(app, digit):
    frames = list(app.noise_denoise(digit, 30, "3", 2.0, "ddpm-fixed_small", 0.0, T, 0, 3))
    x0, noised, x, x0_hat, info = frames[-1]
    assert len(frames) == 31 + 1  # the timesteps 30..0, then the final x_0
    picture_ok(x0, 28 * SCALE, 28 * SCALE)
    assert noised.shape == x.shape == x0_hat.shape and noised.shape[1] == 3 * 28 * SCALE + 2 * GAP * SCALE
    assert all(np.array_equal(frame[1], noised) for frame in frames)  # the noised input stays on show
    assert "Noised to t = 30" in info and "31 reverse steps" in info
    few = list(app.noise_denoise(digit, 30, "any", 1.0, "ddim", 0.0, 5, 0, 1))
    assert len(few) == 4 + 1  # DDIM with 5 of T = 50 steps has t = 40, 30, 20, 10, 0: from 30 on, four
    with pytest.raises(gr.Error, match="copies|batch"):
        next(app.noise_denoise(digit, 30, "3", 2.0, "ddim", 0.0, 10, 0, app.MAX_COPIES + 1))


# ---------------------------------------------------------------------------------------------------------------------
# The objective: the bound term by term, one t in detail
# ---------------------------------------------------------------------------------------------------------------------


def summary_numbers(markdown: str) -> dict[str, float]:
    """The parts of the bound from the summary table (prior, rate, distortion, total)."""
    rows = dict(re.findall(r"\| (prior|rate|distortion|\*\*total\*\*)[^|]*\| \**([-\d.e·⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+)\**", markdown))
    return {
        key.strip("*"): float(value.replace("·10", "e").translate(str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")))
        for key, value in rows.items()
    }


def test_bound_streams_the_library_terms_and_totals(app, digit):
    frames = list(app.bound(digit, "any", 5))
    assert len(frames) == app.objective_tab.BOUND_FRAMES  # every T/10 terms, the last one with the totals
    terms, forms, summary = frames[0]
    assert "5 of 50 terms" in summary
    terms, forms, summary = frames[-1]
    assert summary.startswith("**Bound done")
    expected = app.SPACE.pipe.bits_per_dim(app.image_to_x0(digit), generator=torch.Generator().manual_seed(5))
    numbers = summary_numbers(summary)
    assert numbers["total"] == pytest.approx(float(expected.total[0]), abs=1e-4)
    assert numbers["rate"] == pytest.approx(float(expected.rate[0]), abs=1e-4)
    assert numbers["distortion"] == pytest.approx(float(expected.distortion[0]), abs=1e-4)
    (ax,) = terms.axes
    assert ax.get_yscale() == "log"
    curve, l0, prior = ax.get_lines()
    assert list(curve.get_xdata()) == list(range(T - 1, 0, -1))  # L_t for t = T-1 ... 1, then L_0 and L_T marked
    assert np.allclose(curve.get_ydata(), expected.denoising[0].flip(0).numpy())
    assert l0.get_ydata()[0] == pytest.approx(float(expected.reconstruction[0]))
    assert prior.get_xdata()[0] == T and prior.get_ydata()[0] == pytest.approx(float(expected.prior[0]))
    weights, _, errors = forms.axes
    assert [line.get_label() for line in weights.get_lines()] == [
        "$\\sigma_t^2=\\beta_t$",
        "$\\sigma_t^2=\\tilde\\beta_t$",
    ]
    assert np.allclose(
        weights.get_lines()[1].get_ydata(), app.SPACE.scheduler.loss_weight(torch.arange(T), "beta_tilde")
    )
    assert np.allclose(sorted(errors.get_lines()[0].get_ydata()), sorted(expected.noise_mse[0].numpy()))


def test_at_t_shows_the_noise_its_prediction_and_the_score(app, digit):
    t = 7
    *pictures, numbers, weights = app.at_t(digit, "3", t, 1)
    for picture in pictures:
        picture_ok(picture, 28 * SCALE, 28 * SCALE)
    x_t, eps, eps_hat, difference, x0_hat, score = pictures
    assert not np.array_equal(eps, eps_hat) and not np.array_equal(score, eps_hat)
    (step,) = app.SPACE.pipe.bound_steps(
        app.image_to_x0(digit), class_labels=3, generator=torch.Generator().manual_seed(1), timesteps=[t]
    )
    assert np.array_equal(x_t, pics.single(step.sample))
    assert f"**{float(step.noise_mse[0]):.4f}**" in numbers  # ||eps - eps_hat||^2, L_simple's term at t
    weight = float(app.SPACE.scheduler.loss_weight(t, "beta_tilde"))
    assert text.fmt(weight) in numbers and "t = 7" in numbers
    assert all(ax.get_lines()[-1].get_xdata()[0] == t for ax in weights.axes)  # the cursor at t
    with pytest.raises(gr.Error, match="t must be"):
        app.at_t(digit, "any", T, 0)


# ---------------------------------------------------------------------------------------------------------------------
# The four questions
# ---------------------------------------------------------------------------------------------------------------------


def test_fresh_noise_same_start_different_ends(app):
    frames = list(app.fresh_noise("3", 2.0, "ddpm-fixed_large", 20, 0, 2))
    assert len(frames) == 20 + 1
    with_noise, mean_only, info = frames[0]
    assert np.array_equal(with_noise, mean_only)  # the same x_T
    with_noise, mean_only, info = frames[-1]
    assert not np.array_equal(with_noise, mean_only)
    assert "Done: 20 steps" in info and info.count("pixel std") == 2
    with pytest.raises(gr.Error, match="sampler"):
        next(app.fresh_noise("3", 2.0, "ddim", 20, 0, 2))


def test_timestep_input_right_vs_wrong(app):
    frames = list(app.timestep_input("3", 2.0, 10, 0, 2, "fixed", 45, 20))
    right, wrong, eps_right, eps_wrong, info = frames[-1]
    assert not np.array_equal(right, wrong)
    assert eps_right is not None and not np.array_equal(eps_right, eps_wrong)
    difference = float(re.search(r"difference \*\*([\d.]+)\*\*", info).group(1))
    assert difference > 0 and "told t = 45" in info
    # Told the true t (a shift of 0), the "wrong" chain is the right one.
    right, same, eps_right, eps_same, info = list(app.timestep_input("3", 2.0, 10, 0, 2, "shift", 0, 20))[-1]
    assert np.array_equal(right, same) and np.array_equal(eps_right, eps_same)
    with pytest.raises(gr.Error, match="wrong-t rule"):
        next(app.timestep_input("3", 2.0, 10, 0, 2, "random", 0, 20))


def test_timestep_input_compares_at_the_chosen_t_between_streamed_steps(app, monkeypatch):
    """With every 5th step streamed (t = 49, 44, ...), eps_hat is still compared at the chosen t = 47 (it was 44,
    the first streamed t below it: the slider said one t, the result another)."""
    monkeypatch.setattr(chains, "STREAMED_FRAMES", 10)
    *_, (_, _, _, _, info) = app.timestep_input("3", 2.0, T, 0, 1, "fixed", 10, 47)
    assert "At t = 47, the same" in info and "told t = 47 has" in info
    *_, (_, _, _, _, info) = app.timestep_input("3", 2.0, 10, 0, 1, "fixed", 10, 47)  # t = 45, 40, ...: 47 is skipped
    assert "At t = 45 (the chain's first step at or below the chosen t = 47)" in info


def test_noise_vs_x0_two_models(app, digit, tmp_path):
    frames = list(app.noise_vs_x0(digit, "3", 2.0, 5, 0, 2))
    eps_samples, x0_samples, loss, info = frames[-1]
    assert eps_samples.shape == x0_samples.shape and not np.array_equal(eps_samples, x0_samples)
    noise_axis, x0_axis = loss.axes
    assert [line.get_label() for line in noise_axis.get_lines()] == ["predicts ε", "predicts x₀"]
    assert len(noise_axis.get_lines()[0].get_xdata()) == app.questions.LOSS_POINTS
    assert "predicts x₀" in info and "Judge accuracy" in info


def test_elbo_forms_spreads(app, digit, monkeypatch):
    monkeypatch.setattr(app.questions, "HEARTBEAT_S", 0.01)  # the tiny model is fast: report often
    *running, (histogram, info) = app.elbo_forms(digit, "any", 16, 0)
    assert running and all(" of 16 trajectories" in info for _, info in running)  # "k of N" while it runs
    partial = [plot for plot, _ in running if isinstance(plot, Figure)]  # ... with the histogram so far
    assert partial and all(len(plot.axes[1].get_lines()[0].get_xdata()) < 16 for plot in partial)
    assert app.questions.elbo_chunks(16) == [4, 4, 4, 4] and sum(app.questions.elbo_chunks(255)) == 255
    assert min(app.questions.elbo_chunks(255)) >= app.questions.ELBO_MIN_CHUNK
    kl_std, trajectory_std = (float(x) for x in re.findall(r"\*\*([\d.]+)\*\* \|", info))
    assert kl_std > 0 and trajectory_std > 0 and "16 trajectories" in info
    assert len(histogram.axes) == 2
    with pytest.raises(gr.Error, match="number of draws"):
        next(app.elbo_forms(digit, "any", 8, 0))


# ---------------------------------------------------------------------------------------------------------------------
# Files of the Space
# ---------------------------------------------------------------------------------------------------------------------


def test_space_readme_and_requirements():
    readme = (SPACE / "README.md").read_text(encoding="utf-8")
    header = readme.split("---")[1]
    for line in ("sdk: gradio", f"sdk_version: {gr.__version__}", "app_file: app.py", "- ddpm-hub/ddpm-mnist-small"):
        assert line in header, line
    for key in ("title:", "emoji:", "colorFrom:", "colorTo:", "license:"):
        assert key in header, key
    requirements = (SPACE / "requirements.txt").read_text(encoding="utf-8")
    for package in ("torch", "diffusers", "gradio", "matplotlib", "mlxtend"):
        assert re.search(rf"^{package}\b", requirements, re.M), package
    # the CPU build's index is added for CPU hardware by space/deploy.py (test_space_deploy.py checks its folders)
    assert "download.pytorch.org/whl/cpu" in (SPACE / "deploy.py").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------------
# ④ The whole distribution (2-D): the tab's plain functions on the bundled 2-D models
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def twod():
    from ddpm_space import distribution_tab

    return distribution_tab.load(SPACE / "mixture_models")


def exact_as_learned(twod, preset: str = "two_blobs", spread: float = 1.0):
    """A visitor's "trained" model that is the exact denoiser itself: every learned-side number must then match the
    exact side."""
    from ddpm_space.distribution_tab import Trained

    from ddpm_hub import GaussianMixture, MixtureDenoiser

    oracle = MixtureDenoiser(GaussianMixture.preset(preset, spread), twod.scheduler)
    return Trained(preset=preset, spread=spread, num_steps=0, model=oracle)


def test_twod_bundled_models_are_loaded_and_recorded(twod):
    from ddpm_hub import MIXTURE_PRESETS

    assert set(twod.pretrained) == set(MIXTURE_PRESETS)
    for preset in MIXTURE_PRESETS:
        record = json.loads((SPACE / "mixture_models" / preset / "training.json").read_text(encoding="utf-8"))
        assert record["preset"] == preset and record["spread"] == 1.0
        assert not twod.pretrained[preset].training
    assert twod.scheduler.config.clip_sample is False and twod.scheduler.config.num_train_timesteps == 1000


def test_twod_forward_draws_the_exact_marginal_and_the_noised_cloud(twod):
    from ddpm_space import distribution_tab as tab

    figure, numbers = tab.forward(twod, "ring8", 1.0, 300, 0)
    left, right = figure.axes
    assert len(left.images) == len(right.images) == 1
    assert right.collections[0].get_offsets().shape == (tab.CLOUD, 2)
    alpha_bar = float(twod.scheduler.alphas_cumprod[300])
    assert f"{math.sqrt(alpha_bar):.4f}" in numbers and "t = 300" in numbers
    # the heatmap is the exact density of q(x_t): it integrates to 1 over the plane (the tails beyond +-3 are tiny)
    density = right.images[0].get_array()
    cell = (2 * tab.EXTENT / (tab.DENSITY_GRID - 1)) ** 2
    assert abs(float(density.sum()) * cell - 1) < 0.02


def test_twod_learned_model_says_which_one_it_is(twod):
    from ddpm_space import distribution_tab as tab

    model, note = tab.learned_model(twod, "ring8", 1.0, None)
    assert model is twod.pretrained["ring8"] and "trained on this data" in note
    model, note = tab.learned_model(twod, "ring8", 1.5, None)
    assert model is twod.pretrained["ring8"] and "trained at spread 1, not 1.5" in note and "Train" in note
    mine = exact_as_learned(twod, "ring8", 1.5)
    model, note = tab.learned_model(twod, "ring8", 1.5, mine)
    assert model is mine.model and "yours" in note
    assert tab.learned_model(twod, "two_blobs", 1.5, mine)[0] is twod.pretrained["two_blobs"]


def test_twod_score_error_is_zero_for_the_exact_denoiser_and_not_for_the_bundled_model(twod):
    from ddpm_space import distribution_tab as tab

    mix = tab.mixture("two_blobs", 1.0)
    exact = exact_as_learned(twod)
    true, learned = tab.score_fields(twod, mix, exact.model, 50)
    torch.testing.assert_close(learned, true, rtol=1e-4, atol=1e-4)  # float32 inputs, float64 truth
    assert tab.noise_error_map(twod, mix, exact.model, 50).max() < 1e-5
    assert tab.error_by_t(twod, mix, exact.model).max() < 1e-5
    figure, numbers = tab.score(twod, "two_blobs", 1.0, 50, None)
    assert len(figure.axes) >= 4 and "At t = 50" in numbers
    bundled = tab.error_by_t(twod, mix, twod.pretrained["two_blobs"])
    assert bundled.shape == (len(tab.ERROR_TIMESTEPS),) and 1e-4 < bundled.max() < 1
    # far from the data at small t, where training saw few samples, the bundled model is far worse than in the bulk
    error_map = tab.noise_error_map(twod, mix, twod.pretrained["two_blobs"], 10)
    density = tab.density_image(mix.noised(float(twod.scheduler.alphas_cumprod[10])))
    assert np.median(error_map[density < 1e-3 * density.max()]) > 5 * np.median(
        error_map[density > 0.1 * density.max()]
    )


@pytest.mark.parametrize("sampler", ["ddpm-beta", "ddpm-beta_tilde", "ddim", "langevin"])
def test_twod_reverse_streams_and_the_exact_model_twice_gives_one_cloud(twod, sampler):
    from ddpm_space import distribution_tab as tab

    frames = list(tab.reverse(twod, "two_blobs", 1.0, sampler, 20, 300, 0, exact_as_learned(twod)))
    assert len(frames) >= 3 and all(isinstance(figure, Figure) for figure, _ in frames)
    figure, result = frames[-1]
    assert "done" in result and "real data" in result
    exact_cloud, learned_cloud = (ax.collections[-1].get_offsets() for ax in figure.axes)
    assert exact_cloud.shape == (300, 2)
    np.testing.assert_allclose(learned_cloud, exact_cloud, atol=1e-4)  # same x_T, same noise, same model
    exact, learned = (
        re.search(rf"\*\*{name} (-?\d+\.\d+)\*\*", result).group(1) for name in ("exact denoiser", "learned")
    )
    assert exact == learned


def test_twod_reverse_with_the_exact_denoiser_lands_on_the_data(twod):
    from ddpm_space import distribution_tab as tab

    *_, (figure, result) = tab.reverse(twod, "two_blobs", 1.0, "ddpm-beta_tilde", 100, 1000, 0, None)
    exact, learned = (
        float(re.search(rf"\*\*{name} (-?\d+\.\d+)\*\*", result).group(1)) for name in ("exact denoiser", "learned")
    )
    real = float(re.search(r"real data \(1000 draws\)\s+\*\*(-?\d+\.\d+)\*\*", result).group(1))
    assert abs(exact - real) < 0.3 and learned < real + 0.3  # the data's own mean log p, within what 100 steps allow


def test_twod_variance_extremes_and_crossover(twod):
    from ddpm_space import distribution_tab as tab

    from ddpm_hub import GaussianMixture, MixtureDenoiser

    cross = tab.crossover(twod)
    assert 0.01 < cross < 0.05
    oracle = MixtureDenoiser(GaussianMixture.gaussian(cross), twod.scheduler)
    assert abs(oracle.expected_bound_gap("beta") - oracle.expected_bound_gap("beta_tilde")) < 1e-3
    _, one = tab.variance(twod, 1.0)
    assert (
        re.search(r"\| \*\*-?0\.000\*\* \|", one) and "σ²ₜ = βₜ**" in one
    )  # s = 1, sigma^2 = beta: the bound is -log p(x_0)
    _, narrow = tab.variance(twod, 0.01)
    assert "σ²ₜ = β̃ₜ**" in narrow and f"s ≈ {cross:.3f}" in narrow


def test_twod_variance_check_measures_the_same_gap(twod):
    from ddpm_space import distribution_tab as tab

    rows = tab.monte_carlo_bounds(twod, 1.0, 100, 0)
    _, _, gap_beta, se_beta = rows["beta"]
    assert abs(gap_beta) < 3 * se_beta + 0.02  # exact 0 at s = 1 with beta
    assert abs(rows["beta_tilde"][2] - 0.671) < 3 * rows["beta_tilde"][3] + 0.02
    figure, numbers = tab.variance_check(twod, 0.05, 20, 0)
    assert "20 draws" in numbers and len(figure.axes) == 2


def test_twod_train_streams_and_hands_the_model_to_the_session(twod, monkeypatch):
    from ddpm_space import distribution_tab as tab

    monkeypatch.setattr(tab, "TRAIN_EVERY", 20)
    frames = list(tab.train(twod, "point", 1.25, 60, 0, None))
    assert len(frames) == 3  # after 20 and 40 steps, then the end
    assert all(state is None for _, _, state in frames[:-1])
    figure, result, mine = frames[-1]
    assert "Trained 60 steps" in result and (mine.preset, mine.spread, mine.num_steps) == ("point", 1.25, 60)
    assert tab.learned_model(twod, "point", 1.25, mine)[0] is mine.model and not mine.model.training
    untrained = float(re.search(r"\*\*([\d.e-]+)\*\* untrained", result).group(1))
    assert untrained > 0 and math.isfinite(float(re.search(r"→ \*\*([\d.e-]+)\*\*", result).group(1)))
    assert len(figure.axes[1].lines) == 4  # the noise error per t at steps 0, 20, 40, 60 (no bundled model at 1.25)


@pytest.mark.parametrize(
    "fn,args,message",
    [
        ("forward", ("moons", 1.0, 10, 0), "data must be one of"),
        ("forward", ("ring8", 5.0, 10, 0), "spread must be between"),
        ("score", ("ring8", 1.0, 1000, None), "t must be a whole number"),
        ("variance", (0.0,), "s must be between"),
    ],
)
def test_twod_bad_inputs_are_named(twod, fn, args, message):
    from ddpm_space import distribution_tab as tab

    with pytest.raises(gr.Error, match=message):
        getattr(tab, fn)(twod, *args)


# ---------------------------------------------------------------------------------------------------------------------
# The launched app, through gradio_client
# ---------------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def client(app, tmp_path_factory):
    gradio_client = pytest.importorskip("gradio_client")
    port = free_port()
    app.demo.launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **app.LAUNCH_KWARGS
    )
    try:
        yield gradio_client.Client(
            f"http://127.0.0.1:{port}/",
            verbose=False,
            download_files=str(tmp_path_factory.mktemp("client_downloads")),
            analytics_enabled=False,
        )
    finally:
        app.demo.close()


ENDPOINTS = {
    "/forward",
    "/schedules",
    "/load_digit",
    "/random_digit",
    "/generate",
    "/scrub",
    "/export_gif",
    "/compare",
    "/noise_denoise",
    "/bound",
    "/at_t",
    "/posterior_at_t",
    "/q_histogram",
    "/guidance_at_step",
    "/variance_pair",
    "/fresh_noise",
    "/timestep_input",
    "/noise_vs_x0",
    "/elbo_forms",
    "/variances",
    "/twod_forward",
    "/twod_score",
    "/twod_reverse",
    "/twod_variance",
    "/twod_variance_check",
    "/twod_train",
}


def test_api_lists_every_endpoint(client):
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ENDPOINTS


def test_api_forward_tab(client, tmp_path):
    from gradio_client import handle_file

    index = client.predict(api_name="/random_digit")
    assert 0 <= index < 1000
    path, caption = client.predict(300, api_name="/load_digit")
    assert "**3**" in caption
    outputs = client.predict(handle_file(path), 20, 0, api_name="/forward")
    x0, steps, closed, stats, formula, strip, linear, cosine = outputs
    for picture in (x0, steps, closed, strip, linear, cosine):
        with Image.open(picture) as image:
            assert image.format == "PNG"
    assert "predicted" in stats and "x_t" in formula
    plot = client.predict(20, api_name="/schedules")
    assert plot is not None
    for kind in ("bomb", "fake-png"):
        with pytest.raises(Exception, match="This upload can't be used"):
            client.predict(handle_file(str(make_upload(kind, tmp_path))), 20, 0, api_name="/forward")


def test_api_generate_scrub_export(app, client):
    job = client.submit("7", 2.0, "ddpm-fixed_large", 0.0, 12, 5, 2, api_name="/generate")
    final = job.result()
    assert len(job.outputs()) == 12 + 1
    x, eps, x0, info, slider = final
    assert info.startswith("**Done")  # the scrub slider: at the final x_0 (t = -1), spanning the chain's t
    assert (slider["value"], slider["minimum"], slider["maximum"]) == (-1, -1, 44)
    with Image.open(x) as image:
        assert image.size == ((2 * 28 + GAP) * SCALE, 28 * SCALE)
    scrubbed = client.predict(32, api_name="/scrub")  # 12 of 50 steps: t = 44, 40, 36, 32, ...
    assert "Step 4 / 12" in scrubbed[3]
    gif = client.predict(api_name="/export_gif")
    assert Path(gif).name == "ddpm_digit7_seed5_ddpm-fixed_large_12steps_w2.0_batch2.gif"
    with Image.open(gif) as image:
        assert image.n_frames == 13


def test_api_compare_and_noise_denoise(client):
    from gradio_client import handle_file

    final = client.predict("any", 1.0, 10, 4, 0.0, 1, 1, api_name="/compare")
    assert "DDIM** step 4 / 4" in final[-1]
    path, _ = client.predict(700, api_name="/load_digit")
    job = client.submit(handle_file(path), 25, "7", 2.0, "ddim", 0.3, 4, 0, 2, api_name="/noise_denoise")
    x0, noised, x, x0_hat, info = job.result()
    assert "Noised to t = 24" in info and len(job.outputs()) == 3 + 1  # 4 steps of 50: t = 36, 24, 12, 0
    with pytest.raises(Exception, match="number of steps|maximum"):
        client.predict(handle_file(path), 25, "7", 2.0, "ddim", 0.3, 10_000, 0, 2, api_name="/noise_denoise")


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image)


def test_api_bound_and_at_t(app, client):
    from gradio_client import handle_file

    path, _ = client.predict(300, api_name="/load_digit")
    job = client.submit(handle_file(path), "any", 5, api_name="/bound")
    terms, forms, summary = job.result()
    assert len(job.outputs()) == app.objective_tab.BOUND_FRAMES and terms is not None and forms is not None
    expected = app.SPACE.pipe.bits_per_dim(app.image_to_x0(path), generator=torch.Generator().manual_seed(5))
    assert summary_numbers(summary)["total"] == pytest.approx(float(expected.total[0]), abs=1e-4)
    *pictures, numbers, weights = client.predict(handle_file(path), "any", 10, 0, api_name="/at_t")
    assert [pixels(picture).shape for picture in pictures] == [(28 * SCALE, 28 * SCALE)] * 6
    assert "t = 10" in numbers and weights is not None
    with pytest.raises(Exception, match="t must be"):
        client.predict(handle_file(path), "any", T, 0, api_name="/at_t")


def test_api_fresh_noise(client):
    job = client.submit("3", 2.0, "ddpm-fixed_small", 12, 0, 2, api_name="/fresh_noise")
    with_noise, mean_only, info = job.result()
    first = job.outputs()[0]
    assert np.array_equal(pixels(first[0]), pixels(first[1]))  # the same x_T on both sides
    assert not np.array_equal(pixels(with_noise), pixels(mean_only))  # sigma_t z vs sigma_t = 0
    assert pixels(with_noise).shape == (28 * SCALE, (2 * 28 + GAP) * SCALE) and "Done: 12 steps" in info


def test_api_timestep_input(client):
    right, wrong, eps_right, eps_wrong, info = client.predict(
        "3", 2.0, 10, 0, 2, "shift", 20, 25, api_name="/timestep_input"
    )
    assert not np.array_equal(pixels(right), pixels(wrong))
    assert not np.array_equal(pixels(eps_right), pixels(eps_wrong))  # eps_hat of the same x_t, true vs wrong t
    assert "t = 25" in info and "told t = 45" in info  # 25 shifted by 20


def test_api_noise_vs_x0(app, client):
    from gradio_client import handle_file

    path, _ = client.predict(700, api_name="/load_digit")
    job = client.submit(handle_file(path), "3", 2.0, 4, 0, 2, api_name="/noise_vs_x0")
    eps_samples, x0_samples, loss, info = job.result()
    assert len(job.outputs()) == 4 + 2 + 1  # the 4 sampling steps, each model's loss per t, the summary
    assert not np.array_equal(pixels(eps_samples), pixels(x0_samples)) and loss is not None
    means = re.findall(r"\| predicts (?:ε|x₀) \| ([\d.]+) \| ([\d.]+) \|", info)
    assert len(means) == 2 and all(float(value) > 0 for row in means for value in row)


@pytest.fixture
def oracle_unet(app, monkeypatch):
    """The test U-Net replaced, for one image x_0, by the best possible denoiser of a data set that holds only x_0:
    eps_hat = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t), the scheduler's `predict_noise_from_x0`. Every
    KL term of the bound is then 0; what is left of the single-trajectory form's spread is its own sampling noise."""
    from ddpm_hub import DDPMHubUNet2DOutput

    path, _ = app.load_digit(300)
    scheduler = app.SPACE.scheduler
    x_0 = scheduler.quantize_to_pixel_bins(app.image_to_x0(path)).float()

    def forward(sample, timestep, class_labels=None, return_dict=True):
        return DDPMHubUNet2DOutput(sample=scheduler.predict_noise_from_x0(sample, timestep, x_0.expand_as(sample)))

    monkeypatch.setattr(app.SPACE.pipe.unet, "forward", forward)
    return path


def test_api_elbo_forms_the_kl_form_varies_less(client, oracle_unet):
    from gradio_client import handle_file

    histogram, info = client.predict(handle_file(oracle_unet), "any", 16, 0, api_name="/elbo_forms")
    kl_std, trajectory_std = (float(x) for x in re.findall(r"\*\*([\d.]+)\*\* \|", info))
    assert "16 trajectories" in info and histogram is not None
    assert 0 <= kl_std < trajectory_std / 10
    with pytest.raises(Exception, match="number of draws|minimum"):
        client.predict(handle_file(oracle_unet), "any", 8, 0, api_name="/elbo_forms")


def test_the_measured_guidance_curve_sets_the_default_and_is_shown(app):
    assert app.DEFAULT_GUIDANCE == 1.5 and app.GUIDANCE_CURVE["plot_path"].endswith("eval_guidance.png")
    config = app.demo.get_config_file()
    sliders = [c["props"] for c in config["components"] if c["props"].get("label") == "Guidance scale w"]
    # Generate, Guidance on pictures, DDPM vs DDIM and β vs β̃; the questions keep 2
    assert sorted(p["value"] for p in sliders).count(1.5) == 4
    assert all(p["value"] in (1.5, 2.0) for p in sliders)
    labels = [c["props"].get("label") for c in config["components"]]
    assert "How much guidance? Measured on this model" in labels
    text = "\n".join(str(c["props"].get("value")) for c in config["components"] if c.get("type") == "markdown")
    assert "| chain | w | U-Net calls / image | judge accuracy | Fréchet, relative to real digits |" in text
    assert any(c["props"].get("elem_id") == "guidance-curve" and c["type"] == "plot" for c in config["components"])
    assert "| **DDPM 100** | **1.5** | **200** | **99.2%** | **1.50×** |" in text
    assert "| DDPM 100 | 1 | 100 | 95.0% | 1.25× |" in text
    assert "(DDPM 100 steps," in text and "Page default: **w = 1.5**" in text


def test_api_posterior_guidance_pair_and_histogram(app, client):
    """The four views on the tiny model: the posterior's table carries the library's numbers for the same draw, the
    guidance step and the two variance chains run in the engine, the histogram plots."""
    from gradio_client import handle_file

    path, _ = client.predict(300, api_name="/load_digit")
    *means, table = client.predict(handle_file(path), "any", 7, 3, api_name="/posterior_at_t")
    assert [pixels(picture).shape for picture in means] == [(28 * SCALE, 28 * SCALE)] * 3
    out = app.SPACE.pipe.posterior_at_t(app.image_to_x0(path), 7, generator=torch.Generator().manual_seed(3))
    kl = out.terms["beta_tilde"].kl[0]
    assert f"{float(out.terms['beta_tilde'].mean_part[0]):.10g}" in table and app.objective_tab.fmt(float(kl)) in table
    assert client.predict(handle_file(path), 30, 0, api_name="/q_histogram")["type"] == "matplotlib"
    *pictures, info = client.predict("3", 2.0, 10, 20, 0, api_name="/guidance_at_step")
    assert [pixels(picture).shape for picture in pictures] == [(28 * SCALE, 28 * SCALE)] * 6
    assert "t = 20" in info  # 10 of 50 steps: t = 45, 40, ..., 20
    *pictures, info = client.predict("3", 2.0, 5, 0, 2, True, api_name="/variance_pair")
    assert info.startswith("**Done: 5 steps each**") and "adds σₜz" in info
