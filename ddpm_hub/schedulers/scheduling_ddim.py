"""DDIM sampling (Song et al. 2021) on the DDPM scheduler's formulas.

DDIM keeps the forward marginals q(x_t | x_0) of DDPM and changes only the reverse step:

    x_{t-1} = sqrt(alpha_bar_{t-1}) x_0_pred + sqrt(1 - alpha_bar_{t-1} - sigma_t^2) eps_pred + sigma_t z   (Eq. 12)
    sigma_t = eta sqrt(beta_tilde_t)                                                                      (Eq. 16)

eta = 0 is deterministic; eta = 1 is DDPM's ancestral step with sigma_t^2 = beta_tilde_t; eta must be in [0, 1]
(beyond 1, 1 - alpha_bar_{t-1} - sigma_t^2 turns negative). Every quantity (alpha_bar, x_0 from eps, beta_tilde)
comes from `DDPMHubScheduler`; this file adds only Eq. 12 and 16.
"""

from typing import Literal

import numpy as np
import torch
from diffusers.configuration_utils import register_to_config
from diffusers.utils.torch_utils import randn_tensor

# diffusers' loader copies along only the files a module imports itself (not what those import in turn): the
# scheduling_ddpm file imports .bound_terms, .display and .schedules, and bound_terms imports .likelihood, so this
# file names them all too, for a saved folder to load with DDIM.
from .bound_terms import BoundTermsMixin  # noqa: F401
from .display import DisplayMixin  # noqa: F401
from .likelihood import mean_bits  # noqa: F401
from .schedules import check_config  # noqa: F401
from .scheduling_ddpm import DDPMHubScheduler, DDPMHubSchedulerOutput, _check_variance_noise


class DDIMHubScheduler(DDPMHubScheduler):
    """DDIM: a non-Markovian reverse process with the same training objective as DDPM.

    Args:
        num_train_timesteps: T, the number of forward steps the model was trained with.
        beta_start: beta_0 of the `linear`, `scaled_linear` and `sigmoid` schedules.
        beta_end: beta_{T-1} of those schedules.
        beta_schedule: `linear`, `scaled_linear`, `squaredcos_cap_v2` (alias `cosine`) or `sigmoid`.
        trained_betas: explicit betas, overriding `beta_schedule`.
        clip_sample: clip the predicted x_0 to [-clip_sample_range, clip_sample_range].
        set_alpha_to_one: alpha_bar after the last step is 1 (else alpha_bar_0), as in diffusers.
        steps_offset: added to every inference timestep with `leading` spacing.
        prediction_type: `epsilon`, `sample` or `v_prediction`.
        thresholding: dynamic thresholding of the predicted x_0; overrides `clip_sample`.
        dynamic_thresholding_ratio: the percentile of |x_0| used as the threshold.
        clip_sample_range: the bound of `clip_sample`.
        sample_max_value: the largest threshold dynamic thresholding may use.
        timestep_spacing: `leading`, `trailing` or `linspace`.
        rescale_betas_zero_snr: rescale the betas so the last step has zero SNR.
    """

    _compatibles = ["DDIMScheduler", "DDPMScheduler", "DDPMHubScheduler"]

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2", "cosine", "sigmoid"] = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        clip_sample: bool = True,
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        prediction_type: Literal["epsilon", "sample", "v_prediction"] = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: Literal["leading", "trailing", "linspace"] = "leading",
        rescale_betas_zero_snr: bool = False,
    ):
        # Not super().__init__: that would register DDPM-only keys (variance_type) in this config.
        self._validate_config()
        self._build_schedule(alpha_bar_0_after_last_step=not set_alpha_to_one)
        self.final_alpha_cumprod = self.alphas_cumprod_padded[0]  # diffusers' name, read by CycleDiffusion, LEDITS++

    def _previous_timestep(self, timestep: int) -> int:
        """From a t between two inference timesteps (diffusers' DDIM steps from any t), the next inference timestep
        below t, or -1 below the last: a chain entered anywhere continues on the timesteps the model is asked at."""
        if self._previous is None or timestep in self._previous or not 0 <= timestep < len(self):
            return super()._previous_timestep(timestep)
        return max((s for s in self._previous if s < timestep), default=-1)

    def _get_variance(self, timestep: int | torch.Tensor, prev_timestep: int | torch.Tensor) -> torch.Tensor:
        """diffusers' `DDIMScheduler._get_variance`, for pipelines that call it (CycleDiffusion, LEDITS++):
        beta_tilde of the step prev_timestep -> timestep (any prev_timestep < 0 means after the last step), 0-d."""
        beta_tilde = self._step_variances(int(timestep), int(prev_timestep), (1,))[1]
        return beta_tilde.float().reshape(())

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        eta: float = 0.0,
        use_clipped_model_output: bool = False,
        generator: torch.Generator | None = None,
        variance_noise: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> DDPMHubSchedulerOutput | tuple:
        """One DDIM step x_t -> x_{t-1} (Eq. 12 of Song et al. 2021).

        Args:
            model_output: the model's output at (x_t, t), (B, C, H, W).
            timestep: t, one of `self.timesteps` (or any t in [0, T): see `previous_timestep`).
            sample: x_t, (B, C, H, W).
            eta: in [0, 1]: 0 for deterministic DDIM, 1 for DDPM's posterior variance.
            use_clipped_model_output: recompute eps from the clipped x_0 before using it in the direction term.
                False here, as in diffusers; `DDPMHubPipeline` passes True by default.
            generator: the random generator for z ~ N(0, I) (used when eta > 0).
            variance_noise: z itself, (B, C, H, W), instead of drawing it with `generator`.
            return_dict: return a `DDPMHubSchedulerOutput`; if False a tuple in its field order.
        """
        if not 0 <= eta <= 1:  # also False for NaN
            raise ValueError(
                f"Invalid `eta`={eta!r}: allowed values are numbers in [0, 1] (0: deterministic DDIM, 1: DDPM's "
                "posterior variance; above 1, 1 - alpha_bar_prev - sigma_t^2 < 0 and the step is NaN)."
            )
        _check_variance_noise(variance_noise, generator, sample)
        t = int(timestep)
        prev_t = self.previous_timestep(t)
        if eta > 0 and variance_noise is None:  # drawn at every step, even where sigma_t = 0, as diffusers draws it
            variance_noise = randn_tensor(  # shaped like x_t (a learned-variance output has 2C channels)
                sample.shape, generator=generator, device=model_output.device, dtype=model_output.dtype
            )
        out = self.step_from(model_output, t, prev_t, sample, variance_noise, eta, use_clipped_model_output)
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
        eta: float = 0.0,
        use_clipped_model_output: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The DDIM step t -> prev_t that `step` takes, with z given (None: no noise term, as with eta = 0): what
        `ddpm_hub.export` traces into ONNX. No Python branch depends on t or prev_t, so they may be tensors.

        Returns:
            (prev_sample, pred_original_sample, pred_epsilon, mean, std), the fields of `DDPMHubSchedulerOutput`.
        """
        if model_output.shape[1] == 2 * sample.shape[1]:  # a learned-variance model: DDIM sets its own sigma_t
            model_output = model_output[:, : sample.shape[1]]
        alpha_bar_prev = self._alpha_bar(prev_t, sample.shape)  # float64

        # 1. predicted x_0 and eps from the model output, Eq. 9 of Song et al. 2021
        pred_x0, pred_eps = self.split_model_output(model_output, sample, t)

        # 2. keep x_0 in the data range (clip or dynamic thresholding)
        pred_x0 = self.clip_or_threshold(pred_x0)
        if use_clipped_model_output:
            pred_eps = self.predict_noise_from_x0(sample, t, pred_x0)

        # 3. sigma_t = eta * sqrt(beta_tilde_t), Eq. 16; none on the chain's last step, the one to x_0, whatever t is
        # (it is already 0 there with set_alpha_to_one, where alpha_bar_prev = 1 makes beta_tilde 0)
        std = eta * self._step_variances(t, prev_t, sample.shape)[1].sqrt()
        std = torch.where(torch.as_tensor(prev_t, device=std.device) < 0, torch.zeros_like(std), std)

        # 4. x_{t-1} = sqrt(alpha_bar_{t-1}) x_0 + sqrt(1 - alpha_bar_{t-1} - sigma_t^2) eps (+ sigma_t z), Eq. 12
        direction = (1 - alpha_bar_prev - std**2).clamp(min=0).sqrt()  # >= 0 for eta <= 1; clamp: float64 rounding
        mean = alpha_bar_prev.sqrt().to(sample) * pred_x0 + direction.to(sample) * pred_eps
        std = std.to(sample)
        prev_sample = mean
        if eta > 0 and variance_noise is not None:
            prev_sample = mean + std * variance_noise
        return prev_sample, pred_x0, pred_eps, mean, std
