"""The variational bound of the bundled model: ours against an independent float64 copy of improved-diffusion's
`calc_bpd_loop`, and how long the whole bound of one digit takes.

    python benchmarks/bench_bound.py                    # 64 held-out digits, torch's default thread count
    python benchmarks/bench_bound.py --images 8 --no_save

Issue 9's targets: `bits_per_dim` on 64 held-out digits within 2% of improved-diffusion's loop, and the whole bound
of one digit (1000 terms, streamed by `bound_steps`) within ~15 s on 2 cores.

How the comparison is fair: `pipe.bound_steps` draws x_t ~ q(x_t | x_0) for every t and reports the noise eps it used
and the U-Net's eps_theta; the reference below rebuilds x_t from that eps and computes every term from there with
improved-diffusion's formulas, in float64 numpy: its `normal_kl`, its tanh approximation of the normal CDF with the
1e-12 clamps in `discretized_gaussian_log_likelihood`, `posterior_log_variance_clipped`, and the clipped x_0
(`clip_denoised=True`). The U-Net runs once; only the bound's arithmetic is compared. Writes `results/bound.json`.
"""

import argparse
import sys
import time
from pathlib import Path

import common  # benchmarks/common.py: the script's folder is on sys.path
import numpy as np
import torch

from ddpm_hub import DDPMHubPipeline
from ddpm_hub.evaluation import held_out_digits

ROOT = Path(__file__).resolve().parents[1]


class ImprovedDiffusionBound:
    """improved-diffusion's `GaussianDiffusion` for the bound (FIXED_SMALL / FIXED_LARGE, EPSILON), in float64."""

    def __init__(self, scheduler_config):
        if scheduler_config.beta_schedule != "linear" or scheduler_config.prediction_type != "epsilon":
            raise SystemExit("the reference covers the linear schedule and epsilon prediction only")
        steps = scheduler_config.num_train_timesteps
        betas = np.linspace(scheduler_config.beta_start, scheduler_config.beta_end, steps, dtype=np.float64)
        alphas_cumprod = np.cumprod(1.0 - betas)
        alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
        self.steps = steps
        self.sqrt_alphas_cumprod = np.sqrt(alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - alphas_cumprod)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - alphas_cumprod)
        self.posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:])
        )
        self.posterior_mean_coef1 = betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - alphas_cumprod_prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_cumprod)
        if scheduler_config.variance_type.startswith("fixed_small"):
            self.model_log_variance = self.posterior_log_variance_clipped
        elif scheduler_config.variance_type.startswith("fixed_large"):
            self.model_log_variance = np.log(np.append(self.posterior_variance[1], betas[1:]))
        else:
            raise SystemExit("the reference covers fixed variances only")
        self.clip = scheduler_config.clip_sample

    @staticmethod
    def normal_kl(mean1, logvar1, mean2, logvar2):
        return 0.5 * (-1.0 + logvar2 - logvar1 + np.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * np.exp(-logvar2))

    @staticmethod
    def approx_standard_normal_cdf(x):
        return 0.5 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))

    def discretized_gaussian_log_likelihood(self, x, means, log_scales):
        centered_x = x - means
        inv_stdv = np.exp(-log_scales)
        cdf_plus = self.approx_standard_normal_cdf(inv_stdv * (centered_x + 1.0 / 255.0))
        cdf_min = self.approx_standard_normal_cdf(inv_stdv * (centered_x - 1.0 / 255.0))
        log_cdf_plus = np.log(np.maximum(cdf_plus, 1e-12))
        log_one_minus_cdf_min = np.log(np.maximum(1.0 - cdf_min, 1e-12))
        log_cdf_delta = np.log(np.maximum(cdf_plus - cdf_min, 1e-12))
        return np.where(x < -0.999, log_cdf_plus, np.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))

    def vb_term_bpd(self, x_start, noise, eps, t):
        """`_vb_terms_bpd` at timestep t for x_t = q_sample(x_start, t, noise) and the model's eps, (B,) bits."""
        x_t = self.sqrt_alphas_cumprod[t] * x_start + self.sqrt_one_minus_alphas_cumprod[t] * noise
        pred_xstart = (x_t - self.sqrt_one_minus_alphas_cumprod[t] * eps) / self.sqrt_alphas_cumprod[t]
        pred_xstart = np.clip(pred_xstart, -1, 1) if self.clip else pred_xstart
        model_mean = self.posterior_mean_coef1[t] * pred_xstart + self.posterior_mean_coef2[t] * x_t
        true_mean = self.posterior_mean_coef1[t] * x_start + self.posterior_mean_coef2[t] * x_t
        flat = lambda a: a.reshape(a.shape[0], -1).mean(1) / np.log(2.0)  # noqa: E731  (mean_flat, in bits)
        if t == 0:
            log_scales = np.full_like(x_start, 0.5 * self.model_log_variance[0])
            return -flat(self.discretized_gaussian_log_likelihood(x_start, model_mean, log_scales))
        kl = self.normal_kl(true_mean, self.posterior_log_variance_clipped[t], model_mean, self.model_log_variance[t])
        return flat(kl)

    def prior_bpd(self, x_start):
        t = self.steps - 1
        kl = self.normal_kl(self.sqrt_alphas_cumprod[t] * x_start, self.log_one_minus_alphas_cumprod[t], 0.0, 0.0)
        return kl.reshape(kl.shape[0], -1).mean(1) / np.log(2.0)


def compare(pipe: DDPMHubPipeline, images: torch.Tensor, seed: int, batch_size: int) -> dict:
    """Ours (bound_steps) and the reference term by term on the same draws; returns both totals and the timing."""
    reference = ImprovedDiffusionBound(pipe.scheduler.config)
    x_start = pipe.scheduler.quantize_to_pixel_bins(images.double()).numpy()
    ours_terms, reference_terms, ours_prior = [], [], None
    wall, cpu = time.perf_counter(), time.process_time()
    steps = pipe.bound_steps(images, None, torch.Generator().manual_seed(seed), batch_size=batch_size)
    for step in steps:
        ours_terms.append(step.vb_bpd.numpy())
        ours_prior = step.prior_bpd.numpy()
        eps = step.noise_pred.double().numpy()
        reference_terms.append(reference.vb_term_bpd(x_start, step.noise.double().numpy(), eps, step.timestep))
        if step.step_index % 100 == 0:
            print(f"t = {step.timestep}: {time.perf_counter() - wall:.0f} s", file=sys.stderr)
    ours_total = ours_prior + np.sum(ours_terms, axis=0)
    reference_prior = reference.prior_bpd(x_start)
    reference_total = reference_prior + np.sum(reference_terms, axis=0)
    return {
        "ours": ours_total,
        "reference": reference_total,
        "ours_distortion": ours_terms[-1],
        "reference_distortion": reference_terms[-1],
        "ours_prior": ours_prior,
        "reference_prior": reference_prior,
        "ours_rate": np.sum(ours_terms[:-1], axis=0),
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
    }


def time_one_digit(pipe: DDPMHubPipeline, image: torch.Tensor, batch_size: int) -> dict:
    """Seconds until the first term and until the last term of one digit's bound (`bound_steps`, 1000 terms)."""
    wall, cpu = time.perf_counter(), time.process_time()
    first = None
    for _ in pipe.bound_steps(image[None], None, torch.Generator().manual_seed(0), batch_size=batch_size):
        first = first or time.perf_counter() - wall
    return {"first_term_s": first, "all_terms_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", default=str(ROOT / "space" / "default_model"))
    parser.add_argument("--images", type=int, default=64, help="held-out digits for the comparison")
    parser.add_argument("--batch_size", type=int, default=64, help="images per U-Net call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no_save", action="store_true")
    args = parser.parse_args(argv)
    threads = common.set_threads(args.threads)
    machine = common.machine_info()

    pipe = DDPMHubPipeline.from_pretrained(args.model_dir)
    pipe.set_progress_bar_config(disable=True)
    images, _ = held_out_digits(args.images)

    timing = time_one_digit(pipe, images[0], args.batch_size)
    print(f"one digit: first term {timing['first_term_s']:.2f} s, all {timing['all_terms_s']:.1f} s wall, "
          f"{timing['cpu_s']:.1f} s CPU ({common.load_line()})")  # fmt: skip

    result = compare(pipe, images, args.seed, max(args.batch_size, args.images))
    ours, reference = float(result["ours"].mean()), float(result["reference"].mean())
    relative = abs(ours - reference) / reference
    per_image = float(np.max(np.abs(result["ours"] - result["reference"]) / result["reference"]))
    print(f"{args.images} digits: ours {ours:.5f} bits/dim, improved-diffusion's loop {reference:.5f}: "
          f"relative difference {relative:.2e} (largest per image {per_image:.2e}); "
          f"{result['wall_s']:.0f} s wall, {result['cpu_s']:.0f} s CPU")  # fmt: skip

    summary = {
        "bits_per_dim": ours,
        "bits_per_dim_reference": reference,
        "relative_difference": relative,
        "largest_relative_difference_per_image": per_image,
        "rate": float(result["ours_rate"].mean()),
        "distortion": float(result["ours_distortion"].mean()),
        "distortion_reference": float(result["reference_distortion"].mean()),
        "prior": float(result["ours_prior"].mean()),
        "prior_reference": float(result["reference_prior"].mean()),
        "num_images": args.images,
        "comparison_wall_s": result["wall_s"],
        "comparison_cpu_s": result["cpu_s"],
    }
    goal_met = {"within_2_percent": relative < 0.02, "one_digit_within_15_s": timing["all_terms_s"] < 15}
    markdown = common.markdown_table(
        ["measurement", "value", "goal"],
        [
            ["bits/dim, ours (unconditional, null class)", f"{ours:.4f}", ""],
            ["bits/dim, improved-diffusion's loop in float64", f"{reference:.4f}", ""],
            ["relative difference", f"{relative:.2e}", "< 2%"],
            ["rate / distortion / prior (bits/dim)",
             f"{summary['rate']:.4f} / {summary['distortion']:.4f} / {summary['prior']:.2e}", ""],
            ["whole bound of one digit (1000 terms)",
             f"{timing['all_terms_s']:.1f} s wall, {timing['cpu_s']:.1f} s CPU", "~15 s on 2 cores"],
        ],
    )  # fmt: skip
    out = {
        "title": f"The variational bound: ours vs improved-diffusion's loop, {args.images} held-out digits",
        "command": common.command_line(),
        "threads": threads,
        "machine": machine,
        "comparison": summary,
        "one_digit": timing,
        "goal_met": goal_met,
        "markdown": markdown,
        "loadavg_end": common.machine_info()["loadavg"],
    }
    if not args.no_save:
        print("saved", common.save_result("bound", out))


if __name__ == "__main__":
    main()
