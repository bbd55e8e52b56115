"""Gaussian mixtures: data whose diffused marginals, score and ideal denoiser are known exactly.

For data drawn from a mixture of diagonal Gaussians

    p(x_0) = sum_k pi_k N(mu_k, diag s_k^2)                                 means (K, D), stds (K, D), weights (K,)

the forward process q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) maps each component to a Gaussian,
so the marginal at every t is again a mixture, with the same weights:

    q(x_t) = sum_k pi_k N(sqrt(alpha_bar_t) mu_k, diag(alpha_bar_t s_k^2 + 1 - alpha_bar_t))

Its density, its score grad log q(x_t), the posterior mean E[x_0 | x_t] and the Bayes-optimal noise prediction
E[eps | x_t] = -sqrt(1 - alpha_bar_t) grad log q(x_t) (Tweedie's formula) are all closed form. `GaussianMixture` holds
the distribution (sampling, exact log-density, score, `noised`); `MixtureDenoiser` wraps it with a scheduler into a
model with the U-Net's calling convention, the "truth" a trained network is compared with.

Everything is computed in float64 and returned in the dtype of the input. Schedule values (alpha_bar_t) and the
x_0 <-> eps conversion come from the scheduler; the Gaussian log-density is the scheduler's `gaussian_log_likelihood`.
"""

import math
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import FrozenDict
from diffusers.utils import BaseOutput
from torch import nn

from .schedulers.scheduling_ddpm import DDPMHubScheduler

MIXTURE_PRESETS = ("ring8", "two_blobs", "point", "standard_normal")
WEIGHT_SUM_TOLERANCE = 1e-5  # float32 weights (a softmax, a normalised histogram) sum to 1 within ~1e-7


def _invalid(key: str, value, allowed: str) -> ValueError:
    return ValueError(f"Invalid `{key}`={value!r}: allowed values are {allowed}.")


def _shape(value) -> str:
    return f"<tensor of shape {tuple(value.shape)}>"


class GaussianMixture:
    """p(x) = sum_k pi_k N(x; mu_k, diag s_k^2), a mixture of K diagonal Gaussians in D dimensions.

    Args:
        means: mu_k, (K, D).
        stds: s_k, the per-coordinate standard deviations, (K, D), all > 0.
        weights: pi_k, (K,), each >= 0, summing to 1 (within 1e-5; then renormalised exactly). None: uniform.

    The parameters are kept as float64 tensors on the CPU (`means`, `stds`, `weights`).
    """

    def __init__(self, means, stds, weights=None):
        means = torch.as_tensor(means, dtype=torch.float64).detach().cpu()
        stds = torch.as_tensor(stds, dtype=torch.float64).detach().cpu()
        if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1 or not torch.isfinite(means).all():
            raise _invalid("means", _shape(means), "finite (K, D) tensors with K, D >= 1")
        if stds.shape != means.shape:
            raise _invalid("stds", _shape(stds), f"tensors of the means' shape {tuple(means.shape)}")
        if not (torch.isfinite(stds).all() and (stds > 0).all()):
            raise _invalid("stds", f"<min {float(stds.min()):.3g}>", "finite numbers > 0")
        num_components = means.shape[0]
        if weights is None:
            weights = torch.full((num_components,), 1.0 / num_components, dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64).detach().cpu()
        if weights.shape != (num_components,):
            raise _invalid("weights", _shape(weights), f"({num_components},) tensors, one weight per component")
        if not (torch.isfinite(weights).all() and (weights >= 0).all()):
            raise _invalid("weights", weights.tolist(), "finite numbers >= 0")
        if abs(float(weights.sum()) - 1) > WEIGHT_SUM_TOLERANCE:
            raise _invalid("weights", weights.tolist(), f"weights summing to 1 (within {WEIGHT_SUM_TOLERANCE:g})")
        self.means = means
        self.stds = stds
        self.weights = weights / weights.sum()

    # ------------------------------------------------------------------------------------------------------------
    # Construction helpers
    # ------------------------------------------------------------------------------------------------------------

    @classmethod
    def preset(cls, name: str, spread: float = 1.0) -> "GaussianMixture":
        """A named 2-D mixture (D = 2). `spread` scales the distances between the components (their means), not
        their widths: larger spreads separate the modes more.

        Names (`MIXTURE_PRESETS`):
            ring8: 8 equal Gaussians (std 0.1) evenly spaced on a circle of radius `spread`.
            two_blobs: two uneven blobs: weight 0.7, an elongated one (stds 0.15, 0.25) at (-0.5, -0.5) spread, and
                weight 0.3, a small round one (std 0.1) at (0.75, 0.5) spread.
            point: one tight Gaussian (std 0.02) at (0.5, 0.5) spread, nearly a point mass.
            standard_normal: N(0, I), the one distribution the forward process leaves unchanged (spread is unused).
        """
        if name not in MIXTURE_PRESETS:
            raise _invalid("name", name, ", ".join(MIXTURE_PRESETS))
        if not (isinstance(spread, int | float) and math.isfinite(spread) and spread > 0):
            raise _invalid("spread", spread, "finite numbers > 0")
        if name == "ring8":
            angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
            means = spread * torch.stack([angles.cos(), angles.sin()], dim=1)  # (8, 2)
            return cls(means, torch.full((8, 2), 0.1, dtype=torch.float64))
        if name == "two_blobs":
            means = spread * torch.tensor([[-0.5, -0.5], [0.75, 0.5]], dtype=torch.float64)
            return cls(means, [[0.15, 0.25], [0.1, 0.1]], [0.7, 0.3])
        if name == "point":
            return cls(spread * torch.tensor([[0.5, 0.5]], dtype=torch.float64), [[0.02, 0.02]])
        return cls(torch.zeros(1, 2), torch.ones(1, 2))  # "standard_normal"

    @classmethod
    def gaussian(cls, std: float, dim: int = 2) -> "GaussianMixture":
        """N(0, std^2 I) in `dim` dimensions, one component: the data of the variance question (Ho et al. Sec. 3.2),
        whose exact reverse steps are Gaussian (`MixtureDenoiser.reverse_variance`)."""
        if not (isinstance(std, int | float) and math.isfinite(std) and std > 0):
            raise _invalid("std", std, "finite numbers > 0")
        if not isinstance(dim, int) or dim < 1:
            raise _invalid("dim", dim, "integers >= 1")
        return cls(torch.zeros(1, dim), torch.full((1, dim), float(std)))

    @property
    def num_components(self) -> int:
        """K."""
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        """D, the dimension of a sample."""
        return self.means.shape[1]

    def __repr__(self) -> str:
        return f"GaussianMixture(num_components={self.num_components}, dim={self.dim})"

    # ------------------------------------------------------------------------------------------------------------
    # The diffused mixture q(x_t)
    # ------------------------------------------------------------------------------------------------------------

    def _diffused(self, alpha_bar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means sqrt(alpha_bar) mu_k and variances alpha_bar s_k^2 + 1 - alpha_bar of the components of q(x_t).

        `alpha_bar` is float64, a 0-d tensor or (B, 1, 1) for one value per row; the results are (K, D) or (B, K, D).
        """
        means = alpha_bar.sqrt() * self.means.to(alpha_bar.device)
        variances = alpha_bar * self.stds.to(alpha_bar.device) ** 2 + (1 - alpha_bar)
        return means, variances

    def noised(self, alpha_bar: float | torch.Tensor) -> "GaussianMixture":
        """q(x_t) when x_0 ~ this mixture and x_t ~ N(sqrt(alpha_bar) x_0, (1 - alpha_bar) I): the mixture with
        means sqrt(alpha_bar) mu_k, stds sqrt(alpha_bar s_k^2 + 1 - alpha_bar) and the same weights.

        Args:
            alpha_bar: alpha_bar_t in [0, 1], a number or a 0-d tensor (e.g. `scheduler.alphas_cumprod[t]`).
        """
        alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float64).detach().cpu()
        if alpha_bar.ndim != 0 or not 0 <= float(alpha_bar) <= 1:
            shown = float(alpha_bar) if alpha_bar.ndim == 0 else _shape(alpha_bar)
            raise _invalid("alpha_bar", shown, "one number in [0, 1]")
        means, variances = self._diffused(alpha_bar)
        return GaussianMixture(means, variances.sqrt(), self.weights)

    # ------------------------------------------------------------------------------------------------------------
    # Sampling, density, score
    # ------------------------------------------------------------------------------------------------------------

    def sample(
        self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """n independent draws, (n, D) in `dtype`: a component k ~ Categorical(pi), then x = mu_k + s_k z, z ~ N(0, I).

        `generator` is a CPU generator; the draws are made in float64 on the CPU.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise _invalid("n", n, "integers >= 1")
        components = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)  # (n, D)
        return (self.means[components] + self.stds[components] * z).to(dtype)

    def _check_x(self, x: torch.Tensor, key: str = "x") -> None:
        if not torch.is_tensor(x) or x.ndim != 2 or x.shape[1] != self.dim:
            shown = _shape(x) if torch.is_tensor(x) else type(x).__name__
            raise _invalid(key, shown, f"(n, {self.dim}) tensors (D = {self.dim})")

    def _log_joint(self, x: torch.Tensor, means: torch.Tensor, variances: torch.Tensor) -> torch.Tensor:
        """log pi_k + log N(x; m_k, diag v_k) for every row of x (n, D) and component: (n, K), float64.

        `means`, `variances`: (K, D), or (n, K, D) for a different mixture per row.
        """
        log_normal = DDPMHubScheduler.gaussian_log_likelihood(x.double()[:, None, :], means, variances.log())
        return self.weights.to(x.device).log() + log_normal.sum(dim=-1)  # (n, K); log 0 = -inf drops a component

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x), exact, via logsumexp over the components: x (n, D) -> (n,), in x's dtype (differentiable)."""
        self._check_x(x)
        log_joint = self._log_joint(x, self.means.to(x.device), self.stds.to(x.device) ** 2)  # (n, K)
        return torch.logsumexp(log_joint, dim=1).to(x.dtype)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """p(k | x), the posterior probability that x came from component k: x (n, D) -> (n, K), rows sum to 1."""
        self._check_x(x)
        log_joint = self._log_joint(x, self.means.to(x.device), self.stds.to(x.device) ** 2)
        return torch.softmax(log_joint, dim=1).to(x.dtype)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """grad_x log p(x) = sum_k p(k | x) (mu_k - x) / s_k^2, exact: x (n, D) -> (n, D), in x's dtype."""
        self._check_x(x)
        means, variances = self.means.to(x.device), self.stds.to(x.device) ** 2
        posterior = torch.softmax(self._log_joint(x, means, variances), dim=1)  # (n, K)
        component_scores = (means - x.double()[:, None, :]) / variances  # (n, K, D)
        return (posterior[:, :, None] * component_scores).sum(dim=1).to(x.dtype)


@dataclass
class MixtureDenoiserOutput(BaseOutput):
    """Output of :class:`MixtureDenoiser`.

    Args:
        sample: (B, D), the exact posterior mean of what the scheduler's `prediction_type` names: E[eps | x_t]
            (epsilon), E[x_0 | x_t] (sample) or E[v | x_t] (v_prediction).
    """

    sample: torch.Tensor


class MixtureDenoiser(nn.Module):
    """The Bayes-optimal denoiser for data x_0 ~ `mixture` under `scheduler`'s forward process: a "model" with the
    U-Net's calling convention whose output is exact, E[eps | x_t] = -sqrt(1 - alpha_bar_t) grad log q(x_t).

    `oracle(x_t, t)` returns a `MixtureDenoiserOutput` whose `.sample` (B, D) is what `scheduler.step` expects for
    its `prediction_type` (E[eps | x_t] for the default `epsilon`), so it drops in where a trained network goes.
    It has no parameters. Besides `forward` it offers `eps_mean`, `x0_mean` and `score` for one timestep, and a
    minimal `config` (`sample_dim` = D; `num_class_embeds` = K: label k conditions on component k, label K is the
    unconditional "null class", as the U-Net's classifier-free guidance uses it).

    Args:
        mixture: p(x_0), a `GaussianMixture` with D-dimensional samples.
        scheduler: a `DDPMHubScheduler` (or `DDIMHubScheduler`): alpha_bar_t and the x_0 <-> eps conversions
            (`predict_noise_from_x0`, `get_velocity`, `score_from_noise`) are taken from it.
    """

    def __init__(self, mixture: GaussianMixture, scheduler: DDPMHubScheduler):
        super().__init__()
        if not isinstance(mixture, GaussianMixture):
            raise _invalid("mixture", type(mixture).__name__, "GaussianMixture instances")
        helpers = ("alphas_cumprod", "predict_noise_from_x0", "get_velocity", "score_from_noise")
        if not all(hasattr(scheduler, name) for name in helpers):
            raise _invalid("scheduler", type(scheduler).__name__, "DDPMHubScheduler or DDIMHubScheduler instances")
        self.mixture = mixture
        self.scheduler = scheduler
        self.config = FrozenDict(sample_dim=mixture.dim, num_class_embeds=mixture.num_components)

    @property
    def device(self) -> torch.device:
        """Where the oracle computes: the CPU (the mixture's parameters live there); what a pipeline reads."""
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """float64: a pipeline casts x_t to the model's dtype, and the oracle's answers are exact to float64."""
        return torch.float64

    # ------------------------------------------------------------------------------------------------------------
    # Inputs
    # ------------------------------------------------------------------------------------------------------------

    def _timesteps(self, timestep, batch: int) -> torch.Tensor:
        """An int, a 0-d or (1,) tensor, or a (B,) tensor of whole numbers in [0, T) -> (B,) long on the CPU."""
        steps = len(self.scheduler.alphas_cumprod)
        t = torch.as_tensor(timestep).detach().cpu().reshape(-1)
        t = t.expand(batch) if t.numel() == 1 else t
        allowed = f"an int, a 0-d tensor or a ({batch},) tensor of integers in [0, {steps})"
        if t.shape != (batch,) or t.dtype == torch.bool or t.is_complex():
            raise _invalid("timestep", _shape(torch.as_tensor(timestep)), allowed)
        if t.is_floating_point() and not bool((t == t.round()).all()):
            raise _invalid("timestep", t.tolist(), allowed)
        t = t.long()
        if bool(((t < 0) | (t >= steps)).any()):
            raise _invalid("timestep", t.tolist(), allowed)
        return t

    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_bar_t from the scheduler, float64, (B,) for (B,) long t."""
        padded = getattr(self.scheduler, "alphas_cumprod_padded_float64", None)
        if padded is not None:  # DDPMHubScheduler keeps the schedule in float64; entry t + 1 is alpha_bar_t
            return padded[t + 1]
        return self.scheduler.alphas_cumprod.double()[t]

    def _log_weight_mask(self, class_labels, batch: int, device) -> torch.Tensor | None:
        """0 for the labelled component, -inf for the others, (B, K); None when every row is unconditional."""
        if class_labels is None:
            return None
        k = self.mixture.num_components
        labels = torch.as_tensor(class_labels, device=device)
        allowed = f"({batch},) integer tensors in [0, {k}] ({k} = unconditional)"
        if labels.shape != (batch,) or labels.is_floating_point() or labels.dtype == torch.bool:
            raise _invalid("class_labels", _shape(labels), allowed)
        if bool(((labels < 0) | (labels > k)).any()):
            raise _invalid("class_labels", labels.tolist(), allowed)
        keep = (labels[:, None] == torch.arange(k, device=device)) | (labels[:, None] == k)  # (B, K)
        return torch.zeros(batch, k, dtype=torch.float64, device=device).masked_fill(~keep, -math.inf)

    # ------------------------------------------------------------------------------------------------------------
    # The exact posterior
    # ------------------------------------------------------------------------------------------------------------

    def x0_mean(self, sample: torch.Tensor, timestep, class_labels=None) -> torch.Tensor:
        """E[x_0 | x_t], exact: x_t (B, D) and t (int or (B,)) -> (B, D) in x_t's dtype.

        Given component k, x_0 and x_t are jointly Gaussian, so (per coordinate, v_k = alpha_bar s_k^2 + 1 - alpha_bar)

            E[x_0 | x_t, k] = mu_k + sqrt(alpha_bar) s_k^2 / v_k (x_t - sqrt(alpha_bar) mu_k)

        and E[x_0 | x_t] averages these with the posterior weights p(k | x_t) of the diffused mixture q(x_t).
        With `class_labels` (B,), row b conditions on component class_labels[b] (K: no condition).
        """
        mixture = self.mixture
        mixture._check_x(sample, "sample")
        batch, device = sample.shape[0], sample.device
        t = self._timesteps(timestep, batch)
        alpha_bar = self._alpha_bar(t).to(device)[:, None, None]  # (B, 1, 1)
        means, variances = mixture._diffused(alpha_bar)  # (B, K, D): the components of q(x_t)
        log_joint = mixture._log_joint(sample, means, variances)  # (B, K)
        mask = self._log_weight_mask(class_labels, batch, device)
        posterior = torch.softmax(log_joint if mask is None else log_joint + mask, dim=1)  # p(k | x_t), (B, K)
        x_t = sample.double()[:, None, :]  # (B, 1, D)
        gain = alpha_bar.sqrt() * mixture.stds.to(device) ** 2 / variances  # (B, K, D)
        component_x0 = mixture.means.to(device) + gain * (x_t - means)  # E[x_0 | x_t, k], (B, K, D)
        return (posterior[:, :, None] * component_x0).sum(dim=1).to(sample.dtype)

    def eps_mean(self, sample: torch.Tensor, timestep, class_labels=None) -> torch.Tensor:
        """E[eps | x_t] = (x_t - sqrt(alpha_bar_t) E[x_0 | x_t]) / sqrt(1 - alpha_bar_t), the scheduler's
        `predict_noise_from_x0` at the exact posterior mean (the relation is linear, so it holds in expectation).
        (B, D) in x_t's dtype; equal to -sqrt(1 - alpha_bar_t) grad log q(x_t) by Tweedie's formula."""
        t = self._timesteps(timestep, sample.shape[0])
        x0 = self.x0_mean(sample, t, class_labels).double()
        return self.scheduler.predict_noise_from_x0(sample.double(), t, x0).to(sample.dtype)

    def score(self, sample: torch.Tensor, timestep, class_labels=None) -> torch.Tensor:
        """grad log q(x_t), exact, through the scheduler's `score_from_noise`: (B, D) in x_t's dtype."""
        t = self._timesteps(timestep, sample.shape[0])
        eps = self.eps_mean(sample, t, class_labels).double()
        return self.scheduler.score_from_noise(sample.double(), t, eps).to(sample.dtype)

    # ------------------------------------------------------------------------------------------------------------
    # Gaussian data: the exact reverse variance and the bound's expected gap (the variance question)
    # ------------------------------------------------------------------------------------------------------------

    def reverse_variance(self) -> torch.Tensor:
        """Var[x_{t-1} | x_t] of the exact reverse step q(x_{t-1} | x_t) for one-component data N(mu, diag s^2):
        (T, D) float64, row t the step from timestep t to t - 1 (row 0: x_1 -> x_0 in the paper's indices).

        x_{t-1} ~ N(sqrt(alpha_bar_{t-1}) mu, v_{t-1}) and x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps are jointly
        Gaussian with v_t = alpha_bar_t s^2 + 1 - alpha_bar_t (the variance of q(x_t), `GaussianMixture.noised`), so

            Var[x_{t-1} | x_t] = v_{t-1} - alpha_t v_{t-1}^2 / v_t = beta_t v_{t-1} / v_t

        (using v_t = alpha_t v_{t-1} + beta_t). It is beta_tilde_t when s = 0 (x_0 one point) and beta_t when
        s = 1 (x_0 ~ N(0, I)), the two fixed choices of sigma_t^2 (Ho et al. 2020, Sec. 3.2). A mixture of several
        components has mixture-shaped reverse steps, no single variance: ValueError.
        """
        if self.mixture.num_components != 1:
            raise _invalid("mixture", f"<{self.mixture.num_components} components>", "one-component mixtures")
        steps = torch.arange(len(self.scheduler.betas))
        alpha_bar = self.scheduler._alpha_bar(steps, (1,))  # (T,), float64, alpha_bar_t
        alpha_bar_prev = self.scheduler._alpha_bar(steps - 1, (1,))  # alpha_bar_{t-1}, 1 before the first step
        beta = self.scheduler._step_variances(steps, steps - 1, (1,))[0]  # (T,)
        s2 = self.mixture.stds[0] ** 2  # (D,)
        v_t = alpha_bar[:, None] * s2 + 1 - alpha_bar[:, None]  # (T, D)
        v_prev = alpha_bar_prev[:, None] * s2 + 1 - alpha_bar_prev[:, None]
        return beta[:, None] * v_prev / v_t

    def expected_bound_gap(self, variance: str) -> float:
        """E_x_0[bound(x_0) - (-log p(x_0))] in bits/dim, exact, for one-component data and this oracle's chain with
        sigma_t^2 = beta_t (`variance="beta"`) or beta_tilde_t ("beta_tilde"), and the Gaussian decoder sigma_1^2 =
        beta_1 (the scheduler's bound section).

        The gap averaged over the data is KL(q(x_{0:T}) || p(x_{0:T})) = KL(q(x_T) || N(0, I)) + sum_t
        E KL(q(x_{t-1} | x_t) || p(x_{t-1} | x_t)). The oracle's mean is E[x_{t-1} | x_t] exactly (the reverse step
        of Gaussian data is linear in x_t), so each step's KL is between two Gaussians of the same mean and the
        variances `reverse_variance()` and sigma_t^2: no Monte-Carlo in it. `pipe.bits_per_dim` estimates the same
        number by sampling (tests/test_mixture.py compares them).
        """
        if variance not in ("beta", "beta_tilde"):
            raise _invalid("variance", variance, "'beta', 'beta_tilde'")
        true_variance = self.reverse_variance()  # (T, D)
        steps = torch.arange(len(self.scheduler.betas))
        beta, beta_tilde = self.scheduler._step_variances(steps, steps - 1, (1,))
        sigma2 = (beta if variance == "beta" else beta_tilde).clone()
        sigma2[0] = beta[0]  # the decoder p(x_0 | x_1) = N(mu, beta_1) for both choices
        kl = self.scheduler.gaussian_kl(0.0, true_variance.log(), 0.0, sigma2[:, None].log())  # (T, D) nats
        marginal = self.mixture.noised(float(self.scheduler._alpha_bar(steps[-1], (1,))))  # q(x_T)
        prior = self.scheduler.gaussian_kl(marginal.means[0], (marginal.stds[0] ** 2).log(), 0.0, 0.0)  # (D,)
        return float((kl.sum(dim=0) + prior).mean() / math.log(2))

    def forward(
        self, sample: torch.Tensor, timestep, class_labels=None, return_dict: bool = True
    ) -> MixtureDenoiserOutput | tuple[torch.Tensor]:
        """The exact prediction for `scheduler.step`.

        Args:
            sample: x_t, (B, D).
            timestep: t, an int, a 0-d tensor or a (B,) tensor.
            class_labels: None, or (B,) component indices in [0, K] (K = unconditional).
            return_dict: return a `MixtureDenoiserOutput` (default) or a tuple `(sample,)`.

        Returns:
            (B, D): E[eps | x_t], E[x_0 | x_t] or E[v | x_t] for the scheduler's `prediction_type`.
        """
        self.mixture._check_x(sample, "sample")
        t = self._timesteps(timestep, sample.shape[0])
        prediction_type = self.scheduler.config.prediction_type
        if prediction_type == "epsilon":
            out = self.eps_mean(sample, t, class_labels)
        elif prediction_type == "sample":
            out = self.x0_mean(sample, t, class_labels)
        else:  # v_prediction: v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 is linear, so E[v] uses E[eps], E[x_0]
            x0 = self.x0_mean(sample, t, class_labels).double()
            eps = self.scheduler.predict_noise_from_x0(sample.double(), t, x0)
            out = self.scheduler.get_velocity(x0, eps, t).to(sample.dtype)
        if not return_dict:
            return (out,)
        return MixtureDenoiserOutput(sample=out)


# ----------------------------------------------------------------------------------------------------------------
# Annealed Langevin dynamics: sampling with the score alone
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class LangevinLevel(BaseOutput):
    """The particles after one noise level of `annealed_langevin`.

    Args:
        level: 0-based index of the level.
        num_levels: how many levels the run has.
        timestep: t of the level: its target density is q(x_t).
        step_size: delta of the level's steps.
        sample: the particles after this level's steps, (B, D).
    """

    level: int
    num_levels: int
    timestep: int
    step_size: float
    sample: torch.Tensor


def langevin_timesteps(scheduler: DDPMHubScheduler, num_levels: int = 20) -> list[int]:
    """`num_levels` distinct timesteps, from T - 1 down to 0, whose noise stds sqrt(1 - alpha_bar_t) are as near as
    the schedule allows to a geometric sequence from the largest to the smallest (Song & Ermon's noise levels): a
    linear spacing in t would leave the last levels far apart in noise (sqrt(1 - alpha_bar_t) grows ~10x over the
    first 50 of DDPM's 1000 steps)."""
    if not isinstance(num_levels, int) or isinstance(num_levels, bool) or num_levels < 1:
        raise _invalid("num_levels", num_levels, "integers >= 1")
    steps = torch.arange(len(scheduler.alphas_cumprod))
    noise_std = (1 - scheduler._alpha_bar(steps, (1,))).sqrt()  # (T,), increasing in t
    wanted = torch.logspace(math.log10(noise_std[-1]), math.log10(noise_std[0]), num_levels, dtype=torch.float64)
    nearest = (noise_std.log()[None, :] - wanted.log()[:, None]).abs().argmin(dim=1)  # (num_levels,)
    return sorted({int(t) for t in nearest}, reverse=True)


def annealed_langevin(
    score,
    scheduler: DDPMHubScheduler,
    sample: torch.Tensor,
    timesteps,
    steps_per_level: int = 20,
    step_scale: float = 0.3,
    generator: torch.Generator | None = None,
):
    """Annealed Langevin dynamics (Song & Ermon 2019) through the forward marginals q(x_t): at each timestep t of
    `timesteps` (from noisy to clean), `steps_per_level` Langevin steps

        x <- x + (delta_t / 2) grad log q(x_t) + sqrt(delta_t) z,        z ~ N(0, I),

    with delta_t = step_scale (1 - alpha_bar_t): the step shrinks with the level's noise variance, as Song & Ermon's
    alpha_i = epsilon sigma_i^2 / sigma_L^2, so every level moves the particles by about the same fraction of its
    own width. Only the score is used: no scheduler step, no denoiser. Yields a `LangevinLevel` after each level.

    Args:
        score: a callable (x (B, D), t: int) -> grad log q(x_t) (B, D), e.g. `MixtureDenoiser.score` (exact) or a
            learned -eps_theta / sqrt(1 - alpha_bar_t) (`scheduler.score_from_noise`).
        scheduler: gives alpha_bar_t (`DDPMHubScheduler`).
        sample: the starting particles (B, D), e.g. N(0, I) draws; not modified.
        timesteps: the levels' timesteps, integers in [0, T), usually decreasing.
        steps_per_level: Langevin steps at each level, >= 1.
        step_scale: epsilon > 0 in delta_t = epsilon (1 - alpha_bar_t). Larger steps mix faster and add more
            discretisation error: on two_blobs with 20 geometric levels (`langevin_timesteps`) x 20 steps, 0.3 came
            closest to the data's mean log p(x_0) of 0.1, 0.3 and 0.5.
        generator: a CPU generator for z.
    """
    if not torch.is_tensor(sample) or sample.ndim != 2:
        raise _invalid(
            "sample", _shape(sample) if torch.is_tensor(sample) else type(sample).__name__, "(B, D) tensors"
        )
    if not isinstance(steps_per_level, int) or isinstance(steps_per_level, bool) or steps_per_level < 1:
        raise _invalid("steps_per_level", steps_per_level, "integers >= 1")
    if not (isinstance(step_scale, int | float) and math.isfinite(step_scale) and step_scale > 0):
        raise _invalid("step_scale", step_scale, "finite numbers > 0")
    num_train_timesteps = len(scheduler.alphas_cumprod)
    timesteps = [int(t) for t in timesteps]
    if not timesteps or not all(0 <= t < num_train_timesteps for t in timesteps):
        raise _invalid("timesteps", timesteps, f"a non-empty list of integers in [0, {num_train_timesteps})")
    x = sample.detach().clone()
    for level, t in enumerate(timesteps):
        delta = step_scale * float(1 - scheduler._alpha_bar(t, (1,)))  # 1 - alpha_bar_t: x_t's noise variance
        for _ in range(steps_per_level):
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            x = x + 0.5 * delta * score(x, t) + math.sqrt(delta) * z
        yield LangevinLevel(level=level, num_levels=len(timesteps), timestep=t, step_size=delta, sample=x)
