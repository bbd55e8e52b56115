"""The DDPM pipeline: class-conditional sampling with classifier-free guidance, step by step or in one call.

The step-by-step view is a library feature: `denoising_steps` is a generator that yields one `DenoisingStep` per
reverse step, `noising_steps` does the same for the forward chain of a given image, and
`noise_then_denoise_steps` noises an image to t and brings it back. `__call__` simply runs `denoising_steps` to the
end. Each reverse chain is a `DenoisingChain` (from `prepare_chain`, the one place that checks and resolves a chain's
options): it owns its scheduler copy, generator, guidance and step counter, so several chains can share one U-Net
call per tick. The chain machinery is in `chain.py`, the bound term by term in `bound.py` (`BoundMixin`); this file
holds the public entry points and saving / loading.

This file, and the siblings it imports relatively (`from .chain import`, `from .bound import`), import nothing from
`ddpm_hub`: they are copied into saved pipelines so that stock diffusers can load them with
`DiffusionPipeline.from_pretrained(repo_id, trust_remote_code=True)`. diffusers copies along only the files this one
imports directly, so every sibling the pipeline needs is imported here.
"""

import copy
import inspect
import json
import os
from collections.abc import Callable, Iterator

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from .bound import (  # noqa: F401  (re-exported)
    BitsPerDimOutput,
    BoundMixin,
    BoundStep,
    ElboEstimates,
    PosteriorAtT,
    PosteriorKL,
)
from .chain import (  # noqa: F401  (ChainModelInput, NoisingStep, classifier_free_guidance: re-exported)
    ChainModelInput,
    DenoisingChain,
    DenoisingStep,
    GuidanceParts,
    NoisingStep,
    callback_tensor_names,
    check_chain_options,
    class_labels_tensor,
    classifier_free_guidance,
    forward_chain,
    guide,
    guided_labels,
    initial_noise,
    numpy_images,
    run_chain,
)
from .folder import (
    COMPONENT_FILES,
    COMPONENT_FILES_BY_CLASS,
    COMPONENTS,
    HUB_ARGUMENTS,
    MODEL_ARGUMENTS,
    PIPELINE_FILE,
    check_pipeline_folder,
    component_class,
    copy_code,
)

OUTPUT_TYPES = ("pil", "np", "pt", "latent")
# w of classifier-free guidance for a model whose guidance curve has not been measured yet. A measured model records
# its own w in model_index.json (`benchmarks/bench_nfe.py --curve guidance --record_in_model`); the bundled models'
# curves put the best w between 1 and 2 (README, "Guidance"), so an unmeasured model starts in the middle of that.
DEFAULT_GUIDANCE_SCALE = 1.5


class DDPMHubPipeline(BoundMixin, DiffusionPipeline):
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
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample: (C, H, W) for a U-Net, (D,) for a model of points with `sample_dim`
        (`DDPMHubMLP`, `MixtureDenoiser`)."""
        config = self.unet.config
        if "sample_dim" in config:
            return (config.sample_dim,)
        return (config.in_channels, config.sample_size, config.sample_size)

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
        """`class_labels` (None, an int, a list of ints, or a (B,) tensor) as a (B,) long tensor on the device, or
        None; a ValueError names what is wrong."""
        labels = class_labels_tensor(class_labels, self.num_classes, batch_size)
        return None if labels is None else labels.to(self.device)

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
        labels, guided = guided_labels(class_labels, self.num_classes, guidance_scale, sample.shape[0], sample.device)
        if not guided:
            return self.unet_forward(sample, timestep, labels)
        return guide(self.unet_forward(torch.cat([sample, sample]), timestep, labels), sample.shape[1], guidance_scale)

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
        check_chain_options(batch_size, guidance_scale, eta, noise_scale, model_timestep)
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
        shape = (batch_size, *self.sample_shape)
        sample = initial_noise(shape, generator, latents, scheduler, self.device, self.unet.dtype)  # (B, C, H, W)
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

    def prepare_variance_pair(
        self,
        batch_size: int = 1,
        class_labels=None,
        guidance_scale: float | None = None,
        num_inference_steps: int = 1000,
        generator: torch.Generator | None = None,
        noise_at_last_step: bool = False,
    ) -> tuple[DenoisingChain, DenoisingChain]:
        """Two ancestral DDPM chains that differ only in sigma_t^2: beta_t (`fixed_large`) and beta_tilde_t
        (`fixed_small`), from the same x_T and with the same z at every step (Ho et al. 2020, Sec. 3.2: "both gave
        similar results"). Drive them yourself or share U-Net calls between them (see `DenoisingChain`).

        x_T is drawn once from `generator` and given to both as `latents`; each chain then gets a generator in the same
        state, so the scheduler's `step` draws the same z for both. The scheduler must be a `DDPMHubScheduler` (its
        config gives the schedule).

        Args:
            batch_size, class_labels, guidance_scale, num_inference_steps: as in `denoising_steps`.
            generator: seeds x_T and the z of every step (shared by both chains).
            noise_at_last_step: also add sigma_t z on the last step, to x_0 (the scheduler's `noise_at_last_step`);
                Algorithm 2 does not.

        Returns:
            (the beta_t chain, the beta_tilde_t chain).
        """
        base = self.scheduler
        if not hasattr(base, "noise_at_last_step") or "variance_type" not in base.config:  # a DDPMHubScheduler
            raise ValueError(
                "`prepare_variance_pair` needs a DDPMHubScheduler (sigma_t^2 = beta_t or beta_tilde_t); this "
                f"pipeline's scheduler is {type(base).__name__}."
            )
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,))))
        config = self.unet.config
        shape = (batch_size, config.in_channels, config.sample_size, config.sample_size)
        device = generator.device
        latents = randn_tensor(shape, generator=generator, device=device)  # x_T, shared
        state = generator.get_state()
        chains = []
        for variance_type in ("fixed_large", "fixed_small"):
            # variance_type as a keyword: inside the config, from_config would reset it to the default
            options = {key: value for key, value in base.config.items() if key != "variance_type"}
            scheduler = type(base).from_config(options, variance_type=variance_type)
            scheduler.noise_at_last_step = bool(noise_at_last_step)
            same_draws = torch.Generator(device=device).set_state(state)
            chains.append(
                self.prepare_chain(
                    batch_size=batch_size,
                    class_labels=class_labels,
                    guidance_scale=guidance_scale,
                    num_inference_steps=num_inference_steps,
                    generator=same_draws,
                    latents=latents,
                    scheduler=scheduler,
                )
            )
        return chains[0], chains[1]

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
            chain: a chain from `prepare_chain` to run instead; passing any chain argument with it is a ValueError.
        """
        options = _chain_options(locals())
        if chain is None:
            chain = self.prepare_chain(**options)
        else:
            given = [name for name, value in options.items() if _differs(value, CHAIN_DEFAULTS[name])]
            if given:
                raise ValueError(
                    f"`chain` was given together with {', '.join(given)}: a prepared chain has its options already; "
                    "allowed values are `chain` alone, or the chain options without `chain`."
                )
        if callback_on_step_end_tensor_inputs is None:
            callback_on_step_end_tensor_inputs = ["latents"]
        names = callback_tensor_names(
            callback_on_step_end, callback_on_step_end_tensor_inputs, self._callback_tensor_inputs
        )
        yield from run_chain(self, chain, callback_on_step_end, names)

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
        yield from forward_chain(self.scheduler, images.to(self.device, torch.float32), report, generator)

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
        options = _chain_options(locals())
        num_train_timesteps = self.scheduler.config.num_train_timesteps
        if not 0 <= start_timestep < num_train_timesteps:
            raise ValueError(f"`start_timestep` must be in [0, {num_train_timesteps - 1}], got {start_timestep}.")
        scheduler = copy.deepcopy(self.scheduler) if scheduler is None else scheduler
        scheduler.set_timesteps(num_inference_steps)
        timesteps = [t for t in scheduler.timesteps.tolist() if t <= start_timestep] or [start_timestep]
        images = images.to(self.device, torch.float32)
        noise = randn_tensor(images.shape, generator=generator, device=images.device)
        options.update(batch_size=images.shape[0], timesteps=timesteps, scheduler=scheduler)
        chain = self.prepare_chain(**options, latents=noise)  # latents: the shape, without a draw; replaced below
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
        chain = self.prepare_noise_then_denoise_chain(images, start_timestep, **_chain_options(locals()))
        yield from self.denoising_steps(
            chain=chain,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )

    # ------------------------------------------------------------------------------------------------------------
    # Sampling in one call (the bound, term by term, is `BoundMixin`'s: bound_steps, bits_per_dim, elbo_estimates)
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
            latents: x_T, (B, C, H, W) (or (B, D) for points), instead of drawing it.
            output_type: "pil" (list of PIL images), "np" ((B, H, W, C) floats in [0, 1]), "pt" ((B, C, H, W)
                floats in [0, 1]) or "latent" (x_0 as the chain left it, unscaled: images in [-1, 1], or (B, D)
                points, the only output of a model of points).
            return_dict: return an `ImagePipelineOutput`; if False, a tuple `(images,)`.
            use_clipped_model_output: for DDIM, eps from the clipped x_0 (see `denoising_steps`).
            timesteps, noise_scale, model_timestep, callback_on_step_end, callback_on_step_end_tensor_inputs: see
                `denoising_steps`.
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"Invalid `output_type`={output_type!r}: allowed values are {', '.join(OUTPUT_TYPES)}.")
        if len(self.sample_shape) == 1 and output_type != "latent":
            raise ValueError(
                f"Invalid `output_type`={output_type!r} for a model of points: allowed values are 'latent'."
            )
        chain = self.prepare_chain(**_chain_options(locals()))
        for _ in self.denoising_steps(
            chain=chain,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        ):
            pass
        images = chain.sample
        if output_type != "latent":
            images = (images.float() / 2 + 0.5).clamp(0, 1)  # [-1, 1] -> [0, 1]
        if output_type == "np":
            images = numpy_images(images)
        elif output_type == "pil":
            images = self.numpy_to_pil(numpy_images(images))
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
            copy_code(inspect.getsourcefile(component_class), os.path.join(save_directory, name), module_file)
            index[name] = [module_file, component_class.__name__]
        copy_code(inspect.getsourcefile(type(self)), save_directory, PIPELINE_FILE)
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
        check_pipeline_folder(source, needed=[name for name in COMPONENTS if kwargs.get(name) is None])
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
            unet = component_class(index, "unet").from_pretrained(
                source, subfolder="unet", torch_dtype=dtype, **model_kwargs, **hub_kwargs
            )
        scheduler = kwargs.get("scheduler")
        if scheduler is None:
            scheduler = component_class(index, "scheduler").from_pretrained(
                source, subfolder="scheduler", **hub_kwargs
            )
        guidance_scale = index.get("guidance_scale", DEFAULT_GUIDANCE_SCALE)  # absent in folders saved before it
        pipeline = cls(unet=unet, scheduler=scheduler, guidance_scale=guidance_scale)
        pipeline.register_to_config(_name_or_path=source)
        return pipeline


# The options of a reverse chain: `prepare_chain`'s arguments; the public entry points hand theirs to it.
CHAIN_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(DDPMHubPipeline.prepare_chain).parameters.items()
    if name not in ("self", "scheduler")
}


def _chain_options(arguments: dict) -> dict:
    """The chain options among an entry point's arguments (its `locals()`), to hand on to `prepare_chain`."""
    return {name: value for name, value in arguments.items() if name in CHAIN_DEFAULTS}


def _differs(value, default) -> bool:
    """Whether an argument was given a value other than its default (numbers compare by value, others by identity)."""
    if value is default:
        return False
    numbers = (int, float)
    return not (isinstance(value, numbers) and isinstance(default, numbers) and value == default)
