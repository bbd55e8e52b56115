"""How fast the Space streams, on the bundled model: the issues' four targets, beside stock diffusers' DDPMPipeline.

    python benchmarks/bench_space.py                 # torch's default thread count
    python benchmarks/bench_space.py --threads 1     # as DDPM_HUB_THREADS=1 python space/app.py

Writes `results/space_threads<N>.json` (and rebuilds `results/RESULTS.md`) unless `--no_save`.

Targets (2 CPU cores, like a free Space): first streamed frame within 1 s; a full 1000-step DDPM chain of 8 digits
streams to the end within 30 s; a 50-step DDIM run within 3 s; the objective tab's whole bound of one digit (T terms)
streams to the end within 15 s. The Space's chains are timed through its own generator functions (space/app.py), so
the per-frame drawing is included. Stock diffusers runs the same number of
U-Net passes with a matched, untrained `UNet2DModel` in `DDPMPipeline` (unguided, so compare it with w = 1).
"""

import argparse
import importlib.util
import os
import time
from pathlib import Path

import common  # benchmarks/common.py: the script's folder is on sys.path
import torch

ROOT = Path(__file__).resolve().parents[1]

TARGETS = {"first_frame_s": 1.0, "ddpm_1000_batch8_s": 30.0, "ddim_50_batch8_s": 3.0, "bound_one_digit_s": 15.0}


def load_space():
    spec = importlib.util.spec_from_file_location("space_app", ROOT / "space" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app


def time_chain(app, **settings) -> tuple[float, float]:
    """(seconds to the first streamed frame, seconds to the end) of the Space's `generate`."""
    start = time.perf_counter()
    first = None
    for _ in app.generate(**settings):
        first = first or time.perf_counter() - start
    return first, time.perf_counter() - start


def time_bound(app) -> tuple[float, float]:
    """(seconds to the first streamed frame, seconds to the end) of the objective tab's bound for one held-out digit:
    all T terms through `pipe.bound_steps`, with the plots the page draws."""
    digit, _ = app.load_digit(300)
    start = time.perf_counter()
    first = None
    for _ in app.bound(digit, "any", 0):
        first = first or time.perf_counter() - start
    return first, time.perf_counter() - start


def time_stock(steps: int, batch: int) -> float:
    from diffusers import DDPMPipeline, DDPMScheduler

    pipeline = DDPMPipeline(unet=common.stock_unet().eval(), scheduler=DDPMScheduler(num_train_timesteps=1000))
    pipeline.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    with torch.inference_mode():
        pipeline(batch_size=batch, num_inference_steps=steps, generator=torch.Generator().manual_seed(0))
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (sets DDPM_HUB_THREADS)")
    parser.add_argument("--no_save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.threads is not None:
        os.environ["DDPM_HUB_THREADS"] = str(args.threads)
    app = load_space()  # sets torch's thread count from DDPM_HUB_THREADS, as the Space does
    threads = torch.get_num_threads()
    machine = common.machine_info()
    print(f"{common.command_line()}\ntorch threads: {threads}, {common.load_line()}")
    default_w = app.DEFAULT_GUIDANCE  # the model's recorded w (model_index.json), as the page uses it
    chain = {w: f"DDPM, 1000 steps, 8 digits, w = {w:g}" + (" (the Space's default)" if w == default_w else "")
             for w in dict.fromkeys([default_w, 1.0, 2.0])}  # fmt: skip
    runs = {name: dict(digit="3", guidance=w, steps=1000, batch=8) for w, name in chain.items()}
    ddim_name = f"DDIM, 50 steps, 8 digits, w = {default_w:g}"
    runs[ddim_name] = dict(digit="3", guidance=default_w, sampler="ddim", steps=50, batch=8)
    results = {}
    for name, settings in runs.items():
        first, total = time_chain(app, **settings)
        results[name] = (first, total)
        print(f"{name:58s} first frame {first:6.2f} s   whole chain {total:6.2f} s")
    bound_name = "The objective tab: the whole bound of one digit (T terms, streamed)"
    results[bound_name] = time_bound(app)
    print(
        f"{bound_name:58s} first frame {results[bound_name][0]:6.2f} s   whole bound {results[bound_name][1]:6.2f} s"
    )
    stock_1000 = time_stock(1000, 8)
    print(f"{'stock DDPMPipeline, 1000 steps, 8 images (unguided)':58s} {'':20s} whole chain {stock_1000:6.2f} s")
    default, unguided, ddim, bound = (results[n] for n in (chain[default_w], chain[1.0], ddim_name, bound_name))
    where = f"{threads} thread{'s' if threads > 1 else ''}"
    targets = [
        (f"Space, first streamed frame, {where}", default[0], None, TARGETS["first_frame_s"]),
        (f"Space, 1000-step DDPM chain of 8 digits, w = {default_w:g} (default), {where}", default[1], None,
         TARGETS["ddpm_1000_batch8_s"]),
        (f"Space, 1000-step DDPM chain of 8 digits, w = 1, {where} (vs stock DDPMPipeline, unguided)", unguided[1],
         stock_1000, TARGETS["ddpm_1000_batch8_s"]),
        (f"Space, 1000-step DDPM chain of 8 digits, w = 2, {where}", results[chain[2.0]][1], None,
         TARGETS["ddpm_1000_batch8_s"]),
        (f"Space, 50-step DDIM chain of 8 digits, w = {default_w:g}, {where}", ddim[1], None,
         TARGETS["ddim_50_batch8_s"]),
        (f"Space, the whole bound of one digit streams to the end, {where}", bound[1], None,
         TARGETS["bound_one_digit_s"]),
    ]  # fmt: skip
    verdict = [
        f"{name}: {seconds:.2f} s (goal <= {goal:g} s) -> {'MET' if seconds <= goal else 'NOT MET'}"
        for name, seconds, _, goal in targets
    ]
    print("\nTargets:\n" + "\n".join(f"- {line}" for line in verdict))
    result = {
        "title": f"The Space's streaming targets, {threads} thread{'s' if threads > 1 else ''}",
        "command": common.command_line(),
        "machine": machine,
        "threads": threads,
        "seconds": {name: {"first_frame": first, "whole_chain": total} for name, (first, total) in results.items()},
        "stock_ddpm_pipeline_1000_steps_batch8_seconds": stock_1000,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "verdict": verdict,
        "markdown": common.markdown_table(
            ["chain", "first frame (s)", "whole chain (s)"],
            [[name, f"{first:.2f}", f"{total:.2f}"] for name, (first, total) in results.items()]
            + [["stock `DDPMPipeline`, 1000 steps, 8 images (unguided)", "", f"{stock_1000:.2f}"]],
        )
        + ["", "Goals:"]
        + [f"- {line}" for line in verdict],
        "summary": [
            common.summary_row(
                name,
                f"{seconds:.2f} s",
                "" if stock is None else f"{stock:.2f} s",
                None if stock is None else stock / seconds,
                f"<= {goal:g} s",
                seconds <= goal,
            )
            for name, seconds, stock, goal in targets
        ],
    }
    if not args.no_save:
        path = common.save_result(f"space_threads{threads}", result)
        print(f"saved {path} and {common.RESULTS_DIR / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
