"""Tab ③, "The bound": the variational bound of any image term by term, the two forms of the objective, and one t
in detail (x_t, eps, eps_hat, their difference, the score). Every number comes from `pipe.bound_steps` and the
scheduler (`loss_weight`, `x0_loss_weight`, `score_from_noise`); this module only collects and draws them."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure

from ddpm_hub import DDPMHubScheduler

from .inputs import as_int, as_label, as_seed, generator, image_to_x0
from .pictures import EPS_RANGE, signed, single
from .state import UNCONDITIONAL, Space, bind
from .text import LATEX, fmt, text
from .widgets import LIVE, ONE_AT_A_TIME, ImageSource, Page, digit_picker, picture, seed_box

AT_T_IDS = ("xt", "eps", "eps-hat", "diff", "x0-hat", "score")  # the pictures at one t
AT_T_LABELS = ("x_t", "true ε", "predicted ε̂", "ε − ε̂", "predicted x̂₀", "score −ε̂/√(1−ᾱ)")
BOUND_FRAMES = 10  # the bound's curve is redrawn at most this many times while it streams (plus the final one)
COLOURS = {"kl": "#4f46e5", "l0": "#dc2626", "prior": "#059669", "beta": "#4f46e5", "beta_tilde": "#db2777"}


def style(ax, title: str, xlabel: str = "t") -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, which="both")
    ax.spines[["top", "right"]].set_visible(False)


@lru_cache(maxsize=8)
def weight_curves(scheduler: DDPMHubScheduler) -> dict[str, np.ndarray]:
    """The weights of the two objective forms for every t (the scheduler's), computed once per schedule."""
    steps = torch.arange(scheduler.config.num_train_timesteps)
    return {
        "eps_beta": scheduler.loss_weight(steps, variance="beta").numpy(),
        "eps_beta_tilde": scheduler.loss_weight(steps, variance="beta_tilde").numpy(),
        "x0_beta": scheduler.x0_loss_weight(steps, variance="beta").numpy(),
        "x0_beta_tilde": scheduler.x0_loss_weight(steps, variance="beta_tilde").numpy(),
    }


def positive(ts: list[int], values: list[float]) -> tuple[list[int], list[float]]:
    """Only the points a log axis can show."""
    kept = [(t, v) for t, v in zip(ts, values, strict=True) if v > 0 and math.isfinite(v)]
    return [t for t, _ in kept], [v for _, v in kept]


# ---------------------------------------------------------------------------------------------------------------------
# The whole bound, streamed
# ---------------------------------------------------------------------------------------------------------------------


def new_bound() -> dict:
    """The terms collected so far, per t (python floats, bits/dim and per-pixel errors)."""
    return {"t": [], "vb": [], "noise_mse": [], "x0_mse": [], "prior": None}


def add_term(bound: dict, step) -> None:
    bound["t"].append(step.timestep)
    bound["vb"].append(float(step.vb_bpd[0]))
    bound["noise_mse"].append(float(step.noise_mse[0]))
    bound["x0_mse"].append(float(step.x0_mse[0]))
    bound["prior"] = float(step.prior_bpd[0])


def bound_parts(bound: dict) -> dict[str, float]:
    """L_T, the rate L_1 + ... + L_{T-1} so far, L_0 (once reached), their total: sums of the library's terms."""
    terms = dict(zip(bound["t"], bound["vb"], strict=True))
    rate = sum(value for t, value in terms.items() if t > 0)
    distortion = terms.get(0)
    total = bound["prior"] + rate + (distortion or 0.0)
    return {"prior": bound["prior"], "rate": rate, "distortion": distortion, "total": total}


def terms_plot(space: Space, bound: dict) -> Figure:
    """L_t over t (log scale), with L_0 and L_T marked: the bound term by term."""
    figure = Figure(figsize=(7.2, 3.2), dpi=90, layout="constrained")
    ax = figure.subplots()
    later = [(t, v) for t, v in zip(bound["t"], bound["vb"], strict=True) if t > 0]  # L_1 ... L_{T-1}
    ts, values = positive([t for t, _ in later], [v for _, v in later])
    ax.plot(ts, values, color=COLOURS["kl"], lw=1.5, label=r"$L_{t}$ = KL(q ‖ p$_\theta$), t ≥ 1")
    parts = bound_parts(bound)
    if parts["distortion"] is not None and parts["distortion"] > 0:
        ax.plot([0], [parts["distortion"]], "o", color=COLOURS["l0"], ms=7, label=r"$L_0 = -\log p_\theta(x_0|x_1)$")
    if parts["prior"] > 0:
        ax.plot(
            [space.T],
            [parts["prior"]],
            "s",
            color=COLOURS["prior"],
            ms=7,
            label=r"$L_T$ = KL(q(x$_T$|x$_0$) ‖ N(0, I))",
        )
    ax.set_yscale("log")
    ax.set_xlim(-space.T * 0.02, space.T * 1.02)
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    style(ax, f"the bound's terms, bits/dim · {len(bound['t'])} of {space.T} t")
    return figure


def forms_plot(space: Space, bound: dict, t: int | None = None) -> Figure:
    """The two forms of each term (004): eps-matching, ||eps - eps_hat||^2 with w(t), and x_0-matching,
    ||x_0 - x0_hat||^2 with its weight, each for sigma^2 = beta_t and beta-tilde_t; measured errors where streamed."""
    weights = weight_curves(space.scheduler)
    steps = np.arange(space.T)
    figure = Figure(figsize=(10.5 if bound["t"] else 7.2, 3.0), dpi=90, layout="constrained")
    axes = figure.subplots(1, 3 if bound["t"] else 2)  # this image's errors, once there are some
    for ax, form, title in (
        (axes[0], "eps", r"ε-matching weight $w(t)=\frac{\beta_t^2}{2\sigma_t^2\alpha_t(1-\bar\alpha_t)}$"),
        (axes[1], "x0", r"x$_0$-matching weight $\frac{\bar\alpha_{t-1}\beta_t^2}{2\sigma_t^2(1-\bar\alpha_t)^2}$"),
    ):
        for variance, label in (("beta", r"$\sigma_t^2=\beta_t$"), ("beta_tilde", r"$\sigma_t^2=\tilde\beta_t$")):
            dashes = "--" if variance == "beta_tilde" else "-"  # the two curves meet beyond small t
            ax.plot(steps, weights[f"{form}_{variance}"], color=COLOURS[variance], lw=1.5, ls=dashes, label=label)
        ax.set_yscale("log")
        ax.set_xscale("symlog", linthresh=10)  # beta_t and beta-tilde_t differ only at small t
        style(ax, title, "t (log scale above 10)")
        ax.legend(frameon=False, fontsize=8)
    if bound["t"]:
        ax = axes[2]
        for key, label, colour in (
            ("noise_mse", r"$\|\epsilon-\hat\epsilon\|^2$/D", COLOURS["beta"]),
            ("x0_mse", r"$\|x_0-\hat x_0\|^2$/D", COLOURS["beta_tilde"]),
        ):
            ts, values = positive(bound["t"], bound[key])
            ax.plot(ts, values, color=colour, lw=1, label=label)
        ax.legend(frameon=False, fontsize=8)
        ax.set_yscale("log")
        style(ax, "this image's errors, per pixel")
    for ax in axes:
        ax.set_xlim(0, space.T - 1)
        if t is not None:
            ax.axvline(t, color="#111827", lw=1, ls="--")
    return figure


def bound_summary(space: Space, bound: dict) -> str:
    parts = bound_parts(bound)
    done = len(bound["t"]) == space.T
    head = (
        f"**Bound done: {parts['total']:.3f} bits/dim**"
        if done
        else f"Walking the bound: {len(bound['t'])} of {space.T} terms (t = {bound['t'][-1]} now)…"
    )
    distortion = "—" if parts["distortion"] is None else f"{parts['distortion']:.4f}"
    return (
        f"{head}\n\n| part | bits/dim |\n|:--|--:|\n"
        f"| prior $L_T$ | {fmt(parts['prior'])} |\n"
        f"| rate $L_1 + \\dots + L_{{T-1}}$ | {parts['rate']:.4f} |\n"
        f"| distortion $L_0$ | {distortion} |\n"
        f"| **total** (an upper bound on $-\\log_2 p_\\theta(x_0)$ per pixel) | **{parts['total']:.4f}** |"
    )


def bound_inputs(space: Space, image: Any, digit: Any, seed: Any) -> tuple[torch.Tensor, int | None, int]:
    x0 = image_to_x0(space, image)
    return x0, as_label(space, digit), as_seed(seed)


def bound_stream(space: Space, image: Any, digit: Any = "any", seed: float = 0):
    """The bound of one image, term by term from t = T - 1 down to 0 (`pipe.bound_steps`), streamed.

    Yields: the terms over t (plot), the two forms' weights and this image's errors over t (plot), the parts and
    the total in bits/dim (Markdown).
    """
    x0, label, seed = bound_inputs(space, image, digit, seed)
    bound = new_bound()
    every = max(1, math.ceil(space.T / BOUND_FRAMES))
    try:
        for step in space.pipe.bound_steps(x0, class_labels=label, generator=generator(seed)):
            add_term(bound, step)
            if (step.step_index + 1) % every == 0 and step.step_index + 1 < step.num_steps:
                yield terms_plot(space, bound), forms_plot(space, bound), bound_summary(space, bound)
    except ValueError as err:
        raise gr.Error(str(err)) from None
    yield terms_plot(space, bound), forms_plot(space, bound), bound_summary(space, bound)


# ---------------------------------------------------------------------------------------------------------------------
# One t in detail
# ---------------------------------------------------------------------------------------------------------------------


def at_t(space: Space, image: Any, digit: Any = "any", t: float = 100, seed: float = 0):
    """The bound's term at one t: x_t ~ q(x_t | x_0), the true eps, eps_hat, eps - eps_hat, x0_hat, the score.

    Returns: x_t, eps, eps_hat, eps - eps_hat, x0_hat, the score (pictures), the numbers (Markdown), the weights of
    both forms with a cursor at t (plot).
    """
    x0, label, seed = bound_inputs(space, image, digit, seed)
    t = as_int(t, "t", 0, space.T - 1)
    try:
        (step,) = space.pipe.bound_steps(x0, class_labels=label, generator=generator(seed), timesteps=[t])
    except ValueError as err:
        raise gr.Error(str(err)) from None
    score = space.scheduler.score_from_noise(step.sample, t, step.noise_pred)  # -eps_hat / sqrt(1 - alpha_bar_t)
    c = space.scheduler.coefficients(t)
    weights = weight_curves(space.scheduler)
    term = "L_0 = -\\log p_\\theta(x_0 \\mid x_1)" if t == 0 else "L_t = \\mathrm{KL}(q \\,\\|\\, p_\\theta)"
    numbers = (
        f"**t = {t}** · $\\sqrt{{\\bar\\alpha_t}}$ = {c['sqrt_alpha_bar_t']:.4f} · "
        f"$\\sqrt{{1-\\bar\\alpha_t}}$ = {c['sqrt_one_minus_alpha_bar_t']:.4f}\n\n"
        "| | value |\n|:--|--:|\n"
        f"| $\\|\\epsilon - \\hat\\epsilon\\|^2 / D$ (L_simple's term at t, weight 1) | "
        f"**{float(step.noise_mse[0]):.4f}** |\n"
        f"| $\\|x_0 - \\hat x_0\\|^2 / D$ | {float(step.x0_mse[0]):.4f} |\n"
        f"| $w(t)$ with $\\sigma_t^2 = \\beta_t$ | {fmt(float(weights['eps_beta'][t]))} |\n"
        f"| $w(t)$ with $\\sigma_t^2 = \\tilde\\beta_t$ | {fmt(float(weights['eps_beta_tilde'][t]))} |\n"
        f"| the bound's term ${term}$, bits/dim | **{fmt(float(step.vb_bpd[0]))}** |\n"
        f"| largest $|\\nabla \\log q(x_t)|$ (score, shown scaled) | {fmt(float(score.abs().max()))} |"
    )
    return (
        single(step.sample),
        single(step.noise, EPS_RANGE),
        single(step.noise_pred, EPS_RANGE),
        single(step.noise - step.noise_pred, EPS_RANGE),
        single(step.pred_original_sample),
        signed(score),
        numbers,
        forms_plot(space, new_bound(), t),
    )


# ---------------------------------------------------------------------------------------------------------------------
# The posterior at t, with numbers
# ---------------------------------------------------------------------------------------------------------------------

POSTERIOR_IDS = ("mu-tilde", "mu-theta", "mu-diff")
POSTERIOR_LABELS = ("true posterior mean μ̃(x_t, x₀)", "model's mean μ_θ(x_t)", "μ̃ − μ_θ (own scale)")


def posterior_numbers(space: Space, out) -> str:
    """The two means as linear combinations, beta-tilde, and L_t's parts for both sigma^2 (all the library's)."""
    t, c = out.timestep, out.coefficients
    beta, tilde = out.terms["beta"], out.terms["beta_tilde"]

    def row(name: str, key: str, bold: bool = False, digits: int | None = None) -> str:
        values = [getattr(kl, key) for kl in (beta, tilde)]
        values = [float(value[0]) if torch.is_tensor(value) else float(value) for value in values]
        cells = [fmt(value) if digits is None else f"{value:.{digits}g}" for value in values]
        cells = [f"**{cell}**" for cell in cells] if bold else cells
        return f"| {name} | {cells[0]} | {cells[1]} |"

    variance_type = space.scheduler.config.variance_type
    return "\n".join(
        [
            f"**t = {t}** · $\\tilde\\mu_t = {c['posterior_x0']:.5f}\\,x_0 + {c['posterior_xt']:.5f}\\,x_t$ · "
            f"$\\mu_\\theta = {c['model_xt']:.5f}\\,x_t - {c['model_eps']:.5f}\\,\\hat\\epsilon$ · "
            f"$\\tilde\\beta_t$ = {fmt(out.posterior_variance)} · largest $|\\tilde\\mu - \\mu_\\theta|$ = "
            f"{fmt(float(out.mean_difference.abs().max()))}",
            "",
            "| per pixel, nats | $\\sigma_t^2 = \\beta_t$ | $\\sigma_t^2 = \\tilde\\beta_t$ |",
            "|:--|--:|--:|",
            row("$\\sigma_t^2$", "model_variance"),
            row("$w(t) = \\beta_t^2 / (2\\sigma_t^2\\alpha_t(1-\\bar\\alpha_t))$", "loss_weight"),
            row("$\\|\\tilde\\mu - \\mu_\\theta\\|^2 / (2\\sigma_t^2)$", "mean_part", digits=10),
            row(
                "$w(t)\\,\\|\\epsilon - \\hat\\epsilon\\|^2$ (the same, from the noise)",
                "weighted_noise_error",
                digits=10,
            ),
            row(
                "$+\\ \\tfrac12(\\tilde\\beta_t/\\sigma_t^2 - 1 + \\log(\\sigma_t^2/\\tilde\\beta_t))$",
                "variance_part",
            ),
            row("$= L_t = \\mathrm{KL}(q \\,\\|\\, p_\\theta)$", "kl", bold=True),
            row("$L_t$ in bits/dim", "kl_bpd"),
            "",
            f"The bound's own term (`vb_terms_bpd`: $\\hat x_0$ clipped to [−1, 1] as sampling does, "
            f"`{variance_type}`): **{fmt(float(out.vb_bpd[0]))}** bits/dim.",
        ]
    )


def posterior_at_t(space: Space, image: Any, digit: Any = "any", t: float = 100, seed: float = 0):
    """The true posterior q(x_{t-1} | x_t, x_0) beside the model's p_theta at one t (`pipe.posterior_at_t`, the same
    x_t as `at_t` for the same seed). Returns: mu_tilde, mu_theta, mu_tilde - mu_theta (pictures), the numbers
    (Markdown)."""
    x0, label, seed = bound_inputs(space, image, digit, seed)
    t = as_int(t, "t", 0, space.T - 1)
    if t == 0:
        message = (
            "**t = 0**: $\\tilde\\beta_0 = 0$, so the true posterior is a point and the bound's term is the "
            "decoder $L_0 = -\\log p_\\theta(x_0 \\mid x_1)$, not a KL. Pick t ≥ 1."
        )
        return None, None, None, message
    try:
        out = space.pipe.posterior_at_t(x0, t, class_labels=label, generator=generator(seed))
    except ValueError as err:
        raise gr.Error(str(err)) from None
    return (
        single(out.posterior_mean.float()),
        single(out.model_mean.float()),
        signed(out.mean_difference.float()),
        posterior_numbers(space, out),
    )


# ---------------------------------------------------------------------------------------------------------------------
# The tab
# ---------------------------------------------------------------------------------------------------------------------


def build(space: Space, page: Page) -> dict:
    """ "The bound, term by term", laid out and wired. Returns its handlers by name (the Space bound)."""
    bound, at_t_, posterior_ = bind(space, bound_stream), bind(space, at_t), bind(space, posterior_at_t)
    with gr.Tab("The bound, term by term", id="bound"):
        with gr.Accordion(
            "The bound on the likelihood (ELBO), in formulas, and what it is on the bundled model",
            open=False,
            elem_id="objective-intro",
        ):
            gr.Markdown(text("objective_intro"), latex_delimiters=LATEX)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=290):
                with gr.Row():  # first, as in every tab: in the first screen
                    run = gr.Button("▶ Walk the bound", variant="primary", scale=2, min_width=80)
                    stop = gr.Button("■ Stop", variant="stop", scale=1, min_width=80)
                source = ImageSource(space, page, "x₀ · any image", "ob-image", 300, page.examples)
                digit = digit_picker(space.num_classes, UNCONDITIONAL)
                seed = seed_box()
            with gr.Column(scale=3):
                terms = gr.Plot(label="the bound's terms over t", show_label=False, elem_id="ob-terms")
                summary = gr.Markdown(latex_delimiters=LATEX, elem_id="ob-summary")
        forms = gr.Plot(label="the two forms", show_label=False, elem_id="ob-forms")
        gr.Markdown(text("objective_at_t"), latex_delimiters=LATEX)
        t = gr.Slider(0, space.T - 1, value=min(space.T - 1, space.T // 10), step=1, label="t", elem_id="ob-t")
        with gr.Row():  # 6 in a row
            pictures = [
                picture(label, height=170, min_width=150, buttons=False, elem_id=f"ob-{name}")
                for name, label in zip(AT_T_IDS, AT_T_LABELS, strict=True)
            ]
        with gr.Row(equal_height=False):
            numbers = gr.Markdown(latex_delimiters=LATEX, elem_id="ob-numbers")
            weights = gr.Plot(label="weights at t", show_label=False)
        gr.Markdown(text("posterior_at_t"), latex_delimiters=LATEX)
        with gr.Row():  # the three pictures in a row, the table below them at full width (beside, it was cut off)
            means = [
                picture(label, height=170, min_width=150, buttons=False, elem_id=f"ob-{name}")
                for name, label in zip(POSTERIOR_IDS, POSTERIOR_LABELS, strict=True)
            ]
        posterior_table = gr.Markdown(latex_delimiters=LATEX, elem_id="ob-posterior")

    event = run.click(
        bound,
        [source.image, digit, seed],
        [terms, forms, summary],
        api_name="bound",
        preprocess=False,
        **ONE_AT_A_TIME,
    )
    stop.click(None, None, None, cancels=[event], api_visibility="private")
    gr.on(
        [source.image.change, t.change, digit.change, seed.change],
        at_t_,
        [source.image, digit, t, seed],
        [*pictures, numbers, weights],
        api_name="at_t",
        preprocess=False,
        **LIVE,
    )
    gr.on(
        [source.image.change, t.change, digit.change, seed.change],
        posterior_,
        [source.image, digit, t, seed],
        [*means, posterior_table],
        api_name="posterior_at_t",
        preprocess=False,
        **LIVE,
    )
    return {"bound": bound, "at_t": at_t_, "posterior_at_t": posterior_}
