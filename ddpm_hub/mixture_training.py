"""Training a noise predictor on points of a Gaussian mixture, and measuring it against the exact one.

The loop is Algorithm 1 with the recipe's own micro-batch (`ddpm_hub.training.diffusion_loss`: eps, t, x_t and the
target all from the scheduler), on fresh draws of the mixture at every step, so there is no dataset and no
overfitting. It yields a `FitStep` per optimiser step, so a page can draw L_simple falling while it runs:

    model = DDPMHubMLP()
    for step in fit_steps(model, scheduler, GaussianMixture.preset("ring8"), num_steps=3000):
        print(step.step, step.loss)

`noise_error_by_t` compares a model's eps_theta with the oracle's E[eps | x_t] on draws of q(x_t): the part of the
model's error that training can remove (the rest of L_simple, E||eps - E[eps | x_t]||^2, no model can).

The bundled 2-D models of the Space (`space/mixture_models/`) are made by this module's command line:

    python -m ddpm_hub.mixture_training --out space/mixture_models
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .mixture import MIXTURE_PRESETS, GaussianMixture, MixtureDenoiser
from .models.mlp import DDPMHubMLP
from .schedulers.scheduling_ddpm import DDPMHubScheduler
from .training import diffusion_loss, step_generator

DEFAULT_NUM_STEPS = 3000  # a live run on the page: tens of seconds
BUNDLED_NUM_STEPS = 12000  # the bundled models (the command line's default): closer to the exact denoiser
DEFAULT_BATCH_SIZE = 256
DEFAULT_LEARNING_RATE = 2e-3
WARMUP_STEPS = 100


def points_scheduler(**overrides) -> DDPMHubScheduler:
    """The scheduler of the 2-D models: DDPM's 1000 linear steps, without clipping (mixture data goes beyond +-1)."""
    return DDPMHubScheduler(**{"num_train_timesteps": 1000, "clip_sample": False, **overrides})


@dataclass
class FitStep:
    """One optimiser step of `fit_steps`."""

    step: int  # 1-based: how many steps are done
    num_steps: int
    loss: float  # this step's L_simple, mean over the batch
    learning_rate: float


def _check_positive_int(key: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"Invalid `{key}`={value!r}: allowed values are integers >= 1.")


def fit_steps(
    model: DDPMHubMLP,
    scheduler: DDPMHubScheduler,
    mixture: GaussianMixture,
    num_steps: int = DEFAULT_NUM_STEPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    seed: int = 0,
) -> Iterator[FitStep]:
    """Trains `model` in place on x_0 ~ `mixture` with L_simple and yields a `FitStep` after every optimiser step.

    AdamW at `learning_rate`, a linear warm-up over the first 100 steps and a cosine decay to 0 at `num_steps`
    (the recipe's shape). Each step draws `batch_size` fresh points, then eps and t (`diffusion_loss`), all from
    generators fixed by (`seed`, step): the same arguments train the same model. The model is left in eval mode.

    Args:
        model: a `DDPMHubMLP` with `sample_dim` = the mixture's D (unconditional: `num_class_embeds=None`).
        scheduler: the forward process (`points_scheduler()`).
        mixture: p(x_0).
        num_steps, batch_size: the length of the run and the points per step.
        learning_rate: the peak learning rate, > 0.
        seed: the run's randomness.
    """
    _check_positive_int("num_steps", num_steps)
    _check_positive_int("batch_size", batch_size)
    if not (isinstance(learning_rate, int | float) and math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"Invalid `learning_rate`={learning_rate!r}: allowed values are finite numbers > 0.")
    if model.config.sample_dim != mixture.dim:
        raise ValueError(
            f"Invalid `model`: sample_dim={model.config.sample_dim}; allowed: the mixture's dimension {mixture.dim}."
        )

    def schedule(step: int) -> float:  # warm-up, then cosine to 0
        if step < WARMUP_STEPS:
            return (step + 1) / WARMUP_STEPS
        progress = (step - WARMUP_STEPS) / max(1, num_steps - WARMUP_STEPS)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    try:
        for step in range(num_steps):
            generator = step_generator(seed, step)
            x_0 = mixture.sample(batch_size, generator=generator)  # (B, D)
            loss = diffusion_loss(model, scheduler, x_0, None, generator).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            rate = lr_scheduler.get_last_lr()[0]
            lr_scheduler.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"The loss became {value} at step {step + 1}: lower `learning_rate`.")
            yield FitStep(step=step + 1, num_steps=num_steps, loss=value, learning_rate=rate)
    finally:
        model.eval()


@torch.no_grad()
def noise_error_by_t(
    model, oracle: MixtureDenoiser, timesteps, num_points: int = 512, generator: torch.Generator | None = None
) -> torch.Tensor:
    """E ||eps_theta(x_t, t) - E[eps | x_t]||^2 / D over x_t ~ q(x_t), per t: (len(timesteps),) float64.

    The model's own error against the exact denoiser (`oracle`, whose mixture is the data); in score units it is
    this times 1 / (1 - alpha_bar_t), the squared distance of the learned score -eps_theta / sqrt(1 - alpha_bar_t)
    from grad log q(x_t). x_0 ~ the oracle's mixture and x_t = `scheduler.add_noise` draw from `generator`.
    """
    _check_positive_int("num_points", num_points)
    scheduler, mixture = oracle.scheduler, oracle.mixture
    errors = []
    for t in timesteps:
        x_0 = mixture.sample(num_points, generator=generator, dtype=torch.float64)
        noise = torch.randn(x_0.shape, generator=generator, dtype=torch.float64)
        x_t = scheduler.add_noise(x_0, noise, torch.tensor([int(t)]))  # (N, D)
        predicted = model(x_t.float(), int(t)).sample.double()
        errors.append((predicted - oracle.eps_mean(x_t, int(t))).pow(2).mean())
    return torch.stack(errors)


def main(argv: list[str] | None = None) -> None:
    """Trains one `DDPMHubMLP` per preset (spread 1) and saves each to OUT/PRESET with a `training.json`."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for the models, one subfolder per preset")
    parser.add_argument("--presets", nargs="+", default=list(MIXTURE_PRESETS), choices=MIXTURE_PRESETS)
    parser.add_argument("--num_steps", type=int, default=BUNDLED_NUM_STEPS)
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--learning_rate", type=float, default=DEFAULT_LEARNING_RATE)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    scheduler = points_scheduler()
    for preset in args.presets:
        torch.manual_seed(args.seed)
        model = DDPMHubMLP()
        mixture = GaussianMixture.preset(preset)
        losses = [
            s.loss
            for s in fit_steps(
                model, scheduler, mixture, args.num_steps, args.batch_size, args.learning_rate, args.seed
            )
        ]
        oracle = MixtureDenoiser(mixture, scheduler)
        timesteps = [0, 10, 50, 100, 250, 500, 999]
        error = noise_error_by_t(model, oracle, timesteps, 2048, torch.Generator().manual_seed(1))
        folder = args.out / preset
        model.save_pretrained(folder)
        record = {
            "command": "python -m ddpm_hub.mixture_training " + " ".join(sys.argv[1:] if argv is None else argv),
            "preset": preset,
            "spread": 1.0,
            **{k: getattr(args, k) for k in ("num_steps", "batch_size", "learning_rate", "seed")},
            "final_loss_mean_last_100": sum(losses[-100:]) / len(losses[-100:]),
            "noise_error_by_t": {str(t): round(float(e), 5) for t, e in zip(timesteps, error, strict=True)},
        }
        (folder / "training.json").write_text(json.dumps(record, indent=2) + "\n")
        print(preset, json.dumps(record["noise_error_by_t"]), f"loss {record['final_loss_mean_last_100']:.4f}")


if __name__ == "__main__":
    main()
