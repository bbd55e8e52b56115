"""The DDPM scheduler: every formula of the DDPM notes, each computed in one place.

This file holds the sampling side (the schedule's coefficients, q, the posterior, x_0 <-> eps, `set_timesteps`,
`step`); `BoundTermsMixin` (bound_terms.py), which the scheduler inherits, the loss weights and the bound's terms;
`DisplayMixin` (display.py) the numbers a page shows beside the formulas (`coefficients`, `mean_coefficients`,
`step_table`, `marginal_pixel_density`);
schedules.py the betas of each `beta_schedule`; likelihood.py the Gaussian KL and log-densities.

Notation (Ho et al. 2020, "Denoising Diffusion Probabilistic Models"; the notes use the same symbols):

    beta_t                 variance of the noise added by one forward step
    alpha_t = 1 - beta_t
    alpha_bar_t = prod_{s<=t} alpha_s
    q(x_t | x_{t-1})   = N(sqrt(alpha_t) x_{t-1}, beta_t I)                          one forward step (Eq. 2)
    q(x_t | x_0)       = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)                closed form (Eq. 4)
    q(x_{t-1} | x_t, x_0) = N(mu_tilde_t(x_t, x_0), beta_tilde_t I)                   true posterior (Eq. 6-7)
    x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)                       x_0 from noise (Eq. 15)
    mu_theta = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_t)       learned mean (Eq. 11)
    w(t) = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t))                          ELBO weight (Eq. 12)

Timesteps are 0-based as in diffusers: t = 0 is the first noising step and alpha_bar_{-1} := 1.

The schedule is computed and kept in float64 (`betas_float64`, `alphas_cumprod_padded_float64`); every coefficient
is computed from those in float64 and cast to the dtype of the tensor it multiplies. The float32 copies (`betas`,
`alphas_cumprod`, ...) are for diffusers' code and for display.

The config uses the same keys as `diffusers.DDPMScheduler`, so configs move between the two both ways. These files
import nothing from `ddpm_hub`, only each other (relatively): they are copied verbatim into saved pipelines and
loaded there as remote code.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from .bound_terms import BoundTermsMixin
from .display import DisplayMixin

# diffusers' loader copies along only the files a module imports itself: bound_terms imports .likelihood, so this
# file names it too, for a saved folder to load with stock diffusers.
from .likelihood import mean_bits  # noqa: F401
from .schedules import VARIANCE_TYPES, _extract, _invalid, betas_from_config, check_config, spaced_timesteps


@dataclass
class DDPMHubSchedulerOutput(BaseOutput):
    """Output of one reverse step x_t -> x_{t-1}. Every tensor is (B, C, H, W).

    Args:
        prev_sample: x_{t-1}, a sample of p_theta(x_{t-1} | x_t).
        pred_original_sample: x_0 as predicted at this step (after clipping or thresholding).
        pred_epsilon: the noise eps this step used: from the model output, or recomputed from the clipped x_0 when
            DDIM's `use_clipped_model_output` is set.
        mean: the mean of p_theta(x_{t-1} | x_t), i.e. mu_tilde_t(x_t, x_0) evaluated at the predicted x_0.
        std: the standard deviation sigma_t of the noise added at this step (0 at the last step).
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor
    pred_epsilon: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def _check_variance_noise(variance_noise: torch.Tensor | None, generator, sample: torch.Tensor) -> None:
    """`step`'s z: at most one of `variance_noise` and `generator`, and z shaped like the sample."""
    if variance_noise is None:
        return
    if generator is not None:
        raise ValueError("Pass either `generator` or `variance_noise` to `step`, not both.")
    if variance_noise.shape != sample.shape:
        raise _invalid(
            "variance_noise",
            f"<tensor of shape {tuple(variance_noise.shape)}>",
            f"tensors of the sample's shape {tuple(sample.shape)}",
        )


class DDPMHubScheduler(BoundTermsMixin, DisplayMixin, SchedulerMixin, ConfigMixin):
    """Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2), with each formula of the method exposed by name.

    Args:
        num_train_timesteps: T, the number of forward (noising) steps the model was trained with.
        beta_start: beta_0 of the `linear`, `scaled_linear` and `sigmoid` schedules.
        beta_end: beta_{T-1} of the `linear`, `scaled_linear` and `sigmoid` schedules.
        beta_schedule: how beta_t grows: `linear` (Ho et al.), `scaled_linear` (linear in sqrt(beta), latent
            diffusion), `squaredcos_cap_v2` (the cosine schedule of Nichol & Dhariwal; `cosine` is accepted as its
            name), `sigmoid` (GeoDiff).
        trained_betas: explicit betas (length `num_train_timesteps`), overriding `beta_schedule`.
        variance_type: sigma_t^2 of p(x_{t-1} | x_t): `fixed_small` = beta_tilde_t (the posterior variance),
            `fixed_large` = beta_t; the `_log` variants compute the same through the log (`fixed_large_log` is
            GLIDE's "max_log"); `learned` = the model outputs sigma_t^2 itself (diffusers' meaning; negative values
            are an error); `learned_log` = the model outputs log sigma_t^2 (improved-diffusion's LEARNED);
            `learned_range` = the model outputs v and log sigma_t^2 = v' log beta_t + (1 - v') log beta_tilde_t with
            v' = (v + 1) / 2 (Nichol & Dhariwal).
        clip_sample: clip the predicted x_0 to [-clip_sample_range, clip_sample_range].
        prediction_type: what the model predicts: `epsilon` (the noise), `sample` (x_0), or `v_prediction`
            (v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0, Salimans & Ho 2022).
        thresholding: dynamic thresholding of the predicted x_0 (Saharia et al. 2022); overrides `clip_sample`.
        dynamic_thresholding_ratio: the percentile of |x_0| used as the threshold.
        clip_sample_range: the bound of `clip_sample`.
        sample_max_value: the largest threshold dynamic thresholding may use.
        timestep_spacing: how inference timesteps are picked from the T training steps: `leading`, `trailing`,
            `linspace` (Table 2 of Lin et al. 2023).
        steps_offset: added to every inference timestep with `leading` spacing.
        rescale_betas_zero_snr: rescale the betas so the last step has (nearly) zero SNR (Lin et al. 2023):
            alpha_bar_{T-1} = 2^-24, not 0, so that every variance type and eps-prediction stay finite.
    """

    _compatibles = ["DDPMScheduler", "DDIMScheduler"]
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2", "cosine", "sigmoid"] = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        variance_type: Literal[
            "fixed_small",
            "fixed_small_log",
            "fixed_large",
            "fixed_large_log",
            "learned",
            "learned_log",
            "learned_range",
        ] = "fixed_small",
        clip_sample: bool = True,
        prediction_type: Literal["epsilon", "sample", "v_prediction"] = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: Literal["leading", "trailing", "linspace"] = "leading",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
    ):
        self._validate_config()
        self._build_schedule()

    # ------------------------------------------------------------------------------------------------------------
    # Set-up: validation and the schedules
    # ------------------------------------------------------------------------------------------------------------

    def _validate_config(self) -> None:
        """Rejects every config value this scheduler would not handle (`check_config`), naming the key and the
        allowed values; stores `beta_schedule` by its canonical name so diffusers can read this config."""
        schedule = check_config(self.config)
        if schedule != self.config.beta_schedule:
            self.register_to_config(beta_schedule=schedule)

    def _build_schedule(self, alpha_bar_0_after_last_step: bool = False) -> None:
        """Computes beta_t, alpha_t, alpha_bar_t in float64, shape (T,), and keeps them in float64 and float32.

        alpha_bar_{-1}, the value used after the last step, is 1 (DDPM), or alpha_bar_0 when
        `alpha_bar_0_after_last_step` (DDIM's `set_alpha_to_one=False`). It is stored as entry 0 of
        `alphas_cumprod_padded[_float64]`, shape (T + 1,), so that entry t + 1 is alpha_bar_t for every t in
        [-1, T - 1] without a branch.
        """
        config = self.config
        steps = config.num_train_timesteps
        betas = betas_from_config(config)
        alphas = 1.0 - betas
        alphas_cumprod = np.cumprod(alphas)
        first = alphas_cumprod[0] if alpha_bar_0_after_last_step else 1.0
        self.betas_float64 = torch.from_numpy(betas)
        self.alphas_cumprod_padded_float64 = torch.from_numpy(np.concatenate([[first], alphas_cumprod]))
        self.betas = self.betas_float64.float()
        self.alphas = torch.from_numpy(alphas).float()
        self.alphas_cumprod = torch.from_numpy(alphas_cumprod).float()
        self.alphas_cumprod_padded = self.alphas_cumprod_padded_float64.float()
        self.one = torch.tensor(1.0)

        self.init_noise_sigma = 1.0  # standard deviation of x_T ~ N(0, I)
        self.custom_timesteps = False
        self.num_inference_steps = None
        self.timesteps = torch.from_numpy(np.arange(0, steps)[::-1].copy())
        self._previous = None  # maps an inference timestep to the one after it; None means t - 1
        # Algorithm 2 returns the mean at the chain's last step (to x_0); True adds sigma z there too, to see what the
        # rule changes (with sigma^2 = beta_tilde nothing: beta_tilde of the step to alpha_bar = 1 is 0). Not config.
        self.noise_at_last_step = False

    # Every coefficient below is float64, shaped (B, 1, 1, 1) (or (1, 1, 1, 1) for a scalar t) to broadcast against
    # `shape`; the formulas cast them to their tensors' dtype and device.

    def _alpha_bar(self, t: int | torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """alpha_bar_t for t in [0, T - 1]; every t < 0 means "after the last step": alpha_bar_{-1} = 1 (alpha_bar_0
        with DDIM's `set_alpha_to_one=False`)."""
        t = t if torch.is_tensor(t) else torch.tensor(t)
        return _extract(self.alphas_cumprod_padded_float64, t.clamp(min=-1) + 1, shape)

    def _marginal_coefficients(self, t, shape) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t), the coefficients of x_0 and eps in q(x_t | x_0)."""
        alpha_bar_t = self._alpha_bar(t, shape)
        return alpha_bar_t.sqrt(), (1 - alpha_bar_t).sqrt()

    def _forward_step_coefficients(self, t, shape) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha_t and beta_t of the single forward step q(x_t | x_{t-1}), from the float64 betas."""
        beta_t = _extract(self.betas_float64, t, shape)
        return 1 - beta_t, beta_t

    def _step_coefficients(self, t, prev_t, shape):
        """alpha_bar_t, alpha_bar_{prev}, and the alpha and beta of the (possibly strided) step prev -> t.

        With fewer inference steps than training steps, one reverse step jumps from t to prev_t < t - 1; the step
        then behaves like a single forward step with alpha = alpha_bar_t / alpha_bar_prev (Nichol & Dhariwal, Sec. 4).
        In float64 this beta is beta_t to ~1e-12 when prev_t = t - 1 (in float32 it would be off by ~4e-4 at t = 1).
        """
        alpha_bar_t = self._alpha_bar(t, shape)
        alpha_bar_prev = self._alpha_bar(prev_t, shape)
        alpha_t = alpha_bar_t / alpha_bar_prev
        return alpha_bar_t, alpha_bar_prev, alpha_t, 1 - alpha_t

    def _step_variances(self, t, prev_t, shape) -> tuple[torch.Tensor, torch.Tensor]:
        """beta and beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar_t) beta of the step prev_t -> t (Eq. 7)."""
        alpha_bar_t, alpha_bar_prev, _, beta = self._step_coefficients(t, prev_t, shape)
        return beta, (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta

    @staticmethod
    def _schedule_value(values: torch.Tensor, t, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A (B, 1, 1, 1) float64 coefficient as a public schedule value: float32 (or `dtype`), shaped like t (0-d
        for an int)."""
        if not torch.is_tensor(t):
            return values.to(dtype).reshape(())
        return values.to(t.device, dtype).reshape(t.shape)

    # ------------------------------------------------------------------------------------------------------------
    # The forward process q
    # ------------------------------------------------------------------------------------------------------------

    def q_step(self, x_prev: torch.Tensor, t: int | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One forward step, a sample of q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I).

        Args:
            x_prev: x_{t-1}, (B, C, H, W).
            t: the step's index, an int or (B,).
            noise: eps ~ N(0, I), (B, C, H, W).

        Returns:
            x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps, (B, C, H, W).
        """
        alpha_t, beta_t = self._forward_step_coefficients(t, x_prev.shape)
        return alpha_t.sqrt().to(x_prev) * x_prev + beta_t.sqrt().to(x_prev) * noise

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The closed form, a sample of q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I).

        Two Gaussian steps merge into one, so t steps of `q_step` collapse into a single draw (Eq. 4).

        Args:
            original_samples: x_0, (B, C, H, W).
            noise: eps ~ N(0, I), (B, C, H, W).
            timesteps: t, an int or (B,).

        Returns:
            x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, (B, C, H, W).
        """
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar = (
            c.to(original_samples) for c in self._marginal_coefficients(timesteps, original_samples.shape)
        )
        return sqrt_alpha_bar * original_samples + sqrt_one_minus_alpha_bar * noise

    q_sample = add_noise

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The v-prediction target v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0, (B, C, H, W)."""
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar = (
            c.to(sample) for c in self._marginal_coefficients(timesteps, sample.shape)
        )
        return sqrt_alpha_bar * noise - sqrt_one_minus_alpha_bar * sample

    # ------------------------------------------------------------------------------------------------------------
    # The true posterior q(x_{t-1} | x_t, x_0) and what the model predicts
    # ------------------------------------------------------------------------------------------------------------

    def q_posterior_mean(self, x_0, x_t, t, prev_t=None) -> torch.Tensor:
        """Mean mu_tilde_t of the true posterior q(x_{t-1} | x_t, x_0) (Eq. 7), (B, C, H, W).

        mu_tilde_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
                   + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t

        `prev_t` (default t - 1) is the step the reverse chain goes to; it is earlier than t - 1 with strided steps.
        """
        prev_t = t - 1 if prev_t is None else prev_t
        alpha_bar_t, alpha_bar_prev, alpha_t, beta_t = self._step_coefficients(t, prev_t, x_t.shape)
        x_0_coefficient = (alpha_bar_prev.sqrt() * beta_t / (1 - alpha_bar_t)).to(x_t)
        x_t_coefficient = (alpha_t.sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar_t)).to(x_t)
        return x_0_coefficient * x_0 + x_t_coefficient * x_t

    def posterior_variance(self, t, prev_t=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Variance beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t of q(x_{t-1} | x_t, x_0) (Eq. 7).

        Returns (B,) for (B,) timesteps, or a 0-d tensor for a scalar t; float32 unless `dtype` (torch.float64: the
        schedule's own precision).
        """
        prev_t = t - 1 if prev_t is None else prev_t
        return self._schedule_value(self._step_variances(t, prev_t, (1,))[1], t, dtype)

    def fixed_variance(
        self, t, kind: Literal["beta", "beta_tilde"] = "beta_tilde", prev_t=None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """The two fixed choices of sigma_t^2 in p_theta(x_{t-1} | x_t) (Sec. 3.2): beta_t, or beta_tilde_t.

        beta_t is optimal when x_0 ~ N(0, I); beta_tilde_t when x_0 is one fixed point. Both give similar samples.
        float32 unless `dtype`.
        """
        if kind == "beta_tilde":
            return self.posterior_variance(t, prev_t, dtype)
        if kind == "beta":
            prev_t = t - 1 if prev_t is None else prev_t
            return self._schedule_value(self._step_variances(t, prev_t, (1,))[0], t, dtype)
        raise _invalid("kind", kind, "'beta', 'beta_tilde'")

    def predict_x0_from_noise(self, x_t: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """x_0 estimated from the (predicted) noise, the closed form solved for x_0 (Eq. 15), (B, C, H, W).

        x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)
        """
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar = (c.to(x_t) for c in self._marginal_coefficients(t, x_t.shape))
        return (x_t - sqrt_one_minus_alpha_bar * noise) / sqrt_alpha_bar

    def predict_noise_from_x0(self, x_t: torch.Tensor, t, x_0: torch.Tensor) -> torch.Tensor:
        """The noise implied by x_t and an x_0: eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar = (c.to(x_t) for c in self._marginal_coefficients(t, x_t.shape))
        return (x_t - sqrt_alpha_bar * x_0) / sqrt_one_minus_alpha_bar

    def learned_mean(self, x_t: torch.Tensor, t, noise: torch.Tensor, prev_t=None) -> torch.Tensor:
        """mu_theta(x_t, t), the mean of p_theta(x_{t-1} | x_t) from the predicted noise (Eq. 11), (B, C, H, W).

        mu_theta = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_t)

        Equal to `q_posterior_mean` at x_0 = `predict_x0_from_noise` (without clipping).
        """
        prev_t = t - 1 if prev_t is None else prev_t
        _, _, alpha_t, beta_t = self._step_coefficients(t, prev_t, x_t.shape)
        noise_coefficient = (beta_t / self._marginal_coefficients(t, x_t.shape)[1]).to(x_t)
        return (x_t - noise_coefficient * noise) / alpha_t.sqrt().to(x_t)

    def split_model_output(self, model_output: torch.Tensor, sample: torch.Tensor, t):
        """Turns the model's raw output into (x_0, eps) according to `prediction_type`.

        Args:
            model_output: (B, C, H, W): eps, x_0 or v.
            sample: x_t, (B, C, H, W).
            t: int or (B,).

        Returns:
            (pred_x0, pred_eps), each (B, C, H, W), not clipped.
        """
        if self.config.prediction_type == "epsilon":
            return self.predict_x0_from_noise(sample, t, model_output), model_output
        if self.config.prediction_type == "sample":
            return model_output, self.predict_noise_from_x0(sample, t, model_output)
        # v_prediction: x_0 = sqrt(a) x_t - sqrt(1 - a) v and eps = sqrt(a) v + sqrt(1 - a) x_t, with a = alpha_bar_t
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar = (c.to(sample) for c in self._marginal_coefficients(t, sample.shape))
        pred_x0 = sqrt_alpha_bar * sample - sqrt_one_minus_alpha_bar * model_output
        pred_eps = sqrt_alpha_bar * model_output + sqrt_one_minus_alpha_bar * sample
        return pred_x0, pred_eps

    def training_target(self, x_0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What the model learns to output for x_t = add_noise(x_0, noise, t): eps, x_0 or v, (B, C, H, W)."""
        if self.config.prediction_type == "epsilon":
            return noise
        if self.config.prediction_type == "sample":
            return x_0
        return self.get_velocity(x_0, noise, timesteps)

    def clip_or_threshold(self, pred_x0: torch.Tensor) -> torch.Tensor:
        """Keeps the predicted x_0 in the data range: dynamic thresholding (Saharia et al. 2022) or clipping."""
        if self.config.thresholding:
            return self._threshold_sample(pred_x0)
        if self.config.clip_sample:
            return pred_x0.clamp(-self.config.clip_sample_range, self.config.clip_sample_range)
        return pred_x0

    def _threshold_sample(self, sample: torch.Tensor) -> torch.Tensor:
        """Clamps each sample to [-s, s] and divides by s, s = a high percentile of |x_0| (at least 1). (B, C, H, W)"""
        dtype, shape = sample.dtype, sample.shape
        flat = sample.reshape(shape[0], -1)
        if dtype not in (torch.float32, torch.float64):
            flat = flat.float()  # quantile needs float32/64; float64 stays float64
        s = torch.quantile(flat.abs(), self.config.dynamic_thresholding_ratio, dim=1)
        s = s.clamp(min=1, max=self.config.sample_max_value).unsqueeze(1)  # (B, 1)
        return (flat.clamp(-s, s) / s).reshape(shape).to(dtype)

    # ------------------------------------------------------------------------------------------------------------
    # Signal-to-noise ratio, the ELBO weight, the score
    # ------------------------------------------------------------------------------------------------------------

    def snr(self, t) -> torch.Tensor:
        """SNR(t) = alpha_bar_t / (1 - alpha_bar_t) of q(x_t | x_0) (Kingma et al. 2021). Same shape as t."""
        return self._schedule_value(self._snr(t, (1,)), t)

    def _snr(self, t, shape) -> torch.Tensor:
        alpha_bar_t = self._alpha_bar(t, shape)
        return alpha_bar_t / (1 - alpha_bar_t)

    def score_from_noise(self, x_t: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """The score grad_x log q(x_t) ~= -eps_theta / sqrt(1 - alpha_bar_t), (B, C, H, W).

        This is the link to Langevin dynamics and score matching (Song & Ermon 2019): predicting the noise is
        predicting the score, scaled.
        """
        sqrt_one_minus_alpha_bar = self._marginal_coefficients(t, x_t.shape)[1].to(x_t)
        return -noise / sqrt_one_minus_alpha_bar

    # ------------------------------------------------------------------------------------------------------------
    # The diffusers scheduler contract: set_timesteps, step, scale_model_input
    # ------------------------------------------------------------------------------------------------------------

    def scale_model_input(self, sample: torch.Tensor, timestep: int | None = None) -> torch.Tensor:
        """DDPM does not scale its input; kept for interchangeability with other schedulers."""
        return sample

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: list[int] | None = None,
    ) -> None:
        """Picks the timesteps of the reverse chain, as `diffusers.DDPMScheduler` does.

        Args:
            num_inference_steps: how many reverse steps to take (1 to `num_train_timesteps`).
            device: where to put `self.timesteps`.
            timesteps: explicit, strictly descending timesteps in [0, num_train_timesteps) instead.
        """
        steps = self.config.num_train_timesteps
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError("Pass exactly one of `num_inference_steps` or `timesteps` to `set_timesteps`.")
        if timesteps is not None:
            timesteps = np.asarray(list(timesteps), dtype=np.int64)
            if timesteps.ndim != 1 or len(timesteps) == 0 or np.any(np.diff(timesteps) >= 0):
                raise _invalid("timesteps", timesteps.tolist(), "a non-empty, strictly descending list")
            if timesteps[0] >= steps or timesteps[-1] < 0:
                raise _invalid("timesteps", timesteps.tolist(), f"integers in [0, {steps}) (num_train_timesteps)")
            self.custom_timesteps = True
            self.num_inference_steps = len(timesteps)
        else:
            if not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= steps:
                raise _invalid(
                    "num_inference_steps", num_inference_steps, f"integers in [1, {steps}] (num_train_timesteps)"
                )
            self.custom_timesteps = False
            self.num_inference_steps = num_inference_steps
            timesteps = spaced_timesteps(self.config, num_inference_steps)
        self.timesteps = torch.from_numpy(timesteps).to(device)
        following = np.append(timesteps[1:], -1)
        self._previous = dict(zip(timesteps.tolist(), following.tolist(), strict=True))

    def previous_timestep(self, timestep: int | torch.Tensor) -> int | torch.Tensor:
        """The timestep the reverse chain goes to from `timestep`: the next inference timestep, or -1 at the end.

        An int for an int; for a tensor, a long tensor of the same shape and device, as diffusers returns.
        """
        if torch.is_tensor(timestep):
            previous = [self._previous_timestep(int(t)) for t in timestep.reshape(-1).tolist()]
            return torch.tensor(previous, dtype=torch.long, device=timestep.device).reshape(timestep.shape)
        return self._previous_timestep(int(timestep))

    def _previous_timestep(self, timestep: int) -> int:
        steps = self.config.num_train_timesteps
        if not 0 <= timestep < steps:
            raise _invalid("timestep", timestep, f"integers in [0, {steps}) (num_train_timesteps)")
        if self._previous is None:
            return timestep - 1
        if timestep not in self._previous:
            raise _invalid("timestep", timestep, f"the timesteps set by `set_timesteps` ({self.timesteps.tolist()})")
        return self._previous[timestep]

    def _split_learned_variance(self, model_output: torch.Tensor, sample: torch.Tensor):
        """For learned variances the model outputs 2C channels: the prediction, then the variance values."""
        if self.config.variance_type in ("learned", "learned_log", "learned_range"):
            if model_output.shape[1] != 2 * sample.shape[1]:
                raise ValueError(
                    f"variance_type={self.config.variance_type!r} needs a model output with 2 x {sample.shape[1]} "
                    f"channels (prediction, then variance), got {model_output.shape[1]}."
                )
            return torch.split(model_output, sample.shape[1], dim=1)
        return model_output, None

    def _log_variance(self, t, prev_t, predicted_variance, shape, variance_type: str | None = None) -> torch.Tensor:
        """log sigma_t^2 of p_theta(x_{prev} | x_t) for `variance_type` (default: the config's).

        float64 and broadcastable against `shape` for the fixed types; for the learned ones the dtype and shape of
        `predicted_variance`, (B, C, H, W).
        """
        variance_type = variance_type or self.config.variance_type
        if variance_type not in VARIANCE_TYPES:
            raise _invalid("variance_type", variance_type, ", ".join(VARIANCE_TYPES))
        if variance_type == "learned_log":  # the model outputs log sigma_t^2 (improved-diffusion's LEARNED)
            return predicted_variance
        if variance_type == "learned":  # diffusers' meaning: the model outputs sigma_t^2 itself
            if not bool((predicted_variance >= 0).all()):
                raise ValueError(
                    "variance_type='learned' reads the model's variance channels as sigma_t^2 (diffusers' meaning), "
                    "which must be >= 0, but this output has negative or NaN values. For a model that outputs "
                    "log sigma_t^2 (improved-diffusion's LEARNED), use variance_type='learned_log'."
                )
            return predicted_variance.log()
        beta, beta_tilde = self._step_variances(t, prev_t, shape)
        log_beta_tilde = beta_tilde.clamp(min=1e-20).log()  # beta_tilde = 0 where the step lands on alpha_bar = 1
        if variance_type in ("fixed_small", "fixed_small_log"):
            return log_beta_tilde
        if variance_type in ("fixed_large", "fixed_large_log"):
            return beta.log()
        # "learned_range": interpolate between the two fixed choices in log space (Nichol & Dhariwal, Eq. 15)
        fraction = (predicted_variance + 1) / 2
        return fraction * beta.log().to(fraction) + (1 - fraction) * log_beta_tilde.to(fraction)

    def step_std(self, t, prev_t, predicted_variance: torch.Tensor | None = None, shape=(1,)) -> torch.Tensor:
        """sigma_t, the standard deviation of p_theta(x_{t-1} | x_t) for this scheduler's `variance_type`.

        Returns a tensor that broadcasts against `shape` (or against `predicted_variance` when learned): float64
        for the fixed variance types, the dtype of `predicted_variance` for the learned ones.
        """
        return torch.exp(0.5 * self._log_variance(t, prev_t, predicted_variance, shape))

    def _get_variance(
        self,
        t: int | torch.Tensor,
        predicted_variance: torch.Tensor | None = None,
        variance_type: str | None = None,
    ) -> torch.Tensor:
        """diffusers' `DDPMScheduler._get_variance`, for code written against it: the step from t to
        `previous_timestep(t)`, in diffusers' per-type convention (`step` uses `step_std` instead).

        Returns sigma_t^2 for `fixed_small`, `fixed_large` and `learned` (the model output itself); sigma_t for
        `fixed_small_log`; log sigma_t^2 for `fixed_large_log`, `learned_range` and `learned_log`. float32, 0-d for
        the fixed types.
        """
        variance_type = variance_type or self.config.variance_type
        if variance_type == "learned":
            return predicted_variance
        t = int(t)
        log_variance = self._log_variance(t, self.previous_timestep(t), predicted_variance, (1,), variance_type)
        if log_variance.dtype == torch.float64:  # a fixed type
            log_variance = log_variance.float().reshape(())
        if variance_type in ("fixed_small", "fixed_large"):
            return log_variance.exp()
        if variance_type == "fixed_small_log":
            return torch.exp(0.5 * log_variance)
        return log_variance

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        variance_noise: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> DDPMHubSchedulerOutput | tuple:
        """One reverse step: a sample of p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I) (Algorithm 2).

        Args:
            model_output: the model's output at (x_t, t), (B, C, H, W) (2C channels for learned variances).
            timestep: t, one of `self.timesteps`.
            sample: x_t, (B, C, H, W).
            generator: the random generator for the noise z ~ N(0, I).
            variance_noise: z itself, (B, C, H, W), instead of drawing it with `generator`; zeros give the mean.
            return_dict: return a `DDPMHubSchedulerOutput`; if False a tuple in its field order
                (prev_sample, pred_original_sample, pred_epsilon, mean, std).
        """
        _check_variance_noise(variance_noise, generator, sample)
        t = int(timestep)
        prev_t = self.previous_timestep(t)
        # no noise on the chain's last step, the one to x_0 (Algorithm 2 returns the mean there), whatever its t:
        # trailing spacing and custom timesteps end above t = 0; `step_from` multiplies z by sigma_t = 0 there
        if (prev_t >= 0 or self.noise_at_last_step) and variance_noise is None:
            variance_noise = randn_tensor(  # shaped like x_t (a learned-variance output has 2C channels)
                sample.shape, generator=generator, device=model_output.device, dtype=model_output.dtype
            )
        out = self.step_from(model_output, t, prev_t, sample, variance_noise)
        if not return_dict:
            return out
        return DDPMHubSchedulerOutput(*out)

    def step_from(
        self,
        model_output: torch.Tensor,
        t: int | torch.Tensor,
        prev_t: int | torch.Tensor,
        sample: torch.Tensor,
        variance_noise: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The reverse step t -> prev_t that `step` takes, with z given: what `ddpm_hub.export` traces into ONNX.

        No Python branch depends on t or prev_t, so they may be tensors (0-d or (1,) long) that a traced graph takes
        as inputs: the last step's sigma_t = 0 is a `torch.where`, not an `if`.

        Args:
            model_output: the model's output at (x_t, t), (B, C, H, W) (2C channels for learned variances).
            t: the step's timestep; prev_t: the one it goes to (-1 after the last step).
            sample: x_t, (B, C, H, W).
            variance_noise: z ~ N(0, I), (B, C, H, W); None only on the last step (prev_t < 0).

        Returns:
            (prev_sample, pred_original_sample, pred_epsilon, mean, std), the fields of `DDPMHubSchedulerOutput`.
        """
        model_output, predicted_variance = self._split_learned_variance(model_output, sample)

        # 1. predicted x_0 and eps from the model output, Eq. 15 of Ho et al. 2020
        pred_x0, pred_eps = self.split_model_output(model_output, sample, t)

        # 2. keep x_0 in the data range (clip or dynamic thresholding)
        clipped_x0 = self.clip_or_threshold(pred_x0)

        # 3. mean of p_theta(x_{t-1} | x_t): the posterior mean mu_tilde at the predicted x_0, Eq. 7 of Ho et al.
        mean = self.q_posterior_mean(clipped_x0, sample, t, prev_t)

        # 4. sigma_t from the variance choice, 0 on the chain's last step (unless `noise_at_last_step`, the Space's
        # switch to show what that rule changes)
        std = self.step_std(t, prev_t, predicted_variance, sample.shape).to(sample)
        if not self.noise_at_last_step:
            std = torch.where(torch.as_tensor(prev_t, device=std.device) < 0, torch.zeros_like(std), std)
        prev_sample = mean if variance_noise is None else mean + std * variance_noise
        return prev_sample, clipped_x0, pred_eps, mean, std

    def __len__(self) -> int:
        return self.config.num_train_timesteps
