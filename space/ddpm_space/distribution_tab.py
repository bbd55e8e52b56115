"""Tab ④: the whole distribution, in 2-D, with the exact answer beside the model.

The data are a Gaussian mixture (`ddpm_hub.GaussianMixture`), so the density of q(x_t), its score and the ideal
denoiser E[eps | x_t] are closed form (`MixtureDenoiser`); the learned side is a small MLP noise predictor
(`DDPMHubMLP`), bundled pretrained per preset at spread 1 (`space/mixture_models/`) or trained here live (`fit_steps`).
Every number and every point comes from a library call: the mixture (`log_prob`, `noised`, `sample`, `score`), the
scheduler (`add_noise`, `score_from_noise`, `step` through the pipeline's `denoising_steps`), the bound
(`bits_per_dim`, `expected_bound_gap`, `reverse_variance`) and Langevin dynamics (`annealed_langevin`). This module
only draws them. The models are tiny, so the tab runs in its own concurrency group, never in the U-Net engine's queue.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from matplotlib.colors import LogNorm, PowerNorm
from matplotlib.figure import Figure

from ddpm_hub import (
    MIXTURE_PRESETS,
    DDIMHubScheduler,
    DDPMHubMLP,
    DDPMHubPipeline,
    GaussianMixture,
    MixtureDenoiser,
    annealed_langevin,
)
from ddpm_hub.mixture import langevin_timesteps
from ddpm_hub.mixture_training import fit_steps, noise_error_by_t, points_scheduler

from .inputs import as_float, as_int, as_seed, generator
from .state import bind
from .text import LATEX, text
from .widgets import Page, seed_box

PRESETS = {  # value -> label
    "ring8": "a ring of 8 Gaussians",
    "two_blobs": "two uneven blobs",
    "point": "one tight Gaussian (nearly a point)",
    "standard_normal": "the standard normal N(0, I)",
}
SAMPLERS = {  # value -> label
    "ddpm-beta": "DDPM · σ²ₜ = βₜ",
    "ddpm-beta_tilde": "DDPM · σ²ₜ = β̃ₜ",
    "ddim": "DDIM · η = 0 (paths)",
    "langevin": "annealed Langevin (score only)",
}
PRETRAINED_SPREAD = 1.0  # the bundled models' data (training.json records it)
SPREAD_RANGE = (0.25, 2.0)
EXTENT = 3.0  # the plane shown: [-3, 3]^2 holds N(0, I) and every preset up to spread 2
DENSITY_GRID = 161  # points per side of the density heatmaps
ARROW_GRID = 13  # arrows per side of the score fields
CLOUD = 600  # noised particles over q(x_t)
ERROR_TIMESTEPS = (0, 2, 5, 10, 20, 50, 100, 200, 400, 700, 999)  # the error-per-t curve
ERROR_POINTS = 512  # draws of q(x_t) per t of that curve
PATHS = {"ddim": 30}  # particles whose paths the reverse plots draw: DDIM's are smooth; noisy paths tangle
NOISY_PATHS = 6
FRAMES = 5  # streamed pictures per reverse run, the last included (drawing one takes ~0.5 s)
# Langevin gets as many score calls as 100 DDPM steps: 20 levels x 5 steps. With that budget, on ring8 (2000 particles,
# exact score) step_scale 0.6 came closest to the data's mean log p(x_0) (-0.57 against -0.27; 0.3: -0.83).
LANGEVIN_LEVELS, LANGEVIN_STEPS, LANGEVIN_SCALE = 20, 5, 0.6
VARIANCE_S_GRID = np.geomspace(0.01, 1.0, 29)  # the s of the bound-gap curve
TRAIN_EVERY = 250  # steps between two measurements of the noise error while training
DATA_COLOUR, ORACLE_COLOUR, LEARNED_COLOUR = "#111827", "#4f46e5", "#db2777"
BETA_COLOUR, BETA_TILDE_COLOUR = "#4f46e5", "#db2777"


@dataclass
class TwoD:
    """What the tab reads: the 2-D scheduler (DDPM's 1000 linear steps, no clipping) and the bundled learned noise
    predictors, one per preset at spread 1 (a preset without a bundled model gets an untrained MLP, eps = 0)."""

    scheduler: object
    pretrained: dict[str, DDPMHubMLP]
    pretrained_steps: dict[str, int | None] = dataclasses.field(default_factory=dict)  # from training.json


@dataclass
class Trained:
    """A visitor's own model (kept in their session's gr.State): the data it was trained on and how long."""

    preset: str
    spread: float
    num_steps: int
    model: DDPMHubMLP


def load(folder: str | Path) -> TwoD:
    """The bundled models of `folder`/<preset>/ (`DDPMHubMLP.from_pretrained`), loaded once, in eval mode."""
    folder = Path(folder)
    pretrained, steps = {}, {}
    for preset in MIXTURE_PRESETS:
        if (folder / preset / "config.json").is_file():
            pretrained[preset] = DDPMHubMLP.from_pretrained(folder / preset).eval()
            record = folder / preset / "training.json"
            steps[preset] = json.loads(record.read_text())["num_steps"] if record.is_file() else None
    return TwoD(scheduler=points_scheduler(), pretrained=pretrained, pretrained_steps=steps)


# ---------------------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------------------


def as_preset(value) -> str:
    if value not in PRESETS:
        raise gr.Error(f"data must be one of {', '.join(PRESETS)}, got {value!r}.")
    return value


def as_spread(value) -> float:
    return as_float(value, "spread", *SPREAD_RANGE)


def mixture(preset, spread) -> GaussianMixture:
    return GaussianMixture.preset(as_preset(preset), as_spread(spread))


def learned_model(twod: TwoD, preset: str, spread: float, trained: Trained | None) -> tuple[DDPMHubMLP, str]:
    """The learned noise predictor for this data, and a sentence saying which one it is: the visitor's own if it was
    trained on this preset and spread, else the bundled one (trained at spread 1)."""
    if trained is not None and trained.preset == preset and math.isclose(trained.spread, spread):
        return trained.model, f"**Learned model:** yours, trained here for {trained.num_steps} steps on this data."
    model = twod.pretrained.get(preset)
    if model is None:
        return DDPMHubMLP().eval(), "**Learned model:** none is bundled for this preset: an untrained MLP (ε̂ = 0)."
    if preset == "standard_normal" or math.isclose(spread, PRETRAINED_SPREAD):
        steps = twod.pretrained_steps.get(preset)
        how_long = f", {steps:,} steps" if steps else ""
        return model, f"**Learned model:** the bundled one, trained on this data (spread 1{how_long})."
    return model, (
        f"**Learned model:** the bundled one was trained at spread 1, not {spread:g}: it has learned other data. "
        "Train one on this data in *Train it yourself*."
    )


def grid_points(side: int) -> tuple[np.ndarray, torch.Tensor]:
    """A side x side grid over [-EXTENT, EXTENT]^2: its coordinates (side,) and the points (side^2, 2), row-major
    with y outer (as imshow's rows)."""
    axis = np.linspace(-EXTENT, EXTENT, side)
    xx, yy = np.meshgrid(axis, axis)
    return axis, torch.from_numpy(np.stack([xx.ravel(), yy.ravel()], axis=1))  # float64


def density_image(mix: GaussianMixture) -> np.ndarray:
    """exp(log p) of `mix` on the density grid, (side, side) float64."""
    _, points = grid_points(DENSITY_GRID)
    return mix.log_prob(points).exp().reshape(DENSITY_GRID, DENSITY_GRID).numpy()


def draw_density(ax, density: np.ndarray, cmap: str = "Blues", lighten: float = 1.0) -> None:
    """A density as a heatmap; the square-root colour scale keeps the tails of wide components visible beside the
    peak of a tight one. `lighten` > 1 stops the colour scale short of its darkest end (arrows drawn on top)."""
    ax.imshow(
        density,
        origin="lower",
        extent=(-EXTENT, EXTENT, -EXTENT, EXTENT),
        cmap=cmap,
        norm=PowerNorm(0.5, vmin=0, vmax=lighten * float(density.max())),
        interpolation="bilinear",
    )


def style_plane(ax, title: str) -> None:
    ax.set_xlim(-EXTENT, EXTENT)
    ax.set_ylim(-EXTENT, EXTENT)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)


def alpha_bar(twod: TwoD, t: int) -> float:
    return float(twod.scheduler.alphas_cumprod[t])


# ---------------------------------------------------------------------------------------------------------------------
# 1-2. The data and the forward process
# ---------------------------------------------------------------------------------------------------------------------


def forward(twod: TwoD, preset: str = "ring8", spread: float = 1.0, t: float = 100, seed: float = 0):
    """p(x_0) and the exact q(x_t) as densities, with particles x_0 ~ p noised by the scheduler's `add_noise`.

    Returns: the figure, and the closed form of q(x_t) with this t's numbers (Markdown).
    """
    mix = mixture(preset, spread)
    t = as_int(t, "t", 0, twod.scheduler.config.num_train_timesteps - 1)
    g = generator(as_seed(seed))
    noised = mix.noised(alpha_bar(twod, t))
    x_0 = mix.sample(CLOUD, generator=g, dtype=torch.float64)
    noise = torch.randn(x_0.shape, generator=g, dtype=torch.float64)
    x_t = twod.scheduler.add_noise(x_0, noise, torch.tensor([t]))

    figure = Figure(figsize=(8.4, 4.0), dpi=90, layout="constrained")
    left, right = figure.subplots(1, 2)
    draw_density(left, density_image(mix))
    style_plane(left, r"data $p(x_0)$ (exact density)")
    draw_density(right, density_image(noised))
    right.scatter(x_t[:, 0], x_t[:, 1], s=3, color=LEARNED_COLOUR, alpha=0.6, lw=0, label=f"{CLOUD} noised $x_0$")
    style_plane(right, rf"$q(x_t)$ at t = {t} (exact) and $x_t$ = add_noise($x_0$)")
    right.legend(loc="upper right", fontsize=8, frameon=False)

    ab = alpha_bar(twod, t)
    stds = noised.stds[:, 0]

    def span(values: torch.Tensor, digits: str) -> str:
        low, high = (format(float(v), digits) for v in (values.min(), values.max()))
        return low if low == high else f"{low} to {high}"

    numbers = (
        f"**t = {t}** · $\\sqrt{{\\bar\\alpha_t}}$ = {math.sqrt(ab):.4f} · $\\sqrt{{1-\\bar\\alpha_t}}$ = "
        f"{math.sqrt(1 - ab):.4f} · the {mix.num_components} component(s) of q(x_t) have std {span(stds, '.3f')} "
        f"(data: {span(mix.stds, '.3g')}) and means moved to "
        f"{math.sqrt(ab):.3f}× their place.\n\n"
        "$$q(x_t) = \\sum_k \\pi_k\\,\\mathcal N\\!\\big(\\sqrt{\\bar\\alpha_t}\\,\\mu_k,\\;"
        "(\\bar\\alpha_t s_k^2 + 1-\\bar\\alpha_t)\\,I\\big)$$"
    )
    return figure, numbers


# ---------------------------------------------------------------------------------------------------------------------
# 3. The score: exact against learned
# ---------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def score_fields(twod: TwoD, mix: GaussianMixture, model, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """On the arrow grid (ARROW_GRID^2, 2): the exact grad log q(x_t) (`MixtureDenoiser.score`) and the learned
    -eps_theta / sqrt(1 - alpha_bar_t) (`scheduler.score_from_noise`), float64."""
    _, points = grid_points(ARROW_GRID)
    oracle = MixtureDenoiser(mix, twod.scheduler)
    true = oracle.score(points, t)
    eps = model(points.float(), t).sample.double()
    learned = twod.scheduler.score_from_noise(points, torch.tensor([t]), eps)
    return true, learned


@torch.no_grad()
def noise_error_map(twod: TwoD, mix: GaussianMixture, model, t: int) -> np.ndarray:
    """sqrt(||eps_theta(x, t) - E[eps | x_t = x]||^2 / D) on the density grid, (side, side): the model's noise error
    where x_t = x, in the units of the error-per-t curve (which averages its square over x_t ~ q(x_t))."""
    _, points = grid_points(DENSITY_GRID)
    oracle = MixtureDenoiser(mix, twod.scheduler)
    error = model(points.float(), t).sample.double() - oracle.eps_mean(points, t)
    return error.pow(2).mean(dim=1).sqrt().reshape(DENSITY_GRID, DENSITY_GRID).numpy()


def error_by_t(twod: TwoD, mix: GaussianMixture, model, seed: int = 0) -> np.ndarray:
    """The root of `noise_error_by_t` at ERROR_TIMESTEPS: the model's RMS noise error over x_t ~ q(x_t)."""
    errors = noise_error_by_t(
        model, MixtureDenoiser(mix, twod.scheduler), ERROR_TIMESTEPS, ERROR_POINTS, generator(seed)
    )
    return errors.sqrt().numpy()


def draw_arrows(ax, field: torch.Tensor, scale: float, colour: str) -> None:
    """Arrows of a score field on the arrow grid, all on one length scale: an arrow of size m is
    0.9 m / (m + scale) grid cells long, so the huge scores far from the data (they grow like the distance over the
    noise variance) stay inside their cell while small ones near a mode still show their direction."""
    axis, _ = grid_points(ARROW_GRID)
    cell = axis[1] - axis[0]
    vectors = field.numpy()
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    shown = vectors / np.maximum(norms, 1e-300) * (0.9 * cell * norms / (norms + scale))
    xx, yy = np.meshgrid(axis, axis)
    ax.quiver(
        xx.ravel(), yy.ravel(), shown[:, 0], shown[:, 1], color=colour, angles="xy", scale_units="xy", scale=1,
        width=0.008, headwidth=3, headlength=3.5, headaxislength=3,
    )  # fmt: skip


def score(twod: TwoD, preset: str = "ring8", spread: float = 1.0, t: float = 100, trained: Trained | None = None):
    """The exact and the learned score of q(x_t) as arrows, the learned model's noise error over the plane, and its
    error per t over x_t ~ q(x_t).

    Returns: the figure, and a Markdown line on which model is the learned one plus the numbers at this t.
    """
    mix = mixture(preset, spread)
    preset, spread = as_preset(preset), as_spread(spread)
    t = as_int(t, "t", 0, twod.scheduler.config.num_train_timesteps - 1)
    model, note = learned_model(twod, preset, spread, trained)
    noised_density = density_image(mix.noised(alpha_bar(twod, t)))
    true, learned = score_fields(twod, mix, model, t)
    error_map = noise_error_map(twod, mix, model, t)
    curve = error_by_t(twod, mix, model)

    # Two rows of two: one row of four was unreadable at a phone's 400 px
    figure = Figure(figsize=(8.4, 7.6), dpi=90, layout="constrained")
    (exact_ax, learned_ax), (error_ax, curve_ax) = figure.subplots(2, 2)
    scale = float(np.quantile(true.norm(dim=1).numpy(), 0.5)) or 1.0  # the median exact arrow is one cell long
    for ax, field, colour, title in (
        (exact_ax, true, ORACLE_COLOUR, r"exact $\nabla\log q(x_t)$"),
        (learned_ax, learned, LEARNED_COLOUR, r"learned $-\hat\epsilon/\sqrt{1-\bar\alpha_t}$"),
    ):
        draw_density(ax, noised_density, cmap="Greys", lighten=2.0)
        draw_arrows(ax, field, scale, colour)
        style_plane(ax, f"{title}, t = {t}")
    image = error_ax.imshow(
        np.maximum(error_map, 1e-4),
        origin="lower",
        extent=(-EXTENT, EXTENT, -EXTENT, EXTENT),
        cmap="magma",
        norm=LogNorm(vmin=1e-3, vmax=max(1.0, float(error_map.max()))),
    )
    error_ax.contour(
        *np.meshgrid(*(grid_points(DENSITY_GRID)[0],) * 2),
        noised_density,
        levels=[0.05 * float(noised_density.max())],
        colors="white",
        linewidths=0.8,
    )
    figure.colorbar(image, ax=error_ax, shrink=0.85)
    style_plane(error_ax, r"noise error $\|\hat\epsilon - E[\epsilon\mid x_t]\|/\sqrt{2}$ (white: q's bulk)")
    curve_ax.plot(ERROR_TIMESTEPS, curve, color=LEARNED_COLOUR, marker="o", ms=3, lw=2)
    curve_ax.axvline(max(t, 0.5), color=DATA_COLOUR, lw=1, ls="--")
    curve_ax.set_xscale("symlog", linthresh=1)
    curve_ax.set_xlim(0, ERROR_TIMESTEPS[-1])
    curve_ax.set_yscale("log")
    curve_ax.set_xlabel("t")
    curve_ax.set_title("RMS noise error over $x_t \\sim q(x_t)$, per t", fontsize=10)
    curve_ax.grid(alpha=0.3, which="both")
    curve_ax.spines[["top", "right"]].set_visible(False)

    mass = torch.from_numpy(noised_density / noised_density.sum())  # q(x_t) on the grid, normalised
    bulk = float((torch.from_numpy(error_map) ** 2 * mass).sum().sqrt())
    far = error_map[noised_density < 1e-3 * noised_density.max()]
    far_text = f"{float(np.median(far)):.3g}" if far.size else "—"
    # The arrows where q(x_t) is under 1/1000 of its peak: how long the learned ones are, and how they turn
    noised = mix.noised(alpha_bar(twod, t))
    arrow_log_q = noised.log_prob(grid_points(ARROW_GRID)[1])
    far_arrows = arrow_log_q < arrow_log_q.max() - math.log(1000)
    if far_arrows.any():
        ratio = float((learned.norm(dim=1) / true.norm(dim=1))[far_arrows].median())
        cosine = torch.nn.functional.cosine_similarity(learned, true)[far_arrows].clamp(-1, 1)
        angle = math.degrees(math.acos(float(cosine.median())))
        arrows_text = (
            f" There the learned arrows are **{ratio:.2g}×** as long as the exact ones and **{angle:.0f}°** off "
            f"their direction (medians over {int(far_arrows.sum())} arrows)."
        )
    else:
        arrows_text = ""
    numbers = (
        f"{note}\n\n**At t = {t}**: RMS noise error weighted by q(x_t) on the grid **{bulk:.3g}**; median where "
        f"q(x_t) is under 1/1000 of its peak **{far_text}** (the map).{arrows_text} Over draws of q(x_t) "
        f"(the curve, {ERROR_POINTS} per t): from **{float(curve.min()):.3g}** to **{float(curve.max()):.3g}**."
    )
    return figure, numbers


# ---------------------------------------------------------------------------------------------------------------------
# 4. Reverse: particles from N(0, I) through DDPM, DDIM or Langevin, exact against learned
# ---------------------------------------------------------------------------------------------------------------------


def _scheduler_for(twod: TwoD, sampler: str):
    if sampler == "ddim":
        return DDIMHubScheduler.from_config(twod.scheduler.config)
    variance_type = "fixed_large" if sampler == "ddpm-beta" else "fixed_small"
    return points_scheduler(variance_type=variance_type)


def _chain_frames(twod: TwoD, model, sampler: str, num_steps: int, particles: int, seed: int):
    """(step number, number of steps, label, particles (N, 2) float64) after each step of DDPM / DDIM through the
    pipeline, or after each level of annealed Langevin dynamics; every model starts from the same x_T ~ N(0, I) and
    draws the same noise (same seeds)."""
    if sampler == "langevin":
        g = generator(seed)
        start = torch.randn(particles, 2, generator=g, dtype=torch.float64)
        if isinstance(model, MixtureDenoiser):
            score_fn = model.score
        else:

            def score_fn(x, t):  # the learned score, -eps_theta / sqrt(1 - alpha_bar_t)
                with torch.no_grad():
                    eps = model(x.float(), t).sample.double()
                return twod.scheduler.score_from_noise(x, torch.tensor([t]), eps)

        levels = langevin_timesteps(twod.scheduler, LANGEVIN_LEVELS)
        for level in annealed_langevin(score_fn, twod.scheduler, start, levels, LANGEVIN_STEPS, LANGEVIN_SCALE, g):
            label = f"level {level.level + 1}/{level.num_levels}, t = {level.timestep}"
            yield level.level + 1, level.num_levels, label, level.sample
        return
    pipe = DDPMHubPipeline(model, _scheduler_for(twod, sampler))
    pipe.set_progress_bar_config(disable=True)
    latents = torch.randn(particles, 2, generator=generator(seed), dtype=torch.float64)
    for step in pipe.denoising_steps(
        batch_size=particles, num_inference_steps=num_steps, generator=generator(seed + 1), latents=latents.float()
    ):
        label = f"step {step.step_index + 1}/{step.num_steps}, t = {step.prev_timestep + 1}"
        yield step.step_index + 1, step.num_steps, label, step.prev_sample.double()


def _reverse_figure(density: np.ndarray, panels: list) -> Figure:
    """Two planes over the data density: (title, colour, particles (N, 2), paths [(P, 2) per step so far])."""
    figure = Figure(figsize=(8.4, 4.1), dpi=90, layout="constrained")
    for ax, (title, colour, cloud, paths) in zip(figure.subplots(1, 2), panels, strict=True):
        draw_density(ax, density, cmap="Greys", lighten=1.5)
        track = np.stack(paths)  # (steps, P, 2)
        for i in range(track.shape[1]):
            ax.plot(track[:, i, 0], track[:, i, 1], color="#6b7280", lw=0.6, alpha=0.6)
        ax.scatter(cloud[:, 0], cloud[:, 1], s=2, color=colour, alpha=0.5, lw=0)
        style_plane(ax, title)
    return figure


def reverse(
    twod: TwoD,
    preset: str = "ring8",
    spread: float = 1.0,
    sampler: str = "ddpm-beta",
    num_steps: float = 100,
    particles: float = 2000,
    seed: float = 0,
    trained: Trained | None = None,
):
    """Particles from N(0, I) to x_0 with the exact denoiser (left) and the learned one (right), streamed.

    DDPM (sigma^2 = beta or beta-tilde) and DDIM (eta = 0) run the pipeline's `denoising_steps` with `num_steps`
    steps; "langevin" runs `annealed_langevin` with the exact score and the learned one (num_steps unused). Both
    sides start from the same x_T and draw the same noise. The paths of the first few particles are drawn.

    Yields: (figure, Markdown) FRAMES times, the last with mean log p(x_0) of each cloud against real data.
    """
    mix = mixture(preset, spread)
    preset, spread = as_preset(preset), as_spread(spread)
    if sampler not in SAMPLERS:
        raise gr.Error(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}.")
    num_steps = as_int(num_steps, "steps", 2, twod.scheduler.config.num_train_timesteps)
    particles = as_int(particles, "particles", 100, 4000)
    seed = as_seed(seed)
    model, note = learned_model(twod, preset, spread, trained)
    density = density_image(mix)
    runs = [
        _chain_frames(twod, m, sampler, num_steps, particles, seed)
        for m in (MixtureDenoiser(mix, twod.scheduler), model)
    ]
    names = ("exact score", "learned score") if sampler == "langevin" else ("exact E[ε | x_t]", "learned ε̂")
    paths = ([], [])
    started = time.perf_counter()
    for (number, total, label, exact), (_, _, _, learned) in zip(*runs, strict=True):
        for track, cloud in zip(paths, (exact, learned), strict=True):
            track.append(cloud[: PATHS.get(sampler, NOISY_PATHS)].numpy())
        panels = [
            (f"{names[0]} · {label}", ORACLE_COLOUR, exact.numpy(), paths[0]),
            (f"{names[1]} · {label}", LEARNED_COLOUR, learned.numpy(), paths[1]),
        ]
        if number == total:
            break
        if number % max(1, total // FRAMES) == 0:
            yield _reverse_figure(density, panels), f"{SAMPLERS[sampler]} · {label} …"
    real = mix.sample(particles, generator=generator(seed + 2), dtype=torch.float64)
    rare = float(mix.log_prob(real).quantile(0.01))  # 1 % of real data is less likely than this
    log_p = [mix.log_prob(cloud.double()) for cloud in (exact, learned, real)]
    yield (
        _reverse_figure(density, panels),
        text(
            "twod_reverse_result",
            sampler=SAMPLERS[sampler],
            label=label,
            particles=particles,
            exact=f"{float(log_p[0].mean()):.3f}",
            learned=f"{float(log_p[1].mean()):.3f}",
            real=f"{float(log_p[2].mean()):.3f}",
            exact_rare=f"{100 * float((log_p[0] < rare).double().mean()):.1f}",
            learned_rare=f"{100 * float((log_p[1] < rare).double().mean()):.1f}",
            seconds=f"{time.perf_counter() - started:.1f}",
            note=note,
        ),
    )


# ---------------------------------------------------------------------------------------------------------------------
# 5. Which variance is right? Gaussian data N(0, s^2 I)
# ---------------------------------------------------------------------------------------------------------------------


def gap_curves(twod: TwoD) -> tuple[np.ndarray, np.ndarray]:
    """`expected_bound_gap` (bits/dim, exact) of the oracle for N(0, s^2 I) at each s of VARIANCE_S_GRID, with
    sigma^2 = beta and with beta-tilde: two (len(grid),) arrays (cached: they depend on the schedule only)."""
    key = id(twod.scheduler)
    if key not in _GAPS:
        curves = [
            [
                MixtureDenoiser(GaussianMixture.gaussian(float(s)), twod.scheduler).expected_bound_gap(v)
                for s in VARIANCE_S_GRID
            ]
            for v in ("beta", "beta_tilde")
        ]
        _GAPS[key] = tuple(np.array(curve) for curve in curves)
    return _GAPS[key]


_GAPS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def crossover(twod: TwoD) -> float | None:
    """The s where the exact gaps under beta and beta-tilde are equal (beta-tilde's bound is the tighter one below
    it): bracketed on VARIANCE_S_GRID, then bisected in log s with `expected_bound_gap`. None if they do not cross."""
    beta_curve, beta_tilde_curve = gap_curves(twod)
    difference = beta_tilde_curve - beta_curve
    brackets = [i for i in range(len(difference) - 1) if difference[i] < 0 <= difference[i + 1]]
    if not brackets:
        return None
    low, high = math.log(VARIANCE_S_GRID[brackets[0]]), math.log(VARIANCE_S_GRID[brackets[0] + 1])
    for _ in range(30):
        middle = (low + high) / 2
        oracle = MixtureDenoiser(GaussianMixture.gaussian(math.exp(middle)), twod.scheduler)
        if oracle.expected_bound_gap("beta_tilde") < oracle.expected_bound_gap("beta"):
            low = middle
        else:
            high = middle
    return math.exp((low + high) / 2)


def monte_carlo_bounds(twod: TwoD, s: float, draws: int, seed: int) -> dict[str, tuple[float, float, float, float]]:
    """The oracle's bound (`pipe.bits_per_dim`, bits/dim) on `draws` draws of N(0, s^2 I) under sigma^2 = beta and
    beta-tilde: per variance (mean exact -log p(x_0), mean bound, mean gap, standard error of the gap)."""
    mix = GaussianMixture.gaussian(s)
    oracle = MixtureDenoiser(mix, twod.scheduler)
    x_0 = mix.sample(draws, generator=generator(seed), dtype=torch.float64)
    nll = -mix.log_prob(x_0) / (mix.dim * math.log(2))  # exact -log p(x_0), bits/dim, (draws,)
    rows = {}
    for name, variance_type in (("beta", "fixed_large"), ("beta_tilde", "fixed_small")):
        pipe = DDPMHubPipeline(oracle, points_scheduler(variance_type=variance_type))
        pipe.set_progress_bar_config(disable=True)
        bound = pipe.bits_per_dim(x_0, generator=generator(seed + 1), batch_size=draws).total
        gap = bound - nll
        rows[name] = (float(nll.mean()), float(bound.mean()), float(gap.mean()), float(gap.std() / math.sqrt(draws)))
    return rows


def _variance_view(twod: TwoD, s: float, checked: dict | None = None, draws: int = 0):
    mix = GaussianMixture.gaussian(s)
    oracle = MixtureDenoiser(mix, twod.scheduler)
    steps = torch.arange(1, twod.scheduler.config.num_train_timesteps)  # beta-tilde_0 = 0 has no logarithm
    true_variance = oracle.reverse_variance()[1:, 0]
    beta = twod.scheduler.fixed_variance(steps, "beta")
    beta_tilde = twod.scheduler.fixed_variance(steps, "beta_tilde")
    exact = {name: oracle.expected_bound_gap(name) for name in ("beta", "beta_tilde")}
    beta_curve, beta_tilde_curve = gap_curves(twod)
    cross = crossover(twod)

    figure = Figure(figsize=(11.0, 3.6), dpi=90, layout="constrained")
    left, right = figure.subplots(1, 2)
    left.plot(steps, beta, color=BETA_COLOUR, lw=2, label=r"$\beta_t$")
    left.plot(steps, beta_tilde, color=BETA_TILDE_COLOUR, lw=2, ls="--", label=r"$\tilde\beta_t$")
    left.plot(steps, true_variance, color=DATA_COLOUR, lw=1.5, label=rf"true Var$[x_{{t-1}}\mid x_t]$, s = {s:.3g}")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("t")
    left.set_title("the reverse step's variance: true against the two fixed choices", fontsize=10)
    left.legend(frameon=False, fontsize=8, loc="lower right")
    right.plot(VARIANCE_S_GRID, beta_curve, color=BETA_COLOUR, lw=2, label=r"$\sigma_t^2=\beta_t$")
    right.plot(
        VARIANCE_S_GRID, beta_tilde_curve, color=BETA_TILDE_COLOUR, lw=2, ls="--", label=r"$\sigma_t^2=\tilde\beta_t$"
    )
    for name, colour in (("beta", BETA_COLOUR), ("beta_tilde", BETA_TILDE_COLOUR)):
        right.plot([s], [exact[name]], "o", color=colour, ms=5, mfc="white")
        if checked:
            _, _, gap, se = checked[name]
            right.errorbar([s * 1.04], [gap], yerr=[2 * se], color=colour, marker="s", ms=4, capsize=3, lw=1)
    if cross is not None:
        right.axvline(cross, color=DATA_COLOUR, lw=1, ls=":", label=f"crossing, s ≈ {cross:.3f}")
    right.set_xscale("log")
    right.set_xlabel("s (data N(0, s²I))")
    right.set_ylabel("bits/dim")
    title = "exact E[bound] − E[−log p(x₀)]" + (f"; squares: {draws} draws ± 2 SE" if checked else "")
    right.set_title(title, fontsize=10)
    right.legend(frameon=False, fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
        ax.spines[["top", "right"]].set_visible(False)

    rows = [
        f"| s = {s:.3g}, bits/dim | σ²ₜ = βₜ | σ²ₜ = β̃ₜ |",
        "|:--|--:|--:|",
        f"| bound − $(-\\log p(x_0))$ averaged over the data, exact (`expected_bound_gap`) | **{exact['beta']:.3f}** "
        f"| **{exact['beta_tilde']:.3f}** |",
    ]
    if checked:
        nll = checked["beta"][0]
        rows += [
            f"| {draws} draws: exact $-\\log p(x_0)$, mean | {nll:.3f} | {nll:.3f} |",
            f"| {draws} draws: the oracle's bound, mean (`pipe.bits_per_dim`) | {checked['beta'][1]:.3f} | "
            f"{checked['beta_tilde'][1]:.3f} |",
            f"| {draws} draws: bound − $(-\\log p(x_0))$ ± 2 SE | {checked['beta'][2]:.3f} ± "
            f"{2 * checked['beta'][3]:.3f} | {checked['beta_tilde'][2]:.3f} ± {2 * checked['beta_tilde'][3]:.3f} |",
        ]
    numbers = (
        "\n".join(rows)
        + "\n\n"
        + text(
            "twod_variance_result",
            s=f"{s:.3g}",
            tighter="β̃" if exact["beta_tilde"] < exact["beta"] else "β",
            crossover=f"{cross:.3f}" if cross is not None else "(none between 0.01 and 1)",
        )
    )
    return figure, numbers


def variance(twod: TwoD, s: float = 0.05):
    """For data N(0, s^2 I) in 2-D: the exact reverse variance (`reverse_variance`) against beta_t and beta-tilde_t
    over t, and the exact expected gap of the oracle's bound under each (`expected_bound_gap`) as s varies.

    Returns: the figure, and the numbers (Markdown).
    """
    return _variance_view(twod, as_float(s, "s", 0.01, 1.0))


def variance_check(twod: TwoD, s: float = 0.05, draws: float = 100, seed: float = 0):
    """`variance`, plus the oracle's bound measured by Monte Carlo on `draws` draws (`pipe.bits_per_dim`, under
    both variances) against their exact -log p(x_0): the closed form checked by sampling (2 x 1000 bound steps).

    Returns: the figure, and the numbers (Markdown).
    """
    s = as_float(s, "s", 0.01, 1.0)
    draws = as_int(draws, "draws", 20, 1000)
    checked = monte_carlo_bounds(twod, s, draws, as_seed(seed))
    return _variance_view(twod, s, checked, draws)


# ---------------------------------------------------------------------------------------------------------------------
# 6. Train it yourself
# ---------------------------------------------------------------------------------------------------------------------


def _train_figure(losses: list[float], checkpoints: list[tuple[int, np.ndarray]], reference) -> Figure:
    figure = Figure(figsize=(10.0, 3.4), dpi=90, layout="constrained")
    left, right = figure.subplots(1, 2)
    steps = np.arange(1, len(losses) + 1)
    left.plot(steps, losses, color=LEARNED_COLOUR, lw=0.5, alpha=0.35)
    if len(losses) >= 50:
        smooth = np.convolve(losses, np.ones(50) / 50, mode="valid")
        left.plot(steps[49:], smooth, color=LEARNED_COLOUR, lw=2, label="mean of 50 steps")
        left.legend(frameon=False, fontsize=8)
    left.set_xlabel("optimiser step")
    left.set_title(r"$L_\mathrm{simple}$ of each batch", fontsize=10)
    colours = [
        (0.2 + 0.6 * i / max(1, len(checkpoints) - 1), 0.2, 0.8 - 0.6 * i / max(1, len(checkpoints) - 1))
        for i in range(len(checkpoints))
    ]
    for (step, curve), colour in zip(checkpoints, colours, strict=True):
        right.plot(ERROR_TIMESTEPS, curve, color=colour, lw=1.5, marker="o", ms=2, label=f"step {step}")
    if reference is not None:
        right.plot(ERROR_TIMESTEPS, reference, color="#9ca3af", lw=2, ls="--", label="bundled model")
    right.set_xscale("symlog", linthresh=1)
    right.set_xlim(0, ERROR_TIMESTEPS[-1])
    right.set_yscale("log")
    right.set_xlabel("t")
    right.set_title("RMS noise error against E[ε | x_t], per t", fontsize=10)
    right.legend(frameon=False, fontsize=7, ncols=2)
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
        ax.spines[["top", "right"]].set_visible(False)
    return figure


def train(
    twod: TwoD,
    preset: str = "ring8",
    spread: float = 1.0,
    num_steps: float = 1500,
    seed: float = 0,
    trained: Trained | None = None,
):
    """Trains a fresh `DDPMHubMLP` on this data with `fit_steps` (L_simple, AdamW, warm-up and cosine decay) and
    streams L_simple and the noise error per t every TRAIN_EVERY steps.

    Yields: (figure, Markdown, the session's model): the model becomes the visitor's at the last frame.
    """
    mix = mixture(preset, spread)
    preset, spread = as_preset(preset), as_spread(spread)
    num_steps = as_int(num_steps, "training steps", TRAIN_EVERY, 10_000)
    seed = as_seed(seed)
    torch.manual_seed(seed)  # the initial weights
    model = DDPMHubMLP()
    bundled = twod.pretrained.get(preset)
    same_data = bundled is not None and (preset == "standard_normal" or math.isclose(spread, PRETRAINED_SPREAD))
    reference = error_by_t(twod, mix, bundled) if same_data else None
    losses, checkpoints = [], [(0, error_by_t(twod, mix, model.eval()))]
    started = time.perf_counter()
    for step in fit_steps(model, twod.scheduler, mix, num_steps=num_steps, seed=seed):
        losses.append(step.loss)
        if step.step % TRAIN_EVERY == 0 or step.step == num_steps:
            model.eval()
            checkpoints.append((step.step, error_by_t(twod, mix, model)))
            model.train()
            elapsed = time.perf_counter() - started
            status = (
                f"**Training {step.step} / {num_steps}** · L_simple (mean of the last {TRAIN_EVERY}) "
                f"**{np.mean(losses[-TRAIN_EVERY:]):.4f}** · RMS noise error, mean over the curve's t: "
                f"**{checkpoints[-1][1].mean():.3g}** · {elapsed:.0f} s"
            )
            if step.step < num_steps:
                yield _train_figure(losses, checkpoints, reference), status, trained
    model.eval()
    mine = Trained(preset=preset, spread=spread, num_steps=num_steps, model=copy.deepcopy(model))
    yield (
        _train_figure(losses, checkpoints, reference),
        text(
            "twod_train_result",
            steps=num_steps,
            seconds=f"{time.perf_counter() - started:.0f}",
            preset=PRESETS[preset],
            spread=f"{spread:g}",
            loss=f"{np.mean(losses[-TRAIN_EVERY:]):.4f}",
            first=f"{checkpoints[0][1].mean():.3g}",
            last=f"{checkpoints[-1][1].mean():.3g}",
            first_0=f"{checkpoints[0][1][0]:.3g}",
            last_0=f"{checkpoints[-1][1][0]:.3g}",
        ),
        mine,
    )


# ---------------------------------------------------------------------------------------------------------------------
# The tab
# ---------------------------------------------------------------------------------------------------------------------

# The 2-D events run in their own concurrency groups, never in the U-Net engine's queue: a class can use this tab
# while chains run. Training (tens of seconds of one core) runs one at a time.
TWOD = {"concurrency_id": "twod", "concurrency_limit": 2, "show_progress": "minimal"}
TWOD_LIVE = {**TWOD, "trigger_mode": "always_last", "show_progress": "hidden"}
TRAIN = {"concurrency_id": "twod-train", "concurrency_limit": 1, "show_progress": "minimal"}


def plot(elem_id: str) -> gr.Plot:
    return gr.Plot(show_label=False, elem_id=elem_id, elem_classes=["plot-box"])


def build(space, page: Page, twod: TwoD) -> dict:
    """Tab ④, laid out and wired. Returns its handlers by name (the models bound)."""
    forward_, score_, reverse_, variance_, check_, train_ = (
        bind(twod, fn) for fn in (forward, score, reverse, variance, variance_check, train)
    )
    T = twod.scheduler.config.num_train_timesteps
    with gr.Tab("④ The whole distribution (2-D)", id="twod"):
        gr.Markdown(text("twod_intro"), latex_delimiters=LATEX)
        trained = gr.State(None)  # the visitor's own model (`Trained`), per session
        with gr.Row(equal_height=True):
            preset = gr.Dropdown(
                [(label, value) for value, label in PRESETS.items()],
                value="ring8",
                label="data p(x₀)",
                elem_id="twod-preset",
                scale=2,
                min_width=200,
            )
            spread = gr.Slider(
                *SPREAD_RANGE, value=1.0, step=0.05, label="spread (distance of the modes)", scale=2, min_width=200
            )
            seed = seed_box()
        with gr.Tabs(overflow_behavior="wrap"):
            with gr.Tab("Data, forward & score", id="twod-forward"):
                t = gr.Slider(0, T - 1, value=100, step=1, label="t", elem_id="twod-t")
                forward_plot = plot("twod-forward-plot")
                forward_numbers = gr.Markdown(latex_delimiters=LATEX, elem_id="twod-forward-numbers")
                gr.Markdown(text("twod_score"), latex_delimiters=LATEX)
                score_plot = plot("twod-score-plot")
                score_numbers = gr.Markdown(latex_delimiters=LATEX, elem_id="twod-score-numbers")
            with gr.Tab("Reverse: particles to data", id="twod-reverse"):
                gr.Markdown(text("twod_reverse"), latex_delimiters=LATEX)
                with gr.Row(equal_height=True):
                    sampler = gr.Radio(
                        [(label, value) for value, label in SAMPLERS.items()],
                        value="ddpm-beta",
                        label="sampler",
                        scale=3,
                        min_width=260,
                    )
                    steps = gr.Slider(
                        10, T, value=100, step=10, label="steps (DDPM, DDIM)", min_width=160, elem_id="twod-steps"
                    )
                    particles = gr.Slider(
                        200, 4000, value=2000, step=100, label="particles", min_width=160, elem_id="twod-particles"
                    )
                    run = gr.Button("▶ Run both", variant="primary", min_width=120)
                reverse_info = gr.Markdown(latex_delimiters=LATEX, elem_id="twod-reverse-info")
                reverse_plot = plot("twod-reverse-plot")
            with gr.Tab("Which variance is right?", id="twod-variance"):
                gr.Markdown(text("twod_variance"), latex_delimiters=LATEX)
                with gr.Row(equal_height=True):
                    s = gr.Slider(0.01, 1.0, value=0.05, step=0.005, label="s: data N(0, s²I)", scale=3)
                    draws = gr.Slider(20, 1000, value=100, step=20, label="draws of x₀ for the check")
                    measure = gr.Button("▶ Check by Monte Carlo", variant="primary", min_width=160)
                variance_numbers = gr.Markdown(latex_delimiters=LATEX, elem_id="twod-variance-numbers")
                variance_plot = plot("twod-variance-plot")
            with gr.Tab("Train it yourself", id="twod-train"):
                gr.Markdown(text("twod_train"), latex_delimiters=LATEX)
                with gr.Row(equal_height=True):
                    train_steps = gr.Slider(
                        TRAIN_EVERY,
                        5000,
                        value=1500,
                        step=TRAIN_EVERY,
                        label="training steps",
                        scale=3,
                        elem_id="twod-train-steps",
                    )
                    fit = gr.Button("▶ Train on this data", variant="primary", min_width=160)
                train_info = gr.Markdown(latex_delimiters=LATEX, elem_id="twod-train-info")
                train_plot = plot("twod-train-plot")

    forward_args, score_args = [preset, spread, t, seed], [preset, spread, t, trained]
    gr.on(
        [preset.change, spread.change, t.change, seed.change],
        forward_,
        forward_args,
        [forward_plot, forward_numbers],
        api_name="twod_forward",
        **TWOD_LIVE,
    )
    gr.on(
        [preset.change, spread.change, t.change],
        score_,
        score_args,
        [score_plot, score_numbers],
        api_name="twod_score",
        **TWOD_LIVE,
    )
    run.click(
        reverse_,
        [preset, spread, sampler, steps, particles, seed, trained],
        [reverse_plot, reverse_info],
        api_name="twod_reverse",
        **TWOD,
    )
    s.release(variance_, [s], [variance_plot, variance_numbers], api_name="twod_variance", **TWOD_LIVE)
    measure.click(check_, [s, draws, seed], [variance_plot, variance_numbers], api_name="twod_variance_check", **TWOD)
    fit.click(
        train_,
        [preset, spread, train_steps, seed, trained],
        [train_plot, train_info, trained],
        api_name="twod_train",
        **TRAIN,
    ).then(score_, score_args, [score_plot, score_numbers], api_visibility="private", **TWOD)
    page.demo.load(forward_, forward_args, [forward_plot, forward_numbers], api_visibility="private", **TWOD_LIVE)
    page.demo.load(score_, score_args, [score_plot, score_numbers], api_visibility="private", **TWOD_LIVE)
    page.demo.load(variance_, [s], [variance_plot, variance_numbers], api_visibility="private", **TWOD_LIVE)
    return {
        "twod_forward": forward_,
        "twod_score": score_,
        "twod_reverse": reverse_,
        "twod_variance": variance_,
        "twod_variance_check": check_,
        "twod_train": train_,
    }
