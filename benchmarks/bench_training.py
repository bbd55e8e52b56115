"""Training throughput, side by side in one process: our training step vs stock diffusers' on the matched model, in
the same precision on both sides.

    python benchmarks/bench_training.py                # torch's default threads, batch 64
    python benchmarks/bench_training.py --threads 1
    python benchmarks/bench_training.py --device cuda  # one GPU, when there is one

Our step is `training/train.py`'s (see `common.OurRecipe`); stock's is the loop of diffusers'
`examples/unconditional_image_generation/train_unconditional.py` (`common.StockRecipe`: noise, `add_noise`,
`UNet2DModel`, MSE, backward, clipping, AdamW, LR schedule, EMA). Both get the same batch size and the same
in-memory mnist5k batches; data loading is left out. Images per second = `--steps` steps x batch / time,
`--repeats` times, all contestants interleaved (stock, ours, stock_bf16, ours_bf16, stock_conditional), so the two
sides of a pair are timed back to back. Speed-up of a pair: per repeat i, stock time_i / ours time_i (= ours
images/s over stock's); reported as the median over the repeats with its min–max, and the goal is met only when the
min clears it. Each timing waits for other processes to go quiet first and is retaken if they disturbed it (see
bench_sampling.py).

Contestants and pairs:
    ours / stock              float32: our recipe as the default model is trained / the example verbatim
                              (unconditional `UNet2DModel`)
    ours_bf16 / stock_bf16    both under bf16 autocast (`train.py --mixed_precision bf16` / the example's
                              `--mixed_precision bf16`)
    stock_conditional         the example with `UNet2DModel(num_class_embeds=10)` and labels (what bench_quality
                              trains): a reference row, no goal
There is no compiled pair: training/train.py has no `torch.compile` opt-in (only `enable_compile` of the sampling
pipeline), so there is nothing of ours to compile like for like. One more comparison is not like for like and is
labelled so: ours_bf16 (opt-in) vs stock as shipped (float32).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import common  # benchmarks/common.py: the script's folder is on sys.path
import torch
from readme_table import spread

from ddpm_hub.data import load_mnist5k

PAIRS = {"float32": ("ours", "stock"), "bf16 autocast": ("ours_bf16", "stock_bf16")}  # words -> (ours, stock)
REFERENCE = "stock_conditional"
GOAL_SPEEDUP = 1.3


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_size", type=int, default=64, help="the same for every contestant")
    parser.add_argument("--steps", type=int, default=20, help="optimisation steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup_steps", type=int, default=3)
    parser.add_argument("--no_reference", action="store_true", help=f"leave out {REFERENCE}")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--device", default="cpu")
    common.add_timing_arguments(parser, retries="timing", clock=True)
    parser.add_argument("--name", default=None, help="results file name (default: training_<device>_threads<N>)")
    parser.add_argument("--no_save", action="store_true", help="print only")
    return parser.parse_args(argv)


def build(name: str, batch_size: int, device: str):
    bf16 = name.endswith("_bf16")
    if name.startswith("ours"):
        return common.OurRecipe(batch_size=batch_size, autocast_bf16=bf16, device=device)
    return common.StockRecipe(batch_size=batch_size, conditional=name == REFERENCE, autocast_bf16=bf16, device=device)


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
    names = [name for ours, stock in PAIRS.values() for name in (stock, ours)]
    names += [] if args.no_reference else [REFERENCE]
    recipes = {name: build(name, args.batch_size, args.device) for name in names}
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

    images_per_repeat = args.steps * args.batch_size
    contestants: dict[str, Any] = {}
    for name, seconds in times.items():
        stats = common.summarize(seconds)
        contestants[name] = {
            "images_per_second": {
                "median": images_per_repeat / stats["median"],
                "min": images_per_repeat / stats["max"],
                "max": images_per_repeat / stats["min"],
            },
            "seconds_per_step": {k: (v / args.steps if k != "n" else v) for k, v in stats.items()},
            "seconds_per_repeat": seconds,
            "cpu_seconds_per_image": min(cpu_seconds[name]) / images_per_repeat,  # least disturbed timing
            "other_processes_cores": loads[name],
        }
    pairs = {
        words: {"ours": ours, "stock": stock, "words": words, **common.ratio_stats(times[stock], times[ours])}
        for words, (ours, stock) in PAIRS.items()
    }
    ours_bf16, stock_default = PAIRS["bf16 autocast"][0], PAIRS["float32"][1]
    opt_in_vs_stock_default = {"bf16 autocast": common.ratio_stats(times[stock_default], times[ours_bf16])}
    references = {}
    if REFERENCE in times:
        references[f"ours vs {REFERENCE} (float32)"] = common.ratio_stats(times[REFERENCE], times["ours"])

    print(
        f"\nimages/s, batch {args.batch_size}, {args.repeats} repeats x {args.steps} steps: median (min–max); "
        "speed-up = stock time / ours, per repeat"
    )
    for name, entry in contestants.items():
        print(
            f"  {name:<18} {spread(entry['images_per_second'], 1, ' img/s'):<34} "
            f"{entry['cpu_seconds_per_image'] * 1e3:.2f} CPU-ms/image   "
            f"others used {max(entry['other_processes_cores']):.2f} cores at most"
        )
    verdict = [
        f"ours vs stock, both {words}: {spread(pair)} the images/s -> "
        f"{'MET' if pair['min'] >= GOAL_SPEEDUP else 'NOT MET'} (goal >= {GOAL_SPEEDUP}x in every repeat)"
        for words, pair in pairs.items()
    ]
    verdict += [
        f"not like for like: ours {words} (opt-in) vs the stock example as shipped (float32): {spread(stats)}"
        for words, stats in opt_in_vs_stock_default.items()
    ]
    verdict += [f"reference: {words}: {spread(stats)}" for words, stats in references.items()]
    print(f"{common.load_line()}\n" + "\n".join(verdict))

    result: dict[str, Any] = {
        "title": f"Training throughput, {args.device} ({threads} thread{'s' if threads > 1 else ''})",
        "command": common.command_line(),
        "machine": {**machine, "device": device_name},
        "threads": threads,
        "match": match,
        "settings": {k: v for k, v in vars(args).items() if k not in ("no_save", "name")},
        "contestants": contestants,
        "pairs": pairs,
        "opt_in_vs_stock_default": opt_in_vs_stock_default,
        "references": references,
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

    def images_per_second(name: str) -> str:
        return spread(contestants[name]["images_per_second"], 1, "")

    rows = [
        common.summary_row(
            f"training images/s, {where}: ours vs the stock example's step, both {words}",
            images_per_second(pair["ours"]),
            images_per_second(pair["stock"]),
            spread(pair),
            f">= {GOAL_SPEEDUP}x",
            pair["min"] >= GOAL_SPEEDUP,
        )
        for words, pair in result["pairs"].items()
    ]
    for words, stats in result["opt_in_vs_stock_default"].items():
        ours, stock = PAIRS[words][0], PAIRS["float32"][1]
        rows.append(
            common.summary_row(
                f"training images/s, {where}: ours {words} (opt-in) vs the stock example as shipped (float32), not "
                "like for like",
                images_per_second(ours),
                images_per_second(stock),
                spread(stats),
                "",
                None,
            )
        )
    return rows


def markdown(args, result: dict[str, Any]) -> list[str]:
    lines = [
        f"Batch {args.batch_size} for every contestant, {args.steps} optimisation steps per repeat, median (min–max) "
        f"of {args.repeats} interleaved repeats ({args.clock} clock). Speed-up = stock time / ours in the same "
        f"repeat, i.e. ours images/s over stock's, with the same precision on both sides. Goal: >= {GOAL_SPEEDUP}x "
        "in every repeat.",
        "",
    ]
    rows = [
        [
            name,
            spread(entry["images_per_second"], 1, ""),
            spread(entry["seconds_per_step"], 1, "", 1e3),
            f"{entry['cpu_seconds_per_image'] * 1e3:.2f}",
            f"{max(entry['other_processes_cores']):.2f}",
        ]
        for name, entry in result["contestants"].items()
    ]
    lines += common.markdown_table(["contestant", "images / s", "ms / step", "CPU-ms / image", "others' cores"], rows)
    lines += [""]
    rows = [
        [f"ours vs stock, both {words}", spread(pair), f">= {GOAL_SPEEDUP}x"]
        for words, pair in result["pairs"].items()
    ]
    rows += [
        [f"ours {words} (opt-in) vs stock float32, not like for like", spread(stats), ""]
        for words, stats in result["opt_in_vs_stock_default"].items()
    ]
    rows += [[f"reference: {words}", spread(stats), ""] for words, stats in result["references"].items()]
    lines += common.markdown_table(["comparison", "speed-up", "goal"], rows)
    lines += ["", "Goals:"] + [f"- {line}" for line in result["verdict"]]
    return lines


if __name__ == "__main__":
    sys.exit(main())
