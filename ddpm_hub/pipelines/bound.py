"""The variational bound term by term (Ho et al. 2020, Eq. 5), on the pipeline: `bound_steps`, `bits_per_dim`,
`elbo_estimates`.

`BoundMixin` is a base class of `DDPMHubPipeline`: it uses the pipeline's `unet_forward`, `scheduler`, `device`,
`num_classes` and `_class_labels`. Every formula is the scheduler's (`vb_terms_bpd`, `prior_bpd`, `p_mean_variance`,
`trajectory_terms_bpd`, ...); this file draws the x_t, batches the U-Net calls and collects the terms.

This file imports nothing from `ddpm_hub`: it is copied into saved pipelines beside the pipeline's code.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from diffusers.utils import BaseOutput


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


@dataclass
class PosteriorKL:
    """The bound's term L_t = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) for one fixed choice of sigma_t^2,
    split into its two parts. Values are per dimension (the mean over D = C x H x W), in nats; (B,) per image.

    Args:
        variance: which sigma_t^2: "beta" (beta_t) or "beta_tilde" (beta_tilde_t).
        model_variance: sigma_t^2 itself.
        loss_weight: w(t) = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)) (`scheduler.loss_weight`).
        mean_part: ||mu_tilde - mu_theta||^2 / (2 sigma_t^2) / D (`scheduler.gaussian_kl_mean_part`), (B,).
        weighted_noise_error: w(t) ||eps - eps_hat||^2 / D, the same number written with the noise (Eq. 12), (B,).
        variance_part: (beta_tilde_t / sigma_t^2 - 1 + log(sigma_t^2 / beta_tilde_t)) / 2 per dimension
            (`scheduler.gaussian_kl_variance_part`): 0 for sigma_t^2 = beta_tilde_t; the same for every image.
        kl: L_t per dimension, `scheduler.gaussian_kl` of the two Gaussians averaged over D, (B,): mean_part +
            variance_part.
        kl_bpd: the same in bits/dim, (B,).
    """

    variance: str
    model_variance: float
    loss_weight: float
    mean_part: torch.Tensor
    weighted_noise_error: torch.Tensor
    variance_part: float
    kl: torch.Tensor
    kl_bpd: torch.Tensor


@dataclass
class PosteriorAtT(BaseOutput):
    """The true posterior q(x_{t-1} | x_t, x_0) = N(mu_tilde, beta_tilde_t I) beside the model's p_theta(x_{t-1} | x_t)
    = N(mu_theta, sigma_t^2 I) at one t, for one draw x_t ~ q(x_t | x_0) (`DDPMHubPipeline.posterior_at_t`).

    mu_theta comes from the model's eps_hat with x_0 NOT clipped (the notes' Eq. 11), so that its gap to mu_tilde is
    exactly sqrt-weighted eps - eps_hat. Image tensors are (B, C, H, W), float64.

    Args:
        timestep: t (0-based; the paper's x_{t+1}), >= 1.
        original_sample: x_0, on the 8-bit grid.
        sample: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
        noise: eps.
        noise_pred: eps_hat = eps_theta(x_t, t).
        posterior_mean: mu_tilde_t(x_t, x_0) = posterior_x0 x_0 + posterior_xt x_t (`scheduler.q_posterior_mean`).
        model_mean: mu_theta(x_t, t) = model_xt x_t - model_eps eps_hat (`scheduler.learned_mean`).
        mean_difference: mu_tilde - mu_theta.
        posterior_variance: beta_tilde_t.
        coefficients: the four numbers of the two means (`scheduler.mean_coefficients`): posterior_x0, posterior_xt,
            model_xt, model_eps.
        terms: L_t split into its mean and variance parts, for sigma_t^2 = beta_t ("beta") and beta_tilde_t
            ("beta_tilde").
        vb_bpd: the bound's term as `scheduler.vb_terms_bpd` computes it (x_0 clipped when the scheduler clips,
            sigma_t^2 from its `variance_type`), bits/dim, (B,).
    """

    timestep: int
    original_sample: torch.Tensor
    sample: torch.Tensor
    noise: torch.Tensor
    noise_pred: torch.Tensor
    posterior_mean: torch.Tensor
    model_mean: torch.Tensor
    mean_difference: torch.Tensor
    posterior_variance: float
    coefficients: dict
    terms: dict
    vb_bpd: torch.Tensor


def _per_dim(values: torch.Tensor) -> torch.Tensor:
    """(B, ...) per-element values -> (B,) means over every non-batch dim."""
    return values.reshape(values.shape[0], -1).mean(dim=1)


class BoundMixin:
    """The bound's walks, for a pipeline with `unet_forward`, `scheduler`, `device`, `num_classes` and
    `_class_labels`."""

    def _bound_inputs(self, images: torch.Tensor, class_labels) -> tuple[torch.Tensor, torch.Tensor | None, str]:
        """x_0 as float64, its labels and the decoder of L_0.

        Images (B, C, H, W) in [-1, 1] are rounded to the 8-bit grid of the "discretized" decoder; points (B, D) of
        a model with `sample_dim` (`DDPMHubMLP`, `MixtureDenoiser`) are continuous data, any finite values, with the
        "gaussian" decoder (see the scheduler's bound section). Labels: (B,) long, the null class for None on a
        conditional model, or None for an unconditional one.
        """
        shape = self.sample_shape
        if not torch.is_tensor(images) or tuple(images.shape[1:]) != shape or images.ndim != len(shape) + 1:
            got = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise ValueError(f"`images` must be a (B, {', '.join(map(str, shape))}) tensor, got {got}.")
        if not torch.isfinite(images).all():
            raise ValueError("`images` must hold finite values.")
        if len(shape) == 1:
            x_0, decoder = images.to(self.device, torch.float64), "gaussian"
        else:
            if images.min() < -1 or images.max() > 1:
                raise ValueError("`images` must hold values in [-1, 1].")
            x_0, decoder = self.scheduler.quantize_to_pixel_bins(images.to(self.device, torch.float64)), "discretized"
        labels = self._class_labels(class_labels, images.shape[0])
        if labels is None and self.num_classes is not None:
            labels = torch.full((images.shape[0],), self.num_classes, dtype=torch.long, device=self.device)
        return x_0, labels, decoder

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
            images: x_0 in [-1, 1], (B, C, H, W), rounded to the 8-bit grid the decoder is defined on; or points
                (B, D) for a model with `sample_dim` (continuous data, the Gaussian decoder).
            class_labels: the digit(s) the model is conditioned on: an int, B ints, a (B,) tensor, or None (the
                unconditional model: the null class of a conditional model).
            generator: seeds the noise of every x_t.
            timesteps: the timesteps to visit, in the order given (default: every training step, descending).
            batch_size: at most this many images per U-Net call (timesteps are batched when B is smaller).
        """
        x_0, labels, decoder = self._bound_inputs(images, class_labels)
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
            )  # (K B, C, H, W) or (K B, D), one draw per timestep in order
            x_0_rows = x_0.repeat(len(chunk), *([1] * (x_0.ndim - 1)))
            x_t = self.scheduler.add_noise(x_0_rows, noise, t)
            labels_rows = None if labels is None else labels.repeat(len(chunk))
            model_output = self.unet_forward(x_t.to(self.unet.dtype), t, labels_rows).double()
            vb = self.scheduler.vb_terms_bpd(model_output, x_0_rows, x_t, t, decoder=decoder)  # (K B,)
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
            images: x_0 in [-1, 1], (B, C, H, W), rounded to the 8-bit grid; or points (B, D) (see `bound_steps`).
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
        the larger (0.077 vs 0.038 bits/dim). `bits_per_dim` (a fresh x_t ~ q(x_t | x_0) for every term) is the
        low-variance KL estimate.

        Args:
            image: x_0 in [-1, 1], (C, H, W) or (1, C, H, W), rounded to the 8-bit grid; or one point (D,) or
                (1, D) for a model with `sample_dim`.
            num_draws: how many trajectories (>= 2).
            class_labels: one label, or None (unconditional: the null class).
            generator: seeds the trajectories.
        """
        if not isinstance(num_draws, int) or num_draws < 2:
            raise ValueError(f"`num_draws` must be an integer >= 2, got {num_draws!r}.")
        one = self.sample_shape
        if torch.is_tensor(image) and image.ndim == len(one):
            image = image.unsqueeze(0)
        if torch.is_tensor(image) and image.shape[0] != 1:
            shape = ", ".join(map(str, one))
            raise ValueError(
                f"`image` must be one image or point, ({shape}) or (1, {shape}), got {tuple(image.shape)}."
            )
        x_0, labels, decoder = self._bound_inputs(image, class_labels)
        x_0 = x_0.expand(num_draws, *x_0.shape[1:])  # (N, C, H, W) or (N, D), one row per trajectory
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
            kl_form = kl_form + scheduler.vb_terms_bpd(model_output, x_0, x_t, timestep, decoder=decoder)
            trajectory_form = trajectory_form + scheduler.trajectory_terms_bpd(
                model_output, x_0, x_prev, x_t, timestep, decoder=decoder
            )
            x_prev = x_t
        trajectory_form = trajectory_form + scheduler.trajectory_prior_bpd(x_prev)
        return ElboEstimates(kl_form=kl_form, trajectory_form=trajectory_form)

    @torch.inference_mode()
    def posterior_at_t(
        self, images: torch.Tensor, t: int, class_labels=None, generator: torch.Generator | None = None
    ) -> PosteriorAtT:
        """The bound's term at one t >= 1, with every number in it: the true posterior's mean and variance beside
        the model's mean, their coefficients, and L_t computed as its mean part two ways and as the full KL.

        x_t ~ q(x_t | x_0) is drawn with `generator` as `bound_steps(..., timesteps=[t])` draws it (the same seed
        gives the same x_t). Every formula is the scheduler's: `q_posterior_mean`, `posterior_variance`,
        `learned_mean`, `mean_coefficients`, `fixed_variance`, `loss_weight`, `gaussian_kl` and its two parts.

        Args:
            images: x_0 in [-1, 1], (B, C, H, W), rounded to the 8-bit grid; or points (B, D) (see `bound_steps`).
            t: the timestep, in [1, T - 1] (at t = 0 the bound's term is the decoder: beta_tilde_0 = 0).
            class_labels: as in `bound_steps`.
            generator: seeds eps.
        """
        steps = self.scheduler.config.num_train_timesteps
        if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t < steps:
            raise ValueError(
                f"Invalid `t`={t!r}: allowed values are integers in [1, {steps - 1}] (at t = 0 the bound's term is "
                "the decoder -log p(x_0 | x_1), not a KL)."
            )
        scheduler = self.scheduler
        x_0, labels, decoder = self._bound_inputs(images, class_labels)
        noise = torch.randn(x_0.shape, generator=generator, dtype=torch.float64).to(self.device)
        timesteps = torch.full((x_0.shape[0],), t, device=self.device)
        x_t = scheduler.add_noise(x_0, noise, timesteps)
        model_output = self.unet_forward(x_t.to(self.unet.dtype), timesteps, labels).double()
        noise_pred = scheduler.p_mean_variance(model_output, x_t, timesteps)["pred_epsilon"]  # raw, not clipped
        posterior_mean = scheduler.q_posterior_mean(x_0, x_t, t)
        model_mean = scheduler.learned_mean(x_t, t, noise_pred)
        posterior_variance = scheduler.posterior_variance(t, dtype=torch.float64)  # beta_tilde_t, 0-d
        log_posterior_variance = posterior_variance.log()
        noise_error = _per_dim((noise - noise_pred) ** 2)  # ||eps - eps_hat||^2 / D
        terms = {}
        for variance in ("beta", "beta_tilde"):
            model_variance = scheduler.fixed_variance(t, variance, dtype=torch.float64)  # sigma_t^2, 0-d
            log_model_variance = model_variance.log()
            weight = float(scheduler.loss_weight(t, variance, dtype=torch.float64))
            kl = _per_dim(
                scheduler.gaussian_kl(posterior_mean, log_posterior_variance, model_mean, log_model_variance)
            )
            terms[variance] = PosteriorKL(
                variance=variance,
                model_variance=float(model_variance),
                loss_weight=weight,
                mean_part=_per_dim(scheduler.gaussian_kl_mean_part(posterior_mean, model_mean, log_model_variance)),
                weighted_noise_error=weight * noise_error,
                variance_part=float(scheduler.gaussian_kl_variance_part(log_posterior_variance, log_model_variance)),
                kl=kl,
                kl_bpd=kl / math.log(2.0),
            )
        return PosteriorAtT(
            timestep=t,
            original_sample=x_0,
            sample=x_t,
            noise=noise,
            noise_pred=noise_pred,
            posterior_mean=posterior_mean,
            model_mean=model_mean,
            mean_difference=posterior_mean - model_mean,
            posterior_variance=float(posterior_variance),
            coefficients=scheduler.mean_coefficients(t),
            terms=terms,
            vb_bpd=scheduler.vb_terms_bpd(model_output, x_0, x_t, timesteps, decoder=decoder),
        )
