"""Train the stock-diffusers contestant once and save it: `common.StockRecipe` (diffusers' example recipe) on the
matched `UNet2DModel(num_class_embeds=10)`, the mnist5k train split, saved as a stock `DDPMPipeline` folder (EMA
weights, safetensors) that plain diffusers loads. `bench_nfe.py` samples it with stock schedulers.

    python benchmarks/train_stock.py --output_dir runs/stock/model --max_train_steps 16500 \
        --checkpoints_dir runs/stock/checkpoints --resume_from_checkpoint latest

16,500 steps of batch 16 is the 40-CPU-minute point of `bench_quality.py`'s stock curve. The run checkpoints every
`--checkpointing_steps` (model, EMA, optimiser, learning-rate schedule, batch order and random state), stops at the
next step on SIGTERM/SIGINT after writing a checkpoint, and resumes exactly with `--resume_from_checkpoint latest`.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import sys
import time
from pathlib import Path

import common  # benchmarks/common.py: the script's folder is on sys.path
import torch
from diffusers import DDPMPipeline

from ddpm_hub.data import load_mnist5k


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--max_train_steps", type=int, default=16500)
    parser.add_argument("--checkpoints_dir", default=None, help="default: OUTPUT_DIR/checkpoints")
    parser.add_argument("--checkpointing_steps", type=int, default=500)
    parser.add_argument("--checkpoints_total_limit", type=int, default=2)
    parser.add_argument("--resume_from_checkpoint", default=None, help="a checkpoint folder, or 'latest'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--logging_steps", type=int, default=500)
    args = parser.parse_args(argv)
    if args.max_train_steps < 1 or args.checkpointing_steps < 1:
        parser.error("--max_train_steps and --checkpointing_steps must be >= 1")
    args.checkpoints_dir = Path(args.checkpoints_dir or Path(args.output_dir) / "checkpoints")
    return args


def save_checkpoint(directory: Path, recipe, stream, step: int, cpu_seconds: float, limit: int) -> Path:
    path = directory / f"checkpoint-{step}"
    tmp = directory / f".tmp-checkpoint-{step}"
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "step": step,
            "cpu_seconds": cpu_seconds,
            "unet": recipe.unet.state_dict(),
            "ema": recipe.ema.state_dict(),
            "optimizer": recipe.optimizer.state_dict(),
            "lr_scheduler": recipe.lr_scheduler.state_dict(),
            "stream": {
                "generator": stream.generator.get_state(),
                "order": stream._order,
                "position": stream._position,
            },
            "torch_rng": torch.get_rng_state(),
        },
        tmp / "state.pt",
    )
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)  # a checkpoint is either whole or absent
    kept = sorted(directory.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for old in kept[:-limit]:
        shutil.rmtree(old)
    return path


def latest_checkpoint(directory: Path) -> Path | None:
    found = sorted(directory.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return found[-1] if found else None


def main(argv=None) -> int:
    args = parse_args(argv)
    common.set_threads(args.threads)
    torch.manual_seed(args.seed)
    images, labels = load_mnist5k("train")
    recipe = common.StockRecipe(total_steps=args.max_train_steps, seed=args.seed)
    stream = common.BatchStream(images, labels, recipe.batch_size, seed=args.seed)
    step, cpu_seconds = 0, 0.0

    resume = args.resume_from_checkpoint
    if resume is not None:
        path = latest_checkpoint(args.checkpoints_dir) if resume == "latest" else Path(resume)
        if path is None:
            print(f"no checkpoint in {args.checkpoints_dir}: starting from scratch")
        else:
            state = torch.load(path / "state.pt", weights_only=False)
            recipe.unet.load_state_dict(state["unet"])
            recipe.ema.load_state_dict(state["ema"])
            recipe.optimizer.load_state_dict(state["optimizer"])
            recipe.lr_scheduler.load_state_dict(state["lr_scheduler"])
            stream.generator.set_state(state["stream"]["generator"])
            stream._order, stream._position = state["stream"]["order"], state["stream"]["position"]
            torch.set_rng_state(state["torch_rng"])
            step, cpu_seconds = state["step"], state["cpu_seconds"]
            print(f"resumed from {path} at step {step} ({cpu_seconds / 60:.1f} CPU-minutes so far)")

    stop = {"signal": None}

    def request_stop(signum, _frame):
        stop["signal"] = signal.Signals(signum).name

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, request_stop)

    wall_start, losses = time.perf_counter(), []
    while step < args.max_train_steps:
        batch = stream.next()
        cpu = time.process_time()
        loss = recipe.step(*batch)
        cpu_seconds += time.process_time() - cpu
        step += 1
        losses.append(loss)
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at step {step}")
        if step % args.logging_steps == 0:
            recent = losses[-args.logging_steps :]
            print(
                f"step {step}/{args.max_train_steps}  loss {sum(recent) / len(recent):.4f}  "
                f"{cpu_seconds / 60:.1f} CPU-min  {common.load_line()}",
                flush=True,
            )
        if step % args.checkpointing_steps == 0 or stop["signal"]:
            path = save_checkpoint(
                args.checkpoints_dir, recipe, stream, step, cpu_seconds, args.checkpoints_total_limit
            )
            print(f"saved {path}", flush=True)
            if stop["signal"]:
                print(f"stopped by {stop['signal']} at step {step}; resume with --resume_from_checkpoint latest")
                return 1

    output = Path(args.output_dir)
    pipeline = DDPMPipeline(unet=recipe.ema_unet(), scheduler=recipe.scheduler)
    pipeline.save_pretrained(output, safe_serialization=True)
    record = {
        "command": common.command_line(),
        "recipe": "benchmarks/common.py StockRecipe (diffusers examples/unconditional_image_generation defaults), "
        "class-conditional UNet2DModel(num_class_embeds=10), true labels",
        "steps": step,
        "batch_size": recipe.batch_size,
        "cpu_minutes": round(cpu_seconds / 60, 1),
        "wall_minutes_last_leg": round((time.perf_counter() - wall_start) / 60, 1),
        "threads": args.threads,
        "dataset": "mnist5k train (4,000 digits)",
        "parameters": common.count_parameters(recipe.unet),
    }
    (output / "training_config.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {output} ({record['cpu_minutes']} CPU-minutes, {step} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
