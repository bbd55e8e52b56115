"""ddpm-hub Space: see how a denoising diffusion model works, one step at a time.

Two tabs:

* **Forward noising** - take any image (an upload, a held-out MNIST digit, an example) and watch q(x_t | x_0) wash it
  out; one forward step at a time beside the closed form, the schedules, linear vs cosine.
* **Reverse generation** - stream the reverse chain of a class-conditional DDPM (x_t, the predicted noise and the
  predicted x_0 at every shown step), scrub through it afterwards, export it as a GIF; DDPM vs DDIM from the same x_T;
  noise a real image to t and denoise it back.

This file holds the constants, the model loaded once, the layout and the wiring. Each tab's functions live in
`ddpm_space/` (one module per tab), the prose in `text/*.md`; every number comes from the `ddpm_hub` library.

Environment:
    DDPM_HUB_MODEL     a saved pipeline folder or a Hub repo id (default: `default_model/` next to this file)
    DDPM_HUB_REVISION  the Hub revision to load (default "main"); HF_ENDPOINT selects the Hub endpoint as usual
    DDPM_HUB_THREADS   torch CPU threads (default: torch's choice, one per core)

Run: `python space/app.py` from the repository root (or `python app.py` inside a Space).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("ddpm_hub") is None:  # not installed: use the package of the repository this file is in
    sys.path.insert(0, str(HERE.parent))
if str(HERE) not in sys.path:  # the tab modules (ddpm_space/) sit next to this file
    sys.path.insert(0, str(HERE))
# The Space shares its CPU cores with its own web server: OpenMP threads that sleep instead of spin-waiting keep a busy
# machine from slowing the model down several times over (only effective when torch is not imported yet).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gradio as gr  # noqa: E402
import torch  # noqa: E402
from ddpm_space import common, compare_tab, denoise_tab, forward_tab, hosting, reverse_tab, variance_plot  # noqa: E402
from ddpm_space.common import MAX_BATCH, MAX_COPIES, UNCONDITIONAL, text  # noqa: E402
from ddpm_space.widgets import (  # noqa: E402
    digit_index,
    digit_picker,
    eta_control,
    eta_slider,
    guidance_control,
    guidance_slider,
    picture,
    sampler_picker,
    seed_box,
    upload,
)

# ---------------------------------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------------------------------

DEFAULT_MODEL = HERE / "default_model"
MODEL_ID = os.environ.get("DDPM_HUB_MODEL") or str(DEFAULT_MODEL)
REVISION = os.environ.get("DDPM_HUB_REVISION") or "main"
if os.environ.get("DDPM_HUB_THREADS"):
    torch.set_num_threads(int(os.environ["DDPM_HUB_THREADS"]))
MAX_FILE_SIZE = "10mb"
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
EXAMPLES = sorted(str(path) for path in (HERE / "examples").glob("*.png"))
CSS = """
.gradio-container { max-width: 1320px !important; margin: auto; }
.pixelated img, .pixelated canvas { image-rendering: pixelated; }
.upload-box img { width: 100% !important; height: 100% !important; object-fit: contain; }
.subtle, .subtle * { color: var(--body-text-color-subdued) !important; font-size: 0.92em; }
.formula { min-height: 9em; }
.step-info { min-height: 6.5em; }
#header h1 { margin-bottom: 0.2em; }
/* Output pictures: the label and the buttons sit in a band above the picture, never on the first digit. */
.pixelated .image-container { padding-top: 2.4rem; box-sizing: border-box; }
.pixelated label.float { max-width: calc(100% - 4.8rem); white-space: nowrap; overflow: hidden; }
.pixelated label.float { text-overflow: ellipsis; }
.pixelated.no-buttons label.float { max-width: 100%; }
/* Nothing wider than the screen: long formulas and tables scroll inside their own box, pictures shrink to fit. */
/* (width 0 + min-width 100%: a formula then adds nothing to its column's min-content width, yet fills the column) */
.katex-display { width: 0; min-width: 100%; overflow-x: auto; overflow-y: hidden; padding: 0.1em 0; }
.prose table { display: block; max-width: 100%; overflow-x: auto; }
.prose { overflow-wrap: anywhere; }
.gradio-container img { max-width: 100%; }
.plot-box img, .plot-box canvas, .plot-box svg { max-width: 100% !important; height: auto !important; }
/* Example thumbnails on a checkerboard, so that a transparent image (the white ring) shows. */
.gallery-item img { background: repeating-conic-gradient(#6b7280 0 25%, #9ca3af 0 50%) 50% / 12px 12px; }
@media (max-width: 640px) {
  .gradio-container { padding-left: 6px !important; padding-right: 6px !important; }
  #header h1 { font-size: 1.5em; }
  .formula { min-height: 0; }
}
"""
THEME = gr.themes.Soft(
    primary_hue="indigo",
    secondary_hue="pink",
    neutral_hue="slate",
    font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
)
LAUNCH_KWARGS = {"max_file_size": MAX_FILE_SIZE, "theme": THEME, "css": CSS}

# ---------------------------------------------------------------------------------------------------------------------
# The model, loaded once; the tabs' functions with it bound
# ---------------------------------------------------------------------------------------------------------------------

SPACE = common.Space(
    pipe=common.load_pipeline(MODEL_ID, REVISION, default_model=str(DEFAULT_MODEL)),
    model_id=MODEL_ID,
    model_name=(
        "ddpm-hub/ddpm-mnist-small, bundled"
        if MODEL_ID == str(DEFAULT_MODEL)
        else Path(MODEL_ID).name
        if Path(MODEL_ID).is_dir()
        else f"{MODEL_ID}@{REVISION}"
    ),
)
T, NUM_CLASSES, RESOLUTION, DIGITS = SPACE.T, SPACE.num_classes, SPACE.resolution, SPACE.digits


def bind(fn):
    """fn with the loaded Space as its first argument; keeps fn's name and docstring (Gradio's API page shows them)."""
    bound = partial(fn, SPACE)
    bound.__name__, bound.__qualname__, bound.__doc__, bound.__module__ = (
        fn.__name__,
        fn.__qualname__,
        fn.__doc__,
        __name__,
    )
    return bound


load_digit, random_digit, image_to_x0 = bind(common.load_digit), bind(common.random_digit), bind(common.image_to_x0)
forward, schedules_plot = bind(forward_tab.forward), bind(forward_tab.schedules_plot)
generate, scrub, scrub_range = bind(reverse_tab.generate), bind(reverse_tab.scrub), bind(reverse_tab.scrub_range)
export_gif = bind(reverse_tab.export_gif)
variances_plot = bind(variance_plot.variance_plot)
compare = bind(compare_tab.compare)
noise_denoise = bind(denoise_tab.noise_denoise)


def _guided(digit) -> bool:
    return digit not in (None, "", common.UNCONDITIONAL)


# On ZeroGPU the handlers that run the U-Net get a GPU for the call, sized by their chain (see ddpm_space/hosting.py);
# locally and on CPU hardware these lines change nothing.
generate = hosting.on_gpu(
    generate,
    SPACE.pipe.unet,
    duration=lambda digit, guidance, sampler, eta, steps, seed, batch: hosting.gpu_seconds(
        steps, batch, _guided(digit)
    ),
)
compare = hosting.on_gpu(
    compare,
    SPACE.pipe.unet,
    duration=lambda digit, guidance, ddpm_steps, ddim_steps, eta, seed, batch: min(
        hosting.MAX_GPU_SECONDS,
        hosting.gpu_seconds(ddpm_steps, batch, _guided(digit))
        + hosting.gpu_seconds(ddim_steps, batch, _guided(digit)),
    ),
)
noise_denoise = hosting.on_gpu(
    noise_denoise,
    SPACE.pipe.unet,
    duration=lambda image, start_t, digit, guidance, sampler, eta, steps, seed, copies: hosting.gpu_seconds(
        steps, copies, _guided(digit)
    ),
)
no_caption = common.no_caption

# ---------------------------------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------------------------------

HEADER = text(
    "header",
    model_name=SPACE.model_name,
    T=T,
    schedule_name=SPACE.schedule_name,
    conditioning="digits 0-9 with classifier-free guidance" if NUM_CLASSES else "unconditional",
)
FORWARD_INTRO = text(
    "forward_intro",
    beta_first=f"{SPACE.scheduler.betas[0].item():.2g}",
    beta_last=f"{SPACE.scheduler.betas[-1].item():.2g}",
)

with gr.Blocks(title="ddpm-hub · see a diffusion model work", delete_cache=(3600, 3600)) as demo:
    gr.Markdown(HEADER, elem_id="header")
    with gr.Tabs(overflow_behavior="wrap"):
        # -------------------------------------------------------------------------------------------------------------
        with gr.Tab("① Forward noising", id="forward"):
            gr.Markdown(FORWARD_INTRO, latex_delimiters=LATEX)
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=290):
                    fw_image = upload("x₀ · any image", "fw-image")
                    with gr.Row():
                        fw_index = digit_index(300, len(DIGITS), elem_id="fw-index")
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
                        forward_tab.forward_formula(SPACE, min(T - 1, T // 4)),
                        latex_delimiters=LATEX,
                        elem_classes=["formula"],
                        label="formula",
                    )
                    with gr.Row():
                        fw_x0 = picture(f"x₀ · {RESOLUTION}×{RESOLUTION}, in [−1, 1]", height=230, elem_id="fw-x0")
                        fw_steps = picture("x_t · step by step", height=230, elem_id="fw-steps")
                        fw_closed = picture("x_t · one jump", height=230, elem_id="fw-closed")
                    fw_stats = gr.Markdown(latex_delimiters=LATEX, elem_id="fw-stats", label="statistics")
            gr.Markdown(text("schedules"), latex_delimiters=LATEX)
            with gr.Row(equal_height=False):
                fw_plot = gr.Plot(
                    label="Schedules (cursor at t)",
                    scale=3,
                    show_label=False,
                    elem_id="fw-plot",
                    elem_classes=["plot-box"],
                )
                with gr.Column(scale=1, min_width=220):
                    with gr.Row():
                        fw_linear = picture("linear, at t", 170, 120, buttons=False, elem_id="fw-linear")
                        fw_cosine = picture("cosine, at t", 170, 120, buttons=False, elem_id="fw-cosine")
            fw_strip = picture("x_t across t · same noise, two schedules", height=260, elem_id="fw-strip")

        # -------------------------------------------------------------------------------------------------------------
        with gr.Tab("② Reverse generation", id="reverse"):
            gr.Markdown(text("reverse_intro"), latex_delimiters=LATEX)
            with gr.Tabs(overflow_behavior="wrap"):
                with gr.Tab("Generate & scrub", id="generate"):
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=1, min_width=300):
                            # The buttons first: at 1366 x 768 they sit in the first screen, beside the pictures.
                            with gr.Row():
                                gen_run = gr.Button("▶ Generate", variant="primary", scale=2, min_width=80)
                                gen_stop = gr.Button("■ Stop", variant="stop", scale=1, min_width=80)
                            gen_digit = digit_picker(NUM_CLASSES, "3")
                            gen_guidance = guidance_slider(NUM_CLASSES)
                            gen_sampler = sampler_picker()
                            gen_eta = eta_slider(interactive=False)  # the default sampler is DDPM
                            gen_steps = gr.Slider(
                                1, T, value=T, step=1, label="Steps", info=f"{T} = the full chain", elem_id="gen-steps"
                            )
                            with gr.Row():
                                gen_seed = seed_box(42)
                                gen_batch = gr.Slider(1, MAX_BATCH, value=8, step=1, label="Images", min_width=120)
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
                    gr.Markdown(text("variances"), latex_delimiters=LATEX)
                    gen_variances = gr.Plot(
                        label="β, β̃ and σₜ", show_label=False, elem_id="gen-variances", elem_classes=["plot-box"]
                    )
                    gr.Markdown(text("reverse_math"), latex_delimiters=LATEX)

                with gr.Tab("DDPM vs DDIM", id="compare"):
                    gr.Markdown(text("compare_intro"), latex_delimiters=LATEX)
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=1, min_width=300):
                            with gr.Row():
                                cmp_run = gr.Button("▶ Run both", variant="primary", scale=2, min_width=80)
                                cmp_stop = gr.Button("■ Stop", variant="stop", scale=1, min_width=80)
                            cmp_digit = digit_picker(NUM_CLASSES, "5")
                            cmp_guidance = guidance_slider(NUM_CLASSES)
                            cmp_ddpm_steps = gr.Slider(1, T, value=T, step=1, label="DDPM steps")
                            cmp_ddim_steps = gr.Slider(1, T, value=min(50, T), step=1, label="DDIM steps")
                            cmp_eta = eta_slider()
                            with gr.Row():
                                cmp_seed = seed_box(7)
                                cmp_batch = gr.Slider(1, MAX_BATCH, value=4, step=1, label="Images", min_width=120)
                        with gr.Column(scale=3):
                            with gr.Row():
                                cmp_ddpm_x = picture("DDPM: x_t", height=220, elem_id="cmp-ddpm-x")
                                cmp_ddpm_x0 = picture("DDPM: predicted x̂₀", height=220, elem_id="cmp-ddpm-x0")
                            with gr.Row():
                                cmp_ddim_x = picture("DDIM: x_t", height=220, elem_id="cmp-ddim-x")
                                cmp_ddim_x0 = picture("DDIM: predicted x̂₀", height=220, elem_id="cmp-ddim-x0")
                            cmp_info = gr.Markdown(elem_id="cmp-info", label="progress")

                with gr.Tab("Noise, then denoise", id="denoise"):
                    gr.Markdown(text("denoise_intro"), latex_delimiters=LATEX)
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=1, min_width=300):
                            nd_image = upload("A real image x₀", "nd-image")
                            with gr.Row():
                                nd_index = digit_index(700, len(DIGITS))
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
                            nd_digit = digit_picker(NUM_CLASSES, UNCONDITIONAL)
                            nd_guidance = guidance_slider(NUM_CLASSES, interactive=False)  # "any": no guidance
                            with gr.Accordion("Sampler, steps, seed", open=False):
                                nd_sampler = sampler_picker()
                                nd_eta = eta_slider(interactive=False)
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
    gr.Markdown(text("footer"))

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

    # Controls that would do nothing are switched off: guidance without a digit, eta with a DDPM sampler.
    for digit, guidance in ((gen_digit, gen_guidance), (cmp_digit, cmp_guidance), (nd_digit, nd_guidance)):
        digit.change(guidance_control, [digit], [guidance], api_visibility="private", queue=False)
    for sampler, eta in ((gen_sampler, gen_eta), (nd_sampler, nd_eta)):
        sampler.change(eta_control, [sampler], [eta], api_visibility="private", queue=False)
    # beta, beta-tilde and the sigma_t of the chosen sampler, redrawn when the sampler, steps or eta change.
    gr.on(
        [gen_sampler.change, gen_steps.release, gen_eta.release, demo.load],
        variances_plot,
        [gen_sampler, gen_steps, gen_eta],
        [gen_variances],
        api_name="variances",
        **live,
    )

    # On page load: a digit in each image input (the forward view then computes itself) and the schedules.
    demo.load(load_digit, [fw_index], [fw_image, fw_caption], api_visibility="private", **light)
    demo.load(load_digit, [nd_index], [nd_image, nd_caption], api_visibility="private", **light)
    demo.load(schedules_plot, [fw_t], [fw_plot], api_visibility="private", **light)

demo.queue(default_concurrency_limit=2, max_size=64)


def patient_url_ok(url: str, wait_s: float = 60.0) -> bool:
    """Gradio's check that the page answers before `launch` returns (`gradio.networking.url_ok`) gives up after one
    3-second request, so a loaded 2-core machine kills a healthy server; this one keeps asking for a minute."""
    import time

    import httpx

    deadline = time.monotonic() + wait_s
    while True:
        try:
            if httpx.head(url, timeout=10, verify=False).status_code in (200, 401, 301, 302, 303, 307, 308):
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


gr.networking.url_ok = patient_url_ok  # for every launch of this demo: `python app.py`, tests, benchmarks

if __name__ == "__main__":
    demo.launch(**LAUNCH_KWARGS)
