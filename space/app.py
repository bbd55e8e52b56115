"""ddpm-hub Space: see how a denoising diffusion model works, one step at a time.

Two tabs:

* **Forward noising** - take any image (an upload, a held-out MNIST digit, an example) and watch q(x_t | x_0) wash it
  out; one forward step at a time beside the closed form, the schedules, linear vs cosine.
* **Reverse generation** - stream the reverse chain of a class-conditional DDPM (x_t, the predicted noise and the
  predicted x_0 at every shown step), scrub through it afterwards, export it as a GIF; DDPM vs DDIM from the same x_T;
  noise a real image to t and denoise it back.

Every number comes from the `ddpm_hub` library (scheduler and pipeline); this file only arranges calls and pictures.

Environment:
    DDPM_HUB_MODEL     a saved pipeline folder or a Hub repo id (default: `default_model/` next to this file)
    DDPM_HUB_REVISION  the Hub revision to load (default "main"); HF_ENDPOINT selects the Hub endpoint as usual
    DDPM_HUB_THREADS   torch CPU threads (default: torch's choice, one per core)

Run: `python space/app.py` from the repository root (or `python app.py` inside a Space).
"""

from __future__ import annotations

import importlib.util
import math
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("ddpm_hub") is None:  # not installed: use the package of the repository this file is in
    sys.path.insert(0, str(HERE.parent))
# The Space shares its CPU cores with its own web server: OpenMP threads that sleep instead of spin-waiting keep a busy
# machine from slowing the model down several times over (only effective when torch is not imported yet).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from ddpm_hub import DDIMHubScheduler, DDPMHubPipeline, DDPMHubScheduler  # noqa: E402
from ddpm_hub.data import load_mnist5k, preprocess_image, to_uint8  # noqa: E402

# ---------------------------------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------------------------------

DEFAULT_MODEL = HERE / "default_model"
MODEL_ID = os.environ.get("DDPM_HUB_MODEL") or str(DEFAULT_MODEL)
REVISION = os.environ.get("DDPM_HUB_REVISION") or "main"
if os.environ.get("DDPM_HUB_THREADS"):
    torch.set_num_threads(int(os.environ["DDPM_HUB_THREADS"]))

MAX_BATCH = 16  # images per chain
MAX_COPIES = 8  # noise-then-denoise copies of one image
MAX_SEED = 2**31 - 1
STREAMED_FRAMES = 100  # at most this many frames of a chain are pushed to the browser (plus the final one)
SCALE = 4  # display upscaling, nearest neighbour (28 px -> 112 px)
GIF_SCALE = 2
GIF_FRAMES = 100  # at most this many frames in an exported GIF (plus the final one)
GIF_FRAME_MS = 60
GIF_HOLD_MS = 2000  # the last frame of a GIF stays this long
EPS_RANGE = 3.0  # the predicted noise is shown with -3..3 mapped to black..white
GAP = 2  # pixels between the images of a grid (before upscaling)
GRID_BACKGROUND = 64  # gray between the images of a grid
MAX_FILE_SIZE = "10mb"
STRIP_AT = (0, 50, 100, 200, 400, 600, 800, 999)  # timesteps of the strip, for T = 1000 (rescaled for other T)
UNCONDITIONAL = "any"
SAMPLERS = {  # value -> (label, scheduler class, variance_type)
    "ddpm-fixed_large": ("DDPM · σ²ₜ = βₜ", DDPMHubScheduler, "fixed_large"),
    "ddpm-fixed_small": ("DDPM · σ²ₜ = β̃ₜ", DDPMHubScheduler, "fixed_small"),
    "ddim": ("DDIM · σₜ = η√β̃ₜ", DDIMHubScheduler, None),
}
SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
WORK_DIR = Path(tempfile.mkdtemp(prefix="ddpm_hub_space_"))  # digit PNGs and GIF exports
FONT = ImageFont.load_default(size=14)

# ---------------------------------------------------------------------------------------------------------------------
# The model, loaded once
# ---------------------------------------------------------------------------------------------------------------------


def load_pipeline(model_id: str = MODEL_ID, revision: str = REVISION) -> DDPMHubPipeline:
    """The pipeline from a local folder or a Hub repo (at `revision`)."""
    if Path(model_id).is_dir():
        if not (Path(model_id) / "model_index.json").is_file():
            raise RuntimeError(
                f"{model_id} has no model_index.json: train the default model first, or set DDPM_HUB_MODEL to a "
                "saved pipeline folder or a Hub repo id (e.g. ddpm-hub/ddpm-mnist-small)."
            )
        pipeline = DDPMHubPipeline.from_pretrained(model_id)
    elif model_id == str(DEFAULT_MODEL):
        raise RuntimeError(
            f"The bundled model {model_id} is missing: set DDPM_HUB_MODEL to a saved pipeline folder or a Hub repo id "
            "(e.g. ddpm-hub/ddpm-mnist-small)."
        )
    else:
        pipeline = DDPMHubPipeline.from_pretrained(model_id, revision=revision)
    pipeline.unet.eval()
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


PIPE = load_pipeline()
SCHEDULER = PIPE.scheduler  # the model's own schedule; only its formulas are used (never set_timesteps)
T = SCHEDULER.config.num_train_timesteps
NUM_CLASSES = PIPE.num_classes  # None for an unconditional model
CHANNELS = PIPE.unet.config.in_channels
RESOLUTION = PIPE.unet.config.sample_size
LINEAR = DDPMHubScheduler.from_config(SCHEDULER.config, beta_schedule="linear")
COSINE = DDPMHubScheduler.from_config(SCHEDULER.config, beta_schedule="squaredcos_cap_v2")
STRIP = sorted({min(T - 1, round(t * T / 1000)) for t in STRIP_AT})
DIGITS, DIGIT_LABELS = load_mnist5k("held_out")  # (N, 1, 28, 28) in [-1, 1], (N,)
MODEL_NAME = (
    "ddpm-hub/ddpm-mnist-small, bundled"
    if MODEL_ID == str(DEFAULT_MODEL)
    else Path(MODEL_ID).name
    if Path(MODEL_ID).is_dir()
    else f"{MODEL_ID}@{REVISION}"
)


def make_pipeline(sampler: str) -> DDPMHubPipeline:
    """A pipeline sharing the loaded U-Net, with its own scheduler (so concurrent chains never share timesteps)."""
    if sampler not in SAMPLERS:
        raise gr.Error(f"Unknown sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}.")
    _, scheduler_class, variance_type = SAMPLERS[sampler]
    config = {key: value for key, value in SCHEDULER.config.items() if key != "variance_type"}
    if variance_type is not None:
        config["variance_type"] = variance_type
    pipeline = DDPMHubPipeline(unet=PIPE.unet, scheduler=scheduler_class.from_config(config))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


# ---------------------------------------------------------------------------------------------------------------------
# Pictures: uint8 grids, upscaled with nearest neighbour
# ---------------------------------------------------------------------------------------------------------------------


def to_u8(images: torch.Tensor, scale: float = 1.0) -> np.ndarray:
    """(B, C, H, W) in [-scale, scale] -> uint8 (B, H, W, C), once per image."""
    return to_uint8(images if scale == 1.0 else images / scale)


def grid_columns(count: int) -> int:
    """Columns of a grid of `count` images, at most 4: 8 -> 4 x 2, 6 -> 3 x 2, 4 -> 2 x 2, 16 -> 4 x 4."""
    return 2 if count == 4 else math.ceil(count / math.ceil(count / 4))


def grid(images: np.ndarray, columns: int | None = None, scale: int = SCALE) -> np.ndarray:
    """uint8 (B, H, W, C) -> one uint8 picture, `columns` wide (default: at most 4), gray gaps, upscaled by `scale`."""
    count, height, width, channels = images.shape
    columns = columns or grid_columns(count)
    rows = math.ceil(count / columns)
    out = np.full(
        (rows * height + (rows - 1) * GAP, columns * width + (columns - 1) * GAP, channels),
        GRID_BACKGROUND,
        dtype=np.uint8,
    )
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = row * (height + GAP), column * (width + GAP)
        out[top : top + height, left : left + width] = images[index]
    out = out.repeat(scale, axis=0).repeat(scale, axis=1)
    return out[:, :, 0] if channels == 1 else out


def single(image: torch.Tensor) -> np.ndarray:
    """One (1, C, H, W) or (C, H, W) image in [-1, 1] -> an upscaled uint8 picture."""
    return grid(to_u8(image.reshape(-1, CHANNELS, RESOLUTION, RESOLUTION)[:1]))


def strip_picture(rows: dict[str, np.ndarray], scale: int = 3) -> np.ndarray:
    """Rows of uint8 (len(STRIP), H, W, C) images -> one labelled picture: a row per name, a column per t of STRIP."""
    tile, gap, left, top = RESOLUTION * scale, 6, 64, 24
    canvas = Image.new("L", (left + len(STRIP) * (tile + gap), top + len(rows) * (tile + gap)), 255)
    draw = ImageDraw.Draw(canvas)
    for column, t in enumerate(STRIP):
        draw.text((left + column * (tile + gap) + tile // 2, top // 2), f"t = {t}", fill=40, font=FONT, anchor="mm")
    for row, (name, images) in enumerate(rows.items()):
        y = top + row * (tile + gap)
        draw.text((left - 8, y + tile // 2), name, fill=40, font=FONT, anchor="rm")
        for column in range(len(STRIP)):
            canvas.paste(
                Image.fromarray(grid(images[column : column + 1], scale=scale)), (left + column * (tile + gap), y)
            )
    return np.asarray(canvas)


# ---------------------------------------------------------------------------------------------------------------------
# Inputs: uploads, dataset digits, the controls' values
# ---------------------------------------------------------------------------------------------------------------------


def upload_path(image: Any) -> str | None:
    """The file behind an image input: a path, or Gradio's file payload (the events run with preprocess=False)."""
    if image is None or isinstance(image, (str, os.PathLike)):
        return None if image is None else os.fspath(image)
    if isinstance(image, dict):
        path = image.get("path")
        if not path and str(image.get("url") or "").startswith("data:"):
            from gradio.processing_utils import decode_base64_to_file

            path = decode_base64_to_file(image["url"], str(WORK_DIR), "png")
        return path or None
    path = getattr(image, "path", None)  # a FileData object
    if path:
        return str(path)
    raise gr.Error(f"Expected an image file, got a {type(image).__name__}.")


def image_to_x0(image: Any) -> torch.Tensor:
    """An uploaded image -> x_0, (1, C, H, W) in [-1, 1]; anything unusable becomes a gr.Error with the reason."""
    path = upload_path(image)
    if path is None:
        raise gr.Error("Upload an image or pick a digit first.")
    try:
        x0 = preprocess_image(path, RESOLUTION, CHANNELS, invert="auto")
    except Exception as err:  # ValueError by contract; anything else must not become a traceback either
        reason = str(err).replace(os.path.dirname(path) + os.sep, "")  # the file's name, not the server's folders
        if not isinstance(err, ValueError):
            reason = f"{type(err).__name__}: {reason}"
        raise gr.Error(f"This upload can't be used: {reason}.") from None
    return x0.unsqueeze(0)


def digit_file(index: int) -> str:
    """A held-out MNIST digit as a 28x28 PNG file (the same conversion as any upload then reads it back)."""
    index = as_int(index, "digit index", 0, len(DIGITS) - 1)
    path = WORK_DIR / f"mnist_held_out_{index}.png"
    if not path.exists():
        Image.fromarray(to_u8(DIGITS[index : index + 1])[0, :, :, 0]).save(path)  # 2-D uint8: mode "L"
    return str(path)


def as_int(value: Any, name: str, low: int, high: int) -> int:
    """A control's value as an int in [low, high], or a gr.Error naming the control."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(number) or number != int(number) or not low <= number <= high:
        raise gr.Error(f"{name} must be a whole number from {low} to {high}, got {value!r}.")
    return int(number)


def as_float(value: Any, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number, got {value!r}.") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise gr.Error(f"{name} must be between {low} and {high}, got {value!r}.")
    return number


def as_label(digit: Any) -> int | None:
    """The digit control ("any" or "0".."9") -> a class label, or None for unconditional sampling."""
    if digit in (None, "", UNCONDITIONAL) or NUM_CLASSES is None:
        return None
    return as_int(digit, "digit", 0, NUM_CLASSES - 1)


def chain_settings(digit, guidance, sampler, eta, steps, seed, batch, max_batch=MAX_BATCH) -> dict:
    if sampler not in SAMPLERS:
        raise gr.Error(f"Unknown sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}.")
    return {
        "label": as_label(digit),
        "guidance": as_float(guidance, "guidance scale", 0.0, 20.0),
        "sampler": sampler,
        "eta": as_float(eta, "eta", 0.0, 1.0) if sampler == "ddim" else 0.0,
        "steps": as_int(steps, "number of steps", 1, T),
        "seed": as_int(seed, "seed", 0, MAX_SEED),
        "batch": as_int(batch, "batch size", 1, max_batch),
    }


def stream_every(num_steps: int) -> int:
    """Push every k-th step to the browser, so that a chain shows at most STREAMED_FRAMES frames (plus the last)."""
    return max(1, math.ceil(num_steps / STREAMED_FRAMES))


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


# ---------------------------------------------------------------------------------------------------------------------
# Tab 1: forward noising
# ---------------------------------------------------------------------------------------------------------------------


def fmt(value: float) -> str:
    """A number for the formulas: 4 significant digits, scientific notation when tiny."""
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    mantissa, exponent = f"{value:.3e}".split("e")
    return f"{mantissa}·10{str(int(exponent)).translate(SUPERSCRIPTS)}"


def forward_formula(t: int) -> str:
    """The closed form and one forward step, with this t's numbers (all from `scheduler.coefficients`)."""
    c = SCHEDULER.coefficients(t)
    return (
        f"**t = {t}** · $\\beta_t$ = {fmt(c['beta_t'])} · $\\bar\\alpha_t$ = {fmt(c['alpha_bar_t'])} · "
        f"SNR = $\\bar\\alpha_t/(1-\\bar\\alpha_t)$ = {fmt(c['snr_t'])} · log SNR = {c['log_snr_t']:.3f}\n\n"
        "$$x_t = \\sqrt{\\bar\\alpha_t}\\,x_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\epsilon"
        f" = {c['sqrt_alpha_bar_t']:.4f}\\,x_0 + {c['sqrt_one_minus_alpha_bar_t']:.4f}\\,\\epsilon$$\n\n"
        "$$x_t = \\sqrt{1-\\beta_t}\\,x_{t-1} + \\sqrt{\\beta_t}\\,\\epsilon"
        f" = {c['sqrt_alpha_t']:.4f}\\,x_{{t-1}} + {c['sqrt_beta_t']:.4f}\\,\\epsilon$$"
    )


def forward_stats(x0: torch.Tensor, step_by_step: torch.Tensor, closed: torch.Tensor, t: int) -> str:
    """Mean, and std of the noise part x_t - sqrt(alpha_bar_t) x_0, of both samples vs what q(x_t | x_0) predicts."""
    c = SCHEDULER.coefficients(t)
    signal = c["sqrt_alpha_bar_t"] * x0

    def row(name: str, x: torch.Tensor) -> str:
        return f"| {name} | {x.mean().item():.4f} | {(x - signal).std().item():.4f} |"

    return "\n".join(
        [
            f"| at t = {t} | mean of $x_t$ | std of $x_t - \\sqrt{{\\bar\\alpha_t}}\\,x_0$ |",
            "|:--|--:|--:|",
            f"| **predicted** by $q(x_t \\mid x_0)$ | $\\sqrt{{\\bar\\alpha_t}}\\cdot$mean$(x_0)$ = "
            f"**{c['sqrt_alpha_bar_t'] * x0.mean().item():.4f}** | $\\sqrt{{1-\\bar\\alpha_t}}$ = "
            f"**{c['sqrt_one_minus_alpha_bar_t']:.4f}** |",
            row(f"{t + 1} single steps of $q(x_t \\mid x_{{t-1}})$", step_by_step),
            row("one jump with the closed form", closed),
        ]
    )


def forward(image: Any, t: float = 250, seed: float = 0):
    """x_t of an image: t+1 single forward steps beside one closed-form jump, a strip over t, linear vs cosine.

    Returns: x_0, x_t (single steps), x_t (closed form), statistics (Markdown), formula (Markdown), the strip (one
    picture: linear and cosine rows over t), x_t with the linear schedule, x_t with the cosine schedule.
    """
    t = as_int(t, "t", 0, T - 1)
    seed = as_int(seed, "seed", 0, MAX_SEED)
    if upload_path(image) is None:
        return None, None, None, "Upload an image or pick a digit to start.", forward_formula(t), None, None, None
    x0 = image_to_x0(image)  # (1, C, H, W)

    # One forward step at a time vs the closed form, both from the same seed (the library's noising chain).
    (at_t,) = PIPE.noising_steps(x0, timesteps=[t], generator=generator(seed))
    # Linear vs cosine at the strip's timesteps and at t, with the same noise for both schedules.
    times = torch.tensor([*STRIP, t])
    noise = torch.randn((len(times), CHANNELS, RESOLUTION, RESOLUTION), generator=generator(seed + 1))
    x0s = x0.expand(len(times), -1, -1, -1)
    linear = to_u8(LINEAR.add_noise(x0s, noise, times))
    cosine = to_u8(COSINE.add_noise(x0s, noise, times))
    return (
        single(x0),
        single(at_t.sample),
        single(at_t.closed_form_sample),
        forward_stats(x0, at_t.sample, at_t.closed_form_sample, t),
        forward_formula(t),
        strip_picture({"linear": linear[:-1], "cosine": cosine[:-1]}),
        grid(linear[-1:]),
        grid(cosine[-1:]),
    )


def schedules_plot(t: float = 250) -> Figure:
    """beta_t, alpha_bar_t and log SNR(t) of the linear and cosine schedules, with a cursor at t."""
    t = as_int(t, "t", 0, T - 1)
    steps = torch.arange(T)
    figure = Figure(figsize=(10.5, 2.9), dpi=90, layout="constrained")
    axes = figure.subplots(1, 3)
    curves = {
        "linear": (LINEAR, "#4f46e5"),
        "cosine": (COSINE, "#db2777"),
    }
    for name, (scheduler, colour) in curves.items():
        log_snr = torch.log(scheduler.snr(steps))
        for ax, values in zip(axes, (scheduler.betas, scheduler.alphas_cumprod, log_snr), strict=True):
            ax.plot(steps.numpy(), values.numpy(), color=colour, lw=2, label=name)
            ax.plot([t], [values[t].item()], "o", color=colour, ms=6)
    for ax, title in zip(axes, (r"$\beta_t$", r"$\bar\alpha_t$", r"$\log\,\mathrm{SNR}(t)$"), strict=True):
        ax.axvline(t, color="#111827", lw=1, ls="--")
        ax.set_title(title, fontsize=12)
        ax.set_xlabel("t")
        ax.set_xlim(0, T - 1)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].legend(frameon=False, loc="upper left")
    return figure


def load_digit(index: float = 0):
    """A held-out MNIST digit (never seen in training) as the image input. Returns: image file, caption."""
    index = as_int(index, "digit index", 0, len(DIGITS) - 1)
    caption = f"Held-out MNIST digit #{index}: a **{int(DIGIT_LABELS[index])}**, never seen by the model in training."
    return digit_file(index), caption


def no_caption(*_: Any) -> str:
    """The caption of an image that is not a dataset digit (an upload or an example)."""
    return ""


def random_digit() -> int:
    """The index of a random held-out digit."""
    return random.randrange(len(DIGITS))


# ---------------------------------------------------------------------------------------------------------------------
# Tab 2: the reverse chain, streamed and stored
# ---------------------------------------------------------------------------------------------------------------------


def new_chain(settings: dict) -> dict:
    """What a chain keeps for scrubbing and GIF export: small uint8 arrays per step and a few numbers."""
    return {"settings": settings, "t": [], "prev_t": [], "std": [], "x": [], "eps": [], "x0": [], "done": False}


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


def step_info(chain: dict, index: int) -> str:
    """The step's t, its coefficients (from the scheduler) and sigma_t (from the step itself), as Markdown."""
    settings = chain["settings"]
    num_steps = settings["steps_run"]
    if index >= len(chain["t"]):
        return (
            f"**Done: $x_0$ after {len(chain['t'])} steps.** The middle and right panels show the last step's "
            "predictions. Drag the slider to go back through the chain, or export it as a GIF."
        )
    t, prev_t, std = chain["t"][index], chain["prev_t"][index], chain["std"][index]
    target = f"t′ = {prev_t}" if prev_t >= 0 else "x₀"
    c = SCHEDULER.coefficients(t)
    beta = float(SCHEDULER.fixed_variance(t, "beta", prev_t))  # of this (possibly strided) step
    beta_tilde = float(SCHEDULER.posterior_variance(t, prev_t))
    variance = {"ddpm-fixed_large": r"\beta_t", "ddpm-fixed_small": r"\tilde\beta_t"}.get(
        settings["sampler"], rf"\eta^2\tilde\beta_t,\ \eta = {settings['eta']:g}"
    )
    if settings["sampler"] == "ddim":
        formula = (
            r"$$x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t'}-\sigma_t^2}\,\hat\epsilon"
            r" + \sigma_t z$$"
        )
    else:
        formula = r"$$x_{t'} = \tilde\mu_t(x_t, \hat x_0) + \sigma_t z = \mu_\theta(x_t, t) + \sigma_t z$$"
    return (
        f"**Step {index + 1} / {num_steps}** · t = {t} → {target} · ε̂ shown with −3…3 as black…white\n\n"
        "| $\\bar\\alpha_t$ | $\\sqrt{\\bar\\alpha_t}$ | $\\sqrt{1-\\bar\\alpha_t}$ | log SNR | β of this step "
        "| β̃ of this step | σₜ |\n|--:|--:|--:|--:|--:|--:|--:|\n"
        f"| {fmt(c['alpha_bar_t'])} | {c['sqrt_alpha_bar_t']:.4f} | {c['sqrt_one_minus_alpha_bar_t']:.4f} | "
        f"{c['log_snr_t']:.2f} | {fmt(beta)} | {fmt(beta_tilde)} | **{fmt(std)}** ($\\sigma_t^2 = {variance}$) |"
        f"\n\n{formula}"
    )


def chain_frame(chain: dict | None, index: float) -> tuple:
    """The stored frame `index`: x_t, predicted noise, predicted x_0 (upscaled grids) and the step's Markdown."""
    if not num_frames(chain):
        raise gr.Error("Generate a chain first: the slider scrubs through the last chain you generated.")
    index = min(max(int(index), 0), num_frames(chain) - 1)
    prediction = min(index, len(chain["eps"]) - 1)
    return (
        grid(chain["x"][index]),
        grid(chain["eps"][prediction]),
        grid(chain["x0"][prediction]),
        step_info(chain, index),
    )


def generate(
    digit: Any = "3",
    guidance: float = 2.0,
    sampler: str = "ddpm-fixed_small",
    eta: float = 0.0,
    steps: float = 1000,
    seed: float = 0,
    batch: float = 8,
):
    """Runs the reverse chain and streams it: every k-th step (at most ~100 frames), then the final x_0.

    Yields: x_t, predicted noise, predicted x_0 (grids), step info (Markdown), the frame's index (for the scrub
    slider), the stored chain.
    """
    settings = chain_settings(digit, guidance, sampler, eta, steps, seed, batch)
    pipeline = make_pipeline(settings["sampler"])
    chain = new_chain(settings)
    every = stream_every(settings["steps"])
    step = None
    try:
        for step in pipeline.denoising_steps(
            batch_size=settings["batch"],
            class_labels=settings["label"],
            guidance_scale=settings["guidance"],
            num_inference_steps=settings["steps"],
            generator=generator(settings["seed"]),
            eta=settings["eta"],
        ):
            settings["steps_run"] = step.num_steps
            record(chain, step)
            if step.step_index % every == 0:
                index = step.step_index
                yield (*chain_frame(chain, index), index, chain)
    except ValueError as err:
        raise gr.Error(str(err)) from None
    finish(chain, step)
    last = num_frames(chain) - 1
    yield (*chain_frame(chain, last), last, chain)


def scrub(index: float, chain: dict | None):
    """A stored frame of the last chain. Returns: x_t, predicted noise, predicted x_0, step info (Markdown)."""
    return chain_frame(chain, index)


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
    """Which stored frames go into the GIF: every k-th (at most GIF_FRAMES), and always the last."""
    count = num_frames(chain)
    every = max(1, math.ceil((count - 1) / GIF_FRAMES))
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
    return canvas


def purge_exports(max_age_s: float = 3600) -> None:
    """Deletes exported GIFs older than an hour (Gradio serves its own copies; these are the originals)."""
    now = time.time()
    for folder in WORK_DIR.glob("gif_*"):
        if now - folder.stat().st_mtime > max_age_s:
            shutil.rmtree(folder, ignore_errors=True)


def write_gif(chain: dict | None) -> str:
    """The last chain as an animated GIF (x_t beside the predicted x_0); the file name carries the settings."""
    if not num_frames(chain):
        raise gr.Error("Generate a chain first, then export it.")
    frames = [gif_frame(chain, index, FONT) for index in gif_frames(chain)]
    purge_exports()
    folder = Path(tempfile.mkdtemp(prefix="gif_", dir=WORK_DIR))
    path = folder / gif_name(chain["settings"], None if chain["done"] else len(chain["t"]))
    durations = [GIF_FRAME_MS] * (len(frames) - 1) + [GIF_HOLD_MS]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return str(path)


def export_gif(chain: dict | None) -> str:
    """The last chain as an animated GIF file, e.g. ddpm_digit3_seed42_ddpm-fixed_small_1000steps_w2.0_batch8.gif."""
    return write_gif(chain)


def scrub_range(steps: float):
    """Before a chain starts: the scrub slider spans its frames (x_T ... x_0)."""
    try:
        return gr.update(minimum=0, maximum=as_int(steps, "number of steps", 1, T), value=0)
    except gr.Error:
        return gr.update()  # generate reports the bad value


# ---------------------------------------------------------------------------------------------------------------------
# Tab 2: DDPM vs DDIM from the same x_T
# ---------------------------------------------------------------------------------------------------------------------


def compare(
    digit: Any = "3",
    guidance: float = 2.0,
    ddpm_steps: float = 1000,
    ddim_steps: float = 50,
    eta: float = 0.0,
    seed: float = 0,
    batch: float = 4,
):
    """DDPM (sigma^2 = beta-tilde) and DDIM from the same x_T, advanced in lockstep by the fraction of their chains.

    Yields: DDPM x_t, DDPM predicted x_0, DDIM x_t, DDIM predicted x_0 (grids), progress (Markdown).
    """
    ddpm = chain_settings(digit, guidance, "ddpm-fixed_small", 0.0, ddpm_steps, seed, batch)
    ddim = chain_settings(digit, guidance, "ddim", eta, ddim_steps, seed, batch)
    shape = (ddpm["batch"], CHANNELS, RESOLUTION, RESOLUTION)
    x_T = torch.randn(shape, generator=generator(ddpm["seed"])) * SCHEDULER.init_noise_sigma  # shared x_T

    def chain(pipeline, settings):
        return pipeline.denoising_steps(
            batch_size=settings["batch"],
            class_labels=settings["label"],
            guidance_scale=settings["guidance"],
            num_inference_steps=settings["steps"],
            generator=generator(settings["seed"] + 1),
            eta=settings["eta"],
            latents=x_T,
        )

    ddpm_chain = chain(make_pipeline("ddpm-fixed_small"), ddpm)
    ddim_chain = chain(make_pipeline("ddim"), ddim)
    every = stream_every(ddpm["steps"])
    last_ddpm = last_ddim = None
    done_ddim = 0

    def info() -> str:
        return (
            f"**DDPM** step {last_ddpm.step_index + 1} / {ddpm['steps']} (t = {last_ddpm.timestep}) · "
            f"**DDIM** step {done_ddim} / {ddim['steps']} (t = {last_ddim.timestep})"
        )

    def frame(final: bool = False):
        pictures = (
            last_ddpm.prev_sample if final else last_ddpm.sample,
            last_ddpm.pred_original_sample,
            last_ddim.prev_sample if final else last_ddim.sample,
            last_ddim.pred_original_sample,
        )
        return (*(grid(to_u8(x)) for x in pictures), info())

    try:
        for last_ddpm in ddpm_chain:
            fraction = (last_ddpm.step_index + 1) / ddpm["steps"]
            while done_ddim < ddim["steps"] and (last_ddim is None or done_ddim / ddim["steps"] < fraction):
                last_ddim = next(ddim_chain)
                done_ddim += 1
            if last_ddpm.step_index % every == 0:
                yield frame()
    except ValueError as err:
        raise gr.Error(str(err)) from None
    yield frame(final=True)


# ---------------------------------------------------------------------------------------------------------------------
# Tab 2: noise a real image to t, then denoise it
# ---------------------------------------------------------------------------------------------------------------------


def noise_denoise(
    image: Any,
    start_t: float = 500,
    digit: Any = UNCONDITIONAL,
    guidance: float = 2.0,
    sampler: str = "ddpm-fixed_small",
    eta: float = 0.0,
    steps: float = 1000,
    seed: float = 0,
    copies: float = 4,
):
    """Noises the image to start_t with q(x_t | x_0), then runs the reverse chain from there (streamed).

    Yields: x_0, the noised input, the current x_t, the predicted x_0 (grids), progress (Markdown).
    """
    x0 = image_to_x0(image)
    start_t = as_int(start_t, "start t", 0, T - 1)
    settings = chain_settings(digit, guidance, sampler, eta, steps, seed, copies, max_batch=MAX_COPIES)
    pipeline = make_pipeline(settings["sampler"])
    images = x0.expand(settings["batch"], -1, -1, -1)
    original = single(x0)
    noised = step = None
    start = every = 0
    try:
        chain = pipeline.noise_then_denoise_steps(
            images,
            start_t,
            class_labels=settings["label"],
            guidance_scale=settings["guidance"],
            num_inference_steps=settings["steps"],
            generator=generator(settings["seed"]),
            eta=settings["eta"],
        )
        for step in chain:
            if noised is None:  # the first step's x_t is the noised image
                noised, start, every = grid(to_u8(step.sample)), step.timestep, stream_every(step.num_steps)
            if step.step_index % every == 0:
                info = (
                    f"Denoising from t = {start}: step {step.step_index + 1} / {step.num_steps} (t = {step.timestep})"
                )
                yield original, noised, grid(to_u8(step.sample)), grid(to_u8(step.pred_original_sample)), info
    except ValueError as err:
        raise gr.Error(str(err)) from None
    info = (
        f"**Done.** Noised to t = {start} with $q(x_t \\mid x_0)$ "
        f"($\\sqrt{{\\bar\\alpha_t}}$ = {SCHEDULER.coefficients(start)['sqrt_alpha_bar_t']:.3f}: that much of "
        f"the image is left), then {step.num_steps} reverse steps back to $x_0$."
    )
    yield original, noised, grid(to_u8(step.prev_sample)), grid(to_u8(step.pred_original_sample)), info


# ---------------------------------------------------------------------------------------------------------------------
# Words: a short explanation per section, with the formulas of the DDPM notes
# ---------------------------------------------------------------------------------------------------------------------

SCHEDULE_NAME = {"linear": "linear", "squaredcos_cap_v2": "cosine"}.get(
    SCHEDULER.config.beta_schedule, SCHEDULER.config.beta_schedule
)
HEADER = f"""
# 🌀 ddpm-hub · watch a diffusion model work
A **denoising diffusion model** (DDPM, Ho et al. 2020) learns to undo noise. **Forward**: an image dissolves into
Gaussian noise, one small step at a time. **Reverse**: a small U-Net predicts the noise in a noisy image; removing a
little of it at a time turns pure noise into a handwritten digit.
<span class="subtle">Model: `{MODEL_NAME}` · T = {T} steps · {SCHEDULE_NAME} β schedule ·
{"digits 0-9 with classifier-free guidance" if NUM_CLASSES else "unconditional"} ·
every number on this page comes from the `ddpm_hub` scheduler and pipeline.</span>
"""

FORWARD_INTRO = f"""
Each forward step shrinks the image a little and adds a little Gaussian noise (βₜ grows from
{SCHEDULER.betas[0].item():.2g} to {SCHEDULER.betas[-1].item():.2g}):
$$q(x_t \\mid x_{{t-1}}) = \\mathcal N\\big(\\sqrt{{1-\\beta_t}}\\,x_{{t-1}},\\ \\beta_t I\\big)$$
Gaussians compose, so t steps collapse into **one jump** from the clean image, with
$\\bar\\alpha_t = \\prod_{{s\\le t}}(1-\\beta_s)$:
$$q(x_t \\mid x_0) = \\mathcal N\\big(\\sqrt{{\\bar\\alpha_t}}\\,x_0,\\ (1-\\bar\\alpha_t)\\, I\\big)$$
Training uses the jump. Below, both routes run from the same seed: the pictures differ (different random draws), their
statistics agree. Counting follows diffusers: t = 0 is the first noising step.
"""

SCHEDULE_TEXT = """
### The schedules: linear vs cosine
$\\sqrt{\\bar\\alpha_t}$ is how much of the image is left, $\\mathrm{SNR}(t) = \\bar\\alpha_t / (1-\\bar\\alpha_t)$
the signal-to-noise ratio. The **linear** schedule (Ho et al.) has destroyed the image long before t = T; the
**cosine** schedule (Nichol & Dhariwal 2021: $\\bar\\alpha_t = f(t)/f(0)$ with
$f(t) = \\cos^2\\big(\\tfrac{t/T + s}{1 + s}\\cdot\\tfrac{\\pi}{2}\\big)$, s = 0.008) spends more steps at useful
noise levels. Same image, **same noise**, only the schedule differs.
"""

REVERSE_INTRO = """
Generation starts from pure noise $x_T \\sim \\mathcal N(0, I)$. At each step the U-Net predicts the noise
$\\hat\\epsilon = \\epsilon_\\theta(x_t, t, y)$ in $x_t$ (**middle**); with it comes a guess of the clean image
$\\hat x_0$ (**right**), and a step back to a slightly less noisy $x_{t-1}$ (**left**). Early guesses are blurry
averages of all digits; late ones are sharp.
"""

REVERSE_MATH = """
#### One reverse step, in formulas
1. **Guess $x_0$ from the noise** (the closed form solved for $x_0$, then clipped to [−1, 1]):
   $$\\hat x_0 = \\frac{x_t - \\sqrt{1-\\bar\\alpha_t}\\,\\hat\\epsilon}{\\sqrt{\\bar\\alpha_t}}$$
2. **Step with the true posterior** $q(x_{t-1} \\mid x_t, x_0) = \\mathcal N(\\tilde\\mu_t, \\tilde\\beta_t I)$,
   $\\hat x_0$ in place of $x_0$:
   $$\\tilde\\mu_t = \\frac{\\sqrt{\\bar\\alpha_{t-1}}\\,\\beta_t}{1-\\bar\\alpha_t}\\,x_0
   + \\frac{\\sqrt{\\alpha_t}\\,(1-\\bar\\alpha_{t-1})}{1-\\bar\\alpha_t}\\,x_t, \\qquad
   \\tilde\\beta_t = \\frac{1-\\bar\\alpha_{t-1}}{1-\\bar\\alpha_t}\\,\\beta_t$$
   With $\\hat x_0$ from step 1 this is the model's mean, written with the noise:
   $$\\mu_\\theta(x_t, t) = \\frac{1}{\\sqrt{\\alpha_t}}\\Big(x_t - \\frac{\\beta_t}{\\sqrt{1-\\bar\\alpha_t}}\\,
   \\hat\\epsilon\\Big)$$
3. **Add fresh noise**: $x_{t-1} = \\mu_\\theta + \\sigma_t z$ with $z \\sim \\mathcal N(0, I)$ (none at the last
   step). The DDPM paper tried two variances: $\\sigma_t^2 = \\beta_t$ (right if the data were pure noise) and
   $\\sigma_t^2 = \\tilde\\beta_t$ (right if the data were a single image). Both give good samples.

**Classifier-free guidance** runs the model with the digit ($\\epsilon_c$) and without it ($\\epsilon_u$):
$$\\hat\\epsilon = \\epsilon_u + w\\,(\\epsilon_c - \\epsilon_u)$$
w = 0 ignores the digit, w = 1 is plain conditional sampling, w > 1 exaggerates the digit.

**DDIM** (Song et al. 2021) keeps the trained model and changes only the step:
$$x_{t-1} = \\sqrt{\\bar\\alpha_{t-1}}\\,\\hat x_0 + \\sqrt{1-\\bar\\alpha_{t-1}-\\sigma_t^2}\\,\\hat\\epsilon
+ \\sigma_t z, \\qquad \\sigma_t = \\eta\\sqrt{\\tilde\\beta_t}$$
With η = 0 it is deterministic and can jump over many timesteps; η = 1 is DDPM with $\\tilde\\beta_t$.
$\\hat x_0$ is clipped to [−1, 1] and $\\hat\\epsilon$ recomputed from it, so both terms describe the same
$x_0$; without that, guided DDIM drifts to saturated blobs.
With fewer steps than T, "t − 1" is the chain's next timestep t′, and β, β̃ are those of the jump.
"""

COMPARE_INTRO = """
Both chains start from the **same** $x_T$ (same seed, digit and w). DDPM ($\\sigma_t^2 = \\tilde\\beta_t$) walks all
its steps and adds fresh noise each time; DDIM takes far fewer steps, deterministic at η = 0. They advance in lockstep
by the fraction of their chain that is done. Same start, different paths: the digits often share a rough shape and
differ in the details.
"""

DENOISE_INTRO = """
Noise a real image to t in one jump with $q(x_t \\mid x_0)$, then let the model run the reverse chain from there
(`noise_then_denoise_steps`). At small t it only cleans up; at large t little survives ($\\sqrt{\\bar\\alpha_t}$ is how
much of the image is left) and the model invents a new digit. Each copy gets its own noise.
"""

FOOTER = """
<div class="subtle">Built on 🤗 diffusers' interfaces with <code>DDPMHubPipeline</code> and
<code>DDPMHubScheduler</code>. References: Ho, Jain & Abbeel 2020 (DDPM) · Nichol & Dhariwal 2021 (cosine schedule) ·
Song, Meng & Ermon 2021 (DDIM) · Ho & Salimans 2022 (classifier-free guidance).</div>
"""

CSS = """
.gradio-container { max-width: 1320px !important; margin: auto; }
.pixelated img, .pixelated canvas { image-rendering: pixelated; }
.upload-box img { width: 100% !important; height: 100% !important; object-fit: contain; }
.subtle, .subtle * { color: var(--body-text-color-subdued) !important; font-size: 0.92em; }
.formula { min-height: 9em; }
.step-info { min-height: 6.5em; }
#header h1 { margin-bottom: 0.2em; }
"""
THEME = gr.themes.Soft(
    primary_hue="indigo",
    secondary_hue="pink",
    neutral_hue="slate",
    font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
)
LAUNCH_KWARGS = {"max_file_size": MAX_FILE_SIZE, "theme": THEME, "css": CSS}
EXAMPLES = sorted(str(path) for path in (HERE / "examples").glob("*.png"))


# ---------------------------------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------------------------------


def picture(label: str, height: int = 250, **kwargs) -> gr.Image:
    """An output picture: crisp pixels, PNG, download and fullscreen buttons."""
    return gr.Image(
        label=label,
        interactive=False,
        format="png",
        height=height,
        buttons=["download", "fullscreen"],
        elem_classes=["pixelated"],
        **kwargs,
    )


def upload(label: str, elem_id: str) -> gr.Image:
    """An image input; its events run with preprocess=False so that every file reaches `preprocess_image`."""
    return gr.Image(
        label=label,
        type="filepath",
        image_mode=None,
        sources=["upload", "clipboard"],
        height=230,
        elem_classes=["pixelated", "upload-box"],
        placeholder="Drop any image here",
        elem_id=elem_id,
    )


def digit_picker(value: str = "3") -> gr.Radio:
    choices = [("any", UNCONDITIONAL)] + [(str(d), str(d)) for d in range(NUM_CLASSES or 0)]
    return gr.Radio(
        choices,
        value=value if NUM_CLASSES else UNCONDITIONAL,
        label='Digit y ("any" = unconditional)',
        visible=NUM_CLASSES is not None,
    )


def guidance_slider() -> gr.Slider:
    return gr.Slider(
        0,
        8,
        value=2.0,
        step=0.5,
        label="Guidance scale w",
        info="0: ignore the digit · 1: conditional · >1: more so",
        visible=NUM_CLASSES is not None,
    )


def sampler_picker() -> gr.Radio:
    return gr.Radio(
        [(label, value) for value, (label, _, _) in SAMPLERS.items()], value="ddpm-fixed_small", label="Sampler"
    )


def eta_slider() -> gr.Slider:
    return gr.Slider(0, 1, value=0.0, step=0.1, label="DDIM η", info="0: deterministic · 1: like DDPM with β̃ₜ")


def seed_box(value: int = 0) -> gr.Number:
    return gr.Number(value=value, label="Seed", precision=0, minimum=0, maximum=MAX_SEED, min_width=100)


with gr.Blocks(title="ddpm-hub · see a diffusion model work", delete_cache=(3600, 3600)) as demo:
    gr.Markdown(HEADER, elem_id="header")
    with gr.Tabs():
        # -------------------------------------------------------------------------------------------------------------
        with gr.Tab("① Forward noising", id="forward"):
            gr.Markdown(FORWARD_INTRO, latex_delimiters=LATEX)
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=290):
                    fw_image = upload("x₀ · any image", "fw-image")
                    with gr.Row():
                        fw_index = gr.Number(
                            elem_id="fw-index",
                            value=300,
                            label="Held-out digit #",
                            precision=0,
                            minimum=0,
                            maximum=len(DIGITS) - 1,
                            min_width=110,
                        )
                        with gr.Column(min_width=110):
                            fw_load = gr.Button("Load digit", size="sm")
                            fw_random = gr.Button("🎲 Random digit", size="sm")
                    fw_caption = gr.Markdown(elem_classes=["subtle"], elem_id="fw-caption", label="caption")
                    gr.Examples(
                        EXAMPLES,
                        inputs=[fw_image],
                        outputs=[fw_caption],
                        fn=no_caption,
                        run_on_click=True,
                        cache_examples=False,
                        label="Examples",
                        api_visibility="private",
                    )
                with gr.Column(scale=3):
                    with gr.Row():
                        fw_t = gr.Slider(0, T - 1, value=min(T - 1, T // 4), step=1, label="t", scale=4)
                        fw_seed = seed_box()
                    fw_formula = gr.Markdown(
                        forward_formula(min(T - 1, T // 4)),
                        latex_delimiters=LATEX,
                        elem_classes=["formula"],
                        label="formula",
                    )
                    with gr.Row():
                        fw_x0 = picture(f"x₀ · {RESOLUTION}×{RESOLUTION}, in [−1, 1]", height=230, elem_id="fw-x0")
                        fw_steps = picture("x_t · step by step", height=230, elem_id="fw-steps")
                        fw_closed = picture("x_t · one jump", height=230, elem_id="fw-closed")
                    fw_stats = gr.Markdown(latex_delimiters=LATEX, elem_id="fw-stats", label="statistics")
            gr.Markdown(SCHEDULE_TEXT, latex_delimiters=LATEX)
            with gr.Row(equal_height=False):
                fw_plot = gr.Plot(label="Schedules (cursor at t)", scale=3, show_label=False)
                with gr.Column(scale=1, min_width=220):
                    with gr.Row():
                        fw_linear = picture("linear, at t", height=170, elem_id="fw-linear")
                        fw_cosine = picture("cosine, at t", height=170, elem_id="fw-cosine")
            fw_strip = picture("x_t across t · same noise, two schedules", height=260, elem_id="fw-strip")

        # -------------------------------------------------------------------------------------------------------------
        with gr.Tab("② Reverse generation", id="reverse"):
            gr.Markdown(REVERSE_INTRO, latex_delimiters=LATEX)
            with gr.Tabs():
                with gr.Tab("Generate & scrub", id="generate"):
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=1, min_width=300):
                            gen_digit = digit_picker("3")
                            gen_guidance = guidance_slider()
                            gen_sampler = sampler_picker()
                            gen_eta = eta_slider()
                            gen_steps = gr.Slider(
                                1, T, value=T, step=1, label="Steps", info=f"{T} = the full chain", elem_id="gen-steps"
                            )
                            with gr.Row():
                                gen_seed = seed_box(42)
                                gen_batch = gr.Slider(1, MAX_BATCH, value=8, step=1, label="Images", min_width=120)
                            with gr.Row():
                                gen_run = gr.Button("▶ Generate", variant="primary", scale=2, min_width=80)
                                gen_stop = gr.Button("■ Stop", variant="stop", scale=1, min_width=80)
                        with gr.Column(scale=3):
                            with gr.Row():
                                gen_x = picture("x_t (the chain)", elem_id="gen-x")
                                gen_eps = picture("predicted noise ε̂", elem_id="gen-eps")
                                gen_x0 = picture("predicted x̂₀", elem_id="gen-x0")
                            gen_info = gr.Markdown(
                                "Press **Generate** to watch the chain.",
                                latex_delimiters=LATEX,
                                elem_classes=["step-info"],
                                elem_id="gen-info",
                                label="step info",
                            )
                            gen_scrub = gr.Slider(
                                0,
                                T,
                                value=0,
                                step=1,
                                label="Scrub: stored step (all steps are kept)",
                            )
                            with gr.Row(equal_height=False):
                                gen_export = gr.Button(
                                    "⤓ Export the chain as a GIF", size="sm", scale=1, min_width=160
                                )
                                gen_gif = gr.File(
                                    label="GIF", interactive=False, scale=3, visible=False, elem_id="gen-gif"
                                )
                    gen_chain = gr.State(None, time_to_live=3600)
                    gr.Markdown(REVERSE_MATH, latex_delimiters=LATEX)

                with gr.Tab("DDPM vs DDIM", id="compare"):
                    gr.Markdown(COMPARE_INTRO, latex_delimiters=LATEX)
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=1, min_width=300):
                            cmp_digit = digit_picker("5")
                            cmp_guidance = guidance_slider()
                            cmp_ddpm_steps = gr.Slider(1, T, value=T, step=1, label="DDPM steps")
                            cmp_ddim_steps = gr.Slider(1, T, value=min(50, T), step=1, label="DDIM steps")
                            cmp_eta = eta_slider()
                            with gr.Row():
                                cmp_seed = seed_box(7)
                                cmp_batch = gr.Slider(1, MAX_BATCH, value=4, step=1, label="Images", min_width=120)
                            with gr.Row():
                                cmp_run = gr.Button("▶ Run both", variant="primary", scale=2, min_width=80)
                                cmp_stop = gr.Button("■ Stop", variant="stop", scale=1, min_width=80)
                        with gr.Column(scale=3):
                            with gr.Row():
                                cmp_ddpm_x = picture("DDPM: x_t", height=220, elem_id="cmp-ddpm-x")
                                cmp_ddpm_x0 = picture("DDPM: predicted x̂₀", height=220, elem_id="cmp-ddpm-x0")
                            with gr.Row():
                                cmp_ddim_x = picture("DDIM: x_t", height=220, elem_id="cmp-ddim-x")
                                cmp_ddim_x0 = picture("DDIM: predicted x̂₀", height=220, elem_id="cmp-ddim-x0")
                            cmp_info = gr.Markdown(elem_id="cmp-info", label="progress")

                with gr.Tab("Noise, then denoise", id="denoise"):
                    gr.Markdown(DENOISE_INTRO, latex_delimiters=LATEX)
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=1, min_width=300):
                            nd_image = upload("A real image x₀", "nd-image")
                            with gr.Row():
                                nd_index = gr.Number(
                                    value=700,
                                    label="Held-out digit #",
                                    precision=0,
                                    minimum=0,
                                    maximum=len(DIGITS) - 1,
                                    min_width=110,
                                )
                                with gr.Column(min_width=110):
                                    nd_load = gr.Button("Load digit", size="sm")
                                    nd_random = gr.Button("🎲 Random digit", size="sm")
                            nd_caption = gr.Markdown(elem_classes=["subtle"], label="caption")
                            gr.Examples(
                                EXAMPLES,
                                inputs=[nd_image],
                                outputs=[nd_caption],
                                fn=no_caption,
                                run_on_click=True,
                                cache_examples=False,
                                label="Examples",
                                api_visibility="private",
                            )
                            nd_t = gr.Slider(0, T - 1, value=min(T - 1, T // 2), step=1, label="Noise to t")
                            nd_digit = digit_picker(UNCONDITIONAL)
                            nd_guidance = guidance_slider()
                            with gr.Accordion("Sampler, steps, seed", open=False):
                                nd_sampler = sampler_picker()
                                nd_eta = eta_slider()
                                nd_steps = gr.Slider(
                                    1,
                                    T,
                                    value=T,
                                    step=1,
                                    label="Steps of the full chain",
                                    info="the chain runs those of its timesteps that are ≤ t",
                                )
                                with gr.Row():
                                    nd_seed = seed_box(0)
                                    nd_copies = gr.Slider(
                                        1, MAX_COPIES, value=4, step=1, label="Copies", min_width=120
                                    )
                            with gr.Row():
                                nd_run = gr.Button("▶ Noise, then denoise", variant="primary", scale=2, min_width=80)
                                nd_stop = gr.Button("■ Stop", variant="stop", scale=1, min_width=80)
                        with gr.Column(scale=3):
                            with gr.Row():
                                nd_x0 = picture("x₀", height=220, elem_id="nd-x0")
                                nd_noised = picture("noised to t", height=220, elem_id="nd-noised")
                            with gr.Row():
                                nd_x = picture("x_t → what comes back", height=220, elem_id="nd-x")
                                nd_x0_hat = picture("predicted x̂₀", height=220, elem_id="nd-x0-hat")
                            nd_info = gr.Markdown(latex_delimiters=LATEX, elem_id="nd-info", label="progress")
    gr.Markdown(FOOTER)

    # -----------------------------------------------------------------------------------------------------------------
    # Events
    # -----------------------------------------------------------------------------------------------------------------
    light = {"concurrency_limit": 4, "show_progress": "hidden"}
    live = {**light, "trigger_mode": "always_last"}  # while dragging a slider: finish the last value, skip the rest
    chains = {"concurrency_id": "chain", "concurrency_limit": 1, "show_progress": "minimal"}

    gr.on(
        [fw_image.change, fw_t.change, fw_seed.change],
        forward,
        [fw_image, fw_t, fw_seed],
        [fw_x0, fw_steps, fw_closed, fw_stats, fw_formula, fw_strip, fw_linear, fw_cosine],
        api_name="forward",
        preprocess=False,  # the upload goes to preprocess_image as a file: every bad file becomes a readable gr.Error
        **live,
    )
    fw_t.change(schedules_plot, [fw_t], [fw_plot], api_name="schedules", **live)
    fw_load.click(load_digit, [fw_index], [fw_image, fw_caption], api_name="load_digit", **light)
    fw_random.click(random_digit, None, [fw_index], api_name="random_digit", **light).then(
        load_digit, [fw_index], [fw_image, fw_caption], api_visibility="private", **light
    )

    gen_event = gen_run.click(scrub_range, [gen_steps], [gen_scrub], api_visibility="private", queue=False).then(
        generate,
        [gen_digit, gen_guidance, gen_sampler, gen_eta, gen_steps, gen_seed, gen_batch],
        [gen_x, gen_eps, gen_x0, gen_info, gen_scrub, gen_chain],
        api_name="generate",
        **chains,
    )
    gen_stop.click(None, None, None, cancels=[gen_event], api_visibility="private")
    gen_scrub.input(scrub, [gen_scrub, gen_chain], [gen_x, gen_eps, gen_x0, gen_info], api_name="scrub", **live)
    gen_export.click(export_gif, [gen_chain], [gen_gif], api_name="export_gif", **light).then(
        lambda: gr.update(visible=True), None, [gen_gif], api_visibility="private", queue=False
    )

    cmp_event = cmp_run.click(
        compare,
        [cmp_digit, cmp_guidance, cmp_ddpm_steps, cmp_ddim_steps, cmp_eta, cmp_seed, cmp_batch],
        [cmp_ddpm_x, cmp_ddpm_x0, cmp_ddim_x, cmp_ddim_x0, cmp_info],
        api_name="compare",
        **chains,
    )
    cmp_stop.click(None, None, None, cancels=[cmp_event], api_visibility="private")

    nd_event = nd_run.click(
        noise_denoise,
        [nd_image, nd_t, nd_digit, nd_guidance, nd_sampler, nd_eta, nd_steps, nd_seed, nd_copies],
        [nd_x0, nd_noised, nd_x, nd_x0_hat, nd_info],
        api_name="noise_denoise",
        preprocess=False,
        **chains,
    )
    nd_stop.click(None, None, None, cancels=[nd_event], api_visibility="private")
    nd_load.click(load_digit, [nd_index], [nd_image, nd_caption], api_visibility="private", **light)
    nd_random.click(random_digit, None, [nd_index], api_visibility="private", **light).then(
        load_digit, [nd_index], [nd_image, nd_caption], api_visibility="private", **light
    )

    for image, caption in ((fw_image, fw_caption), (nd_image, nd_caption)):
        gr.on([image.upload, image.clear], no_caption, None, [caption], api_visibility="private", queue=False)

    # On page load: a digit in each image input (the forward view then computes itself) and the schedules.
    demo.load(load_digit, [fw_index], [fw_image, fw_caption], api_visibility="private", **light)
    demo.load(load_digit, [nd_index], [nd_image, nd_caption], api_visibility="private", **light)
    demo.load(schedules_plot, [fw_t], [fw_plot], api_visibility="private", **light)

demo.queue(default_concurrency_limit=2, max_size=64)

if __name__ == "__main__":
    demo.launch(**LAUNCH_KWARGS)
