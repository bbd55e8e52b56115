"""Train a (class-conditional) DDPM with ddpm_hub, on one CPU or many GPUs.

    accelerate launch training/train.py --output_dir runs/mnist           # one process
    accelerate launch --multi_gpu --num_processes 2 training/train.py ... # two processes (gloo on CPU, NCCL on GPU)
    python training/train.py --output_dir runs/mnist                      # plain python works too

The loop is the DDPM training algorithm (Ho et al. 2020, Algorithm 1): x_0 from the data, t ~ U{0..T-1},
eps ~ N(0, I), x_t = add_noise(x_0, eps, t), and a gradient step on the (weighted) error of the model's prediction.
Every formula comes from the scheduler. The output folder holds the final pipeline (EMA weights), a model card and a
sample grid; checkpoints and logs go to their own folders and are never part of the published pipeline.
"""

import argparse
import ctypes
import json
import logging
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, extract_model_from_parallel, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from ddpm_hub import UNET_PRESETS, DDPMHubPipeline, DDPMHubScheduler, DDPMHubUNet2DModel
from ddpm_hub.data import (
    ImageTensorDataset,
    load_hub_dataset,
    load_image_folder,
    load_mnist5k,
    to_minus_one_one,
    to_pil,
    to_zero_one,
)

logger = get_logger(__name__, log_level="INFO")

LOSSES = ("simple", "weighted", "min_snr")
CHECKPOINT_PREFIX = "checkpoint-"
TIMESTEP_BUCKETS = 10  # the loss is also logged per tenth of [0, T)


class TrainingError(RuntimeError):
    """A training run that cannot go on; the message says why and what is left on disk."""


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """`--help` shows each flag's default; None / False defaults (= off, or worked out at run time, as the help
    text says) are left out."""
    for action in parser._actions:
        text = action.help or ""
        off = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if action.option_strings and not off and "default" not in text:
            action.help = f"{text} (default: %(default)s)".lstrip()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    data = parser.add_argument_group("data (one of --dataset, --train_data_dir, --dataset_name)")
    data.add_argument("--dataset", choices=["mnist5k"], default=None, help="the built-in 5,000 MNIST digits")
    data.add_argument("--train_data_dir", default=None, help="a folder of images; sub-folders become class labels")
    data.add_argument("--dataset_name", default=None, help="a Hub dataset, loaded with `datasets`")
    data.add_argument("--dataset_split", default="train")
    data.add_argument("--image_column", default="image")
    data.add_argument("--label_column", default="label", help="'' for none")
    data.add_argument("--resolution", type=int, default=28)
    data.add_argument("--channels", type=int, default=1)

    model = parser.add_argument_group("model")
    model.add_argument("--model_preset", choices=sorted(UNET_PRESETS), default="small")
    model.add_argument("--block_out_channels", type=int, nargs="+", default=None, help="overrides the preset")
    model.add_argument("--layers_per_block", type=int, default=None, help="overrides the preset")
    model.add_argument("--dropout", type=float, default=None, help="overrides the preset")
    model.add_argument("--class_conditional", choices=["auto", "yes", "no"], default="auto")
    model.add_argument("--label_dropout", type=float, default=0.1, help="share of labels replaced by the null class")
    model.add_argument("--prediction_type", choices=["epsilon", "sample", "v_prediction"], default="epsilon")
    model.add_argument(
        "--beta_schedule",
        choices=["linear", "scaled_linear", "squaredcos_cap_v2", "cosine", "sigmoid"],
        default="linear",
    )
    model.add_argument("--num_train_timesteps", type=int, default=1000)
    model.add_argument(
        "--loss",
        choices=LOSSES,
        default="simple",
        help="simple = L_simple; weighted = the ELBO's w(t); min_snr = min-SNR-gamma",
    )
    model.add_argument("--snr_gamma", type=float, default=5.0)

    train = parser.add_argument_group("optimisation")
    train.add_argument("--train_batch_size", type=int, default=64, help="per process")
    train.add_argument("--max_train_steps", type=int, default=2000)
    train.add_argument("--gradient_accumulation_steps", type=int, default=1)
    train.add_argument("--learning_rate", type=float, default=1e-3)
    train.add_argument("--lr_scheduler", default="cosine", help="any of diffusers.optimization.get_scheduler")
    train.add_argument("--lr_warmup_steps", type=int, default=100)
    train.add_argument("--adam_beta1", type=float, default=0.9)
    train.add_argument("--adam_beta2", type=float, default=0.999)
    train.add_argument("--adam_weight_decay", type=float, default=0.0)
    train.add_argument("--max_grad_norm", type=float, default=1.0)
    train.add_argument(
        "--mixed_precision", choices=["no", "bf16", "fp16"], default=None, help="default: accelerate's config"
    )
    train.add_argument("--use_ema", action=argparse.BooleanOptionalAction, default=True)
    train.add_argument("--ema_max_decay", type=float, default=0.999)
    train.add_argument("--ema_power", type=float, default=2 / 3)
    train.add_argument("--seed", type=int, default=0)

    out = parser.add_argument_group("checkpoints, logs, output")
    out.add_argument("--output_dir", required=True, help="the final pipeline is saved here")
    out.add_argument("--checkpoints_dir", default=None, help="default: OUTPUT_DIR/checkpoints")
    out.add_argument("--logging_dir", default=None, help="default: OUTPUT_DIR/logs")
    out.add_argument("--checkpointing_steps", type=int, default=500)
    out.add_argument("--checkpoints_total_limit", type=int, default=2)
    out.add_argument("--resume_from_checkpoint", default=None, help="a checkpoint folder, or 'latest'")
    out.add_argument("--report_to", default="tensorboard", help="'tensorboard' or 'none'")
    out.add_argument("--logging_steps", type=int, default=50)
    out.add_argument("--sample_steps", type=int, default=500, help="log a sample grid every N steps (0: never)")
    out.add_argument("--sample_inference_steps", type=int, default=100, help="DDPM steps for the sample grids")
    out.add_argument("--guidance_scale", type=float, default=2.0, help="for the logged and saved sample grids")

    out.add_argument(
        "--torch_threads",
        type=int,
        default=1,
        help="CPU threads per process; 1 ran a step 2.1x faster than 2 beside another busy process on 2 cores, 2 ran "
        "1.7x faster on a quiet machine (benchmarks/results/threads.json); 0: torch's default",
    )

    hub = parser.add_argument_group("publishing")
    hub.add_argument("--push_to_hub", action="store_true")
    hub.add_argument("--hub_model_id", default=None, help="ORG/NAME")
    hub.add_argument("--hub_token", default=None)
    hub.add_argument("--hub_private_repo", action="store_true")
    hub.add_argument("--hub_mirror_dir", default=None, help="commit the pipeline into an olah-style mirror tree")

    _show_defaults(parser)
    args = parser.parse_args(argv)
    sources = [args.dataset, args.train_data_dir, args.dataset_name]
    if sum(s is not None for s in sources) > 1:
        parser.error("use only one of --dataset, --train_data_dir, --dataset_name")
    if all(s is None for s in sources):
        args.dataset = "mnist5k"
    if (args.push_to_hub or args.hub_mirror_dir) and not args.hub_model_id:
        parser.error("--push_to_hub / --hub_mirror_dir need --hub_model_id ORG/NAME")
    if args.loss == "weighted" and args.prediction_type != "epsilon":
        parser.error("--loss weighted is the ELBO weight for noise prediction: use --prediction_type epsilon")
    for name in ("max_train_steps", "train_batch_size", "gradient_accumulation_steps", "checkpointing_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    args.checkpoints_dir = args.checkpoints_dir or os.path.join(args.output_dir, "checkpoints")
    args.logging_dir = args.logging_dir or os.path.join(args.output_dir, "logs")
    return args


# ----------------------------------------------------------------------------------------------------------------
# Data and model
# ----------------------------------------------------------------------------------------------------------------


def load_training_data(args) -> tuple[torch.Tensor, torch.Tensor | None, list[str] | None]:
    """Images (N, C, H, W) in [-1, 1], labels (N,) or None, and the class names (label i is class_names[i]) or None,
    from the chosen source."""
    try:
        return _load_training_data(args)
    except ValueError as error:  # unreadable images, an empty folder, missing columns: the message says which
        raise TrainingError(str(error)) from error


def _load_training_data(args) -> tuple[torch.Tensor, torch.Tensor | None, list[str] | None]:
    if args.dataset == "mnist5k":
        if (args.resolution, args.channels) != (28, 1):
            raise TrainingError("mnist5k is 1 x 28 x 28: use --resolution 28 --channels 1")
        return (*load_mnist5k("train"), [str(digit) for digit in range(10)])
    if args.train_data_dir is not None:
        return load_image_folder(args.train_data_dir, args.resolution, args.channels)
    return load_hub_dataset(
        args.dataset_name,
        split=args.dataset_split,
        image_column=args.image_column,
        label_column=args.label_column or None,
        resolution=args.resolution,
        channels=args.channels,
    )


def data_record(args, images: torch.Tensor, class_names: list[str] | None, num_classes: int | None) -> dict:
    """The `data` entry of training_config.json: what the model card says about the data, and the label <-> class
    name (sub-folder, dataset label) mapping."""
    if args.dataset == "mnist5k":
        source, location = "mnist5k", "mnist5k"
    elif args.train_data_dir is not None:
        source, location = "image_folder", args.train_data_dir
    else:
        source, location = "hub_dataset", args.dataset_name
    return {
        "source": source,
        "location": location,
        "split": args.dataset_split if source == "hub_dataset" else None,
        "num_images": len(images),
        "resolution": images.shape[-1],
        "channels": images.shape[1],
        "class_names": class_names[:num_classes] if class_names and num_classes else None,
    }


def build_unet(args, num_classes: int | None) -> DDPMHubUNet2DModel:
    config = dict(UNET_PRESETS[args.model_preset])
    for key in ("block_out_channels", "layers_per_block", "dropout"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    config.update(
        sample_size=args.resolution,
        in_channels=args.channels,
        out_channels=args.channels,
        num_class_embeds=num_classes,
    )
    return DDPMHubUNet2DModel(**config)


def step_generator(seed: int, micro_step: int, process_index: int) -> torch.Generator:
    """The randomness of one micro-batch (t, eps, label dropout), fixed by (seed, step, process): resuming from a
    checkpoint draws exactly what the uninterrupted run drew, and every process draws differently."""
    return torch.Generator().manual_seed((seed * 1_000_003 + micro_step) * 64 + process_index)


def per_sample_weight(
    scheduler: DDPMHubScheduler, loss: str, timesteps: torch.Tensor, snr_gamma: float = 5.0
) -> torch.Tensor | None:
    """The loss weight of each sample, (B,), from the scheduler; None for L_simple."""
    if loss == "simple":
        return None
    if loss == "weighted":
        return scheduler.normalized_loss_weight(timesteps)
    if loss == "min_snr":
        return scheduler.min_snr_loss_weight(timesteps, snr_gamma)
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")


@dataclass
class StepLoss:
    """The loss of one micro-batch."""

    loss: torch.Tensor  # () the weighted mean: what backward() sees
    per_sample: torch.Tensor  # (B,) each sample's unweighted mean squared error
    timesteps: torch.Tensor  # (B,) the t drawn, on the CPU


def diffusion_loss(
    unet,
    scheduler: DDPMHubScheduler,
    x_0: torch.Tensor,
    labels: torch.Tensor | None,
    generator: torch.Generator,
    *,
    loss: str = "simple",
    snr_gamma: float = 5.0,
    label_dropout: float = 0.0,
    noise: torch.Tensor | None = None,
    timesteps: torch.Tensor | None = None,
) -> StepLoss:
    """One micro-batch of Algorithm 1 (the step `benchmarks/common.py` times too).

    Draws, from `generator` and in this order, eps ~ N(0, I), t ~ U{0..T-1} and the label dropout; then
    x_t = add_noise(x_0, eps, t), and the (weighted) mean squared error of the model's prediction against the
    scheduler's training target (eps, x_0 or v).

    Args:
        unet: the model, possibly wrapped by accelerate (DDP).
        x_0: (B, C, H, W) in [-1, 1]. labels: (B,) long, or None for an unconditional model.
        loss: "simple", "weighted" or "min_snr" (see `per_sample_weight`).
        noise, timesteps: given draws, (B, C, H, W) and (B,) long, instead of drawing them (to score a model on
            fixed draws); the label dropout is still drawn.
    """
    if noise is None:
        noise = torch.randn(x_0.shape, generator=generator).to(x_0)  # (B, C, H, W)
    if timesteps is None:
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (x_0.shape[0],), generator=generator)
    class_labels = None
    if labels is not None:  # the null class teaches the unconditional model that guidance needs
        class_labels = extract_model_from_parallel(unet).drop_class_labels(labels, label_dropout, generator)
    x_t = scheduler.add_noise(x_0, noise, timesteps)
    target = scheduler.training_target(x_0, noise, timesteps)
    prediction = unet(x_t, timesteps.to(x_0.device), class_labels=class_labels).sample
    per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))  # (B,)
    weight = per_sample_weight(scheduler, loss, timesteps, snr_gamma)
    mean = per_sample.mean() if weight is None else (per_sample * weight.to(per_sample)).mean()
    return StepLoss(loss=mean, per_sample=per_sample, timesteps=timesteps)


# ----------------------------------------------------------------------------------------------------------------
# Stopping: SIGTERM / SIGINT (Ctrl-C) end the run at the next step boundary, after a checkpoint
# ----------------------------------------------------------------------------------------------------------------


class StopRequest:
    """Remembers a SIGTERM, SIGINT (Ctrl-C) or SIGHUP; the loop checkpoints at the next step boundary and exits.

    The same signal a second time stops at once (its default action), losing the steps since the last checkpoint.
    A different one only confirms the stop: Ctrl-C under `accelerate launch` reaches both the launcher and this
    process, and the launcher's death then sends this process a SIGHUP (see `_stop_when_launcher_dies`).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._received: set[int] = set()

    def install(self) -> None:
        for signum in self.SIGNALS:
            signal.signal(signum, self._handle)
        if _launcher() == "accelerate launch":
            _stop_when_launcher_dies()

    def _handle(self, signum, frame) -> None:
        if signum in self._received:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self._received.add(signum)
        name = signal.Signals(signum).name
        if self.signal_name is None:
            self.signal_name = name
            text = f"{name} received: stopping after this step, with a checkpoint (send it again to stop at once)"
        else:
            text = f"{name} received: already stopping after this step"
        print(text, file=sys.stderr, flush=True)

    def __bool__(self) -> bool:
        return self.signal_name is not None


def _stop_when_launcher_dies() -> None:
    """Under `accelerate launch`, ask Linux for a SIGHUP when the launcher dies (even by `kill -9`: it forwards no
    signal), so that this process checkpoints and exits instead of training on, orphaned. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGHUP), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the launcher died before the request was made
        os.kill(os.getpid(), signal.SIGHUP)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints: written to a temporary folder and renamed, so a killed run never leaves a broken "latest"
# ----------------------------------------------------------------------------------------------------------------


def list_checkpoints(checkpoints_dir: str) -> list[Path]:
    """Complete checkpoints, oldest first. Half-written ones (`*.tmp`) are not listed."""
    root = Path(checkpoints_dir)
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and p.suffix != ".tmp"]
    return sorted(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def save_checkpoint(accelerator: Accelerator, args, global_step: int, progress: dict) -> None:
    final = Path(args.checkpoints_dir) / f"{CHECKPOINT_PREFIX}{global_step}"
    partial = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    if accelerator.is_main_process:
        (partial / "progress.json").write_text(json.dumps(progress))
        if final.exists():  # the same step saved by an earlier, interrupted run: the new one replaces it
            shutil.rmtree(final)
        os.replace(partial, final)  # atomic: the checkpoint appears complete or not at all
        for old in list_checkpoints(args.checkpoints_dir)[: -args.checkpoints_total_limit]:
            shutil.rmtree(old, ignore_errors=True)
        logger.info(f"saved {final}")
    accelerator.wait_for_everyone()


def resolve_checkpoint(args) -> Path | None:
    if args.resume_from_checkpoint is None:
        return None
    if args.resume_from_checkpoint == "latest":
        found = list_checkpoints(args.checkpoints_dir)
        if not found:
            logger.info(f"no checkpoint in {args.checkpoints_dir}: starting from scratch")
            return None
        return found[-1]
    path = Path(args.resume_from_checkpoint)
    if not (path / "progress.json").is_file():
        raise TrainingError(f"--resume_from_checkpoint {path} is not a complete checkpoint (no progress.json)")
    return path


# ----------------------------------------------------------------------------------------------------------------
# Sampling for logs and the output folder
# ----------------------------------------------------------------------------------------------------------------


def sample_grid(
    unet, scheduler_config, num_classes, args, steps: int, seed: int = 0, purpose: str = ""
) -> torch.Tensor:
    """A fixed-seed grid, one row per class (or 4 x 8 unconditional): (N, C, H, W) in [-1, 1]."""
    # Strided ancestral DDPM: with guidance, it gives cleaner digits than deterministic DDIM at the same step count.
    pipeline = DDPMHubPipeline(unet=unet, scheduler=DDPMHubScheduler.from_config(scheduler_config))
    pipeline.set_progress_bar_config(disable=True)
    if num_classes:
        labels = torch.arange(num_classes).repeat_interleave(8)
        batch, guidance = len(labels), args.guidance_scale
    else:
        labels, batch, guidance = None, 32, 1.0
    # Sampling takes a while (~35 s for the default model on 2 CPU cores): say so before and after.
    logger.info(f"sampling a grid of {batch} images{purpose}: {steps} DDPM steps, guidance {guidance} ...")
    started = time.perf_counter()
    images = pipeline(
        batch_size=batch,
        class_labels=labels,
        guidance_scale=guidance,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        output_type="pt",
    ).images
    logger.info(f"sampled the grid in {time.perf_counter() - started:.0f} s")
    return to_minus_one_one(images)


def grid_image(images: torch.Tensor, columns: int = 8):
    """(N, C, H, W) in [-1, 1] -> one PIL image, `columns` wide."""
    rows = math.ceil(len(images) / columns)
    n, c, h, w = images.shape
    padded = torch.full((rows * columns, c, h, w), -1.0)
    padded[:n] = images.cpu()
    grid = padded.reshape(rows, columns, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, rows * h, columns * w)
    return to_pil(grid)[0]


# ----------------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------------


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    accelerator = Accelerator(
        # On a machine without GPUs, `accelerate launch --multi_gpu --num_processes N` starts N CPU processes; they
        # only form one gloo process group (MULTI_CPU) when accelerate is told to use the CPU.
        cpu=not torch.accelerator.is_available(),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=args.logging_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )
    logger.info(accelerator.state, main_process_only=False)
    stop = StopRequest()
    stop.install()
    set_seed(args.seed)  # model initialisation is identical on every process and every run

    images, labels, class_names = load_training_data(args)
    conditional = {"auto": labels is not None, "yes": True, "no": False}[args.class_conditional]
    if conditional and labels is None:
        raise TrainingError("--class_conditional yes needs labels: the data source has none")
    num_classes = int(labels.max()) + 1 if conditional else None
    dataset = ImageTensorDataset(images, labels if conditional else None)
    if len(dataset) < args.train_batch_size * accelerator.num_processes:
        raise TrainingError(
            f"{len(dataset)} images cannot fill one batch of {args.train_batch_size} x {accelerator.num_processes}"
        )
    dataloader = torch.utils.data.DataLoader(
        dataset, batch_size=args.train_batch_size, shuffle=True, drop_last=True, num_workers=0
    )

    unet = build_unet(args, num_classes)
    scheduler = DDPMHubScheduler(
        num_train_timesteps=args.num_train_timesteps,
        beta_schedule=args.beta_schedule,
        prediction_type=args.prediction_type,
    )
    optimizer = torch.optim.AdamW(
        unet.parameters(),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
    )
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    ema = None
    if args.use_ema:
        ema = EMAModel(
            unet.parameters(),
            decay=args.ema_max_decay,
            use_ema_warmup=True,
            power=args.ema_power,
            model_cls=DDPMHubUNet2DModel,
            model_config=unet.config,
        )
        accelerator.register_for_checkpointing(ema)
    unet, optimizer, dataloader, lr_scheduler = accelerator.prepare(unet, optimizer, dataloader, lr_scheduler)

    global_step, progress = 0, {"global_step": 0, "epoch": 0, "cpu_seconds": 0.0, "wall_seconds": 0.0}
    checkpoint = resolve_checkpoint(args)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        progress = json.loads((checkpoint / "progress.json").read_text())
        global_step = progress["global_step"]
        logger.info(f"resumed from {checkpoint} at step {global_step}")
    if accelerator.is_main_process:
        accelerator.init_trackers("ddpm-hub", config={k: str(v) for k, v in vars(args).items()})
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)

    steps_per_epoch = len(dataloader) // args.gradient_accumulation_steps
    bucket_sums = torch.zeros(TIMESTEP_BUCKETS)
    bucket_counts = torch.zeros(TIMESTEP_BUCKETS)
    bar = tqdm(total=args.max_train_steps, initial=global_step, disable=not accelerator.is_local_main_process)
    started_cpu, started_wall = time.process_time(), time.time()
    epoch = first_epoch = global_step // steps_per_epoch
    first_loss = last_loss = None
    while global_step < args.max_train_steps:
        dataloader.set_epoch(epoch)
        skip = (global_step % steps_per_epoch) * args.gradient_accumulation_steps
        batches = accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
        unet.train()
        for micro_index, batch in enumerate(batches, start=skip):
            if micro_index == skip and epoch == first_epoch:  # shows that each process gets its own shard of the data
                checksum = batch["images"].double().sum().item()
                logger.info(
                    f"process {accelerator.process_index}: first batch checksum {checksum:.4f}",
                    main_process_only=False,
                )
            micro_step = epoch * len(dataloader) + micro_index
            rng = step_generator(args.seed, micro_step, accelerator.process_index)

            with accelerator.accumulate(unet):
                step_loss = diffusion_loss(
                    unet,
                    scheduler,
                    batch["images"],  # (B, C, H, W)
                    batch["labels"] if conditional else None,
                    rng,
                    loss=args.loss,
                    snr_gamma=args.snr_gamma,
                    label_dropout=args.label_dropout,
                )
                loss, per_sample, timesteps = step_loss.loss, step_loss.per_sample, step_loss.timesteps
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(unet.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)

            mean_loss = accelerator.reduce(loss.detach(), reduction="mean")
            if not torch.isfinite(mean_loss):
                last = list_checkpoints(args.checkpoints_dir)
                raise TrainingError(
                    f"loss is {mean_loss.item()} at step {global_step}: stopping. The last good checkpoint is "
                    f"{last[-1] if last else '(none yet)'}; resume with a lower --learning_rate."
                )
            bucket = (timesteps * TIMESTEP_BUCKETS // args.num_train_timesteps).cpu()
            bucket_sums.index_add_(0, bucket, per_sample.detach().float().cpu())
            bucket_counts.index_add_(0, bucket, torch.ones_like(bucket, dtype=torch.float))
            if not accelerator.sync_gradients:
                continue

            if ema is not None:
                ema.step(unet.parameters())
            global_step += 1
            bar.update(1)
            last_loss = mean_loss.item()
            first_loss = last_loss if first_loss is None else first_loss
            bar.set_postfix(loss=f"{last_loss:.4f}")
            if global_step % args.logging_steps == 0:
                logs = {"loss": mean_loss.item(), "lr": lr_scheduler.get_last_lr()[0], "epoch": epoch}
                if ema is not None:
                    logs["ema_decay"] = ema.cur_decay_value
                for i in range(TIMESTEP_BUCKETS):
                    if bucket_counts[i] > 0:
                        low = i * args.num_train_timesteps // TIMESTEP_BUCKETS
                        logs[f"loss_by_t/{low:04d}"] = (bucket_sums[i] / bucket_counts[i]).item()
                bucket_sums.zero_()
                bucket_counts.zero_()
                accelerator.log(logs, step=global_step)
            if args.sample_steps and global_step % args.sample_steps == 0 and accelerator.is_main_process:
                log_samples(accelerator, unet, ema, scheduler, num_classes, args, global_step)
            stopping = bool(stop)
            if accelerator.num_processes > 1:  # a signal may reach one process only: all stop together
                stopping = bool(accelerator.reduce(torch.tensor(float(stopping), device=accelerator.device), "sum"))
            checkpointed = global_step % args.checkpointing_steps == 0 or global_step == args.max_train_steps
            if checkpointed or stopping:
                progress = dict(
                    progress,
                    global_step=global_step,
                    epoch=epoch,
                    cpu_seconds=progress["cpu_seconds"] + time.process_time() - started_cpu,
                    wall_seconds=progress["wall_seconds"] + time.time() - started_wall,
                )
                started_cpu, started_wall = time.process_time(), time.time()
                save_checkpoint(accelerator, args, global_step, progress)
            if stopping:
                bar.close()
                accelerator.end_training()
                why = stop.signal_name or "a signal to another process"
                logger.info(
                    f"stopped at step {global_step} of {args.max_train_steps} ({why}): the checkpoint is "
                    f"{Path(args.checkpoints_dir) / f'{CHECKPOINT_PREFIX}{global_step}'}. To go on, rerun the same "
                    "command with --resume_from_checkpoint latest"
                )
                return
            if global_step >= args.max_train_steps:
                break
        epoch += 1
    bar.close()
    if first_loss is not None:
        logger.info(
            f"trained to step {global_step}: loss {first_loss:.4f} at the first step, {last_loss:.4f} at the last"
        )

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        data = data_record(args, images, class_names, num_classes)
        save_pipeline(accelerator, unet, ema, scheduler, num_classes, args, progress, data=data)
    accelerator.end_training()


def log_samples(accelerator, unet, ema, scheduler, num_classes, args, step):
    model = accelerator.unwrap_model(unet)
    if ema is not None:
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
    model.eval()
    images = sample_grid(
        model, scheduler.config, num_classes, args, args.sample_inference_steps, purpose=f" for step {step}"
    )
    if ema is not None:
        ema.restore(model.parameters())
    model.train()
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_images("samples", to_zero_one(images), step)


def save_pipeline(accelerator, unet, ema, scheduler, num_classes, args, progress, data: dict | None = None) -> None:
    """Saves the EMA weights as a pipeline, with a sample grid and a model card; then publishes if asked."""
    from ddpm_hub.hub import HubPushError, push_to_hub, push_to_mirror, write_model_card

    model = accelerator.unwrap_model(unet)
    if ema is not None:
        ema.copy_to(model.parameters())
    model.eval()
    pipeline = DDPMHubPipeline(unet=model, scheduler=scheduler)
    pipeline.save_pretrained(args.output_dir)
    grid = sample_grid(
        model, scheduler.config, num_classes, args, args.sample_inference_steps, purpose=" for samples.png"
    )
    grid_image(grid).save(os.path.join(args.output_dir, "samples.png"))
    training = {
        "command": _launcher() + " training/train.py " + " ".join(_explicit_args(args)),
        "processes": accelerator.num_processes,
        "torch_threads": torch.get_num_threads(),
        "mixed_precision": accelerator.mixed_precision,
        "steps": progress["global_step"],
        "cpu_minutes": round(progress["cpu_seconds"] / 60, 1),
        "wall_minutes": round(progress["wall_seconds"] / 60, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        **{k: v for k, v in vars(args).items() if not k.startswith("hub_")},
        "data": data,
    }
    Path(args.output_dir, "training_config.json").write_text(json.dumps(training, indent=2, default=str) + "\n")
    write_model_card(args.output_dir, repo_id=args.hub_model_id)
    logger.info(f"saved the pipeline to {args.output_dir}")
    try:
        if args.hub_mirror_dir:
            sha = push_to_mirror(args.output_dir, args.hub_mirror_dir, args.hub_model_id)
            logger.info(f"committed {sha} to the mirror {args.hub_mirror_dir}")
        if args.push_to_hub:
            url = push_to_hub(args.output_dir, args.hub_model_id, token=args.hub_token, private=args.hub_private_repo)
            logger.info(f"pushed to {url}")
    except (HubPushError, ValueError) as error:
        raise TrainingError(f"training finished, but publishing failed: {error}") from error


def _launcher() -> str:
    """How this process was started, for the record: accelerate's launcher sets ACCELERATE_* variables."""
    if any(name.startswith("ACCELERATE_") for name in os.environ):
        return "accelerate launch"
    return "python"


def _explicit_args(args) -> list[str]:
    """The command-line flags that differ from the defaults, to rerun this training."""
    defaults = vars(parse_args(["--output_dir", args.output_dir]))
    flags = [f"--output_dir {args.output_dir}"]
    for key, value in vars(args).items():
        if key in ("output_dir", "hub_token") or value == defaults.get(key) or value is None or value is False:
            continue
        if value is True:
            flags.append(f"--{key}")
        elif isinstance(value, (list, tuple)):
            flags.append(f"--{key} " + " ".join(map(str, value)))
        else:
            flags.append(f"--{key} {value}")
    return flags


if __name__ == "__main__":
    try:
        main()
    except TrainingError as error:
        logger.error(f"error: {error}")
        raise SystemExit(1) from None
