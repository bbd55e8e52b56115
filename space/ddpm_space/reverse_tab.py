"""Tab ②, "Generate & scrub": the reverse chain streamed, every step stored for scrubbing and GIF export."""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from collections import deque
from contextlib import closing
from pathlib import Path
from typing import Any

import gradio as gr
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from . import chains, hosting, variance_plot
from .engine import Done, Progress, Queued, Stopped
from .inputs import as_eta, as_guidance, as_int, as_label, as_sampler, as_seed, as_steps, generator
from .pictures import EPS_RANGE, FONT, grid, to_u8
from .state import MAX_BATCH, Space, bind
from .text import LATEX, fmt, text
from .widgets import LIGHT, LIVE, PRIVATE, STOP, Page, digit_and_guidance, picture, sampler_and_eta, seed_box

GIF_SCALE = 2
GIF_FRAMES = 40  # at most this many frames in an exported GIF (plus the final one) ...
GIF_IMAGE_FRAMES = 320  # ... and at most this many digit pictures over all frames (8 images: 40 frames, 16: 20)
GIF_LEVELS = 16  # gray levels: noise is most of a chain, and LZW packs 16 levels far tighter than 256
GIF_FRAME_MS = 120
GIF_HOLD_MS = 2000  # the last frame of a GIF stays this long


MIN_TIMED_STEPS = 20  # no time estimate before a chain has timed this many of its own steps ...
TIMED_WINDOW = 20  # ... then the mean time per step over its last this many steps


class ChainClock:
    """The time a chain has left, from its own steps as the page receives them. The first steps are slow (the first
    U-Net calls of a batch size, the page's first frames): the engine's running mean, or a mean since the first step,
    said "about 4 min" for a chain that took 61 s. So: no estimate until MIN_TIMED_STEPS steps have been timed, then
    the mean time per step over the last TIMED_WINDOW steps times the steps still to go."""

    def __init__(self) -> None:
        self.seen: deque[tuple[float, int]] = deque(maxlen=TIMED_WINDOW + 1)  # (time, k) of the latest steps
        self.first: int | None = None

    def eta_s(self, update: Progress) -> float | None:
        self.seen.append((time.perf_counter(), update.k))
        if self.first is None:
            self.first = update.k
        if update.k - self.first < MIN_TIMED_STEPS:
            return None
        (since, k_since), (now, k_now) = self.seen[0], self.seen[-1]
        return (now - since) / max(1, k_now - k_since) * (update.num_steps - update.k)

    def left(self, update: Progress) -> str:
        """'about 12 s left' (`chains.left`) with this chain's own estimate."""
        return chains.left(dataclasses.replace(update, eta_s=self.eta_s(update)))


def new_chain(settings: dict, timesteps: list[int]) -> dict:
    """What a chain keeps for scrubbing and GIF export: small uint8 arrays per step and a few numbers (`settings`:
    the controls' values, named as `gif_name` reads them)."""
    return {
        "settings": {**settings, "steps_run": len(timesteps)},
        "timesteps": list(timesteps),  # every t the chain will visit, first to last
        "t": [],
        "prev_t": [],
        "std": [],
        "x": [],
        "eps": [],
        "x0": [],
        "done": False,
    }


def record(chain: dict, step) -> None:
    """Store one `DenoisingStep` as uint8 (B, H, W, C) arrays: x_t, the predicted noise, the predicted x_0."""
    chain["t"].append(step.timestep)
    chain["prev_t"].append(step.prev_timestep)
    chain["std"].append(float(step.std.float().mean()))
    chain["x"].append(to_u8(step.sample))
    chain["eps"].append(to_u8(step.noise_pred, EPS_RANGE))
    chain["x0"].append(to_u8(step.pred_original_sample))


def finish(chain: dict, last_step) -> None:
    chain["x"].append(to_u8(last_step.prev_sample))
    chain["done"] = True


def num_frames(chain: dict | None) -> int:
    return len(chain["x"]) if chain else 0


# The scrub slider counts in t: frame i shows x_t at t = chain["t"][i]; the final x_0 (after the step at the chain's
# last t) sits at t = FINAL_T, one below.
FINAL_T = -1


def frame_t(chain: dict, index: int) -> int:
    """The t of stored frame `index` (FINAL_T for the final x_0)."""
    return chain["t"][index] if index < len(chain["t"]) else FINAL_T


def frame_at(chain: dict, t: float) -> int:
    """The index of the stored frame whose t is nearest to `t`."""
    return min(range(num_frames(chain)), key=lambda index: abs(frame_t(chain, index) - float(t)))


def scrub_update(chain: dict, index: int | None):
    """The scrub slider over the chain's t: the whole chain while it runs (or is done), only the kept frames once
    stopped; at frame `index` (None: leave the value)."""
    if chain.get("stopped"):
        low, high = chain["t"][-1], chain["t"][0]
    else:
        low, high = FINAL_T, chain["timesteps"][0]
    value = {} if index is None else {"value": frame_t(chain, index)}
    return gr.update(minimum=low, maximum=high, **value)


def step_info(space: Space, chain: dict, index: int, progress: str | None = None) -> str:
    """The step's t, its coefficients (from the scheduler) and sigma_t (from the step itself), as Markdown."""
    settings = chain["settings"]
    num_steps = settings["steps_run"]
    if index >= len(chain["t"]):
        return (
            f"**Done: $x_0$ after {len(chain['t'])} steps.** “predicted noise ε̂” and “predicted x̂₀” show the last "
            "step's predictions. Drag the slider (it counts in t) to go back through the chain, or export it as a GIF."
        )
    t, prev_t, std = chain["t"][index], chain["prev_t"][index], chain["std"][index]
    target = f"t′ = {prev_t}" if prev_t >= 0 else "x₀"
    c = space.scheduler.coefficients(t)
    beta = float(space.scheduler.fixed_variance(t, "beta", prev_t))  # of this (possibly strided) step
    beta_tilde = float(space.scheduler.posterior_variance(t, prev_t))
    variance = {"ddpm-fixed_large": r"\beta_t", "ddpm-fixed_small": r"\tilde\beta_t"}.get(
        settings["sampler"], rf"\eta^2\tilde\beta_t,\ \eta = {settings['eta']:g}"
    )
    # Inline math, not display: KaTeX breaks inline formulas after = and +, so on a phone they wrap, never cut.
    last = prev_t < 0  # the last step adds no noise: the chain returns the mean (the scheduler's sigma is 0 there)
    noise = "" if last else r" + \sigma_t z"
    if settings["sampler"] == "ddim":
        formula = (
            r"$x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t'}-\sigma_t^2}\,\hat\epsilon"
            + noise
            + "$"
        )
    else:
        formula = rf"$x_{{t'}} = \tilde\mu_t(x_t, \hat x_0){noise} = \mu_\theta(x_t, t){noise}$"
    if last:
        formula = formula.replace("x_{t'}", "x_0", 1) + (
            f" · **the last step adds no noise** (σₜ = 0, whatever ${variance}$ would give): the chain returns the "
            "mean, its best guess of $x_0$."
        )
    sigma_note = "(the last step: no noise)" if last else f"($\\sigma_t^2 = {variance}$)"
    progress = f" · {progress}" if progress else ""
    return (
        f"**Step {index + 1} / {num_steps}**{progress} · t = {t} → {target} · ε̂ shown with −3…3 as black…white\n\n"
        "| $\\bar\\alpha_t$ | $\\sqrt{\\bar\\alpha_t}$ | $\\sqrt{1-\\bar\\alpha_t}$ | log SNR | β of this step "
        "| β̃ of this step | σₜ |\n|--:|--:|--:|--:|--:|--:|--:|\n"
        f"| {fmt(c['alpha_bar_t'])} | {c['sqrt_alpha_bar_t']:.4f} | {c['sqrt_one_minus_alpha_bar_t']:.4f} | "
        f"{c['log_snr_t']:.2f} | {fmt(beta)} | {fmt(beta_tilde)} | **{fmt(std)}** {sigma_note} |"
        f"\n\n{formula}"
    )


def chain_frame(space: Space, chain: dict | None, index: float, progress: str | None = None) -> tuple:
    """The stored frame `index`: x_t, predicted noise, predicted x_0 (upscaled grids) and the step's Markdown."""
    if not num_frames(chain):
        raise gr.Error("Generate a chain first: the slider scrubs through the last chain you generated.")
    index = min(max(int(index), 0), num_frames(chain) - 1)
    prediction = min(index, len(chain["eps"]) - 1)
    return (
        grid(chain["x"][index]),
        grid(chain["eps"][prediction]),
        grid(chain["x0"][prediction]),
        step_info(space, chain, index, progress),
    )


def stopped_info(chain: dict) -> str:
    kept, total = len(chain["t"]), chain["settings"]["steps_run"]
    return (
        f"**Stopped at t = {chain['t'][-1]}**, after {kept} of {total} steps. The slider scrubs the {kept} kept "
        f"frames (t = {chain['t'][0]} … {chain['t'][-1]}); export them as a GIF, or press Generate again.\n\n"
    )


def generate(
    space: Space,
    digit: Any = "3",
    guidance: float = 2.0,
    sampler: str = "ddpm-fixed_small",
    eta: float = 0.0,
    steps: float = 1000,
    seed: float = 0,
    batch: float = 8,
    request: gr.Request = None,
):
    """Runs the reverse chain in the shared engine and streams it: every k-th step (at most ~100 frames), then the
    final x_0; while it waits for a slot, its place in the queue. Stop (`stop_generate`) ends it with a "stopped"
    frame.

    Yields: x_t, predicted noise, predicted x_0 (grids), step info (Markdown), the scrub slider (at the frame's t),
    the stored chain.
    """
    sampler = as_sampler(sampler)
    label, guidance, eta = as_label(space, digit), as_guidance(guidance), as_eta(eta, sampler)
    steps, seed, batch = as_steps(space, steps), as_seed(seed), as_int(batch, "batch size", 1, MAX_BATCH)
    denoising = chains.start(
        space, sampler, guidance, batch_size=batch, class_labels=label, num_inference_steps=steps,
        generator=generator(seed), eta=eta,
    )  # fmt: skip
    settings = dict(label=label, guidance=guidance, sampler=sampler, eta=eta, steps=steps, seed=seed, batch=batch)
    chain = new_chain(settings, denoising.timesteps)
    every = chains.stream_every(denoising.num_steps)
    unchanged = (gr.update(), gr.update(), gr.update())
    clock = ChainClock()
    with closing(chains.submit(space, denoising, request, "generate").updates()) as updates:
        for update in updates:
            if isinstance(update, Queued):
                yield (*unchanged, chains.waiting(space, update), scrub_update(chain, None), chain)
            elif isinstance(update, Progress):
                record(chain, update.step)
                index = update.k - 1
                left = clock.left(update)  # every step: the clock times them all
                if index % every == 0:
                    yield (*chain_frame(space, chain, index, left), scrub_update(chain, index), chain)
            elif isinstance(update, Done):
                finish(chain, update.step)
                last = num_frames(chain) - 1
                x, eps, x0, info = chain_frame(space, chain, last)
                if (last - 1) % every == 0:  # the last step's predictions are on the page already: not again (Gradio
                    eps = x0 = gr.update()  # rewrites a picture's cache file in place while it may be downloading)
                yield x, eps, x0, info, scrub_update(chain, last), chain
            elif isinstance(update, Stopped):
                if not num_frames(chain):
                    yield (*unchanged, "**Stopped** before the first step.", gr.update(), None)
                    return
                chain["stopped"] = True
                last = num_frames(chain) - 1
                x, eps, x0, info = chain_frame(space, chain, last)
                yield x, eps, x0, stopped_info(chain) + info, scrub_update(chain, last), chain
            else:
                raise gr.Error(update.message)


def stop_generate(space: Space, request: gr.Request = None) -> None:
    """Stops this visitor's Generate chain; its stream ends with a "stopped at t = ..." frame."""
    chains.stop(space, "generate", request)


def scrub(space: Space, t: float, chain: dict | None):
    """The stored frame of the last chain nearest to t (-1 = the final x_0). Returns: x_t, predicted noise,
    predicted x_0, step info (Markdown)."""
    if not num_frames(chain):
        raise gr.Error("Generate a chain first: the slider scrubs through the last chain you generated.")
    return chain_frame(space, chain, frame_at(chain, t))


# ---------------------------------------------------------------------------------------------------------------------
# GIF export
# ---------------------------------------------------------------------------------------------------------------------


def number_name(value: float) -> str:
    """2.0 -> "2.0", 1.25 -> "1.25" (for file names)."""
    text = f"{round(float(value), 3):g}"
    return text if "." in text or "e" in text else f"{text}.0"


def gif_name(settings: dict, stopped_at: int | None = None) -> str:
    """The GIF's file name, with the seed and settings, e.g. ddpm_digit3_seed42_ddpm-fixed_small_1000steps_w2.0.gif."""
    digit = "uncond" if settings["label"] is None else f"digit{settings['label']}"
    sampler = settings["sampler"] if settings["sampler"] != "ddim" else f"ddim-eta{number_name(settings['eta'])}"
    batch = "" if settings["batch"] == 1 else f"_batch{settings['batch']}"
    stopped = "" if stopped_at is None else f"_stopped-at-step{stopped_at}"
    return (
        f"ddpm_{digit}_seed{settings['seed']}_{sampler}_{settings['steps']}steps_w{number_name(settings['guidance'])}"
        f"{batch}{stopped}.gif"
    )


def gif_frames(chain: dict) -> list[int]:
    """Which stored frames go into the GIF: every k-th (at most GIF_FRAMES, fewer for many images), and the last."""
    count = num_frames(chain)
    budget = max(8, min(GIF_FRAMES, GIF_IMAGE_FRAMES // chain["settings"]["batch"]))
    every = max(1, math.ceil((count - 1) / budget))
    frames = list(range(0, count - 1, every))
    return [*frames, count - 1]


def gif_frame(chain: dict, index: int, font) -> Image.Image:
    """x_t beside the predicted x_0, under a caption line with the step and t."""
    prediction = min(index, len(chain["x0"]) - 1)
    x = grid(chain["x"][index], scale=GIF_SCALE)
    x0 = grid(chain["x0"][prediction], scale=GIF_SCALE)
    if index < len(chain["t"]):
        caption = f"step {index + 1}/{len(chain['t'])}  t = {chain['t'][index]}  ·  x_t | predicted x_0"
    else:
        caption = f"x_0 after {len(chain['t'])} steps  ·  x_0 | last predicted x_0"
    height, width = x.shape[:2]
    canvas_width = max(2 * width + 12, 330)  # room for the caption when the grid is small
    canvas = Image.new("L", (canvas_width, height + 24), 16)
    left = (canvas_width - 2 * width - 12) // 2
    canvas.paste(Image.fromarray(x), (left, 24))
    canvas.paste(Image.fromarray(x0), (left + width + 12, 24))
    ImageDraw.Draw(canvas).text((4, 4), caption, fill=235, font=font)
    step = 256 // GIF_LEVELS
    return canvas.point([min(255, value // step * step + step // 2) for value in range(256)])


def purge_exports(space: Space, max_age_s: float = 3600) -> None:
    """Deletes exported GIFs older than an hour (Gradio serves its own copies; these are the originals)."""
    now = time.time()
    for folder in space.work_dir.glob("gif_*"):
        if now - folder.stat().st_mtime > max_age_s:
            shutil.rmtree(folder, ignore_errors=True)


def write_gif(space: Space, chain: dict | None) -> str:
    """The last chain as an animated GIF (x_t beside the predicted x_0); the file name carries the settings."""
    if not num_frames(chain):
        raise gr.Error("Generate a chain first, then export it.")
    frames = [gif_frame(chain, index, FONT) for index in gif_frames(chain)]
    purge_exports(space)
    folder = Path(tempfile.mkdtemp(prefix="gif_", dir=space.work_dir))
    path = folder / gif_name(chain["settings"], None if chain["done"] else len(chain["t"]))
    durations = [GIF_FRAME_MS] * (len(frames) - 1) + [GIF_HOLD_MS]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=True)
    return str(path)


def export_gif(space: Space, chain: dict | None) -> str:
    """The last chain as an animated GIF file, e.g. ddpm_digit3_seed42_ddpm-fixed_small_1000steps_w2.0_batch8.gif."""
    return write_gif(space, chain)


# ---------------------------------------------------------------------------------------------------------------------
# "How much guidance?": the guidance curve recorded in the model folder (stored measurements, drawn here)
# ---------------------------------------------------------------------------------------------------------------------


def chain_name(point: dict) -> str:
    """A recorded point's sampler as the table names it: "DDPM", "DDIM η = 0", else the scheduler's class."""
    return {"ddpm": "DDPM", "ddim": "DDIM η = 0"}.get(point["family"], point["scheduler"])


def frechet_ratio(point: dict) -> float:
    """A point's Fréchet distance relative to real training digits' own (real digits score 1)."""
    return point["frechet_distance"] / point["frechet_distance_real"]


def guidance_table(curve: dict) -> str:
    """The recorded guidance curve as a Markdown table: chain, w, U-Net calls, accuracy, Fréchet relative to real
    digits; the page's default chain at the recommended w in bold."""
    rows = [
        "| chain | w | U-Net calls / image | judge accuracy | Fréchet, relative to real digits |",
        "|:--|--:|--:|--:|--:|",
    ]
    page_steps = max(p["steps"] for p in curve["points"])
    for p in curve["points"]:
        best = p["guidance_scale"] == curve.get("recommended_guidance_scale") and p["steps"] == page_steps
        cells = [f"{chain_name(p)} {p['steps']}", f"{p['guidance_scale']:g}", str(p["nfe_per_image"])]
        cells += [f"{p['mean_accuracy']:.1%}", f"{frechet_ratio(p):.2f}×"]
        rows.append("| " + " | ".join(f"**{c}**" if best else c for c in cells) + " |")
    return "\n".join(rows)


def curve_sampler(curve: dict) -> str:
    """How a recorded curve sampled, e.g. "DDPM 100 steps, and DDPM 1000 steps at w = 1, 1.25"."""
    chains_: dict[str, list[str]] = {}
    for p in curve["points"]:
        chains_.setdefault(f"{chain_name(p)} {p['steps']} steps", []).append(f"{p['guidance_scale']:g}")
    parts = [chain if len(chains_) == 1 or i == 0 else f"{chain} at w = {', '.join(ws)}"
             for i, (chain, ws) in enumerate(chains_.items())]  # fmt: skip
    return ", and ".join(parts)


def guidance_plot(curve: dict) -> Figure:
    """Accuracy and the Fréchet ratio against w, one line per recorded chain, the legend below the axes (inside, it
    covered the Fréchet curve)."""
    figure = Figure(figsize=(7.5, 3.9), dpi=90, layout="constrained")
    left = figure.subplots()
    right = left.twinx()
    chains_: dict[tuple, list[dict]] = {}
    for p in curve["points"]:
        chains_.setdefault((chain_name(p), p["steps"]), []).append(p)
    for index, ((name, steps), points) in enumerate(sorted(chains_.items(), key=lambda item: item[0][1])):
        points = sorted(points, key=lambda p: p["guidance_scale"])
        w = [p["guidance_scale"] for p in points]
        style = {"ls": ("-", "--", ":")[min(index, 2)], "ms": 5}
        label = f"{name} {steps} steps"
        left.plot(w, [100 * p["mean_accuracy"] for p in points], marker="o", color="#4f46e5", **style,
                  label=f"judge accuracy, {label}")  # fmt: skip
        right.plot(w, [frechet_ratio(p) for p in points], marker="s", color="#db2777", **style,
                   label=f"Fréchet relative to real digits, {label}")  # fmt: skip
    left.set_xlabel("guidance scale w (0 = ignore the digit, 1 = conditional)")
    left.set_ylabel("judge accuracy (%)", color="#4f46e5")
    right.set_ylabel("Fréchet, relative to real digits", color="#db2777")
    left.grid(alpha=0.3)
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    figure.legend(handles, [h.get_label() for h in handles], loc="outside lower center", ncols=2, fontsize=8,
                  frameon=False)  # fmt: skip
    return figure


# ---------------------------------------------------------------------------------------------------------------------
# The tab
# ---------------------------------------------------------------------------------------------------------------------


def build(space: Space, page: Page, curve: dict | None) -> dict:
    """ "Generate & scrub", laid out and wired; `curve`: the model's recorded guidance curve, shown if there is one.
    Returns its handlers by name (the Space bound)."""
    # On ZeroGPU the chain gets a GPU for the call, sized by its length (ddpm_space/hosting.py); elsewhere a no-op.
    generate_ = hosting.on_gpu(bind(space, generate), space.pipe.unet, duration=hosting.generate_seconds)
    stop_, scrub_, export_ = bind(space, stop_generate), bind(space, scrub), bind(space, export_gif)
    variances = bind(space, variance_plot.variance_plot)
    T, num_classes = space.T, space.num_classes
    with gr.Tab("Generate & scrub", id="generate"):
        # At 1366 x 768 every control, the buttons and the pictures fit in the first screen: the controls in two
        # columns beside the pictures, the explanation below them. On a phone (see style.css: .controls, .run-row,
        # .outputs) the buttons come first, then the pictures, then the settings.
        with gr.Row(equal_height=False, elem_classes=["split"]):
            with gr.Column(scale=5, min_width=300, elem_classes=["controls"]):
                with gr.Row(equal_height=False, elem_classes=["settings"]):
                    with gr.Column(min_width=200):
                        with gr.Row(elem_classes=["run-row"]):
                            run = gr.Button("▶ Generate", variant="primary", scale=3, min_width=80)
                            stop = gr.Button("■ Stop", variant="stop", scale=2, min_width=80)
                        digit, guidance = digit_and_guidance(num_classes, "3", page.default_guidance)
                    with gr.Column(min_width=200):
                        sampler, eta = sampler_and_eta()
                        steps = gr.Slider(
                            1, T, value=T, step=1, label="Steps", info=f"{T} = the full chain", elem_id="gen-steps"
                        )
                        with gr.Row():
                            seed = seed_box(42)
                            batch = gr.Slider(
                                1, MAX_BATCH, value=8, step=1, label="Images", min_width=100, elem_id="gen-batch"
                            )
            with gr.Column(scale=6, elem_classes=["outputs"]):
                with gr.Row():
                    x = picture("x_t (the chain)", elem_id="gen-x")
                    eps = picture("predicted noise ε̂", elem_id="gen-eps")
                    x0 = picture("predicted x̂₀", elem_id="gen-x0")
                info = gr.Markdown(
                    "Press **Generate** to watch the chain.",
                    latex_delimiters=LATEX,
                    elem_classes=["step-info"],
                    elem_id="gen-info",
                    label="step info",
                )
                slider = gr.Slider(
                    FINAL_T,
                    T - 1,
                    value=T - 1,
                    step=1,
                    label="Scrub by t (every step is kept; −1 = the final x₀)",
                    elem_id="gen-scrub",
                )
                with gr.Row(equal_height=False):
                    export = gr.Button("⤓ Export the chain as a GIF", size="sm", scale=1, min_width=160)
                    gif = gr.File(label="GIF", interactive=False, scale=3, visible=False, elem_id="gen-gif")
        chain = gr.State(None, time_to_live=3600)
        gr.Markdown(text("reverse_intro"), latex_delimiters=LATEX, elem_id="reverse-intro")
        if curve and num_classes:
            with gr.Accordion("How much guidance? Measured on this model", open=False):
                # The table and the plot one above the other: beside each other the table's columns were squeezed
                # until the numbers wrapped.
                gr.Markdown(
                    text(
                        "guidance_curve",
                        table=guidance_table(curve),
                        samples=curve["num_samples"],
                        sampler=curve_sampler(curve),
                        w=f"{page.default_guidance:g}",
                        command=curve["command"],
                    ),
                    latex_delimiters=LATEX,
                    elem_id="guidance-text",
                )
                gr.Plot(guidance_plot(curve), show_label=False, elem_id="guidance-curve", elem_classes=["plot-box"])
        gr.Markdown(text("variances"), latex_delimiters=LATEX)
        variances_box = gr.Plot(
            label="β, β̃ and σₜ", show_label=False, elem_id="gen-variances", elem_classes=["plot-box"]
        )
        gr.Markdown(text("reverse_math"), latex_delimiters=LATEX)

    run.click(
        generate_,
        [digit, guidance, sampler, eta, steps, seed, batch],
        [x, eps, x0, info, slider, chain],
        api_name="generate",
        **page.chains,
    )
    stop.click(stop_, None, None, **STOP)  # the chain's stream then ends with a "stopped" frame
    slider.input(scrub_, [slider, chain], [x, eps, x0, info], api_name="scrub", **LIVE)
    export.click(export_, [chain], [gif], api_name="export_gif", **LIGHT).then(
        lambda: gr.update(visible=True), None, [gif], **PRIVATE
    )
    # beta, beta-tilde and the sigma_t of the chosen sampler, redrawn when the sampler, steps or eta change.
    gr.on(
        [sampler.change, steps.release, eta.release, page.demo.load],
        variances,
        [sampler, steps, eta],
        [variances_box],
        api_name="variances",
        **LIVE,
    )
    return {
        "generate": generate_,
        "stop_generate": stop_,
        "scrub": scrub_,
        "export_gif": export_,
        "variances_plot": variances,
    }
