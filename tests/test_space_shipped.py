"""The Space as it ships: space/app.py started on its BUNDLED models (space/default_model, and space/x0_model for
question 3), every API endpoint driven through gradio_client at small settings.

tests/test_space.py runs the same app on tiny random models, which lack what the bundled folders carry (their
evaluation.json with judged runs, a guidance curve, quality-per-NFE and NLL records; T = 1000; trained weights): a
handler that breaks only on the shipped files passes there and fails here. One app start serves the module; each
chain runs a few steps of one image. `ENDPOINT_TESTS` names the test that drives each endpoint, and
`test_every_endpoint_is_driven` fails when the app exposes an endpoint that no test here drives.
"""

from __future__ import annotations

import base64
import importlib.util
import inspect
import io
import json
import math
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

gr = pytest.importorskip("gradio", reason="the Space needs gradio (pip install -e .[space])")
pytest.importorskip("matplotlib", reason="the Space needs matplotlib (pip install -e .[space])")
gradio_client = pytest.importorskip("gradio_client")

# gradio's queue uses pandas in ways pandas 3 deprecates; not this package's concern.
pytestmark = pytest.mark.filterwarnings(
    "ignore:'future.no_silent_downcasting' is deprecated", "ignore:The copy keyword is deprecated"
)

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "space"
BUNDLED = {"predicts ε": SPACE / "default_model", "predicts x₀": SPACE / "x0_model"}
STEPS = 4  # steps of every chain here: enough to stream a frame and finish


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app():
    """space/app.py imported as a module with no model variable set: the bundled models, as on the Space."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("DDPM_HUB_MODEL", "DDPM_HUB_X0_MODEL", "DDPM_HUB_REVISION", "DDPM_HUB_BF16_MIN_ROWS"):
            patch.delenv(name, raising=False)
        patch.setenv("DDPM_HUB_THREADS", "1")
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        spec = importlib.util.spec_from_file_location("ddpm_hub_space_app_shipped", SPACE / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def client(app, tmp_path_factory):
    port = free_port()
    app.demo.launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **app.LAUNCH_KWARGS
    )
    try:
        yield gradio_client.Client(
            f"http://127.0.0.1:{port}/",
            verbose=False,
            download_files=str(tmp_path_factory.mktemp("shipped_downloads")),
            analytics_enabled=False,
        )
    finally:
        app.demo.close()


@pytest.fixture(scope="module")
def digit(client):
    """Held-out digit #300 (a 3) as the file the page's image inputs hold."""
    path, _ = client.predict(300, api_name="/load_digit")
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Reading what gradio_client returns
# ---------------------------------------------------------------------------------------------------------------------


def file_path(value) -> str | None:
    """A file output as gradio_client returns it: a path, or a dict holding one (FileData); None for an update that
    leaves the component as it was (`{"__type__": "update"}`)."""
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, dict) and value.get("path"):
        return value["path"]
    return None


def latest_files(outputs: list) -> list[str | None]:
    """Per output slot, the last file a streamed job showed there (a final frame may leave panels unchanged)."""
    latest = [None] * len(outputs[-1])
    for frame in outputs:
        for slot, value in enumerate(frame):
            latest[slot] = file_path(value) or latest[slot]
    return latest


def picture(path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A picture output as pixels: a complete PNG, of `size` (width, height) when given, not all one value."""
    assert path is not None, "no picture"
    with Image.open(file_path(path)) as image:
        assert image.format == "PNG"
        image.load()  # a truncated file fails here
        pixels = np.asarray(image)
    if size is not None:
        assert (pixels.shape[1], pixels.shape[0]) == size
    return pixels


def plot_ok(plot) -> None:
    """A gr.Plot output: a matplotlib figure sent as a data URL of a non-empty image."""
    assert isinstance(plot, dict) and plot.get("type") == "matplotlib", plot
    header, data = plot["plot"].split(",", 1)
    assert header.startswith("data:image/")
    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        assert image.size[0] > 100 and image.size[1] > 50


def numbers(markdown: str) -> list[float]:
    """The decimal numbers of a status text; none may be nan or infinite."""
    assert not re.search(r"\b(nan|inf)\b", markdown, flags=re.IGNORECASE), markdown
    values = [float(value) for value in re.findall(r"-?\d+\.\d+", markdown)]
    assert all(math.isfinite(value) for value in values)
    return values


def one_image(app) -> tuple[int, int]:
    """The size of a picture of one image at the page's display scale."""
    from ddpm_space import pictures

    side = app.RESOLUTION * pictures.SCALE
    return side, side


def result_and_outputs(client, *args, api_name: str):
    job = client.submit(*args, api_name=api_name)
    final = job.result(timeout=600)
    return final, job.outputs()


# ---------------------------------------------------------------------------------------------------------------------
# What is loaded, and which endpoints are driven
# ---------------------------------------------------------------------------------------------------------------------

ENDPOINT_TESTS = {
    "/forward": "test_forward",
    "/schedules": "test_schedules_and_variances",
    "/q_histogram": "test_q_histogram",
    "/variances": "test_schedules_and_variances",
    "/load_digit": "test_digits",
    "/random_digit": "test_digits",
    "/generate": "test_generate_scrub_and_export",
    "/scrub": "test_generate_scrub_and_export",
    "/export_gif": "test_generate_scrub_and_export",
    "/compare": "test_compare",
    "/guidance_at_step": "test_guidance_at_step",
    "/variance_pair": "test_variance_pair",
    "/noise_denoise": "test_noise_denoise",
    "/bound": "test_bound",
    "/at_t": "test_at_t",
    "/posterior_at_t": "test_posterior_at_t",
    "/fresh_noise": "test_question_1_fresh_noise",
    "/timestep_input": "test_question_2_timestep_input",
    "/noise_vs_x0": "test_question_3_noise_vs_x0",
    "/elbo_forms": "test_question_4_elbo_forms",
    "/twod_forward": "test_twod_forward_and_score",
    "/twod_score": "test_twod_forward_and_score",
    "/twod_reverse": "test_twod_reverse",
    "/twod_variance": "test_twod_variance",
    "/twod_variance_check": "test_twod_variance",
    "/twod_train": "test_twod_train",
}


def test_every_endpoint_is_driven(client):
    """A new endpoint without a test here fails; so does a test named here that does not call its endpoint."""
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == set(ENDPOINT_TESTS)
    assert not api.get("unnamed_endpoints")
    for endpoint, test in ENDPOINT_TESTS.items():
        assert f'api_name="{endpoint}"' in inspect.getsource(globals()[test]), (endpoint, test)


def test_the_bundled_models_are_loaded(app):
    assert Path(app.MODEL_ID) == BUNDLED["predicts ε"] and Path(app.X0_MODEL_ID) == BUNDLED["predicts x₀"]
    assert app.SPACE.x0_pipe is not None and app.X0_MISSING == ""
    assert app.SPACE.x0_pipe.scheduler.config.prediction_type == "sample"
    assert app.SPACE.pipe.scheduler.config.prediction_type == "epsilon"
    # the page's default w is the one recorded with the model (model_index.json), which is its curve's choice
    index = json.loads((BUNDLED["predicts ε"] / "model_index.json").read_text(encoding="utf-8"))
    assert app.DEFAULT_GUIDANCE == index["guidance_scale"]
    curve = json.loads((BUNDLED["predicts ε"] / "evaluation.json").read_text(encoding="utf-8")).get("guidance_curve")
    if curve:
        assert index["guidance_scale"] == curve["recommended_guidance_scale"]


def test_every_output_picture_is_written_once(app):
    """Every output picture of the page saves its files with `pictures.save_picture` (once, atomically): Gradio's own
    writer rewrites a cached file while it may be served (test_space_page.py shows the race)."""
    from ddpm_space.pictures import is_written_once

    images = [block for block in app.demo.blocks.values() if isinstance(block, gr.Image)]
    outputs = {block._id for fn in app.demo.fns.values() for block in fn.outputs if isinstance(block, gr.Image)}
    pictures = [block for block in images if block._id in outputs and block.interactive is False]  # not uploads
    assert len(pictures) >= 20 and all(is_written_once(block) for block in pictures)
    config = app.demo.get_config_file()
    assert {c["type"] for c in config["components"] if c["id"] in {block._id for block in pictures}} == {"image"}


# ---------------------------------------------------------------------------------------------------------------------
# ① Forward noising
# ---------------------------------------------------------------------------------------------------------------------


def test_digits(app, client):
    index = client.predict(api_name="/random_digit")
    assert 0 <= index < len(app.DIGITS)
    path, caption = client.predict(index, api_name="/load_digit")
    assert f"#{index}: a **{int(app.SPACE.digit_labels[index])}**" in caption
    picture(path, (app.RESOLUTION, app.RESOLUTION))


def test_forward(app, client, digit):
    x0, steps, closed, stats, formula, strip, linear, cosine = client.predict(
        gradio_client.handle_file(digit), 20, 0, api_name="/forward"
    )
    for output in (x0, steps, closed, linear, cosine):
        picture(output, one_image(app))
    width, height = Image.open(file_path(strip)).size
    assert width > height > 2 * app.RESOLUTION
    assert len(numbers(stats)) >= 4 and "x_t" in formula


def test_q_histogram(client, digit):
    for t in (0, 250, 999):
        plot_ok(client.predict(gradio_client.handle_file(digit), t, 0, api_name="/q_histogram"))


def test_schedules_and_variances(client):
    plot_ok(client.predict(20, api_name="/schedules"))
    for sampler, steps, eta in (("ddpm-fixed_small", 1000, 0.0), ("ddim", 10, 0.5)):
        plot_ok(client.predict(sampler, steps, eta, api_name="/variances"))


# ---------------------------------------------------------------------------------------------------------------------
# ② Reverse generation
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["ddpm-fixed_small", "ddim"])
def test_generate_scrub_and_export(app, client, sampler):
    final, outputs = result_and_outputs(client, "3", 2.0, sampler, 0.0, STEPS, 0, 1, api_name="/generate")
    assert len(outputs) >= 2  # streamed, then done
    x_t, eps, x0_hat = latest_files(outputs)[:3]
    for output in (x_t, eps, x0_hat):
        picture(output, one_image(app))
    info = final[3]
    assert info.startswith("**Done") and f"after {STEPS} steps" in info
    x_t, eps, x0_hat, info = client.predict(-1, api_name="/scrub")  # the final x_0
    assert np.array_equal(picture(x_t, one_image(app)), picture(latest_files(outputs)[0]))
    gif = client.predict(api_name="/export_gif")
    with Image.open(file_path(gif)) as image:
        assert image.format == "GIF" and image.n_frames == STEPS + 1  # x_T and every step


def test_compare(app, client):
    final, outputs = result_and_outputs(client, "5", 1.25, STEPS, STEPS, 0.0, 7, 1, api_name="/compare")
    for output in latest_files(outputs)[:4]:
        picture(output, one_image(app))
    assert f"**DDPM** step {STEPS} / {STEPS}" in final[-1] and f"**DDIM** step {STEPS} / {STEPS}" in final[-1]


def test_guidance_at_step(app, client):
    *pictures, info = client.predict("3", 2.0, STEPS, 400, 0, api_name="/guidance_at_step")
    x_t, eps_u, eps_c, difference, eps_hat, x0_hat = (picture(output, one_image(app)) for output in pictures)
    assert not np.array_equal(eps_c, eps_u) and not np.array_equal(difference, eps_hat)
    assert f"/ {STEPS}, t = " in info and "w = 2" in info and numbers(info)
    # nothing to combine without a digit: a message, no pictures
    *pictures, info = client.predict("any", 2.0, STEPS, 400, 0, api_name="/guidance_at_step")
    assert all(file_path(output) is None for output in pictures) and "Nothing to combine" in info


@pytest.mark.parametrize("last_noise", [False, True])
def test_variance_pair(app, client, last_noise):
    final, outputs = result_and_outputs(client, "3", 1.5, STEPS, 0, 1, last_noise, api_name="/variance_pair")
    x_T, beta, beta_tilde, difference = (picture(output, one_image(app)) for output in latest_files(outputs)[:4])
    assert not np.array_equal(beta, beta_tilde)
    info = final[-1]
    assert info.startswith(f"**Done: {STEPS} steps each**") and numbers(info)
    rows = [line for line in info.splitlines() if line.startswith("| $\\sigma_t^2$")]
    assert len(rows) == 2 and "returns the mean" in rows[1]  # beta-tilde of the step to x_0 is 0
    assert ("adds σₜz" in rows[0]) == last_noise


def test_noise_denoise(app, client, digit):
    final, outputs = result_and_outputs(
        client, gradio_client.handle_file(digit), 200, "any", 1.0, "ddim", 0.0, 20, 0, 1, api_name="/noise_denoise"
    )
    for output in latest_files(outputs)[:4]:
        picture(output, one_image(app))
    info = final[-1]
    assert info.startswith("**Done.**") and "Noised to t = 200" in info and numbers(info)


# ---------------------------------------------------------------------------------------------------------------------
# ③ The objective and the four questions
# ---------------------------------------------------------------------------------------------------------------------


def test_bound(client, digit):
    terms, forms, summary = client.predict(gradio_client.handle_file(digit), "any", 0, api_name="/bound")
    plot_ok(terms)
    plot_ok(forms)
    assert "**total**" in summary and numbers(summary)


def test_at_t(app, client, digit):
    *pictures, values, weights = client.predict(gradio_client.handle_file(digit), "any", 10, 0, api_name="/at_t")
    assert len(pictures) == 6
    for output in pictures:
        picture(output, one_image(app))
    assert "t = 10" in values and numbers(values)
    plot_ok(weights)


def test_posterior_at_t(app, client, digit):
    """mu_tilde, mu_theta and their difference, and the table whose two forms of the mean part agree."""
    *means, table = client.predict(gradio_client.handle_file(digit), "any", 10, 0, api_name="/posterior_at_t")
    mu_tilde, mu_theta, difference = (picture(output, one_image(app)) for output in means)
    assert not np.array_equal(mu_tilde, difference)
    assert "t = 10" in table and numbers(table)
    rows = {line.split(" | ")[0]: line.split(" | ")[1:] for line in table.splitlines() if line.startswith("| $")}
    mean_part = next(cells for name, cells in rows.items() if "2\\sigma_t^2)$" in name and "tilde\\mu" in name)
    from_noise = next(cells for name, cells in rows.items() if "hat\\epsilon" in name)
    assert [float(c.strip(" |*")) for c in mean_part] == pytest.approx([float(c.strip(" |*")) for c in from_noise])
    # t = 0 has no KL: a message, no pictures
    *means, message = client.predict(gradio_client.handle_file(digit), "any", 0, 0, api_name="/posterior_at_t")
    assert all(file_path(output) is None for output in means) and "decoder" in message


def test_question_1_fresh_noise(app, client):
    final, outputs = result_and_outputs(client, "3", 2.0, "ddpm-fixed_small", STEPS, 1, 1, api_name="/fresh_noise")
    noise, mean = (picture(output, one_image(app)) for output in latest_files(outputs)[:2])
    assert not np.array_equal(noise, mean)
    assert f"Done: {STEPS} steps" in final[-1] and numbers(final[-1])


def test_question_2_timestep_input(app, client):
    final, outputs = result_and_outputs(client, "3", 2.0, STEPS, 2, 1, "fixed", 500, 100, api_name="/timestep_input")
    for output in latest_files(outputs)[:4]:
        picture(output, one_image(app))
    assert f"Done: {STEPS} steps" in final[-1] and numbers(final[-1])


def judged_runs() -> list[str]:
    """The runs judged on both bundled models: the entries of both evaluation.json files that have an accuracy."""
    runs = {}
    for name, folder in BUNDLED.items():
        records = json.loads((folder / "evaluation.json").read_text(encoding="utf-8"))
        runs[name] = {key: value for key, value in records.items() if isinstance(value, dict) and "accuracy" in value}
    return [key for key in runs["predicts ε"] if key in runs["predicts x₀"]]


def test_question_3_noise_vs_x0(app, client, digit):
    """The judge table has a row per run judged on both models, with both accuracies as evaluation.json has them."""
    final, outputs = result_and_outputs(
        client, gradio_client.handle_file(digit), "3", 2.0, STEPS, 3, 1, api_name="/noise_vs_x0"
    )
    eps_samples, x0_samples = latest_files(outputs)[:2]
    picture(eps_samples, one_image(app))
    picture(x0_samples, one_image(app))
    plot_ok(final[2])
    info = final[3]
    assert info.startswith("**Done.**") and numbers(info)
    runs = judged_runs()
    assert runs, "the bundled models share no judged run: question 3's table would be empty"
    rows = [line for line in info.splitlines() if line.startswith("| `")]
    assert len(rows) == len(runs)
    for key, row in zip(runs, rows, strict=True):
        accuracies = [
            json.loads((folder / "evaluation.json").read_text(encoding="utf-8"))[key]["accuracy"]
            for folder in BUNDLED.values()
        ]
        assert row.startswith(f"| `{key}` ") and all(f"{accuracy:.1%}" in row for accuracy in accuracies), row


@pytest.mark.slow  # 16 trajectories x 1000 steps: about a minute on one core
def test_question_4_elbo_forms(client, digit):
    histogram, info = client.predict(gradio_client.handle_file(digit), "any", 16, 0, api_name="/elbo_forms")
    plot_ok(histogram)
    kl_std, trajectory_std = (float(x) for x in re.findall(r"\*\*([\d.]+)\*\* \|", info))
    assert "16 trajectories" in info and kl_std > 0 and trajectory_std > 0 and numbers(info)


# ---------------------------------------------------------------------------------------------------------------------
# Hostile uploads: a picture, or a message; never a traceback
# ---------------------------------------------------------------------------------------------------------------------


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that claims width x height pixels (a decompression bomb, without the bytes)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


def hostile_upload(kind: str, folder: Path) -> Path:
    if kind == "not-an-image":
        path = folder / "notes.png"
        path.write_text("hello, I am not an image")
    elif kind == "huge-claimed":
        path = png_header_only(folder / "bomb.png", 9000, 9000)
    elif kind == "huge":
        path = folder / "huge.jpg"
        gradient = np.linspace(0, 255, 3000, dtype=np.uint8)
        Image.fromarray(np.broadcast_to(gradient, (2000, 3000))).convert("RGB").save(path, quality=80)
    elif kind == "1x1":
        path = folder / "dot.png"
        Image.new("L", (1, 1), 255).save(path)
    elif kind == "cmyk":
        path = folder / "cmyk.jpg"
        Image.new("CMYK", (60, 40), (0, 200, 100, 30)).save(path)
    elif kind == "rgba":
        path = folder / "rgba.png"
        Image.new("RGBA", (40, 30), (255, 255, 255, 128)).save(path)
    else:
        raise AssertionError(kind)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# ④ The whole distribution (2-D), on the bundled 2-D models (space/mixture_models)
# ---------------------------------------------------------------------------------------------------------------------


def test_twod_forward_and_score(app, client):
    assert set(app.TWOD.pretrained) == {"ring8", "two_blobs", "point", "standard_normal"}
    plot, formula = client.predict("ring8", 1.0, 100, 0, api_name="/twod_forward")
    plot_ok(plot)
    assert "t = 100" in formula and len(numbers(formula)) >= 3
    for spread, said in ((1.0, "trained on this data"), (1.5, "trained at spread 1, not 1.5")):
        plot, text = client.predict("two_blobs", spread, 10, api_name="/twod_score")
        plot_ok(plot)
        assert said in text and "At t = 10" in text


def test_twod_reverse(client):
    for sampler in ("ddpm-beta", "langevin"):
        final, outputs = result_and_outputs(client, "ring8", 1.0, sampler, 20, 300, 0, api_name="/twod_reverse")
        assert len(outputs) >= 3  # streamed, then done
        plot_ok(final[0])
        assert "done" in final[1] and len(numbers(final[1])) >= 3


def test_twod_variance(client):
    plot, text = client.predict(1.0, api_name="/twod_variance")
    plot_ok(plot)
    assert re.search(r"\| \*\*-?0\.000\*\* \|", text)  # s = 1, sigma^2 = beta: the bound is exact
    plot, text = client.predict(0.01, 20, 0, api_name="/twod_variance_check")
    plot_ok(plot)
    assert "20 draws" in text and "σ²ₜ = β̃ₜ**" in text


def test_twod_train(client):
    final, outputs = result_and_outputs(client, "point", 1.0, 250, 0, api_name="/twod_train")
    plot_ok(final[0])
    assert "Trained 250 steps" in final[1] and len(numbers(final[1])) >= 3


@pytest.mark.parametrize("kind", ["1x1", "cmyk", "rgba", "huge"])
def test_odd_images_are_converted(app, client, kind, tmp_path):
    path = hostile_upload(kind, tmp_path)
    outputs = client.predict(gradio_client.handle_file(str(path)), 20, 0, api_name="/forward")
    picture(outputs[2], one_image(app))  # x_t in one jump, from the converted upload


REFUSED = ["not-an-image", "huge-claimed"]
IMAGE_ENDPOINTS = {  # every endpoint that takes an upload: the arguments after the image
    "/forward": (20, 0),
    "/q_histogram": (20, 0),
    "/noise_denoise": (200, "any", 1.0, "ddim", 0.0, 20, 0, 1),
    "/bound": ("any", 0),
    "/at_t": ("any", 10, 0),
    "/posterior_at_t": ("any", 10, 0),
    "/noise_vs_x0": ("3", 2.0, STEPS, 3, 1),
    "/elbo_forms": ("any", 16, 0),
}


@pytest.mark.parametrize("kind", REFUSED)
def test_unusable_uploads_get_a_message(client, kind, tmp_path):
    path = hostile_upload(kind, tmp_path)
    for endpoint, rest in IMAGE_ENDPOINTS.items():
        with pytest.raises(Exception) as error:
            client.predict(gradio_client.handle_file(str(path)), *rest, api_name=endpoint)
        message = str(error.value)
        assert "This upload can't be used: " in message and path.name in message, (endpoint, message)
        assert "Traceback" not in message and str(tmp_path) not in message


def test_an_upload_over_the_size_limit_is_refused(app, client, tmp_path):
    """gradio_client refuses it before sending; the server refuses it too (a browser sends it anyway)."""
    import httpx

    assert app.MAX_FILE_SIZE == "10mb"
    path = tmp_path / "big.png"
    path.write_bytes(os.urandom(10 * 1024 * 1024 + 1024))
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        client.predict(gradio_client.handle_file(str(path)), 20, 0, api_name="/forward")
    with open(path, "rb") as file:
        answer = httpx.post(f"{client.src}gradio_api/upload", files={"files": file}, timeout=120)
    assert answer.status_code == 413 and "Traceback" not in answer.text, answer.text[:500]
