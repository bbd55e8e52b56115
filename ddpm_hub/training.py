"""The training step of ddpm-hub's recipe, shared by `training/train.py` and the benchmarks.

One micro-batch of the DDPM training algorithm (Ho et al. 2020, Algorithm 1): x_0 from the data, eps ~ N(0, I),
t ~ U{0..T-1}, x_t = add_noise(x_0, eps, t), and the (weighted) mean squared error of the model's prediction against
the scheduler's training target. Every formula (x_t, the targets, the loss weights) comes from the scheduler; this
module only draws the random numbers, in a fixed order, and averages.

    from ddpm_hub.training import diffusion_loss, make_ema, step_generator

    ema = make_ema(unet)
    for step, (x_0, labels) in enumerate(batches):
        loss = diffusion_loss(unet, scheduler, x_0, labels, step_generator(seed, step), label_dropout=0.1).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        ema.step(unet.parameters())
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from accelerate.utils import extract_model_from_parallel

from .pipelines.pipeline_ddpm import DEFAULT_GUIDANCE_SCALE  # noqa: F401 (a fresh model's w, for train.py)
from .schedulers.scheduling_ddpm import DDPMHubScheduler

LOSSES = ("simple", "weighted", "min_snr")

#: The EMA of the recipe: decay 1 - (1 + step)^(-2/3), capped at 0.999 (diffusers' `EMAModel` warm-up).
EMA_MAX_DECAY = 0.999
EMA_POWER = 2 / 3


def step_generator(seed: int, micro_step: int, process_index: int = 0) -> torch.Generator:
    """The randomness of one micro-batch (eps, t, label dropout), a CPU generator fixed by (seed, step, process):
    resuming from a checkpoint draws exactly what the uninterrupted run drew, and every process draws differently."""
    return torch.Generator().manual_seed((seed * 1_000_003 + micro_step) * 64 + process_index)


def per_sample_weight(
    scheduler: DDPMHubScheduler, loss: str, timesteps: torch.Tensor, snr_gamma: float = 5.0
) -> torch.Tensor | None:
    """The loss weight of each sample, (B,) for timesteps t (B,), from the scheduler; None for L_simple.

    "weighted": the ELBO's w(t) scaled to mean 1 over t (`DDPMHubScheduler.normalized_loss_weight`); "min_snr":
    min(SNR(t), snr_gamma) / SNR(t) in the units of the prediction type (`DDPMHubScheduler.min_snr_loss_weight`).
    """
    if loss == "simple":
        return None
    if loss == "weighted":
        return scheduler.normalized_loss_weight(timesteps)
    if loss == "min_snr":
        return scheduler.min_snr_loss_weight(timesteps, snr_gamma)
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")


@dataclass
class StepLoss:
    """The loss of one micro-batch."""

    loss: torch.Tensor  # () the weighted mean: what backward() sees
    per_sample: torch.Tensor  # (B,) each sample's unweighted mean squared error
    timesteps: torch.Tensor  # (B,) long, the t drawn, on the CPU


def diffusion_loss(
    unet,
    scheduler: DDPMHubScheduler,
    x_0: torch.Tensor,
    labels: torch.Tensor | None,
    generator: torch.Generator,
    *,
    loss: str = "simple",
    snr_gamma: float = 5.0,
    label_dropout: float = 0.0,
    noise: torch.Tensor | None = None,
    timesteps: torch.Tensor | None = None,
) -> StepLoss:
    """One micro-batch of Algorithm 1.

    Draws, from `generator` (a CPU generator, e.g. `step_generator`'s) and in this order, eps ~ N(0, I) of x_0's
    shape, t ~ U{0..T-1} (B,) and the label dropout (each label replaced by the null class with probability
    `label_dropout`); then x_t = add_noise(x_0, eps, t), and the (weighted) mean squared error of the model's
    prediction against the scheduler's training target (eps, x_0 or v, by its `prediction_type`).

    Args:
        unet: a `DDPMHubUNet2DModel` (or a `DDPMHubMLP` for (B, D) points), possibly wrapped by accelerate (DDP).
        x_0: (B, C, H, W) in [-1, 1], or (B, D) points. labels: (B,) long, or None for an unconditional model.
        loss: "simple", "weighted" or "min_snr" (see `per_sample_weight`).
        noise, timesteps: given draws, (B, C, H, W) and (B,) long, instead of drawing them (to score a model on
            fixed draws); the label dropout is still drawn.
    """
    if noise is None:
        noise = torch.randn(x_0.shape, generator=generator).to(x_0)  # (B, C, H, W)
    if timesteps is None:
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (x_0.shape[0],), generator=generator)
    class_labels = None
    if labels is not None:  # the null class teaches the unconditional model that guidance needs
        class_labels = extract_model_from_parallel(unet).drop_class_labels(labels, label_dropout, generator)
    x_t = scheduler.add_noise(x_0, noise, timesteps)
    target = scheduler.training_target(x_0, noise, timesteps)
    prediction = unet(x_t, timesteps.to(x_0.device), class_labels=class_labels).sample
    per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").flatten(1).mean(1)  # (B,)
    weight = per_sample_weight(scheduler, loss, timesteps, snr_gamma)
    mean = per_sample.mean() if weight is None else (per_sample * weight.to(per_sample)).mean()
    return StepLoss(loss=mean, per_sample=per_sample, timesteps=timesteps)


def make_ema(unet, max_decay: float = EMA_MAX_DECAY, power: float = EMA_POWER):
    """The exponential moving average of `unet`'s weights that the recipe saves: diffusers' `EMAModel` with warm-up,
    decay 1 - (1 + step)^(-power) capped at `max_decay` (0.999: an average over about the last 1,000 steps).

    Update it after each optimiser step with `ema.step(unet.parameters())`; `ema.copy_to(model.parameters())`
    puts the averaged weights into a model. Checkpoint it with `accelerator.register_for_checkpointing(ema)`.
    """
    from diffusers.training_utils import EMAModel

    model = extract_model_from_parallel(unet)
    return EMAModel(
        model.parameters(),
        decay=max_decay,
        use_ema_warmup=True,
        power=power,
        model_cls=type(model),
        model_config=model.config,
    )
