"""Sampling speed, side by side in one process: our `DDPMHubPipeline` vs stock `diffusers.DDPMPipeline`.

Both sides run ancestral DDPM sampling of 28x28x1 images with a U-Net of matched size (parameters and FLOPs within
10%, printed first), the same number of steps and the same batch sizes. Ours runs with `guidance_scale=1.0`: one
U-Net pass per step, like the unconditional stock pipeline (guidance > 1 would run the U-Net on 2B images).

    python benchmarks/bench_sampling.py                       # torch's default threads (2 on the target machine)
    python benchmarks/bench_sampling.py --threads 1
    python benchmarks/bench_sampling.py --variants eager bf16 compile --chain_variants eager bf16
    python benchmarks/bench_sampling.py --quality_samples_per_digit 100 --model_dir space/default_model

Per step: the time of a `--steps`-step chain divided by its steps (setup and output conversion included, so nothing
is hidden), `--repeats` times, ours and stock interleaved; headline = the fastest repeat (the least disturbed by
other processes), medians alongside. Before each timing the script waits (up to `--quiet_timeout` s) until other
processes use fewer than `--quiet_threshold` CPU cores (read from /proc), retakes a per-step timing they disturbed
(`--retries`), and records the cores they used during every timing. Full chain: `--chain_steps` (1000) steps,
`--chain_repeats` times. The share of the CPU's matmul peak is FLOPs per step (`torch.utils.flop_counter`) / time
per step / the best GFLOP/s of a 2048x2048 float32 matmul measured in the same run.

Variants of ours (each on its own copy of the same weights):
    eager          the pipeline as shipped (float32)
    bf16           `pipeline.enable_bf16_autocast()` (opt-in; the quality check below measures what it costs)
    channels_last  U-Net weights converted to channels_last (x_t has one channel: its layout is the same)
    compile        `pipeline.enable_compile()`: torch.compile of the U-Net (inductor, frozen weights, C++ wrapper);
                   compiling happens in the untimed first call, whose time is reported
    compile_bf16   both
Stock is always `DDPMPipeline` + `UNet2DModel` as a user gets them (float32, eager); `--stock_variants bf16` adds
stock under `torch.autocast(bfloat16)`, to show what the same trick gives stock.
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

from ddpm_hub import DDIMHubScheduler, DDPMHubPipeline, DDPMHubScheduler

OUR_VARIANTS = ("eager", "bf16", "channels_last", "compile", "compile_bf16")
STOCK_VARIANTS = ("eager", "bf16")
GOAL_SPEEDUP = 1.5
GOAL_PEAK_FRACTION = 0.5


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--steps", type=int, default=50, help="steps of the chain timed for the per-step numbers")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--chain_steps", type=int, default=1000, help="steps of the full chain (0: skip)")
    parser.add_argument("--chain_repeats", type=int, default=3)
    parser.add_argument("--chain_batch_sizes", type=int, nargs="+", default=None, help="default: --batch_sizes")
    parser.add_argument("--variants", nargs="+", choices=OUR_VARIANTS, default=["eager", "bf16", "channels_last"])
    parser.add_argument("--chain_variants", nargs="+", choices=OUR_VARIANTS, default=["eager", "bf16"])
    parser.add_argument("--stock_variants", nargs="+", choices=STOCK_VARIANTS, default=["eager"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--device", default="cpu", help="e.g. cuda: one GPU, when there is one")
    parser.add_argument(
        "--quiet_threshold",
        type=float,
        default=0.3,
        help="before each timing, wait until other processes use fewer CPU cores than this; retake a timing they "
        "disturbed (negative: never wait)",
    )
    parser.add_argument("--quiet_timeout", type=float, default=60.0, help="longest wait for quiet, seconds")
    parser.add_argument("--retries", type=int, default=2, help="retakes of a disturbed per-step timing")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: time.process_time (with --threads 1, robust to other processes taking turns on the cores)",
    )
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
    args.chain_batch_sizes = args.chain_batch_sizes or args.batch_sizes
    if "eager" not in args.variants:
        args.variants = ["eager", *args.variants]
    return args


# ---------------------------------------------------------------------------------------------------------------------
# The contestants
# ---------------------------------------------------------------------------------------------------------------------


def load_our_unet(model_dir: str | None):
    if model_dir is None:
        return common.our_unet(seed=0)
    return DDPMHubPipeline.from_pretrained(model_dir).unet


def build_ours(base_unet, variant: str, device: str) -> DDPMHubPipeline:
    unet = copy.deepcopy(base_unet).eval().to(device)
    if variant == "channels_last":
        unet = unet.to(memory_format=torch.channels_last)
    pipe = DDPMHubPipeline(unet=unet, scheduler=DDPMHubScheduler(num_train_timesteps=1000))
    if variant.startswith("compile"):
        pipe.enable_compile()
    if variant.endswith("bf16"):
        pipe.enable_bf16_autocast()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_stock(device: str) -> DDPMPipeline:
    unet = common.stock_unet(seed=0).eval().to(device)
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


def stock_call(pipe: DDPMPipeline, batch: int, steps: int, bf16: bool = False):
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


def contestants(args, base_unet, variants: list[str]) -> dict[str, tuple[Any, Any]]:
    """name -> (pipeline, factory(batch, steps) -> call)."""
    out: dict[str, tuple[Any, Any]] = {}
    for variant in args.stock_variants:
        pipe = build_stock(args.device)
        out[f"stock_{variant}"] = (pipe, lambda b, s, p=pipe, v=variant: stock_call(p, b, s, bf16=v == "bf16"))
    for variant in variants:
        pipe = build_ours(base_unet, variant, args.device)
        out[f"ours_{variant}"] = (pipe, lambda b, s, p=pipe: our_call(p, b, s))
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


def per_step(args, entrants, flops_per_image: dict[str, float], peak: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for batch in args.batch_sizes:
        calls = {name: factory(batch, args.steps) for name, (_, factory) in entrants.items()}
        first_call = warm_up(calls)
        times, loads = common.time_interleaved(
            calls, args.repeats, *quiet(args), retries=args.retries, clock=args.clock
        )
        row: dict[str, Any] = {}
        for name, seconds in times.items():
            stats = {k: (v / args.steps if k != "n" else v) for k, v in common.summarize(seconds).items()}
            flops = flops_per_image["stock" if name.startswith("stock") else "ours"] * batch
            row[name] = {
                "seconds_per_step": stats,
                "first_call_seconds": first_call[name],
                "gflops_per_second": flops / stats["min"] / 1e9,
                "peak_fraction": flops / stats["min"] / 1e9 / peak,
                "peak_fraction_median": flops / stats["median"] / 1e9 / peak,
                "other_processes_cores": loads[name],
            }
        base = row["stock_eager"]["seconds_per_step"]
        for entry in row.values():
            entry["speedup_vs_stock"] = base["min"] / entry["seconds_per_step"]["min"]
            entry["speedup_vs_stock_median"] = base["median"] / entry["seconds_per_step"]["median"]
        results[str(batch)] = row
        print_step_row(batch, row)
    return results


def print_step_row(batch: int, row: dict[str, Any]) -> None:
    print(
        f"\nbatch {batch}: ms per step, min (median) of the repeats; x = speed-up over stock_eager; % of matmul peak"
    )
    for name, entry in row.items():
        s = entry["seconds_per_step"]
        print(
            f"  {name:<20} {s['min'] * 1e3:9.3f} ({s['median'] * 1e3:9.3f}) ms   "
            f"x{entry['speedup_vs_stock']:5.2f} (x{entry['speedup_vs_stock_median']:5.2f})   "
            f"{entry['peak_fraction']:6.1%} of peak   first call {entry['first_call_seconds']:.2f} s   "
            f"others used {max(entry['other_processes_cores']):.2f} cores at most"
        )
    sys.stdout.flush()


def full_chain(args, entrants) -> dict[str, Any]:
    results: dict[str, Any] = {}
    wanted = {"stock_eager", *(f"ours_{v}" for v in args.chain_variants)}
    for batch in args.chain_batch_sizes:
        calls = {name: factory(batch, args.chain_steps) for name, (_, factory) in entrants.items() if name in wanted}
        times, loads = common.time_interleaved(calls, args.chain_repeats, *quiet(args), clock=args.clock)
        row = {
            name: {"seconds": common.summarize(seconds), "other_processes_cores": loads[name]}
            for name, seconds in times.items()
        }
        base = row["stock_eager"]["seconds"]
        print(f"\nfull chain, {args.chain_steps} steps, batch {batch}: seconds, min (median)")
        for name, entry in row.items():
            entry["speedup_vs_stock"] = base["min"] / entry["seconds"]["min"]
            entry["speedup_vs_stock_median"] = base["median"] / entry["seconds"]["median"]
            s = entry["seconds"]
            print(
                f"  {name:<20} {s['min']:8.2f} ({s['median']:8.2f}) s   x{entry['speedup_vs_stock']:5.2f} "
                f"(x{entry['speedup_vs_stock_median']:5.2f})   others used "
                f"{max(entry['other_processes_cores']):.2f} cores at most"
            )
        sys.stdout.flush()
        results[str(batch)] = row
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
    match = result["match"]
    lines = [
        f"Matched models: ours {match['ours']['parameters']:,} parameters, "
        f"{match['mflops_per_image']['ours']:.1f} MFLOP/image; stock `UNet2DModel` "
        f"{match['stock']['parameters']:,} parameters, {match['mflops_per_image']['stock']:.1f} MFLOP/image "
        f"(stock/ours: parameters {match['parameters_ratio_stock_over_ours']:.3f}, "
        f"FLOPs {match['flops_ratio_stock_over_ours']:.3f}). "
        f"float32 matmul peak measured in this run: {result['matmul_peak_gflops']:.1f} GFLOP/s "
        f"({result['threads']} threads).",
        "",
        f"Per denoising step (chain of {args.steps} DDPM steps / {args.steps}; ours with guidance_scale=1, i.e. one "
        f"U-Net pass per step like `DDPMPipeline`). Milliseconds ({args.clock} clock): fastest of {args.repeats} "
        "interleaved repeats "
        "(median in brackets). Speed-up = stock_eager time / this time. Goal: >= 1.5x at every batch size; >= 50% of "
        "the matmul peak at batch 64. Others' cores: the most CPU cores other processes kept busy during one of the "
        "timings used (0 = a quiet machine; 2 cores here).",
        "",
    ]
    header = ["batch", "contestant", "ms / step", "speed-up vs stock", "% of fp32 matmul peak", "others' cores"]
    rows = []
    for batch, row in result["per_step"].items():
        for name, entry in row.items():
            s = entry["seconds_per_step"]
            rows.append(
                [
                    batch,
                    name,
                    f"{s['min'] * 1e3:.2f} ({s['median'] * 1e3:.2f})",
                    f"{entry['speedup_vs_stock']:.2f}x ({entry['speedup_vs_stock_median']:.2f}x)",
                    f"{entry['peak_fraction']:.0%}",
                    f"{max(entry['other_processes_cores']):.2f}",
                ]
            )
    lines += common.markdown_table(header, rows)
    if result.get("full_chain"):
        lines += [
            "",
            f"Full chain ({args.chain_steps} DDPM steps), seconds: fastest of {args.chain_repeats} "
            "(median in brackets).",
            "",
        ]
        rows = []
        for batch, row in result["full_chain"].items():
            for name, entry in row.items():
                s = entry["seconds"]
                rows.append(
                    [
                        batch,
                        name,
                        f"{s['min']:.2f} ({s['median']:.2f})",
                        f"{entry['speedup_vs_stock']:.2f}x ({entry['speedup_vs_stock_median']:.2f}x)",
                        f"{max(entry['other_processes_cores']):.2f}",
                    ]
                )
        lines += common.markdown_table(
            ["batch", "contestant", "seconds / chain", "speed-up vs stock", "others' cores"], rows
        )
    return lines


def summary(args, result: dict[str, Any]) -> list[list]:
    """The rows this run adds to the summary table of RESULTS.md."""
    threads = f"{result['threads']} thread{'s' if result['threads'] > 1 else ''}"
    rows = []
    for batch, row in result.get("per_step", {}).items():
        stock = row["stock_eager"]["seconds_per_step"]["min"] * 1e3
        ours_names = [n for n in row if n.startswith("ours")]
        for name in ours_names:
            if name != "ours_eager" and row[name]["speedup_vs_stock"] < max(
                row[n]["speedup_vs_stock"] for n in ours_names if n != "ours_eager"
            ):
                continue  # eager, and the best opt-in only
            speedup = row[name]["speedup_vs_stock"]
            label = "float32, as shipped" if name == "ours_eager" else f"best opt-in: {name[5:]}"
            rows.append(
                common.summary_row(
                    f"sampling, ms per DDPM step, batch {batch}, {threads} (ours {label})",
                    f"{row[name]['seconds_per_step']['min'] * 1e3:.2f}",
                    f"{stock:.2f}",
                    speedup,
                    f">= {GOAL_SPEEDUP}x",
                    speedup >= GOAL_SPEEDUP,
                )
            )
        if "stock_bf16" in row and "ours_bf16" in row:
            ours, stock_bf16 = (row[n]["seconds_per_step"]["min"] for n in ("ours_bf16", "stock_bf16"))
            rows.append(
                common.summary_row(
                    f"sampling, ms per DDPM step, batch {batch}, {threads} (bf16 autocast on both sides)",
                    f"{ours * 1e3:.2f}",
                    f"{stock_bf16 * 1e3:.2f}",
                    stock_bf16 / ours,
                    "",
                    None,
                )
            )
    for batch, row in result.get("full_chain", {}).items():
        for name in [n for n in row if n.startswith("ours")]:
            rows.append(
                common.summary_row(
                    f"sampling, s per {args.chain_steps}-step chain, batch {batch}, {threads} ({name})",
                    f"{row[name]['seconds']['min']:.2f}",
                    f"{row['stock_eager']['seconds']['min']:.2f}",
                    row[name]["speedup_vs_stock"],
                    "",
                    None,
                )
            )
    if "64" in result.get("per_step", {}):
        row = result["per_step"]["64"]
        for name in [n for n in row if n in ("ours_eager", "ours_bf16")]:
            fraction = row[name]["peak_fraction"]
            rows.append(
                common.summary_row(
                    f"share of the float32 matmul peak ({result['matmul_peak_gflops']:.0f} GFLOP/s), batch 64, "
                    f"{threads} ({name})",
                    f"{fraction:.0%}",
                    f"{row['stock_eager']['peak_fraction']:.0%}",
                    None,
                    f"> {GOAL_PEAK_FRACTION:.0%}",
                    fraction > GOAL_PEAK_FRACTION,
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
    lines = []
    if "per_step" not in result:
        return lines
    for name in [n for n in next(iter(result["per_step"].values())) if n.startswith("ours")]:
        speedups = {b: row[name]["speedup_vs_stock"] for b, row in result["per_step"].items()}
        met = all(s >= GOAL_SPEEDUP for s in speedups.values())
        shown = ", ".join(f"batch {b}: {s:.2f}x" for b, s in speedups.items())
        lines.append(f"{name}: per-step speed-up {shown} -> {'MET' if met else 'NOT MET'} (goal >= {GOAL_SPEEDUP}x)")
    if "64" in result["per_step"]:
        row = result["per_step"]["64"]
        for name in [n for n in row if n.startswith("ours")]:
            fraction = row[name]["peak_fraction"]
            met = fraction >= GOAL_PEAK_FRACTION
            lines.append(
                f"{name}: {fraction:.0%} of the float32 matmul peak at batch 64 -> {'MET' if met else 'NOT MET'} "
                f"(goal > {GOAL_PEAK_FRACTION:.0%})"
            )
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
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


def speed(args, result: dict[str, Any]) -> None:
    """The timings, into ``result``."""
    threads = result["threads"]
    base_unet = load_our_unet(args.model_dir)
    match = common.match_report(base_unet, common.stock_unet(seed=0))
    common.print_match_report(match)
    result["match"] = match
    flops = {"ours": match["mflops_per_image"]["ours"] * 1e6, "stock": match["mflops_per_image"]["stock"] * 1e6}

    peak_start = common.matmul_peak_gflops(device=args.device, quiet_threshold=quiet(args)[0])
    print(f"float32 matmul peak (2048^3, {threads} threads): {peak_start:.1f} GFLOP/s")
    variants = list(dict.fromkeys(args.variants + args.chain_variants))
    entrants = contestants(args, base_unet, variants)
    per_step_entrants = {k: v for k, v in entrants.items() if k.startswith("stock") or k[5:] in args.variants}
    result["per_step"] = per_step(args, per_step_entrants, flops, peak_start)
    if args.chain_steps:
        result["full_chain"] = full_chain(args, entrants)
    peak_end = common.matmul_peak_gflops(device=args.device, quiet_threshold=quiet(args)[0])
    result["matmul_peak_gflops"] = max(peak_start, peak_end)
    result["matmul_peak_gflops_start_end"] = [peak_start, peak_end]
    if peak_end > peak_start:  # recompute the peak shares against the better of the two peak measurements
        for row in result["per_step"].values():
            for entry in row.values():
                entry["peak_fraction"] *= peak_start / peak_end
                entry["peak_fraction_median"] *= peak_start / peak_end
    print(
        f"\nfloat32 matmul peak: {peak_start:.1f} GFLOP/s at the start, {peak_end:.1f} at the end; "
        f"{common.load_line()}"
    )


if __name__ == "__main__":
    sys.exit(main())
