"""The DDPM pipeline: class-conditional sampling with classifier-free guidance, and the chain step by step.

The step-by-step view is a library feature: `denoising_steps` is a generator that yields one `DenoisingStep` per
reverse step, `noising_steps` does the same for the forward chain of a given image, and
`noise_then_denoise_steps` noises an image to t and brings it back. `__call__` simply runs `denoising_steps` to the
end. Each reverse chain is a `DenoisingChain` (from `prepare_chain`): it owns its scheduler copy, generator, guidance
and step counter, so several chains can share one U-Net call per tick. Classifier-free guidance is the pipeline's
(`classifier_free_guidance` below); every other formula is the scheduler's, so any diffusers scheduler
(`DDIMScheduler`, `DPMSolverMultistepScheduler`, `EulerDiscreteScheduler`, ...) can drive the chain.

This file imports nothing from `ddpm_hub`: it is copied verbatim into saved pipelines so that stock diffusers can
load them with `DiffusionPipeline.from_pretrained(repo_id, trust_remote_code=True)`.
"""

import copy
import dataclasses
import importlib
import inspect
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

# How a saved folder names the component code it carries (diffusers' custom-component layout:
# model_index.json lists [module file, class] and the file sits in the component's folder).
PIPELINE_FILE = "pipeline_ddpm_hub"
COMPONENT_FILES = {"unet": "unet_ddpm_hub", "scheduler": "scheduling_ddpm_hub"}
COMPONENT_FILES_BY_CLASS = {"DDIMHubScheduler": "scheduling_ddim_hub"}  # one file name per class: no clash on load
OUTPUT_TYPES = ("pil", "np", "pt")
# diffusers' `from_pretrained` arguments that this pipeline passes on (to the component loaders).
HUB_ARGUMENTS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision")
MODEL_ARGUMENTS = (
    "torch_dtype",
    "variant",
    "use_safetensors",
    "low_cpu_mem_usage",
    "device_map",
    "max_memory",
    "offload_folder",
    "offload_state_dict",
    "disable_mmap",
)
COMPONENTS = ("unet", "scheduler")
# w of classifier-free guidance for a model whose guidance curve has not been measured yet. A measured model records
# its own w in model_index.json (`benchmarks/bench_nfe.py --curve guidance --record_in_model`); the bundled models'
# curves put the best w between 1 and 2 (README, "Guidance"), so an unmeasured model starts in the middle of that.
DEFAULT_GUIDANCE_SCALE = 1.5


def classifier_free_guidance(
    conditional: torch.Tensor, unconditional: torch.Tensor, guidance_scale: float
) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, Eq. 6): eps_uncond + w (eps_cond - eps_uncond).

    w = 1 is the conditional model, w = 0 the unconditional one, w > 1 pushes samples towards the class.
    Inputs and output are (B, C, H, W) predictions of the same kind (eps, x_0 or v).
    """
    return unconditional + guidance_scale * (conditional - unconditional)


def guide(model_output: torch.Tensor, channels: int, guidance_scale: float) -> torch.Tensor:
    """Combines a (2B, C_out, H, W) U-Net output (conditional half first) into the guided (B, C_out, H, W).

    Only the first `channels` (the prediction) are guided; a learned variance in the extra channels is the
    conditional model's (as in GLIDE and improved-diffusion).
    """
    conditional, unconditional = model_output.chunk(2)
    guided = classifier_free_guidance(conditional[:, :channels], unconditional[:, :channels], guidance_scale)
    return torch.cat([guided, conditional[:, channels:]], dim=1)


@dataclass
class DenoisingStep:
    """One reverse step x_t -> x_{t-1}. Image tensors are (B, C, H, W) on the pipeline's device.

    The fields come from what the scheduler's `step` returns. `DDPMHubScheduler` and `DDIMHubScheduler` return them
    all; a stock diffusers scheduler returns fewer, and the ones it does not return are None: `mean` and `std`
    always, `pred_original_sample` for e.g. `DPMSolverMultistepScheduler` and `UniPCMultistepScheduler`.

    Args:
        step_index: 0 for the first step (t = the largest timestep).
        num_steps: how many steps the chain has.
        timestep: t.
        prev_timestep: the timestep the step goes to (-1 after the last step).
        sample: x_t.
        noise_pred: the eps the step used: eps_theta(x_t, t) after classifier-free guidance (for DDIM with
            `use_clipped_model_output`, recomputed from the clipped x_0). With a stock scheduler: the guided model
            output when the model predicts eps, else None.
        pred_original_sample: the x_0 predicted from x_t and eps_theta (clipped as the scheduler is configured), or
            None.
        mean: the mean of p_theta(x_{t-1} | x_t), or None.
        std: sigma_t, (1, 1, 1, 1) or (B, C, H, W) for learned variances, or None.
        prev_sample: x_{t-1}, the next step's `sample` (as replaced by `callback_on_step_end`, if it did).
        model_output: the guided U-Net output the scheduler stepped with, (B, C_out, H, W).
    """

    step_index: int
    num_steps: int
    timestep: int
    prev_timestep: int
    sample: torch.Tensor
    noise_pred: torch.Tensor | None
    pred_original_sample: torch.Tensor | None
    mean: torch.Tensor | None
    std: torch.Tensor | None
    prev_sample: torch.Tensor
    model_output: torch.Tensor | None = None


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


class ChainModelInput(NamedTuple):
    """What the U-Net gets for one tick of a `DenoisingChain`; unpacks as `unet_forward(*chain.model_input())`.

    Args:
        sample: x_t as the scheduler scales it (`scale_model_input`), (N, C, H, W); N = B, or 2B with guidance.
        timestep: the t told to the U-Net, (N,) long (float for a scheduler with fractional timesteps).
        class_labels: (N,) long (the conditional half first, then the null class; all null for unconditional
            sampling), or None for an unconditional model.
    """

    sample: torch.Tensor
    timestep: torch.Tensor
    class_labels: torch.Tensor | None


class DenoisingChain:
    """One reverse chain x_T -> x_0 that advances one step per `step(model_output)`; it never calls the U-Net.

    It owns everything that changes along the chain: its scheduler (a private copy, so multistep solvers keep their
    own history), generator, guidance scale and step counter. Driving it:

        while not chain.done:
            step = chain.step(pipe.unet_forward(*chain.model_input()))

    Several chains can share one U-Net call: concatenate their `model_input()`s along the batch, run the U-Net once,
    and give each chain its own rows of the output.

    Attributes:
        scheduler: this chain's scheduler, with its timesteps set.
        timesteps: the chain's timesteps, a list of ints (floats only for schedulers with fractional timesteps).
        num_steps: len(timesteps).
        step_index: how many steps have been taken (the next step's index).
        sample: the current x_t, (B, C, H, W); may be replaced between steps.
        class_labels: (B,) long, or None (unconditional).
        guidance_scale: w of classifier-free guidance; may be changed between steps.
    """

    def __init__(
        self,
        scheduler,
        sample: torch.Tensor,
        class_labels: torch.Tensor | None,
        null_class: int | None,
        guidance_scale: float,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        use_clipped_model_output: bool = True,
        noise_scale: float = 1.0,
        model_timestep: Callable[[int], int] | None = None,
    ):
        self.scheduler = scheduler
        self.sample = sample  # (B, C, H, W)
        self.class_labels = class_labels
        self.null_class = null_class
        self.guidance_scale = guidance_scale
        self.generator = generator
        self.noise_scale = float(noise_scale)
        self.model_timestep = model_timestep
        self.timesteps = [_as_number(t) for t in scheduler.timesteps.tolist()]
        self.num_steps = len(self.timesteps)
        self.step_index = 0

        parameters = inspect.signature(scheduler.step).parameters
        self._step_kwargs = {}  # only what this scheduler's `step` takes
        if "eta" in parameters:
            self._step_kwargs["eta"] = eta
        if "use_clipped_model_output" in parameters:
            self._step_kwargs["use_clipped_model_output"] = use_clipped_model_output
        self._takes_generator = "generator" in parameters
        # A stock scheduler without a clip of its own (DPM-Solver, UniPC, Euler, ...) ignores the `clip_sample` of the
        # config it was built from, and steps with an x_0 far outside the data range; with `use_clipped_model_output`
        # the chain gives it the eps of the clipped x_0 instead (the clip the config asks for).
        config, options = scheduler.config, inspect.signature(type(scheduler).__init__).parameters
        clips_itself = "clip_sample" in options or ("thresholding" in options and config.get("thresholding", False))
        self._clip_range = float(config.get("clip_sample_range", 1.0))
        self._clips_for_scheduler = bool(
            use_clipped_model_output
            and config.get("clip_sample", True)
            and not clips_itself
            and "use_clipped_model_output" not in parameters
            and config.get("prediction_type", "epsilon") == "epsilon"
            and hasattr(scheduler, "alphas_cumprod")
        )
        if self.noise_scale != 1 and "variance_noise" not in parameters:
            raise ValueError(
                f"`noise_scale`={noise_scale!r} needs a scheduler whose `step` takes `variance_noise`; "
                f"{type(scheduler).__name__}.step does not: allowed values are 1.0 with this scheduler."
            )

    @property
    def done(self) -> bool:
        return self.step_index >= self.num_steps

    @property
    def batch_size(self) -> int:
        return self.sample.shape[0]

    def _labels_and_guided(self) -> tuple[torch.Tensor | None, bool]:
        """The U-Net's class labels for this tick, and whether the output must be combined by guidance."""
        labels = self.class_labels
        if labels is None:  # unconditional: the null class of a conditional model (what the U-Net does for None)
            if self.null_class is None:
                return None, False
            return torch.full((self.batch_size,), self.null_class, dtype=torch.long, device=self.sample.device), False
        if self.guidance_scale == 1:
            return labels, False
        null_labels = torch.full_like(labels, self.null_class)
        if self.guidance_scale == 0:
            return null_labels, False
        return torch.cat([labels, null_labels]), True  # (2B,): conditional, then unconditional

    def model_input(self) -> ChainModelInput:
        """The U-Net's input for the next step: (N, C, H, W) sample, (N,) timestep, (N,) labels or None."""
        if self.done:
            raise ValueError(f"The chain is done: it has taken all its {self.num_steps} steps.")
        t = self.timesteps[self.step_index]
        sample = self.scheduler.scale_model_input(self.sample, self.scheduler.timesteps[self.step_index])
        labels, guided = self._labels_and_guided()
        if guided:
            sample = torch.cat([sample, sample])  # (2B, C, H, W)
        told = t if self.model_timestep is None else _as_number(self.model_timestep(t))
        dtype = torch.long if isinstance(told, int) else torch.float32
        timestep = torch.full((sample.shape[0],), told, dtype=dtype, device=sample.device)  # (N,)
        return ChainModelInput(sample, timestep, labels)

    def step(self, model_output: torch.Tensor) -> DenoisingStep:
        """Takes one step with the U-Net's output for `model_input()`: guidance, then the scheduler's `step`.

        Args:
            model_output: (N, C_out, H, W), the rows of a U-Net call that belong to this chain.
        """
        if self.done:
            raise ValueError(f"The chain is done: it has taken all its {self.num_steps} steps.")
        _, guided = self._labels_and_guided()
        expected = 2 * self.batch_size if guided else self.batch_size
        if model_output.shape[0] != expected:
            raise ValueError(
                f"`model_output` must have {expected} rows for this chain (batch {self.batch_size}"
                f"{', doubled by guidance' if guided else ''}), got {model_output.shape[0]}."
            )
        channels = self.sample.shape[1]
        if guided:
            model_output = guide(model_output, channels, self.guidance_scale)  # (B, C_out, H, W)
        model_output = model_output.to(self.sample.dtype)
        index = self.step_index
        scheduler_output = model_output
        if self._clips_for_scheduler:
            noise = _noise_from_clipped_x0(
                self.scheduler, model_output[:, :channels], self.sample, index, self._clip_range
            )
            scheduler_output = torch.cat([noise, model_output[:, channels:]], dim=1)

        kwargs = dict(self._step_kwargs)
        if self.noise_scale != 1:  # sigma_t z with z scaled: the step adds noise_scale * sigma_t * z
            noise = torch.randn(
                self.sample.shape,
                generator=self.generator,
                device=self.generator.device if self.generator is not None else self.sample.device,
            )
            kwargs["variance_noise"] = (self.noise_scale * noise).to(self.sample.device, self.sample.dtype)
        elif self._takes_generator:
            kwargs["generator"] = self.generator
        out = self.scheduler.step(scheduler_output, self.scheduler.timesteps[index], self.sample, **kwargs)

        noise_pred = getattr(out, "pred_epsilon", None)
        if noise_pred is None and self.scheduler.config.get("prediction_type", "epsilon") == "epsilon":
            noise_pred = scheduler_output[:, :channels]
        step = DenoisingStep(
            step_index=index,
            num_steps=self.num_steps,
            timestep=self.timesteps[index],
            prev_timestep=self.timesteps[index + 1] if index + 1 < self.num_steps else -1,
            sample=self.sample,
            noise_pred=noise_pred,
            pred_original_sample=getattr(out, "pred_original_sample", None),
            mean=getattr(out, "mean", None),
            std=getattr(out, "std", None),
            prev_sample=out.prev_sample,
            model_output=model_output,
        )
        self.sample = out.prev_sample
        self.step_index += 1
        return step


def _noise_from_clipped_x0(
    scheduler, noise: torch.Tensor, sample: torch.Tensor, index: int, clip_range: float = 1.0
) -> torch.Tensor:
    """For a stock scheduler that does not clip: the eps of x_0 clipped to [-clip_range, clip_range], (B, C, H, W).

    With x_t the scheduler's model input (its `scale_model_input`, the DDPM x_t for every diffusers scheduler):
    x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t), clipped, then eps = (x_t - sqrt(alpha_bar_t) x_0) /
    sqrt(1 - alpha_bar_t) (Eq. 15 of Ho et al. 2020 and its inverse, as DDIM's `use_clipped_model_output` does).
    alpha_bar_t at a fractional t comes from sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) interpolated linearly,
    as `EulerDiscreteScheduler` does.
    """
    timestep = scheduler.timesteps[index]
    x_t = scheduler.scale_model_input(sample, timestep).double()
    alphas_cumprod = scheduler.alphas_cumprod.double().cpu()
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt().numpy()
    sigma = float(np.interp(float(timestep), np.arange(len(sigmas)), sigmas))
    alpha_bar = 1 / (1 + sigma**2)
    x_0 = ((x_t - (1 - alpha_bar) ** 0.5 * noise.double()) / alpha_bar**0.5).clamp(-clip_range, clip_range)
    return ((x_t - alpha_bar**0.5 * x_0) / (1 - alpha_bar) ** 0.5).to(noise.dtype)


def _as_number(value) -> int | float:
    """An int when the value is integral (timesteps of most schedulers), else a float."""
    value = float(value)
    return int(value) if value.is_integer() else value


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
        scheduler: `DDPMHubScheduler` (ancestral DDPM), `DDIMHubScheduler` (DDIM with eta), or any diffusers
            scheduler (`pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)`).
        guidance_scale: the model's recommended w of classifier-free guidance, kept in `model_index.json` (as
            diffusers pipelines keep their own settings) and used whenever a call passes no `guidance_scale`. It is
            the w the model's measured guidance curve chose; `DEFAULT_GUIDANCE_SCALE` until it is measured.
    """

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents", "model_output", "pred_original_sample"]

    def __init__(self, unet, scheduler, guidance_scale: float = DEFAULT_GUIDANCE_SCALE):
        super().__init__()
        if not (isinstance(guidance_scale, int | float) and guidance_scale >= 0):
            raise ValueError(f"Invalid `guidance_scale`={guidance_scale!r}: allowed values are numbers >= 0.")
        for method in ("set_timesteps", "step"):
            if not callable(getattr(scheduler, method, None)):
                raise ValueError(
                    f"`scheduler` must be a diffusers-style scheduler with `{method}`, got {type(scheduler).__name__}."
                )
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(guidance_scale=float(guidance_scale))
        self.unet_autocast_dtype: torch.dtype | None = None  # opt-in, see `enable_bf16_autocast`
        self._guidance_scale = None
        self._num_timesteps = None
        self._interrupt = False

    # ------------------------------------------------------------------------------------------------------------
    # Inputs
    # ------------------------------------------------------------------------------------------------------------

    @property
    def num_classes(self) -> int | None:
        """The number of real classes the U-Net is conditioned on, or None for an unconditional model."""
        return self.unet.config.num_class_embeds

    @property
    def guidance_scale(self) -> float | None:
        """w of the running chain (diffusers' property); a `callback_on_step_end` may set `_guidance_scale`."""
        return self._guidance_scale

    @property
    def num_timesteps(self) -> int | None:
        """The number of steps of the running (or last) chain."""
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        """Set `pipe._interrupt = True` (e.g. from a callback) to stop the chain after the current step."""
        return self._interrupt

    def _class_labels(self, class_labels, batch_size: int) -> torch.Tensor | None:
        """Normalizes `class_labels` (None, an int, a list of ints, or a (B,) tensor) to a (B,) long tensor or None."""
        if class_labels is None:
            return None
        if self.num_classes is None:
            raise ValueError(
                f"Invalid `class_labels`={_short(class_labels)}: this model is unconditional (unet "
                "num_class_embeds=None), so the only allowed value is None."
            )
        allowed = f"integers in [0, {self.num_classes - 1}] (an int, a list of ints or an integer tensor), or None"
        if isinstance(class_labels, np.ndarray):
            if class_labels.dtype.kind not in "iuf":
                raise ValueError(f"Invalid `class_labels`={_short(class_labels)}: allowed values are {allowed}.")
            values = torch.from_numpy(class_labels.astype(np.float64))
        elif isinstance(class_labels, torch.Tensor):
            values = class_labels.detach()
            if values.dtype == torch.bool or values.is_complex():
                raise ValueError(f"Invalid `class_labels`={_short(class_labels)}: allowed values are {allowed}.")
        else:
            items = class_labels if isinstance(class_labels, list | tuple | range) else [class_labels]
            if not all(isinstance(item, int | np.integer | float | np.floating) for item in items) or any(
                isinstance(item, bool | np.bool_) for item in items
            ):
                raise ValueError(f"Invalid `class_labels`={_short(class_labels)}: allowed values are {allowed}.")
            values = torch.tensor([float(item) for item in items], dtype=torch.float64)
        values = values.reshape(-1)
        if values.is_floating_point() and not torch.equal(values, values.round()):
            raise ValueError(f"Invalid `class_labels`={_short(class_labels)}: allowed values are {allowed}.")
        labels = values.to(torch.long)
        if labels.numel() == 1:
            labels = labels.expand(batch_size)
        if labels.numel() != batch_size:
            raise ValueError(f"Got {labels.numel()} `class_labels` for batch_size={batch_size}.")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"`class_labels` must be in [0, {self.num_classes - 1}], got {labels.tolist()}.")
        return labels.to(self.device)

    def _initial_noise(self, batch_size, generator, latents, scheduler):
        """x_T ~ N(0, I) (or the given `latents`), times the scheduler's `init_noise_sigma`, (B, C, H, W).

        As in diffusers' pipelines, `latents` are unit-variance noise: a scheduler whose x_T has another scale
        (`EulerDiscreteScheduler`) scales them.
        """
        config = self.unet.config
        shape = (batch_size, config.in_channels, config.sample_size, config.sample_size)
        if latents is not None:
            if tuple(latents.shape) != shape:
                raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}.")
            noise = latents
        else:
            noise = torch.randn(shape, generator=generator, device=generator.device if generator else "cpu")
        return (noise.to(self.device) * scheduler.init_noise_sigma).to(self.device, self.unet.dtype)

    def _check_call(self, batch_size, guidance_scale, num_inference_steps, eta, output_type=None, noise_scale=1.0):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}.")
        if guidance_scale is not None and guidance_scale < 0:
            raise ValueError(f"`guidance_scale` must be >= 0, got {guidance_scale!r}.")
        if eta < 0:
            raise ValueError(f"`eta` must be >= 0, got {eta!r}.")
        if not noise_scale >= 0:
            raise ValueError(f"Invalid `noise_scale`={noise_scale!r}: allowed values are numbers >= 0.")
        if output_type is not None and output_type not in OUTPUT_TYPES:
            raise ValueError(f"Invalid `output_type`={output_type!r}: allowed values are {', '.join(OUTPUT_TYPES)}.")

    def _callback_inputs(self, callback_on_step_end, callback_on_step_end_tensor_inputs) -> list[str]:
        """The tensor names the callback gets, validated against `_callback_tensor_inputs` (as diffusers does)."""
        if callback_on_step_end is None:
            return []
        if hasattr(callback_on_step_end, "tensor_inputs"):  # PipelineCallback, MultiPipelineCallbacks
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        if not callable(callback_on_step_end):
            raise ValueError(f"`callback_on_step_end` must be callable, got {type(callback_on_step_end).__name__}.")
        names = list(callback_on_step_end_tensor_inputs or [])
        unknown = [name for name in names if name not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` has to be in {self._callback_tensor_inputs}, but found "
                f"{unknown}"
            )
        return names

    # ------------------------------------------------------------------------------------------------------------
    # The model call
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

    @torch.no_grad()
    def unet_forward(self, sample: torch.Tensor, timestep, class_labels) -> torch.Tensor:
        """The U-Net's raw output at (x_t, t, labels), (N, C_out, H, W) in x_t's dtype (autocast / compile aware).

        Args:
            sample: (N, C, H, W).
            timestep: (N,) (or a number / 0-d tensor: the same t for all rows).
            class_labels: (N,) long, or None.
        """
        if self.unet_autocast_dtype is None:
            return self.unet(sample, timestep, class_labels=class_labels).sample
        with torch.autocast(sample.device.type, dtype=self.unet_autocast_dtype):
            output = self.unet(sample, timestep, class_labels=class_labels).sample
        return output.to(sample.dtype)

    _unet = unet_forward  # the earlier private name

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
            return self.unet_forward(sample, timestep, class_labels)
        null_labels = self.unet.null_class_labels(class_labels)
        if guidance_scale == 0:
            return self.unet_forward(sample, timestep, null_labels)
        both = self.unet_forward(torch.cat([sample, sample]), timestep, torch.cat([class_labels, null_labels]))
        return guide(both, sample.shape[1], guidance_scale)

    # ------------------------------------------------------------------------------------------------------------
    # The chains, step by step
    # ------------------------------------------------------------------------------------------------------------

    def prepare_chain(
        self,
        batch_size: int = 1,
        class_labels=None,
        guidance_scale: float | None = None,
        num_inference_steps: int = 1000,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        latents: torch.Tensor | None = None,
        timesteps: list[int] | None = None,
        use_clipped_model_output: bool = True,
        noise_scale: float = 1.0,
        model_timestep: Callable[[int], int] | None = None,
        scheduler=None,
    ) -> DenoisingChain:
        """Sets up one reverse chain (its own scheduler copy, x_T, labels); see `denoising_steps` for the arguments.

        Args:
            scheduler: the scheduler this chain steps with (its timesteps are set here); default: a copy of
                `self.scheduler`, so chains never share timesteps or a multistep solver's history.
        """
        if guidance_scale is None:
            guidance_scale = self.config.guidance_scale  # the model's recorded w
        self._check_call(batch_size, guidance_scale, num_inference_steps, eta, noise_scale=noise_scale)
        if model_timestep is not None and not callable(model_timestep):
            raise ValueError(f"`model_timestep` must be a callable int -> int or None, got {model_timestep!r}.")
        labels = self._class_labels(class_labels, batch_size)
        scheduler = copy.deepcopy(self.scheduler) if scheduler is None else scheduler
        if timesteps is not None:
            if "timesteps" not in inspect.signature(scheduler.set_timesteps).parameters:
                raise ValueError(
                    f"`timesteps` needs a scheduler whose `set_timesteps` takes them; "
                    f"{type(scheduler).__name__} does not: pass `num_inference_steps` instead."
                )
            scheduler.set_timesteps(timesteps=timesteps, device=self.device)
        else:
            scheduler.set_timesteps(num_inference_steps, device=self.device)
        sample = self._initial_noise(batch_size, generator, latents, scheduler)  # (B, C, H, W)
        return DenoisingChain(
            scheduler,
            sample,
            labels,
            null_class=self.num_classes,
            guidance_scale=guidance_scale,
            generator=generator,
            eta=eta,
            use_clipped_model_output=use_clipped_model_output,
            noise_scale=noise_scale,
            model_timestep=model_timestep,
        )

    @torch.inference_mode()
    def denoising_steps(
        self,
        batch_size: int = 1,
        class_labels=None,
        guidance_scale: float | None = None,
        num_inference_steps: int = 1000,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        latents: torch.Tensor | None = None,
        timesteps: list[int] | None = None,
        use_clipped_model_output: bool = True,
        noise_scale: float = 1.0,
        model_timestep: Callable[[int], int] | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        chain: DenoisingChain | None = None,
    ) -> Iterator[DenoisingStep]:
        """Runs the reverse chain x_T -> x_0 and yields a `DenoisingStep` after every step.

        Args:
            batch_size: B, how many images.
            class_labels: the digit(s) to generate: an int, B ints, a (B,) integer tensor, or None (unconditional).
            guidance_scale: w of classifier-free guidance; 1 = plain conditional sampling; None (the default) = the
                model's recorded w, `pipe.config.guidance_scale`.
            num_inference_steps: how many reverse steps (ignored when `timesteps` is given).
            generator: seeds x_T and the noise of every step.
            eta: DDIM's eta (0 = deterministic); used only by schedulers whose `step` takes it.
            latents: x_T, (B, C, H, W), instead of drawing it (unit variance: scaled by the scheduler's
                `init_noise_sigma`, as in diffusers; 1 for DDPM / DDIM).
            timesteps: explicit descending timesteps to run (e.g. from t down to 0), instead of
                `num_inference_steps`.
            use_clipped_model_output: for DDIM, take eps from the clipped x_0 (eps = (x_t - sqrt(alpha_bar_t) x_0) /
                sqrt(1 - alpha_bar_t)) so that both terms of Eq. 12 agree, as improved-diffusion's DDIM does.
                diffusers' `DDIMPipeline` defaults to False, which with guidance drives samples to saturation
                (`benchmarks/bench_ddim_clipping.py` measures it). Used only by schedulers whose `step` takes it.
            noise_scale: multiplies sigma_t z, the noise each step adds (1 = the sampler as designed, 0 = the mean
                only). Needs a scheduler whose `step` takes `variance_noise` (else a ValueError for values != 1).
            model_timestep: maps the true t to the t told to the U-Net (None = the true t); the scheduler still
                steps with the true t.
            callback_on_step_end: as in diffusers: called after every step as
                `callback_on_step_end(pipe, step_index, timestep, callback_kwargs)` with the tensors named in
                `callback_on_step_end_tensor_inputs`; it returns a dict whose "latents" (if present) replace
                x_{t-1}. A `PipelineCallback` / `MultiPipelineCallbacks` brings its own tensor names. Setting
                `pipe._guidance_scale` changes w from the next step; `pipe._interrupt = True` stops the chain.
            callback_on_step_end_tensor_inputs: names from `_callback_tensor_inputs` (default ["latents"]).
            chain: a chain from `prepare_chain` to run instead (the other chain arguments are then unused).
        """
        if callback_on_step_end_tensor_inputs is None:
            callback_on_step_end_tensor_inputs = ["latents"]
        tensor_inputs = self._callback_inputs(callback_on_step_end, callback_on_step_end_tensor_inputs)
        if chain is None:
            chain = self.prepare_chain(
                batch_size,
                class_labels,
                guidance_scale,
                num_inference_steps,
                generator,
                eta,
                latents,
                timesteps,
                use_clipped_model_output,
                noise_scale,
                model_timestep,
            )
        self._guidance_scale = chain.guidance_scale
        self._num_timesteps = chain.num_steps
        self._interrupt = False
        with self.progress_bar(total=chain.num_steps) as progress_bar:
            while not chain.done and not self.interrupt:
                step = chain.step(self.unet_forward(*chain.model_input()))
                if callback_on_step_end is not None:
                    tensors = {
                        "latents": step.prev_sample,
                        "model_output": step.model_output,
                        "pred_original_sample": step.pred_original_sample,
                    }
                    callback_kwargs = {name: tensors[name] for name in tensor_inputs}
                    timestep = chain.scheduler.timesteps[step.step_index]
                    outputs = callback_on_step_end(self, step.step_index, timestep, callback_kwargs) or {}
                    if outputs.get("latents") is not None:
                        chain.sample = outputs["latents"]
                        step = dataclasses.replace(step, prev_sample=chain.sample)
                    chain.guidance_scale = self._guidance_scale
                progress_bar.update()
                yield step

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
            noise = randn_tensor(images.shape, generator=generator, device=images.device)
            sample = self.scheduler.q_step(sample, t, noise)
            if t in wanted:
                closed_noise = randn_tensor(images.shape, generator=generator, device=images.device)
                yield NoisingStep(
                    timestep=t,
                    sample=sample,
                    closed_form_sample=self.scheduler.add_noise(images, closed_noise, torch.tensor([t])),
                    coefficients=self.scheduler.coefficients(t),
                )

    def prepare_noise_then_denoise_chain(
        self,
        images: torch.Tensor,
        start_timestep: int,
        class_labels=None,
        guidance_scale: float | None = None,
        num_inference_steps: int = 1000,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        use_clipped_model_output: bool = True,
        noise_scale: float = 1.0,
        model_timestep: Callable[[int], int] | None = None,
        scheduler=None,
    ) -> DenoisingChain:
        """The chain of `noise_then_denoise_steps`, not yet run: real images noised to `start_timestep` with
        q(x_t | x_0), then the reverse chain from there (drive it yourself, or share U-Net calls with other chains).

        The chain visits the inference timesteps (from `num_inference_steps`) that are <= start_timestep, and the
        images are noised to the first of them (with the chain's scheduler's `add_noise`): its first `sample` is the
        noised image.

        Args:
            images: x_0 in [-1, 1], (B, C, H, W).
            start_timestep: how far to noise, in [0, num_train_timesteps).
            scheduler: as in `prepare_chain` (default: a copy of `self.scheduler`).
            class_labels, guidance_scale, num_inference_steps, generator, eta, use_clipped_model_output, noise_scale,
                model_timestep: as in `denoising_steps`.
        """
        num_train_timesteps = self.scheduler.config.num_train_timesteps
        if not 0 <= start_timestep < num_train_timesteps:
            raise ValueError(f"`start_timestep` must be in [0, {num_train_timesteps - 1}], got {start_timestep}.")
        scheduler = copy.deepcopy(self.scheduler) if scheduler is None else scheduler
        scheduler.set_timesteps(num_inference_steps)
        timesteps = [t for t in scheduler.timesteps.tolist() if t <= start_timestep] or [start_timestep]
        images = images.to(self.device, torch.float32)
        noise = randn_tensor(images.shape, generator=generator, device=images.device)
        chain = self.prepare_chain(
            batch_size=images.shape[0],
            class_labels=class_labels,
            guidance_scale=guidance_scale,
            generator=generator,
            eta=eta,
            latents=noise,  # replaced below: only sets the shape without drawing
            timesteps=timesteps,
            use_clipped_model_output=use_clipped_model_output,
            noise_scale=noise_scale,
            model_timestep=model_timestep,
            scheduler=scheduler,
        )
        start = chain.scheduler.timesteps[:1]
        chain.sample = chain.scheduler.add_noise(images, noise, start).to(self.device, self.unet.dtype)
        return chain

    def noise_then_denoise_steps(
        self,
        images: torch.Tensor,
        start_timestep: int,
        class_labels=None,
        guidance_scale: float | None = None,
        num_inference_steps: int = 1000,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        use_clipped_model_output: bool = True,
        noise_scale: float = 1.0,
        model_timestep: Callable[[int], int] | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> Iterator[DenoisingStep]:
        """Noises real images to `start_timestep` with q(x_t | x_0), then runs the reverse chain from there.

        The chain is `prepare_noise_then_denoise_chain`'s: the inference timesteps <= start_timestep, the images
        noised to the first of them. The first step's `sample` is the noised image.

        Args:
            images: x_0 in [-1, 1], (B, C, H, W).
            start_timestep: how far to noise, in [0, num_train_timesteps).
            class_labels, guidance_scale, num_inference_steps, generator, eta, use_clipped_model_output, noise_scale,
                model_timestep, callback_on_step_end, callback_on_step_end_tensor_inputs: as in `denoising_steps`.
        """
        chain = self.prepare_noise_then_denoise_chain(
            images,
            start_timestep,
            class_labels=class_labels,
            guidance_scale=guidance_scale,
            num_inference_steps=num_inference_steps,
            generator=generator,
            eta=eta,
            use_clipped_model_output=use_clipped_model_output,
            noise_scale=noise_scale,
            model_timestep=model_timestep,
        )
        yield from self.denoising_steps(
            chain=chain,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
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
            model_output = self.unet_forward(x_t.to(self.unet.dtype), t, labels_rows).double()
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

        Both have the same expectation, the bound on -log p_theta(x_0), in bits/dim. Which spread is smaller depends
        on the model: the KL form removes the sampling of x_{t-1} given x_t from each term, but on one trajectory its
        T terms are correlated along the chain (x_t moves little from t to t + 1). For a near-ideal model the KL
        form's spread is far smaller (tests/test_bound.py); on the bundled model, one held-out digit, 16 draws, it was
        the larger (0.077 vs 0.033 bits/dim). `bits_per_dim` (a fresh x_t ~ q(x_t | x_0) for every term) is the
        low-variance KL estimate.

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
            model_output = self.unet_forward(x_t.to(self.unet.dtype), timestep, labels).double()
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
        guidance_scale: float | None = None,
        num_inference_steps: int = 1000,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        use_clipped_model_output: bool = True,
        timesteps: list[int] | None = None,
        noise_scale: float = 1.0,
        model_timestep: Callable[[int], int] | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> ImagePipelineOutput | tuple:
        """Generates images: runs `denoising_steps` to the end (or until `pipe._interrupt` is set).

        Args:
            batch_size: B, how many images.
            class_labels: the digit(s): an int, B ints, a (B,) integer tensor, or None (unconditional).
            guidance_scale: w of classifier-free guidance; 1 = plain conditional sampling; None (the default) = the
                model's recorded w, `pipe.config.guidance_scale`.
            num_inference_steps: reverse steps (1000 for full DDPM; e.g. 50 with `DDIMHubScheduler`).
            generator: a `torch.Generator` for reproducible samples.
            eta: DDIM's eta, for `DDIMHubScheduler`.
            latents: x_T, (B, C, H, W), instead of drawing it.
            output_type: "pil" (list of PIL images), "np" ((B, H, W, C) floats in [0, 1]) or "pt" ((B, C, H, W)
                floats in [0, 1]).
            return_dict: return an `ImagePipelineOutput`; if False, a tuple `(images,)`.
            use_clipped_model_output: for DDIM, eps from the clipped x_0 (see `denoising_steps`).
            timesteps, noise_scale, model_timestep, callback_on_step_end, callback_on_step_end_tensor_inputs: see
                `denoising_steps`.
        """
        self._check_call(batch_size, guidance_scale, num_inference_steps, eta, output_type, noise_scale)
        chain = self.prepare_chain(
            batch_size,
            class_labels,
            guidance_scale,
            num_inference_steps,
            generator,
            eta,
            latents,
            timesteps,
            use_clipped_model_output,
            noise_scale,
            model_timestep,
        )
        for _ in self.denoising_steps(
            chain=chain,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        ):
            pass
        images = (chain.sample.float() / 2 + 0.5).clamp(0, 1)  # [-1, 1] -> [0, 1]
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
        name there would fail to load from a repo id. The files a component's code imports relatively
        (`DDIMHubScheduler` builds on `from .scheduling_ddpm import ...`) travel with it, under their own names, so
        each component folder is self-contained. Stock diffusers components are saved by name, as diffusers does.
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
            module_file = COMPONENT_FILES_BY_CLASS.get(component_class.__name__, module_file)
            _copy_code(inspect.getsourcefile(component_class), os.path.join(save_directory, name), module_file)
            index[name] = [module_file, component_class.__name__]
        _copy_code(inspect.getsourcefile(type(self)), save_directory, PIPELINE_FILE)
        index["_class_name"] = [PIPELINE_FILE, type(self).__name__]
        index.pop("_name_or_path", None)  # where this copy was loaded from is no part of the saved pipeline
        with open(index_path, "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2, sort_keys=True)
            f.write("\n")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Loads a saved folder or Hub repo with the installed `ddpm_hub` classes (no remote code is run).

        Takes diffusers' loading arguments and passes them on: `revision`, `cache_dir`, `token`,
        `local_files_only`, `force_download`, `proxies` to every component; `torch_dtype` (or `dtype`, a dtype or
        a {component: dtype, "default": dtype} dict), `variant`, `use_safetensors`, `low_cpu_mem_usage`,
        `device_map`, `max_memory`, `offload_folder`, `offload_state_dict`, `disable_mmap` to the U-Net (the one
        component with weights). `trust_remote_code` is accepted and unused: the folder's code copies are for stock
        diffusers. Components passed as `unet=` / `scheduler=` are used as given. Any other keyword is an error, as
        is a folder that is not a saved pipeline.
        """
        allowed = (*HUB_ARGUMENTS, *MODEL_ARGUMENTS, "dtype", "trust_remote_code", *COMPONENTS)
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise ValueError(
                f"Unknown keyword argument(s) {unknown} for DDPMHubPipeline.from_pretrained: allowed values are "
                f"{', '.join(allowed)}."
            )
        source = os.fspath(pretrained_model_name_or_path)
        _check_pipeline_folder(source, needed=[name for name in COMPONENTS if kwargs.get(name) is None])
        hub_kwargs = {key: kwargs[key] for key in HUB_ARGUMENTS if key in kwargs}
        model_kwargs = {key: kwargs[key] for key in MODEL_ARGUMENTS if key in kwargs}
        dtype = kwargs.get("dtype", model_kwargs.pop("torch_dtype", None))
        if isinstance(dtype, dict):
            dtype = dtype.get("unet", dtype.get("default"))
        if dtype is not None and not isinstance(dtype, torch.dtype):
            raise ValueError(f"Invalid `torch_dtype`={dtype!r}: allowed values are torch dtypes (torch.float16, ...).")

        index = DiffusionPipeline.load_config(source, **hub_kwargs)  # model_index.json: which class each part is
        unet = kwargs.get("unet")
        if unet is None:
            unet = _component_class(index, "unet").from_pretrained(
                source, subfolder="unet", torch_dtype=dtype, **model_kwargs, **hub_kwargs
            )
        scheduler = kwargs.get("scheduler")
        if scheduler is None:
            scheduler = _component_class(index, "scheduler").from_pretrained(
                source, subfolder="scheduler", **hub_kwargs
            )
        guidance_scale = index.get("guidance_scale", DEFAULT_GUIDANCE_SCALE)  # absent in folders saved before it
        pipeline = cls(unet=unet, scheduler=scheduler, guidance_scale=guidance_scale)
        pipeline.register_to_config(_name_or_path=source)
        return pipeline


def _copy_code(source_file: str, folder: str, module_file: str) -> None:
    """Copies `source_file` to folder/module_file.py, with the files it imports relatively (`from .x import`)."""
    shutil.copyfile(source_file, os.path.join(folder, f"{module_file}.py"))
    pending, copied = [source_file], set()
    while pending:
        with open(pending.pop(), encoding="utf-8") as f:
            code = f.read()
        for name in re.findall(r"^\s*from\s+\.(\w+)\s+import", code, flags=re.MULTILINE):  # diffusers' own rule
            if name not in copied:
                copied.add(name)
                dependency = os.path.join(os.path.dirname(source_file), f"{name}.py")
                shutil.copyfile(dependency, os.path.join(folder, f"{name}.py"))
                pending.append(dependency)


def _check_pipeline_folder(source: str, needed: list[str]) -> None:
    """Raises a ValueError that says what is wrong when `source` is meant as a local folder and is not a pipeline.

    A name is meant as a local folder when it exists, starts like a path (/, ., ~), has more than one "/", or its
    first part is a folder here (a mistyped `runs/my_pipline`); otherwise it is a Hub repo id.
    """
    layout = "a folder saved by `DDPMHubPipeline.save_pretrained` holds model_index.json, unet/ and scheduler/"
    if os.path.isdir(source):
        if not os.path.isfile(os.path.join(source, "model_index.json")):
            found = sorted(os.listdir(source))
            hint = ""
            if "config.json" in found:
                hint = " It looks like a single model's folder: load it with `DDPMHubUNet2DModel.from_pretrained`."
            elif "scheduler_config.json" in found:
                hint = " It looks like a scheduler's folder: load it with `DDPMHubScheduler.from_pretrained`."
            raise ValueError(
                f"The folder {source!r} is not a saved pipeline: it has no model_index.json ({layout}; this one "
                f"holds {_short(found[:12])}).{hint}"
            )
        for name in needed:
            if not os.path.isdir(os.path.join(source, name)):
                raise ValueError(f"The folder {source!r} has no {name}/ subfolder ({layout}).")
        return
    if os.path.exists(source):
        raise ValueError(f"{source!r} is a file, not a pipeline folder ({layout}).")
    first = source.replace("\\", "/").split("/")[0]
    looks_local = source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source
    if looks_local or (first and source != first and os.path.isdir(first)):
        parent = os.path.dirname(os.path.abspath(os.path.expanduser(source)))
        while parent and not os.path.isdir(parent):
            parent = os.path.dirname(parent) if os.path.dirname(parent) != parent else ""
        nearby = sorted(os.listdir(parent))[:12] if parent else []
        raise ValueError(
            f"There is no folder {source!r} (read as a local path, not a Hub repo id 'owner/name'). The nearest "
            f"existing folder is {parent!r}, which holds {_short(nearby)}."
        )


def _component_class(index: dict, name: str):
    """The installed class for a component named in model_index.json: ddpm_hub's, or diffusers' by name."""
    entry = index.get(name)
    if not isinstance(entry, list | tuple) or len(entry) != 2:
        raise ValueError(f"model_index.json has no [library, class] entry for `{name}` (got {entry!r}).")
    library_name, class_name = entry
    library = importlib.import_module("ddpm_hub")  # installed package; the folder's code copies stay unused
    if class_name in getattr(library, "__all__", []):
        return getattr(library, class_name)
    diffusers = importlib.import_module("diffusers")
    if library_name == "diffusers" and hasattr(diffusers, class_name):
        return getattr(diffusers, class_name)
    raise ValueError(
        f"model_index.json names `{name}` = {entry!r}, which is neither a ddpm_hub class nor a diffusers one."
    )


def _short(value) -> str:
    """repr(value), cut to one readable line for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _numpy_images(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [0, 1] -> (B, H, W, C) numpy."""
    return images.cpu().permute(0, 2, 3, 1).numpy()
