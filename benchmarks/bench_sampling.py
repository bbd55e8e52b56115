"""Sampling speed, side by side in one process: our `DDPMHubPipeline` vs stock `diffusers.DDPMPipeline`, every
opt-in applied to both sides.

Both sides run ancestral DDPM sampling of 28x28x1 images with a U-Net of matched size (parameters and FLOPs within
10%, printed first), the same number of steps and the same batch sizes. Ours runs with `guidance_scale=1.0`: one
U-Net pass per step, like the unconditional stock pipeline (guidance > 1 would run the U-Net on 2B images).

    python benchmarks/bench_sampling.py --model_dir space/default_model              # torch's default threads
    python benchmarks/bench_sampling.py --model_dir space/default_model --threads 1
    python benchmarks/bench_sampling.py --quality_only --quality_samples_per_digit 50 --model_dir space/default_model

Variants, each run by both sides (every contestant on its own copy of the weights):
    eager          as shipped: float32, eager
    bf16           bfloat16 autocast: ours `pipeline.enable_bf16_autocast()` (around the U-Net; x_t and the
                   scheduler stay float32), stock `torch.autocast(bfloat16)` around the pipeline call (autocast
                   changes only convolutions and matmuls, i.e. the U-Net)
    compile        `torch.compile` of the U-Net as our `pipeline.enable_compile()` does it (inductor, frozen weights,
                   C++ wrapper, static shapes): stock's U-Net is compiled by that same method (`compile_like_ours`);
                   compiling happens in the untimed first call at each batch size, whose time is reported
    compile_bf16   both

Per step: the time of a `--steps`-step chain divided by its steps (setup and output conversion included, so nothing
is hidden), `--repeats` times, all contestants interleaved (stock_eager, ours_eager, stock_bf16, ours_bf16, ...), so
the two sides of a variant are timed back to back. Speed-up of a variant: per repeat i, stock_X time_i / ours_X
time_i; reported as the median over the repeats with its min–max, and a goal is met only when the min clears it.
One more comparison is not like for like and is labelled so: ours' fastest opt-in vs stock as a user gets it
(float32 eager). Full chain: `--chain_steps` (1000) steps, `--chain_repeats` times, paired the same way.

Before each timing the script waits (up to `--quiet_timeout` s) until other processes use fewer than
`--quiet_threshold` CPU cores (read from /proc), retakes a per-step timing they disturbed (`--retries`), and records
the cores they used during every timing. Share of the matmul peak: the U-Net's FLOPs per step
(`torch.utils.flop_counter`) / time per step / the best GFLOP/s of a 2048x2048 matmul in the variant's precision
(float32 for eager and compile, bfloat16 for the bf16 variants), measured at the start and the end of this run with
the same threads (the better of the two is used).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from typing import Any

import common  # benchmarks/common.py: the script's folder is on sys.path
import torch
from diffusers import DDPMPipeline, DDPMScheduler
from readme_table import percent, spread

from ddpm_hub import DDIMHubScheduler, DDPMHubPipeline, DDPMHubScheduler

VARIANTS = ("eager", "bf16", "compile", "compile_bf16")
GOAL_SPEEDUP = 1.5
GOAL_PEAK_FRACTION = 0.5


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--steps", type=int, default=50, help="steps of the chain timed for the per-step numbers")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--chain_steps", type=int, default=1000, help="steps of the full chain (0: skip)")
    parser.add_argument("--chain_repeats", type=int, default=5)
    parser.add_argument("--chain_batch_sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--chain_variants", nargs="+", choices=VARIANTS, default=["eager", "bf16"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--device", default="cpu", help="e.g. cuda: one GPU, when there is one")
    common.add_timing_arguments(parser, retries="per-step timing", clock=True)
    parser.add_argument("--model_dir", default=None, help="load our weights from a saved pipeline (speed only)")
    parser.add_argument(
        "--quality_samples_per_digit",
        type=int,
        default=0,
        help="also score eager vs bf16 samples of --model_dir with the digit judge (0: skip)",
    )
    parser.add_argument("--quality_guidance_scale", type=float, default=2.0)
    parser.add_argument("--quality_sampler", choices=["ddpm", "ddim"], default="ddpm")
    parser.add_argument("--quality_inference_steps", type=int, default=100, help="steps for the quality check")
    parser.add_argument("--quality_only", action="store_true", help="skip the timings: only the quality check")
    parser.add_argument("--name", default=None, help="results file name (default: sampling_threads<N>)")
    parser.add_argument("--no_save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if "eager" not in args.variants:  # stock as shipped: the reference of the not-like-for-like row
        args.variants = ["eager", *args.variants]
    return args


# ---------------------------------------------------------------------------------------------------------------------
# The contestants: one pipeline per side and variant
# ---------------------------------------------------------------------------------------------------------------------


def precision(variant: str) -> str:
    return "bfloat16" if variant.endswith("bf16") else "float32"


def load_our_unet(model_dir: str | None):
    if model_dir is None:
        return common.our_unet(seed=0)
    return DDPMHubPipeline.from_pretrained(model_dir).unet


def compile_like_ours(unet: torch.nn.Module) -> None:
    """`torch.compile` `unet` in place with exactly our opt-in's settings: `DDPMHubPipeline.enable_compile` itself,
    run on a throwaway pipeline around this U-Net (it only compiles `pipeline.unet`, so a stock `UNet2DModel` too)."""
    DDPMHubPipeline(unet=unet, scheduler=DDPMHubScheduler(num_train_timesteps=1000)).enable_compile()


def build_ours(base_unet, variant: str, device: str) -> DDPMHubPipeline:
    unet = copy.deepcopy(base_unet).eval().to(device)
    pipe = DDPMHubPipeline(unet=unet, scheduler=DDPMHubScheduler(num_train_timesteps=1000))
    if variant.startswith("compile"):
        pipe.enable_compile()
    if variant.endswith("bf16"):
        pipe.enable_bf16_autocast()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_stock(variant: str, device: str) -> DDPMPipeline:
    unet = common.stock_unet(seed=0).eval().to(device)
    if variant.startswith("compile"):
        compile_like_ours(unet)
    pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def our_call(pipe: DDPMHubPipeline, batch: int, steps: int):
    labels = torch.arange(batch) % common.NUM_CLASSES
    device = pipe.unet.device

    def call():
        return pipe(
            batch_size=batch,
            class_labels=labels,
            guidance_scale=1.0,  # one U-Net pass per step, as the unconditional stock pipeline
            num_inference_steps=steps,
            generator=torch.Generator(device).manual_seed(0),
            output_type="np",  # ends with a copy to the host: GPU work is finished when the call returns
        )

    return call


def stock_call(pipe: DDPMPipeline, batch: int, steps: int, bf16: bool):
    device = pipe.unet.device

    def call():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return pipe(
                batch_size=batch,
                num_inference_steps=steps,
                generator=torch.Generator(device).manual_seed(0),
                output_type="np",
            )

    return call


def contestants(args, base_unet, variants: list[str]) -> dict[str, Any]:
    """ "stock_<variant>" / "ours_<variant>" -> factory(batch, steps) -> call, in the order they are interleaved."""
    out: dict[str, Any] = {}
    for variant in variants:
        stock = build_stock(variant, args.device)
        out[f"stock_{variant}"] = lambda b, s, p=stock, v=variant: stock_call(p, b, s, bf16=v.endswith("bf16"))
        ours = build_ours(base_unet, variant, args.device)
        out[f"ours_{variant}"] = lambda b, s, p=ours: our_call(p, b, s)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------------------------------


def warm_up(calls: dict[str, Any]) -> dict[str, float]:
    """One untimed call each (allocator, oneDNN primitive caches, torch.compile); returns its seconds."""
    seconds = {}
    for name, call in calls.items():
        start = time.perf_counter()
        call()
        seconds[name] = time.perf_counter() - start
    return seconds


def quiet(args) -> tuple[float | None, float]:
    return (args.quiet_threshold if args.quiet_threshold >= 0 else None), args.quiet_timeout


def pair_speedups(per_repeat: dict[str, list[float]], variants: list[str]) -> dict[str, Any]:
    """Per variant: stock_X seconds / ours_X seconds, repeat by repeat (`common.ratio_stats`)."""
    return {v: common.ratio_stats(per_repeat[f"stock_{v}"], per_repeat[f"ours_{v}"]) for v in variants}


def best_opt_in(per_repeat: dict[str, list[float]], variants: list[str]) -> dict[str, Any] | None:
    """Ours' fastest opt-in (lowest median) against stock as shipped (float32 eager): not like for like."""
    opt_ins = [v for v in variants if v != "eager"]
    if not opt_ins:
        return None
    best = min(opt_ins, key=lambda v: common.summarize(per_repeat[f"ours_{v}"])["median"])
    return {"ours_variant": best, **common.ratio_stats(per_repeat["stock_eager"], per_repeat[f"ours_{best}"])}


def per_step(args, entrants) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for batch in args.batch_sizes:
        calls = {name: factory(batch, args.steps) for name, factory in entrants.items()}
        first_call = warm_up(calls)
        times, loads = common.time_interleaved(
            calls, args.repeats, *quiet(args), retries=args.retries, clock=args.clock
        )
        per_repeat = {name: [t / args.steps for t in seconds] for name, seconds in times.items()}
        results[str(batch)] = row = {
            "contestants": {
                name: {
                    "seconds_per_step": common.summarize(seconds),
                    "seconds_per_step_per_repeat": seconds,
                    "first_call_seconds": first_call[name],
                    "other_processes_cores": loads[name],
                }
                for name, seconds in per_repeat.items()
            },
            "speedups": pair_speedups(per_repeat, args.variants),
            "best_opt_in_vs_stock_default": best_opt_in(per_repeat, args.variants),
        }
        print_step_row(batch, row)
    return results


def add_peak_shares(per_step_results: dict[str, Any], flops_per_image: dict[str, float], peaks: dict[str, float]):
    """Each contestant's share of the matmul peak in its own precision: median (from the median time) and range."""
    for batch, row in per_step_results.items():
        for name, entry in row["contestants"].items():
            side, variant = name.split("_", 1)
            gflops = flops_per_image[side] * int(batch) / 1e9
            peak = peaks[precision(variant)]
            seconds = entry["seconds_per_step"]
            entry["peak_share"] = {
                "median": gflops / seconds["median"] / peak,
                "min": gflops / seconds["max"] / peak,
                "max": gflops / seconds["min"] / peak,
                "precision": precision(variant),
            }


def print_step_row(batch: int, row: dict[str, Any]) -> None:
    print(f"\nbatch {batch}: ms per step, median (min–max) of the repeats; speed-up = stock time / ours, per repeat")
    contestants = row["contestants"]
    for variant, speedup in row["speedups"].items():
        ours, stock = contestants[f"ours_{variant}"], contestants[f"stock_{variant}"]
        print(
            f"  {variant:<13} ours {spread(ours['seconds_per_step'], 3, ' ms', 1e3):<28} "
            f"stock {spread(stock['seconds_per_step'], 3, ' ms', 1e3):<28} speed-up {spread(speedup):<20} "
            f"first call {ours['first_call_seconds']:.1f} / {stock['first_call_seconds']:.1f} s   others used "
            f"{max(ours['other_processes_cores'] + stock['other_processes_cores']):.2f} cores at most"
        )
    best = row["best_opt_in_vs_stock_default"]
    if best:
        print(f"  not like for like: ours {best['ours_variant']} vs stock eager float32: {spread(best)}")
    sys.stdout.flush()


def full_chain(args, entrants) -> dict[str, Any]:
    results: dict[str, Any] = {}
    wanted = [f"{side}_{v}" for v in args.chain_variants for side in ("stock", "ours")]
    for batch in args.chain_batch_sizes:
        calls = {name: entrants[name](batch, args.chain_steps) for name in wanted}
        times, loads = common.time_interleaved(calls, args.chain_repeats, *quiet(args), clock=args.clock)
        results[str(batch)] = row = {
            "contestants": {
                name: {
                    "seconds": common.summarize(seconds),
                    "seconds_per_repeat": seconds,
                    "other_processes_cores": loads[name],
                }
                for name, seconds in times.items()
            },
            "speedups": pair_speedups(times, args.chain_variants),
        }
        print(f"\nfull chain, {args.chain_steps} steps, batch {batch}: seconds, median (min–max)")
        for variant, speedup in row["speedups"].items():
            ours, stock = (row["contestants"][f"{side}_{variant}"] for side in ("ours", "stock"))
            print(
                f"  {variant:<13} ours {spread(ours['seconds'], 2, ' s'):<24} "
                f"stock {spread(stock['seconds'], 2, ' s'):<24} speed-up {spread(speedup)}   others used "
                f"{max(ours['other_processes_cores'] + stock['other_processes_cores']):.2f} cores at most"
            )
        sys.stdout.flush()
    return results


def quality_check(args) -> dict[str, Any]:
    """Judge scores of the trained model's samples, float32 vs bf16 autocast, same seeds and sampler."""
    from ddpm_hub.evaluation import evaluate_pipeline, load_or_train_judge

    if args.model_dir is None:
        raise SystemExit("--quality_samples_per_digit needs --model_dir (a trained pipeline)")
    judge = load_or_train_judge()
    results, images = {}, {}
    for variant in ("eager", "bf16"):
        pipe = DDPMHubPipeline.from_pretrained(args.model_dir)
        if args.quality_sampler == "ddim":
            pipe.scheduler = DDIMHubScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        if variant == "bf16":
            pipe.enable_bf16_autocast()
        captured = []

        def capture(*a, _pipe=pipe, _captured=captured, **kw):
            out = _pipe(*a, **kw)
            _captured.append(out.images)
            return out

        start = time.perf_counter()
        result = evaluate_pipeline(
            capture,
            samples_per_digit=args.quality_samples_per_digit,
            guidance_scale=args.quality_guidance_scale,
            num_inference_steps=args.quality_inference_steps,
            judge=judge,
        )
        images[variant] = torch.cat(captured)
        results[variant] = {
            "mean_accuracy": result["mean_accuracy"],
            "frechet_distance": result["frechet_distance"],
            "frechet_distance_real": result["frechet_distance_real"],
            "per_digit_accuracy": result["per_digit_accuracy"],
            "seconds": time.perf_counter() - start,
        }
        print(
            f"quality {variant:<6} accuracy {result['mean_accuracy']:.1%}  Frechet {result['frechet_distance']:.2f} "
            f"(real digits: {result['frechet_distance_real']:.2f})"
        )
    difference = (images["eager"] - images["bf16"]).abs()
    results["bf16_vs_eager_pixels"] = {"max_abs": difference.max().item(), "mean_abs": difference.mean().item()}
    results["settings"] = {
        "model_dir": args.model_dir,
        "samples_per_digit": args.quality_samples_per_digit,
        "guidance_scale": args.quality_guidance_scale,
        "sampler": (
            f"DDIMHubScheduler, {args.quality_inference_steps} steps, eta 0"
            if args.quality_sampler == "ddim"
            else f"DDPMHubScheduler, {args.quality_inference_steps} steps"
        ),
    }
    print(
        f"bf16 vs float32, same seeds: pixel difference max {difference.max().item():.3f}, "
        f"mean {difference.mean().item():.4f} (images in [0, 1])"
    )
    return results


# ---------------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------------


def markdown(args, result: dict[str, Any]) -> list[str]:
    lines = speed_markdown(args, result) if "per_step" in result else []
    if result.get("quality"):
        q = result["quality"]
        lines += [
            "",
            f"Opt-in bf16 autocast, sample quality (trained model `{q['settings']['model_dir']}`, "
            f"{q['settings']['samples_per_digit']} samples per digit, {q['settings']['sampler']}, guidance "
            f"{q['settings']['guidance_scale']}, same seeds):",
            "",
        ]
        lines += common.markdown_table(
            ["precision", "judge accuracy", "Fréchet distance", "(real digits)"],
            [
                [
                    v,
                    f"{q[v]['mean_accuracy']:.1%}",
                    f"{q[v]['frechet_distance']:.2f}",
                    f"{q[v]['frechet_distance_real']:.2f}",
                ]
                for v in ("eager", "bf16")
            ],
        )
        lines += [
            "",
            f"Pixel difference bf16 vs float32 (images in [0, 1]): max "
            f"{q['bf16_vs_eager_pixels']['max_abs']:.3f}, mean {q['bf16_vs_eager_pixels']['mean_abs']:.4f}.",
        ]
    if result["verdict"]:
        lines += ["", "Goals:"] + [f"- {line}" for line in result["verdict"]]
    return lines


def speed_markdown(args, result: dict[str, Any]) -> list[str]:
    match, peaks = result["match"], result["matmul_peak_gflops"]
    lines = [
        f"Matched models: ours {match['ours']['parameters']:,} parameters, "
        f"{match['mflops_per_image']['ours']:.1f} MFLOP/image; stock `UNet2DModel` "
        f"{match['stock']['parameters']:,} parameters, {match['mflops_per_image']['stock']:.1f} MFLOP/image "
        f"(stock/ours: parameters {match['parameters_ratio_stock_over_ours']:.3f}, "
        f"FLOPs {match['flops_ratio_stock_over_ours']:.3f}). Matmul peaks measured in this run ({result['threads']} "
        "threads, 2048x2048): " + ", ".join(f"{p} {g:.1f} GFLOP/s" for p, g in peaks.items()) + ".",
        "",
        f"Per denoising step (chain of {args.steps} DDPM steps / {args.steps}; ours with guidance_scale=1, i.e. one "
        f"U-Net pass per step like `DDPMPipeline`), each variant on both sides. Milliseconds ({args.clock} clock): "
        f"median (min–max) of {args.repeats} interleaved repeats. Speed-up = stock time / ours in the same repeat, "
        f"median (min–max); goal >= {GOAL_SPEEDUP}x at every batch size in every repeat. Share of the matmul peak "
        f"in the variant's precision; goal > {GOAL_PEAK_FRACTION:.0%} at batch 64. Others' cores: the most CPU "
        "cores other processes kept busy during one of the two timings (0 = a quiet machine).",
        "",
    ]
    rows = []
    for batch, row in result["per_step"].items():
        contestants = row["contestants"]
        for variant, speedup in row["speedups"].items():
            ours, stock = contestants[f"ours_{variant}"], contestants[f"stock_{variant}"]
            rows.append(
                [
                    batch,
                    variant,
                    spread(ours["seconds_per_step"], 2, "", 1e3),
                    spread(stock["seconds_per_step"], 2, "", 1e3),
                    spread(speedup),
                    f"{percent(ours['peak_share'])} / {percent(stock['peak_share'])}",
                    f"{ours['first_call_seconds']:.1f} / {stock['first_call_seconds']:.1f}",
                    f"{max(ours['other_processes_cores'] + stock['other_processes_cores']):.2f}",
                ]
            )
    lines += common.markdown_table(
        [
            "batch",
            "variant (both sides)",
            "ours ms / step",
            "stock ms / step",
            "speed-up",
            "% of peak, ours / stock",
            "first call, ours / stock (s)",
            "others' cores",
        ],
        rows,
    )
    best = {b: row["best_opt_in_vs_stock_default"] for b, row in result["per_step"].items()}
    if all(best.values()):
        lines += [
            "",
            "Not like for like: ours' fastest opt-in vs stock as a user gets it (float32 eager), same repeats: "
            + "; ".join(f"batch {b}: {v['ours_variant']} {spread(v)}" for b, v in best.items())
            + ".",
        ]
    if result.get("full_chain"):
        lines += [
            "",
            f"Full chain ({args.chain_steps} DDPM steps), seconds: median (min–max) of {args.chain_repeats} "
            "interleaved repeats; speed-up per repeat as above.",
            "",
        ]
        rows = []
        for batch, row in result["full_chain"].items():
            for variant, speedup in row["speedups"].items():
                ours, stock = (row["contestants"][f"{side}_{variant}"] for side in ("ours", "stock"))
                rows.append(
                    [
                        batch,
                        variant,
                        spread(ours["seconds"], 2, ""),
                        spread(stock["seconds"], 2, ""),
                        spread(speedup),
                        f"{max(ours['other_processes_cores'] + stock['other_processes_cores']):.2f}",
                    ]
                )
        lines += common.markdown_table(
            ["batch", "variant (both sides)", "ours s / chain", "stock s / chain", "speed-up", "others' cores"], rows
        )
    return lines


def summary(args, result: dict[str, Any]) -> list[list]:
    """The rows this run adds to the summary table of RESULTS.md."""
    threads = f"{result['threads']} thread{'s' if result['threads'] > 1 else ''}"
    rows = []
    for batch, row in result.get("per_step", {}).items():
        contestants = row["contestants"]
        for variant, speedup in row["speedups"].items():
            ours, stock = (contestants[f"{side}_{variant}"]["seconds_per_step"] for side in ("ours", "stock"))
            rows.append(
                common.summary_row(
                    f"sampling, ms per DDPM step, batch {batch}, {threads}: ours vs stock, both {variant}",
                    spread(ours, 2, "", 1e3),
                    spread(stock, 2, "", 1e3),
                    spread(speedup),
                    f">= {GOAL_SPEEDUP}x",
                    speedup["min"] >= GOAL_SPEEDUP,
                )
            )
        best = row["best_opt_in_vs_stock_default"]
        if best:
            rows.append(
                common.summary_row(
                    f"sampling, ms per DDPM step, batch {batch}, {threads}: ours {best['ours_variant']} (fastest "
                    "opt-in) vs stock eager float32, not like for like",
                    spread(contestants[f"ours_{best['ours_variant']}"]["seconds_per_step"], 2, "", 1e3),
                    spread(contestants["stock_eager"]["seconds_per_step"], 2, "", 1e3),
                    spread(best),
                    "",
                    None,
                )
            )
    for batch, row in result.get("full_chain", {}).items():
        for variant, speedup in row["speedups"].items():
            ours, stock = (row["contestants"][f"{side}_{variant}"]["seconds"] for side in ("ours", "stock"))
            rows.append(
                common.summary_row(
                    f"sampling, s per {args.chain_steps}-step chain, batch {batch}, {threads}: ours vs stock, both "
                    f"{variant}",
                    spread(ours, 2, ""),
                    spread(stock, 2, ""),
                    spread(speedup),
                    "",
                    None,
                )
            )
    if "64" in result.get("per_step", {}):
        contestants = result["per_step"]["64"]["contestants"]
        for variant in result["per_step"]["64"]["speedups"]:
            ours, stock = (contestants[f"{side}_{variant}"]["peak_share"] for side in ("ours", "stock"))
            rows.append(
                common.summary_row(
                    f"share of the {ours['precision']} matmul peak "
                    f"({result['matmul_peak_gflops'][ours['precision']]:.0f} GFLOP/s, same run), batch 64, "
                    f"{threads}: ours {variant} vs stock {variant}",
                    percent(ours),
                    percent(stock),
                    None,
                    f"> {GOAL_PEAK_FRACTION:.0%}",
                    ours["min"] > GOAL_PEAK_FRACTION,
                )
            )
    if result.get("quality"):
        q = result["quality"]
        rows.append(
            common.summary_row(
                f"opt-in bf16 vs float32: judge accuracy / Fréchet, {q['settings']['samples_per_digit']} per digit, "
                f"{q['settings']['sampler']}, guidance {q['settings']['guidance_scale']} (ours bf16 vs ours float32)",
                f"{q['bf16']['mean_accuracy']:.1%} / {q['bf16']['frechet_distance']:.2f}",
                f"{q['eager']['mean_accuracy']:.1%} / {q['eager']['frechet_distance']:.2f} (ours float32)",
                None,
                "same quality",
                None,
            )
        )
    return rows


def verdict(result: dict[str, Any]) -> list[str]:
    """Goals, like for like: met only when every repeat clears them."""
    if "per_step" not in result:
        return []
    lines = []
    for variant in next(iter(result["per_step"].values()))["speedups"]:
        speedups = {b: row["speedups"][variant] for b, row in result["per_step"].items()}
        met = all(s["min"] >= GOAL_SPEEDUP for s in speedups.values())
        shown = ", ".join(f"batch {b}: {spread(s)}" for b, s in speedups.items())
        lines.append(
            f"ours vs stock, both {variant}: per-step speed-up {shown} -> {'MET' if met else 'NOT MET'} "
            f"(goal >= {GOAL_SPEEDUP}x in every repeat)"
        )
    if "64" in result["per_step"]:
        contestants = result["per_step"]["64"]["contestants"]
        for name in [n for n in contestants if n.startswith("ours")]:
            share = contestants[name]["peak_share"]
            met = share["min"] > GOAL_PEAK_FRACTION
            lines.append(
                f"{name}: {percent(share)} of the {share['precision']} matmul peak at batch 64 -> "
                f"{'MET' if met else 'NOT MET'} (goal > {GOAL_PEAK_FRACTION:.0%} in every repeat)"
            )
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    # Every compiled contestant (two U-Net instances a side, each batch size, autocast on and off) is a recompile of
    # the same forward: past dynamo's default limit of 8 it silently runs eager, so compiled rows would time eager.
    torch._dynamo.config.recompile_limit = 64
    threads = common.set_threads(args.threads)
    machine = common.machine_info()
    print(
        f"{common.command_line()}\n{machine['cpu']}, torch {machine['torch']} with {threads} threads, "
        f"{common.load_line()}"
    )

    result: dict[str, Any] = {
        "title": f"Sampling speed, {threads} thread{'s' if threads > 1 else ''}",
        "command": common.command_line(),
        "machine": machine,
        "threads": threads,
        "settings": {k: v for k, v in vars(args).items() if k not in ("no_save", "name")},
    }
    if not args.quality_only:
        speed(args, result)
    else:
        result["title"] = "Opt-in bf16 autocast: sample quality"
    if args.quality_samples_per_digit:
        result["quality"] = quality_check(args)
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["verdict"] = verdict(result)
    print("\n".join(result["verdict"]))
    result["markdown"] = markdown(args, result)
    result["summary"] = summary(args, result)
    if not args.no_save:
        default_name = "sampling_bf16_quality" if args.quality_only else f"sampling_threads{threads}"
        path = common.save_result(args.name or default_name, result)
        print(f"saved {path} and {common.RESULTS_DIR / 'RESULTS.md'}")
    return 0


def matmul_peaks(args, precisions: list[str]) -> dict[str, float]:
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    return {
        p: common.matmul_peak_gflops(dtype=dtypes[p], device=args.device, quiet_threshold=quiet(args)[0])
        for p in precisions
    }


def speed(args, result: dict[str, Any]) -> None:
    """The timings, into ``result``."""
    threads = result["threads"]
    base_unet = load_our_unet(args.model_dir)
    match = common.match_report(base_unet, common.stock_unet(seed=0))
    common.print_match_report(match)
    result["match"] = match
    flops = {"ours": match["mflops_per_image"]["ours"] * 1e6, "stock": match["mflops_per_image"]["stock"] * 1e6}

    variants = list(dict.fromkeys(args.variants + args.chain_variants))
    precisions = sorted({precision(v) for v in args.variants}, reverse=True)  # float32 first
    peaks_start = matmul_peaks(args, precisions)
    print(", ".join(f"{p} matmul peak (2048^3, {threads} threads): {g:.1f} GFLOP/s" for p, g in peaks_start.items()))
    entrants = contestants(args, base_unet, variants)
    per_step_entrants = {k: v for k, v in entrants.items() if k.split("_", 1)[1] in args.variants}
    result["per_step"] = per_step(args, per_step_entrants)
    if args.chain_steps:
        result["full_chain"] = full_chain(args, entrants)
    peaks_end = matmul_peaks(args, precisions)
    result["matmul_peak_gflops"] = {p: max(peaks_start[p], peaks_end[p]) for p in precisions}
    result["matmul_peak_gflops_start_end"] = {p: [peaks_start[p], peaks_end[p]] for p in precisions}
    add_peak_shares(result["per_step"], flops, result["matmul_peak_gflops"])
    print(
        "\nmatmul peaks, start / end: "
        + ", ".join(f"{p} {peaks_start[p]:.1f} / {peaks_end[p]:.1f} GFLOP/s" for p in precisions)
        + f"; {common.load_line()}"
    )
    if "64" in result["per_step"]:
        print("share of the matmul peak in the variant's precision, batch 64, median (min–max):")
        for name, entry in result["per_step"]["64"]["contestants"].items():
            print(f"  {name:<20} {percent(entry['peak_share'])} of {entry['peak_share']['precision']}")


if __name__ == "__main__":
    sys.exit(main())
