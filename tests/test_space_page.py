"""What the page shows beside the chains: the variance plot, the schedules plot, the switched-off controls, the GIF
size, and the hosting switch (`ddpm_space.hosting`: nothing happens off ZeroGPU)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

gr = pytest.importorskip("gradio", reason="the Space needs gradio (pip install -e .[space])")
pytest.importorskip("matplotlib", reason="the Space needs matplotlib (pip install -e .[space])")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "space"))

from ddpm_space import forward_tab, hosting, reverse_tab, widgets  # noqa: E402
from ddpm_space.engine import Engine  # noqa: E402
from ddpm_space.loading import load_pipeline  # noqa: E402
from ddpm_space.state import UNCONDITIONAL, Space  # noqa: E402
from ddpm_space.variance_plot import step_sigmas, variance_plot, variances  # noqa: E402

from ddpm_hub import UNET_PRESETS, DDPMHubPipeline, DDPMHubScheduler, DDPMHubUNet2DModel  # noqa: E402

T = 50


@pytest.fixture(scope="module")
def space():
    torch.manual_seed(0)
    pipe = DDPMHubPipeline(
        unet=DDPMHubUNet2DModel(**UNET_PRESETS["tiny"]), scheduler=DDPMHubScheduler(num_train_timesteps=T)
    )
    pipe.set_progress_bar_config(disable=True)
    space = Space(pipe=pipe, model_id="tiny", model_name="tiny")
    space.engine = Engine(pipe)  # the chain tabs run in the shared sampling engine, as in app.py
    return space


def test_beta_and_beta_tilde_differ_at_small_t_and_meet_later(space):
    t, beta, beta_tilde = variances(space)
    assert t[0] == 1 and len(t) == T - 1
    ratio = np.array(beta_tilde) / np.array(beta)
    assert ratio[0] < 0.6 and ratio[-1] > 0.95 and np.all(np.diff(ratio) >= -1e-12)  # beta-tilde catches up
    figure = variance_plot(space, "ddpm-fixed_small", T, 0.0)
    left, right = figure.axes
    assert left.get_yscale() == "log" and left.get_xscale() == "log"
    np.testing.assert_allclose(left.get_lines()[1].get_ydata(), beta_tilde)


@pytest.mark.parametrize(
    "sampler,steps,eta,follows",
    [("ddpm-fixed_small", T, 0.0, "beta_tilde"), ("ddpm-fixed_large", T, 0.0, "beta"), ("ddim", 10, 0.5, "half")],
)
def test_sigma_per_step_is_the_samplers_own(space, sampler, steps, eta, follows):
    times, sigmas, betas, beta_tildes = step_sigmas(space, sampler, steps, eta)
    assert len(times) == steps and times == sorted(times, reverse=True)
    expected = {"beta_tilde": beta_tildes, "beta": betas, "half": [0.5 * b for b in beta_tildes]}[follows]
    last = -1 if sampler != "ddim" else None  # DDPM adds no noise at t = 0
    np.testing.assert_allclose(sigmas[:last], expected[:last], rtol=1e-5)
    if sampler != "ddim":
        assert sigmas[-1] == 0.0
    assert sum(s > 0 for s in step_sigmas(space, "ddim", 10, 0.0)[1]) == 0  # deterministic DDIM


def test_schedules_plot_has_beta_on_a_log_axis(space):
    figure = forward_tab.schedules_plot(space, 10)
    assert figure.axes[0].get_yscale() == "log"  # the cosine end spike does not flatten the linear curve


def test_controls_that_would_do_nothing_are_switched_off():
    assert widgets.guidance_control(UNCONDITIONAL)["interactive"] is False
    assert widgets.guidance_control("3")["interactive"] is True
    assert widgets.eta_control("ddim")["interactive"] is True
    assert widgets.eta_control("ddpm-fixed_small")["interactive"] is False


def test_gif_frames_shrink_with_the_number_of_images(space):
    *_, last = reverse_tab.generate(space, "3", 2.0, "ddim", 0.0, T, 0, 16)
    chain = last[-1]
    frames = reverse_tab.gif_frames(chain)
    assert frames[0] == 0 and frames[-1] == T and len(frames) - 1 <= reverse_tab.GIF_IMAGE_FRAMES // 16
    path = reverse_tab.write_gif(space, chain)
    from PIL import Image

    with Image.open(path) as gif:
        assert gif.n_frames == len(frames)
    assert os.path.getsize(path) < 1_000_000


@pytest.mark.slow
def test_gif_of_the_default_chain_is_well_under_1_mb():
    """The page's defaults (bundled model, DDPM, 1000 steps, 8 images, the recorded w): the export is about 0.6 MB
    (was 3 MB). The Space is built as app.py builds it: its chains run in a sampling engine."""
    model = str(ROOT / "space" / "default_model")
    bundled = Space(pipe=load_pipeline(model), model_id=model, model_name="bundled")
    bundled.engine = Engine(bundled.pipe)
    guidance = bundled.pipe.config.guidance_scale
    try:
        *_, last = reverse_tab.generate(bundled, "3", guidance, "ddpm-fixed_small", 0.0, 1000, 42, 8)
        assert last[3].startswith("**Done")
        assert os.path.getsize(reverse_tab.write_gif(bundled, last[-1])) < 800_000
    finally:
        bundled.engine.close()


def test_off_zero_gpu_the_handlers_are_left_as_they_are(space):
    assert not hosting.ZERO_GPU and hosting.spaces is None and hosting.device() == torch.device("cpu")

    def handler(x):
        return x

    assert hosting.on_gpu(handler, space.pipe.unet, duration=30) is handler
    assert hosting.gpu_seconds("not a number", 8, True) == hosting.MAX_GPU_SECONDS
    assert hosting.MIN_GPU_SECONDS <= hosting.gpu_seconds(10, 1, False) < hosting.gpu_seconds(1000, 16, True)
    assert hosting.gpu_seconds(1000, 16, True) <= hosting.MAX_GPU_SECONDS


def test_on_zero_gpu_a_chain_runs_on_an_engine_of_its_own_call(space, monkeypatch):
    """In a `spaces.GPU` worker the app's engine thread does not exist: here the shared engine is a stopped one (it
    would never answer), and Generate must still run its chain to the end."""
    from ddpm_space import chains

    monkeypatch.setattr(hosting, "ZERO_GPU", True)
    monkeypatch.setattr(space, "engine", Engine(space.pipe, start=False))
    frames = []  # drained on a thread: through the stopped shared engine it would wait forever, so fail instead
    drain = threading.Thread(target=lambda: frames.extend(reverse_tab.generate(space, "3", 2.0, "ddim", 0.0, 5, 0, 1)))
    drain.daemon = True
    drain.start()
    drain.join(timeout=120)
    assert not drain.is_alive(), "the chain never ran: it went to the app's engine"
    assert len(frames) >= 2 and space.engine.stats()["active"] == space.engine.stats()["queued"] == 0
    monkeypatch.setattr(hosting, "ZERO_GPU", False)
    ticket = chains.submit(space, space.pipe.prepare_chain(num_inference_steps=3), None, "check")
    stats = space.engine.stats()
    assert stats["active"] + stats["queued"] == 1  # off ZeroGPU: the shared engine, as before
    ticket.cancel()


def test_on_zero_gpu_handlers_go_through_spaces_gpu_with_their_duration(tmp_path):
    """With SPACES_ZERO_GPU=true, `on_gpu` hands `spaces.GPU` a wrapper of the same kind (generator or not) and the
    duration; `spaces` itself is the platform's (here a recorder with the same signature, `GPU(task, duration=)`)."""
    fake = tmp_path / "spaces"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import inspect\ncalls = []\n"
        "def GPU(task=None, *, duration=None, size=None):\n"
        "    calls.append((task, duration, inspect.isgeneratorfunction(task)))\n"
        "    return task\n"
    )
    code = """
import torch
from ddpm_space import hosting
import spaces

moved = []
class Model(torch.nn.Module):
    def to(self, device):
        moved.append(str(device))
        return self

def chain(n):
    yield from range(n)

def once(n):
    return n * 2

streamed = hosting.on_gpu(chain, Model(), duration=lambda n: 5 * n)
single = hosting.on_gpu(once, Model(), duration=7)
assert list(streamed(3)) == [0, 1, 2] and single(4) == 8
(task_a, duration_a, gen_a), (task_b, duration_b, gen_b) = spaces.calls
assert gen_a and not gen_b and duration_a(3) == 15 and duration_b == 7
assert moved == ["cpu", "cpu"]  # inside each call; CUDA where the platform attached a GPU
assert hosting.ZERO_GPU and hosting.HOST == "ZeroGPU"
print("ok")
"""
    path = os.pathsep.join([str(tmp_path), str(ROOT / "space")])
    env = {**os.environ, "SPACES_ZERO_GPU": "true", "PYTHONPATH": path}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


# ---------------------------------------------------------------------------------------------------------------------
# Pictures are served complete: a cached picture is never rewritten while it is served
# ---------------------------------------------------------------------------------------------------------------------


def bad_reads_while_rewritten(write, requests: int = 200) -> dict[str, int]:
    """Two threads write the same picture to Gradio's cache over and over (what identical frames of two panels or two
    visitors do) while this thread fetches it through the app's file route; returns how the fetches failed (kind ->
    count): an error of the connection, or a body that is not the picture's bytes."""
    import socket

    import httpx

    with gr.Blocks() as demo:
        component = widgets.picture("x_t")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    frame = (np.random.default_rng(0).random((250, 500)) > 0.5).astype(np.uint8) * 255  # ~27 kB of PNG
    try:
        path = write(component, frame)
        with open(path, "rb") as file:
            expected = file.read()
        stop = threading.Event()

        def rewrite():
            while not stop.is_set():
                write(component, frame)

        writers = [threading.Thread(target=rewrite, daemon=True) for _ in range(2)]
        for writer in writers:
            writer.start()
        bad: dict[str, int] = {}
        try:
            with httpx.Client(timeout=30) as client:
                for _ in range(requests):
                    try:
                        answer = client.get(f"http://127.0.0.1:{port}/gradio_api/file={path}")
                        kind = None if answer.content == expected else f"{len(answer.content)} of {len(expected)} B"
                    except httpx.TransportError as err:  # the server gave up midway
                        kind = type(err).__name__
                    if kind is not None:
                        bad[kind] = bad.get(kind, 0) + 1
        finally:
            stop.set()
            for writer in writers:
                writer.join()
    finally:
        demo.close()
    return bad


def test_the_space_never_rewrites_a_picture_while_it_is_served():
    """Gradio's own cache writer (gr.Image.postprocess -> ... -> processing_utils.save_pil_to_cache) truncates and
    rewrites the content-hash file on every save: fetches of it come back empty or cut short ("Too little data for
    declared Content-Length" in the server log). The page's pictures (`widgets.picture`, `pictures.written_once`) write
    each file once, atomically: every fetch is the whole picture. The first half is the control that shows this test
    catches the race."""
    from gradio import processing_utils

    def gradio_writer(component, frame):
        return processing_utils.save_img_array_to_cache(frame, component.GRADIO_CACHE, format="png")

    def space_writer(component, frame):
        return component.postprocess(frame).path  # what the page's pictures do with a handler's array

    assert sum(bad_reads_while_rewritten(gradio_writer).values()) > 0, "gradio no longer rewrites cached pictures"
    assert bad_reads_while_rewritten(space_writer) == {}


def test_pictures_are_images_to_the_page_and_written_once(tmp_path):
    from ddpm_space import pictures

    component = widgets.picture("x_t")
    assert type(component) is gr.Image and pictures.is_written_once(component)
    frame = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    path = pictures.save_picture(frame, tmp_path)
    before = os.stat(path)
    assert pictures.save_picture(frame.copy(), tmp_path) == path and os.stat(path).st_ino == before.st_ino
    from PIL import Image

    with Image.open(path) as image:
        assert np.array_equal(np.asarray(image), frame)
    assert [p.name for p in Path(path).parent.iterdir()] == [pictures.NAME]  # no temporary file left behind
    assert pictures.save_picture(frame + 1, tmp_path) != path
