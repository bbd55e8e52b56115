"""Training throughput, side by side in one process: our training step vs stock diffusers' on the matched model.

    python benchmarks/bench_training.py                # torch's default threads, batch 64
    python benchmarks/bench_training.py --threads 1
    python benchmarks/bench_training.py --device cuda  # one GPU, when there is one

Our step is `training/train.py`'s (see `common.OurRecipe`); stock's is the loop of diffusers'
`examples/unconditional_image_generation/train_unconditional.py` (`common.StockRecipe`: noise, `add_noise`,
`UNet2DModel`, MSE, backward, clipping, AdamW, LR schedule, EMA). Both get the same batch size and the same
in-memory mnist5k batches; data loading is left out. Images per second = `--steps` steps x batch / wall time,
`--repeats` times, contestants interleaved; headline = the fastest repeat, median alongside. Each timing waits for
other processes to go quiet first and is retaken if they disturbed it (see bench_sampling.py).

Contestants:
    ours               our recipe, float32 (how the default model is trained)
    ours_bf16          our recipe under bf16 autocast (`train.py --mixed_precision bf16`; opt-in)
    stock              the example verbatim: unconditional `UNet2DModel`
    stock_conditional  the same with `UNet2DModel(num_class_embeds=10)` and labels (what bench_quality trains)
    stock_bf16         the example under bf16 autocast (`--mixed_precision bf16`), for reference
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import common  # benchmarks/common.py: the script's folder is on sys.path
import torch

from ddpm_hub.data import load_mnist5k

CONTESTANTS = ("ours", "ours_bf16", "stock", "stock_conditional", "stock_bf16")
GOAL_SPEEDUP = 1.3


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_size", type=int, default=64, help="the same for every contestant")
    parser.add_argument("--steps", type=int, default=20, help="optimisation steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup_steps", type=int, default=3)
    parser.add_argument(
        "--contestants", nargs="+", choices=CONTESTANTS, default=["ours", "ours_bf16", "stock", "stock_conditional"]
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--quiet_threshold",
        type=float,
        default=0.3,
        help="before each timing, wait until other processes use fewer CPU cores than this; retake a timing they "
        "disturbed (negative: never wait)",
    )
    parser.add_argument("--quiet_timeout", type=float, default=60.0, help="longest wait for quiet, seconds")
    parser.add_argument("--retries", type=int, default=2, help="retakes of a disturbed timing")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: time.process_time (with --threads 1, robust to other processes taking turns on the cores)",
    )
    parser.add_argument("--name", default=None, help="results file name (default: training_<device>_threads<N>)")
    parser.add_argument("--no_save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if "stock" not in args.contestants:
        args.contestants.append("stock")
    return args


def build(name: str, batch_size: int, device: str):
    bf16 = name.endswith("_bf16")
    if name.startswith("ours"):
        return common.OurRecipe(batch_size=batch_size, autocast_bf16=bf16, device=device)
    return common.StockRecipe(
        batch_size=batch_size, conditional=name == "stock_conditional", autocast_bf16=bf16, device=device
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = common.set_threads(args.threads)
    machine = common.machine_info()
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else machine["cpu"]
    print(
        f"{common.command_line()}\n{device_name}, torch {machine['torch']} with {threads} threads, "
        f"{common.load_line()}"
    )
    match = common.match_report(common.our_unet(), common.stock_unet())
    common.print_match_report(match)

    images, labels = load_mnist5k("train")
    recipes = {name: build(name, args.batch_size, args.device) for name in args.contestants}
    streams = {name: common.BatchStream(images, labels, args.batch_size, seed=0) for name in recipes}

    def run(name: str, steps: int):
        recipe, stream = recipes[name], streams[name]
        return lambda: [recipe.step(*stream.next()) for _ in range(steps)]

    for name in recipes:  # warm-up: allocator, oneDNN primitives, EMA warm-up branch
        run(name, args.warmup_steps)()
    cpu_seconds: dict[str, list[float]] = {name: [] for name in recipes}

    def timed(name: str):
        call = run(name, args.steps)

        def measured():
            start = time.process_time()
            call()
            cpu_seconds[name].append(time.process_time() - start)

        return measured

    quiet = args.quiet_threshold if args.quiet_threshold >= 0 else None
    times, loads = common.time_interleaved(
        {name: timed(name) for name in recipes},
        args.repeats,
        quiet,
        args.quiet_timeout,
        retries=args.retries,
        clock=args.clock,
    )

    images_per_step = args.steps * args.batch_size
    result_rows: dict[str, Any] = {}
    for name, seconds in times.items():
        stats = common.summarize(seconds)
        result_rows[name] = {
            "images_per_second": images_per_step / stats["min"],
            "images_per_second_median": images_per_step / stats["median"],
            "seconds_per_step": {k: (v / args.steps if k != "n" else v) for k, v in stats.items()},
            "cpu_seconds_per_image": min(cpu_seconds[name]) / images_per_step,  # least disturbed timing
            "other_processes_cores": loads[name],
        }
    for reference in ("stock", "stock_conditional"):
        if reference not in result_rows:
            continue
        for entry in result_rows.values():
            entry[f"speedup_vs_{reference}"] = entry["images_per_second"] / result_rows[reference]["images_per_second"]
            entry[f"speedup_vs_{reference}_median"] = (
                entry["images_per_second_median"] / result_rows[reference]["images_per_second_median"]
            )

    print(
        f"\nimages/s, batch {args.batch_size}, fastest of {args.repeats} x {args.steps} steps (median); "
        "x = over stock (the example, unconditional)"
    )
    for name, entry in result_rows.items():
        print(
            f"  {name:<18} {entry['images_per_second']:8.1f} ({entry['images_per_second_median']:8.1f}) img/s   "
            f"x{entry['speedup_vs_stock']:5.2f} (x{entry['speedup_vs_stock_median']:5.2f})   "
            f"{entry['cpu_seconds_per_image'] * 1e3:.2f} CPU-ms/image   "
            f"others used {max(entry['other_processes_cores']):.2f} cores at most"
        )
    verdict = []
    for name in [n for n in result_rows if n.startswith("ours")]:
        speedup = result_rows[name]["speedup_vs_stock"]
        verdict.append(
            f"{name}: {speedup:.2f}x the images/s of the stock example step -> "
            f"{'MET' if speedup >= GOAL_SPEEDUP else 'NOT MET'} (goal >= {GOAL_SPEEDUP}x)"
        )
    print(f"{common.load_line()}\n" + "\n".join(verdict))

    result: dict[str, Any] = {
        "title": f"Training throughput, {args.device} ({threads} thread{'s' if threads > 1 else ''})",
        "command": common.command_line(),
        "machine": {**machine, "device": device_name},
        "threads": threads,
        "match": match,
        "settings": {k: v for k, v in vars(args).items() if k not in ("no_save", "name")},
        "contestants": result_rows,
        "verdict": verdict,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    result["markdown"] = markdown(args, result)
    result["summary"] = summary(args, result)
    if not args.no_save:
        path = common.save_result(args.name or f"training_{args.device.split(':')[0]}_threads{threads}", result)
        print(f"saved {path} and {common.RESULTS_DIR / 'RESULTS.md'}")
    return 0


def summary(args, result: dict[str, Any]) -> list[list]:
    """The rows this run adds to the summary table of RESULTS.md."""
    contestants = result["contestants"]
    where = f"batch {args.batch_size}, {args.device}, {result['threads']} thread{'s' if result['threads'] > 1 else ''}"
    rows = [
        common.summary_row(
            f"training images/s, {where} ({name}{', opt-in' if name.endswith('bf16') else ''} vs the stock "
            "example's step)",
            f"{entry['images_per_second']:.1f}",
            f"{contestants['stock']['images_per_second']:.1f}",
            entry["speedup_vs_stock"],
            f">= {GOAL_SPEEDUP}x",
            entry["speedup_vs_stock"] >= GOAL_SPEEDUP,
        )
        for name, entry in contestants.items()
        if name.startswith("ours")
    ]
    if "ours_bf16" in contestants and "stock_bf16" in contestants:
        ours, stock = (contestants[n]["images_per_second"] for n in ("ours_bf16", "stock_bf16"))
        rows.append(
            common.summary_row(
                f"training images/s, {where} (bf16 autocast on both sides)",
                f"{ours:.1f}",
                f"{stock:.1f}",
                ours / stock,
                "",
                None,
            )
        )
    return rows


def markdown(args, result: dict[str, Any]) -> list[str]:
    lines = [
        f"Batch {args.batch_size} for every contestant, {args.steps} optimisation steps per repeat, fastest of "
        f"{args.repeats} interleaved repeats ({args.clock} clock; median in brackets). Speed-up = images/s over the "
        "stock example's step (unconditional `UNet2DModel`). Goal: >= 1.3x.",
        "",
    ]
    rows = []
    for name, entry in result["contestants"].items():
        rows.append(
            [
                name,
                f"{entry['images_per_second']:.1f} ({entry['images_per_second_median']:.1f})",
                f"{entry['seconds_per_step']['min'] * 1e3:.1f}",
                f"{entry['speedup_vs_stock']:.2f}x ({entry['speedup_vs_stock_median']:.2f}x)",
                f"{entry['cpu_seconds_per_image'] * 1e3:.2f}",
                f"{max(entry['other_processes_cores']):.2f}",
            ]
        )
    lines += common.markdown_table(
        ["contestant", "images / s", "ms / step", "speed-up vs stock", "CPU-ms / image", "others' cores"], rows
    )
    lines += ["", "Goals:"] + [f"- {line}" for line in result["verdict"]]
    return lines


if __name__ == "__main__":
    sys.exit(main())
