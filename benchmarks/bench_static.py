"""The static page's speed and weight: ms per step in headless Chromium (onnxruntime-web WASM, 1 and 2 threads)
against the Python pipeline (eager PyTorch, 1 and 2 threads) on the same machine, and the page's first-load MB.

    python benchmarks/bench_static.py [--batch 1 8] [--steps 50] [--repeats 3]

What is timed: one DDPM chain of `--steps` steps (the page's `ddpmHub.generate`, the model's w, digit 3) at each
batch; the page reports its own ms per step (the graph runs only, `performance.now()` around `session.run`), the
pipeline side times `pipe(...)` end to end divided by the steps. Both sides run the same guided step (2B U-Net rows).
Runtimes alternate (page 1 thread, page 2 threads, torch 1, torch 2, repeat) so load drifting on a shared machine
hits each alike; medians and ranges are printed. First load: the bytes of every response until `ddpmHub.ready`
(the DDPM step graph; DDIM's graph loads only when asked for), and the whole built folder.

The machine's load goes beside the numbers: the load averages at the start and end, the 1-minute load at each
repeat, and how long each timing waited for quiet (`--quiet_threshold` cores of other processes, at most
`--quiet_timeout` s). Writes benchmarks/results/static.json (and RESULTS.md, the README's table) via
common.save_result; `--no_save` only prints.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
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
from common import add_timing_arguments, command_line, machine_info, save_result, summary_row, wait_for_quiet  # noqa: E402
from test_space_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from test_static_page import IsolatedHandler  # noqa: E402

from ddpm_hub import DDPMHubPipeline  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--steps", type=int, default=50, choices=[50, 100, 250, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no_save", action="store_true", help="print only; do not write results/static.json")
    add_timing_arguments(parser)
    args = parser.parse_args()
    waited: list[float] = []

    def quiet() -> None:
        if args.quiet_threshold >= 0:
            waited.append(wait_for_quiet(args.quiet_threshold, args.quiet_timeout))

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
    result: dict = {
        "title": "The static page in the browser: ms per step (onnxruntime-web WASM) vs the Python pipeline",
        "command": command_line(),
        "machine": machine_info(),
        "steps": args.steps,
        "sampler": "ddpm",
        "guidance_scale": float(pipe.config.guidance_scale),
        "chromium": str(CHROMIUM),
    }
    folder_mb = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6
    result["folder_mb"] = round(folder_mb, 2)
    loads = []
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
            loads.append(round(os.getloadavg()[0], 2))
            for batch in args.batch:
                for threads, page in pages.items():
                    quiet()
                    ms = page.evaluate(
                        "async (o) => (await window.ddpmHub.generate(o)).msPerStep",
                        {"label": 3, "steps": args.steps, "batch": batch, "seed": 0},
                    )
                    times.setdefault(f"wasm_{threads}t_b{batch}", []).append(ms)
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    quiet()
                    start = time.perf_counter()
                    pipe(batch_size=batch, class_labels=3, num_inference_steps=args.steps, output_type="pt")
                    ms = (time.perf_counter() - start) * 1000 / args.steps
                    times.setdefault(f"torch_{threads}t_b{batch}", []).append(ms)
        browser.close()
    server.shutdown()
    result["ms_per_step"] = {
        key: {"median": round(statistics.median(v), 2), "min": round(min(v), 2), "max": round(max(v), 2), "all": v}
        for key, v in times.items()
    }
    result["load_1min_per_repeat"] = loads
    result["quiet_wait_s"] = {"total": round(sum(waited), 1), "max": round(max(waited, default=0.0), 1)}
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    describe(result, args.batch)
    print(json.dumps({key: value for key, value in result.items() if key != "markdown"}, indent=2))
    if not args.no_save:
        print(f"wrote {save_result('static', result)}")


def describe(result: dict, batches: list[int]) -> None:
    """The results' `markdown` (RESULTS.md) and `summary` rows (the README's table)."""
    ms = result["ms_per_step"]

    def cell(key: str) -> str:
        return f"{ms[key]['median']:.1f} ({ms[key]['min']:.1f}–{ms[key]['max']:.1f})"

    header = ["batch", "WASM 1 thread", "WASM 2 threads", "PyTorch 1 thread", "PyTorch 2 threads"]
    rows = [[b, *(cell(f"{side}_{t}t_b{b}") for side in ("wasm", "torch") for t in (1, 2))] for b in batches]
    load = result["machine"]["loadavg"][0], result["loadavg_end"][0]
    result["markdown"] = [
        f"ms per DDPM step ({result['steps']} steps, w = {result['guidance_scale']:g}, so 2 U-Net rows per image), "
        "median (min–max) over the repeats; WASM is headless Chromium's onnxruntime-web, PyTorch the eager pipeline "
        f"in Python. Load average (1 min) {load[0]:.2f} at the start, {load[1]:.2f} at the end, per repeat "
        f"{result['load_1min_per_repeat']} on {result['machine']['cpu_count']} cores.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
        "",
        f"First load (until `ddpmHub.ready`): {result['first_load_mb']} MB; the whole folder (with the DDIM graph): "
        f"{result['folder_mb']} MB.",
    ]
    where = (
        f"batch {' / '.join(map(str, batches))}, load average {load[0]:.1f} on {result['machine']['cpu_count']} cores"
    )
    result["summary"] = [
        summary_row(
            f"static page: first-load weight (the whole folder {result['folder_mb']} MB)",
            f"{result['first_load_mb']} MB",
            "",
            None,
            "",
            None,
        ),
    ]
    for t in (1, 2):
        wasm = " / ".join(f"{ms[f'wasm_{t}t_b{b}']['median']:.1f}" for b in batches)
        torch_ = " / ".join(f"{ms[f'torch_{t}t_b{b}']['median']:.1f}" for b in batches)
        ratio = " / ".join(
            f"{ms[f'wasm_{t}t_b{b}']['median'] / ms[f'torch_{t}t_b{b}']['median']:.2f}x" for b in batches
        )
        result["summary"].append(
            summary_row(
                f"static page: ms per DDPM step, {where}, {t} thread{'s' if t > 1 else ''}: WASM in headless "
                "Chromium vs PyTorch (time ratio)",
                f"{wasm} ms",
                f"{torch_} ms",
                ratio,
                "",
                None,
            )
        )


if __name__ == "__main__":
    main()
