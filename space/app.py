"""ddpm-hub Space: see how a denoising diffusion model works, one step at a time.

Tabs: ① forward noising (q(x_t | x_0) and its histogram, the schedules); ② reverse generation (the chain streamed,
scrubbed, exported; guidance on pictures; DDPM vs DDIM; β vs β̃; noise then denoise); ③ the objective (the bound term
by term, one t in detail with the posterior's numbers, the notes' four questions as live experiments); ④ the whole
distribution in 2-D (a Gaussian mixture: the exact density, score and bound beside a small learned model). This file
holds the constants, the model(s) loaded once, and composes the tabs; each tab's module in `ddpm_space/` lays out and
wires its own controls (`build`), the prose is in `text/*.md`, and every number comes from the `ddpm_hub` library.

Environment:
    DDPM_HUB_MODEL     a saved pipeline folder or a Hub repo id (default: `default_model/` next to this file)
    DDPM_HUB_X0_MODEL  question 3's x_0-prediction model (default: `x0_model/` next to this file, with the bundled one)
    DDPM_HUB_REVISION  the Hub revision to load (default "main"); HF_ENDPOINT selects the Hub endpoint as usual
    DDPM_HUB_THREADS   torch CPU threads (default 1: faster than 2 on a shared 2-core machine; 2 on a quiet one)
    DDPM_HUB_MAX_CHAINS  chains the sampling engine steps together (default 8; more wait in a queue)
    DDPM_HUB_BF16_MIN_ROWS  run merged U-Net batches of at least this many rows in bfloat16 (default: never)
    DDPM_HUB_ONNX      run the engine's U-Net calls on onnxruntime: a unet.onnx from `python -m ddpm_hub.export`, or
                       "export" to export the loaded model at start (default: PyTorch; needs onnx/onnxruntime)

Run: `python space/app.py` from the repository root (or `python app.py` inside a Space).
"""

from __future__ import annotations

import os
from pathlib import Path

# The Space shares its CPU cores with its own web server: OpenMP threads that sleep instead of spin-waiting keep a busy
# machine from slowing the model down several times over (only effective when torch is not imported yet).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gradio as gr  # noqa: E402
import torch  # noqa: E402
from ddpm_space import (  # noqa: E402
    compare_tab,
    denoise_tab,
    distribution_tab,
    forward_tab,
    guidance_tab,
    hosting,
    inputs,
    loading,
    objective_tab,
    questions,
    reverse_tab,
    variance_pair_tab,
)
from ddpm_space.engine import Engine  # noqa: E402
from ddpm_space.state import MAX_BATCH, MAX_COPIES, Space, bind  # noqa: E402, F401 (MAX_COPIES: read as app.MAX_COPIES)
from ddpm_space.text import text  # noqa: E402
from ddpm_space.widgets import Page  # noqa: E402

# ---------------------------------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------------------------------

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = HERE / "default_model"
MODEL_ID = os.environ.get("DDPM_HUB_MODEL") or str(DEFAULT_MODEL)
REVISION = os.environ.get("DDPM_HUB_REVISION") or "main"
# One thread by default: beside another busy process (a free Space's own server and frame encoding) one thread ran the
# default chain 1.09x faster than two; alone two are 1.49x faster (benchmarks/results/threads.json).
torch.set_num_threads(int(os.environ.get("DDPM_HUB_THREADS") or 1))
MAX_FILE_SIZE = "10mb"
MAX_CHAINS = int(os.environ.get("DDPM_HUB_MAX_CHAINS") or 8)  # chains stepped together; the others wait in line
MAX_ROWS = 256  # U-Net rows per tick at most (16 images with guidance are 32 rows)
MAX_QUEUED = 16  # chains waiting for a slot at most; Gradio's own queue holds the rest
# Ticks with at least this many rows run the U-Net in bfloat16 on a CPU with native bf16 (unset: always float32;
# bfloat16 changes the samples slightly, so a chain then no longer matches its seed run alone exactly).
BF16_MIN_ROWS = int(os.environ["DDPM_HUB_BF16_MIN_ROWS"]) if os.environ.get("DDPM_HUB_BF16_MIN_ROWS") else None
MIXTURE_MODELS = HERE / "mixture_models"  # the 2-D tab's learned noise predictors, one per preset (spread 1)
EXAMPLES = sorted(str(path) for path in (HERE / "examples").glob("*.png"))
CSS = (HERE / "text" / "style.css").read_text(encoding="utf-8")
THEME = gr.themes.Soft(
    primary_hue="indigo",
    secondary_hue="pink",
    neutral_hue="slate",
    font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
)
LAUNCH_KWARGS = {"max_file_size": MAX_FILE_SIZE, "theme": THEME, "css": CSS}

# ---------------------------------------------------------------------------------------------------------------------
# The model(s), loaded once
# ---------------------------------------------------------------------------------------------------------------------

# Question 3's second model, trained to predict x_0: DDPM_HUB_X0_MODEL, else x0_model/ beside the bundled model.
X0_MODEL_ID = os.environ.get("DDPM_HUB_X0_MODEL") or (
    str(HERE / "x0_model")
    if MODEL_ID == str(DEFAULT_MODEL) and (HERE / "x0_model" / "model_index.json").is_file()
    else None
)
SPACE = Space(
    pipe=loading.load_pipeline(MODEL_ID, REVISION, default_model=str(DEFAULT_MODEL)),
    x0_pipe=loading.load_pipeline(X0_MODEL_ID, REVISION) if X0_MODEL_ID else None,
    x0_model_id=X0_MODEL_ID,
    model_id=MODEL_ID,
    model_name=loading.model_name(MODEL_ID, REVISION, default_model=str(DEFAULT_MODEL)),
)
T, NUM_CLASSES, RESOLUTION, DIGITS = SPACE.T, SPACE.num_classes, SPACE.resolution, SPACE.digits
# The model's recorded w (model_index.json's guidance_scale, what `pipe(...)` uses when given none; bench_nfe.py
# --record_in_model writes its guidance curve's choice there) is the default of Generate and DDPM vs DDIM. The
# questions keep w = 2, the setting their text describes. The curve itself, if recorded, is shown beside Generate.
GUIDANCE_CURVE = loading.guidance_curve(MODEL_ID)
DEFAULT_GUIDANCE = SPACE.pipe.config.guidance_scale
X0_MISSING = "" if SPACE.x0_pipe else questions.X0_MISSING
# Opt-in: the exported U-Net on onnxruntime for the engine's float32 ticks. benchmarks/bench_runtimes.py compares it
# with eager and compiled PyTorch at the engine's batch sizes; it is not the default because it does not win there
# over the whole range of repeats (results/runtimes.json).
ONNX = os.environ.get("DDPM_HUB_ONNX") or None
ONNX_FORWARD = None
if ONNX:
    from ddpm_hub.export import OnnxUNet, export_unet

    onnx_path = export_unet(SPACE.pipe, SPACE.work_dir / "unet.onnx") if ONNX == "export" else ONNX
    ONNX_FORWARD = OnnxUNet(onnx_path, SPACE.num_classes, threads=torch.get_num_threads())
# Every visitor's chains run in one engine: one U-Net call per tick over the current step of every running chain.
SPACE.engine = Engine(
    SPACE.pipe,
    max_active=MAX_CHAINS,
    max_rows=MAX_ROWS,
    max_images_per_owner=2 * MAX_BATCH,  # a visitor's "DDPM vs DDIM" runs two chains of up to MAX_BATCH images
    max_queued=MAX_QUEUED,
    bf16_min_rows=BF16_MIN_ROWS,
    forward=ONNX_FORWARD,
)
# The 2-D tab's models: the tiny MLPs of space/mixture_models/ beside the exact mixture denoiser (no U-Net, no engine).
TWOD = distribution_tab.load(MIXTURE_MODELS)
# The handlers that every tab shares, as tests and scripts call them: `app.load_digit(300)`.
load_digit, random_digit, image_to_x0 = (
    bind(SPACE, fn) for fn in (inputs.load_digit, inputs.random_digit, inputs.image_to_x0)
)

# ---------------------------------------------------------------------------------------------------------------------
# The page: each tab's `build` lays out and wires its own controls, and returns its handlers by name
# ---------------------------------------------------------------------------------------------------------------------

HEADER = text(
    "header",
    model_name=SPACE.model_name,
    T=T,
    schedule_name=SPACE.schedule_name,
    conditioning="digits 0-9 with classifier-free guidance" if NUM_CLASSES else "unconditional",
)

with gr.Blocks(title="ddpm-hub · see a diffusion model work", delete_cache=(3600, 3600)) as demo:
    page = Page(demo, EXAMPLES, chain_slots=MAX_CHAINS + MAX_QUEUED, default_guidance=DEFAULT_GUIDANCE)
    gr.Markdown(HEADER, elem_id="header")
    with gr.Tabs(overflow_behavior="wrap"):
        HANDLERS = forward_tab.build(SPACE, page)
        with gr.Tab("② Reverse generation", id="reverse"), gr.Tabs(overflow_behavior="wrap"):
            HANDLERS |= reverse_tab.build(SPACE, page, GUIDANCE_CURVE)
            HANDLERS |= guidance_tab.build(SPACE, page)
            HANDLERS |= compare_tab.build(SPACE, page)
            HANDLERS |= variance_pair_tab.build(SPACE, page)
            HANDLERS |= denoise_tab.build(SPACE, page)
        # The bound's introduction once, folded, in its own sub-tab: above the sub-tabs it pushed every question's
        # Run button 1.5 screens down. The sub-tabs wrap instead of hiding the questions in a "⋯" menu.
        with gr.Tab("③ The objective", id="objective"), gr.Tabs(overflow_behavior="wrap"):
            HANDLERS |= objective_tab.build(SPACE, page)
            HANDLERS |= questions.build(SPACE, page)
        HANDLERS |= distribution_tab.build(SPACE, page, TWOD)
    gr.Markdown(text("footer"))

demo.queue(default_concurrency_limit=2, max_size=64)
# Each tab's handlers (the Space bound, as the page calls them) by name in this module, for tests and scripts:
# `app.generate(...)`, `app.bound(...)`.
globals().update(HANDLERS)


def session_alive(session_hash: str) -> bool:
    """Whether a visitor's page is still connected: Gradio marks the running events of a session whose stream closed
    as no longer alive, without closing their generators (so the engine asks, at every tick)."""
    try:
        jobs = [job for job in demo._queue.active_jobs if job]
        events = [event for job in jobs for event in job if event.session_hash == session_hash]
    except Exception:  # Gradio's internals moved: rely on the engine noticing that nobody reads the chain
        return True
    return not events or any(event.alive for event in events)


SPACE.session_alive = session_alive
gr.networking.url_ok = hosting.patient_url_ok  # for every launch of this demo: `python app.py`, tests, benchmarks

if __name__ == "__main__":
    demo.launch(**LAUNCH_KWARGS)
