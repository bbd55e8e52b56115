"""ddpm-hub Space: see how a denoising diffusion model works, one step at a time.

Tabs: ① forward noising (q(x_t | x_0), the schedules); ② reverse generation (the chain streamed, scrubbed, exported;
DDPM vs DDIM; noise then denoise); ③ the objective (the bound term by term, one t in detail, the notes' four
questions as live experiments). This file holds the constants, the model(s) loaded once, the layout and the wiring;
each tab's functions live in `ddpm_space/`, the prose in `text/*.md`; every number comes from the `ddpm_hub` library.

Environment:
    DDPM_HUB_MODEL     a saved pipeline folder or a Hub repo id (default: `default_model/` next to this file)
    DDPM_HUB_X0_MODEL  question 3's x_0-prediction model (default: `x0_model/` next to this file, with the bundled one)
    DDPM_HUB_REVISION  the Hub revision to load (default "main"); HF_ENDPOINT selects the Hub endpoint as usual
    DDPM_HUB_THREADS   torch CPU threads (default 1: faster than 2 on a shared 2-core machine; 2 on a quiet one)
    DDPM_HUB_MAX_CHAINS  chains the sampling engine steps together (default 8; more wait in a queue)
    DDPM_HUB_BF16_MIN_ROWS  run merged U-Net batches of at least this many rows in bfloat16 (default: never)

Run: `python space/app.py` from the repository root (or `python app.py` inside a Space).
"""

from __future__ import annotations

import importlib.util
import os
import sys
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
from ddpm_space import (  # noqa: E402
    common,
    compare_tab,
    denoise_tab,
    forward_tab,
    hosting,
    objective_tab,
    questions,
    reverse_tab,
    variance_plot,
)
from ddpm_space.common import MAX_BATCH, MAX_COPIES, UNCONDITIONAL, text  # noqa: E402
from ddpm_space.engine import Engine  # noqa: E402
from ddpm_space.widgets import (  # noqa: E402
    ImageSource,
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
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
EXAMPLES = sorted(str(path) for path in (HERE / "examples").glob("*.png"))
CSS = (HERE / "text" / "style.css").read_text(encoding="utf-8")
THEME = gr.themes.Soft(
    primary_hue="indigo",
    secondary_hue="pink",
    neutral_hue="slate",
    font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
)
AT_T_IDS = ("xt", "eps", "eps-hat", "diff", "x0-hat", "score")  # the objective tab's pictures at one t
AT_T_LABELS = ("x_t", "true ε", "predicted ε̂", "ε − ε̂", "predicted x̂₀", "score −ε̂/√(1−ᾱ)")
LAUNCH_KWARGS = {"max_file_size": MAX_FILE_SIZE, "theme": THEME, "css": CSS}

# ---------------------------------------------------------------------------------------------------------------------
# The model, loaded once; the tabs' functions with it bound
# ---------------------------------------------------------------------------------------------------------------------

# Question 3's second model, trained to predict x_0: DDPM_HUB_X0_MODEL, else x0_model/ beside the bundled model.
X0_MODEL_ID = os.environ.get("DDPM_HUB_X0_MODEL") or (
    str(HERE / "x0_model")
    if MODEL_ID == str(DEFAULT_MODEL) and (HERE / "x0_model" / "model_index.json").is_file()
    else None
)
SPACE = common.Space(
    pipe=common.load_pipeline(MODEL_ID, REVISION, default_model=str(DEFAULT_MODEL)),
    x0_pipe=common.load_pipeline(X0_MODEL_ID, REVISION) if X0_MODEL_ID else None,
    x0_model_id=X0_MODEL_ID,
    model_id=MODEL_ID,
    model_name=common.model_name(MODEL_ID, REVISION, default_model=str(DEFAULT_MODEL)),
)
T, NUM_CLASSES, RESOLUTION, DIGITS = SPACE.T, SPACE.num_classes, SPACE.resolution, SPACE.digits
# The model's recorded w (model_index.json's guidance_scale, what `pipe(...)` uses when given none; bench_nfe.py
# --record_in_model writes its guidance curve's choice there) is the default of Generate and DDPM vs DDIM. The
# questions keep w = 2, the setting their text describes. The curve itself, if recorded, is shown beside Generate.
GUIDANCE_CURVE = common.guidance_curve(MODEL_ID)
DEFAULT_GUIDANCE = SPACE.pipe.config.guidance_scale
X0_MISSING = "" if SPACE.x0_pipe else "_No x₀-prediction model is loaded (DDPM_HUB_X0_MODEL)._"
WRONG_T = questions.WRONG_T
# The questions' recorded answers stay folded until the learner's own run ends: predict first, then look.
ANSWER_LABEL = "What the bundled model did (recorded; opens when your run ends)"
QUICK_STEPS = f"100 already shows it, in seconds; {T} = the full chain"
# Every visitor's chains run in one engine: one U-Net call per tick over the current step of every running chain.
SPACE.engine = Engine(
    SPACE.pipe,
    max_active=MAX_CHAINS,
    max_rows=MAX_ROWS,
    max_images_per_owner=2 * MAX_BATCH,  # a visitor's "DDPM vs DDIM" runs two chains of up to MAX_BATCH images
    max_queued=MAX_QUEUED,
    bf16_min_rows=BF16_MIN_ROWS,
)


def bind(fn):
    """fn with the loaded Space bound as its first argument, as Gradio should see it (`common.bind`)."""
    return common.bind(SPACE, fn, module=__name__)


load_digit, random_digit, image_to_x0 = bind(common.load_digit), bind(common.random_digit), bind(common.image_to_x0)
forward, schedules_plot = bind(forward_tab.forward), bind(forward_tab.schedules_plot)
generate, scrub, export_gif = bind(reverse_tab.generate), bind(reverse_tab.scrub), bind(reverse_tab.export_gif)
compare = bind(compare_tab.compare)
noise_denoise = bind(denoise_tab.noise_denoise)
stop_generate, stop_compare = bind(reverse_tab.stop_generate), bind(compare_tab.stop_compare)
stop_noise_denoise = bind(denoise_tab.stop_noise_denoise)
bound, at_t = bind(objective_tab.bound_stream), bind(objective_tab.at_t)
fresh_noise, timestep_input = bind(questions.fresh_noise), bind(questions.timestep_input)
noise_vs_x0, elbo_forms = bind(questions.noise_vs_x0), bind(questions.elbo_forms)
variances_plot = bind(variance_plot.variance_plot)


# On ZeroGPU the handlers that run the U-Net get a GPU for the call, sized by their chain (see ddpm_space/hosting.py);
# locally and on CPU hardware these lines change nothing.
generate = hosting.on_gpu(generate, SPACE.pipe.unet, duration=hosting.generate_seconds)
compare = hosting.on_gpu(compare, SPACE.pipe.unet, duration=hosting.compare_seconds)
noise_denoise = hosting.on_gpu(noise_denoise, SPACE.pipe.unet, duration=hosting.noise_denoise_seconds)
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
            with gr.Tabs(overflow_behavior="wrap"):
                with gr.Tab("Generate & scrub", id="generate"):
                    # At 1366 x 768 every control, the buttons and the pictures fit in the first screen: the
                    # controls in two columns beside the pictures, the explanation below them. On a phone (see
                    # style.css: .controls, .run-row, .outputs) the buttons come first, then the pictures, then the
                    # settings.
                    with gr.Row(equal_height=False, elem_classes=["split"]):
                        with gr.Column(scale=5, min_width=300, elem_classes=["controls"]):
                            with gr.Row(equal_height=False, elem_classes=["settings"]):
                                with gr.Column(min_width=200):
                                    with gr.Row(elem_classes=["run-row"]):
                                        gen_run = gr.Button("▶ Generate", variant="primary", scale=3, min_width=80)
                                        gen_stop = gr.Button("■ Stop", variant="stop", scale=2, min_width=80)
                                    gen_digit = digit_picker(NUM_CLASSES, "3")
                                    gen_guidance = guidance_slider(NUM_CLASSES, value=DEFAULT_GUIDANCE)
                                with gr.Column(min_width=200):
                                    gen_sampler = sampler_picker()
                                    gen_eta = eta_slider(interactive=False)  # the default sampler is DDPM
                                    gen_steps = gr.Slider(
                                        1, T, value=T, step=1, label="Steps", info=f"{T} = the full chain",
                                        elem_id="gen-steps",
                                    )  # fmt: skip
                                    with gr.Row():
                                        gen_seed = seed_box(42)
                                        gen_batch = gr.Slider(
                                            1, MAX_BATCH, value=8, step=1, label="Images", min_width=100,
                                            elem_id="gen-batch",
                                        )  # fmt: skip
                        with gr.Column(scale=6, elem_classes=["outputs"]):
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
                                reverse_tab.FINAL_T,
                                T - 1,
                                value=T - 1,
                                step=1,
                                label="Scrub by t (every step is kept; −1 = the final x₀)",
                                elem_id="gen-scrub",
                            )
                            with gr.Row(equal_height=False):
                                gen_export = gr.Button(
                                    "⤓ Export the chain as a GIF", size="sm", scale=1, min_width=160
                                )
                                gen_gif = gr.File(
                                    label="GIF", interactive=False, scale=3, visible=False, elem_id="gen-gif"
                                )
                    gen_chain = gr.State(None, time_to_live=3600)
                    gr.Markdown(text("reverse_intro"), latex_delimiters=LATEX, elem_id="reverse-intro")
                    if GUIDANCE_CURVE and NUM_CLASSES:
                        with gr.Accordion("How much guidance? Measured on this model", open=False):
                            # The table and the plot one above the other: beside each other the table's columns
                            # were squeezed until the numbers wrapped.
                            gr.Markdown(
                                text(
                                    "guidance_curve",
                                    table=reverse_tab.guidance_table(GUIDANCE_CURVE),
                                    samples=GUIDANCE_CURVE["num_samples"],
                                    sampler=common.curve_sampler(GUIDANCE_CURVE),
                                    w=f"{DEFAULT_GUIDANCE:g}",
                                    command=GUIDANCE_CURVE["command"],
                                ),
                                latex_delimiters=LATEX,
                                elem_id="guidance-text",
                            )
                            gr.Plot(
                                reverse_tab.guidance_plot(GUIDANCE_CURVE),
                                show_label=False,
                                elem_id="guidance-curve",
                                elem_classes=["plot-box"],
                            )
                    gr.Markdown(text("variances"), latex_delimiters=LATEX)
                    gen_variances = gr.Plot(
                        label="β, β̃ and σₜ", show_label=False, elem_id="gen-variances", elem_classes=["plot-box"]
                    )
                    gr.Markdown(text("reverse_math"), latex_delimiters=LATEX)

                with gr.Tab("DDPM vs DDIM", id="compare"):
                    gr.Markdown(text("compare_intro"), latex_delimiters=LATEX)
                    with gr.Row(equal_height=False, elem_classes=["split"]):
                        with gr.Column(scale=1, min_width=300, elem_classes=["controls"]):
                            with gr.Row(elem_classes=["run-row"]):
                                cmp_run = gr.Button("▶ Run both", variant="primary", scale=2, min_width=80)
                                cmp_stop = gr.Button("■ Stop", variant="stop", scale=1, min_width=80)
                            cmp_digit = digit_picker(NUM_CLASSES, "5")
                            cmp_guidance = guidance_slider(NUM_CLASSES, value=DEFAULT_GUIDANCE)
                            cmp_ddpm_steps = gr.Slider(1, T, value=T, step=1, label="DDPM steps")
                            cmp_ddim_steps = gr.Slider(1, T, value=min(50, T), step=1, label="DDIM steps")
                            cmp_eta = eta_slider()
                            with gr.Row():
                                cmp_seed = seed_box(7)
                                cmp_batch = gr.Slider(1, MAX_BATCH, value=4, step=1, label="Images", min_width=120)
                        with gr.Column(scale=3, elem_classes=["outputs"]):  # both rows and the progress line
                            with gr.Row():  # fit in the first screen at 1366 x 768
                                cmp_ddpm_x = picture("DDPM: x_t", height=180, elem_id="cmp-ddpm-x")
                                cmp_ddpm_x0 = picture("DDPM: predicted x̂₀", height=180, elem_id="cmp-ddpm-x0")
                            with gr.Row():
                                cmp_ddim_x = picture("DDIM: x_t", height=180, elem_id="cmp-ddim-x")
                                cmp_ddim_x0 = picture("DDIM: predicted x̂₀", height=180, elem_id="cmp-ddim-x0")
                            cmp_info = gr.Markdown(elem_id="cmp-info", label="progress")

                with gr.Tab("Noise, then denoise", id="denoise"):
                    gr.Markdown(text("denoise_intro"), latex_delimiters=LATEX)
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=1, min_width=300):
                            with gr.Row():  # first, as in the other tabs: in the first screen at 1366 x 768
                                nd_run = gr.Button("▶ Noise, then denoise", variant="primary", scale=2, min_width=80)
                                nd_stop = gr.Button("■ Stop", variant="stop", scale=1, min_width=80)
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
                        with gr.Column(scale=3):
                            with gr.Row():
                                nd_x0 = picture("x₀", height=220, elem_id="nd-x0")
                                nd_noised = picture("noised to t", height=220, elem_id="nd-noised")
                            with gr.Row():
                                nd_x = picture("x_t → what comes back", height=220, elem_id="nd-x")
                                nd_x0_hat = picture("predicted x̂₀", height=220, elem_id="nd-x0-hat")
                            nd_info = gr.Markdown(latex_delimiters=LATEX, elem_id="nd-info", label="progress")
        # -------------------------------------------------------------------------------------------------------------
        with gr.Tab("③ The objective", id="objective"):
            # The bound's introduction once, folded, in its own sub-tab: above the sub-tabs it pushed every question's
            # Run button 1.5 screens down. The sub-tabs wrap instead of hiding the questions in a "⋯" menu.
            with gr.Tabs(overflow_behavior="wrap"):
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
                                ob_run = gr.Button("▶ Walk the bound", variant="primary", scale=2, min_width=80)
                                ob_stop = gr.Button("■ Stop", variant="stop", scale=1, min_width=80)
                            ob = ImageSource("x₀ · any image", "ob-image", 300, len(DIGITS), EXAMPLES)
                            ob_digit = digit_picker(NUM_CLASSES, UNCONDITIONAL)
                            ob_seed = seed_box()
                        with gr.Column(scale=3):
                            ob_terms = gr.Plot(label="the bound's terms over t", show_label=False, elem_id="ob-terms")
                            ob_summary = gr.Markdown(latex_delimiters=LATEX, elem_id="ob-summary")
                    ob_forms = gr.Plot(label="the two forms", show_label=False, elem_id="ob-forms")
                    gr.Markdown(text("objective_at_t"), latex_delimiters=LATEX)
                    ob_t = gr.Slider(0, T - 1, value=min(T - 1, T // 10), step=1, label="t", elem_id="ob-t")
                    with gr.Row():
                        ob_pictures = [
                            picture(
                                label, height=170, min_width=150, buttons=False, elem_id=f"ob-{name}"
                            )  # 6 in a row
                            for name, label in zip(AT_T_IDS, AT_T_LABELS, strict=True)
                        ]
                    with gr.Row(equal_height=False):
                        ob_numbers = gr.Markdown(latex_delimiters=LATEX, elem_id="ob-numbers")
                        ob_weights = gr.Plot(label="weights at t", show_label=False)

                with gr.Tab("1 · Fresh noise?", id="q-noise"):
                    gr.Markdown(text("q_noise"), latex_delimiters=LATEX)
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=1, min_width=290):
                            q1_run = gr.Button("▶ Run both", variant="primary")
                            q1_digit, q1_guidance = digit_picker(NUM_CLASSES, "3"), guidance_slider(NUM_CLASSES)
                            q1_sampler = gr.Radio(
                                [(common.SAMPLERS[v][0], v) for v in ("ddpm-fixed_small", "ddpm-fixed_large")],
                                value="ddpm-fixed_small",
                                label="Sampler",
                            )
                            q1_steps = gr.Slider(1, T, value=min(T, 100), step=1, label="Steps", info=QUICK_STEPS)
                            with gr.Row():
                                q1_seed, q1_batch = seed_box(1), gr.Slider(1, 8, value=4, step=1, label="Images")
                        with gr.Column(scale=3):
                            with gr.Row():
                                q1_noise = picture("x_{t−1} = μ_θ + σ_t z", height=250, elem_id="q1-noise")
                                q1_mean = picture("x_{t−1} = μ_θ (σ_t = 0)", height=250, elem_id="q1-mean")
                            q1_info = gr.Markdown(latex_delimiters=LATEX, elem_id="q1-info")
                            with gr.Accordion(ANSWER_LABEL, open=False, elem_id="q1-answer") as q1_answer:
                                gr.Markdown(text("q_noise_answer"), latex_delimiters=LATEX)

                with gr.Tab("2 · Why tell it t?", id="q-time"):
                    gr.Markdown(text("q_time"), latex_delimiters=LATEX)
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=1, min_width=290):
                            q2_run = gr.Button("▶ Run both", variant="primary")
                            q2_digit, q2_guidance = digit_picker(NUM_CLASSES, "3"), guidance_slider(NUM_CLASSES)
                            q2_steps = gr.Slider(1, T, value=min(T, 100), step=1, label="Steps", info=QUICK_STEPS)
                            q2_wrong = gr.Radio([(v, k) for k, v in WRONG_T.items()], value="fixed", label="Wrong t")
                            q2_value = gr.Slider(1 - T, T - 1, value=T // 2, step=1, label="the fixed t, or the shift")
                            q2_probe = gr.Slider(0, T - 1, value=T // 10, step=1, label="ε̂ compared at t")
                            with gr.Row():
                                q2_seed, q2_batch = seed_box(2), gr.Slider(1, 8, value=4, step=1, label="Images")
                        with gr.Column(scale=3):
                            with gr.Row():
                                q2_right = picture("told the true t", height=250, elem_id="q2-right")
                                q2_bad = picture("told a wrong t", height=250, elem_id="q2-wrong")
                            with gr.Row():
                                q2_eps_right = picture("ε̂ of one x_t, true t", height=200, elem_id="q2-eps-right")
                                q2_eps_wrong = picture("ε̂ of it, wrong t", height=200, elem_id="q2-eps-wrong")
                            q2_info = gr.Markdown(latex_delimiters=LATEX, elem_id="q2-info")
                            with gr.Accordion(ANSWER_LABEL, open=False, elem_id="q2-answer") as q2_answer:
                                gr.Markdown(text("q_time_answer"), latex_delimiters=LATEX)

                with gr.Tab("3 · ε or x₀?", id="q-x0"):
                    gr.Markdown(text("q_x0"), latex_delimiters=LATEX)
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=1, min_width=290):
                            q3_run = gr.Button("▶ Compare", variant="primary", interactive=SPACE.x0_pipe is not None)
                            q3 = ImageSource("x₀ for the loss per t", "q3-image", 700, len(DIGITS))
                            q3_digit, q3_guidance = digit_picker(NUM_CLASSES, "3"), guidance_slider(NUM_CLASSES)
                            q3_steps = gr.Slider(1, T, value=min(T, 100), step=1, label="DDPM steps")
                            with gr.Row():
                                q3_seed, q3_batch = seed_box(3), gr.Slider(1, 8, value=4, step=1, label="Images")
                        with gr.Column(scale=3):
                            with gr.Row():
                                q3_eps = picture("model predicting ε", height=250, elem_id="q3-eps")
                                q3_x0 = picture("model predicting x₀", height=250, elem_id="q3-x0")
                            q3_loss = gr.Plot(label="loss per t", show_label=False, elem_id="q3-loss")
                            q3_info = gr.Markdown(X0_MISSING, latex_delimiters=LATEX, elem_id="q3-info")
                            with gr.Accordion(ANSWER_LABEL, open=False, elem_id="q3-answer") as q3_answer:
                                gr.Markdown(text("q_x0_answer"), latex_delimiters=LATEX)

                with gr.Tab("4 · Two ELBOs", id="q-elbo"):
                    gr.Markdown(text("q_elbo"), latex_delimiters=LATEX)
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=1, min_width=290):
                            q4_run = gr.Button("▶ Estimate both", variant="primary")
                            q4 = ImageSource("x₀", "q4-image", 300, len(DIGITS))
                            q4_digit = digit_picker(NUM_CLASSES, UNCONDITIONAL)
                            with gr.Row():
                                q4_seed = seed_box(4)
                                q4_draws = gr.Slider(16, questions.MAX_DRAWS, value=16, step=1, label="Trajectories")
                        with gr.Column(scale=3):
                            q4_plot = gr.Plot(label="the two spreads", show_label=False, elem_id="q4-plot")
                            q4_info = gr.Markdown(latex_delimiters=LATEX, elem_id="q4-info")
                            with gr.Accordion(ANSWER_LABEL, open=False, elem_id="q4-answer") as q4_answer:
                                gr.Markdown(text("q_elbo_answer"), latex_delimiters=LATEX)
    gr.Markdown(text("footer"))

    # -----------------------------------------------------------------------------------------------------------------
    # Events
    # -----------------------------------------------------------------------------------------------------------------
    light = {"concurrency_limit": 4, "show_progress": "hidden"}
    live = {**light, "trigger_mode": "always_last"}  # while dragging a slider: finish the last value, skip the rest
    # The chains wait in the engine's queue (which tells each visitor their place), not in Gradio's.
    chains = {"concurrency_id": "chain", "concurrency_limit": MAX_CHAINS + MAX_QUEUED, "show_progress": "minimal"}
    stop = {"queue": False, "api_visibility": "private"}

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

    gen_run.click(
        generate,
        [gen_digit, gen_guidance, gen_sampler, gen_eta, gen_steps, gen_seed, gen_batch],
        [gen_x, gen_eps, gen_x0, gen_info, gen_scrub, gen_chain],
        api_name="generate",
        **chains,
    )
    gen_stop.click(stop_generate, None, None, **stop)  # the chain's stream then ends with a "stopped" frame
    gen_scrub.input(scrub, [gen_scrub, gen_chain], [gen_x, gen_eps, gen_x0, gen_info], api_name="scrub", **live)
    gen_export.click(export_gif, [gen_chain], [gen_gif], api_name="export_gif", **light).then(
        lambda: gr.update(visible=True), None, [gen_gif], api_visibility="private", queue=False
    )

    cmp_run.click(
        compare,
        [cmp_digit, cmp_guidance, cmp_ddpm_steps, cmp_ddim_steps, cmp_eta, cmp_seed, cmp_batch],
        [cmp_ddpm_x, cmp_ddpm_x0, cmp_ddim_x, cmp_ddim_x0, cmp_info],
        api_name="compare",
        **chains,
    )
    cmp_stop.click(stop_compare, None, None, **stop)

    nd_run.click(
        noise_denoise,
        [nd_image, nd_t, nd_digit, nd_guidance, nd_sampler, nd_eta, nd_steps, nd_seed, nd_copies],
        [nd_x0, nd_noised, nd_x, nd_x0_hat, nd_info],
        api_name="noise_denoise",
        preprocess=False,
        **chains,
    )
    nd_stop.click(stop_noise_denoise, None, None, **stop)
    nd_load.click(load_digit, [nd_index], [nd_image, nd_caption], api_visibility="private", **light)
    nd_random.click(random_digit, None, [nd_index], api_visibility="private", **light).then(
        load_digit, [nd_index], [nd_image, nd_caption], api_visibility="private", **light
    )

    objective = {"concurrency_id": "objective", "concurrency_limit": 1, "show_progress": "minimal"}
    ob_event = ob_run.click(
        bound,
        [ob.image, ob_digit, ob_seed],
        [ob_terms, ob_forms, ob_summary],
        api_name="bound",
        preprocess=False,
        **objective,
    )
    ob_stop.click(None, None, None, cancels=[ob_event], api_visibility="private")
    gr.on(
        [ob.image.change, ob_t.change, ob_digit.change, ob_seed.change],
        at_t,
        [ob.image, ob_digit, ob_t, ob_seed],
        [*ob_pictures, ob_numbers, ob_weights],
        api_name="at_t",
        preprocess=False,
        **live,
    )
    q1_inputs = [q1_digit, q1_guidance, q1_sampler, q1_steps, q1_seed, q1_batch]
    q1_event = q1_run.click(fresh_noise, q1_inputs, [q1_noise, q1_mean, q1_info], api_name="fresh_noise", **objective)
    q2_inputs = [q2_digit, q2_guidance, q2_steps, q2_seed, q2_batch, q2_wrong, q2_value, q2_probe]
    q2_outputs = [q2_right, q2_bad, q2_eps_right, q2_eps_wrong, q2_info]
    q2_event = q2_run.click(timestep_input, q2_inputs, q2_outputs, api_name="timestep_input", **objective)
    q3_inputs = [q3.image, q3_digit, q3_guidance, q3_steps, q3_seed, q3_batch]
    q3_outputs = [q3_eps, q3_x0, q3_loss, q3_info]
    q3_event = q3_run.click(noise_vs_x0, q3_inputs, q3_outputs, api_name="noise_vs_x0", preprocess=False, **objective)
    q4_inputs = [q4.image, q4_digit, q4_draws, q4_seed]
    q4_event = q4_run.click(
        elbo_forms, q4_inputs, [q4_plot, q4_info], api_name="elbo_forms", preprocess=False, **objective
    )
    # A question's recorded answer opens once the learner's own run has ended (folded until then: predict first).
    for event, answer in ((q1_event, q1_answer), (q2_event, q2_answer), (q3_event, q3_answer), (q4_event, q4_answer)):
        event.success(lambda: gr.update(open=True), None, [answer], api_visibility="private", queue=False)
    for source in (ob, q3, q4):
        source.wire(demo, load_digit, random_digit, **light)
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
