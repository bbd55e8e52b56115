"""Guided DDIM on the bundled model: eps from the clipped x_0 (ours, as improved-diffusion) vs diffusers' default.

    python benchmarks/bench_ddim_clipping.py                          # 20 samples per digit, DDIM 50, w = 1 and 2
    python benchmarks/bench_ddim_clipping.py --samples_per_digit 50 --inference_steps 50 100

With `clip_sample=True`, a DDIM step clips the predicted x_0 to [-1, 1] but, in diffusers' `DDIMPipeline`
(`use_clipped_model_output` unset, so False), keeps the model's unclipped eps in the direction term of Eq. 12
(Song et al. 2021): the two terms then disagree wherever x_0 was clipped, and guidance makes that happen at most
steps. Our pipeline recomputes eps from the clipped x_0 by default. Both samplers run the same U-Net, the same
guided eps and the same x_T; "stock" is diffusers' own `DDIMScheduler` stepped as `DDIMPipeline` steps it. Scored by
the digit judge of `ddpm_hub.evaluation` (accuracy and Fréchet distance to held-out digits).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import common  # benchmarks/common.py: the script's folder is on sys.path
import torch
from diffusers import DDIMScheduler, ImagePipelineOutput

from ddpm_hub import DDIMHubScheduler, DDPMHubPipeline
from ddpm_hub.data import to_zero_one
from ddpm_hub.evaluation import evaluate_pipeline, load_or_train_judge


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", default=str(common.REPO_ROOT / "space" / "default_model"))
    parser.add_argument("--samples_per_digit", type=int, default=20)
    parser.add_argument("--inference_steps", type=int, nargs="+", default=[50])
    parser.add_argument("--guidance_scales", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="ddim_clipping", help="results file name")
    parser.add_argument("--no_save", action="store_true", help="print only")
    return parser.parse_args(argv)


class StockDDIMSampler:
    """`DDIMPipeline`'s loop (eta 0, `use_clipped_model_output` left unset) around our pipeline's guided eps."""

    def __init__(self, pipeline: DDPMHubPipeline):
        self.pipeline = pipeline
        self.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)

    @torch.inference_mode()
    def __call__(self, batch_size, class_labels, guidance_scale, num_inference_steps, generator, output_type="pt"):
        config = self.pipeline.unet.config
        image = torch.randn(
            (batch_size, config.in_channels, config.sample_size, config.sample_size), generator=generator
        )
        self.scheduler.set_timesteps(num_inference_steps)
        for t in self.scheduler.timesteps:
            eps = self.pipeline.predict(image, t, class_labels, guidance_scale)
            image = self.scheduler.step(eps, t, image, eta=0.0, generator=generator).prev_sample
        return ImagePipelineOutput(images=to_zero_one(image).clamp(0, 1))


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = common.set_threads(args.threads)
    machine = common.machine_info()
    print(f"{common.command_line()}\n{machine['cpu']}, {threads} threads, {common.load_line()}")
    judge = load_or_train_judge(verbose=True)
    pipe = DDPMHubPipeline.from_pretrained(args.model_dir)
    pipe.scheduler = DDIMHubScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    samplers = {"ours": pipe, "stock": StockDDIMSampler(pipe)}

    rows: list[dict[str, Any]] = []
    for steps in args.inference_steps:
        for scale in args.guidance_scales:
            row = {"inference_steps": steps, "guidance_scale": scale}
            for name, sampler in samplers.items():
                scores = evaluate_pipeline(
                    sampler,
                    samples_per_digit=args.samples_per_digit,
                    guidance_scale=scale,
                    num_inference_steps=steps,
                    seed=args.seed,
                    judge=judge,
                )
                row[name] = {k: scores[k] for k in ("mean_accuracy", "frechet_distance", "frechet_distance_real")}
            rows.append(row)
            print(
                f"DDIM {steps} steps, w = {scale:g}: ours acc {row['ours']['mean_accuracy']:.1%} "
                f"FD {row['ours']['frechet_distance']:.2f} | stock acc {row['stock']['mean_accuracy']:.1%} "
                f"FD {row['stock']['frechet_distance']:.2f} (real digits {row['ours']['frechet_distance_real']:.2f})"
            )
            sys.stdout.flush()

    result: dict[str, Any] = {
        "title": "Guided DDIM: eps from the clipped x_0 (ours) vs diffusers' DDIMPipeline default",
        "command": common.command_line(),
        "machine": machine,
        "threads": threads,
        "settings": {k: v for k, v in vars(args).items() if k not in ("no_save", "name")},
        "rows": rows,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    result["markdown"] = [
        f"Bundled model `{os.path.relpath(args.model_dir, common.REPO_ROOT)}`, {args.samples_per_digit} samples per "
        "digit, eta 0, same x_T and the same guided eps on both sides. ours = `DDPMHubPipeline` with "
        "`DDIMHubScheduler` (eps recomputed from the clipped x_0); stock = diffusers' `DDIMScheduler` stepped as "
        "`DDIMPipeline` does (`use_clipped_model_output` unset).",
        "",
        *common.markdown_table(
            ["DDIM steps", "guidance", "ours: accuracy", "stock: accuracy", "ours: Fréchet", "stock: Fréchet", "real"],
            [
                [
                    r["inference_steps"],
                    f"{r['guidance_scale']:g}",
                    f"{r['ours']['mean_accuracy']:.1%}",
                    f"{r['stock']['mean_accuracy']:.1%}",
                    f"{r['ours']['frechet_distance']:.2f}",
                    f"{r['stock']['frechet_distance']:.2f}",
                    f"{r['ours']['frechet_distance_real']:.2f}",
                ]
                for r in rows
            ],
        ),
    ]
    result["summary"] = [
        common.summary_row(
            f"guided DDIM, {r['inference_steps']} steps, w = {r['guidance_scale']:g}: judge accuracy / Fréchet, "
            f"{args.samples_per_digit} per digit (eps from clipped x_0 vs diffusers' DDIMPipeline default)",
            f"{r['ours']['mean_accuracy']:.1%} / {r['ours']['frechet_distance']:.2f}",
            f"{r['stock']['mean_accuracy']:.1%} / {r['stock']['frechet_distance']:.2f}",
            None,
            "",
            None,
        )
        for r in rows
    ]
    if not args.no_save:
        path = common.save_result(args.name, result)
        print(f"saved {path} and {common.RESULTS_DIR / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
