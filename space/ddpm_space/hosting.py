"""Where the Space runs: locally, on CPU Space hardware, or on ZeroGPU; and the `@spaces.GPU` decoration.

One code path runs on three hosts:

* **locally** (`python space/app.py`) and on **CPU Space hardware** (`cpu-basic`, `cpu-upgrade`): the U-Net runs on
  the CPU. Nothing here does anything: `ZERO_GPU` is False and `on_gpu` returns the handler unchanged.
* on **ZeroGPU** (Space hardware `zero-a10g`; the platform sets `SPACES_ZERO_GPU=true` and installs `spaces`): a GPU
  is attached only while a function decorated with `@spaces.GPU` runs. `on_gpu` decorates the handlers that run the
  U-Net and moves the model to CUDA inside each call.

What `spaces` (0.51.x) does, read from its source (`spaces/zero/decorator.py`, `spaces/zero/wrappers.py`):

* `spaces.GPU(fn)` returns `fn` itself unless `SPACES_ZERO_GPU` is true: off ZeroGPU the decorator does nothing.
* On ZeroGPU every call runs in a worker process forked from the app, which holds the GPU for the call (an idle
  worker is reused by the next call). The arguments go to the worker and the results come back **pickled**: whatever
  the handler changes in place (a dict held in `gr.State`, a module global) stays in the worker, so a handler must
  return or yield everything the page keeps. Yielding CUDA tensors is not allowed: yield numpy arrays.
* Generator functions are supported: every yielded value is streamed back as it comes. When the visitor cancels
  (Stop, a closed tab), the wrapper sets a stop event and the worker closes the generator at its next yield.
* `duration` is the GPU time requested per call, in seconds (60 by default); it may be a callable that gets the
  call's own arguments. Shorter requests get a better place in the ZeroGPU queue and draw less of the visitor's daily
  quota; a call that runs past its duration may be aborted.
* Threads started in the app (such as a shared batching engine) do not exist in the forked worker, and the GPU is
  not attached outside a decorated call: on ZeroGPU each chain runs inside its own decorated call instead (a
  1000-step chain takes seconds there), so code that batches chains checks `ZERO_GPU` and steps aside.

The chains keep drawing their noise from CPU generators, so that a seed gives the same digits on every host; the
library must then draw noise on the generator's device and move it to the model's (as diffusers' `randn_tensor`
does) wherever it calls `torch.randn` with a generator.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Any

import torch

# The platform's own switch, parsed as `spaces.config` parses it.
ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")

if ZERO_GPU:
    import spaces  # the platform installs it; deploy.py lists it in a ZeroGPU Space's requirements.txt
else:
    spaces = None  # not needed, and not imported: locally `spaces` need not be installed

HOST = "ZeroGPU" if ZERO_GPU else ("CPU Space hardware" if os.environ.get("SPACE_ID") else "local")  # for the page

MIN_GPU_SECONDS = 15  # the GPU time asked for the shortest chain (start-up and the first CUDA call included)
MAX_GPU_SECONDS = 120
GPU_SECONDS_PER_IMAGE_STEP = 0.0015  # generous: a guided step over 16 images of the small U-Net takes ~3 ms on a GPU


def device() -> torch.device:
    """Where the U-Net runs in this call: CUDA inside a ZeroGPU call, the CPU everywhere else."""
    return torch.device("cuda") if ZERO_GPU and torch.cuda.is_available() else torch.device("cpu")


def gpu_seconds(steps: Any, images: Any, guided: bool) -> int:
    """The GPU time to request for a chain of `steps` U-Net steps over `images` images (twice that when guided).

    Takes the controls' raw values: one that is not a number asks for the most (the handler then reports it).
    """
    try:
        work = max(0.0, float(steps)) * max(0.0, float(images)) * (2 if guided else 1)
    except (TypeError, ValueError):
        return MAX_GPU_SECONDS
    return int(min(MAX_GPU_SECONDS, MIN_GPU_SECONDS + work * GPU_SECONDS_PER_IMAGE_STEP))


def on_gpu(handler: Callable, model: torch.nn.Module, duration: int | Callable[..., int] | None = None) -> Callable:
    """`handler` decorated with `@spaces.GPU(duration=duration)` on ZeroGPU, moving `model` to CUDA at the start of
    each call; `handler` itself everywhere else.

    `handler` may be a plain function or a generator function (also behind `functools.partial`); `duration` is
    seconds or a callable that gets the handler's arguments (see the module docstring).
    """
    if not ZERO_GPU:
        return handler

    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def call(*args: Any, **kwargs: Any):
            model.to(device())  # inside the worker: the GPU is attached now
            yield from handler(*args, **kwargs)

    else:

        @functools.wraps(handler)
        def call(*args: Any, **kwargs: Any):
            model.to(device())
            return handler(*args, **kwargs)

    return spaces.GPU(call, duration=duration)


def _guided(digit) -> bool:
    return digit not in (None, "", "any")


# `spaces.GPU` calls a duration function with the handler's own arguments, which may end with what Gradio injects
# (a `gr.Request`, a progress tracker): the functions take those and ignore them.
def generate_seconds(digit, guidance, sampler, eta, steps, seed, batch, *_, **__) -> int:
    """The GPU time asked for a Generate chain."""
    return gpu_seconds(steps, batch, _guided(digit))


def compare_seconds(digit, guidance, ddpm_steps, ddim_steps, eta, seed, batch, *_, **__) -> int:
    """The GPU time asked for DDPM vs DDIM: both chains."""
    both = gpu_seconds(ddpm_steps, batch, _guided(digit)) + gpu_seconds(ddim_steps, batch, _guided(digit))
    return min(MAX_GPU_SECONDS, both)


def guidance_seconds(digit, guidance, steps, t, seed, *_, **__) -> int:
    """The GPU time asked for "Guidance on pictures": one guided image, at most the whole chain."""
    return gpu_seconds(steps, 1, _guided(digit))


def variance_pair_seconds(digit, guidance, steps, seed, batch, *_, **__) -> int:
    """The GPU time asked for "beta vs beta-tilde": both chains."""
    return min(MAX_GPU_SECONDS, 2 * gpu_seconds(steps, batch, _guided(digit)))


def noise_denoise_seconds(image, start_t, digit, guidance, sampler, eta, steps, seed, copies, *_, **__) -> int:
    """The GPU time asked for noise, then denoise."""
    return gpu_seconds(steps, copies, _guided(digit))


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
