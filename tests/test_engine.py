"""The Space's sampling engine (space/engine.py): one merged U-Net call per tick over every active chain.

Engine-level tests on a tiny randomly initialised pipeline (T = 50): each chain gives what its seed gives alone,
every active chain advances every tick, caps and queue positions, Stop / a closed tab / a vanished reader free the
slot at once. The launched Space with 4 gradio_client users at once is at the end.
"""

import importlib.util
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm_hub import UNET_PRESETS, DDIMHubScheduler, DDPMHubPipeline, DDPMHubScheduler, DDPMHubUNet2DModel

ROOT = Path(__file__).resolve().parents[1]
# gradio's queue uses pandas in ways pandas 3 deprecates; not this package's concern.
pytestmark = pytest.mark.filterwarnings(
    "ignore:'future.no_silent_downcasting' is deprecated", "ignore:The copy keyword is deprecated"
)
T = 50


sys.path.insert(0, str(ROOT / "space"))  # the Space's package, ddpm_space/, as app.py imports it
from ddpm_space import chains, pictures  # noqa: E402
from ddpm_space import engine as engine_module  # noqa: E402
from ddpm_space.inputs import as_label  # noqa: E402

Engine, EngineBusy = engine_module.Engine, engine_module.EngineBusy
Queued, Progress = engine_module.Queued, engine_module.Progress
Done, Stopped = engine_module.Done, engine_module.Stopped


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    unet = DDPMHubUNet2DModel(**UNET_PRESETS["tiny"]).eval()
    pipeline = DDPMHubPipeline(unet=unet, scheduler=DDPMHubScheduler(num_train_timesteps=T))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def scheduler_for(pipe, sampler):
    config = dict(pipe.scheduler.config)
    if sampler == "ddim":
        return DDIMHubScheduler.from_config(config)
    return DDPMHubScheduler.from_config({**config, "variance_type": sampler})


# (sampler, steps, batch, label, w, eta, seed): mixed samplers, batch sizes, guided / conditional / unconditional
SETTINGS = [
    ("fixed_small", T, 3, 3, 2.0, 0.0, 11),
    ("ddim", 7, 1, None, 1.0, 0.5, 12),
    ("fixed_large", 20, 2, 7, 0.0, 0.0, 13),
    ("ddim", 10, 4, 5, 1.0, 0.0, 14),
    ("ddim", 25, 2, 1, 3.0, 1.0, 15),
]


def chain_for(pipe, sampler, steps, batch, label, w, eta, seed):
    return pipe.prepare_chain(
        batch_size=batch,
        class_labels=label,
        guidance_scale=w,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        eta=eta,
        scheduler=scheduler_for(pipe, sampler),
    )


def alone(pipe, sampler, steps, batch, label, w, eta, seed):
    """x_0 of the chain run by itself with the library's generator (no engine)."""
    pipeline = DDPMHubPipeline(unet=pipe.unet, scheduler=scheduler_for(pipe, sampler))
    pipeline.set_progress_bar_config(disable=True)
    *_, last = pipeline.denoising_steps(
        batch_size=batch,
        class_labels=label,
        guidance_scale=w,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        eta=eta,
    )
    return last.prev_sample


def drain(ticket, timeout=60):
    """All updates of a ticket, read on this thread (fails instead of hanging)."""
    updates, deadline = [], time.monotonic() + timeout
    for update in ticket.updates():
        updates.append(update)
        assert time.monotonic() < deadline, "the chain did not finish"
    return updates


def wait_for(condition, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def make_engine(pipe):
    engines = []

    def make(**kwargs):
        engine = Engine(pipe, **kwargs)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


def test_each_chain_gives_what_its_seed_gives_alone(pipe, make_engine):
    engine = make_engine(start=False)  # all five enter the first tick together
    tickets = [engine.submit(chain_for(pipe, *settings), owner=f"visitor{i}") for i, settings in enumerate(SETTINGS)]
    engine.start()
    for settings, ticket in zip(SETTINGS, tickets, strict=True):
        updates = drain(ticket)
        assert isinstance(updates[-1], Done), updates[-1]
        steps = [u for u in updates if isinstance(u, Progress)]
        assert [u.k for u in steps] == list(range(1, settings[1] + 1))
        expected = alone(pipe, *settings)
        torch.testing.assert_close(updates[-1].step.prev_sample, expected, atol=1e-4, rtol=1e-4)
    # They really shared the U-Net calls: 5 chains, as many ticks as the longest one.
    assert engine.ticks == max(settings[1] for settings in SETTINGS)


def test_a_big_chain_does_not_stall_a_small_one(pipe, make_engine):
    """A 16-image guided DDPM chain beside a 1-image DDIM-10: both advance at every tick, the small one is done
    after its own 10 ticks, not after the big one."""
    engine = make_engine(start=False)
    big = engine.submit(chain_for(pipe, "fixed_small", T, 16, 4, 2.0, 0.0, 0), owner="a")
    small = engine.submit(chain_for(pipe, "ddim", 10, 1, 2, 1.0, 0.0, 1), owner="b")
    assert big.rows == 32 and small.rows == 1 and big.state == small.state == "active"
    engine.start()
    small_updates = drain(small)
    big_ticks_so_far = [u.tick for u in big.pending() if isinstance(u, Progress)]
    assert [u.tick for u in small_updates if isinstance(u, Progress)] == list(range(1, 11))
    assert isinstance(small_updates[-1], Done)
    assert big_ticks_so_far[:10] == list(range(1, 11))  # the big chain stepped in the very same ticks
    assert big.state == "active"
    updates = drain(big)
    assert isinstance(updates[-1], Done) and engine.ticks == T


def test_caps_and_queue_positions(pipe, make_engine):
    engine = make_engine(max_active=2, start=False)
    a, b, c, d = (engine.submit(chain_for(pipe, "ddim", 5, 1, None, 1.0, 0.0, i), owner=f"v{i}") for i in range(4))
    assert [t.state for t in (a, b, c, d)] == ["active", "active", "queued", "queued"]
    assert c.pending() == [Queued(1, None)] and d.pending() == [Queued(2, None)]
    assert engine.stats()["active"] == 2 and engine.stats()["queued"] == 2
    a.cancel()  # the slot frees at once: c moves in, d moves up
    assert c.state == "active" and d.state == "queued" and d.pending() == [Queued(1, None)]
    assert isinstance(a.pending()[-1], Stopped)


def test_a_visitor_over_their_cap_waits_without_holding_up_others(pipe, make_engine):
    engine = make_engine(max_active=8, max_images_per_owner=4, start=False)
    first = engine.submit(chain_for(pipe, "ddim", 5, 3, None, 1.0, 0.0, 0), owner="greedy")
    second = engine.submit(chain_for(pipe, "ddim", 5, 2, None, 1.0, 0.0, 1), owner="greedy")
    other = engine.submit(chain_for(pipe, "ddim", 5, 4, None, 1.0, 0.0, 2), owner="other")
    assert (first.state, second.state, other.state) == ("active", "queued", "active")
    engine.start()
    assert isinstance(drain(second)[-1], Done)  # it ran once the visitor's first chain was done
    with pytest.raises(ValueError, match="max_images_per_owner=4"):
        engine.submit(chain_for(pipe, "ddim", 5, 5, None, 1.0, 0.0, 3), owner="greedy")


def test_the_batch_is_bounded_in_rows_and_the_queue_in_length(pipe, make_engine):
    engine = make_engine(max_rows=8, max_queued=1, start=False)
    guided = engine.submit(chain_for(pipe, "ddim", 5, 3, 1, 2.0, 0.0, 0), owner="a")  # 6 rows
    waits = engine.submit(chain_for(pipe, "ddim", 5, 2, 1, 2.0, 0.0, 1), owner="b")  # 4 more: over 8
    assert guided.state == "active" and waits.state == "queued"
    with pytest.raises(EngineBusy, match="waiting"):
        engine.submit(chain_for(pipe, "ddim", 5, 1, None, 1.0, 0.0, 2), owner="c")
    with pytest.raises(ValueError, match="max_rows=8"):
        engine.submit(chain_for(pipe, "ddim", 5, 5, 1, 2.0, 0.0, 2), owner="c")
    engine.start()
    assert isinstance(drain(waits)[-1], Done)


def test_queued_visitors_hear_their_position_and_wait(pipe, make_engine):
    engine = make_engine(max_active=1)
    first = engine.submit(chain_for(pipe, "fixed_small", T, 1, None, 1.0, 0.0, 0), owner="a")
    wait_for(lambda: engine.ticks >= 2)  # the tick time is known
    second = engine.submit(chain_for(pipe, "ddim", 10, 1, None, 1.0, 0.0, 1), owner="b")
    third = engine.submit(chain_for(pipe, "ddim", 10, 1, None, 1.0, 0.0, 2), owner="c")
    (told_second,), (told_third,) = second.pending()[:1], third.pending()[:1]
    assert (told_second.position, told_third.position) == (1, 2)
    assert 0 < told_second.eta_s <= told_third.eta_s  # the third also waits for the second's 10 steps
    updates = drain(third)
    positions = [u.position for u in updates if isinstance(u, Queued)]
    assert positions[-1] == 1 and positions == sorted(positions, reverse=True)  # moved up (re-told while waiting)
    assert isinstance(updates[-1], Done)
    assert first.state == second.state == "done"


def test_stop_and_closing_free_the_slot_at_once(pipe, make_engine):
    engine = make_engine(max_active=1)
    running = engine.submit(chain_for(pipe, "fixed_small", T, 2, 3, 2.0, 0.0, 0), owner="a")
    waiting = engine.submit(chain_for(pipe, "fixed_small", T, 1, None, 1.0, 0.0, 1), owner="b")
    updates = running.updates()
    assert isinstance(next(updates), Progress)
    running.cancel()
    assert waiting.state == "active"  # before any further tick
    rest = list(updates)
    assert isinstance(rest[-1], Stopped) and rest[-1].reason == "stopped"
    assert all(isinstance(u, Progress) for u in rest[:-1])  # what was already computed, then the stop
    assert rest[-1].step.step_index == running.chain.step_index - 1  # the last step it made
    # Closing the reader (gradio closes the generator of a cancelled event) stops the chain too.
    reader = waiting.updates()
    next(u for u in reader if isinstance(u, Progress))
    reader.close()
    assert waiting.state == "stopped" and engine.stats()["active"] == 0


def test_a_closed_tab_or_a_vanished_reader_frees_the_slot(pipe, make_engine):
    engine = make_engine(abandon_after_s=0.3)
    tab_open = threading.Event()
    tab_open.set()

    # chains far longer than abandon_after_s on any machine (5,000 steps), so that neither can finish first
    def long_chain(seed):
        return pipe.prepare_chain(
            num_inference_steps=5000,
            generator=torch.Generator().manual_seed(seed),
            scheduler=DDPMHubScheduler(num_train_timesteps=5000),
        )

    closed = engine.submit(long_chain(0), owner="a", alive=tab_open.is_set)
    gone = engine.submit(long_chain(1), owner="b")  # nobody reads it
    next(u for u in closed.updates() if isinstance(u, Progress))
    tab_open.clear()
    wait_for(lambda: closed.state == "stopped" and gone.state == "stopped")
    assert closed.pending()[-1].reason == "closed" and gone.pending()[-1].reason == "abandoned"
    assert engine.stats()["active"] == 0


def test_a_chain_of_another_model_is_refused(pipe, make_engine):
    engine = make_engine(start=False)
    other = DDPMHubPipeline(
        unet=DDPMHubUNet2DModel(**{**UNET_PRESETS["tiny"], "sample_size": 16}),
        scheduler=DDPMHubScheduler(num_train_timesteps=T),
    )
    with pytest.raises(ValueError, match="not this engine's model"):
        engine.submit(other.prepare_chain(batch_size=1, num_inference_steps=3), owner="a")


@pytest.mark.skipif(not engine_module.native_bf16(torch.device("cpu")), reason="no native bf16 on this CPU")
def test_large_merged_batches_may_run_in_bf16(pipe, make_engine):
    engine = make_engine(bf16_min_rows=4, start=False)
    small = engine.submit(chain_for(pipe, "ddim", 5, 1, None, 1.0, 0.0, 0), owner="a")
    engine.start()
    assert not any(u.bf16 for u in drain(small) if isinstance(u, Progress))  # 1 row: float32
    big = engine.submit(chain_for(pipe, "ddim", 5, 2, 3, 2.0, 0.0, 1), owner="b")
    updates = drain(big)
    assert all(u.bf16 for u in updates if isinstance(u, Progress))
    close = alone(pipe, "ddim", 5, 2, 3, 2.0, 0.0, 1)
    torch.testing.assert_close(updates[-1].step.prev_sample, close, atol=0.1, rtol=0)  # bf16: close, not equal
    assert pipe.unet_autocast_dtype is None  # the shared pipeline stays float32


def test_the_exported_unet_on_onnxruntime_gives_each_chain_what_its_seed_gives_alone(pipe, make_engine, tmp_path):
    """`forward=OnnxUNet(...)` (the Space's DDPM_HUB_ONNX): every chain of mixed samplers, guided, conditional and
    unconditional, ends where the PyTorch U-Net takes it alone, to float32 rounding."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e .[test])")
    pytest.importorskip("onnx", reason="onnx is not installed (pip install -e .[export])")
    from ddpm_hub.export import OnnxUNet, export_unet

    graph = OnnxUNet(export_unet(pipe, tmp_path / "unet.onnx"), null_class=pipe.num_classes)
    engine = make_engine(forward=graph, start=False)
    tickets = [engine.submit(chain_for(pipe, *settings), owner=f"visitor{i}") for i, settings in enumerate(SETTINGS)]
    calls = []
    run = graph.session.run
    graph.session.run = lambda *args: calls.append(1) or run(*args)  # the ticks really ran on onnxruntime
    engine.start()
    for settings, ticket in zip(SETTINGS, tickets, strict=True):
        updates = drain(ticket)
        assert isinstance(updates[-1], Done), updates[-1]
        torch.testing.assert_close(updates[-1].step.prev_sample, alone(pipe, *settings), atol=1e-4, rtol=1e-4)
    assert len(calls) == engine.ticks == max(settings[1] for settings in SETTINGS)


# ---------------------------------------------------------------------------------------------------------------------
# The launched Space: every visitor's chains in the one engine
# ---------------------------------------------------------------------------------------------------------------------

SPACE_T = 200  # long enough that 4 clients' chains overlap however the machine schedules their submissions


@pytest.fixture(scope="module")
def space_app(tmp_path_factory):
    """space/app.py imported with a tiny T = 200 model (as tests/test_space.py does with T = 50)."""
    pytest.importorskip("gradio", reason="the Space needs gradio (pip install -e .[space])")
    folder = tmp_path_factory.mktemp("tiny_pipeline_200")
    torch.manual_seed(0)
    unet = DDPMHubUNet2DModel(**UNET_PRESETS["tiny"])
    DDPMHubPipeline(unet=unet, scheduler=DDPMHubScheduler(num_train_timesteps=SPACE_T)).save_pretrained(folder)
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DDPM_HUB_MODEL", str(folder))
        patch.setenv("DDPM_HUB_THREADS", "1")
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        spec = importlib.util.spec_from_file_location("ddpm_hub_space_app_engine", ROOT / "space" / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    module.SPACE.engine.close()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def space_url(space_app):
    with socket.socket() as sock:  # a free port: other Space tests may run at the same time
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    space_app.demo.launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **space_app.LAUNCH_KWARGS
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        space_app.demo.close()


# (digit, w, sampler, eta, steps, seed, images): the Generate tab's controls, four visitors' different choices
VISITORS = [
    ("3", 2.0, "ddpm-fixed_small", 0.0, SPACE_T, 1, 2),
    ("any", 1.0, "ddpm-fixed_large", 0.0, SPACE_T, 2, 1),
    ("7", 1.0, "ddim", 0.5, 150, 3, 3),
    ("1", 3.0, "ddim", 0.0, 100, 4, 1),
]


def seed_alone(app, digit, w, sampler, eta, steps, seed, images):
    """The final x_0 picture these controls give when the library runs the chain by itself."""
    chain = app.SPACE.pipe.prepare_chain(
        batch_size=images,
        class_labels=as_label(app.SPACE, digit),
        guidance_scale=w,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        eta=eta,
        scheduler=chains.new_scheduler(app.SPACE.pipe, sampler),
    )
    *_, last = app.SPACE.pipe.denoising_steps(chain=chain)
    return pictures.grid(pictures.to_u8(last.prev_sample))


def test_four_clients_stream_at_once_and_each_gets_what_its_seed_gives_alone(
    space_app, space_url, tmp_path, monkeypatch
):
    gradio_client = pytest.importorskip("gradio_client")
    from PIL import Image

    monkeypatch.setattr(chains, "STREAMED_FRAMES", 20)  # fewer pictures to send: a quicker test

    clients = [
        gradio_client.Client(space_url, verbose=False, download_files=str(tmp_path / f"c{i}"), analytics_enabled=False)
        for i in range(len(VISITORS))
    ]
    start = threading.Barrier(len(VISITORS))
    seen = [{} for _ in VISITORS]
    ticks_before = space_app.SPACE.engine.ticks

    def visitor(index):
        start.wait()
        job = clients[index].submit(*VISITORS[index], api_name="/generate")
        for output in job:
            if "first" not in seen[index] and str(output[3]).startswith("**Step"):
                seen[index]["first"] = time.monotonic()
            seen[index]["last"] = output
        seen[index]["end"] = time.monotonic()
        seen[index]["error"] = job.exception()

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(len(VISITORS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    for client in clients:
        client.close()

    assert [s["error"] for s in seen] == [None] * len(VISITORS)
    assert all(s["last"][3].startswith("**Done") for s in seen)
    # Everyone streamed at once: every first frame came before any chain was done.
    assert max(s["first"] for s in seen) < min(s["end"] for s in seen)
    # One U-Net call per tick for all of them: far fewer ticks than steps.
    assert space_app.SPACE.engine.ticks - ticks_before < sum(v[4] for v in VISITORS)
    for settings, s in zip(VISITORS, seen, strict=True):
        with Image.open(s["last"][0]) as image:
            received = np.asarray(image.convert("L")).astype(int)
        alone = seed_alone(space_app, *settings).astype(int)
        assert received.shape == alone.shape
        assert np.abs(received - alone).max() <= 1, settings  # float rounding may flip a pixel's last bit


def test_stop_says_where_it_stopped_and_the_scrub_range_is_the_kept_frames(space_app):
    stream = space_app.generate("3", 1.0, "ddpm-fixed_small", 0.0, SPACE_T, 0, 1)
    first = next(stream)
    assert first[3].startswith("**Step 1 / 200**") and " left" in first[3]
    space_app.stop_generate()  # the Stop button
    *_, (x, eps, x0, info, slider, chain) = list(stream)
    kept = len(chain["t"])
    assert 1 <= kept < SPACE_T and chain["stopped"] and not chain["done"] and len(chain["x"]) == kept
    assert info.startswith(f"**Stopped at t = {chain['t'][-1]}**, after {kept} of {SPACE_T} steps")
    assert (slider["minimum"], slider["maximum"], slider["value"]) == (chain["t"][-1], SPACE_T - 1, chain["t"][-1])
    assert f"Step {kept} / {SPACE_T}" in space_app.scrub(slider["minimum"], chain)[3]
    assert space_app.SPACE.engine.stats()["active"] == 0  # the slot is free


def test_stop_in_the_other_chain_tabs(space_app):
    stream = space_app.compare("5", 2.0, SPACE_T, 50, 0.0, 7, 2)
    assert " left" in next(stream)[-1]
    space_app.stop_compare()
    assert "**Stopped at t = " in list(stream)[-1][-1]
    digit, _ = space_app.load_digit(700)
    stream = space_app.noise_denoise(digit, SPACE_T - 1, "any", 1.0, "ddpm-fixed_small", 0.0, SPACE_T, 0, 2)
    assert " left" in next(stream)[-1]
    space_app.stop_noise_denoise()
    assert list(stream)[-1][-1].startswith("**Stopped at t = ")
    assert space_app.SPACE.engine.stats() | {"ticks": 0, "tick_s": 0} == {
        "active": 0, "queued": 0, "rows": 0, "ticks": 0, "tick_s": 0
    }  # fmt: skip


def test_a_visitor_beyond_the_cap_sees_their_place_in_the_queue(space_app, monkeypatch):
    monkeypatch.setattr(space_app.SPACE, "engine", Engine(space_app.SPACE.pipe, max_active=1))
    try:
        running = space_app.generate("3", 1.0, "ddpm-fixed_small", 0.0, SPACE_T, 0, 1)
        assert next(running)[3].startswith("**Step 1")
        waiting = space_app.generate("4", 1.0, "ddpm-fixed_small", 0.0, SPACE_T, 1, 1)
        x, _, _, info, _, _ = next(waiting)
        assert info.startswith("**Waiting for a free slot:** number 1 in the queue") and "1 chains are running" in info
        space_app.stop_generate()  # both are this visitor's: the running one and the waiting one stop
        assert list(running)[-1][3].startswith("**Stopped")
        assert list(waiting)[-1][3] == "**Stopped** before the first step."
    finally:
        space_app.SPACE.engine.close()


def test_a_closed_tab_frees_its_slot(space_app, space_url, monkeypatch):
    """A browser joins the queue and reads the stream, then goes away: Gradio never closes the chain's generator,
    the engine sees the session gone and stops the chain."""
    httpx = pytest.importorskip("httpx")
    engine = space_app.SPACE.engine
    monkeypatch.setattr(engine, "abandon_after_s", 1e9)  # only the closed session can stop it
    # each tick at least 20 ms, so the chain (SPACE_T ticks) is still running when the test looks, however fast the
    # machine: on a quiet one it once finished before the first frame was read
    unet_call = engine.forward or engine.pipeline.unet_forward

    def slow_unet_call(sample, timestep, class_labels):
        time.sleep(0.02)
        return unet_call(sample, timestep, class_labels)

    monkeypatch.setattr(engine, "forward", slow_unet_call)
    ticks_before = engine.ticks
    fn_index = next(index for index, fn in space_app.demo.fns.items() if fn.api_name == "generate")
    session = "closed-tab-test"
    body = {"data": ["3", 1.0, "ddpm-fixed_small", 0.0, SPACE_T, 0, 1], "fn_index": fn_index, "session_hash": session}
    with httpx.Client(base_url=space_url, timeout=60) as http:
        http.post("gradio_api/queue/join", json=body).raise_for_status()
        with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if '"process_generating"' in line:  # the first frame has arrived
                    break
        assert space_app.SPACE.engine.stats()["active"] == 1
    wait_for(lambda: engine.stats()["active"] == 0, timeout=600)  # the tab is gone: the slot is free
    assert engine.ticks - ticks_before < SPACE_T  # stopped, not finished
