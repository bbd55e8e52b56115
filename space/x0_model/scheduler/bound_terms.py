"""The variational bound's side of `DDPMHubScheduler`, as a mixin: the loss weights and the bound's per-t terms.

`BoundTermsMixin` holds no state and no formula of the schedule: its methods combine the scheduler's own
(`_alpha_bar`, `_step_variances`, `q_posterior_mean`, `split_model_output`, `_log_variance`, ...) with the pure
functions of likelihood.py. `DDPMHubScheduler` inherits it, so each name here is a scheduler method
(`scheduler.vb_terms_bpd`, `scheduler.loss_weight`, ...). Like the scheduler, this file imports nothing from
`ddpm_hub`: it travels with the scheduler's code into saved pipelines.
"""

from typing import Literal

import torch

from .likelihood import (
    PIXEL_BIN_HALF_WIDTH,
    discretized_gaussian_log_likelihood,
    gaussian_kl,
    gaussian_kl_mean_part,
    gaussian_kl_variance_part,
    gaussian_log_likelihood,
    mean_bits,
    quantize_to_pixel_bins,
)
from .schedules import _invalid

DECODERS = ("discretized", "gaussian")


def _per_sample(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B,) per-sample values as (B, 1, ...) with `ndim` dims, to broadcast against a (B, ...) tensor."""
    return values.reshape(-1, *([1] * (ndim - 1)))


class BoundTermsMixin:
    """The ELBO's loss weights and the variational bound's terms of `DDPMHubScheduler` (mixed into it).

    The methods read the schedule through the scheduler's own methods and `config`; they are not meant for any
    other class.
    """

    # ------------------------------------------------------------------------------------------------------------
    # The ELBO weight and the other loss weights
    # ------------------------------------------------------------------------------------------------------------

    def loss_weight(
        self, t, variance: Literal["beta", "beta_tilde"] = "beta", dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """w(t) = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)), the weight that turns L_simple into the ELBO.

        The ELBO's denoising term for step t is w(t) ||eps - eps_theta(x_t, t)||^2 (Eq. 12); L_simple sets
        w(t) = 1. With sigma_t^2 = beta_tilde_t, w is infinite at t = 0 (beta_tilde_0 = 0); there, as in
        improved-diffusion, beta_tilde_1 stands in. Same shape as t; float32 unless `dtype`.
        """
        steps = (t if torch.is_tensor(t) else torch.tensor(t)).long()
        alpha_t, beta_t = self._forward_step_coefficients(steps, (1,))
        alpha_bar_t = self._alpha_bar(steps, (1,))
        if variance == "beta":
            sigma2 = beta_t
        elif variance == "beta_tilde":
            if self.config.num_train_timesteps > 1:
                steps = torch.where(steps == 0, 1, steps)
            sigma2 = self._step_variances(steps, steps - 1, (1,))[1]
        else:
            raise _invalid("variance", variance, "'beta', 'beta_tilde'")
        return self._schedule_value(beta_t**2 / (2 * sigma2 * alpha_t * (1 - alpha_bar_t)), t, dtype)

    def normalized_loss_weight(self, t, variance: Literal["beta", "beta_tilde"] = "beta") -> torch.Tensor:
        """w(t) / mean_s w(s) over s = 0 .. T-1: the ELBO weight of `loss_weight`, scaled to mean 1 so that trading
        L_simple for it keeps the learning rate's meaning (`train.py --loss weighted`). Same shape as t."""
        every_t = torch.arange(self.config.num_train_timesteps)
        return self.loss_weight(t, variance) / self.loss_weight(every_t, variance).mean()

    def min_snr_loss_weight(self, t, gamma: float = 5.0) -> torch.Tensor:
        """Min-SNR-gamma weight (Hang et al. 2023): min(SNR(t), gamma) / SNR(t), written for this scheduler's
        `prediction_type` (the x_0 error weighted by min(SNR, gamma), expressed in the eps, x_0 or v error).

        Same shape as t.
        """
        snr = self.snr(t)
        clipped = torch.clamp(snr, max=gamma)
        if self.config.prediction_type == "epsilon":
            return clipped / snr
        if self.config.prediction_type == "v_prediction":
            return clipped / (snr + 1)
        return clipped

    def x0_loss_weight(self, t, variance: Literal["beta", "beta_tilde"] = "beta") -> torch.Tensor:
        """The weight of ||x_0 - x0_theta(x_t, t)||^2 in the term at t: the notes' x_0-matching form (004),

            term_t = alpha_bar_{t-1} beta_t^2 / (2 sigma_t^2 (1 - alpha_bar_t)^2) ||x_0 - x0_theta||^2

        (the x_0 coefficient of mu_tilde, squared, over 2 sigma_t^2). Since x_0 - x0_theta = -(eps - eps_theta) /
        sqrt(SNR(t)), it is the eps-form weight `loss_weight` times SNR(t); computed that way. Same shape as t;
        sigma_t^2 = beta_t or beta_tilde_t as in `loss_weight`.
        """
        return self.loss_weight(t, variance=variance) * self.snr(t)

    # ------------------------------------------------------------------------------------------------------------
    # The variational bound (Ho et al. 2020, Eq. 5; improved-diffusion's `_vb_terms_bpd` and `calc_bpd_loop`)
    #
    # In the paper's 1-based indices (x_0 the image, x_1 ... x_T the chain; this scheduler's timestep t holds x_{t+1}):
    #   -log p_theta(x_0) <= L_T + sum_{t=1}^{T-1} L_t + L_0, with
    #   L_T = KL(q(x_T | x_0) || N(0, I))                                   prior matching
    #   L_t = KL(q(x_t | x_{t+1}, x_0) || p_theta(x_t | x_{t+1}))           denoising matching, at timestep t >= 1
    #   L_0 = -log p_theta(x_0 | x_1)                                       reconstruction (the decoder), t = 0
    # so the term at timestep t is L_t. Values are per pixel ("per dim"), in nats unless the name says bpd (bits per
    # dim: nats / ln 2, averaged over C x H x W, or over D for (B, D) data). As in `step`, the mean of p_theta uses
    # the clipped x_0 when `clip_sample` is set (improved-diffusion's `clip_denoised=True`).
    #
    # Two decoders p_theta(x_0 | x_1) (`decoder=`):
    #   "discretized": 8-bit images; each pixel value owns a bin of N(mu_theta(x_1), sigma^2) (DDPM Sec. 3.3), a
    #       probability, so the bound is in bits/dim of the 8-bit image. sigma^2 as `p_mean_variance` gives it.
    #   "gaussian": continuous data (points of a 2-D mixture); a density N(x_0; mu_theta(x_1), sigma_1^2) with
    #       sigma_1^2 = beta_1 (this scheduler's `betas[0]`) for both fixed variance types. beta_tilde_1 = 0 is no
    #       density, and beta_1 is what sigma^2 = beta gives that step: for x_0 ~ N(0, I) it is the exact reverse
    #       variance there, so with the exact denoiser the model's joint is q's and the bound is -log p(x_0). A
    #       learned variance keeps the model's own sigma_1^2.
    # ------------------------------------------------------------------------------------------------------------

    # The likelihood helpers, kept as the scheduler's names (the functions are likelihood.py's)
    PIXEL_BIN_HALF_WIDTH = PIXEL_BIN_HALF_WIDTH
    gaussian_kl = staticmethod(gaussian_kl)
    gaussian_kl_mean_part = staticmethod(gaussian_kl_mean_part)
    gaussian_kl_variance_part = staticmethod(gaussian_kl_variance_part)
    gaussian_log_likelihood = staticmethod(gaussian_log_likelihood)
    quantize_to_pixel_bins = staticmethod(quantize_to_pixel_bins)
    discretized_gaussian_log_likelihood = staticmethod(discretized_gaussian_log_likelihood)

    def _bound_timesteps(self, t, batch: int) -> torch.Tensor:
        """t as a (B,) long tensor (an int or a 0-d tensor is repeated), checked to lie in [0, T)."""
        t = torch.as_tensor(t, dtype=torch.long).reshape(-1)
        t = t.expand(batch) if t.numel() == 1 else t
        steps = self.config.num_train_timesteps
        if t.shape != (batch,) or t.min() < 0 or t.max() >= steps:
            raise _invalid("t", t.tolist(), f"one int or {batch} ints in [0, {steps}) (num_train_timesteps)")
        return t

    def _clipped_posterior_log_variance(self, t: torch.Tensor, ndim: int) -> torch.Tensor:
        """log beta_tilde_t with beta_tilde_0 = 0 replaced by beta_tilde_1 (improved-diffusion's
        `posterior_log_variance_clipped`), (B, 1, ...) with `ndim` dims, to broadcast against x_t."""
        clipped = torch.where(t == 0, torch.ones_like(t), t) if len(self.betas) > 1 else t
        variance = torch.where(t == 0, self.posterior_variance(clipped), self.posterior_variance(t))
        return _per_sample(variance.clamp(min=1e-20).log(), ndim)

    def _decoder_log_likelihood(self, x_0: torch.Tensor, p: dict[str, torch.Tensor], decoder: str) -> torch.Tensor:
        """log p_theta(x_0 | x_1) per element, in nats, for `decoder` ("discretized" or "gaussian"), x_0's shape."""
        if decoder == "discretized":
            return self.discretized_gaussian_log_likelihood(x_0, p["mean"], 0.5 * p["log_variance"])
        if decoder != "gaussian":
            raise _invalid("decoder", decoder, ", ".join(repr(d) for d in DECODERS))
        log_variance = p["log_variance"]
        if not str(self.config.variance_type).startswith("learned"):  # sigma_1^2 = beta_1, see the section comment
            log_variance = torch.full_like(log_variance, float(self.betas_float64[0].log()))
        return self.gaussian_log_likelihood(x_0, p["mean"], log_variance)

    def p_mean_variance(self, model_output: torch.Tensor, x_t: torch.Tensor, t) -> dict[str, torch.Tensor]:
        """The model's reverse step p_theta(x_{t-1} | x_t) = N(mean, e^log_variance), as `step` forms it.

        The same phases as `step` (model output -> x_0 and eps, clip, posterior mean at the predicted x_0, sigma_t
        from `variance_type`) for any (B,) timesteps, over single steps t -> t - 1. One difference, for the bound
        only: with a fixed variance, sigma_0^2 = beta_tilde_1 (beta_tilde_0 is 0, a decoder with no width), as
        improved-diffusion and the DDPM code do.

        Args:
            model_output: (B, C, H, W) (2C channels for learned variances).
            x_t: (B, C, H, W).
            t: an int or (B,) timesteps.

        Returns:
            dict with `mean`, `log_variance` (both broadcasting to (B, C, H, W)), `pred_original_sample` (the
            clipped x_0) and `pred_epsilon` (eps_theta, from the raw model output), each (B, C, H, W).
        """
        t = self._bound_timesteps(t, x_t.shape[0]).to(x_t.device)
        model_output, predicted_variance = self._split_learned_variance(model_output, x_t)
        pred_x0, pred_eps = self.split_model_output(model_output, x_t, t)
        pred_x0 = self.clip_or_threshold(pred_x0)
        mean = self.q_posterior_mean(pred_x0, x_t, t)
        log_variance = self._log_variance(t, t - 1, predicted_variance, x_t.shape).to(x_t)
        if predicted_variance is None:
            first = _per_sample(t == 0, x_t.ndim)
            clipped = self._clipped_posterior_log_variance(t, x_t.ndim).to(x_t)
            log_variance = torch.where(first, clipped, log_variance)
        return {"mean": mean, "log_variance": log_variance, "pred_original_sample": pred_x0, "pred_epsilon": pred_eps}

    def prior_bpd(self, x_0: torch.Tensor) -> torch.Tensor:
        """L_T = KL(q(x_T | x_0) || N(0, I)) in bits/dim, (B,) for x_0 (B, C, H, W) or (B, D).

        q(x_T | x_0) = N(sqrt(alpha_bar_T) x_0, (1 - alpha_bar_T) I): no parameter of the model enters it.
        """
        last = self.config.num_train_timesteps - 1
        mean = self.add_noise(x_0, torch.zeros_like(x_0), torch.tensor([last]))  # sqrt(alpha_bar_T) x_0
        log_variance = torch.log(1 - self._alpha_bar(last, x_0.shape).to(x_0))
        return mean_bits(self.gaussian_kl(mean, log_variance, 0.0, 0.0))

    def vb_terms_bpd(
        self,
        model_output: torch.Tensor,
        x_0: torch.Tensor,
        x_t: torch.Tensor,
        t,
        decoder: Literal["discretized", "gaussian"] = "discretized",
    ) -> torch.Tensor:
        """The bound's term at timestep t, in bits/dim, (B,) (improved-diffusion's `_vb_terms_bpd`).

        In the paper's indices (x_{t+1} is the sample at timestep t): L_t = KL(q(x_t | x_{t+1}, x_0) ||
        p_theta(x_t | x_{t+1})) for t >= 1, a KL of two Gaussians (`gaussian_kl`), and L_0 = -log p_theta(x_0 | x_1),
        the decoder, for t = 0 (see the section comment for the two decoders).

        Args:
            model_output: the model's output at (x_t, t), (B, C, H, W) or (B, D) (2C or 2D for learned variances).
            x_0: the data, (B, C, H, W) images on the 8-bit grid, or (B, D) points.
            x_t: a sample of q(x_t | x_0) (or of the forward chain), x_0's shape.
            t: an int or (B,) timesteps; rows may differ.
            decoder: "discretized" (8-bit images) or "gaussian" (continuous data).
        """
        t = self._bound_timesteps(t, x_t.shape[0]).to(x_t.device)
        p = self.p_mean_variance(model_output, x_t, t)
        true_mean = self.q_posterior_mean(x_0, x_t, t)
        kl = mean_bits(
            self.gaussian_kl(
                true_mean, self._clipped_posterior_log_variance(t, x_t.ndim).to(x_t), p["mean"], p["log_variance"]
            )
        )
        if decoder not in DECODERS:
            raise _invalid("decoder", decoder, ", ".join(repr(d) for d in DECODERS))
        if not (t == 0).any():
            return kl
        return torch.where(t == 0, -mean_bits(self._decoder_log_likelihood(x_0, p, decoder)), kl)

    def trajectory_terms_bpd(
        self,
        model_output: torch.Tensor,
        x_0: torch.Tensor,
        x_prev: torch.Tensor,
        x_t: torch.Tensor,
        t,
        decoder: Literal["discretized", "gaussian"] = "discretized",
    ) -> torch.Tensor:
        """The single-trajectory estimate's term at timestep t, in bits/dim, (B,), at one draw of the forward chain.

        In the paper's indices (x_{t+1} is the sample at timestep t): log q(x_{t+1} | x_t) - log p_theta(x_t | x_{t+1})
        for t >= 1, and log q(x_1 | x_0) - log p_theta(x_0 | x_1) (the decoder, as in `vb_terms_bpd`) for t = 0.

        Summed over t and added to `trajectory_prior_bpd(x_T)`, it is -log p_theta(x_{0:T}) / q(x_{1:T} | x_0) per dim:
        the same expectation as the KL form L_T + sum_t `vb_terms_bpd`, with a far larger variance.

        Args:
            model_output: the model's output at (x_t, t), (B, C, H, W) or (B, D).
            x_0: the data, (B, C, H, W) images on the 8-bit grid, or (B, D) points.
            x_prev: the chain's sample one step earlier (timestep t - 1; x_0 when t = 0), x_0's shape.
            x_t: the sample at timestep t, `q_step(x_prev, t, noise)`, x_0's shape.
            t: an int or (B,) timesteps.
            decoder: "discretized" (8-bit images) or "gaussian" (continuous data).
        """
        t = self._bound_timesteps(t, x_t.shape[0]).to(x_t.device)
        p = self.p_mean_variance(model_output, x_t, t)
        forward_mean = self.q_step(x_prev, t, torch.zeros_like(x_prev))  # sqrt(alpha_t) x_{t-1}
        forward_log_variance = self._step_variances(t, t - 1, x_t.shape)[0].log().to(x_t)  # log beta_t, float64
        log_q = mean_bits(self.gaussian_log_likelihood(x_t, forward_mean, forward_log_variance))
        log_p = mean_bits(self.gaussian_log_likelihood(x_prev, p["mean"], p["log_variance"]))
        if decoder not in DECODERS:
            raise _invalid("decoder", decoder, ", ".join(repr(d) for d in DECODERS))
        if (t == 0).any():
            log_p = torch.where(t == 0, mean_bits(self._decoder_log_likelihood(x_0, p, decoder)), log_p)
        return log_q - log_p

    def trajectory_prior_bpd(self, x_T: torch.Tensor) -> torch.Tensor:
        """-log p(x_T) in bits/dim, (B,), for the prior p(x_T) = N(0, I) of the reverse chain."""
        return -mean_bits(self.gaussian_log_likelihood(x_T, torch.zeros_like(x_T), 0.0))
