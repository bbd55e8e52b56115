"""The numbers a page shows beside the formulas, as a mixin of `DDPMHubScheduler`: the schedule's values at one t,
the two means' coefficients, the reverse chain's per-step table (what the static page reads), and the density of a
pixel of x_t ~ q(x_t | x_0).

`DisplayMixin` holds no state and no formula: each value is read off the scheduler's own methods (`_alpha_bar`,
`q_posterior_mean`, `learned_mean`, `step_from`, `add_noise`, ...), in float64. Like the scheduler, this file imports
nothing from `ddpm_hub`: it travels with the scheduler's code into saved pipelines.
"""

import math

import torch

from .schedules import _invalid


class DisplayMixin:
    """Values for display, of `DDPMHubScheduler` (mixed into it); not meant for any other class."""

    def coefficients(self, t: int) -> dict[str, float]:
        """The schedule's numbers at one timestep t, as python floats, for showing the formulas with live values.

        Keys: beta_t, alpha_t, alpha_bar_t, sqrt_alpha_t, sqrt_beta_t, sqrt_alpha_bar_t, sqrt_one_minus_alpha_bar_t,
        beta_tilde_t, snr_t, log_snr_t, loss_weight_t.
        """
        t = int(t)
        if not 0 <= t < self.config.num_train_timesteps:
            raise _invalid("t", t, f"integers in [0, {self.config.num_train_timesteps})")
        # each value from the helper the formulas themselves use, in float64
        alpha, beta = (float(c) for c in self._forward_step_coefficients(t, (1,)))
        alpha_bar = float(self._alpha_bar(t, (1,)))
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar = (float(c) for c in self._marginal_coefficients(t, (1,)))
        snr = float(self._snr(t, (1,)))
        return {
            "beta_t": beta,
            "alpha_t": alpha,
            "alpha_bar_t": alpha_bar,
            "sqrt_alpha_t": math.sqrt(alpha),
            "sqrt_beta_t": math.sqrt(beta),
            "sqrt_alpha_bar_t": sqrt_alpha_bar,
            "sqrt_one_minus_alpha_bar_t": sqrt_one_minus_alpha_bar,
            "beta_tilde_t": float(self._step_variances(t, t - 1, (1,))[1]),
            "snr_t": snr,
            "log_snr_t": math.log(snr) if snr > 0 else float("-inf"),
            "loss_weight_t": float(self.loss_weight(t)),
        }

    def mean_coefficients(self, t: int, prev_t: int | None = None) -> dict[str, float]:
        """The two means of the step t -> prev_t (default t - 1) as linear combinations, python floats (float64):

            mu_tilde_t(x_t, x_0) = posterior_x0 * x_0 + posterior_xt * x_t                    (`q_posterior_mean`)
            mu_theta(x_t, t)     = model_xt * x_t - model_eps * eps_theta                    (`learned_mean`)

        with model_xt = 1 / sqrt(alpha_t) and model_eps = beta_t / (sqrt(1 - alpha_bar_t) sqrt(alpha_t)), read off the
        two methods' own formulas (no formula is written here): each mean evaluated at unit inputs.
        """
        t = int(t)
        if not 0 <= t < self.config.num_train_timesteps:
            raise _invalid("t", t, f"integers in [0, {self.config.num_train_timesteps})")
        prev_t = t - 1 if prev_t is None else int(prev_t)
        one, zero = torch.ones((1,), dtype=torch.float64), torch.zeros((1,), dtype=torch.float64)
        return {
            "posterior_x0": float(self.q_posterior_mean(one, zero, t, prev_t)),
            "posterior_xt": float(self.q_posterior_mean(zero, one, t, prev_t)),
            "model_xt": float(self.learned_mean(one, t, zero, prev_t)),
            "model_eps": -float(self.learned_mean(zero, t, one, prev_t)),
        }

    def marginal_pixel_density(self, x_0: torch.Tensor, t: int, values: torch.Tensor) -> torch.Tensor:
        """The density of one pixel of x_t ~ q(x_t | x_0), the pixel picked at random: the mixture over the D pixels
        of x_0 of N(sqrt(alpha_bar_t) x_0[i], 1 - alpha_bar_t), evaluated at `values`.

        The histogram of every pixel of many draws `add_noise(x_0, eps, t)` converges to it (each pixel is its own
        Gaussian; pooling them mixes the D Gaussians with equal weights).

        Args:
            x_0: one image, (C, H, W) or (1, C, H, W).
            t: the timestep, an int.
            values: where to evaluate the density, (K,).

        Returns:
            (K,) float64 densities.
        """
        x_0 = x_0.reshape(1, -1).double()  # (1, D)
        mean = self.add_noise(x_0, torch.zeros_like(x_0), torch.tensor([int(t)]))  # sqrt(alpha_bar_t) x_0, (1, D)
        log_variance = torch.log(1 - self._alpha_bar(int(t), (1, 1)))  # log(1 - alpha_bar_t), (1, 1)
        log_density = self.gaussian_log_likelihood(values.double().reshape(-1, 1), mean, log_variance)  # (K, D)
        return log_density.exp().mean(dim=1)

    def step_table(self, num_inference_steps: int, **step_options) -> list[dict]:
        """The reverse chain's steps at `num_inference_steps` as JSON-ready rows: what a page shows beside each step
        (its timesteps and the coefficients of `step`), computed here so that no other code derives them.

        Sets this scheduler's timesteps. `step_options` are `step`'s (DDIM's `eta`). Each row: `t`, `prev_t`
        (-1 after the last step), `alpha_bar_t`, `alpha_bar_prev`, `beta` (of the strided step prev_t -> t),
        `beta_tilde`, `sigma` (the std of the noise this step adds: 0 on the last step).
        """
        self.set_timesteps(num_inference_steps)
        rows = []
        for t in self.timesteps.tolist():
            prev_t = self.previous_timestep(t)
            alpha_bar_t, alpha_bar_prev, _, beta = self._step_coefficients(t, prev_t, (1,))
            row = {
                "t": t,
                "prev_t": prev_t,
                "alpha_bar_t": float(alpha_bar_t),
                "alpha_bar_prev": float(alpha_bar_prev),
                "beta": float(beta),
                "beta_tilde": float(self._step_variances(t, prev_t, (1,))[1]),
            }
            if self.config.get("variance_type", "fixed_small").startswith("learned"):
                row["sigma"] = None  # the model's output sets it, per pixel
            else:  # the std `step` itself computes (DDIM's eta included)
                zeros = torch.zeros(1, 1, 1, 1, dtype=torch.float64)
                row["sigma"] = float(self.step_from(zeros, t, prev_t, zeros, None, **step_options)[4].reshape(()))
            rows.append(row)
        return rows
