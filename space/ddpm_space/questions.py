"""Tab ③, the notes' four questions, each an experiment run live on the loaded model(s):

1. why add fresh noise at every sampling step?   the same x_T with sigma_t z and with sigma_t = 0 (`noise_scale=0`)
2. why must t be an input of the network?        the same chain told the right t and a wrong one (`model_timestep`)
3. why predict the noise rather than x_0?        an eps-model and an x_0-model: samples, judge accuracy, loss per t
4. why does one ELBO form vary so much more?     `pipe.elbo_estimates`: both forms on the same trajectories

The diffusion math is the library's (pipeline and scheduler); this module runs the chains side by side and draws.
"""

from __future__ import annotations

import json
import math
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure

from . import chains
from .inputs import as_guidance, as_int, as_label, as_sampler, as_seed, as_steps, generator, image_to_x0
from .pictures import EPS_RANGE, grid, to_u8
from .state import SAMPLERS, UNCONDITIONAL, Space, bind
from .text import LATEX, text
from .widgets import ONE_AT_A_TIME, PRIVATE, ImageSource, Page, digit_picker, guidance_slider, picture, seed_box

MAX_IMAGES = 8  # images per side of a question's comparison
# The questions' recorded answers stay folded until the learner's own run ends: predict first, then look.
ANSWER_LABEL = "What the bundled model did (recorded; opens when your run ends)"
MAX_DRAWS = 256  # trajectories of the ELBO experiment
WRONG_T = {"fixed": "a fixed t", "shift": "t shifted by"}
X0_MISSING = "_No x₀-prediction model is loaded (DDPM_HUB_X0_MODEL)._"
HEARTBEAT_S = 1.0  # a long library call reports its elapsed time this often
ELBO_CHUNKS, ELBO_MIN_CHUNK = 8, 4  # the ELBO experiment's trajectories: at most this many calls, of at least 4


def sample_stats(images: torch.Tensor) -> str:
    """Per-set pixel statistics of final samples in [-1, 1]: what the eye sees, in numbers."""
    saturated = (images.abs() > 0.9).float().mean().item()
    middle = (images.abs() < 0.5).float().mean().item()
    return f"pixel std {images.std().item():.3f} · {saturated:.0%} of pixels near ±1 · {middle:.0%} mid-gray"


def twin_chains(space: Space, sampler: str, digit, guidance, steps, seed, batch, variants: dict) -> tuple[dict, int]:
    """A question's chains, checked and set up (`chains.start`): the same x_T (drawn from `seed`) and the same z
    draws (from seed + 1), one chain per variant, name -> (pipe, extra chain options). Returns name ->
    `denoising_steps` generator, and the number of steps."""
    label, guidance = as_label(space, digit), as_guidance(guidance)
    steps, seed, batch = as_steps(space, steps), as_seed(seed), as_int(batch, "batch size", 1, MAX_IMAGES)
    x_T = torch.randn((batch, space.channels, space.resolution, space.resolution), generator=generator(seed))
    options = dict(batch_size=batch, class_labels=label, num_inference_steps=steps, latents=x_T)
    return {
        name: pipe.denoising_steps(
            chain=chains.start(space, sampler, guidance, pipe, generator=generator(seed + 1), **options, **extra)
        )
        for name, (pipe, extra) in variants.items()
    }, steps


def side_by_side(chains_: dict, every: int):
    """Advances several chains (name -> `denoising_steps` generator) in lockstep. Yields (name -> step, final):
    every k-th tick with final=False, then the last tick with final=True; a library ValueError becomes a gr.Error."""
    steps = {}
    try:
        for index, ticked in enumerate(zip(*chains_.values(), strict=True)):
            steps = dict(zip(chains_, ticked, strict=True))
            if index % every == 0:
                yield steps, False
    except ValueError as err:
        raise gr.Error(str(err)) from None
    yield steps, True


# ---------------------------------------------------------------------------------------------------------------------
# 1. Fresh noise at every step
# ---------------------------------------------------------------------------------------------------------------------


def fresh_noise(
    space: Space,
    digit: Any = "3",
    guidance: float = 2.0,
    sampler: str = "ddpm-fixed_small",
    steps: float = 1000,
    seed: float = 0,
    batch: float = 4,
):
    """The same x_T and the same z draws, run with x_{t-1} = mu_theta + sigma_t z and with the mean only (sigma_t z
    scaled by `noise_scale` = 0).

    Yields: with noise (x_t, then x_0), mean only (x_t, then x_0), status (Markdown).
    """
    sampler = as_sampler(sampler, ("ddpm-fixed_small", "ddpm-fixed_large"))
    variants = {"noise": (space.pipe, {"noise_scale": 1.0}), "mean": (space.pipe, {"noise_scale": 0.0})}
    chains_, steps = twin_chains(space, sampler, digit, guidance, steps, seed, batch, variants)
    for steps_now, final in side_by_side(chains_, chains.stream_every(steps)):
        noise, mean = steps_now["noise"], steps_now["mean"]
        if not final:
            status = f"Step {noise.step_index + 1} / {noise.num_steps} (t = {noise.timestep}), both chains"
            yield grid(to_u8(noise.sample)), grid(to_u8(mean.sample)), status
    status = (
        f"**Done: {noise.num_steps} steps from the same $x_T$.**\n\n"
        f"| | what came out |\n|:--|:--|\n"
        f"| $\\sigma_t z$ added (the sampler) | {sample_stats(noise.prev_sample)} |\n"
        f"| $\\sigma_t = 0$ (the mean only) | {sample_stats(mean.prev_sample)} |"
    )
    yield grid(to_u8(noise.prev_sample)), grid(to_u8(mean.prev_sample)), status


# ---------------------------------------------------------------------------------------------------------------------
# 2. t as an input of the network
# ---------------------------------------------------------------------------------------------------------------------


def wrong_timestep(space: Space, wrong: str, value: int):
    """The t told to the U-Net instead of the true t: a fixed one, or the true t shifted (kept in [0, T - 1])."""
    if wrong == "fixed":
        told = as_int(value, "wrong t", 0, space.T - 1)
        return lambda t: told
    if wrong == "shift":
        shift = as_int(value, "shift", -(space.T - 1), space.T - 1)
        return lambda t: min(space.T - 1, max(0, int(t) + shift))
    raise gr.Error(f"Unknown wrong-t rule {wrong!r}: choose one of {', '.join(WRONG_T)}.")


def timestep_input(
    space: Space,
    digit: Any = "3",
    guidance: float = 2.0,
    steps: float = 1000,
    seed: float = 0,
    batch: float = 4,
    wrong: str = "fixed",
    value: float = 500,
    probe_t: float = 500,
):
    """The same chain (same x_T, same z) with the U-Net told the true t and a wrong one; and at one step, eps_hat of
    the same x_t for the true t and the wrong t.

    Yields: right-t chain, wrong-t chain (x_t, then x_0), eps_hat at the probe with the true t, with the wrong t,
    status (Markdown).
    """
    told = wrong_timestep(space, wrong, value)
    probe_t = as_int(probe_t, "probe t", 0, space.T - 1)
    variants = {"right": (space.pipe, {}), "wrong": (space.pipe, {"model_timestep": told})}
    chains_, steps = twin_chains(space, "ddpm-fixed_small", digit, guidance, steps, seed, batch, variants)
    label, guidance = as_label(space, digit), as_guidance(guidance)  # for the probe, guided as the chains are
    probe = None  # (t, eps_hat told t, eps_hat told the wrong t) at the first step with t <= probe_t
    eps_right = eps_wrong = None
    every = chains.stream_every(steps)
    # Every step is looked at (the probe's t may fall between two streamed ones), every k-th one is shown.
    for index, (steps_now, final) in enumerate(side_by_side(chains_, 1)):
        right, wrong_step = steps_now["right"], steps_now["wrong"]
        if probe is None and right.timestep <= probe_t:
            probe = probe_step(space, right, told, label, guidance)
            eps_right, eps_wrong = (grid(to_u8(e, EPS_RANGE)) for e in probe[1:])
        if not final and index % every == 0:
            status = (
                f"Step {right.step_index + 1} / {right.num_steps}: the U-Net is told t = {right.timestep} "
                f"(right) and t = {told(right.timestep)} (wrong)"
            )
            yield grid(to_u8(right.sample)), grid(to_u8(wrong_step.sample)), eps_right, eps_wrong, status
    t, e_right, e_wrong = probe
    difference = (e_right - e_wrong).pow(2).mean().sqrt().item()
    # t counts from 0 here as on the slider; a chain of fewer steps may not visit the chosen t itself
    probe_note = "" if t == probe_t else f" (the chain's first step at or below the chosen t = {probe_t})"
    status = (
        f"**Done: {right.num_steps} steps, same $x_T$ and same $z$; only the t told to the U-Net differs.**\n\n"
        f"At t = {t}{probe_note}, the same $x_t$: $\\hat\\epsilon$ told t = {t} has RMS "
        f"{e_right.pow(2).mean().sqrt().item():.3f}, "
        f"told t = {told(t)} RMS {e_wrong.pow(2).mean().sqrt().item():.3f}; "
        f"RMS of their difference **{difference:.3f}**.\n\n"
        f"| | what came out |\n|:--|:--|\n"
        f"| the true t | {sample_stats(right.prev_sample)} |\n"
        f"| the wrong t | {sample_stats(wrong_step.prev_sample)} |"
    )
    yield grid(to_u8(right.prev_sample)), grid(to_u8(wrong_step.prev_sample)), eps_right, eps_wrong, status


def probe_step(space: Space, step, told, label: int | None, guidance: float) -> tuple[int, torch.Tensor, torch.Tensor]:
    """eps_hat of the right chain's x_t with the true t and with the wrong t (guided as the chain is)."""
    labels = None if label is None else torch.full((step.sample.shape[0],), label, dtype=torch.long)
    with torch.inference_mode():
        outputs = [
            space.pipe.predict(step.sample, torch.tensor(t), labels, guidance)[:, : space.channels]
            for t in (step.timestep, told(step.timestep))
        ]
    return step.timestep, *outputs


# ---------------------------------------------------------------------------------------------------------------------
# 3. Predict the noise, or x_0?
# ---------------------------------------------------------------------------------------------------------------------


def evaluation_rows(space: Space) -> str:
    """Judge accuracy of both models, from the evaluation.json in each model folder (what `ddpm_hub.evaluation`
    measured over 500-1000 samples): a row per run judged on both models (an entry with `accuracy`)."""
    results = {}
    for name, model_id in (("predicts ε", space.model_id), ("predicts x₀", space.x0_model_id)):
        path = Path(model_id or "") / "evaluation.json"
        results[name] = json.loads(path.read_text()) if path.is_file() else {}
    # Only judged runs make rows: evaluation.json also holds other records (`guidance_curve`, `quality_per_nfe`,
    # `nll-...`) that have no judge accuracy.
    judged = {
        name: {k: v for k, v in runs.items() if isinstance(v, dict) and "accuracy" in v}
        for name, runs in results.items()
    }
    keys = [key for key in judged["predicts ε"] if key in judged["predicts x₀"]]
    if not keys:
        return "_No evaluation run is recorded for both models (evaluation.json in each model folder)._"
    lines = ["| evaluation | judge accuracy, ε-model | judge accuracy, x₀-model | Fréchet (judge features), ε | x₀ |"]
    lines.append("|:--|--:|--:|--:|--:|")
    for key in keys:
        eps, x0 = judged["predicts ε"][key], judged["predicts x₀"][key]
        counts = f"{eps.get('num_samples', '?')} / {x0.get('num_samples', '?')} samples"
        # a Fréchet distance grows as the sample count shrinks: compare the two only at the same count
        same_count = eps.get("num_samples") == x0.get("num_samples")
        frechet = [f"{run.get('frechet_distance', float('nan')):.2f}" if same_count else "–" for run in (eps, x0)]
        lines.append(
            f"| `{key}` ({counts}) | {eps['accuracy']:.1%} | {x0['accuracy']:.1%} | {frechet[0]} | {frechet[1]} |"
        )
    return "\n".join(lines)


def loss_plot(space: Space, errors: dict) -> Figure:
    """noise_mse and x0_mse over t for both models (log scale)."""
    figure = Figure(figsize=(10.5, 3.0), dpi=90, layout="constrained")
    axes = figure.subplots(1, 2)
    for ax, key, title in (
        (axes[0], "noise_mse", r"$\|\epsilon-\hat\epsilon\|^2$/D (the ε-model's loss)"),
        (axes[1], "x0_mse", r"$\|x_0-\hat x_0\|^2$/D (the x$_0$-model's loss)"),
    ):
        for name, colour in (("predicts ε", "#4f46e5"), ("predicts x₀", "#db2777")):
            if errors.get(name):
                ts = errors[name]["t"]
                ax.plot(ts, errors[name][key], color=colour, lw=1.5, marker=".", label=name)
        ax.set_yscale("log")
        ax.set_xlim(0, space.T - 1)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("t")
        ax.grid(alpha=0.3, which="both")
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(frameon=False, fontsize=8)
    return figure


LOSS_POINTS = 50  # timesteps at which both models' errors are measured


def noise_vs_x0(
    space: Space,
    image: Any,
    digit: Any = "3",
    guidance: float = 2.0,
    steps: float = 100,
    seed: float = 0,
    batch: float = 4,
):
    """Two models trained alike, one predicting eps and one x_0: samples from the same x_T, judge accuracy from
    their evaluation.json, and both errors per t on one image (`pipe.bound_steps` at LOSS_POINTS timesteps).

    Yields: eps-model samples, x_0-model samples, loss per t (plot), status and judge table (Markdown).
    """
    if space.x0_pipe is None:
        raise gr.Error("No x_0-prediction model is loaded (set DDPM_HUB_X0_MODEL, or add space/x0_model).")
    x0 = image_to_x0(space, image)
    pipes = {"predicts ε": space.pipe, "predicts x₀": space.x0_pipe}
    variants = {name: (pipe, {}) for name, pipe in pipes.items()}
    chains_, steps = twin_chains(space, "ddpm-fixed_small", digit, guidance, steps, seed, batch, variants)
    judge = evaluation_rows(space)
    errors: dict = {}
    for now, final in side_by_side(chains_, chains.stream_every(steps)):
        eps_step, x0_step = now["predicts ε"], now["predicts x₀"]
        if not final:
            status = f"Sampling: step {eps_step.step_index + 1} / {eps_step.num_steps} (t = {eps_step.timestep})"
            yield grid(to_u8(eps_step.sample)), grid(to_u8(x0_step.sample)), None, status
    samples = grid(to_u8(eps_step.prev_sample)), grid(to_u8(x0_step.prev_sample))
    timesteps = sorted({round(k * (space.T - 1) / (LOSS_POINTS - 1)) for k in range(LOSS_POINTS)}, reverse=True)
    label = as_label(space, digit)
    try:
        for name, pipe in pipes.items():
            errors[name] = {"t": [], "noise_mse": [], "x0_mse": []}
            for step in pipe.bound_steps(
                x0, class_labels=label, generator=generator(as_seed(seed)), timesteps=timesteps
            ):
                errors[name]["t"].append(step.timestep)
                errors[name]["noise_mse"].append(float(step.noise_mse[0]))
                errors[name]["x0_mse"].append(float(step.x0_mse[0]))
            yield *samples, loss_plot(space, errors), f"Measuring the loss per t: {name} done"
    except ValueError as err:
        raise gr.Error(str(err)) from None
    means = {name: (float(np.mean(e["noise_mse"])), float(np.mean(e["x0_mse"]))) for name, e in errors.items()}
    status = (
        f"**Done.** Same $x_T$, {steps} DDPM steps each.\n\n"
        "Mean over the "
        f"{len(errors['predicts ε']['t'])} measured t, on this image (same $x_t$ draws for both models):\n\n"
        "| | mean $\\|\\epsilon-\\hat\\epsilon\\|^2$/D | mean $\\|x_0-\\hat x_0\\|^2$/D | samples |\n"
        "|:--|--:|--:|:--|\n"
        + "\n".join(
            f"| {name} | {means[name][0]:.4f} | {means[name][1]:.4f} | {sample_stats(step.prev_sample)} |"
            for name, step in (("predicts ε", eps_step), ("predicts x₀", x0_step))
        )
        + "\n\n**Judge accuracy** (a separate digit classifier on the models' samples, from each model's "
        "evaluation.json):\n\n" + judge
    )
    yield *samples, loss_plot(space, errors), status


# ---------------------------------------------------------------------------------------------------------------------
# 4. The two forms of the ELBO
# ---------------------------------------------------------------------------------------------------------------------


def elbo_histogram(kl_form: np.ndarray, trajectory_form: np.ndarray) -> Figure:
    """Both forms' estimates as histograms on one axis, and per trajectory one against the other."""
    figure = Figure(figsize=(10.5, 3.0), dpi=90, layout="constrained")
    axes = figure.subplots(1, 2)
    low, high = min(kl_form.min(), trajectory_form.min()), max(kl_form.max(), trajectory_form.max())
    bins = np.linspace(low, high, 30) if high > low else 10
    axes[0].hist(trajectory_form, bins=bins, color="#db2777", alpha=0.6, label="single trajectory")
    axes[0].hist(kl_form, bins=bins, color="#4f46e5", alpha=0.6, label="KL form")
    axes[0].set_title(f"{len(kl_form)} estimates of each form", fontsize=11)
    axes[0].set_xlabel("estimate of the bound, bits/dim")
    axes[0].legend(frameon=False, fontsize=8)
    axes[1].plot(kl_form, trajectory_form, "o", color="#111827", ms=4, alpha=0.7)
    axes[1].plot([low, high], [low, high], color="#9ca3af", lw=1, ls="--")
    axes[1].set_title("per trajectory: the two forms of the same draw", fontsize=11)
    axes[1].set_xlabel("KL form, bits/dim")
    axes[1].set_ylabel("single trajectory, bits/dim")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    return figure


def elbo_chunks(draws: int) -> list[int]:
    """The trajectories split into ELBO_CHUNKS calls or fewer, each of at least ELBO_MIN_CHUNK (and so >= 2, as
    `elbo_estimates` needs): the page shows the histogram after each call. Smaller calls cost more U-Net calls in
    all (a batch of 4 took 1.2x the time per image of 16 on one CPU thread), so not more of them than that."""
    count = max(1, min(ELBO_CHUNKS, draws // ELBO_MIN_CHUNK))
    return [draws // count + (1 if index < draws % count else 0) for index in range(count)]


def elbo_forms(space: Space, image: Any, digit: Any = "any", draws: float = 16, seed: float = 0):
    """`pipe.elbo_estimates`: `draws` forward trajectories of one image, the bound estimated on each in both forms.
    The trajectories run in a few calls of the library (`elbo_chunks`, one generator through all of them), so the
    histogram fills in as they come.

    Yields: "k of N trajectories" with the histogram so far (None before the first call ends), every HEARTBEAT_S;
    then the histograms (plot) and the two means and standard deviations (Markdown).
    """
    x0 = image_to_x0(space, image)
    label = as_label(space, digit)
    draws = as_int(draws, "number of draws", 16, MAX_DRAWS)
    seed = as_seed(seed)
    chunks = elbo_chunks(draws)
    result: dict = {"kl_form": [], "trajectory_form": []}
    lock = threading.Lock()

    def run() -> None:
        rng = generator(seed)
        try:
            for size in chunks:
                out = space.pipe.elbo_estimates(x0, num_draws=size, class_labels=label, generator=rng)
                with lock:
                    result["kl_form"].append(out.kl_form.double().numpy())
                    result["trajectory_form"].append(out.trajectory_form.double().numpy())
        except Exception as err:  # reported below, in the request's thread
            result["error"] = err

    def so_far() -> tuple[np.ndarray, np.ndarray]:
        with lock:
            return np.concatenate(result["kl_form"] or [[]]), np.concatenate(result["trajectory_form"] or [[]])

    worker = threading.Thread(target=run, daemon=True)
    started = time.perf_counter()
    worker.start()
    shown = 0
    while worker.is_alive():
        worker.join(HEARTBEAT_S)
        if worker.is_alive():
            kl_form, trajectory_form = so_far()
            done, elapsed = len(kl_form), time.perf_counter() - started
            left = f", about {elapsed / done * (draws - done):.0f} s left" if done else ""
            status = (
                f"**{done} of {draws} trajectories** done ({space.T} steps each, one U-Net call per t for a batch of "
                f"{chunks[0]}): {elapsed:.0f} s{left}"
            )
            plot = gr.update()
            if done > shown:  # a call ended: the histogram so far
                plot, shown = elbo_histogram(kl_form, trajectory_form), done
            yield plot, status
    if "error" in result:
        if isinstance(result["error"], ValueError):
            raise gr.Error(str(result["error"]))
        raise result["error"]
    kl_form, trajectory_form = so_far()
    ratio = trajectory_form.std(ddof=1) / kl_form.std(ddof=1) if kl_form.std(ddof=1) > 0 else math.inf
    status = (
        f"**{draws} trajectories of the same image, both forms on each** "
        f"({time.perf_counter() - started:.0f} s)\n\n"
        "| form | mean, bits/dim | standard deviation | \n|:--|--:|--:|\n"
        f"| KL form: $L_T + \\sum_t \\mathrm{{KL}}(q(x_{{t-1}} \\mid x_t, x_0) \\,\\|\\, p_\\theta) + L_0$ | "
        f"{kl_form.mean():.4f} | **{kl_form.std(ddof=1):.4f}** |\n"
        f"| single trajectory: $-\\log \\frac{{p_\\theta(x_{{0:T}})}}{{q(x_{{1:T}} \\mid x_0)}}$ | "
        f"{trajectory_form.mean():.4f} | **{trajectory_form.std(ddof=1):.4f}** |\n\n"
        f"Here the single-trajectory form's standard deviation is **{ratio:.2f}×** the KL form's "
        f"({'larger' if ratio > 1 else 'smaller'}); both forms estimate the same bound, so their means differ only "
        f"by sampling noise ({abs(kl_form.mean() - trajectory_form.mean()):.4f} bits/dim here)."
    )
    yield elbo_histogram(kl_form, trajectory_form), status


# ---------------------------------------------------------------------------------------------------------------------
# The tabs
# ---------------------------------------------------------------------------------------------------------------------
# The questions run their chains here, in the request's own thread, not in the sampling engine: question 3 steps a
# second model (the engine batches the Space's one U-Net), question 2 calls the U-Net in the middle of a chain, and
# question 4 is no chain. They take turns in their own slot instead (ONE_AT_A_TIME, shared with the bound).


@contextmanager
def question_tab(title: str, tab_id: str, name: str):
    """A question's sub-tab: its text (space/text/<name>.md), then a row for the controls and the outputs columns."""
    with gr.Tab(title, id=tab_id):
        gr.Markdown(text(name), latex_delimiters=LATEX)
        with gr.Row(equal_height=False):
            yield


def controls() -> gr.Column:
    return gr.Column(scale=1, min_width=290)


def outputs() -> gr.Column:
    return gr.Column(scale=3)


def seed_and_images(seed: int) -> tuple[gr.Number, gr.Slider]:
    """The seed and how many images per side, in one row."""
    with gr.Row():
        return seed_box(seed), gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Images")


def answer(name: str, elem_id: str):
    """The recorded answer under a question's outputs, folded (it opens once the learner's run has ended)."""
    with gr.Accordion(ANSWER_LABEL, open=False, elem_id=elem_id) as accordion:
        gr.Markdown(text(name), latex_delimiters=LATEX)
    return accordion


def opens(event, accordion) -> None:
    """The answer opens once the run's event has ended well."""
    event.success(lambda: gr.update(open=True), None, [accordion], **PRIVATE)


def build(space: Space, page: Page) -> dict:
    """The four questions' sub-tabs, laid out and wired. Returns their handlers by name (the Space bound)."""
    fresh, timestep, versus, elbo = (bind(space, fn) for fn in (fresh_noise, timestep_input, noise_vs_x0, elbo_forms))
    T, num_classes = space.T, space.num_classes
    quick = f"100 already shows it, in seconds; {T} = the full chain"

    with question_tab("1 · Fresh noise?", "q-noise", "q_noise"):
        with controls():
            run = gr.Button("▶ Run both", variant="primary")
            digit, guidance = digit_picker(num_classes, "3"), guidance_slider(num_classes)
            sampler = gr.Radio(
                [(SAMPLERS[v][0], v) for v in ("ddpm-fixed_small", "ddpm-fixed_large")],
                value="ddpm-fixed_small",
                label="Sampler",
            )
            steps = gr.Slider(1, T, value=min(T, 100), step=1, label="Steps", info=quick)
            seed, batch = seed_and_images(1)
        with outputs():
            with gr.Row():
                noise = picture("x_{t−1} = μ_θ + σ_t z", height=250, elem_id="q1-noise")
                mean = picture("x_{t−1} = μ_θ (σ_t = 0)", height=250, elem_id="q1-mean")
            info = gr.Markdown(latex_delimiters=LATEX, elem_id="q1-info")
            shown = answer("q_noise_answer", "q1-answer")
    event = run.click(
        fresh, [digit, guidance, sampler, steps, seed, batch], [noise, mean, info], api_name="fresh_noise",
        **ONE_AT_A_TIME,
    )  # fmt: skip
    opens(event, shown)

    with question_tab("2 · Why tell it t?", "q-time", "q_time"):
        with controls():
            run = gr.Button("▶ Run both", variant="primary")
            digit, guidance = digit_picker(num_classes, "3"), guidance_slider(num_classes)
            steps = gr.Slider(1, T, value=min(T, 100), step=1, label="Steps", info=quick)
            wrong = gr.Radio([(v, k) for k, v in WRONG_T.items()], value="fixed", label="Wrong t")
            value = gr.Slider(1 - T, T - 1, value=T // 2, step=1, label="the fixed t, or the shift")
            probe = gr.Slider(0, T - 1, value=T // 10, step=1, label="ε̂ compared at t")
            seed, batch = seed_and_images(2)
        with outputs():
            with gr.Row():
                right = picture("told the true t", height=250, elem_id="q2-right")
                bad = picture("told a wrong t", height=250, elem_id="q2-wrong")
            with gr.Row():
                eps_right = picture("ε̂ of one x_t, true t", height=200, elem_id="q2-eps-right")
                eps_wrong = picture("ε̂ of it, wrong t", height=200, elem_id="q2-eps-wrong")
            info = gr.Markdown(latex_delimiters=LATEX, elem_id="q2-info")
            shown = answer("q_time_answer", "q2-answer")
    event = run.click(
        timestep,
        [digit, guidance, steps, seed, batch, wrong, value, probe],
        [right, bad, eps_right, eps_wrong, info],
        api_name="timestep_input",
        **ONE_AT_A_TIME,
    )
    opens(event, shown)

    with question_tab("3 · ε or x₀?", "q-x0", "q_x0"):
        with controls():
            run = gr.Button("▶ Compare", variant="primary", interactive=space.x0_pipe is not None)
            source = ImageSource(space, page, "x₀ for the loss per t", "q3-image", 700)
            digit, guidance = digit_picker(num_classes, "3"), guidance_slider(num_classes)
            steps = gr.Slider(1, T, value=min(T, 100), step=1, label="DDPM steps")
            seed, batch = seed_and_images(3)
        with outputs():
            with gr.Row():
                eps = picture("model predicting ε", height=250, elem_id="q3-eps")
                x0 = picture("model predicting x₀", height=250, elem_id="q3-x0")
            loss = gr.Plot(label="loss per t", show_label=False, elem_id="q3-loss")
            info = gr.Markdown(X0_MISSING if space.x0_pipe is None else "", latex_delimiters=LATEX, elem_id="q3-info")
            shown = answer("q_x0_answer", "q3-answer")
    event = run.click(
        versus,
        [source.image, digit, guidance, steps, seed, batch],
        [eps, x0, loss, info],
        api_name="noise_vs_x0",
        preprocess=False,
        **ONE_AT_A_TIME,
    )
    opens(event, shown)

    with question_tab("4 · Two ELBOs", "q-elbo", "q_elbo"):
        with controls():
            run = gr.Button("▶ Estimate both", variant="primary")
            source = ImageSource(space, page, "x₀", "q4-image", 300)
            digit = digit_picker(num_classes, UNCONDITIONAL)
            with gr.Row():
                seed = seed_box(4)
                draws = gr.Slider(16, MAX_DRAWS, value=16, step=1, label="Trajectories")
        with outputs():
            plot = gr.Plot(label="the two spreads", show_label=False, elem_id="q4-plot")
            info = gr.Markdown(latex_delimiters=LATEX, elem_id="q4-info")
            shown = answer("q_elbo_answer", "q4-answer")
    event = run.click(
        elbo, [source.image, digit, draws, seed], [plot, info], api_name="elbo_forms", preprocess=False,
        **ONE_AT_A_TIME,
    )  # fmt: skip
    opens(event, shown)
    return {"fresh_noise": fresh, "timestep_input": timestep, "noise_vs_x0": versus, "elbo_forms": elbo}
