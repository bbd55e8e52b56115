"""The Space's sampling engine (space/engine.py): one merged U-Net call per tick over every active chain.

Engine-level tests on a tiny randomly initialised pipeline (T = 50): each chain gives what its seed gives alone,
every active chain advances every tick, caps and queue positions, Stop / a closed tab / a vanished reader free the
slot at once. The launched Space with 4 gradio_client users at once is at the end.
"""

import importlib.util
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from ddpm_hub import UNET_PRESETS, DDIMHubScheduler, DDPMHubPipeline, DDPMHubScheduler, DDPMHubUNet2DModel

ROOT = Path(__file__).resolve().parents[1]
T = 50


def load_engine_module():
    spec = importlib.util.spec_from_file_location("ddpm_hub_space_engine", ROOT / "space" / "engine.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


engine_module = load_engine_module()
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
    closed = engine.submit(chain_for(pipe, "fixed_small", T, 1, None, 1.0, 0.0, 0), owner="a", alive=tab_open.is_set)
    gone = engine.submit(chain_for(pipe, "fixed_small", T, 1, None, 1.0, 0.0, 1), owner="b")  # nobody reads it
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
