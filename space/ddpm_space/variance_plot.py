"""Tab ②: the two variances of the DDPM paper side by side, and the sigma_t a chain's sampler uses at each step.

beta_t and beta-tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t are nearly equal for most t and differ at
small t (beta-tilde_0 = 0), so both axes are logarithmic. sigma_t per step is what the sampler's own `step` returns
for the chosen number of steps (and eta), so strided chains show the variance of their jumps. Every number is the
scheduler's.
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from .chains import new_scheduler
from .inputs import as_eta, as_steps
from .state import Space

BETA_COLOUR, BETA_TILDE_COLOUR, SIGMA_COLOUR = "#4f46e5", "#db2777", "#111827"
_SIGMAS: dict[
    tuple, tuple[list[int], list[float], list[float], list[float]]
] = {}  # (scheduler, sampler, steps, eta) -> curves


def variances(space: Space) -> tuple[list[int], list[float], list[float]]:
    """t = 1 .. T-1, beta_t and beta-tilde_t of the model's schedule (t = 0 is left out: beta-tilde_0 = 0)."""
    t = torch.arange(1, space.T)
    beta = space.scheduler.fixed_variance(t, "beta")
    beta_tilde = space.scheduler.posterior_variance(t)
    return t.tolist(), beta.tolist(), beta_tilde.tolist()


def step_sigmas(
    space: Space, sampler: str, steps: int, eta: float
) -> tuple[list[int], list[float], list[float], list]:
    """For each step of the chain: t, the sigma_t its sampler's `step` uses, and sqrt(beta), sqrt(beta-tilde) of
    that (possibly strided) jump."""
    key = (id(space.scheduler), sampler, steps, eta)
    if key in _SIGMAS:
        return _SIGMAS[key]
    scheduler = new_scheduler(space.pipe, sampler)
    scheduler.set_timesteps(steps)
    zeros = torch.zeros(1, 1, 1, 1)
    extra = {"eta": eta} if sampler == "ddim" else {}
    times, sigmas, betas, beta_tildes = [], [], [], []
    for t in scheduler.timesteps.tolist():
        output = scheduler.step(zeros, t, zeros, variance_noise=zeros, **extra)  # only its sigma_t is read
        prev_t = scheduler.previous_timestep(t)
        times.append(t)
        sigmas.append(float(output.std.reshape(-1)[0]))
        betas.append(float(space.scheduler.fixed_variance(t, "beta", prev_t).sqrt()))
        beta_tildes.append(float(space.scheduler.posterior_variance(t, prev_t).sqrt()))
    if len(_SIGMAS) > 64:
        _SIGMAS.clear()
    _SIGMAS[key] = times, sigmas, betas, beta_tildes
    return _SIGMAS[key]


def variance_plot(space: Space, sampler: str = "ddpm-fixed_small", steps: float = 1000, eta: float = 0.0) -> Figure:
    """Left: beta_t and beta-tilde_t over t (log-log). Right: sigma_t of each step of this sampler's chain."""
    steps, eta = as_steps(space, steps), as_eta(eta, sampler)
    t, beta, beta_tilde = variances(space)
    figure = Figure(figsize=(9.0, 2.8), dpi=90, layout="constrained")
    left, right = figure.subplots(1, 2)
    left.plot(t, beta, color=BETA_COLOUR, lw=2, label=r"$\beta_t$")
    left.plot(t, beta_tilde, color=BETA_TILDE_COLOUR, lw=2, ls="--", label=r"$\tilde\beta_t$")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_title(r"the two fixed variances: $\beta_t$ and $\tilde\beta_t$", fontsize=11)
    left.legend(frameon=False, loc="lower right")

    times, sigmas, betas, beta_tildes = step_sigmas(space, sampler, steps, eta)
    marker = "o" if len(times) <= 60 else None
    positive = [(time, sigma) for time, sigma in zip(times, sigmas, strict=True) if sigma > 0 and time > 0]
    right.plot(times, betas, color=BETA_COLOUR, lw=1, label=r"$\sqrt{\beta}$ of the step")
    right.plot(times, beta_tildes, color=BETA_TILDE_COLOUR, lw=1, ls="--", label=r"$\sqrt{\tilde\beta}$ of the step")
    right.set_xscale("log")
    right.set_yscale("log")
    if positive:
        right.plot(*zip(*positive, strict=True), color=SIGMA_COLOUR, lw=2.5, marker=marker, ms=3, label=r"$\sigma_t$")
    else:  # DDIM with eta = 0: no noise at any step
        right.text(0.5, 0.5, r"$\sigma_t = 0$ at every step (deterministic)", transform=right.transAxes, ha="center")
    right.set_title(rf"$\sigma_t$ at each of this sampler's {len(times)} steps", fontsize=11)
    right.legend(frameon=False, loc="lower right")
    for ax in (left, right):
        ax.set_xlabel("t")
        ax.grid(alpha=0.3, which="both")
        ax.spines[["top", "right"]].set_visible(False)
    return figure
