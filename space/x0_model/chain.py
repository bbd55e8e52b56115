"""The reverse chain one step at a time, and the forward chain: what every sampling entry point runs.

`DenoisingChain` is one reverse chain x_T -> x_0 that advances one step per `step(model_output)` and never calls the
U-Net, so several chains can share one U-Net call per tick. Classifier-free guidance lives here (`guided_labels`,
`guide`); every other formula is the scheduler's, so any diffusers scheduler can drive a chain. `run_chain` drives a
chain with a pipeline's U-Net (diffusers' `callback_on_step_end` protocol included) and `forward_chain` walks
q(x_t | x_{t-1}); the pipeline's public entry points (`prepare_chain`, `denoising_steps`, `noising_steps`, ...) are
thin wrappers around them.

This file imports nothing from `ddpm_hub`: it is copied into saved pipelines beside the pipeline's code.
"""

import dataclasses
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor


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
class GuidanceParts:
    """Classifier-free guidance at one step, on pictures: the two predictions the guided one is made of.

    Tensors are (B, C, H, W): the model's prediction channels (eps for an eps-prediction model; x_0 or v otherwise).

    Args:
        conditional: eps_c = eps_theta(x_t, t, y), the model told the digit.
        unconditional: eps_u = eps_theta(x_t, t, null), the same model told nothing.
        guided: eps_u + w (eps_c - eps_u) (`classifier_free_guidance`), what the step used (before any clipping).
        guidance_scale: w.
    """

    conditional: torch.Tensor
    unconditional: torch.Tensor
    guided: torch.Tensor
    guidance_scale: float

    @property
    def difference(self) -> torch.Tensor:
        """eps_c - eps_u, the direction guidance pushes along (w times it is added to eps_u), (B, C, H, W)."""
        return self.conditional - self.unconditional


def guided_labels(
    class_labels: torch.Tensor | None, null_class: int | None, guidance_scale: float, batch_size: int, device
) -> tuple[torch.Tensor | None, bool]:
    """The U-Net's class labels for one call, and whether its output must be combined by `guide`.

    Args:
        class_labels: (B,) long, or None (unconditional: the null class of a conditional model).
        null_class: the label of the null class (`num_class_embeds`), or None for an unconditional model.
        guidance_scale: w; 1 = the conditional model alone, 0 = the unconditional one alone.

    Returns:
        (N,) labels (N = 2B, conditional half first, when guided; else B) or None, and whether N = 2B.
    """
    if class_labels is None:  # unconditional: the null class of a conditional model (what the U-Net does for None)
        if null_class is None:
            return None, False
        return torch.full((batch_size,), null_class, dtype=torch.long, device=device), False
    if guidance_scale == 1:
        return class_labels, False
    null_labels = torch.full_like(class_labels, null_class)
    if guidance_scale == 0:
        return null_labels, False
    return torch.cat([class_labels, null_labels]), True  # (2B,): conditional, then unconditional


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
        guidance: the conditional and unconditional predictions and their combination (`GuidanceParts`) when the step
            was guided (a digit and w not 0 or 1), else None.
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
    guidance: GuidanceParts | None = None


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
        return guided_labels(
            self.class_labels, self.null_class, self.guidance_scale, self.batch_size, self.sample.device
        )

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
        guidance = None
        if guided:
            conditional, unconditional = (half[:, :channels] for half in model_output.chunk(2))  # views, no copies
            model_output = guide(model_output, channels, self.guidance_scale)  # (B, C_out, H, W)
            guidance = GuidanceParts(conditional, unconditional, model_output[:, :channels], self.guidance_scale)
        model_output = model_output.to(self.sample.dtype)
        index = self.step_index
        scheduler_output = model_output
        if self._clips_for_scheduler:
            noise = noise_from_clipped_x0(
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
            guidance=guidance,
        )
        self.sample = out.prev_sample
        self.step_index += 1
        return step


def noise_from_clipped_x0(
    scheduler, noise: torch.Tensor, sample: torch.Tensor, index: int, clip_range: float = 1.0
) -> torch.Tensor:
    """The eps of x_0 clipped to [-clip_range, clip_range], (B, C, H, W), for a scheduler that does not clip.

    x_0 from eps, clipped, then eps from the clipped x_0 (Eq. 15 of Ho et al. 2020 and its inverse, as DDIM's
    `use_clipped_model_output` does), with x_t the scheduler's model input (its `scale_model_input`, the DDPM x_t for
    every diffusers scheduler). A scheduler with the conversions (`DDPMHubScheduler`: `predict_x0_from_noise`,
    `predict_noise_from_x0`) does them; a stock one gets `_stock_x0_and_noise`.
    """
    timestep = scheduler.timesteps[index]
    x_t = scheduler.scale_model_input(sample, timestep).double()
    if hasattr(scheduler, "predict_x0_from_noise") and hasattr(scheduler, "predict_noise_from_x0"):
        x_0 = scheduler.predict_x0_from_noise(x_t, timestep, noise.double()).clamp(-clip_range, clip_range)
        return scheduler.predict_noise_from_x0(x_t, timestep, x_0).to(noise.dtype)
    x0_from_noise, noise_from_x0 = _stock_x0_and_noise(scheduler, timestep)
    return noise_from_x0(x_t, x0_from_noise(x_t, noise.double()).clamp(-clip_range, clip_range)).to(noise.dtype)


def _stock_x0_and_noise(scheduler, timestep) -> tuple[Callable, Callable]:
    """The stock-scheduler fallback of `noise_from_clipped_x0`: x_0(x_t, eps) and eps(x_t, x_0) at `timestep`.

    The only diffusion formula outside the scheduler file, for diffusers schedulers that lack the conversions:
    x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) and its inverse, from `scheduler.alphas_cumprod`.
    alpha_bar_t at a fractional t comes from sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) interpolated linearly,
    as `EulerDiscreteScheduler` does.
    """
    alphas_cumprod = scheduler.alphas_cumprod.double().cpu()
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt().numpy()
    sigma = float(np.interp(float(timestep), np.arange(len(sigmas)), sigmas))
    alpha_bar = 1 / (1 + sigma**2)
    return (
        lambda x_t, eps: (x_t - (1 - alpha_bar) ** 0.5 * eps) / alpha_bar**0.5,
        lambda x_t, x_0: (x_t - alpha_bar**0.5 * x_0) / (1 - alpha_bar) ** 0.5,
    )


def _as_number(value) -> int | float:
    """An int when the value is integral (timesteps of most schedulers), else a float."""
    value = float(value)
    return int(value) if value.is_integer() else value


# ----------------------------------------------------------------------------------------------------------------
# The chain's inputs, checked once (the pipeline's `prepare_chain` calls these)
# ----------------------------------------------------------------------------------------------------------------


def check_chain_options(batch_size, guidance_scale, eta, noise_scale, model_timestep) -> None:
    """Raises a ValueError naming the first chain option out of range."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}.")
    for name, value in (("guidance_scale", guidance_scale), ("eta", eta)):  # NaN fails `>= 0` too: no silent NaN
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0 or value == float("inf"):
            raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")
    if not noise_scale >= 0:
        raise ValueError(f"Invalid `noise_scale`={noise_scale!r}: allowed values are numbers >= 0.")
    if model_timestep is not None and not callable(model_timestep):
        raise ValueError(f"`model_timestep` must be a callable int -> int or None, got {model_timestep!r}.")


def class_labels_tensor(class_labels, num_classes: int | None, batch_size: int) -> torch.Tensor | None:
    """Normalizes `class_labels` (None, an int, a list of ints, or a (B,) tensor) to a (B,) long tensor or None."""
    if class_labels is None:
        return None
    if num_classes is None:
        raise ValueError(
            f"Invalid `class_labels`={_short(class_labels)}: this model is unconditional (unet "
            "num_class_embeds=None), so the only allowed value is None."
        )
    allowed = f"integers in [0, {num_classes - 1}] (an int, a list of ints or an integer tensor), or None"
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
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"`class_labels` must be in [0, {num_classes - 1}], got {labels.tolist()}.")
    return labels


def initial_noise(shape, generator, latents, scheduler, device, dtype) -> torch.Tensor:
    """x_T ~ N(0, I) (or the given `latents`), times the scheduler's `init_noise_sigma`, `shape` = (B, C, H, W).

    As in diffusers' pipelines, `latents` are unit-variance noise: a scheduler whose x_T has another scale
    (`EulerDiscreteScheduler`) scales them.
    """
    if latents is not None:
        if tuple(latents.shape) != shape:
            raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}.")
        noise = latents
    else:
        noise = torch.randn(shape, generator=generator, device=generator.device if generator else "cpu")
    return (noise.to(device) * scheduler.init_noise_sigma).to(device, dtype)


def callback_tensor_names(callback_on_step_end, callback_on_step_end_tensor_inputs, allowed: list[str]) -> list[str]:
    """The tensor names the callback gets, validated against the pipeline's `_callback_tensor_inputs` (as diffusers
    does); [] without a callback."""
    if callback_on_step_end is None:
        return []
    if hasattr(callback_on_step_end, "tensor_inputs"):  # PipelineCallback, MultiPipelineCallbacks
        callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
    if not callable(callback_on_step_end):
        raise ValueError(f"`callback_on_step_end` must be callable, got {type(callback_on_step_end).__name__}.")
    names = list(callback_on_step_end_tensor_inputs or [])
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise ValueError(f"`callback_on_step_end_tensor_inputs` has to be in {allowed}, but found {unknown}")
    return names


# ----------------------------------------------------------------------------------------------------------------
# The generators
# ----------------------------------------------------------------------------------------------------------------


def run_chain(pipe, chain: DenoisingChain, callback_on_step_end=None, tensor_inputs=()) -> Iterator[DenoisingStep]:
    """Drives `chain` with `pipe.unet_forward`, one `DenoisingStep` per step, until it is done or `pipe.interrupt`.

    diffusers' callback protocol: after every step `callback_on_step_end(pipe, step_index, timestep, kwargs)` gets
    the tensors named in `tensor_inputs`; a returned "latents" replaces x_{t-1}, and `pipe._guidance_scale` (which the
    callback may set) is the chain's w from the next step.
    """
    pipe._guidance_scale = chain.guidance_scale
    pipe._num_timesteps = chain.num_steps
    pipe._interrupt = False
    with pipe.progress_bar(total=chain.num_steps) as progress_bar:
        while not chain.done and not pipe.interrupt:
            step = chain.step(pipe.unet_forward(*chain.model_input()))
            if callback_on_step_end is not None:
                tensors = {
                    "latents": step.prev_sample,
                    "model_output": step.model_output,
                    "pred_original_sample": step.pred_original_sample,
                }
                callback_kwargs = {name: tensors[name] for name in tensor_inputs}
                timestep = chain.scheduler.timesteps[step.step_index]
                outputs = callback_on_step_end(pipe, step.step_index, timestep, callback_kwargs) or {}
                if outputs.get("latents") is not None:
                    chain.sample = outputs["latents"]
                    step = dataclasses.replace(step, prev_sample=chain.sample)
                chain.guidance_scale = pipe._guidance_scale
            progress_bar.update()
            yield step


def forward_chain(scheduler, images: torch.Tensor, report: list[int], generator=None) -> Iterator[NoisingStep]:
    """x_0 -> x_T one step of q(x_t | x_{t-1}) at a time; a `NoisingStep` at each of the ascending `report` timesteps,
    beside a closed-form draw from q(x_t | x_0) with its own noise."""
    sample, wanted = images, set(report)
    for t in range(report[-1] + 1):
        noise = randn_tensor(images.shape, generator=generator, device=images.device)
        sample = scheduler.q_step(sample, t, noise)
        if t in wanted:
            closed_noise = randn_tensor(images.shape, generator=generator, device=images.device)
            yield NoisingStep(
                timestep=t,
                sample=sample,
                closed_form_sample=scheduler.add_noise(images, closed_noise, torch.tensor([t])),
                coefficients=scheduler.coefficients(t),
            )


def numpy_images(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [0, 1] -> (B, H, W, C) numpy."""
    return images.cpu().permute(0, 2, 3, 1).numpy()


def _short(value) -> str:
    """repr(value), cut to one readable line for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
