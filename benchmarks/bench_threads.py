"""Threads: 1 vs 2 torch threads for the Space's Generate and for a training step, on a quiet machine and beside a
second busy process (a shared machine, as a free Space is). Which thread count is faster when shared?

    python benchmarks/bench_threads.py
    python benchmarks/bench_threads.py --parts space --conditions shared --no_save

What is timed (each part in a child process of its own: OpenMP reads its wait policy when torch loads):
    space     one Generate with the page's defaults (space/app.py's "Generate & scrub" controls: digit 3, guidance
              w = the model's recommended w if it has a measured guidance curve, else 2; DDPM with σ²ₜ = β̃ₜ, 1000
              steps, 8 images, seed 42) on the bundled model: the chain the Space's `reverse_tab.generate` prepares
              (`chains.start`: `pipe.prepare_chain` with a scheduler of its own), stepped `--chain_steps` of its
              1000 steps through
              `pipe.unet_forward` as the Space's engine steps a lone chain (one U-Net call per step, on 16 rows when
              guidance doubles the 8 images). Milliseconds per step; x 1000, what one Generate
              costs (the page's drawing of every 10th frame left out). With OMP_WAIT_POLICY=PASSIVE unless set
              otherwise, as space/app.py does.
    training  `--train_steps` optimisation steps of training/train.py's recipe at batch 64 (`common.OurRecipe`,
              float32); milliseconds per step. With the OpenMP wait policy the environment gives (train.py sets none).
Conditions:
    quiet     nothing else started by this script; each timing first waits until other processes use fewer than
              `--quiet_threshold` cores
    shared    beside a second process this script starts: a 1-thread float32 matmul loop, i.e. one busy core (another
              request, another tenant); it is killed at the end, on an error and on Ctrl-C, and ends by itself if this
              script dies
In each, 1 and 2 threads are interleaved (1, 2, 1, 2, ...), `--repeats` times each: median (min–max), and per
repeat the 1-thread time over the 2-thread time (> 1: 2 threads are faster). "Faster" goes by the median of those
per-repeat ratios (which cancels load that drifts between repeats; the medians of the times may disagree when the
two are close); the report says whether every repeat agreed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import common  # benchmarks/common.py: the script's folder is on sys.path
import torch
from readme_table import spread

THREADS = (1, 2)
PARTS = ("space", "training")
CONDITIONS = {"quiet": "quiet machine", "shared": "beside a busy 1-thread process"}
#: The "Generate & scrub" controls' defaults in space/app.py (gen_digit, gen_guidance, gen_sampler, gen_eta, gen_steps,
#: gen_seed, gen_batch), in the order of `reverse_tab.generate`'s arguments; the guidance is replaced by the model's
#: recorded w (model_index.json), as app.py's DEFAULT_GUIDANCE.
PAGE_DEFAULTS = {
    "digit": "3",
    "guidance": 2.0,
    "sampler": "ddpm-fixed_small",
    "eta": 0.0,
    "steps": 1000,
    "seed": 42,
    "batch": 8,
}
TRAINING_BATCH = 64
BUSY_LOOP = """
import os, torch
torch.set_num_threads(1)
parent = os.getppid()
a, b, out = torch.randn(256, 256), torch.randn(256, 256), torch.empty(256, 256)
print("busy", flush=True)
while os.getppid() == parent:  # the benchmark is gone (killed without cleaning up): stop
    for _ in range(100):
        torch.mm(a, b, out=out)
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS))
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per thread count (interleaved)")
    parser.add_argument("--chain_steps", type=int, default=50, help="steps of the Space's chain per repeat")
    parser.add_argument("--train_steps", type=int, default=10, help="training steps per repeat")
    parser.add_argument("--model_dir", default=str(common.REPO_ROOT / "space" / "default_model"))
    common.add_timing_arguments(parser)  # the quiet condition's wait
    parser.add_argument("--name", default="threads", help="results file name")
    parser.add_argument("--no_save", action="store_true", help="print only")
    parser.add_argument("--child", choices=PARTS, help=argparse.SUPPRESS)  # internal: time one part, in this process
    parser.add_argument("--child_output", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------------------------
# In the child: one part, 1 and 2 threads interleaved
# ---------------------------------------------------------------------------------------------------------------------


def space_chain(args):
    """(one repeat: a fresh Generate chain stepped `--chain_steps` steps, steps per repeat)."""
    from ddpm_space import chains, inputs  # the Space's own chain set-up (an installed package: pyproject.toml)
    from ddpm_space.loading import load_pipeline
    from ddpm_space.state import Space

    space = Space(pipe=load_pipeline(args.model_dir), model_id=args.model_dir, model_name="benchmark")
    guidance = space.pipe.config.guidance_scale  # the model's recorded w: Generate's default, as in space/app.py
    settings = {**PAGE_DEFAULTS, "guidance": guidance, "label": inputs.as_label(space, PAGE_DEFAULTS["digit"])}

    @torch.inference_mode()
    def repeat():
        chain = chains.start(  # as the Space's Generate: the chain's own scheduler, the shared U-Net
            space,
            settings["sampler"],
            settings["guidance"],
            batch_size=settings["batch"],
            class_labels=settings["label"],
            num_inference_steps=settings["steps"],
            generator=inputs.generator(settings["seed"]),
            eta=settings["eta"],
        )
        for _ in range(args.chain_steps):
            chain.step(space.pipe.unet_forward(*chain.model_input()))  # as the engine's tick, for one chain

    rows = settings["batch"] * (1 if settings["guidance"] in (0, 1) else 2)  # guidance doubles the U-Net's batch
    what = (
        f"the Space's Generate ({settings['batch']} digits, w = {settings['guidance']:g}, DDPM, {settings['steps']} "
        f"steps; U-Net on {rows} rows)"
    )
    return repeat, args.chain_steps, what


def training_step(args):
    """(one repeat: `--train_steps` steps of our recipe at batch 64, steps per repeat)."""
    from ddpm_hub.data import load_mnist5k

    images, labels = load_mnist5k("train")
    recipe = common.OurRecipe(batch_size=TRAINING_BATCH)
    stream = common.BatchStream(images, labels, TRAINING_BATCH, seed=0)

    def repeat():
        for _ in range(args.train_steps):
            recipe.step(*stream.next())

    return repeat, args.train_steps, f"one training step of our recipe, batch {TRAINING_BATCH}"


def child(args) -> int:
    repeat, steps, what = {"space": space_chain, "training": training_step}[args.child](args)

    def at(threads: int):
        def call():
            torch.set_num_threads(threads)
            repeat()

        return call

    calls = {f"threads{n}": at(n) for n in THREADS}
    for call in calls.values():  # warm-up at each thread count: allocator, oneDNN primitives, the thread pool
        call()
    threshold = args.quiet_threshold if args.quiet_threshold >= 0 else None
    times, loads = common.time_interleaved(calls, args.repeats, threshold, args.quiet_timeout)
    measured = {
        name: {
            "ms_per_step": common.summarize([t / steps * 1e3 for t in seconds]),
            "ms_per_step_per_repeat": [t / steps * 1e3 for t in seconds],
            "other_processes_cores": loads[name],
        }
        for name, seconds in times.items()
    }
    measured["two_threads_speedup"] = common.ratio_stats(times["threads1"], times["threads2"])
    measured["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "")
    measured["what"] = what
    Path(args.child_output).write_text(json.dumps(measured))
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# In the parent: the busy process, the children, the report
# ---------------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def busy_process():
    """A second process keeping one core busy (1-thread matmuls) while the block runs; killed however it ends."""
    process = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdout=subprocess.PIPE, text=True)
    try:
        if process.stdout.readline().strip() != "busy":
            raise RuntimeError(f"the busy process did not start (exit code {process.poll()})")
        yield process
    finally:
        process.kill()
        process.wait()


def run_part(args, part: str, condition: str) -> dict[str, Any]:
    """Times one part in a child process (its own OpenMP settings), returns what it measured."""
    env = dict(os.environ)
    if part == "space":
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as space/app.py sets it before importing torch
    threshold = args.quiet_threshold if condition == "quiet" else -1.0  # the busy process is never quiet
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "part.json"
        command = [sys.executable, __file__, "--child", part, "--child_output", str(output)]
        command += ["--repeats", str(args.repeats), "--chain_steps", str(args.chain_steps)]
        command += ["--train_steps", str(args.train_steps), "--model_dir", args.model_dir]
        command += ["--quiet_threshold", str(threshold), "--quiet_timeout", str(args.quiet_timeout)]
        subprocess.run(command, env=env, check=True)
        return json.loads(output.read_text())


def describe(measured: dict[str, Any]) -> dict[str, Any]:
    """Which thread count is faster (the median of the per-repeat ratios), and whether every repeat agreed."""
    speedup = measured["two_threads_speedup"]
    two = speedup["median"] > 1
    return {
        "faster": "2 threads" if two else "1 thread",
        "every_repeat": speedup["min"] > 1 if two else speedup["max"] < 1,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    machine = common.machine_info()
    print(f"{common.command_line()}\n{machine['cpu']}, torch {machine['torch']}, {common.load_line()}")
    parts: dict[str, Any] = {
        part: {"steps_per_repeat": args.chain_steps if part == "space" else args.train_steps, "conditions": {}}
        for part in args.parts
    }
    for condition in args.conditions:
        with busy_process() if condition == "shared" else contextlib.nullcontext():
            for part in args.parts:
                print(f"\n{part}, {CONDITIONS[condition]}: timing 1 and 2 threads, {args.repeats} repeats each ...")
                sys.stdout.flush()
                measured = run_part(args, part, condition)
                parts[part]["what"] = measured.pop("what")
                measured.update(describe(measured), words=CONDITIONS[condition])
                parts[part]["conditions"][condition] = measured
                print_condition(part, measured)
    if "space" in parts:
        parts["space"]["page_steps"] = PAGE_DEFAULTS["steps"]
    result: dict[str, Any] = {
        "title": "Threads: 1 vs 2, quiet and beside a busy process",
        "command": common.command_line(),
        "machine": machine,
        "settings": {k: v for k, v in vars(args).items() if k not in ("no_save", "name", "child", "child_output")},
        "parts": parts,
        "faster_when_shared": {
            part: entry["conditions"]["shared"]["faster"]
            for part, entry in parts.items()
            if "shared" in entry["conditions"]
        },
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    result["verdict"] = verdict(result)
    print("\n" + "\n".join(result["verdict"]))
    result["markdown"] = markdown(result)
    result["summary"] = summary(result)
    if not args.no_save:
        path = common.save_result(args.name, result)
        print(f"saved {path} and {common.RESULTS_DIR / 'RESULTS.md'}")
    return 0


def print_condition(part: str, measured: dict[str, Any]) -> None:
    for n in THREADS:
        entry = measured[f"threads{n}"]
        print(
            f"  {n} thread{'s' if n > 1 else ' '}  {spread(entry['ms_per_step'], 1, ' ms'):<30} per step   "
            f"others used {max(entry['other_processes_cores']):.2f} cores at most"
        )
    print(
        f"  2 threads run at {spread(measured['two_threads_speedup'])} the speed of 1 -> {measured['faster']} faster"
        f"{' in every repeat' if measured['every_repeat'] else ' (not in every repeat)'}"
    )
    sys.stdout.flush()


def verdict(result: dict[str, Any]) -> list[str]:
    lines = []
    for part, entry in result["parts"].items():
        shared = entry["conditions"].get("shared")
        if shared:
            agreed = "every repeat agreed" if shared["every_repeat"] else "not every repeat agreed"
            lines.append(
                f"{part}: when shared, {shared['faster']} faster (2 threads at "
                f"{spread(shared['two_threads_speedup'])} the speed of 1; {agreed})"
            )
    return lines


def markdown(result: dict[str, Any]) -> list[str]:
    settings = result["settings"]
    lines = [
        f"Milliseconds per step, median (min–max) of {settings['repeats']} repeats per thread count, 1 and 2 threads "
        "interleaved; speed-up = 1-thread time / 2-thread time in the same repeat (> 1: 2 threads faster). Shared: "
        "beside a second process this script starts, a 1-thread matmul loop (one busy core). The Space's chain runs "
        f"{settings['chain_steps']} of its steps per repeat, training {settings['train_steps']} steps. Others' cores: "
        "the most CPU cores other processes kept busy during a timing (about 1 when shared).",
        "",
    ]
    rows = []
    for entry in result["parts"].values():
        for measured in entry["conditions"].values():
            one, two = measured["threads1"], measured["threads2"]
            generate = ""
            if "page_steps" in entry:
                generate = " / ".join(
                    f"{t['ms_per_step']['median'] * entry['page_steps'] / 1e3:.1f}" for t in (one, two)
                )
            rows.append(
                [
                    entry["what"],
                    measured["words"],
                    spread(one["ms_per_step"], 1, ""),
                    spread(two["ms_per_step"], 1, ""),
                    spread(measured["two_threads_speedup"]),
                    measured["faster"] + ("" if measured["every_repeat"] else " (not every repeat)"),
                    generate,
                    f"{max(one['other_processes_cores'] + two['other_processes_cores']):.2f}",
                    measured["omp_wait_policy"] or "(unset)",
                ]
            )
    lines += common.markdown_table(
        [
            "part",
            "condition",
            "1 thread, ms / step",
            "2 threads, ms / step",
            "speed-up of 2 threads",
            "faster",
            "one Generate, s (1 / 2 threads)",
            "others' cores",
            "OMP_WAIT_POLICY",
        ],
        rows,
    )
    lines += ["", "Verdict:"] + [f"- {line}" for line in result["verdict"]]
    return lines


def summary(result: dict[str, Any]) -> list[list]:
    """The rows this run adds to the summary table of RESULTS.md (1 thread vs 2 threads: no stock side)."""
    rows = []
    for entry in result["parts"].values():
        for measured in entry["conditions"].values():
            rows.append(
                common.summary_row(
                    f"threads, {entry['what']}, {measured['words']}: ms per step, 1 thread vs 2 threads "
                    f"(faster: {measured['faster']})",
                    f"1 thread {spread(measured['threads1']['ms_per_step'], 1, '')}",
                    f"2 threads {spread(measured['threads2']['ms_per_step'], 1, '')}",
                    None,
                    "",
                    None,
                )
            )
    return rows


if __name__ == "__main__":
    sys.exit(main())
