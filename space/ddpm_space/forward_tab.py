"""Tab ①: forward noising. Any image through q(x_t | x_{t-1}) step by step beside the closed form q(x_t | x_0);
the schedules, linear vs cosine. Every number is the scheduler's (`coefficients`, `add_noise`, `snr`)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import gradio as gr
import torch
from matplotlib.figure import Figure

from ddpm_hub import DDPMHubScheduler

from .inputs import as_int, as_seed, generator, image_to_x0, upload_path
from .pictures import grid, single, strip_picture, to_u8
from .state import Space, bind
from .text import LATEX, fmt, text
from .widgets import LIGHT, LIVE, ImageSource, Page, picture, seed_box


def forward_formula(space: Space, t: int) -> str:
    """The closed form and one forward step, with this t's numbers (all from `scheduler.coefficients`)."""
    c = space.scheduler.coefficients(t)
    return (
        f"**t = {t}** · $\\beta_t$ = {fmt(c['beta_t'])} · $\\bar\\alpha_t$ = {fmt(c['alpha_bar_t'])} · "
        f"SNR = $\\bar\\alpha_t/(1-\\bar\\alpha_t)$ = {fmt(c['snr_t'])} · log SNR = {c['log_snr_t']:.3f}\n\n"
        "$$x_t = \\sqrt{\\bar\\alpha_t}\\,x_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\epsilon"
        f" = {c['sqrt_alpha_bar_t']:.4f}\\,x_0 + {c['sqrt_one_minus_alpha_bar_t']:.4f}\\,\\epsilon$$\n\n"
        "$$x_t = \\sqrt{1-\\beta_t}\\,x_{t-1} + \\sqrt{\\beta_t}\\,\\epsilon"
        f" = {c['sqrt_alpha_t']:.4f}\\,x_{{t-1}} + {c['sqrt_beta_t']:.4f}\\,\\epsilon$$"
    )


def forward_stats(space: Space, x0: torch.Tensor, step_by_step: torch.Tensor, closed: torch.Tensor, t: int) -> str:
    """Mean, and std of the noise part x_t - E[x_t | x_0], of both samples vs what q(x_t | x_0) predicts."""
    c = space.scheduler.coefficients(t)
    # E[x_t | x_0] = sqrt(alpha_bar_t) x_0: the closed form with eps = 0 (the scheduler's add_noise).
    signal = space.scheduler.add_noise(x0, torch.zeros_like(x0), torch.tensor([t]))

    def row(name: str, x: torch.Tensor) -> str:
        return f"| {name} | {x.mean().item():.4f} | {(x - signal).std().item():.4f} |"

    return "\n".join(
        [
            f"| at t = {t} | mean of $x_t$ | std of $x_t - \\sqrt{{\\bar\\alpha_t}}\\,x_0$ |",
            "|:--|--:|--:|",
            f"| **predicted** by $q(x_t \\mid x_0)$ | $\\sqrt{{\\bar\\alpha_t}}\\cdot$mean$(x_0)$ = "
            f"**{signal.mean().item():.4f}** | $\\sqrt{{1-\\bar\\alpha_t}}$ = "
            f"**{c['sqrt_one_minus_alpha_bar_t']:.4f}** |",
            row(f"{t + 1} single steps of $q(x_t \\mid x_{{t-1}})$", step_by_step),
            row("one jump with the closed form", closed),
        ]
    )


def forward(space: Space, image: Any, t: float = 250, seed: float = 0):
    """x_t of an image: t+1 single forward steps beside one closed-form jump, a strip over t, linear vs cosine.

    Returns: x_0, x_t (single steps), x_t (closed form), statistics (Markdown), formula (Markdown), the strip (one
    picture: linear and cosine rows over t), x_t with the linear schedule, x_t with the cosine schedule.
    """
    t = as_int(t, "t", 0, space.T - 1)
    seed = as_seed(seed)
    if upload_path(space, image) is None:
        return (
            None,
            None,
            None,
            "Upload an image or pick a digit to start.",
            forward_formula(space, t),
            None,
            None,
            None,
        )
    x0 = image_to_x0(space, image)  # (1, C, H, W)

    # One forward step at a time vs the closed form, both from the same seed (the library's noising chain).
    (at_t,) = space.pipe.noising_steps(x0, timesteps=[t], generator=generator(seed))
    # Linear vs cosine at the strip's timesteps and at t, with the same noise for both schedules.
    times = torch.tensor([*space.strip, t])
    noise = torch.randn(
        (len(times), space.channels, space.resolution, space.resolution), generator=generator(seed + 1)
    )
    x0s = x0.expand(len(times), -1, -1, -1)
    linear = to_u8(space.linear.add_noise(x0s, noise, times))
    cosine = to_u8(space.cosine.add_noise(x0s, noise, times))
    return (
        single(x0),
        single(at_t.sample),
        single(at_t.closed_form_sample),
        forward_stats(space, x0, at_t.sample, at_t.closed_form_sample, t),
        forward_formula(space, t),
        strip_picture(space.strip, {"linear": linear[:-1], "cosine": cosine[:-1]}),
        grid(linear[-1:]),
        grid(cosine[-1:]),
    )


HISTOGRAM_DRAWS = 256  # draws of x_t per picture: 256 x 784 pooled pixels, a smooth histogram in ~0.1 s
HISTOGRAM_BINS = 90


def q_histogram(space: Space, image: Any, t: float = 250, seed: float = 0) -> Figure | None:
    """q(x_t | x_0) as a distribution: the histogram of every pixel of many draws of x_t (`scheduler.add_noise`),
    under the exact density, the mixture over x_0's pixels of N(sqrt(alpha_bar_t) x_0, 1 - alpha_bar_t)
    (`scheduler.marginal_pixel_density`), and N(0, 1), where x_T ends up."""
    t = as_int(t, "t", 0, space.T - 1)
    seed = as_seed(seed)
    if upload_path(space, image) is None:
        return None
    x0 = image_to_x0(space, image)  # (1, C, H, W)
    shape = (HISTOGRAM_DRAWS, space.channels, space.resolution, space.resolution)
    noise = torch.randn(shape, generator=generator(seed))
    x_t = space.scheduler.add_noise(x0.expand(shape), noise, torch.tensor([t]))
    c = space.scheduler.coefficients(t)
    reach = min(5.0, 1.0 + 4 * c["sqrt_one_minus_alpha_bar_t"])
    values = torch.linspace(-reach, reach, 1201, dtype=torch.float64)
    density = space.scheduler.marginal_pixel_density(x0, t, values)
    standard = space.scheduler.gaussian_log_likelihood(values, 0.0, 0.0).exp()  # N(0, 1)
    figure = Figure(figsize=(7.2, 3.0), dpi=90, layout="constrained")
    ax = figure.subplots()
    heights, _, _ = ax.hist(
        x_t.flatten().numpy(), bins=HISTOGRAM_BINS, range=(-reach, reach), density=True, color="#c7d2fe",
        label=f"pixels of {HISTOGRAM_DRAWS} draws of $x_t$",
    )  # fmt: skip
    ax.plot(
        values, density, color="#4f46e5", lw=1.6, label=r"mixture of $N(\sqrt{\bar\alpha_t}x_0[i],\ 1-\bar\alpha_t)$"
    )
    ax.plot(values, standard, color="#6b7280", lw=1, ls="--", label="N(0, 1)")
    # the density's spikes at small t are far narrower than a bin: cap the axis at the histogram's tallest bar
    ax.set_ylim(0, 1.15 * max(float(heights.max()), float(standard.max())))
    ax.set_xlim(-reach, reach)
    ax.set_xlabel("pixel value of $x_t$")
    ax.set_title(f"q(x_t | x_0) at t = {t}, every pixel pooled", fontsize=11)
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    ax.spines[["top", "right"]].set_visible(False)
    return figure


@lru_cache(maxsize=8)
def schedule_curves(scheduler: DDPMHubScheduler) -> tuple[list[float], list[float], list[float]]:
    """beta_t, alpha_bar_t and log SNR(t) for every t, from `scheduler.coefficients` (computed once per schedule)."""
    coefficients = [scheduler.coefficients(t) for t in range(scheduler.config.num_train_timesteps)]
    return tuple([c[key] for c in coefficients] for key in ("beta_t", "alpha_bar_t", "log_snr_t"))


def schedules_plot(space: Space, t: float = 250) -> Figure:
    """beta_t, alpha_bar_t and log SNR(t) of the linear and cosine schedules, with a cursor at t."""
    t = as_int(t, "t", 0, space.T - 1)
    steps = list(range(space.T))
    figure = Figure(figsize=(10.5, 2.9), dpi=90, layout="constrained")
    axes = figure.subplots(1, 3)
    for name, scheduler, colour in (("linear", space.linear, "#4f46e5"), ("cosine", space.cosine, "#db2777")):
        for ax, values in zip(axes, schedule_curves(scheduler), strict=True):
            ax.plot(steps, values, color=colour, lw=2, label=name)
            ax.plot([t], [values[t]], "o", color=colour, ms=6)
    for ax, title in zip(axes, (r"$\beta_t$", r"$\bar\alpha_t$", r"$\log\,\mathrm{SNR}(t)$"), strict=True):
        ax.axvline(t, color="#111827", lw=1, ls="--")
        ax.set_title(title, fontsize=12)
        ax.set_xlabel("t")
        ax.set_xlim(0, space.T - 1)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    # beta_t on a log axis: the cosine schedule's clipped end (beta -> 0.999) would flatten everything else to zero.
    axes[0].set_yscale("log")
    axes[0].legend(frameon=False, loc="upper left")
    return figure


def build(space: Space, page: Page) -> dict:
    """Tab ①, laid out and wired. Returns its handlers by name (the Space bound)."""
    forward_ = bind(space, forward)
    schedules = bind(space, schedules_plot)
    histogram_ = bind(space, q_histogram)
    t_start = min(space.T - 1, space.T // 4)
    with gr.Tab("① Forward noising", id="forward"):
        gr.Markdown(
            text(
                "forward_intro",
                beta_first=f"{space.scheduler.betas[0].item():.2g}",
                beta_last=f"{space.scheduler.betas[-1].item():.2g}",
            ),
            latex_delimiters=LATEX,
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=290):
                source = ImageSource(space, page, "x₀ · any image", "fw-image", 300, page.examples, "fw", api=True)
            with gr.Column(scale=3):
                with gr.Row():
                    t = gr.Slider(0, space.T - 1, value=t_start, step=1, label="t", scale=4)
                    seed = seed_box()
                formula = gr.Markdown(
                    forward_formula(space, t_start), latex_delimiters=LATEX, elem_classes=["formula"], label="formula"
                )
                with gr.Row():
                    side = space.resolution
                    x0 = picture(f"x₀ · {side}×{side}, in [−1, 1]", height=230, elem_id="fw-x0")
                    steps = picture("x_t · step by step", height=230, elem_id="fw-steps")
                    closed = picture("x_t · one jump", height=230, elem_id="fw-closed")
                stats = gr.Markdown(latex_delimiters=LATEX, elem_id="fw-stats", label="statistics")
        gr.Markdown(text("q_histogram"), latex_delimiters=LATEX)
        histogram = gr.Plot(label="q(x_t | x_0) as a distribution", show_label=False, elem_id="fw-histogram")
        gr.Markdown(text("schedules"), latex_delimiters=LATEX)
        with gr.Row(equal_height=False):
            plot = gr.Plot(
                label="Schedules (cursor at t)",
                scale=3,
                show_label=False,
                elem_id="fw-plot",
                elem_classes=["plot-box"],
            )
            with gr.Column(scale=1, min_width=220), gr.Row():
                linear = picture("linear, at t", 170, 120, buttons=False, elem_id="fw-linear")
                cosine = picture("cosine, at t", 170, 120, buttons=False, elem_id="fw-cosine")
        strip = picture("x_t across t · same noise, two schedules", height=260, elem_id="fw-strip")

    gr.on(
        [source.image.change, t.change, seed.change],
        forward_,
        [source.image, t, seed],
        [x0, steps, closed, stats, formula, strip, linear, cosine],
        api_name="forward",
        preprocess=False,  # the upload goes to preprocess_image as a file: every bad file becomes a readable gr.Error
        **LIVE,
    )
    gr.on(
        [source.image.change, t.change, seed.change],
        histogram_,
        [source.image, t, seed],
        [histogram],
        api_name="q_histogram",
        preprocess=False,
        **LIVE,
    )
    t.change(schedules, [t], [plot], api_name="schedules", **LIVE)
    page.demo.load(schedules, [t], [plot], api_visibility="private", **LIGHT)
    return {"forward": forward_, "schedules_plot": schedules, "q_histogram": histogram_}
