"""The U-Net on three CPU runtimes, like for like: eager PyTorch, torch.compile (`enable_compile`) and the exported
graph on onnxruntime, at the engine's batch sizes, same threads, interleaved repeats.

    python benchmarks/bench_runtimes.py                                 # batches 16 64 128, threads 1 and 2
    python benchmarks/bench_runtimes.py --batches 64 --threads 1 --repeats 3 --runtimes eager ort --no_save

Every runtime gets the same inputs at each batch size (the engine's merged ticks: 8 users x 8 digits x 2 for guidance
= 128 rows; 1 user's chain = 16; the threads setting goes to torch and to onnxruntime's intra-op pool alike, with
onnxruntime's inter-op pool at 1 and sequential execution). Each timing runs `--rows` U-Net rows (whole calls), the
runtimes are timed in turn within each repeat (A B C A B C ...), and the ratio is taken repeat by repeat: median
(min-max). The share of the float32 matmul peak uses `common.flops_per_image` (FLOPs of one image's forward, counted
by torch's flop counter) and `common.matmul_peak_gflops` measured in the same run at the same thread count. The
largest difference between each runtime's output and eager's is printed too (float32: expect ~1e-5).

Writes `results/runtimes.json` (and rebuilds `results/RESULTS.md`) unless `--no_save`. The engine may run the
exported graph (`DDPM_HUB_ONNX`, see space/ddpm_space/engine.py) only where onnxruntime wins here.
"""

from __future__ import annotations

import os

# As the Space runs (space/app.py): OpenMP threads that sleep instead of spin-waiting. Without it, 2 torch threads
# beside other busy processes ran 10x slower per row than onnxruntime's pool on this shared machine. Set
# OMP_WAIT_POLICY=ACTIVE in the environment to measure torch's default instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import copy  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import common  # noqa: E402 (benchmarks/common.py: the script's folder is on sys.path)
import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = ("eager", "compile", "ort")


def inputs(pipe, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What an engine tick sends: x_t, t and labels of guided chains (half conditional on 3, half the null class)."""
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, 1, 28, 28, generator=generator)
    timestep = torch.randint(0, pipe.scheduler.config.num_train_timesteps, (batch,), generator=generator)
    labels = torch.where(torch.arange(batch) % 2 == 0, 3, pipe.num_classes)
    return sample, timestep, labels


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def contestants(pipe, compiled, session, batch: int) -> tuple[dict, torch.Tensor]:
    """One U-Net call per runtime on the same inputs at `batch` rows, and eager's output."""
    sample, timestep, labels = inputs(pipe, batch)
    feed = {"sample": sample.numpy(), "timestep": timestep.numpy(), "class_labels": labels.numpy()}
    with torch.inference_mode():
        want = pipe.unet_forward(sample, timestep, labels)
    calls = {"eager": lambda: pipe.unet_forward(sample, timestep, labels)}
    if compiled is not None:
        calls["compile"] = lambda: compiled.unet_forward(sample, timestep, labels)
    if session is not None:
        calls["ort"] = lambda: session.run(None, feed)[0]
    return calls, want


@torch.inference_mode()
def measure(pipe, compiled, session, batch: int, calls: int, runtimes: list[str], repeats: int):
    """Seconds of `calls` U-Net calls per runtime, interleaved over `repeats`; the other cores' load; the largest
    difference from eager's output."""
    run, want = contestants(pipe, compiled, session, batch)
    error = {}
    for name in runtimes:  # warm-up (torch.compile compiles at this batch size) and the parity check
        run[name]()
        error[name] = float(np.abs(np.asarray(run[name]()) - want.numpy()).max())

    def timed(call):
        return lambda: [call() for _ in range(calls)]

    seconds, others = common.time_interleaved({name: timed(run[name]) for name in runtimes}, repeats)
    return seconds, others, error


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "space" / "default_model"))
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64, 128], help="U-Net rows per call")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=256, help="U-Net rows per timing (whole calls, at least one)")
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument("--no_save", action="store_true", help="print only")
    args = parser.parse_args(argv)

    from ddpm_hub import DDPMHubPipeline
    from ddpm_hub.export import export

    machine = common.machine_info()
    print(f"{common.command_line()}\n{common.load_line()}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    pipe = DDPMHubPipeline.from_pretrained(args.model)
    pipe.unet.eval()
    flops = common.flops_per_image(pipe.unet)
    print(f"U-Net: {flops / 1e6:.1f} MFLOP per image (torch.utils.flop_counter)")
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_runtimes_") as scratch:
        onnx_path = export(pipe, scratch, samplers=["ddpm"])["unet"] if "ort" in args.runtimes else None
        for threads in args.threads:
            torch.set_num_threads(threads)
            peak = common.matmul_peak_gflops()
            print(f"\n{threads} thread(s): float32 matmul peak {peak:.0f} GFLOP/s   [{common.load_line()}]")
            compiled = None
            if "compile" in args.runtimes:
                torch._dynamo.reset()  # compile afresh at this thread count
                compiled = DDPMHubPipeline(unet=copy.deepcopy(pipe.unet), scheduler=pipe.scheduler)
                compiled.enable_compile()
            session = ort_session(onnx_path, threads) if onnx_path is not None else None
            report[threads] = {"peak_gflops": peak, "batches": {}}
            for batch in args.batches:
                calls = max(1, args.rows // batch)
                seconds, others, error = measure(pipe, compiled, session, batch, calls, args.runtimes, args.repeats)
                rows = calls * batch
                entry = {"calls": calls, "rows": rows, "runtimes": {}, "ratios": {}}
                for name in args.runtimes:
                    best = min(seconds[name])
                    gflops = flops * rows / best / 1e9
                    entry["runtimes"][name] = {
                        "seconds": common.summarize(seconds[name]),
                        "ms_per_row_median": statistics.median(seconds[name]) / rows * 1e3,
                        "gflops_best": gflops,
                        "peak_share_best": gflops / peak,
                        "max_abs_diff_vs_eager": error[name],
                        "other_cores": [round(x, 2) for x in others[name]],
                    }
                for a, b in (("eager", "ort"), ("compile", "ort"), ("eager", "compile")):
                    if a in seconds and b in seconds:  # > 1: b is faster
                        entry["ratios"][f"{a}/{b}"] = common.ratio_stats(seconds[a], seconds[b])
                report[threads]["batches"][batch] = entry
                line = "  ".join(
                    f"{name} {entry['runtimes'][name]['ms_per_row_median']:.2f} ms/row "
                    f"({entry['runtimes'][name]['peak_share_best']:.0%} of peak, "
                    f"diff {entry['runtimes'][name]['max_abs_diff_vs_eager']:.1e})"
                    for name in args.runtimes
                )
                ratios = "  ".join(
                    f"{k} {r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})" for k, r in entry["ratios"].items()
                )
                print(f"  batch {batch:>4}: {line}\n              {ratios}   [{common.load_line()}]")
    if args.no_save:
        print("(--no_save: nothing saved)")
        return
    header = ["threads", "batch", *(f"{n}: ms/row (share of fp32 peak)" for n in args.runtimes)]
    pairs = sorted({k for t in report.values() for e in t["batches"].values() for k in e["ratios"]})
    header += [f"{p} (> 1: right faster)" for p in pairs]
    rows = []
    for threads, t in report.items():
        for batch, e in t["batches"].items():
            cells = [
                f"{e['runtimes'][n]['ms_per_row_median']:.2f} ({e['runtimes'][n]['peak_share_best']:.0%})"
                for n in args.runtimes
            ]
            cells += [
                "{median:.2f}x ({min:.2f}–{max:.2f})".format(**e["ratios"][p]) if p in e["ratios"] else ""
                for p in pairs
            ]
            rows.append([threads, batch, *cells])
    summary = []
    for threads, t in report.items():
        for batch, e in t["batches"].items():
            if "eager/ort" in e["ratios"]:
                r = e["ratios"]["eager/ort"]
                summary.append(
                    common.summary_row(
                        f"U-Net on onnxruntime vs eager PyTorch, batch {batch}, {threads} thread(s): ms per row",
                        f"{e['runtimes']['ort']['ms_per_row_median']:.2f} ms",
                        f"eager {e['runtimes']['eager']['ms_per_row_median']:.2f} ms",
                        "{median:.2f}x ({min:.2f}–{max:.2f})".format(**r),
                        "ort wins over the whole range (min > 1) to be used",
                        r["min"] > 1,
                    )
                )
    result = {
        "title": "The U-Net on eager PyTorch, torch.compile and onnxruntime (CPU), like for like",
        "command": common.command_line(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "machine": machine,
        "threads": max(args.threads),
        "mflops_per_image": flops / 1e6,
        "report": report,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "markdown": common.markdown_table(header, rows)
        + ["", "Share of peak: the best repeat's GFLOP/s over the float32 matmul peak at the same thread count."],
        "summary": summary,
    }
    path = common.save_result("runtimes", result)
    print(f"saved {path}")


if __name__ == "__main__":
    sys.exit(main())
