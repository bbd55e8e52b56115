"""Tab ②, "Noise, then denoise": a real image noised to t with q(x_t | x_0), then the reverse chain from there."""

from __future__ import annotations

from contextlib import closing
from typing import Any

import gradio as gr

from . import chains, hosting
from .engine import Failed, Progress, Queued, Stopped
from .inputs import as_eta, as_guidance, as_int, as_label, as_sampler, as_seed, as_steps, generator, image_to_x0
from .pictures import grid, single, to_u8
from .reverse_tab import ChainClock
from .state import MAX_COPIES, UNCONDITIONAL, Space, bind
from .text import LATEX, text
from .widgets import STOP, ImageSource, Page, digit_and_guidance, picture, sampler_and_eta, seed_box


def noise_denoise(
    space: Space,
    image: Any,
    start_t: float = 500,
    digit: Any = UNCONDITIONAL,
    guidance: float = 2.0,
    sampler: str = "ddpm-fixed_small",
    eta: float = 0.0,
    steps: float = 1000,
    seed: float = 0,
    copies: float = 4,
    request: gr.Request = None,
):
    """Noises the image to start_t with q(x_t | x_0), then runs the reverse chain from there in the shared engine
    (streamed). Stop (`stop_noise_denoise`) ends it with a "stopped" frame.

    Yields: x_0, the noised input, the current x_t, the predicted x_0 (grids), progress (Markdown).
    """
    x0 = image_to_x0(space, image)
    start_t = as_int(start_t, "start t", 0, space.T - 1)
    sampler = as_sampler(sampler)
    label, guidance, eta = as_label(space, digit), as_guidance(guidance), as_eta(eta, sampler)
    steps, seed, copies = as_steps(space, steps), as_seed(seed), as_int(copies, "batch size", 1, MAX_COPIES)
    chain = chains.start(
        space, sampler, guidance, noised=(x0.expand(copies, -1, -1, -1), start_t), class_labels=label,
        num_inference_steps=steps, generator=generator(seed), eta=eta,
    )  # fmt: skip
    original, noised = single(x0), grid(to_u8(chain.sample))  # the chain starts from the noised image
    start, every = chain.timesteps[0], chains.stream_every(chain.num_steps)
    step = None
    clock = ChainClock()
    with closing(chains.submit(space, chain, request, "denoise").updates()) as updates:
        for update in updates:
            if isinstance(update, Queued):
                yield original, noised, gr.update(), gr.update(), chains.waiting(space, update)
            elif isinstance(update, Progress):
                step = update.step
                left = clock.left(update)
                if step.step_index % every == 0:
                    info = (
                        f"Denoising from t = {start}: step {update.k} / {update.num_steps} (t = {step.timestep}) · "
                        f"{left}"
                    )
                    yield original, noised, grid(to_u8(step.sample)), grid(to_u8(step.pred_original_sample)), info
            elif isinstance(update, Stopped):
                if step is not None:
                    done = f"{step.step_index + 1} of {step.num_steps}"
                    info = f"**Stopped at t = {step.timestep}**, after {done} steps."
                    yield original, noised, grid(to_u8(step.sample)), grid(to_u8(step.pred_original_sample)), info
                return
            elif isinstance(update, Failed):
                raise gr.Error(update.message)
    info = (
        f"**Done.** Noised to t = {start} with $q(x_t \\mid x_0)$ "
        f"($\\sqrt{{\\bar\\alpha_t}}$ = {space.scheduler.coefficients(start)['sqrt_alpha_bar_t']:.3f}: that much of "
        f"the image is left), then {step.num_steps} reverse steps back to $x_0$."
    )
    yield original, noised, grid(to_u8(step.prev_sample)), grid(to_u8(step.pred_original_sample)), info


def stop_noise_denoise(space: Space, request: gr.Request = None) -> None:
    """Stops this visitor's noise-then-denoise chain; the stream ends with a "stopped" frame."""
    chains.stop(space, "denoise", request)


def build(space: Space, page: Page) -> dict:
    """ "Noise, then denoise", laid out and wired. Returns its handlers by name (the Space bound)."""
    # On ZeroGPU the chain gets a GPU for the call (ddpm_space/hosting.py); elsewhere a no-op.
    noise_denoise_ = hosting.on_gpu(
        bind(space, noise_denoise), space.pipe.unet, duration=hosting.noise_denoise_seconds
    )
    stop_ = bind(space, stop_noise_denoise)
    T = space.T
    with gr.Tab("Noise, then denoise", id="denoise"):
        gr.Markdown(text("denoise_intro"), latex_delimiters=LATEX)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                with gr.Row():  # first, as in the other tabs: in the first screen at 1366 x 768
                    run = gr.Button("▶ Noise, then denoise", variant="primary", scale=2, min_width=80)
                    stop = gr.Button("■ Stop", variant="stop", scale=1, min_width=80)
                source = ImageSource(space, page, "A real image x₀", "nd-image", 700, page.examples, "nd")
                start_t = gr.Slider(0, T - 1, value=min(T - 1, T // 2), step=1, label="Noise to t")
                digit, guidance = digit_and_guidance(space.num_classes, UNCONDITIONAL)
                with gr.Accordion("Sampler, steps, seed", open=False):
                    sampler, eta = sampler_and_eta()
                    steps = gr.Slider(
                        1, T, value=T, step=1, label="Steps of the full chain",
                        info="the chain runs those of its timesteps that are ≤ t",
                    )  # fmt: skip
                    with gr.Row():
                        seed = seed_box(0)
                        copies = gr.Slider(1, MAX_COPIES, value=4, step=1, label="Copies", min_width=120)
            with gr.Column(scale=3):
                with gr.Row():
                    x0 = picture("x₀", height=220, elem_id="nd-x0")
                    noised = picture("noised to t", height=220, elem_id="nd-noised")
                with gr.Row():
                    x = picture("x_t → what comes back", height=220, elem_id="nd-x")
                    x0_hat = picture("predicted x̂₀", height=220, elem_id="nd-x0-hat")
                info = gr.Markdown(latex_delimiters=LATEX, elem_id="nd-info", label="progress")

    run.click(
        noise_denoise_,
        [source.image, start_t, digit, guidance, sampler, eta, steps, seed, copies],
        [x0, noised, x, x0_hat, info],
        api_name="noise_denoise",
        preprocess=False,
        **page.chains,
    )
    stop.click(stop_, None, None, **STOP)
    return {"noise_denoise": noise_denoise_, "stop_noise_denoise": stop_}
