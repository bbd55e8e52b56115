"""Quality per CPU-minute: our training recipe vs stock diffusers' example recipe, judged by the digit judge.

    python benchmarks/bench_quality.py --budgets 10 20 40 80 --jobs 2               # the full curve (hours)
    python benchmarks/bench_quality.py --budgets 2 4 --samples_per_digit 20         # a short version (minutes)
    python benchmarks/bench_quality.py --budgets 10 20 40 80 --mode separate        # one run per budget

Both recipes train on the same data (the mnist5k "train" split, 4,000 digits, batches drawn the same way) for a
budget of training CPU time: `time.process_time()` summed over the optimisation steps only (all threads of the
process count; calibration, sampling and judging are not counted). At each budget the EMA weights are sampled
(`--samples_per_digit` per digit, `--sampler` with `--inference_steps` steps, the same seeds on both sides) and scored
by the judge of `ddpm_hub.evaluation`: class-conditional accuracy (mean over digits) and the Fréchet distance of
the judge's features to the held-out digits.

    ours   `common.OurRecipe` (training/train.py): our U-Net, lr 1e-3, batch 64, EMA 0.999, label dropout 0.1;
           sampled with `DDPMHubPipeline` at each of `--guidance_scales` (1 = plain conditional sampling).
    stock  `common.StockRecipe` (diffusers' train_unconditional.py defaults: lr 1e-4, batch 16, EMA 0.9999) on the
           matched `UNet2DModel` made class-conditional with `num_class_embeds=10`, trained with the true labels
           (no label dropout, so no classifier-free guidance): the example trains unconditional models, which have
           no per-digit accuracy. Sampled with stock `DDPMScheduler` / `DDIMScheduler` in the stock pipelines'
           loop, labels passed.

`--mode single` (default): one run per recipe, its learning-rate schedule planned for the largest budget (the step
count comes from a short calibration), evaluated as it passes each budget: a learning curve. `--mode separate`:
a fresh run per budget, each with its schedule planned to end at that budget (costs the sum of the budgets).
Warm-up is the recipe's (200 / 500 steps), cut to 5% of the planned steps for short runs. `--jobs 2` trains the
two recipes side by side in two processes (one thread each unless `--threads`): CPU time is counted per process, so
the budgets mean the same, and the curve takes half the wall-clock time on a 2-core machine.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import multiprocessing
import os
import sys
import time
from typing import Any

import common  # benchmarks/common.py: the script's folder is on sys.path
from diffusers import DDIMScheduler, DDPMScheduler

from ddpm_hub import DDIMHubScheduler, DDPMHubPipeline, DDPMHubScheduler
from ddpm_hub.data import load_mnist5k
from ddpm_hub.evaluation import evaluate_pipeline, load_or_train_judge

GOAL_ACCURACY = 0.97


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[10, 20, 40, 80], help="training CPU-minutes")
    parser.add_argument(
        "--recipes",
        nargs="+",
        choices=["ours", "ours_bf16", "stock"],
        default=["ours", "stock"],
        help="ours_bf16: our recipe under bf16 autocast (train.py --mixed_precision bf16)",
    )
    parser.add_argument("--mode", choices=["single", "separate"], default="single")
    parser.add_argument("--samples_per_digit", type=int, default=100)
    parser.add_argument(
        "--sampler",
        choices=["ddpm", "ddim"],
        default="ddpm",
        help="sampler for the judge, the same on both sides (ddpm: ancestral, strided to --inference_steps)",
    )
    parser.add_argument("--inference_steps", type=int, default=100, help="sampling steps for the judge")
    parser.add_argument("--guidance_scales", type=float, nargs="+", default=[1.0, 2.0], help="for ours")
    parser.add_argument("--stock_batch_size", type=int, default=None, help="default: the example's 16")
    parser.add_argument("--calibration_steps", type=int, default=8)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per process (default: torch's; 1 with --jobs > 1)"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="recipes trained at once, one process each (CPU time counts per process)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="quality", help="results file name")
    parser.add_argument("--no_save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    args.budgets = sorted(args.budgets)
    return args


def make_recipe(name: str, total_steps: int, args):
    if name.startswith("ours"):
        return common.OurRecipe(total_steps=total_steps, seed=args.seed, autocast_bf16=name == "ours_bf16")
    return common.StockRecipe(total_steps=total_steps, seed=args.seed, batch_size=args.stock_batch_size)


def calibrate(name: str, args, images, labels) -> float:
    """CPU-seconds per optimisation step of a recipe, on a throwaway copy (not counted in any budget)."""
    recipe = make_recipe(name, 1000, args)
    stream = common.BatchStream(images, labels, recipe.batch_size, seed=args.seed + 1)
    for _ in range(2):
        recipe.step(*stream.next())
    start = time.process_time()
    for _ in range(args.calibration_steps):
        recipe.step(*stream.next())
    return (time.process_time() - start) / args.calibration_steps


def evaluate(name: str, recipe, args, judge) -> dict[str, dict[str, Any]]:
    """contestant name -> judge scores of the recipe's EMA weights."""
    unet = recipe.ema_unet()
    out = {}
    if name.startswith("ours"):
        for scale in args.guidance_scales:
            scheduler_class = DDIMHubScheduler if args.sampler == "ddim" else DDPMHubScheduler
            pipe = DDPMHubPipeline(unet=unet, scheduler=scheduler_class.from_config(recipe.scheduler.config))
            pipe.set_progress_bar_config(disable=True)
            out[f"{name}_w{scale:g}"] = evaluate_pipeline(
                pipe,
                samples_per_digit=args.samples_per_digit,
                guidance_scale=scale,
                num_inference_steps=args.inference_steps,
                seed=args.seed,
                judge=judge,
            )
    else:
        scheduler_class = DDIMScheduler if args.sampler == "ddim" else DDPMScheduler
        sampler = common.StockClassConditionalSampler(unet, scheduler_class.from_config(recipe.scheduler.config))
        out["stock"] = evaluate_pipeline(
            sampler,
            samples_per_digit=args.samples_per_digit,
            num_inference_steps=args.inference_steps,
            seed=args.seed,
            judge=judge,
        )
    return out


def train_run(name: str, budgets: list[float], cpu_per_step: float, args, images, labels, judge) -> list[dict]:
    """Trains one recipe until it has used max(budgets) CPU-minutes, evaluating at each budget."""
    total_steps = max(1, math.ceil(max(budgets) * 60 / cpu_per_step))
    recipe = make_recipe(name, total_steps, args)
    stream = common.BatchStream(images, labels, recipe.batch_size, seed=args.seed)
    points, cpu_seconds, wall_seconds, steps, losses = [], 0.0, 0.0, 0, []
    print(
        f"[{name}] planned {total_steps} steps of batch {recipe.batch_size} for {max(budgets):g} CPU-minutes "
        f"({cpu_per_step * 1e3:.0f} CPU-ms/step measured)"
    )
    for budget in budgets:
        while cpu_seconds < budget * 60:
            batch = stream.next()
            cpu, wall = time.process_time(), time.perf_counter()
            losses.append(recipe.step(*batch))
            cpu_seconds += time.process_time() - cpu
            wall_seconds += time.perf_counter() - wall
            steps += 1
        start = time.perf_counter()
        scores = evaluate(name, recipe, args, judge)
        recent = losses[-100:]
        point = {
            "budget_cpu_minutes": budget,
            "cpu_minutes": cpu_seconds / 60,
            "wall_minutes": wall_seconds / 60,
            "steps": steps,
            "images_seen": steps * recipe.batch_size,
            "planned_steps": total_steps,
            "loss_last_100_steps": sum(recent) / len(recent),
            "evaluation_seconds": time.perf_counter() - start,
            "contestants": {
                contestant: {
                    "mean_accuracy": s["mean_accuracy"],
                    "frechet_distance": s["frechet_distance"],
                    "frechet_distance_real": s["frechet_distance_real"],
                    "per_digit_accuracy": s["per_digit_accuracy"],
                }
                for contestant, s in scores.items()
            },
        }
        points.append(point)
        shown = "  ".join(
            f"{c}: acc {s['mean_accuracy']:.1%} FD {s['frechet_distance']:.2f}" for c, s in scores.items()
        )
        print(
            f"[{name}] {budget:g} CPU-min ({steps} steps, {wall_seconds / 60:.1f} wall-min): {shown}  "
            f"({common.load_line()})"
        )
        sys.stdout.flush()
    return points


def curves(runs: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """contestant -> [{budget, cpu_minutes, steps, accuracy, frechet}] sorted by budget."""
    out: dict[str, list[dict]] = {}
    for points in runs.values():
        for point in points:
            for contestant, s in point["contestants"].items():
                out.setdefault(contestant, []).append(
                    {
                        "budget_cpu_minutes": point["budget_cpu_minutes"],
                        "cpu_minutes": point["cpu_minutes"],
                        "steps": point["steps"],
                        "images_seen": point["images_seen"],
                        "mean_accuracy": s["mean_accuracy"],
                        "frechet_distance": s["frechet_distance"],
                        "frechet_distance_real": s["frechet_distance_real"],
                    }
                )
    for points in out.values():
        points.sort(key=lambda p: p["budget_cpu_minutes"])
    return out


def verdict(curve: dict[str, list[dict]]) -> list[str]:
    lines = []
    if "stock" not in curve:
        return ["no stock curve: nothing to compare"]

    def first_reaching(points):
        hits = [p["budget_cpu_minutes"] for p in points if p["mean_accuracy"] >= GOAL_ACCURACY]
        return min(hits) if hits else None

    stock_hit = first_reaching(curve["stock"])
    for name, points in curve.items():
        hit = first_reaching(points)
        lines.append(
            f"{name}: first reaches {GOAL_ACCURACY:.0%} accuracy at "
            f"{f'{hit:g} CPU-minutes' if hit is not None else 'none of the measured budgets'}"
        )
    for name in [n for n in curve if n != "stock"]:
        hit = first_reaching(curve[name])
        sooner = hit is not None and (stock_hit is None or hit < stock_hit)
        ahead = all(
            o["mean_accuracy"] > s["mean_accuracy"] and o["frechet_distance"] < s["frechet_distance"]
            for o, s in zip(curve[name], curve["stock"], strict=True)
        )
        lines.append(
            f"{name} vs stock: reaches {GOAL_ACCURACY:.0%} sooner -> {'MET' if sooner else 'NOT MET'}; "
            f"better accuracy and Fréchet distance at every measured budget -> {'MET' if ahead else 'NOT MET'}"
        )
    return lines


def summary(result: dict[str, Any]) -> list[list]:
    """The rows this run adds to the summary table of RESULTS.md: accuracy and Fréchet distance per budget, and
    the first budget at which each contestant reaches the goal accuracy."""
    curve = result["curves"]
    if "stock" not in curve:
        return []
    rows = []
    stock = {p["budget_cpu_minutes"]: p for p in curve["stock"]}
    for name in [n for n in curve if n != "stock"]:
        for p in curve[name]:
            s = stock.get(p["budget_cpu_minutes"])
            if s is None:
                continue
            ahead = p["mean_accuracy"] > s["mean_accuracy"] and p["frechet_distance"] < s["frechet_distance"]
            rows.append(
                common.summary_row(
                    f"judge accuracy / Fréchet after {p['budget_cpu_minutes']:g} training CPU-minutes ({name})",
                    f"{p['mean_accuracy']:.1%} / {p['frechet_distance']:.2f}",
                    f"{s['mean_accuracy']:.1%} / {s['frechet_distance']:.2f}",
                    p["mean_accuracy"] / s["mean_accuracy"] if s["mean_accuracy"] else None,
                    "ahead on both",
                    ahead,
                )
            )

    def first(points):
        hits = [p["budget_cpu_minutes"] for p in points if p["mean_accuracy"] >= GOAL_ACCURACY]
        return f"{min(hits):g}" if hits else "not reached"

    for name in [n for n in curve if n != "stock"]:
        ours_hit, stock_hit = first(curve[name]), first(curve["stock"])
        met = ours_hit != "not reached" and (stock_hit == "not reached" or float(ours_hit) < float(stock_hit))
        rows.append(
            common.summary_row(
                f"CPU-minutes to {GOAL_ACCURACY:.0%} judge accuracy, budgets {result['settings']['budgets']} ({name})",
                ours_hit,
                stock_hit,
                None,
                "fewer than stock",
                met,
            )
        )
    return rows


def plot(curve: dict[str, list[dict]], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, points in curve.items():
        x = [p["cpu_minutes"] for p in points]
        style = "--" if name == "stock" else "-"
        left.plot(x, [100 * p["mean_accuracy"] for p in points], style, marker="o", label=name)
        right.plot(x, [p["frechet_distance"] for p in points], style, marker="o", label=name)
    floor = [p["frechet_distance_real"] for p in next(iter(curve.values()))]
    right.axhline(sum(floor) / len(floor), color="grey", lw=0.8, ls=":", label="real digits (same N)")
    left.axhline(100 * GOAL_ACCURACY, color="grey", lw=0.8, ls=":", label=f"goal {GOAL_ACCURACY:.0%}")
    left.set(xlabel="training CPU-minutes", ylabel="judge accuracy (%)", title="class-conditional accuracy")
    right.set(xlabel="training CPU-minutes", ylabel="Fréchet distance (judge features)", title="vs held-out digits")
    right.set_yscale("log")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sampler_words(args) -> str:
    if getattr(args, "sampler", "ddim") == "ddim":
        return f"DDIM {args.inference_steps} steps, eta 0"
    return f"ancestral DDPM, {args.inference_steps} strided steps"


def markdown(args, result: dict[str, Any]) -> list[str]:
    lines = [
        f"Training budget in CPU-minutes (`time.process_time()` of the optimisation steps, {result['threads']} "
        f"threads), mode `{args.mode}`; judged on {args.samples_per_digit} samples per digit "
        f"({sampler_words(args)}, same seeds on both sides). `ours_wG` = our recipe sampled with guidance scale G; "
        "`stock` = the example's recipe on the matched `UNet2DModel(num_class_embeds=10)` (no guidance possible). "
        "Fréchet distance: lower is better; real training digits score the value in the last column at this sample "
        "size.",
        "",
    ]
    rows = []
    for name, points in result["curves"].items():
        for p in points:
            rows.append(
                [
                    f"{p['budget_cpu_minutes']:g}",
                    name,
                    f"{p['cpu_minutes']:.2f}",
                    p["steps"],
                    f"{p['mean_accuracy']:.1%}",
                    f"{p['frechet_distance']:.2f}",
                    f"{p['frechet_distance_real']:.2f}",
                ]
            )
    rows.sort(key=lambda r: (float(r[0]), r[1]))
    lines += common.markdown_table(
        ["budget (CPU-min)", "contestant", "CPU-min used", "steps", "accuracy", "Fréchet", "real digits"], rows
    )
    if result.get("plot"):
        lines += ["", f"![quality per CPU-minute]({os.path.basename(result['plot'])})"]
    lines += ["", "Goals:"] + [f"- {line}" for line in result["verdict"]]
    return lines


def run_recipe(name: str, args, images=None, labels=None, judge=None) -> tuple[float, list[dict]]:
    """Calibrates and trains one recipe: (CPU-seconds per step, evaluated points). Runs in a worker process with
    ``--jobs`` > 1, where the data and the (cached) judge are loaded again."""
    if images is None:
        common.set_threads(args.threads)
        images, labels = load_mnist5k("train")
        judge = load_or_train_judge()
    cpu_per_step = calibrate(name, args, images, labels)
    if args.mode == "single":
        return cpu_per_step, train_run(name, args.budgets, cpu_per_step, args, images, labels, judge)
    return cpu_per_step, [train_run(name, [b], cpu_per_step, args, images, labels, judge)[0] for b in args.budgets]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.jobs > 1 and args.threads is None:
        args.threads = 1
    threads = common.set_threads(args.threads)
    machine = common.machine_info()
    print(
        f"{common.command_line()}\n{machine['cpu']}, torch {machine['torch']} with {threads} threads, "
        f"{common.load_line()}"
    )
    match = common.match_report(common.our_unet(), common.stock_unet(conditional=True))
    common.print_match_report(match)
    images, labels = load_mnist5k("train")
    judge = load_or_train_judge(verbose=True)
    print(f"judge held-out accuracy: {judge.held_out_accuracy:.1%}")

    if args.jobs > 1:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
            futures = {name: pool.submit(run_recipe, name, args) for name in args.recipes}
            calibration_and_runs = {name: future.result() for name, future in futures.items()}
    else:
        calibration_and_runs = {name: run_recipe(name, args, images, labels, judge) for name in args.recipes}
    calibration = {name: c for name, (c, _) in calibration_and_runs.items()}
    runs = {name: r for name, (_, r) in calibration_and_runs.items()}
    curve = curves(runs)
    result: dict[str, Any] = {
        "title": f"Quality per training CPU-minute (budgets {', '.join(f'{b:g}' for b in args.budgets)})",
        "command": common.command_line(),
        "machine": machine,
        "threads": threads,
        "match": match,
        "settings": {k: v for k, v in vars(args).items() if k not in ("no_save", "name")},
        "judge_held_out_accuracy": judge.held_out_accuracy,
        "calibration_cpu_seconds_per_step": calibration,
        "runs": runs,
        "curves": curve,
        "verdict": verdict(curve),
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    print("\n".join(result["verdict"]))
    if not args.no_save:
        common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        result["plot"] = str(common.RESULTS_DIR / f"{args.name}_curve.png")
        plot(curve, result["plot"])
        result["plot"] = os.path.relpath(result["plot"], common.REPO_ROOT)
        result["markdown"] = markdown(args, result)
        result["summary"] = summary(result)
        path = common.save_result(args.name, result)
        print(f"saved {path}, {result['plot']} and {common.RESULTS_DIR / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
