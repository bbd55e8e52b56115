"""The static page's speed and weight: ms per step in headless Chromium (onnxruntime-web WASM, 1 and 2 threads)
against the Python pipeline (eager PyTorch, 1 and 2 threads) on the same machine, and the page's first-load MB.

    python benchmarks/bench_static.py [--batch 1 8] [--steps 50] [--repeats 3]

What is timed: one DDPM chain of `--steps` steps (the page's `ddpmHub.generate`, the model's w, digit 3) at each
batch; the page reports its own ms per step (the graph runs only, `performance.now()` around `session.run`), the
pipeline side times `pipe(...)` end to end divided by the steps. Both sides run the same guided step (2B U-Net rows).
Runtimes alternate (page 1 thread, page 2 threads, torch 1, torch 2, repeat) so load drifting on a shared machine
hits each alike; medians and ranges are printed. First load: the bytes of every response until `ddpmHub.ready`
(the DDPM step graph; DDIM's graph loads only when asked for). Prints JSON; nothing is saved.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "space"))
sys.path.insert(0, str(ROOT / "tests"))
import deploy  # noqa: E402
from test_space_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from test_static_page import IsolatedHandler  # noqa: E402

from ddpm_hub import DDPMHubPipeline  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--steps", type=int, default=50, choices=[50, 100, 250, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    folder = deploy.assemble_static(Path(tempfile.mkdtemp()) / "site")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(IsolatedHandler, directory=str(folder))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    pipe = DDPMHubPipeline.from_pretrained(ROOT / "space" / "default_model")
    pipe.set_progress_bar_config(disable=True)
    times: dict[str, list[float]] = {}
    result: dict = {"steps": args.steps, "sampler": "ddpm", "chromium": str(CHROMIUM)}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        pages = {}
        for threads in (1, 2):
            page = browser.new_page()
            sizes = []
            page.on("response", lambda response, sizes=sizes: sizes.append(len(response.body())))
            page.goto(f"{url}?threads={threads}", wait_until="load")
            page.wait_for_function("() => window.ddpmHub !== undefined")
            info = page.evaluate("() => window.ddpmHub.ready")
            assert info["threads"] == threads, info
            result["first_load_mb"] = round(sum(sizes) / 1e6, 2)
            pages[threads] = page
        for _ in range(args.repeats):
            for batch in args.batch:
                for threads, page in pages.items():
                    ms = page.evaluate(
                        "async (o) => (await window.ddpmHub.generate(o)).msPerStep",
                        {"label": 3, "steps": args.steps, "batch": batch, "seed": 0},
                    )
                    times.setdefault(f"wasm_{threads}t_b{batch}", []).append(ms)
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    start = time.perf_counter()
                    pipe(batch_size=batch, class_labels=3, num_inference_steps=args.steps, output_type="pt")
                    ms = (time.perf_counter() - start) * 1000 / args.steps
                    times.setdefault(f"torch_{threads}t_b{batch}", []).append(ms)
        browser.close()
    server.shutdown()
    result["ms_per_step"] = {
        key: {"median": round(statistics.median(v), 2), "min": round(min(v), 2), "max": round(max(v), 2)}
        for key, v in times.items()
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
