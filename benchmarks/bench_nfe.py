"""Quality per U-Net call: judge accuracy and Fréchet distance against the number of U-Net evaluations per image
(NFE), for our samplers and stock diffusers' schedulers, on our model and on the stock-trained one.

    python benchmarks/bench_nfe.py --samples_per_digit 20                           # every config, both models
    python benchmarks/bench_nfe.py --configs ddpm:1000 --models ours                # one piece (results merge)
    python benchmarks/bench_nfe.py --curve guidance --configs ddpm:100 --guidance_scales 0 0.5 1 1.5 2 2.5 3

A config is `family:steps`:
    ddpm         ancestral DDPM (σ² = β̃), strided to `steps` (1000 = every step). Ours: `DDPMHubScheduler`;
                 stock model: `DDPMScheduler`.
    ddim         DDIM, η = 0. Ours: `DDIMHubScheduler`; stock model: `DDIMScheduler`.
    dpmsolver++  stock `DPMSolverMultistepScheduler(algorithm_type="dpmsolver++")`, on both models
    unipc        stock `UniPCMultistepScheduler`, on both models
    sde-dpmsolver++  stock `DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")`: the stochastic variant
                 (fresh noise each step, like DDPM), on both models
Each scheduler is built with `from_config` from the model's own scheduler config (what a diffusers user does).

Models (`--models`): `ours` = `--model_dir` (a `DDPMHubPipeline`, sampled at each of `--guidance_scales`);
`stock` = `--stock_model_dir` (the `UNet2DModel(num_class_embeds=10)` trained with diffusers' example recipe by
`train_stock.py`, true labels, no null class: no guidance), sampled in the stock pipelines' loop
(`common.StockClassConditionalSampler`). NFE counts guidance: a guided step (w not 0 or 1) runs the U-Net on the
conditional and the unconditional input, 2 evaluations per image.

Every point uses the same labels (`--samples_per_digit` of each digit) and seeds, and the judge of
`ddpm_hub.evaluation`: accuracy of the asked digit, and the Fréchet distance of the judge's features to the held-out
digits, beside real training digits' distance at the same N (the floor). Points from several runs (e.g. two
processes, one per core) merge into one results file, keyed by model, config and w.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib
import json
import os
import sys
import time
from typing import Any

import common  # benchmarks/common.py: the script's folder is on sys.path
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler

from ddpm_hub import DDIMHubScheduler, DDPMHubPipeline, DDPMHubScheduler
from ddpm_hub.evaluation import STOCK_SCHEDULERS, evaluate_pipeline, load_or_train_judge

DEFAULT_CONFIGS = [
    "ddpm:1000",
    "ddpm:250",
    "ddpm:100",
    "ddpm:20",
    "ddpm:10",
    "ddim:50",
    "ddim:20",
    "ddim:10",
    "dpmsolver++:20",
    "dpmsolver++:10",
    "unipc:20",
    "unipc:10",
    "sde-dpmsolver++:20",
    "sde-dpmsolver++:10",
]
FAMILIES = ("ddpm", "ddim", "dpmsolver++", "unipc", "sde-dpmsolver++")
GOAL_ACCURACY = 0.97
GOAL_FRECHET_RATIO = 1.5
GOAL_NFE = 20


def parse_config(text: str) -> tuple[str, int]:
    family, _, steps = text.partition(":")
    if family not in FAMILIES or not steps.isdigit() or int(steps) < 1:
        raise argparse.ArgumentTypeError(f"config {text!r}: expected FAMILY:STEPS, FAMILY one of {FAMILIES}")
    return family, int(steps)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", type=parse_config, nargs="+", default=[parse_config(c) for c in DEFAULT_CONFIGS])
    parser.add_argument("--models", nargs="+", choices=["ours", "stock"], default=["ours", "stock"])
    parser.add_argument("--model_dir", default="space/default_model")
    parser.add_argument("--stock_model_dir", default="runs/stock/model", help="written by train_stock.py")
    parser.add_argument("--guidance_scales", type=float, nargs="+", default=[2.0], help="for ours")
    parser.add_argument("--samples_per_digit", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: run two pieces side by side)")
    parser.add_argument(
        "--curve",
        choices=["nfe", "guidance"],
        default="nfe",
        help="guidance: the points are a guidance curve (x = w); results default to guidance.json",
    )
    parser.add_argument("--name", default=None, help="results file name (default: nfe, or guidance)")
    parser.add_argument(
        "--record_only",
        action="store_true",
        help="measure nothing: re-render the results file and record it in --model_dir (implies --record_in_model)",
    )
    parser.add_argument(
        "--record_in_model",
        action="store_true",
        help="also record our model's points of the results file in --model_dir: evaluation.json's "
        "guidance_curve / quality_per_nfe, the plot, and the regenerated model card",
    )
    parser.add_argument("--no_save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    args.name = args.name or args.curve
    args.record_in_model = args.record_in_model or args.record_only
    return args


# ---------------------------------------------------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------------------------------------------------


def stock_scheduler(family: str, config):
    class_name, overrides = STOCK_SCHEDULERS[family]
    return getattr(importlib.import_module("diffusers"), class_name).from_config(config, **overrides)


def scheduler_name(scheduler) -> str:
    """The class, with the algorithm where one class has several (DPMSolverMultistepScheduler)."""
    algorithm = getattr(scheduler.config, "algorithm_type", None)
    return type(scheduler).__name__ + (f" ({algorithm})" if algorithm else "")


def our_sampler(pipeline: DDPMHubPipeline, family: str):
    """The pipeline with the config's scheduler: ours for DDPM / DDIM, stock diffusers' for the solvers."""
    config = pipeline.scheduler.config
    if family == "ddpm":
        scheduler = DDPMHubScheduler.from_config(config)
    elif family == "ddim":
        scheduler = DDIMHubScheduler.from_config(config)
    else:
        scheduler = stock_scheduler(family, config)
    sampler = DDPMHubPipeline(unet=pipeline.unet, scheduler=scheduler)
    sampler.set_progress_bar_config(disable=True)
    if family == "ddim":
        return lambda **kw: sampler(eta=0.0, **kw), scheduler_name(scheduler)
    return sampler, scheduler_name(scheduler)


def stock_sampler(pipeline: DDPMPipeline, family: str):
    config = pipeline.scheduler.config
    scheduler = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}.get(family)
    scheduler = scheduler.from_config(config) if scheduler else stock_scheduler(family, config)
    return common.StockClassConditionalSampler(pipeline.unet, scheduler), scheduler_name(scheduler)


def nfe_per_image(steps: int, guidance_scale: float | None) -> int:
    guided = guidance_scale is not None and guidance_scale not in (0.0, 1.0)
    return steps * (2 if guided else 1)


# ---------------------------------------------------------------------------------------------------------------------
# Results: points merge into one file
# ---------------------------------------------------------------------------------------------------------------------


def point_key(model: str, family: str, steps: int, guidance_scale: float | None) -> str:
    return f"{model}|{family}:{steps}|w{'-' if guidance_scale is None else f'{guidance_scale:g}'}"


def merge_points(name: str, new_points: dict[str, dict], header: dict[str, Any]) -> dict[str, Any]:
    """``results/<name>.json``'s points with ``new_points`` added (they replace a point of the same key). The caller
    holds the lock: other pieces may be saving."""
    path = common.RESULTS_DIR / f"{name}.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    commands = {*old.get("commands", [])}
    if new_points:
        commands.add(header["command"])
    else:  # --record_only: nothing new was measured, so the file keeps the command and machine that measured it
        kept = ("command", "machine", "threads", "loadavg_end", "judge_held_out_accuracy")
        header = {**header, **{key: old[key] for key in kept if key in old}}
    result = {**header, "points": {**old.get("points", {}), **new_points}, "commands": sorted(commands)}
    return result


def reaches(accuracy: float, goal: float) -> bool:
    """accuracy >= goal, where 198 of 200 digits (a mean of per-digit shares, 0.98999...) counts as 99%."""
    return accuracy >= goal - 1e-9


def frechet_ratio(point: dict[str, Any]) -> float:
    return point["frechet_distance"] / point["frechet_distance_real"]


def meets_goal(point: dict[str, Any]) -> bool:
    return reaches(point["mean_accuracy"], GOAL_ACCURACY) and frechet_ratio(point) <= GOAL_FRECHET_RATIO


def series(points: dict[str, dict]) -> dict[str, list[dict]]:
    """(model, family, w) -> its points sorted by NFE: one line of the plot."""
    out: dict[str, list[dict]] = {}
    for p in points.values():
        w = "" if p["guidance_scale"] is None else f", w={p['guidance_scale']:g}"
        out.setdefault(f"{p['model']}: {p['family']}{w}", []).append(p)
    for line in out.values():
        line.sort(key=lambda p: p["nfe_per_image"])
    return dict(sorted(out.items()))


def plot_nfe(points: dict[str, dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = dict(zip(FAMILIES, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"), strict=True))
    scales = sorted({p["guidance_scale"] for p in points.values() if p["guidance_scale"] is not None})
    for label, line in series(points).items():
        x = [p["nfe_per_image"] for p in line]
        first = line[0]
        if first["model"] == "stock":
            style = {"ls": "--", "marker": "s", "mfc": "white"}
        else:  # one line style per guidance scale of ours
            style = {"ls": ("-", "-.", ":")[min(scales.index(first["guidance_scale"]), 2)], "marker": "o"}
        style.update(color=colours[first["family"]], ms=4, label=label)
        left.plot(x, [100 * p["mean_accuracy"] for p in line], **style)
        right.plot(x, [frechet_ratio(p) for p in line], **style)
    left.axhline(100 * GOAL_ACCURACY, color="grey", lw=0.8, ls=":")
    right.axhline(GOAL_FRECHET_RATIO, color="grey", lw=0.8, ls=":", label=f"goal {GOAL_FRECHET_RATIO}x")
    right.axhline(1.0, color="black", lw=0.6, ls="-", label="real digits")
    for axis in (left, right):
        axis.axvline(GOAL_NFE, color="grey", lw=0.8, ls=":")
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.grid(alpha=0.3)
        axis.set_xlabel("U-Net evaluations per image (NFE, guidance counted)")
    left.set(ylabel="judge accuracy (%)", title="the asked digit")
    right.set(ylabel="Fréchet distance / real digits' (same N)", title="like real digits (1 = as real)")
    right.set_yscale("log")
    right.yaxis.set_major_locator(matplotlib.ticker.FixedLocator([1, 1.5, 2, 3, 4, 6, 8, 12, 20, 50, 100]))
    right.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    right.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    right.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_guidance(points: dict[str, dict], path) -> None:
    """Accuracy (left axis) and Fréchet ÷ real (right axis) against w: one pair of lines per sampler and step count
    (e.g. the DDPM-100 curve, and the page's 1000-step chain at a few scales)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samplers: dict[tuple, list[dict]] = {}
    for p in points.values():
        if p["guidance_scale"] is not None:
            samplers.setdefault((p["family"], p["steps"]), []).append(p)
    fig, left = plt.subplots(figsize=(6.4, 3.8))
    right = left.twinx()
    for index, ((family, steps), line) in enumerate(sorted(samplers.items(), key=lambda kv: kv[0][1])):
        line.sort(key=lambda p: p["guidance_scale"])
        w = [p["guidance_scale"] for p in line]
        style = {"ls": ("-", "--", ":")[min(index, 2)], "ms": 5}
        name = f"{family.upper()} {steps} steps"
        left.plot(w, [100 * p["mean_accuracy"] for p in line], marker="o", color="tab:blue", **style,
                  label=f"accuracy, {name}")  # fmt: skip
        right.plot(w, [frechet_ratio(p) for p in line], marker="s", color="tab:red", **style,
                   label=f"Fréchet ÷ real, {name}")  # fmt: skip
    left.axhline(100 * RECOMMENDED_ACCURACY, color="tab:blue", lw=0.8, ls=":")
    right.axhline(GOAL_FRECHET_RATIO, color="tab:red", lw=0.8, ls=":")
    left.set(xlabel="guidance scale w (0 = unconditional, 1 = conditional)", ylabel="judge accuracy (%)")
    right.set_ylabel("Fréchet distance ÷ real digits'", color="tab:red")
    left.grid(alpha=0.3)
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="center right")
    left.set_title("accuracy and Fréchet distance per guidance scale", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rows(points: dict[str, dict]) -> list[list]:
    out = []
    for p in sorted(points.values(), key=lambda p: (p["model"] != "ours", p["nfe_per_image"], p["family"])):
        out.append(
            [
                p["model"],
                f"{p['family']} ({p['scheduler']})",
                p["steps"],
                "–" if p["guidance_scale"] is None else f"{p['guidance_scale']:g}",
                p["nfe_per_image"],
                f"{p['mean_accuracy']:.1%}",
                f"{p['frechet_distance']:.2f}",
                f"{p['frechet_distance_real']:.2f}",
                f"{frechet_ratio(p):.2f}x",
                "yes" if meets_goal(p) else "no",
                f"{p['generation_seconds']:.0f}",
            ]
        )
    return out


def verdict(points: dict[str, dict], curve: str) -> list[str]:
    lines = []
    if curve == "guidance":
        for p in sorted(points.values(), key=lambda p: p["guidance_scale"] or 0):
            lines.append(
                f"w = {p['guidance_scale']:g}: accuracy {p['mean_accuracy']:.1%}, Fréchet "
                f"{p['frechet_distance']:.2f} ({frechet_ratio(p):.2f}x real digits)"
            )
        return lines
    for model in sorted({p["model"] for p in points.values()}, key=lambda m: m != "ours"):
        cheap = [p for p in points.values() if p["model"] == model and p["nfe_per_image"] <= GOAL_NFE]
        hits = sorted((p for p in cheap if meets_goal(p)), key=lambda p: p["nfe_per_image"])
        shown = ", ".join(
            f"{p['family']} {p['steps']} steps w={p['guidance_scale'] if p['guidance_scale'] is not None else '-'} "
            f"({p['nfe_per_image']} NFE: {p['mean_accuracy']:.1%}, {frechet_ratio(p):.2f}x)"
            for p in hits
        )
        lines.append(
            f"{model}: >= {GOAL_ACCURACY:.0%} accuracy and Fréchet <= {GOAL_FRECHET_RATIO}x real at <= {GOAL_NFE} "
            f"NFE -> {'MET by ' + shown if hits else 'NOT MET'} ({len(cheap)} configs measured at <= {GOAL_NFE} NFE)"
        )
    return lines


def summary(points: dict[str, dict], curve: str) -> list[list]:
    if curve == "guidance":
        return []
    out = []
    for model in sorted({p["model"] for p in points.values()}, key=lambda m: m != "ours"):
        cheap = [p for p in points.values() if p["model"] == model and p["nfe_per_image"] <= GOAL_NFE]
        if not cheap:
            continue
        best = min(cheap, key=lambda p: (not meets_goal(p), frechet_ratio(p)))
        out.append(
            common.summary_row(
                f"best point at <= {GOAL_NFE} U-Net calls per image, {model} model: {best['family']} "
                f"{best['steps']} steps, w {best['guidance_scale'] if best['guidance_scale'] is not None else '-'} "
                "(accuracy / Fréchet ÷ real digits')",
                f"{best['mean_accuracy']:.1%} / {frechet_ratio(best):.2f}x",
                "",
                None,
                f">= {GOAL_ACCURACY:.0%} / <= {GOAL_FRECHET_RATIO}x",
                meets_goal(best),
            )
        )
    return out


def render(result: dict[str, Any], curve: str) -> None:
    points = result["points"]
    plot_path = common.RESULTS_DIR / f"{result['name']}.png"
    (plot_guidance if curve == "guidance" else plot_nfe)(points, plot_path)
    result["plot"] = os.path.relpath(plot_path, common.REPO_ROOT)
    result["verdict"] = verdict(points, curve)
    result["summary"] = summary(points, curve)
    n = {p["num_samples"] for p in points.values()}
    result["markdown"] = [
        f"{'Guidance curve' if curve == 'guidance' else 'Quality per U-Net call'}: {', '.join(map(str, n))} samples "
        "per point (the same labels and seeds everywhere), judged by `ddpm_hub.evaluation`. NFE = U-Net evaluations "
        "per image, guidance counted (2 per guided step). Fréchet ÷ real = the samples' Fréchet distance over real "
        f"training digits' at the same N. Goal: >= {GOAL_ACCURACY:.0%} and <= {GOAL_FRECHET_RATIO}x at <= "
        f"{GOAL_NFE} NFE. Models: ours `{result['model_dir']}`; stock `{result['stock_model_dir']}` "
        f"({result.get('stock_training', 'see train_stock.py')}). Commands: "
        + "; ".join(f"`{c}`" for c in result["commands"]),
        "",
        *common.markdown_table(
            ["model", "sampler", "steps", "w", "NFE", "accuracy", "Fréchet", "real", "Fréchet ÷ real", "goal", "s"],
            rows(points),
        ),
        "",
        f"![{curve}]({os.path.basename(plot_path)})",
        "",
        "Goals:",
        *[f"- {line}" for line in result["verdict"]],
        *[f"- note on `{key}`: {p['note']}" for key, p in sorted(points.items()) if p.get("note")],
    ]


RECOMMENDED_ACCURACY = 0.99
PAGE_SAMPLER = ("ddpm", 1000)  # the Space's default chain: DDPM, every one of the 1000 steps
RULE = (
    f"the lowest Fréchet ratio among the scales with judge accuracy >= {RECOMMENDED_ACCURACY:.0%} at every chain "
    "they were measured with, at the Space's default chain (DDPM, 1000 steps) where it was measured at several scales"
)


def recommended_guidance_scale(points: list[dict], others: list[dict] = ()) -> float | None:
    """The w the pipeline, the model card and the Space default to: the most varied samples (lowest Fréchet ratio)
    among the scales that draw the asked digit at least ``RECOMMENDED_ACCURACY`` of the time in ``points`` and in
    every one of ``others`` (the same w measured with other chains: the margin, since one chain's 99% can be luck of
    the draw); else the most accurate scale of ``points``."""
    missed = {p["guidance_scale"] for p in (*points, *others) if not reaches(p["mean_accuracy"], RECOMMENDED_ACCURACY)}
    good = [
        p for p in points if reaches(p["mean_accuracy"], RECOMMENDED_ACCURACY) and p["guidance_scale"] not in missed
    ]
    best = min(good, key=frechet_ratio) if good else max(points, key=lambda p: p["mean_accuracy"], default=None)
    return None if best is None else best["guidance_scale"]


def page_points(model_dir: str) -> dict[str, dict]:
    """Our model's points of ``results/nfe.json`` at the Space's default chain, when that file measured this model."""
    path = common.RESULTS_DIR / "nfe.json"
    if not path.is_file():
        return {}
    nfe = json.loads(path.read_text())
    if os.path.abspath(nfe["model_dir"]) != os.path.abspath(model_dir):
        return {}
    return {
        k: p
        for k, p in nfe["points"].items()
        if p["model"] == "ours" and (p["family"], p["steps"]) == PAGE_SAMPLER and p["guidance_scale"] is not None
    }


def record_in_model(result: dict[str, Any], curve: str) -> None:
    """Writes the results file's points of our model (the model of ``--model_dir``) into that model's folder."""
    from ddpm_hub.hub import write_model_card

    model_dir = result["model_dir"]
    ours = {k: p for k, p in result["points"].items() if p["model"] == "ours"}
    commands = list(result["commands"])
    if curve == "guidance":  # the page chain's points of the NFE table (the same model) join the curve
        page = page_points(model_dir)
        ours = {**page, **ours}  # a point measured for the curve itself wins over the NFE table's
        if page:
            commands += json.loads((common.RESULTS_DIR / "nfe.json").read_text())["commands"]
    keep = ("scheduler", "family", "steps", "guidance_scale", "nfe_per_image", "num_samples", "mean_accuracy",
            "frechet_distance", "frechet_distance_real", "per_digit_accuracy", "generation_seconds")  # fmt: skip
    points = sorted(
        ({key: p[key] for key in keep} for p in ours.values()),
        key=lambda p: (p["steps"], p["guidance_scale"] or 0) if curve == "guidance" else p["nfe_per_image"],
    )
    plot_name = f"eval_{curve}.png"  # matches hub.PIPELINE_FILE_PATTERNS: uploaded with the pipeline
    (plot_guidance if curve == "guidance" else plot_nfe)(ours, os.path.join(model_dir, plot_name))
    entry = {
        "num_samples": points[0]["num_samples"],
        "points": points,
        "plot": plot_name,
        "command": "; ".join(dict.fromkeys(commands)),
        "judge_held_out_accuracy": result["judge_held_out_accuracy"],
    }
    if curve == "guidance":
        at_page = [p for p in points if (p["family"], p["steps"]) == PAGE_SAMPLER]
        chosen_from = at_page if len(at_page) > 1 else points
        others = [p for p in points if p not in chosen_from]
        entry["recommended_guidance_scale"] = recommended_guidance_scale(chosen_from, others)
        entry["rule"] = RULE
    path = os.path.join(model_dir, "evaluation.json")
    runs = json.load(open(path)) if os.path.isfile(path) else {}
    runs["guidance_curve" if curve == "guidance" else "quality_per_nfe"] = entry
    with open(path, "w") as f:
        f.write(json.dumps(runs, indent=2) + "\n")
    if curve == "guidance":  # the pipeline's own default w: `pipe(...)` without `guidance_scale` samples at it
        index_path = os.path.join(model_dir, "model_index.json")
        index = json.load(open(index_path))
        index["guidance_scale"] = float(entry["recommended_guidance_scale"])
        with open(index_path, "w") as f:
            f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    card = write_model_card(model_dir)  # keeps the card's repository id
    print(f"recorded {len(points)} points in {path}, {os.path.join(model_dir, plot_name)} and {card}")


def save_points(args, points, machine, threads, judge, stock_training) -> tuple[dict[str, Any], str]:
    """Merges `points` into the results file `args.name` (under a lock: several runs may write it), renders it and
    saves it. Returns the merged result and its path."""
    header = {
        "title": "Guidance curve" if args.curve == "guidance" else "Quality per U-Net call (NFE)",
        "name": args.name,
        "command": common.command_line(),
        "machine": machine,
        "threads": threads,
        "model_dir": args.model_dir,
        "stock_model_dir": args.stock_model_dir,
        "judge_held_out_accuracy": judge.held_out_accuracy if judge else None,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    if stock_training:
        header["stock_training"] = stock_training
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with open(common.RESULTS_DIR / f".{args.name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held until the merged file is written
        result = merge_points(args.name, points, header)
        render(result, args.curve)
        path = common.save_result(args.name, result)
    return result, path


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = common.set_threads(args.threads)
    machine = common.machine_info()
    print(f"{common.command_line()}\n{machine['cpu']}, torch {machine['torch']}, {threads} threads")
    judge = None if args.record_only else load_or_train_judge(verbose=True)
    models = {}
    if "ours" in args.models and not args.record_only:
        models["ours"] = DDPMHubPipeline.from_pretrained(args.model_dir)
    if "stock" in args.models and not args.record_only:
        models["stock"] = DDPMPipeline.from_pretrained(args.stock_model_dir)
    stock_training = None
    record = os.path.join(args.stock_model_dir, "training_config.json")
    if os.path.isfile(record):
        info = json.load(open(record))
        stock_training = f"{info['steps']} steps of batch {info['batch_size']}, {info['cpu_minutes']} CPU-minutes"

    points: dict[str, dict] = {}
    for family, steps in [] if args.record_only else args.configs:
        for model, pipeline in models.items():
            scales = args.guidance_scales if model == "ours" else [None]
            for scale in scales:
                sampler, scheduler_name = (our_sampler if model == "ours" else stock_sampler)(pipeline, family)
                kwargs = {} if scale is None else {"guidance_scale": scale}
                start = time.perf_counter()
                scores = evaluate_pipeline(
                    sampler,
                    samples_per_digit=args.samples_per_digit,
                    num_inference_steps=steps,
                    seed=args.seed,
                    batch_size=args.batch_size,
                    judge=judge,
                    **kwargs,
                )
                point = {
                    "model": model,
                    "family": family,
                    "scheduler": scheduler_name,
                    "steps": steps,
                    "guidance_scale": scale,
                    "nfe_per_image": nfe_per_image(steps, scale),
                    "num_samples": scores["num_samples"],
                    "mean_accuracy": scores["mean_accuracy"],
                    "per_digit_accuracy": scores["per_digit_accuracy"],
                    "frechet_distance": scores["frechet_distance"],
                    "frechet_distance_real": scores["frechet_distance_real"],
                    "generation_seconds": time.perf_counter() - start,
                    "threads": threads,
                    "loadavg": [round(x, 2) for x in os.getloadavg()],
                }
                points[point_key(model, family, steps, scale)] = point
                print(
                    f"{model:<5} {family:>11}:{steps:<4} w={'-' if scale is None else f'{scale:g}':<4} "
                    f"NFE {point['nfe_per_image']:>4}: accuracy {point['mean_accuracy']:6.1%}  Fréchet "
                    f"{point['frechet_distance']:6.2f} ({frechet_ratio(point):.2f}x real)  "
                    f"{point['generation_seconds']:.0f} s  {common.load_line()}",
                    flush=True,
                )
                if not args.no_save:  # each point is kept as soon as it is measured: a stopped run loses none
                    result, path = save_points(args, {point_key(model, family, steps, scale): point}, machine,
                                               threads, judge, stock_training)  # fmt: skip
    if args.no_save:
        return 0
    if not points:  # --record_only: re-render and record what the results file holds
        result, path = save_points(args, {}, machine, threads, judge, stock_training)
    print("\n".join(result["verdict"]))
    print(f"saved {path} and {result['plot']}")
    if args.record_in_model:
        record_in_model(result, args.curve)
    return 0


if __name__ == "__main__":
    sys.exit(main())
