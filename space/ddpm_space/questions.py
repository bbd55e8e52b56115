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
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure

from .common import (
    EPS_RANGE,
    MAX_SEED,
    Space,
    as_int,
    as_label,
    chain_settings,
    generator,
    grid,
    image_to_x0,
    make_pipeline,
    stream_every,
    to_u8,
)

MAX_IMAGES = 8  # images per side of a question's comparison
MAX_DRAWS = 256  # trajectories of the ELBO experiment
WRONG_T = {"fixed": "a fixed t", "shift": "t shifted by"}
HEARTBEAT_S = 1.0  # a long library call reports its elapsed time this often
ELBO_CHUNKS, ELBO_MIN_CHUNK = 8, 4  # the ELBO experiment's trajectories: at most this many calls, of at least 4


def sample_stats(images: torch.Tensor) -> str:
    """Per-set pixel statistics of final samples in [-1, 1]: what the eye sees, in numbers."""
    saturated = (images.abs() > 0.9).float().mean().item()
    middle = (images.abs() < 0.5).float().mean().item()
    return f"pixel std {images.std().item():.3f} · {saturated:.0%} of pixels near ±1 · {middle:.0%} mid-gray"


def side_by_side(chains: dict, every: int):
    """Advances several chains (name -> `denoising_steps` generator) in lockstep. Yields (name -> step, final):
    every k-th tick with final=False, then the last tick with final=True."""
    steps = {}
    for index, ticked in enumerate(zip(*chains.values(), strict=True)):
        steps = dict(zip(chains, ticked, strict=True))
        if index % every == 0:
            yield steps, False
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
    if sampler not in ("ddpm-fixed_small", "ddpm-fixed_large"):
        raise gr.Error(f"Unknown sampler {sampler!r}: choose ddpm-fixed_small or ddpm-fixed_large.")
    settings = chain_settings(space, digit, guidance, sampler, 0.0, steps, seed, batch, max_batch=MAX_IMAGES)
    pipeline = make_pipeline(space, sampler)
    shape = (settings["batch"], space.channels, space.resolution, space.resolution)
    x_T = torch.randn(shape, generator=generator(settings["seed"]))

    def chain(noise_scale: float):
        return pipeline.denoising_steps(
            batch_size=settings["batch"],
            class_labels=settings["label"],
            guidance_scale=settings["guidance"],
            num_inference_steps=settings["steps"],
            generator=generator(settings["seed"] + 1),
            latents=x_T,
            noise_scale=noise_scale,
        )

    try:
        chains = {"noise": chain(1.0), "mean": chain(0.0)}
        for steps_now, final in side_by_side(chains, stream_every(settings["steps"])):
            noise, mean = steps_now["noise"], steps_now["mean"]
            if not final:
                status = f"Step {noise.step_index + 1} / {noise.num_steps} (t = {noise.timestep}), both chains"
                yield grid(to_u8(noise.sample)), grid(to_u8(mean.sample)), status
    except ValueError as err:
        raise gr.Error(str(err)) from None
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
    settings = chain_settings(space, digit, guidance, "ddpm-fixed_small", 0.0, steps, seed, batch, MAX_IMAGES)
    told = wrong_timestep(space, wrong, value)
    probe_t = as_int(probe_t, "probe t", 0, space.T - 1)
    pipeline = make_pipeline(space, "ddpm-fixed_small")
    shape = (settings["batch"], space.channels, space.resolution, space.resolution)
    x_T = torch.randn(shape, generator=generator(settings["seed"]))

    def chain(model_timestep):
        return pipeline.denoising_steps(
            batch_size=settings["batch"],
            class_labels=settings["label"],
            guidance_scale=settings["guidance"],
            num_inference_steps=settings["steps"],
            generator=generator(settings["seed"] + 1),
            latents=x_T,
            model_timestep=model_timestep,
        )

    probe = None  # (t, eps_hat told t, eps_hat told the wrong t) at the first step with t <= probe_t
    eps_right = eps_wrong = None
    every = stream_every(settings["steps"])
    try:
        chains = {"right": chain(None), "wrong": chain(told)}
        # Every step is looked at (the probe's t may fall between two streamed ones), every k-th one is shown.
        for index, (steps_now, final) in enumerate(side_by_side(chains, 1)):
            right, wrong_step = steps_now["right"], steps_now["wrong"]
            if probe is None and right.timestep <= probe_t:
                probe = probe_step(space, pipeline, right, told, settings)
                eps_right, eps_wrong = (grid(to_u8(e, EPS_RANGE)) for e in probe[1:])
            if not final and index % every == 0:
                status = (
                    f"Step {right.step_index + 1} / {right.num_steps}: the U-Net is told t = {right.timestep} "
                    f"(right) and t = {told(right.timestep)} (wrong)"
                )
                yield grid(to_u8(right.sample)), grid(to_u8(wrong_step.sample)), eps_right, eps_wrong, status
    except ValueError as err:
        raise gr.Error(str(err)) from None
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


def probe_step(space: Space, pipeline, step, told, settings) -> tuple[int, torch.Tensor, torch.Tensor]:
    """eps_hat of the right chain's x_t with the true t and with the wrong t (guided as the chain is)."""
    labels = None
    if settings["label"] is not None:
        labels = torch.full((settings["batch"],), settings["label"], dtype=torch.long)
    with torch.inference_mode():
        outputs = [
            pipeline.predict(step.sample, torch.tensor(t), labels, settings["guidance"])[:, : space.channels]
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
    settings = chain_settings(space, digit, guidance, "ddpm-fixed_small", 0.0, steps, seed, batch, MAX_IMAGES)
    pipes = {"predicts ε": space.pipe, "predicts x₀": space.x0_pipe}
    shape = (settings["batch"], space.channels, space.resolution, space.resolution)
    x_T = torch.randn(shape, generator=generator(settings["seed"]))
    chains = {
        name: pipe.denoising_steps(
            batch_size=settings["batch"],
            class_labels=settings["label"],
            guidance_scale=settings["guidance"],
            num_inference_steps=settings["steps"],
            generator=generator(settings["seed"] + 1),
            latents=x_T,
        )
        for name, pipe in pipes.items()
    }
    judge = evaluation_rows(space)
    errors: dict = {}
    try:
        for now, final in side_by_side(chains, stream_every(settings["steps"])):
            eps_step, x0_step = now["predicts ε"], now["predicts x₀"]
            if not final:
                status = f"Sampling: step {eps_step.step_index + 1} / {eps_step.num_steps} (t = {eps_step.timestep})"
                yield grid(to_u8(eps_step.sample)), grid(to_u8(x0_step.sample)), None, status
        samples = grid(to_u8(eps_step.prev_sample)), grid(to_u8(x0_step.prev_sample))
        timesteps = sorted({round(k * (space.T - 1) / (LOSS_POINTS - 1)) for k in range(LOSS_POINTS)}, reverse=True)
        label = as_label(space, digit)
        for name, pipe in pipes.items():
            errors[name] = {"t": [], "noise_mse": [], "x0_mse": []}
            for step in pipe.bound_steps(
                x0, class_labels=label, generator=generator(settings["seed"]), timesteps=timesteps
            ):
                errors[name]["t"].append(step.timestep)
                errors[name]["noise_mse"].append(float(step.noise_mse[0]))
                errors[name]["x0_mse"].append(float(step.x0_mse[0]))
            yield *samples, loss_plot(space, errors), f"Measuring the loss per t: {name} done"
    except ValueError as err:
        raise gr.Error(str(err)) from None
    means = {name: (float(np.mean(e["noise_mse"])), float(np.mean(e["x0_mse"]))) for name, e in errors.items()}
    status = (
        f"**Done.** Same $x_T$, {settings['steps']} DDPM steps each.\n\n"
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
    seed = as_int(seed, "seed", 0, MAX_SEED)
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
