"""Train a (class-conditional) DDPM with ddpm_hub, on one CPU or many GPUs.

    accelerate launch training/train.py --output_dir runs/mnist           # one process
    accelerate launch --multi_gpu --num_processes 2 training/train.py ... # two processes (gloo on CPU, NCCL on GPU)
    python training/train.py --output_dir runs/mnist                      # plain python works too

The loop is the DDPM training algorithm (Ho et al. 2020, Algorithm 1), one micro-batch of which is
`ddpm_hub.training.diffusion_loss`; every formula comes from the scheduler. The output folder holds the final pipeline
(EMA weights), a model card and a sample grid; checkpoints and logs go to their own folders and are never part of the
published pipeline. `main` runs the phases in order: arguments, data, model, the loop, save and publish.
"""

import argparse
import ctypes
import errno
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
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
from ddpm_hub.training import DEFAULT_GUIDANCE_SCALE, LOSSES, diffusion_loss, make_ema, step_generator

logger = get_logger(__name__, log_level="INFO")

CHECKPOINT_PREFIX = "checkpoint-"
TIMESTEP_BUCKETS = 10  # the loss is also logged per tenth of [0, T)
LONG_RUN_STEPS = 1000  # runs this long or longer get the full sample grid (8 per class), shorter ones one per class
SAMPLE_INFERENCE_STEPS = (10, 100)  # DDPM steps of the sample grids: a tenth of the run's steps, within these


class TrainingError(RuntimeError):
    """A training run that cannot go on; the message says why and what is left on disk."""


# ----------------------------------------------------------------------------------------------------------------
# Phase 1: arguments, checked when they are parsed
# ----------------------------------------------------------------------------------------------------------------


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that reads `-1e-3` as a (negative) number, as Python 3.13's does: before 3.13 only `-1` and `-1.5`
    look like numbers, and `--learning_rate -1e-3` fails with "expected one argument" instead of naming the
    problem. No flag of train.py starts with a digit, so no option can be mistaken for a number."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"-\.?\d")


def _number(convert, low=None, high=None, *, above: bool = False, below: bool = False):
    """An argparse `type=` for a finite number in a range: `convert` (int or float) of the text, at least `low` (more
    than `low` when `above`) and at most `high` (less than `high` when `below`). argparse names the flag in the
    error: `argument --learning_rate: must be > 0, got -0.001`."""
    if low is not None and high is not None:
        rule = f"in {'(' if above else '['}{low}, {high}{')' if below else ']'}"
    elif low is not None:
        rule = f"{'>' if above else '>='} {low}"
    else:
        rule = f"{'<' if below else '<='} {high}"
    kind = "an integer" if convert is int else "a number"

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {kind} {rule}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number {rule}, got {text!r}")
        if low is not None and (value <= low if above else value < low):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {value!r}")
        if high is not None and (value >= high if below else value > high):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {value!r}")
        return value

    parse.__name__ = convert.__name__  # argparse's own messages say "invalid int value"
    return parse


POSITIVE_INT = _number(int, 1)
NON_NEGATIVE_INT = _number(int, 0)
POSITIVE = _number(float, 0, above=True)
NON_NEGATIVE = _number(float, 0)
FRACTION = _number(float, 0, 1, below=True)  # a probability, a dropout rate, a decay, Adam's betas: [0, 1)


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """`--help` shows each flag's default; None / False defaults (= off, or worked out at run time, as the help
    text says) are left out."""
    for action in parser._actions:
        text = action.help or ""
        off = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if action.option_strings and not off and "default" not in text:
            action.help = f"{text} (default: %(default)s)".lstrip()


def parse_args(argv=None) -> argparse.Namespace:
    parser = _ArgumentParser(description=__doc__.split("\n")[0])
    data = parser.add_argument_group("data (one of --dataset, --train_data_dir, --dataset_name)")
    data.add_argument("--dataset", choices=["mnist5k"], default=None, help="the built-in 5,000 MNIST digits")
    data.add_argument("--train_data_dir", default=None, help="a folder of images; sub-folders become class labels")
    data.add_argument("--dataset_name", default=None, help="a Hub dataset, loaded with `datasets`")
    data.add_argument("--dataset_split", default="train")
    data.add_argument("--image_column", default="image")
    data.add_argument("--label_column", default="label", help="'' for none")
    data.add_argument("--resolution", type=POSITIVE_INT, default=28)
    data.add_argument("--channels", type=POSITIVE_INT, default=1)

    model = parser.add_argument_group("model")
    model.add_argument("--model_preset", choices=sorted(UNET_PRESETS), default="small")
    model.add_argument("--block_out_channels", type=POSITIVE_INT, nargs="+", default=None, help="overrides the preset")
    model.add_argument("--layers_per_block", type=POSITIVE_INT, default=None, help="overrides the preset")
    model.add_argument("--dropout", type=FRACTION, default=None, help="overrides the preset")
    model.add_argument("--class_conditional", choices=["auto", "yes", "no"], default="auto")
    model.add_argument(
        "--label_dropout", type=FRACTION, default=0.1, help="share of labels replaced by the null class, in [0, 1)"
    )
    model.add_argument("--prediction_type", choices=["epsilon", "sample", "v_prediction"], default="epsilon")
    model.add_argument(
        "--beta_schedule",
        choices=["linear", "scaled_linear", "squaredcos_cap_v2", "cosine", "sigmoid"],
        default="linear",
    )
    model.add_argument("--num_train_timesteps", type=POSITIVE_INT, default=1000)
    model.add_argument(
        "--loss",
        choices=LOSSES,
        default="simple",
        help="simple = L_simple; weighted = the ELBO's w(t); min_snr = min-SNR-gamma",
    )
    model.add_argument("--snr_gamma", type=POSITIVE, default=5.0)

    train = parser.add_argument_group("optimisation")
    train.add_argument("--train_batch_size", type=POSITIVE_INT, default=64, help="per process")
    train.add_argument("--max_train_steps", type=POSITIVE_INT, default=2000)
    train.add_argument("--gradient_accumulation_steps", type=POSITIVE_INT, default=1)
    train.add_argument("--learning_rate", type=POSITIVE, default=1e-3)
    train.add_argument("--lr_scheduler", default="cosine", help="any of diffusers.optimization.get_scheduler")
    train.add_argument("--lr_warmup_steps", type=NON_NEGATIVE_INT, default=100)
    train.add_argument("--adam_beta1", type=FRACTION, default=0.9)
    train.add_argument("--adam_beta2", type=FRACTION, default=0.999)
    train.add_argument("--adam_weight_decay", type=NON_NEGATIVE, default=0.0)
    train.add_argument("--max_grad_norm", type=POSITIVE, default=1.0)
    train.add_argument(
        "--mixed_precision", choices=["no", "bf16", "fp16"], default=None, help="default: accelerate's config"
    )
    train.add_argument("--use_ema", action=argparse.BooleanOptionalAction, default=True)
    train.add_argument("--ema_max_decay", type=FRACTION, default=0.999)
    train.add_argument("--ema_power", type=POSITIVE, default=2 / 3)
    train.add_argument("--seed", type=NON_NEGATIVE_INT, default=0)

    out = parser.add_argument_group("checkpoints, logs, output")
    out.add_argument("--output_dir", required=True, help="the final pipeline is saved here")
    out.add_argument("--checkpoints_dir", default=None, help="default: OUTPUT_DIR/checkpoints")
    out.add_argument("--logging_dir", default=None, help="default: OUTPUT_DIR/logs")
    out.add_argument("--checkpointing_steps", type=POSITIVE_INT, default=500)
    out.add_argument("--checkpoints_total_limit", type=POSITIVE_INT, default=2)
    out.add_argument("--resume_from_checkpoint", default=None, help="a checkpoint folder, or 'latest'")
    out.add_argument("--report_to", default="tensorboard", help="'tensorboard' or 'none'")
    out.add_argument("--logging_steps", type=POSITIVE_INT, default=50)
    out.add_argument(
        "--sample_steps",
        type=NON_NEGATIVE_INT,
        default=500,
        help="log a sample grid to TensorBoard every N steps (0: never; the last step's is samples.png)",
    )
    out.add_argument(
        "--num_sample_images",
        type=NON_NEGATIVE_INT,
        default=None,
        help=f"images in each sample grid and samples.png (0: none). Default: proportionate to the run, one per class "
        f"(8 for an unconditional model) for runs under {LONG_RUN_STEPS:,} steps, 8 per class (32) for longer ones; "
        "a class-conditional model gets N // classes per class, at least one",
    )
    out.add_argument(
        "--sample_inference_steps",
        type=POSITIVE_INT,
        default=None,
        help="DDPM steps for the sample grids; default: proportionate to the run, a tenth of --max_train_steps, "
        f"between {SAMPLE_INFERENCE_STEPS[0]} and {SAMPLE_INFERENCE_STEPS[1]}, and at most --num_train_timesteps",
    )
    out.add_argument(
        "--guidance_scale",
        type=NON_NEGATIVE,
        default=None,
        help="classifier-free guidance w for the sample grids and the model card (0: unconditional, 1: plain "
        f"conditional); default: {DEFAULT_GUIDANCE_SCALE}, the documented default of a model not yet measured",
    )

    out.add_argument(
        "--torch_threads",
        type=NON_NEGATIVE_INT,
        default=1,
        help="CPU threads per process; 1 ran a step 2.1x faster than 2 beside another busy process on 2 cores, 2 ran "
        "1.7x faster on a quiet machine (benchmarks/results/threads.json); 0: torch's default",
    )

    hub = parser.add_argument_group("publishing")
    hub.add_argument("--push_to_hub", action="store_true")
    hub.add_argument("--hub_model_id", default=None, help="ORG/NAME")
    hub.add_argument("--hub_token", default=None)
    hub.add_argument("--hub_private_repo", action="store_true")
    hub.add_argument(
        "--hub_mirror_dir",
        default=None,
        help="commit the pipeline into an olah-style mirror tree (MIRROR_DIR/models/ORG/NAME, a git repository) that "
        "`olah` serves as a Hub; see the README",
    )

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
    if args.sample_inference_steps is None:
        fewest, most = SAMPLE_INFERENCE_STEPS
        args.sample_inference_steps = min(max(fewest, min(most, args.max_train_steps // 10)), args.num_train_timesteps)
    elif args.sample_inference_steps > args.num_train_timesteps:
        parser.error(
            f"argument --sample_inference_steps: must be <= --num_train_timesteps ({args.num_train_timesteps}), "
            f"got {args.sample_inference_steps}"
        )
    # The one place the default w is decided: the samples, training_config.json and the model card use it, and the
    # pipeline's config will record it (model_index.json's `guidance_scale`). Not `or`: an explicit 0 is a w.
    if args.guidance_scale is None:
        args.guidance_scale = DEFAULT_GUIDANCE_SCALE
    args.checkpoints_dir = args.checkpoints_dir or os.path.join(args.output_dir, "checkpoints")
    args.logging_dir = args.logging_dir or os.path.join(args.output_dir, "logs")
    return args


# ----------------------------------------------------------------------------------------------------------------
# Reports that cannot stop the run
# ----------------------------------------------------------------------------------------------------------------


class SafeStream:
    """sys.stdout / sys.stderr of a training run: a write or flush that fails is dropped instead of raising, so no
    report (print, logging, tqdm) can end the run or lose its checkpoint.

    Under `accelerate launch` (1.16+) stderr is a pipe that the launcher relays; once the launcher is gone (killed,
    even by `kill -9`) every write to it fails with EPIPE. Then, and on EIO (a terminal that hung up), the stream's
    file descriptor is pointed at os.devnull: everything holding the stream or the descriptor (logging's handlers,
    tqdm's bars, C code writing to fd 2) writes there from then on without failing. Other errors (a full disk) only
    drop that one write.
    """

    GONE = (errno.EPIPE, errno.EIO)  # the reader or the terminal is gone for good

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except (OSError, ValueError) as error:  # ValueError: the stream object was closed
            self._failed(error)
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError) as error:
            self._failed(error)

    def _failed(self, error: Exception) -> None:
        if not (isinstance(error, OSError) and error.errno in self.GONE):
            return
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError, AttributeError):  # no descriptor to redirect: writes keep failing quietly
            pass

    def __getattr__(self, name: str):  # encoding, fileno, isatty, ... of the real stream
        return getattr(self.stream, name)


def guard_report_streams() -> None:
    """Wrap sys.stdout and sys.stderr in `SafeStream` (once), before logging and tqdm take hold of them."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, SafeStream):
            setattr(sys, name, SafeStream(stream))


# ----------------------------------------------------------------------------------------------------------------
# Stopping: SIGTERM, SIGINT (Ctrl-C) and SIGHUP end the run at the next step boundary, after a checkpoint
# ----------------------------------------------------------------------------------------------------------------


class StopRequest:
    """Remembers a SIGTERM, SIGINT (Ctrl-C) or SIGHUP; the loop checkpoints at the next step boundary, then reports
    and exits.

    The handler only records the signal: it writes nothing, since a write can fail (a launcher that died took the
    pipe of stderr with it) or re-enter a stream that the main code was writing when the signal came. The same
    signal a second time stops at once (its default action), losing the steps since the last checkpoint. A
    different one only confirms the stop: Ctrl-C under `accelerate launch` reaches both the launcher and this
    process, the launcher then sends a SIGTERM, and its death a SIGHUP (see `_stop_when_launcher_dies`).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: list[str] = []  # signal names, first first

    def install(self) -> None:
        for signum in self.SIGNALS:
            signal.signal(signum, self._handle)
        if _launcher() == "accelerate launch":
            _stop_when_launcher_dies()

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if name in self.received:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received.append(name)

    @property
    def signal_name(self) -> str | None:
        """The first signal received, or None."""
        return self.received[0] if self.received else None

    def describe(self) -> str:
        """What stopped the run, for the report: "SIGINT received (then SIGTERM, SIGHUP)"."""
        if not self.received:
            return "another process received a signal"
        first, *rest = self.received
        return f"{first} received" + (f" (then {', '.join(rest)})" if rest else "")

    def __bool__(self) -> bool:
        return bool(self.received)


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
# The data source and the model's configuration
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


# ----------------------------------------------------------------------------------------------------------------
# Phase 2: data
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class TrainingData:
    images: torch.Tensor  # (N, C, H, W) in [-1, 1]
    class_names: list[str] | None  # label i is class_names[i]
    num_classes: int | None  # None: an unconditional model
    dataloader: torch.utils.data.DataLoader  # batches {"images": (B, C, H, W), "labels": (B,)}, per process


def prepare_data(args, accelerator: Accelerator) -> TrainingData:
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
    return TrainingData(images, class_names, num_classes, dataloader)


# ----------------------------------------------------------------------------------------------------------------
# Phase 3: model, optimiser, EMA, and the state of a resumed run
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class TrainingModel:
    unet: torch.nn.Module  # prepared by accelerate (wrapped in DDP with several processes)
    scheduler: DDPMHubScheduler
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: object | None  # diffusers' EMAModel (`ddpm_hub.training.make_ema`), or None with --no-use_ema


def prepare_model(args, accelerator: Accelerator, data: TrainingData) -> tuple[TrainingModel, dict]:
    """The model and its optimiser, prepared by accelerate, and the progress record (`progress.json`): that of the
    checkpoint resumed from, or a new run's."""
    unet = build_unet(args, data.num_classes)
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
        ema = make_ema(unet, max_decay=args.ema_max_decay, power=args.ema_power)
        accelerator.register_for_checkpointing(ema)
    unet, optimizer, data.dataloader, lr_scheduler = accelerator.prepare(
        unet, optimizer, data.dataloader, lr_scheduler
    )

    progress = {"global_step": 0, "epoch": 0, "cpu_seconds": 0.0, "wall_seconds": 0.0, "stopped_by": None}
    checkpoint = resolve_checkpoint(args)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        progress.update(json.loads((checkpoint / "progress.json").read_text()))
        logger.info(f"resumed from {checkpoint} at step {progress['global_step']}")
    return TrainingModel(unet, scheduler, optimizer, lr_scheduler, ema), progress


# ----------------------------------------------------------------------------------------------------------------
# Phase 4: the loop
# ----------------------------------------------------------------------------------------------------------------


def train_loop(args, accelerator, data: TrainingData, model: TrainingModel, progress: dict, stop: StopRequest):
    """Trains from `progress["global_step"]` to --max_train_steps, with checkpoints; returns the last progress record,
    or None when a signal stopped the run (after a checkpoint at the step it was in)."""
    unet, ema, dataloader = model.unet, model.ema, data.dataloader
    global_step = resumed_step = progress["global_step"]
    steps_per_epoch = len(dataloader) // args.gradient_accumulation_steps
    buckets = TimestepBuckets(args.num_train_timesteps)
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
            mean_loss = train_step(args, accelerator, data, model, batch, micro_step, global_step, buckets)
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
                logs = {"loss": last_loss, "lr": model.lr_scheduler.get_last_lr()[0], "epoch": epoch}
                if ema is not None:
                    logs["ema_decay"] = ema.cur_decay_value
                accelerator.log({**logs, **buckets.pop_means()}, step=global_step)
            # the last step's grid is samples.png (`save_pipeline`, which logs it too): the same weights, drawn once
            if (
                args.sample_steps
                and global_step % args.sample_steps == 0
                and global_step < args.max_train_steps
                and accelerator.is_main_process
            ):
                log_samples(accelerator, model, data.num_classes, args, global_step)
            stopping = bool(stop)
            if accelerator.num_processes > 1:  # a signal may reach one process only: all stop together
                stopping = bool(accelerator.reduce(torch.tensor(float(stopping), device=accelerator.device), "sum"))
            if global_step % args.checkpointing_steps == 0 or global_step == args.max_train_steps or stopping:
                progress = dict(
                    progress,
                    global_step=global_step,
                    epoch=epoch,
                    cpu_seconds=progress["cpu_seconds"] + time.process_time() - started_cpu,
                    wall_seconds=progress["wall_seconds"] + time.time() - started_wall,
                    # why this checkpoint was written: the record that survives when no report can reach anyone
                    stopped_by=(stop.signal_name or "another process") if stopping else None,
                )
                started_cpu, started_wall = time.process_time(), time.time()
                save_checkpoint(accelerator, args, global_step, progress)
            # checkpointed first, then reported: a report that cannot be written loses nothing. A stop that lands on
            # the last step lets the finished run save its pipeline.
            if stopping and global_step < args.max_train_steps:
                bar.close()
                logger.info(
                    f"{stop.describe()}: stopped at step {global_step} of {args.max_train_steps}; the checkpoint is "
                    f"{Path(args.checkpoints_dir) / f'{CHECKPOINT_PREFIX}{global_step}'}. To go on, rerun the same "
                    "command with --resume_from_checkpoint latest"
                )
                return None
            if global_step >= args.max_train_steps:
                break
        epoch += 1
    bar.close()
    if first_loss is not None:
        first_step = resumed_step + 1
        resumed = f" (resumed from step {resumed_step})" if resumed_step else ""
        logger.info(
            f"trained to step {global_step}{resumed}: loss {first_loss:.4f} at step {first_step}, "
            f"{last_loss:.4f} at step {global_step}"
        )
    return progress


def train_step(args, accelerator, data, model, batch, micro_step: int, global_step: int, buckets) -> torch.Tensor:
    """One micro-batch: the loss, its gradient and (at the end of an accumulation) the optimiser step. Returns the
    loss averaged over the processes, ()."""
    unet = model.unet
    rng = step_generator(args.seed, micro_step, accelerator.process_index)
    with accelerator.accumulate(unet):
        step_loss = diffusion_loss(
            unet,
            model.scheduler,
            batch["images"],  # (B, C, H, W)
            batch["labels"] if data.num_classes else None,
            rng,
            loss=args.loss,
            snr_gamma=args.snr_gamma,
            label_dropout=args.label_dropout,
        )
        accelerator.backward(step_loss.loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(unet.parameters(), args.max_grad_norm)
        model.optimizer.step()
        model.lr_scheduler.step()
        model.optimizer.zero_grad(set_to_none=True)

    mean_loss = accelerator.reduce(step_loss.loss.detach(), reduction="mean")
    if not torch.isfinite(mean_loss):
        last = list_checkpoints(args.checkpoints_dir)
        raise TrainingError(
            f"loss is {mean_loss.item()} at step {global_step}: stopping. The last good checkpoint is "
            f"{last[-1] if last else '(none yet)'}; resume with a lower --learning_rate."
        )
    buckets.add(step_loss.timesteps, step_loss.per_sample)
    return mean_loss


class TimestepBuckets:
    """The loss per tenth of [0, T) since the last log, from each sample's unweighted error."""

    def __init__(self, num_train_timesteps: int) -> None:
        self.num_train_timesteps = num_train_timesteps
        self.sums = torch.zeros(TIMESTEP_BUCKETS)
        self.counts = torch.zeros(TIMESTEP_BUCKETS)

    def add(self, timesteps: torch.Tensor, per_sample: torch.Tensor) -> None:
        """timesteps (B,) long, per_sample (B,) errors."""
        bucket = (timesteps * TIMESTEP_BUCKETS // self.num_train_timesteps).cpu()
        self.sums.index_add_(0, bucket, per_sample.detach().float().cpu())
        self.counts.index_add_(0, bucket, torch.ones_like(bucket, dtype=torch.float))

    def pop_means(self) -> dict[str, float]:
        """{"loss_by_t/0000": mean, ...} for the buckets that saw a sample; then starts again."""
        means = {}
        for i in range(TIMESTEP_BUCKETS):
            if self.counts[i] > 0:
                low = i * self.num_train_timesteps // TIMESTEP_BUCKETS
                means[f"loss_by_t/{low:04d}"] = (self.sums[i] / self.counts[i]).item()
        self.sums.zero_()
        self.counts.zero_()
        return means


# ----------------------------------------------------------------------------------------------------------------
# Sample grids, for the logs and the output folder
# ----------------------------------------------------------------------------------------------------------------


def grid_layout(args, num_classes: int | None) -> tuple[torch.Tensor | None, int, int]:
    """The labels (N,) of a sample grid (None for an unconditional model), its image count N and its columns.

    Proportionate to the run unless --num_sample_images says: one image per class (8 unconditional) for a run under
    LONG_RUN_STEPS steps, 8 per class (32 unconditional) for a longer one. A conditional grid has one row per class
    (a single row when there is one image per class)."""
    count = args.num_sample_images
    long_run = args.max_train_steps >= LONG_RUN_STEPS
    if not num_classes:
        count = (32 if long_run else 8) if count is None else count
        return None, count, 8
    if count == 0:
        return torch.zeros(0, dtype=torch.long), 0, min(num_classes, 10)
    per_class = (8 if long_run else 1) if count is None else max(1, count // num_classes)
    labels = torch.arange(num_classes).repeat_interleave(per_class)  # (N,) class 0's images first
    return labels, len(labels), per_class if per_class > 1 else min(num_classes, 10)


def sample_grid(unet, scheduler_config, num_classes, args, seed: int = 0, purpose: str = ""):
    """A fixed-seed grid (see `grid_layout`): (N, C, H, W) in [-1, 1] and its columns; None when N is 0."""
    labels, batch, columns = grid_layout(args, num_classes)
    if batch == 0:
        return None
    # Strided ancestral DDPM: with guidance, it gives cleaner digits than deterministic DDIM at the same step count.
    pipeline = DDPMHubPipeline(unet=unet, scheduler=DDPMHubScheduler.from_config(scheduler_config))
    pipeline.set_progress_bar_config(disable=True)
    guidance = args.guidance_scale if num_classes else 1.0
    steps = args.sample_inference_steps
    # Sampling can take a while (80 images of the default model at 100 steps: ~35 s on 2 CPU cores): say so before
    # and after.
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
    return to_minus_one_one(images), columns


def grid_image(images: torch.Tensor, columns: int = 8):
    """(N, C, H, W) in [-1, 1] -> one PIL image, `columns` wide."""
    rows = math.ceil(len(images) / columns)
    n, c, h, w = images.shape
    padded = torch.full((rows * columns, c, h, w), -1.0)
    padded[:n] = images.cpu()
    grid = padded.reshape(rows, columns, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, rows * h, columns * w)
    return to_pil(grid)[0]


def log_grid(accelerator, images: torch.Tensor, step: int) -> None:
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_images("samples", to_zero_one(images), step)


def log_samples(accelerator, model: TrainingModel, num_classes, args, step: int) -> None:
    """A grid from the EMA weights (the weights that will be saved), logged to TensorBoard."""
    unet = accelerator.unwrap_model(model.unet)
    if model.ema is not None:
        model.ema.store(unet.parameters())
        model.ema.copy_to(unet.parameters())
    unet.eval()
    grid = sample_grid(unet, model.scheduler.config, num_classes, args, purpose=f" for step {step}")
    if model.ema is not None:
        model.ema.restore(unet.parameters())
    unet.train()
    if grid is not None:
        log_grid(accelerator, grid[0], step)


# ----------------------------------------------------------------------------------------------------------------
# Phase 5: save and publish
# ----------------------------------------------------------------------------------------------------------------


def save_pipeline(accelerator, model: TrainingModel, data: TrainingData, args, progress: dict) -> None:
    """Saves the EMA weights as a pipeline, with a sample grid and a model card; then publishes if asked."""
    from ddpm_hub.hub import HubPushError, push_to_hub, push_to_mirror, write_model_card

    unet = accelerator.unwrap_model(model.unet)
    if model.ema is not None:
        model.ema.copy_to(unet.parameters())
    unet.eval()
    # args.guidance_scale (DEFAULT_GUIDANCE_SCALE unless given) is the w the model is published with: the pipeline's
    # config records it (model_index.json's `guidance_scale`, what `pipe(...)` uses), the card reads it from there.
    pipeline = DDPMHubPipeline(unet=unet, scheduler=model.scheduler, guidance_scale=args.guidance_scale)
    pipeline.save_pretrained(args.output_dir)
    grid = sample_grid(unet, model.scheduler.config, data.num_classes, args, purpose=" for samples.png")
    if grid is not None:
        grid_image(*grid).save(os.path.join(args.output_dir, "samples.png"))
        log_grid(accelerator, grid[0], progress["global_step"])
    training = {
        "command": _launcher() + " training/train.py " + " ".join(_explicit_args(args)),
        "processes": accelerator.num_processes,
        "torch_threads": torch.get_num_threads(),
        "mixed_precision": accelerator.mixed_precision,
        "steps": progress["global_step"],
        "cpu_minutes": round(progress["cpu_seconds"] / 60, 1),
        "wall_minutes": round(progress["wall_seconds"] / 60, 1),
        "parameters": sum(p.numel() for p in unet.parameters()),
        **{k: v for k, v in vars(args).items() if not k.startswith("hub_")},
        "data": data_record(args, data.images, data.class_names, data.num_classes),
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


# ----------------------------------------------------------------------------------------------------------------
# The phases in order
# ----------------------------------------------------------------------------------------------------------------


def start_run(args) -> tuple[Accelerator, StopRequest]:
    """Threads, logging, accelerate, the stop signals and the seed."""
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
    return accelerator, stop


def main(argv=None) -> None:
    guard_report_streams()  # first: logging and tqdm keep the streams they find
    args = parse_args(argv)
    accelerator, stop = start_run(args)
    data = prepare_data(args, accelerator)
    model, progress = prepare_model(args, accelerator, data)
    if accelerator.is_main_process:
        accelerator.init_trackers("ddpm-hub", config={k: str(v) for k, v in vars(args).items()})
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    progress = train_loop(args, accelerator, data, model, progress, stop)
    if progress is not None:  # None: stopped by a signal, with a checkpoint to resume from
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            save_pipeline(accelerator, model, data, args, progress)
    accelerator.end_training()


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
