"""Where a loaded engine tick goes: the U-Net against everything around it, in one process, no web server.

    python benchmarks/profile_engine.py                       # 8 chains at the page defaults, 40 ticks, 1 thread
    python benchmarks/profile_engine.py --ticks 20 --threads 2 --cprofile

Three ways of running the same 8 chains (the Generate tab's defaults: DDPM, 8 digits, the model's w, so 16 U-Net rows
per chain and 128 per tick), interleaved over `--repeats`:

- `unet`: the merged U-Net call alone, once per tick, on the same (128, C, H, W) input: the ceiling;
- `engine`: the `Engine` with 8 chains, each read by a thread that only drains its updates;
- `space`: the same chains through the Generate handler (`reverse_tab.generate`, 8 threads, as Gradio runs it) with
  each yielded picture encoded to PNG (what Gradio's postprocess does with it): the Space minus HTTP and the clients.

For each it prints the seconds per tick, the delivered share (U-Net alone / that), and a breakdown of the engine
thread's tick (U-Net call, chains' `step`s, the rest) measured by timers around each part; `--cprofile` adds a
cProfile of the engine thread (cProfile sees one thread: the tick thread, where the U-Net runs) and of one handler.
The load average is printed beside every result: on a shared machine, read the ratios, not the seconds.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as space/app.py sets it, before torch is imported

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "space"))

from ddpm_space import chains, pictures, reverse_tab  # noqa: E402
from ddpm_space.engine import Engine  # noqa: E402
from ddpm_space.state import Space  # noqa: E402

from ddpm_hub import DDPMHubPipeline  # noqa: E402


def load_space(model: str) -> Space:
    pipe = DDPMHubPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    return Space(pipe=pipe, model_id=model, model_name=model)


def page_chain(space: Space, seed: int, steps: int, batch: int):
    return chains.start(
        space, "ddpm-fixed_small", space.pipe.config.guidance_scale, batch_size=batch, class_labels=3,
        num_inference_steps=steps, generator=torch.Generator().manual_seed(seed), eta=0.0,
    )  # fmt: skip


class TickTimer:
    """Wraps an engine's U-Net call and its chains' `step` with timers: seconds in each, summed over ticks."""

    def __init__(self, engine: Engine, ticks: int):
        self.unet_s = self.step_s = 0.0
        self.rows = self.calls = 0
        self.reached = threading.Event()  # set when the `ticks`-th U-Net call returns
        self.reached_at = None
        pipeline = engine.pipeline
        forward = pipeline.unet_forward

        def timed_forward(sample, timestep, labels):
            start = time.perf_counter()
            out = forward(sample, timestep, labels)
            self.unet_s += time.perf_counter() - start
            self.rows += int(sample.shape[0])
            self.calls += 1
            if self.calls == ticks:
                self.reached_at = time.perf_counter()
                self.reached.set()
            return out

        pipeline.unet_forward = timed_forward  # an instance attribute: this engine's pipeline only

    def wrap_chain(self, chain) -> None:
        step = chain.step

        def timed_step(output):
            start = time.perf_counter()
            out = step(output)
            if self.reached_at is None:
                self.step_s += time.perf_counter() - start
            return out

        chain.step = timed_step


def run_engine(
    space: Space, steps: int, ticks: int, batch: int, users: int, through_space: bool, profile: bool
) -> dict:
    """`users` chains of `steps` steps in a fresh engine (on a copy of the pipeline, so the timers stay here), stopped
    after `ticks` ticks (all of them when `ticks` >= `steps`); returns the timings of those ticks."""
    ticks = min(ticks, steps)
    pipe = DDPMHubPipeline(unet=space.pipe.unet, scheduler=space.pipe.scheduler)
    pipe.set_progress_bar_config(disable=True)
    engine = Engine(pipe, max_active=users, max_rows=256, max_images_per_owner=16, start=False)
    timer = TickTimer(engine, ticks)
    local = Space.__new__(Space)
    local.__dict__.update(space.__dict__)
    local.pipe, local.engine, local.session_alive = pipe, engine, None
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        tick = engine._tick

        def profiled_tick(batch_):
            profiler.enable()
            try:
                tick(batch_)
            finally:
                profiler.disable()

        engine._tick = profiled_tick
    handler_cpu = [0.0] * users
    encode_s = [0.0] * users
    frames = [0] * users
    handler_profile = cProfile.Profile() if profile else None
    ready = threading.Barrier(users + 1)

    def drain(ticket) -> None:
        ready.wait()
        for _ in ticket.updates():
            pass

    def handler(index: int) -> None:
        ready.wait()
        if handler_profile is not None and index == 0:
            handler_profile.enable()
        cpu = time.thread_time()
        visitor = SimpleNamespace(session_hash=f"user{index}")  # a Gradio request: each handler its own visitor
        w = pipe.config.guidance_scale
        outputs = reverse_tab.generate(local, "3", w, "ddpm-fixed_small", 0.0, steps, 42 + index, batch, visitor)
        for output in outputs:
            start = time.perf_counter()
            for value in output[:3]:
                if isinstance(value, np.ndarray):
                    pictures.png_bytes(value)  # what gr.Image's postprocess (pictures.save_picture) encodes
                    frames[index] += 1
            encode_s[index] += time.perf_counter() - start
        handler_cpu[index] = time.thread_time() - cpu
        if handler_profile is not None and index == 0:
            handler_profile.disable()

    if through_space:
        threads = [threading.Thread(target=handler, args=(i,)) for i in range(users)]
    else:
        tickets = [engine.submit(page_chain(local, 42 + i, steps, batch), owner=f"user{i}") for i in range(users)]
        for ticket in tickets:
            timer.wrap_chain(ticket.chain)
        threads = [threading.Thread(target=drain, args=(ticket,)) for ticket in tickets]
    for thread in threads:
        thread.start()
    if through_space:  # the handlers submit their own chains: wait until all are in, then start the engine
        deadline = time.monotonic() + 60
        ready.wait()
        while engine.stats()["queued"] + engine.stats()["active"] < users and time.monotonic() < deadline:
            time.sleep(0.001)
        with engine._lock:
            for ticket in [*engine._active, *engine._queue]:
                timer.wrap_chain(ticket.chain)
    else:
        ready.wait()
    start = time.perf_counter()
    engine.start()
    timer.reached.wait()
    wall = timer.reached_at - start
    for index in range(users):  # stop every chain after `ticks` ticks: the Generate handlers end with "stopped"
        engine.cancel(f"user{index}")
    for thread in threads:
        thread.join()
    engine.close()
    result = {
        "wall_s": wall,
        "ticks": ticks,
        "rows": timer.rows,
        "unet_s": timer.unet_s,
        "step_s": timer.step_s,
        "handler_cpu_s": sum(handler_cpu),
        "encode_s": sum(encode_s),
        "frames": sum(frames),
    }
    if profiler is not None:
        result["profile"] = profiler
        result["handler_profile"] = handler_profile if through_space else None
    return result


def unet_alone(space: Space, rows_per_tick: int, ticks: int) -> dict:
    pipe = space.pipe
    chain_rows = [page_chain(space, i, 1000, 8).model_input() for i in range(max(1, rows_per_tick // 16))]
    sample = torch.cat([c.sample for c in chain_rows])[:rows_per_tick]
    timestep = torch.cat([c.timestep for c in chain_rows])[:rows_per_tick]
    labels = torch.cat([c.class_labels for c in chain_rows])[:rows_per_tick]
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(ticks):
            pipe.unet_forward(sample, timestep, labels)
    return {"wall_s": time.perf_counter() - start, "ticks": ticks, "rows": ticks * rows_per_tick}


def print_stats(profile: cProfile.Profile, title: str, lines: int) -> None:
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(lines)
    print(f"\n--- {title} (by own time) ---\n" + "\n".join(out.getvalue().splitlines()[: lines + 12]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "space" / "default_model"))
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8, help="digits per chain (the page's default: 8)")
    parser.add_argument("--steps", type=int, default=1000, help="steps of each chain (the page's default: 1000)")
    parser.add_argument("--ticks", type=int, default=40, help="ticks timed per run (then every chain is stopped)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the Space's default: 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["unet", "engine", "space"])
    parser.add_argument("--cprofile", action="store_true", help="cProfile the tick thread and one handler")
    parser.add_argument("--switch_interval", type=float, default=None, help="sys.setswitchinterval (s) for the run")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import common

    space = load_space(args.model)
    guided = space.pipe.config.guidance_scale not in (0, 1)
    rows_per_tick = args.users * args.batch * (2 if guided else 1)
    print(f"{common.command_line()}\n{common.load_line()}")
    print(f"{args.users} chains x {args.batch} digits, w = {space.pipe.config.guidance_scale:g}: {rows_per_tick} "
          f"U-Net rows per tick, {args.steps}-step chains, {min(args.ticks, args.steps)} ticks timed per run, "
          f"{args.threads} torch thread(s)")  # fmt: skip
    run_engine(space, args.steps, 3, args.batch, args.users, True, False)  # warm-up: first calls at this batch size
    per_tick = {mode: [] for mode in args.modes}
    details = {mode: [] for mode in args.modes}
    for repeat in range(args.repeats):
        for mode in args.modes:
            if mode == "unet":
                result = unet_alone(space, rows_per_tick, min(args.ticks, args.steps))
            else:
                profile = args.cprofile and repeat == args.repeats - 1
                result = run_engine(space, args.steps, args.ticks, args.batch, args.users, mode == "space", profile)
            per_tick[mode].append(result["wall_s"] / result["ticks"])
            details[mode].append(result)
            extra = ""
            if mode != "unet":
                wall = result["wall_s"]
                extra = (f"  U-Net {result['unet_s'] / wall:5.1%}  chains' steps {result['step_s'] / wall:5.1%}  "
                         f"other {1 - (result['unet_s'] + result['step_s']) / wall:5.1%} of the tick thread's wall; "
                         f"handlers' CPU {result['handler_cpu_s'] / wall:5.1%} of wall "
                         f"(PNG {result['encode_s'] / wall:5.1%}, {result['frames']} pictures)")  # fmt: skip
            print(
                f"repeat {repeat} {mode:>6}: {per_tick[mode][-1] * 1e3:8.1f} ms/tick{extra}   [{common.load_line()}]"
            )
    if "unet" in per_tick:
        for mode in per_tick:
            if mode == "unet":
                continue
            share = common.ratio_stats(per_tick["unet"], per_tick[mode])
            print(f"delivered share, {mode}: median {share['median']:.1%} (min {share['min']:.1%}, "
                  f"max {share['max']:.1%}, n={share['n']})")  # fmt: skip
            inner = common.ratio_stats([d["unet_s"] for d in details[mode]], [d["wall_s"] for d in details[mode]])
            print(f"  time inside the U-Net call, {mode}: median {inner['median']:.1%} of the wall; the U-Net call "
                  f"itself ran {statistics.median(d['unet_s'] / d['ticks'] for d in details[mode]) * 1e3:.1f} ms "
                  f"per tick vs {statistics.median(per_tick['unet']) * 1e3:.1f} ms alone")  # fmt: skip
    if args.cprofile:
        for mode in per_tick:
            if mode != "unet" and details[mode][-1].get("profile") is not None:
                print_stats(details[mode][-1]["profile"], f"{mode}: the tick thread", 25)
                if details[mode][-1].get("handler_profile") is not None:
                    print_stats(details[mode][-1]["handler_profile"], f"{mode}: one Generate handler", 20)
    print(common.load_line())


if __name__ == "__main__":
    main()
