"""The 2-D truth: how close the exact (oracle) and the learned reverse chains come to the data, and the variance
question, each against an exact answer; ours and stock diffusers' DDPMScheduler on the same oracle.

    python benchmarks/bench_truth2d.py                      # every preset, 4000 particles, 3 seeds
    python benchmarks/bench_truth2d.py --particles 1000 --seeds 1 --no_save

For each preset (spread 1): mean log p(x_0) of 4000 particles from N(0, I) through 1000 DDPM steps with sigma^2 = beta
and beta_tilde, driven by (a) the exact E[eps | x_t] (`MixtureDenoiser`) and (b) the bundled MLP
(`space/mixture_models/PRESET`), against the mean log p of real draws; with the oracle, also stock diffusers'
`DDPMScheduler` (same config, same oracle, same x_T), like for like. Then the variance question for N(0, s^2 I):
the exact expected bound gap under beta and beta_tilde (closed form), checked by the pipeline's Monte-Carlo bound.
Writes `results/truth2d.json`.
"""

import argparse
import math
import sys
from pathlib import Path

import common  # benchmarks/common.py: the script's folder is on sys.path
import torch
from diffusers import DDPMScheduler

from ddpm_hub import DDPMHubMLP, DDPMHubPipeline
from ddpm_hub.mixture import MIXTURE_PRESETS, GaussianMixture, MixtureDenoiser
from ddpm_hub.mixture_training import points_scheduler

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "space" / "mixture_models"
VARIANCES = {"beta": "fixed_large", "beta_tilde": "fixed_small"}
STDS = (0.005, 0.01, 0.015, 0.02, 0.05, 0.1, 0.3, 1.0)


def mean_log_p(mix: GaussianMixture, model, scheduler, particles: int, seed: int) -> float:
    """Mean log p(x_0) of `particles` samples of the reverse chain (1000 steps) from x_T of `seed`."""
    pipe = DDPMHubPipeline(model, scheduler)
    pipe.set_progress_bar_config(disable=True)
    latents = torch.randn(particles, mix.dim, generator=torch.Generator().manual_seed(seed))
    points = pipe(
        batch_size=particles,
        num_inference_steps=1000,
        latents=latents,
        output_type="latent",
        generator=torch.Generator().manual_seed(seed + 1),
    ).images
    return float(mix.log_prob(points.double()).mean())


def spread(values: list[float]) -> dict[str, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1))
    return {"mean": round(mean, 4), "std": round(std, 4), "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--particles", type=int, default=4000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--mc_draws", type=int, default=2000, help="draws of x_0 for the Monte-Carlo bound")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no_save", action="store_true")
    args = parser.parse_args()
    common.set_threads(args.threads)
    result = {"machine": common.machine_info(), "command": common.command_line(), "presets": {}, "variance": {}}

    for name in MIXTURE_PRESETS:
        mix = GaussianMixture.preset(name)
        real = [
            float(mix.log_prob(mix.sample(args.particles, torch.Generator().manual_seed(s))).mean())
            for s in range(args.seeds)
        ]
        row = {"real": spread(real)}
        mlp = DDPMHubMLP.from_pretrained(MODELS / name).eval() if (MODELS / name).exists() else None
        for variance, variance_type in VARIANCES.items():
            ours = points_scheduler(variance_type=variance_type)
            stock = DDPMScheduler.from_config(ours.config)
            oracle = MixtureDenoiser(mix, ours)
            seeds = range(100, 100 + args.seeds)
            row[f"oracle_{variance}"] = spread([mean_log_p(mix, oracle, ours, args.particles, s) for s in seeds])
            row[f"oracle_{variance}_stock_scheduler"] = spread(
                [mean_log_p(mix, oracle, stock, args.particles, s) for s in seeds]
            )
            if mlp is not None:
                row[f"mlp_{variance}"] = spread([mean_log_p(mix, mlp, ours, args.particles, s) for s in seeds])
        result["presets"][name] = row
        print(name, {k: v["mean"] for k, v in row.items()}, flush=True)

    scheduler = points_scheduler()
    for std in STDS:
        mix = GaussianMixture.gaussian(std)
        entry = {}
        for variance, variance_type in VARIANCES.items():
            exact = MixtureDenoiser(mix, scheduler).expected_bound_gap(variance)
            chain = points_scheduler(variance_type=variance_type)
            pipe = DDPMHubPipeline(MixtureDenoiser(mix, chain), chain)
            generator = torch.Generator().manual_seed(7)
            x_0 = mix.sample(args.mc_draws, generator=generator, dtype=torch.float64)
            gap = pipe.bits_per_dim(x_0, generator=generator, batch_size=1 << 16).total + mix.log_prob(x_0) / (
                2 * math.log(2)
            )
            entry[variance] = {
                "exact_gap_bits_per_dim": round(exact, 4),
                "monte_carlo_gap": round(float(gap.mean()), 4),
                "monte_carlo_standard_error": round(float(gap.std() / math.sqrt(len(gap))), 4),
            }
        result["variance"][str(std)] = entry
        print(f"s={std}", entry, flush=True)

    if not args.no_save:
        print("saved", common.save_result("truth2d", result))


if __name__ == "__main__":
    sys.exit(main())
