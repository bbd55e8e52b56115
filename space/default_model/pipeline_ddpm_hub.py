"""The DDPM pipeline: class-conditional sampling with classifier-free guidance, and the chain step by step.

The step-by-step view is a library feature: `denoising_steps` is a generator that yields one `DenoisingStep` per
reverse step, `noising_steps` does the same for the forward chain of a given image, and
`noise_then_denoise_steps` noises an image to t and brings it back. `__call__` simply runs `denoising_steps` to the
end. All the diffusion math is the scheduler's; this file only orders the calls.

This file imports nothing from `ddpm_hub`: it is copied verbatim into saved pipelines so that stock diffusers can
load them with `DiffusionPipeline.from_pretrained(repo_id, trust_remote_code=True)`.
"""

import importlib
import inspect
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils import BaseOutput

# How a saved folder names the component code it carries (diffusers' custom-component layout:
# model_index.json lists [module file, class] and the file sits in the component's folder).
PIPELINE_FILE = "pipeline_ddpm_hub"
COMPONENT_FILES = {"unet": "unet_ddpm_hub", "scheduler": "scheduling_ddpm_hub"}
OUTPUT_TYPES = ("pil", "np", "pt")


@dataclass
class DenoisingStep:
    """One reverse step x_t -> x_{t-1}. Image tensors are (B, C, H, W) on the pipeline's device.

    Args:
        step_index: 0 for the first step (t = the largest timestep).
        num_steps: how many steps the chain has.
        timestep: t.
        prev_timestep: the timestep the step goes to (-1 after the last step).
        sample: x_t.
        noise_pred: the eps the step used: eps_theta(x_t, t) after classifier-free guidance (for DDIM with
            `use_clipped_model_output`, recomputed from the clipped x_0).
        pred_original_sample: the x_0 predicted from x_t and eps_theta (clipped as the scheduler is configured).
        mean: the mean of p_theta(x_{t-1} | x_t).
        std: sigma_t, (1, 1, 1, 1) or (B, C, H, W) for learned variances.
        prev_sample: x_{t-1}, the next step's `sample`.
    """

    step_index: int
    num_steps: int
    timestep: int
    prev_timestep: int
    sample: torch.Tensor
    noise_pred: torch.Tensor
    pred_original_sample: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    prev_sample: torch.Tensor


@dataclass
class NoisingStep:
    """The forward chain at timestep t. Image tensors are (B, C, H, W).

    Args:
        timestep: t.
        sample: x_t reached by t + 1 single steps of q(x_t | x_{t-1}) from x_0.
        closed_form_sample: x_t drawn in one go from q(x_t | x_0), with its own noise.
        coefficients: the schedule's numbers at t (beta_t, alpha_bar_t, sqrt_alpha_bar_t, ...), from the scheduler.
    """

    timestep: int
    sample: torch.Tensor
    closed_form_sample: torch.Tensor
    coefficients: dict


@dataclass
class BoundStep:
    """The variational bound's term at one timestep t, for each of B images (`DDPMHubPipeline.bound_steps`).

    x_t is drawn from q(x_t | x_0) with its own noise at each t, as in improved-diffusion's `calc_bpd_loop`. Image
    tensors are (B, C, H, W); per-image values are (B,).

    Args:
        step_index: 0 for the first term yielded (the largest t).
        num_steps: how many terms the walk yields.
        timestep: t (0-based; the paper's x_{t+1}).
        sample: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
        noise: eps, the true noise in x_t.
        noise_pred: eps_theta(x_t, t), from the model's raw output.
        pred_original_sample: x_0 predicted from x_t (clipped as the scheduler is configured).
        noise_mse: ||eps - eps_theta||^2 / D, L_simple's term at t (D = C x H x W).
        x0_mse: ||x_0 - x0_theta||^2 / D.
        vb_bpd: the bound's term at t in bits/dim: L_t = KL(q || p_theta) for t >= 1, L_0 = -log p_theta(x_0 | x_1)
            for t = 0.
        loss_weight: w(t) = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)), with sigma_t^2 = beta_t for the
            `fixed_large` variances and beta_tilde_t otherwise: for a fixed variance and unclipped x_0,
            vb_bpd = w(t) noise_mse / ln 2 at t >= 1.
        prior_bpd: L_T = KL(q(x_T | x_0) || N(0, I)) in bits/dim; the same at every step (it does not depend on t).
    """

    step_index: int
    num_steps: int
    timestep: int
    sample: torch.Tensor
    noise: torch.Tensor
    noise_pred: torch.Tensor
    pred_original_sample: torch.Tensor
    noise_mse: torch.Tensor
    x0_mse: torch.Tensor
    vb_bpd: torch.Tensor
    loss_weight: float
    prior_bpd: torch.Tensor


@dataclass
class BitsPerDimOutput(BaseOutput):
    """The variational bound on -log p_theta(x_0) per image, in bits/dim, and its parts (Ho et al. 2020, Table 2).

    Args:
        total: prior + rate + distortion, (B,): an upper bound on the negative log-likelihood.
        prior: L_T = KL(q(x_T | x_0) || N(0, I)), (B,).
        denoising: L_1 ... L_{T-1}, (B, T - 1): column t - 1 is the term at timestep t.
        reconstruction: L_0 = -log p_theta(x_0 | x_1) under the discretized decoder, (B,).
        rate: the sum of the denoising terms, L_1 + ... + L_{T-1}, (B,) (the paper's "rate").
        distortion: L_0, (B,) (the paper's "distortion"; equal to `reconstruction`).
        noise_mse: ||eps - eps_theta||^2 / D at each timestep, (B, T), column t for timestep t.
        x0_mse: ||x_0 - x0_theta||^2 / D at each timestep, (B, T).
    """

    total: torch.Tensor
    prior: torch.Tensor
    denoising: torch.Tensor
    reconstruction: torch.Tensor
    rate: torch.Tensor
    distortion: torch.Tensor
    noise_mse: torch.Tensor
    x0_mse: torch.Tensor


@dataclass
class ElboEstimates(BaseOutput):
    """Repeated one-draw estimates of the bound for one image, in bits/dim (`DDPMHubPipeline.elbo_estimates`).

    Each draw is one forward trajectory x_1 ... x_T of q(x_t | x_{t-1}); both forms are evaluated on the same draws
    and both are unbiased estimates of the same bound on -log p_theta(x_0) (their means agree; their spreads do not).

    Args:
        kl_form: L_T + sum_t KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) + L_0 at each trajectory's x_t,
            (num_draws,).
        trajectory_form: -log [p_theta(x_{0:T}) / q(x_{1:T} | x_0)] / D at each trajectory, (num_draws,).
    """

    kl_form: torch.Tensor
    trajectory_form: torch.Tensor


class DDPMHubPipeline(DiffusionPipeline):
    """Class-conditional DDPM / DDIM sampling with classifier-free guidance.

    Args:
        unet: predicts the noise (or x_0, or v) from (x_t, t, class label); `DDPMHubUNet2DModel`.
        scheduler: `DDPMHubScheduler` (ancestral DDPM) or `DDIMHubScheduler` (DDIM with eta).
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet, scheduler):
        super().__init__()
        if not hasattr(scheduler, "classifier_free_guidance"):
            raise ValueError(
                f"`scheduler` must be a DDPMHubScheduler or DDIMHubScheduler, got {type(scheduler).__name__}; convert "
                "a diffusers scheduler with `DDPMHubScheduler.from_config(scheduler.config)`."
            )
        self.register_modules(unet=unet, scheduler=scheduler)
        self.unet_autocast_dtype: torch.dtype | None = None  # opt-in, see `enable_bf16_autocast`

    # ------------------------------------------------------------------------------------------------------------
    # Inputs
    # ------------------------------------------------------------------------------------------------------------

    @property
    def num_classes(self) -> int | None:
        """The number of real classes the U-Net is conditioned on, or None for an unconditional model."""
        return self.unet.config.num_class_embeds

    def _class_labels(self, class_labels, batch_size: int) -> torch.Tensor | None:
        """Normalizes `class_labels` (None, an int, a list, or a (B,) tensor) to a (B,) long tensor or None."""
        if class_labels is None:
            return None
        if self.num_classes is None:
            raise ValueError(
                "`class_labels` were given, but this model is unconditional (unet num_class_embeds=None)."
            )
        labels = torch.as_tensor(class_labels, dtype=torch.long).reshape(-1)
        if labels.numel() == 1:
            labels = labels.expand(batch_size)
        if labels.numel() != batch_size:
            raise ValueError(f"Got {labels.numel()} `class_labels` for batch_size={batch_size}.")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"`class_labels` must be in [0, {self.num_classes - 1}], got {labels.tolist()}.")
        return labels.to(self.device)

    def _initial_noise(self, batch_size, generator, latents):
        """x_T ~ N(0, I), (B, C, H, W), or the given `latents`."""
        config = self.unet.config
        shape = (batch_size, config.in_channels, config.sample_size, config.sample_size)
        if latents is not None:
            if tuple(latents.shape) != shape:
                raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}.")
            return latents.to(self.device, self.unet.dtype)
        noise = torch.randn(shape, generator=generator, device=generator.device if generator else "cpu")
        return (noise * self.scheduler.init_noise_sigma).to(self.device, self.unet.dtype)

    def _check_call(self, batch_size, guidance_scale, num_inference_steps, eta, output_type=None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}.")
        if guidance_scale < 0:
            raise ValueError(f"`guidance_scale` must be >= 0, got {guidance_scale!r}.")
        if eta < 0:
            raise ValueError(f"`eta` must be >= 0, got {eta!r}.")
        if output_type is not None and output_type not in OUTPUT_TYPES:
            raise ValueError(f"Invalid `output_type`={output_type!r}: allowed values are {', '.join(OUTPUT_TYPES)}.")

    # ------------------------------------------------------------------------------------------------------------
    # The model call, with classifier-free guidance
    # ------------------------------------------------------------------------------------------------------------

    def enable_bf16_autocast(self, enabled: bool = True) -> None:
        """Opt-in: run the U-Net under bfloat16 autocast; x_t, the guidance and the scheduler's math stay float32.

        Convolutions and matmuls then run in bfloat16, which is faster on CPUs with AVX512-BF16 or AMX (and on
        GPUs) for large enough batches, and changes samples slightly. `benchmarks/bench_sampling.py` measures both
        the speed and the judge's scores with and without it.
        """
        self.unet_autocast_dtype = torch.bfloat16 if enabled else None

    def enable_compile(self, cpp_wrapper: bool = True, **compile_kwargs) -> None:
        """Opt-in: `torch.compile` the U-Net in place (inductor, weights frozen into the compiled code).

        Outputs match the eager U-Net to float rounding. The first chain at each new batch size compiles (tens of
        seconds on 2 CPU cores; classifier-free guidance runs the U-Net at 2B); later chains reuse it. Frozen weights
        are for inference: call it on a pipeline whose weights no longer change. `cpp_wrapper` (inductor's C++
        wrapper) removes Python overhead per call, which is most of a step at batch 1 on a CPU. `compile_kwargs` go
        to `torch.compile`. `benchmarks/bench_sampling.py` measures it.
        """
        options = {"freezing": True, "cpp_wrapper": cpp_wrapper, **compile_kwargs.pop("options", {})}
        self.unet.compile(**{"dynamic": False, "options": options, **compile_kwargs})

    def _unet(self, sample: torch.Tensor, timestep, class_labels) -> torch.Tensor:
        """The U-Net's raw output at (x_t, t, labels), (B, C_out, H, W) in x_t's dtype."""
        if self.unet_autocast_dtype is None:
            return self.unet(sample, timestep, class_labels=class_labels).sample
        with torch.autocast(sample.device.type, dtype=self.unet_autocast_dtype):
            output = self.unet(sample, timestep, class_labels=class_labels).sample
        return output.to(sample.dtype)

    def predict(self, sample: torch.Tensor, timestep, class_labels, guidance_scale: float) -> torch.Tensor:
        """The U-Net's output at (x_t, t), guided towards `class_labels` when 1 != guidance_scale.

        Args:
            sample: x_t, (B, C, H, W).
            timestep: t.
            class_labels: (B,) long, or None (unconditional: the null class of a conditional model).
            guidance_scale: w of classifier-free guidance (Ho & Salimans 2022): 0 = unconditional, 1 = conditional.

        Returns:
            (B, C_out, H, W).
        """
        if class_labels is None or guidance_scale == 1:
            return self._unet(sample, timestep, class_labels)
        null_labels = torch.full_like(class_labels, self.num_classes)
        if guidance_scale == 0:
            return self._unet(sample, timestep, null_labels)
        both = self._unet(
            torch.cat([sample, sample]), timestep, torch.cat([class_labels, null_labels])
        )  # (2B, C_out, H, W): conditional, then unconditional
        conditional, unconditional = both.chunk(2)
        channels = sample.shape[1]  # learned variances ride along in extra channels: guide only the prediction
        guided = self.scheduler.classifier_free_guidance(
            conditional[:, :channels], unconditional[:, :channels], guidance_scale
        )
        return torch.cat([guided, conditional[:, channels:]], dim=1)

    # ------------------------------------------------------------------------------------------------------------
    # The chains, step by step
    # ------------------------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def denoising_steps(
        self,
        batch_size: int = 1,
        class_labels=None,
        guidance_scale: float = 2.0,
        num_inference_steps: int = 1000,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        latents: torch.Tensor | None = None,
        timesteps: list[int] | None = None,
        use_clipped_model_output: bool = True,
    ) -> Iterator[DenoisingStep]:
        """Runs the reverse chain x_T -> x_0 and yields a `DenoisingStep` after every step.

        Args:
            batch_size: B, how many images.
            class_labels: the digit(s) to generate: an int, B ints, a (B,) tensor, or None (unconditional).
            guidance_scale: w of classifier-free guidance; 1 = plain conditional sampling.
            num_inference_steps: how many reverse steps (ignored when `timesteps` is given).
            generator: seeds x_T and the noise of every step.
            eta: DDIM's eta (0 = deterministic); used only by schedulers whose `step` takes it.
            latents: x_T, (B, C, H, W), instead of drawing it.
            timesteps: explicit descending timesteps to run (e.g. from t down to 0), instead of
                `num_inference_steps`.
            use_clipped_model_output: for DDIM, take eps from the clipped x_0 (eps = (x_t - sqrt(alpha_bar_t) x_0) /
                sqrt(1 - alpha_bar_t)) so that both terms of Eq. 12 agree, as improved-diffusion's DDIM does.
                diffusers' `DDIMPipeline` defaults to False, which with guidance drives samples to saturation
                (`benchmarks/bench_ddim_clipping.py` measures it). Used only by schedulers whose `step` takes it.
        """
        self._check_call(batch_size, guidance_scale, num_inference_steps, eta)
        labels = self._class_labels(class_labels, batch_size)
        if timesteps is not None:
            self.scheduler.set_timesteps(timesteps=timesteps, device=self.device)
        else:
            self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        sample = self._initial_noise(batch_size, generator, latents)  # (B, C, H, W)
        step_kwargs = {"generator": generator}
        step_parameters = inspect.signature(self.scheduler.step).parameters
        if "eta" in step_parameters:
            step_kwargs["eta"] = eta
        if "use_clipped_model_output" in step_parameters:
            step_kwargs["use_clipped_model_output"] = use_clipped_model_output

        steps = self.scheduler.timesteps.tolist()  # python ints: no host sync per step
        # The U-Net gets t as a 0-d tensor (same values): a compiled U-Net then runs every step without recompiling.
        unet_timesteps = torch.tensor(steps, device=self.device)
        for index, t in enumerate(self.progress_bar(steps)):
            model_output = self.predict(sample, unet_timesteps[index], labels, guidance_scale)
            out = self.scheduler.step(model_output, t, sample, **step_kwargs)
            yield DenoisingStep(
                step_index=index,
                num_steps=len(steps),
                timestep=t,
                prev_timestep=steps[index + 1] if index + 1 < len(steps) else -1,
                sample=sample,
                noise_pred=out.pred_epsilon,
                pred_original_sample=out.pred_original_sample,
                mean=out.mean,
                std=out.std,
                prev_sample=out.prev_sample,
            )
            sample = out.prev_sample

    @torch.inference_mode()
    def noising_steps(
        self,
        images: torch.Tensor,
        timesteps: list[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[NoisingStep]:
        """Runs the forward chain x_0 -> x_T one step of q(x_t | x_{t-1}) at a time.

        Yields a `NoisingStep` at each of `timesteps` (default: every training step), each beside a closed-form
        draw from q(x_t | x_0), so the two can be compared.

        Args:
            images: x_0 in [-1, 1], (B, C, H, W).
            timesteps: ascending timesteps to report (the chain still takes every single step in between).
            generator: seeds the noise of both chains.
        """
        num_train_timesteps = self.scheduler.config.num_train_timesteps
        report = list(range(num_train_timesteps)) if timesteps is None else sorted({int(t) for t in timesteps})
        if not report or report[0] < 0 or report[-1] >= num_train_timesteps:
            raise ValueError(f"`timesteps` must lie in [0, {num_train_timesteps - 1}], got {timesteps}.")
        images = images.to(self.device, torch.float32)
        sample = images
        wanted = set(report)
        for t in range(report[-1] + 1):
            noise = torch.randn(images.shape, generator=generator, device=images.device)
            sample = self.scheduler.q_step(sample, t, noise)
            if t in wanted:
                closed_noise = torch.randn(images.shape, generator=generator, device=images.device)
                yield NoisingStep(
                    timestep=t,
                    sample=sample,
                    closed_form_sample=self.scheduler.add_noise(images, closed_noise, torch.tensor([t])),
                    coefficients=self.scheduler.coefficients(t),
                )

    def noise_then_denoise_steps(
        self,
        images: torch.Tensor,
        start_timestep: int,
        class_labels=None,
        guidance_scale: float = 2.0,
        num_inference_steps: int = 1000,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        use_clipped_model_output: bool = True,
    ) -> Iterator[DenoisingStep]:
        """Noises real images to `start_timestep` with q(x_t | x_0), then runs the reverse chain from there.

        The chain visits the inference timesteps (from `num_inference_steps`) that are <= start_timestep, and the
        images are noised to the first of them. The first step's `sample` is the noised image.

        Args:
            images: x_0 in [-1, 1], (B, C, H, W).
            start_timestep: how far to noise, in [0, num_train_timesteps).
            class_labels, guidance_scale, num_inference_steps, generator, eta, use_clipped_model_output: as in
                `denoising_steps`.
        """
        num_train_timesteps = self.scheduler.config.num_train_timesteps
        if not 0 <= start_timestep < num_train_timesteps:
            raise ValueError(f"`start_timestep` must be in [0, {num_train_timesteps - 1}], got {start_timestep}.")
        self.scheduler.set_timesteps(num_inference_steps)
        timesteps = [t for t in self.scheduler.timesteps.tolist() if t <= start_timestep] or [start_timestep]
        images = images.to(self.device, torch.float32)
        noise = torch.randn(images.shape, generator=generator, device=images.device)
        noised = self.scheduler.add_noise(images, noise, torch.tensor([timesteps[0]]))
        yield from self.denoising_steps(
            batch_size=images.shape[0],
            class_labels=class_labels,
            guidance_scale=guidance_scale,
            generator=generator,
            eta=eta,
            latents=noised,
            timesteps=timesteps,
            use_clipped_model_output=use_clipped_model_output,
        )

    # ------------------------------------------------------------------------------------------------------------
    # The variational bound, term by term (the math is the scheduler's `vb_terms_bpd`, `prior_bpd`, ...)
    # ------------------------------------------------------------------------------------------------------------

    def _bound_inputs(self, images: torch.Tensor, class_labels) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x_0 on the 8-bit grid, float64 (B, C, H, W), and the labels: (B,) long, the null class for None on a
        conditional model, or None for an unconditional one."""
        config = self.unet.config
        shape = (config.in_channels, config.sample_size, config.sample_size)
        if not torch.is_tensor(images) or images.ndim != 4 or tuple(images.shape[1:]) != shape:
            got = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise ValueError(f"`images` must be a (B, {', '.join(map(str, shape))}) tensor in [-1, 1], got {got}.")
        if not torch.isfinite(images).all() or images.min() < -1 or images.max() > 1:
            raise ValueError("`images` must hold finite values in [-1, 1].")
        x_0 = self.scheduler.quantize_to_pixel_bins(images.to(self.device, torch.float64))
        labels = self._class_labels(class_labels, images.shape[0])
        if labels is None and self.num_classes is not None:
            labels = torch.full((images.shape[0],), self.num_classes, dtype=torch.long, device=self.device)
        return x_0, labels

    def _bound_loss_weight_variance(self) -> str:
        """Which fixed sigma_t^2 `BoundStep.loss_weight` uses: beta_t for `fixed_large*`, beta_tilde_t otherwise."""
        return "beta" if str(self.scheduler.config.variance_type).startswith("fixed_large") else "beta_tilde"

    @torch.inference_mode()
    def bound_steps(
        self,
        images: torch.Tensor,
        class_labels=None,
        generator: torch.Generator | None = None,
        timesteps: list[int] | None = None,
        batch_size: int = 64,
    ) -> Iterator[BoundStep]:
        """Walks the variational bound of `images` from t = T - 1 down to 0 and yields a `BoundStep` per t.

        At each t, x_t ~ q(x_t | x_0) is drawn with fresh noise (improved-diffusion's `calc_bpd_loop`), the U-Net
        predicts eps_theta(x_t, t), and the scheduler gives the term L_t in bits/dim. Several timesteps share one
        U-Net call (up to `batch_size` images per call); the draws, and so the results, do not depend on it.

        Args:
            images: x_0 in [-1, 1], (B, C, H, W); rounded to the 8-bit grid the decoder is defined on.
            class_labels: the digit(s) the model is conditioned on: an int, B ints, a (B,) tensor, or None (the
                unconditional model: the null class of a conditional model).
            generator: seeds the noise of every x_t.
            timesteps: the timesteps to visit, in the order given (default: every training step, descending).
            batch_size: at most this many images per U-Net call (timesteps are batched when B is smaller).
        """
        x_0, labels = self._bound_inputs(images, class_labels)
        num_train_timesteps = self.scheduler.config.num_train_timesteps
        timesteps = list(range(num_train_timesteps - 1, -1, -1)) if timesteps is None else [int(t) for t in timesteps]
        if not timesteps or min(timesteps) < 0 or max(timesteps) >= num_train_timesteps:
            raise ValueError(f"`timesteps` must be a non-empty list of ints in [0, {num_train_timesteps - 1}].")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}.")
        num_images = x_0.shape[0]
        prior = self.scheduler.prior_bpd(x_0)  # (B,)
        weight_variance = self._bound_loss_weight_variance()
        per_call = max(1, batch_size // num_images)  # timesteps per U-Net call
        for start in range(0, len(timesteps), per_call):
            chunk = timesteps[start : start + per_call]
            t = torch.tensor(chunk, device=self.device).repeat_interleave(num_images)  # (K B,)
            noise = torch.cat(
                [torch.randn(x_0.shape, generator=generator, dtype=torch.float64).to(self.device) for _ in chunk]
            )  # (K B, C, H, W), one draw per timestep in order
            x_0_rows = x_0.repeat(len(chunk), 1, 1, 1)
            x_t = self.scheduler.add_noise(x_0_rows, noise, t)
            labels_rows = None if labels is None else labels.repeat(len(chunk))
            model_output = self._unet(x_t.to(self.unet.dtype), t, labels_rows).double()
            vb = self.scheduler.vb_terms_bpd(model_output, x_0_rows, x_t, t)  # (K B,)
            p = self.scheduler.p_mean_variance(model_output, x_t, t)
            noise_mse = (noise - p["pred_epsilon"]).pow(2).flatten(1).mean(1)
            x0_mse = (x_0_rows - p["pred_original_sample"]).pow(2).flatten(1).mean(1)
            for k, timestep in enumerate(chunk):
                rows = slice(k * num_images, (k + 1) * num_images)
                yield BoundStep(
                    step_index=start + k,
                    num_steps=len(timesteps),
                    timestep=timestep,
                    sample=x_t[rows].float(),
                    noise=noise[rows].float(),
                    noise_pred=p["pred_epsilon"][rows].float(),
                    pred_original_sample=p["pred_original_sample"][rows].float(),
                    noise_mse=noise_mse[rows],
                    x0_mse=x0_mse[rows],
                    vb_bpd=vb[rows],
                    loss_weight=float(self.scheduler.loss_weight(timestep, variance=weight_variance)),
                    prior_bpd=prior,
                )

    def bits_per_dim(
        self, images: torch.Tensor, class_labels=None, generator: torch.Generator | None = None, batch_size: int = 64
    ) -> BitsPerDimOutput:
        """The variational bound on -log p_theta(x_0) in bits/dim per image, and its parts, from `bound_steps`.

        total = L_T (prior) + L_1 + ... + L_{T-1} (rate) + L_0 (distortion), one draw of x_t per t (improved-
        diffusion's `calc_bpd_loop`); values are float64 (B,) tensors (see `BitsPerDimOutput`).

        Args:
            images: x_0 in [-1, 1], (B, C, H, W); rounded to the 8-bit grid.
            class_labels: an int, B ints, a (B,) tensor, or None (unconditional: the null class).
            generator: seeds the draws of x_t.
            batch_size: at most this many images per U-Net call.
        """
        num_train_timesteps = self.scheduler.config.num_train_timesteps
        terms, noise_mse, x0_mse, prior = {}, {}, {}, None
        for step in self.bound_steps(images, class_labels, generator, batch_size=batch_size):
            terms[step.timestep], prior = step.vb_bpd, step.prior_bpd
            noise_mse[step.timestep], x0_mse[step.timestep] = step.noise_mse, step.x0_mse
        by_t = torch.stack([terms[t] for t in range(num_train_timesteps)], dim=1)  # (B, T), column t = L_t
        denoising = by_t[:, 1:]
        reconstruction = by_t[:, 0]
        rate = denoising.sum(dim=1)
        return BitsPerDimOutput(
            total=prior + rate + reconstruction,
            prior=prior,
            denoising=denoising,
            reconstruction=reconstruction,
            rate=rate,
            distortion=reconstruction,
            noise_mse=torch.stack([noise_mse[t] for t in range(num_train_timesteps)], dim=1),
            x0_mse=torch.stack([x0_mse[t] for t in range(num_train_timesteps)], dim=1),
        )

    @torch.inference_mode()
    def elbo_estimates(
        self, image: torch.Tensor, num_draws: int = 16, class_labels=None, generator: torch.Generator | None = None
    ) -> ElboEstimates:
        """`num_draws` one-trajectory estimates of the bound for one image, in both forms the notes derive (004).

        Each draw runs the forward chain x_0 -> x_1 -> ... -> x_T one step of q(x_t | x_{t-1}) at a time; at every t
        one U-Net call serves all draws. On the same draws:

        * the KL form, L_T + sum_{t >= 1} KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) + L_0, where only x_t
          is random in each term (the scheduler's `vb_terms_bpd`);
        * the single-trajectory form, -log p(x_T) - sum_t log p_theta(x_{t-1} | x_t) + sum_t log q(x_t | x_{t-1})
          (the decoder at t = 1 -> 0), where x_t and x_{t-1} both are (`trajectory_terms_bpd`).

        Both have the same expectation, the bound on -log p_theta(x_0), in bits/dim; the first has the smaller spread.

        Args:
            image: x_0 in [-1, 1], (C, H, W) or (1, C, H, W); rounded to the 8-bit grid.
            num_draws: how many trajectories (>= 2).
            class_labels: one label, or None (unconditional: the null class).
            generator: seeds the trajectories.
        """
        if not isinstance(num_draws, int) or num_draws < 2:
            raise ValueError(f"`num_draws` must be an integer >= 2, got {num_draws!r}.")
        if torch.is_tensor(image) and image.ndim == 3:
            image = image.unsqueeze(0)
        if torch.is_tensor(image) and image.shape[0] != 1:
            raise ValueError(f"`image` must be one image, (C, H, W) or (1, C, H, W), got {tuple(image.shape)}.")
        x_0, labels = self._bound_inputs(image, class_labels)
        x_0 = x_0.expand(num_draws, -1, -1, -1)  # (N, C, H, W), one row per trajectory
        labels = None if labels is None else labels.expand(num_draws)
        scheduler = self.scheduler
        kl_form = scheduler.prior_bpd(x_0)  # (N,)
        trajectory_form = torch.zeros_like(kl_form)
        x_prev = x_0
        for t in range(scheduler.config.num_train_timesteps):
            noise = torch.randn(x_0.shape, generator=generator, dtype=torch.float64).to(self.device)
            x_t = scheduler.q_step(x_prev, t, noise)
            timestep = torch.full((num_draws,), t, device=self.device)
            model_output = self._unet(x_t.to(self.unet.dtype), timestep, labels).double()
            kl_form = kl_form + scheduler.vb_terms_bpd(model_output, x_0, x_t, timestep)
            trajectory_form = trajectory_form + scheduler.trajectory_terms_bpd(
                model_output, x_0, x_prev, x_t, timestep
            )
            x_prev = x_t
        trajectory_form = trajectory_form + scheduler.trajectory_prior_bpd(x_prev)
        return ElboEstimates(kl_form=kl_form, trajectory_form=trajectory_form)

    # ------------------------------------------------------------------------------------------------------------
    # Sampling in one call
    # ------------------------------------------------------------------------------------------------------------

    def __call__(
        self,
        batch_size: int = 1,
        class_labels=None,
        guidance_scale: float = 2.0,
        num_inference_steps: int = 1000,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        use_clipped_model_output: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Generates images: runs `denoising_steps` to the end.

        Args:
            batch_size: B, how many images.
            class_labels: the digit(s): an int, B ints, a (B,) tensor, or None (unconditional).
            guidance_scale: w of classifier-free guidance; 1 = plain conditional sampling.
            num_inference_steps: reverse steps (1000 for full DDPM; e.g. 50 with `DDIMHubScheduler`).
            generator: a `torch.Generator` for reproducible samples.
            eta: DDIM's eta, for `DDIMHubScheduler`.
            latents: x_T, (B, C, H, W), instead of drawing it.
            output_type: "pil" (list of PIL images), "np" ((B, H, W, C) floats in [0, 1]) or "pt" ((B, C, H, W)
                floats in [0, 1]).
            return_dict: return an `ImagePipelineOutput`; if False, a tuple `(images,)`.
            use_clipped_model_output: for DDIM, eps from the clipped x_0 (see `denoising_steps`).
        """
        self._check_call(batch_size, guidance_scale, num_inference_steps, eta, output_type)
        sample = latents
        for step in self.denoising_steps(
            batch_size,
            class_labels,
            guidance_scale,
            num_inference_steps,
            generator,
            eta,
            latents,
            use_clipped_model_output=use_clipped_model_output,
        ):
            sample = step.prev_sample
        images = (sample.float() / 2 + 0.5).clamp(0, 1)  # [-1, 1] -> [0, 1]
        if output_type == "np":
            images = _numpy_images(images)
        elif output_type == "pil":
            images = self.numpy_to_pil(_numpy_images(images))
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)

    # ------------------------------------------------------------------------------------------------------------
    # Saving and loading: one folder that loads with ddpm_hub installed and with stock diffusers alone
    # ------------------------------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """Saves weights (safetensors) and configs, plus the component code, so the folder loads three ways.

        `model_index.json` names each component by the code file that travels with it
        (`["unet_ddpm_hub", "DDPMHubUNet2DModel"]` with `unet/unet_ddpm_hub.py`): diffusers' custom-component
        layout, which stock diffusers loads from a folder or a Hub repo with `trust_remote_code=True`. A pip package
        name there would fail to load from a repo id.
        """
        if kwargs.pop("push_to_hub", False):
            raise ValueError("Save first, then publish the folder with `ddpm_hub.hub.push_to_hub`.")
        kwargs.setdefault("safe_serialization", True)
        super().save_pretrained(save_directory, **kwargs)
        index_path = os.path.join(save_directory, "model_index.json")
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
        for name, module_file in COMPONENT_FILES.items():
            component_class = type(getattr(self, name))
            if component_class.__module__.split(".")[0] == "diffusers":
                continue  # a stock diffusers component loads by name
            shutil.copyfile(
                inspect.getsourcefile(component_class), os.path.join(save_directory, name, f"{module_file}.py")
            )
            index[name] = [module_file, component_class.__name__]
        shutil.copyfile(inspect.getsourcefile(type(self)), os.path.join(save_directory, f"{PIPELINE_FILE}.py"))
        index["_class_name"] = [PIPELINE_FILE, type(self).__name__]
        index.pop("_name_or_path", None)  # where this copy was loaded from is no part of the saved pipeline
        with open(index_path, "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2, sort_keys=True)
            f.write("\n")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Loads a saved folder or Hub repo with the installed `ddpm_hub` classes (no remote code is run).

        Accepts diffusers' loading arguments (`revision`, `cache_dir`, `token`, `torch_dtype`, ...). Components
        passed as `unet=` / `scheduler=` are used as given.
        """
        library = importlib.import_module("ddpm_hub")  # installed package; the folder's code copies stay unused
        hub_kwargs = {
            key: kwargs[key]
            for key in ("revision", "cache_dir", "token", "local_files_only", "force_download", "proxies")
            if key in kwargs
        }
        torch_dtype = kwargs.pop("torch_dtype", None)
        unet = kwargs.pop("unet", None) or library.DDPMHubUNet2DModel.from_pretrained(
            pretrained_model_name_or_path, subfolder="unet", torch_dtype=torch_dtype, **hub_kwargs
        )
        scheduler = kwargs.pop("scheduler", None)
        if scheduler is None:
            config = library.DDPMHubScheduler.load_config(
                pretrained_model_name_or_path, subfolder="scheduler", **hub_kwargs
            )
            scheduler_class = getattr(library, config.get("_class_name", ""), library.DDPMHubScheduler)
            scheduler = scheduler_class.from_config(config)
        pipeline = cls(unet=unet, scheduler=scheduler)
        pipeline.register_to_config(_name_or_path=str(pretrained_model_name_or_path))
        return pipeline


def _numpy_images(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [0, 1] -> (B, H, W, C) numpy."""
    return images.cpu().permute(0, 2, 3, 1).numpy()
