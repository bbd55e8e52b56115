"""How fast the Space streams, on the bundled model: the issue's three targets, beside stock diffusers' DDPMPipeline.

    python benchmarks/bench_space.py                 # torch's default thread count
    DDPM_HUB_THREADS=1 python benchmarks/bench_space.py

Targets (2 CPU cores, like a free Space): first streamed frame within 1 s; a full 1000-step DDPM chain of 8 digits
streams to the end within 30 s; a 50-step DDIM run within 3 s. The Space's chains are timed through its own
generator functions (space/app.py), so the per-frame drawing is included. Stock diffusers runs the same number of
U-Net passes with a matched, untrained `UNet2DModel` in `DDPMPipeline` (unguided, so compare it with w = 1).
"""

import importlib.util
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import stock_unet  # noqa: E402

TARGETS = {"first_frame_s": 1.0, "ddpm_1000_batch8_s": 30.0, "ddim_50_batch8_s": 3.0}


def load_space():
    spec = importlib.util.spec_from_file_location("space_app", ROOT / "space" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app


def time_chain(app, **settings) -> tuple[float, float]:
    """(seconds to the first streamed frame, seconds to the end) of the Space's `generate`."""
    start = time.perf_counter()
    first = None
    for _ in app.generate(**settings):
        first = first or time.perf_counter() - start
    return first, time.perf_counter() - start


def time_stock(steps: int, batch: int) -> float:
    from diffusers import DDPMPipeline, DDPMScheduler

    pipeline = DDPMPipeline(unet=stock_unet().eval(), scheduler=DDPMScheduler(num_train_timesteps=1000))
    pipeline.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    with torch.inference_mode():
        pipeline(batch_size=batch, num_inference_steps=steps, generator=torch.Generator().manual_seed(0))
    return time.perf_counter() - start


def main() -> None:
    app = load_space()
    print(f"torch threads: {torch.get_num_threads()}, load average: {os.getloadavg()}")
    runs = {
        "DDPM, 1000 steps, 8 digits, w = 2 (the Space's default)": dict(digit="3", guidance=2.0, steps=1000, batch=8),
        "DDPM, 1000 steps, 8 digits, w = 1": dict(digit="3", guidance=1.0, steps=1000, batch=8),
        "DDIM, 50 steps, 8 digits, w = 2": dict(digit="3", guidance=2.0, sampler="ddim", steps=50, batch=8),
    }
    results = {}
    for name, settings in runs.items():
        first, total = time_chain(app, **settings)
        results[name] = (first, total)
        print(f"{name:58s} first frame {first:6.2f} s   whole chain {total:6.2f} s")
    stock_1000 = time_stock(1000, 8)
    print(f"{'stock DDPMPipeline, 1000 steps, 8 images (unguided)':58s} {'':20s} whole chain {stock_1000:6.2f} s")
    default, unguided, ddim = results.values()
    print("\nTargets:")
    print(f"- first frame {default[0]:.2f} s (goal <= {TARGETS['first_frame_s']} s)")
    print(f"- 1000-step chain of 8, w = 2: {default[1]:.1f} s; w = 1: {unguided[1]:.1f} s "
          f"(goal <= {TARGETS['ddpm_1000_batch8_s']} s); stock, unguided: {stock_1000:.1f} s "
          f"(ours w = 1 is {stock_1000 / unguided[1]:.2f}x as fast)")  # fmt: skip
    print(f"- 50-step DDIM of 8, w = 2: {ddim[1]:.2f} s (goal <= {TARGETS['ddim_50_batch8_s']} s)")


if __name__ == "__main__":
    main()
