"""Shared pieces of the side-by-side benchmarks: the matched models, both training recipes, timing, the matmul peak,
and the results files.

Every benchmark runs ddpm-hub and stock diffusers in one process, on the same inputs, and prints ratios. Results go
to ``benchmarks/results/<name>.json``; :func:`write_results_md` rebuilds ``benchmarks/results/RESULTS.md`` from all
of them, one table per benchmark, each with the command that produced it.
"""

from __future__ import annotations

import copy
import datetime
import inspect
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, ImagePipelineOutput, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from diffusers.utils.torch_utils import randn_tensor
from torch.utils.flop_counter import FlopCounterMode

from ddpm_hub import DDPMHubScheduler, DDPMHubUNet2DModel
from ddpm_hub.data import to_zero_one
from ddpm_hub.training import diffusion_loss, make_ema, step_generator  # training/train.py's step, not a copy

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent

RESULTS_DIR = BENCH_DIR / "results"
NUM_CLASSES = 10

# ---------------------------------------------------------------------------------------------------------------------
# The matched models
# ---------------------------------------------------------------------------------------------------------------------

#: Our default model (the Space's): ``UNET_PRESETS["small"]``, class-conditional, 28x28x1.
OUR_PRESET = "small"

#: The stock ``diffusers.UNet2DModel`` matched to our "small" preset: the same three levels (28 -> 14 -> 7, channels
#: 16/32/64), one ResNet per level going down and two coming up, attention (2 heads of 32) at 7x7 and in the middle
#: block, GroupNorm with 8 groups (the stock default of 32 does not divide 16 channels). Parameters and FLOPs are
#: within 10% of ours; :func:`match_report` measures both.
STOCK_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 28,
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": (16, 32, 64),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    "norm_num_groups": 8,
    "attention_head_dim": 32,
}


def our_unet(seed: int = 0, conditional: bool = True) -> DDPMHubUNet2DModel:
    """Our default model, randomly initialised (speed does not depend on the weights' values)."""
    torch.manual_seed(seed)
    overrides = {} if conditional else {"num_class_embeds": None}
    return DDPMHubUNet2DModel.from_preset(OUR_PRESET, **overrides)


def stock_unet(seed: int = 0, conditional: bool = False) -> UNet2DModel:
    """The matched stock model; ``conditional`` adds stock class conditioning (``num_class_embeds=10``)."""
    torch.manual_seed(seed)
    return UNet2DModel(**STOCK_UNET_CONFIG, num_class_embeds=NUM_CLASSES if conditional else None)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _forward(model: torch.nn.Module, sample: torch.Tensor, timestep: torch.Tensor, labels: torch.Tensor | None):
    kwargs = {} if labels is None else {"class_labels": labels}
    return model(sample, timestep, **kwargs).sample


def model_is_conditional(model: torch.nn.Module) -> bool:
    return getattr(model.config, "num_class_embeds", None) is not None


@torch.no_grad()
def flops_per_image(model: torch.nn.Module, batch: int = 4) -> float:
    """FLOPs of one forward pass per 28x28 image, counted by ``torch.utils.flop_counter`` (convs, matmuls and
    attention; 2 FLOPs per multiply-add). Every counted op is linear in the batch, so B images cost B times this."""
    sample = torch.randn(batch, 1, 28, 28)
    timestep = torch.full((batch,), 500, dtype=torch.long)
    labels = torch.arange(batch) % NUM_CLASSES if model_is_conditional(model) else None
    with FlopCounterMode(display=False) as counter:
        _forward(model, sample, timestep, labels)
    return counter.get_total_flops() / batch


def match_report(ours: torch.nn.Module, stock: torch.nn.Module, tolerance: float = 0.10) -> dict[str, Any]:
    """Parameter counts and FLOPs of both models, their ratio, and whether each is within ``tolerance``."""
    ours_params, stock_params = count_parameters(ours), count_parameters(stock)
    ours_flops, stock_flops = flops_per_image(ours), flops_per_image(stock)
    report = {
        "ours": {"class": type(ours).__name__, "preset": OUR_PRESET, "parameters": ours_params},
        "stock": {"class": type(stock).__name__, "config": _jsonable(STOCK_UNET_CONFIG), "parameters": stock_params},
        "parameters_ratio_stock_over_ours": stock_params / ours_params,
        "mflops_per_image": {"ours": ours_flops / 1e6, "stock": stock_flops / 1e6},
        "flops_ratio_stock_over_ours": stock_flops / ours_flops,
    }
    report["ours"]["conditional"] = model_is_conditional(ours)
    report["stock"]["conditional"] = model_is_conditional(stock)
    report["within_tolerance"] = bool(
        abs(report["parameters_ratio_stock_over_ours"] - 1) <= tolerance
        and abs(report["flops_ratio_stock_over_ours"] - 1) <= tolerance
    )
    return report


def print_match_report(report: dict[str, Any]) -> None:
    ours, stock = report["ours"], report["stock"]
    flops = report["mflops_per_image"]
    print("matched models (torch.utils.flop_counter, per 28x28 image):")
    print(
        f"  ours  {ours['class']:<20} preset={ours['preset']:<6} {ours['parameters']:>9,d} params  "
        f"{flops['ours']:7.1f} MFLOP"
    )
    print(f"  stock {stock['class']:<20} {'':13} {stock['parameters']:>9,d} params  {flops['stock']:7.1f} MFLOP")
    print(
        f"  stock/ours: params {report['parameters_ratio_stock_over_ours']:.3f}, "
        f"FLOPs {report['flops_ratio_stock_over_ours']:.3f} -> "
        f"{'within 10%' if report['within_tolerance'] else 'NOT within 10%'}"
    )


# ---------------------------------------------------------------------------------------------------------------------
# Timing and the machine
# ---------------------------------------------------------------------------------------------------------------------


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (None keeps torch's default) and return the count in use."""
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on, and how busy the machine was (1/5/15-minute load averages)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import diffusers

    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def summarize(seconds: list[float]) -> dict[str, float]:
    """min / median / max of repeated timings (seconds). The min is the least disturbed by other processes."""
    return {
        "min": min(seconds),
        "median": statistics.median(seconds),
        "max": max(seconds),
        "n": len(seconds),
    }


def ratio_stats(numerators: list[float], denominators: list[float]) -> dict[str, Any]:
    """Per-repeat ratios ``numerators[i] / denominators[i]`` of two contestants timed in the same interleaved repeat
    (e.g. stock seconds / our seconds: the speed-up), summarised as median, min, max and n, with every ratio kept.
    A goal counts as met only when ``min`` clears it: the whole range, not just the typical repeat."""
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError(f"need as many timings (>= 1) on both sides, got {len(numerators)} and {len(denominators)}")
    ratios = [a / b for a, b in zip(numerators, denominators, strict=True)]
    return {
        "median": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "n": len(ratios),
        "per_repeat": ratios,
    }


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_ticks() -> tuple[int, int] | None:
    """(CPU ticks the whole machine spent busy, ticks this process spent), from /proc; None where there is none."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[11:13]  # utime, stime (all threads)
    except (OSError, ValueError, IndexError):
        return None
    busy = sum(values[:3]) + sum(values[5:8])  # user, nice, system, irq, softirq, steal (other VMs count too)
    return busy, sum(int(v) for v in own)


class OtherLoad:
    """How many CPU cores *other* processes (and the hypervisor's steal) kept busy between start() and stop():
    the disturbance a timing suffered. Reads /proc; returns NaN where /proc is missing."""

    def start(self) -> OtherLoad:
        self._ticks, self._time = _busy_ticks(), time.perf_counter()
        return self

    def stop(self) -> float:
        now, elapsed = _busy_ticks(), time.perf_counter() - self._time
        if now is None or self._ticks is None or elapsed <= 0:
            return math.nan
        others = (now[0] - self._ticks[0]) - (now[1] - self._ticks[1])
        return max(0.0, others / _CLOCK_TICKS / elapsed)


def add_timing_arguments(parser, retries: str | None = None, clock: bool = False) -> None:
    """The timing options the scripts share: --quiet_threshold and --quiet_timeout (`wait_for_quiet` before each
    timing); with `retries` (what a retake retakes, for its help), --retries; with `clock`, --clock (wall or CPU)."""
    retake = "; retake a timing they disturbed" if retries else ""
    parser.add_argument(
        "--quiet_threshold",
        type=float,
        default=0.3,
        help=f"before each timing, wait until other processes use fewer CPU cores than this{retake} "
        "(negative: never wait)",
    )
    parser.add_argument("--quiet_timeout", type=float, default=60.0, help="longest wait for quiet, seconds")
    if retries:
        parser.add_argument("--retries", type=int, default=2, help=f"retakes of a disturbed {retries}")
    if clock:
        parser.add_argument(
            "--clock",
            choices=["wall", "cpu"],
            default="wall",
            help="cpu: time.process_time (with --threads 1, robust to other processes taking turns on the cores)",
        )


def wait_for_quiet(threshold: float, timeout: float, window: float = 0.5) -> float:
    """Wait (at most ``timeout`` s) until other processes use less than ``threshold`` cores over ``window`` s;
    returns the seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        probe = OtherLoad().start()
        time.sleep(window)
        load = probe.stop()
        if math.isnan(load) or load < threshold:
            break
    return time.perf_counter() - start


def time_interleaved(
    calls: dict[str, Callable[[], Any]],
    repeats: int,
    quiet_threshold: float | None = None,
    quiet_timeout: float = 60.0,
    retries: int = 0,
    clock: str = "wall",
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds of each call, ``repeats`` times, interleaved (A B A B ...) so that a burst of load from another
    process hits every contestant alike, and the cores other processes used during each timing.

    ``clock="wall"`` (default) times with ``time.perf_counter``; ``clock="cpu"`` with ``time.process_time`` (CPU
    seconds of all this process's threads): with one thread that is the wall time the call would take on a quiet
    machine, and it is not inflated by other processes taking turns on the cores.

    With ``quiet_threshold`` (cores), each timing first waits up to ``quiet_timeout`` s for the other processes to
    go below it, and a timing during which they did not is taken again, up to ``retries`` times (the disturbed one
    is dropped only when the retry was quieter).

    Returns:
        (seconds, other_cores): name -> one value per repeat.
    """
    timer = {"wall": time.perf_counter, "cpu": time.process_time}[clock]
    times: dict[str, list[float]] = {name: [] for name in calls}
    loads: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            best: tuple[float, float] | None = None
            for _attempt in range(retries + 1):
                if quiet_threshold is not None:
                    wait_for_quiet(quiet_threshold, quiet_timeout)
                probe = OtherLoad().start()
                start = timer()
                call()
                seconds = timer() - start
                load = probe.stop()
                if best is None or load < best[1]:
                    best = (seconds, load)
                if quiet_threshold is None or not load >= quiet_threshold:
                    break
            times[name].append(best[0])
            loads[name].append(best[1])
    return times, loads


def matmul_peak_gflops(
    n: int = 2048,
    repeats: int = 10,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    quiet_threshold: float | None = None,
    quiet_timeout: float = 60.0,
) -> float:
    """The best GFLOP/s of an (n x n) @ (n x n) matmul with the current thread count: this CPU's practical peak
    (on a GPU: with torch's default float32 matmul precision, i.e. no TF32 unless enabled). With
    ``quiet_threshold``, each repeat first waits for other processes to use fewer cores than that."""
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    out = torch.empty(n, n, dtype=dtype, device=device)

    def sync():
        if out.device.type == "cuda":
            torch.cuda.synchronize()

    torch.mm(a, b, out=out)  # warm-up
    sync()
    best = math.inf
    for _ in range(repeats):
        if quiet_threshold is not None:
            wait_for_quiet(quiet_threshold, quiet_timeout)
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


# ---------------------------------------------------------------------------------------------------------------------
# Training: our recipe (training/train.py) and stock diffusers' (examples/unconditional_image_generation)
# ---------------------------------------------------------------------------------------------------------------------


class BatchStream:
    """Shuffled mini-batches of in-memory tensors, a new permutation per epoch, the last partial batch dropped.

    Both recipes read their batches through this, so data loading costs the same on both sides (a few microseconds
    of indexing; training/train.py's DataLoader and the example's torchvision transforms are left out).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int = 0):
        if len(images) < batch_size:
            raise ValueError(f"{len(images)} images cannot fill a batch of {batch_size}")
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._order, self._position = torch.empty(0, dtype=torch.long), 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._position + self.batch_size > len(self._order):
            self._order, self._position = torch.randperm(len(self.images), generator=self.generator), 0
        index = self._order[self._position : self._position + self.batch_size]
        self._position += self.batch_size
        return self.images[index], self.labels[index]


def warmup_steps(recipe_warmup: int, total_steps: int, fraction: float = 0.05) -> int:
    """The recipe's warm-up, shortened to ``fraction`` of the run when the run is short (the short benchmark)."""
    return max(1, min(recipe_warmup, int(fraction * total_steps)))


def cosine_schedule(optimizer: torch.optim.Optimizer, recipe_warmup: int, total_steps: int):
    """Both recipes' learning rate: linear warm-up (:func:`warmup_steps`) then cosine decay over ``total_steps``."""
    return get_scheduler(
        "cosine",
        optimizer=optimizer,
        num_warmup_steps=warmup_steps(recipe_warmup, total_steps),
        num_training_steps=total_steps,
    )


class OurRecipe:
    """One optimisation step of ``training/train.py`` as the default model is trained (one CPU process): the loss is
    ``ddpm_hub.training.diffusion_loss`` with ``step_generator``'s random numbers and the EMA is ``make_ema``'s, the
    functions train.py calls.

    AdamW (lr 1e-3, betas 0.9/0.999, no weight decay), linear warm-up then cosine decay, gradient clipping at 1.0,
    EMA (max decay 0.999, warm-up power 2/3), L_simple on the noise, class-conditional with 10% of the labels
    replaced by the null class (for classifier-free guidance), per-step random numbers from a seeded generator,
    a finiteness check of the loss every step. Accelerate is left out on both sides (on one CPU process it adds
    nothing to the step).
    """

    name = "ours"
    batch_size = 64
    learning_rate = 1e-3
    recipe_warmup = 200  # --lr_warmup_steps of the default model
    label_dropout = 0.1

    def __init__(
        self,
        unet: DDPMHubUNet2DModel | None = None,
        total_steps: int = 4000,
        seed: int = 0,
        batch_size: int | None = None,
        autocast_bf16: bool = False,
        device: str = "cpu",
    ):
        self.device = torch.device(device)
        self.unet = (unet if unet is not None else our_unet(seed)).to(self.device)
        self.unet.train()
        self.batch_size = batch_size or self.batch_size
        self.seed, self.micro_step = seed, 0
        self.autocast_bf16 = autocast_bf16
        self.scheduler = DDPMHubScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
        self.num_classes = self.unet.config.num_class_embeds
        self.optimizer = torch.optim.AdamW(
            self.unet.parameters(), lr=self.learning_rate, betas=(0.9, 0.999), weight_decay=0.0
        )
        self.total_steps = total_steps
        self.lr_scheduler = cosine_schedule(self.optimizer, self.recipe_warmup, total_steps)
        self.ema = make_ema(self.unet)  # max decay 0.999, warm-up power 2/3: train.py's defaults

    def step(self, x_0: torch.Tensor, labels: torch.Tensor) -> float:
        rng = step_generator(self.seed, self.micro_step, process_index=0)
        self.micro_step += 1
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16):
            loss = diffusion_loss(
                self.unet,
                self.scheduler,
                x_0.to(self.device),
                labels.to(self.device) if self.num_classes is not None else None,
                rng,
                loss="simple",
                label_dropout=self.label_dropout,
            ).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
        self.optimizer.step()
        if self.lr_scheduler.last_epoch < self.total_steps:  # past the planned end: stay at the final rate
            self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"{self.name}: loss is {value} at step {self.micro_step}")
        self.ema.step(self.unet.parameters())
        return value

    def ema_unet(self) -> DDPMHubUNet2DModel:
        """A copy of the model holding the EMA weights, in eval mode (what training/train.py saves)."""
        model = copy.deepcopy(self.unet)
        self.ema.copy_to(model.parameters())
        return model.eval()


class StockRecipe:
    """One optimisation step of diffusers' ``examples/unconditional_image_generation/train_unconditional.py``, with
    its default arguments: AdamW (lr 1e-4, betas 0.95/0.999, weight decay 1e-6, eps 1e-8), 500 warm-up steps then
    cosine, gradient clipping at 1.0, EMA (max decay 0.9999, inv_gamma 1, power 3/4), ``DDPMScheduler`` (1000 steps,
    linear betas), MSE on the noise, batch 16, no random flip (a flag, off by default; it would be wrong for digits).

    With ``conditional=True`` the stock model is ``UNet2DModel(num_class_embeds=10)`` and every step passes the true
    labels (stock diffusers' class conditioning: no label dropout, hence no classifier-free guidance). The example
    itself trains unconditional models; conditioning is added so that the judge's per-digit accuracy is defined.
    """

    name = "stock"
    batch_size = 16
    learning_rate = 1e-4
    recipe_warmup = 500

    def __init__(
        self,
        unet: UNet2DModel | None = None,
        total_steps: int = 4000,
        seed: int = 0,
        batch_size: int | None = None,
        conditional: bool = True,
        autocast_bf16: bool = False,
        device: str = "cpu",
    ):
        self.device = torch.device(device)
        self.unet = (unet if unet is not None else stock_unet(seed, conditional=conditional)).to(self.device)
        self.unet.train()
        self.batch_size = batch_size or self.batch_size
        self.conditional = model_is_conditional(self.unet)
        self.autocast_bf16 = autocast_bf16
        self.scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
        self.optimizer = torch.optim.AdamW(
            self.unet.parameters(), lr=self.learning_rate, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8
        )
        self.total_steps = total_steps
        self.lr_scheduler = cosine_schedule(self.optimizer, self.recipe_warmup, total_steps)
        self.ema = EMAModel(
            self.unet.parameters(),
            decay=0.9999,
            use_ema_warmup=True,
            inv_gamma=1.0,
            power=3 / 4,
            model_cls=UNet2DModel,
            model_config=self.unet.config,
        )

    def step(self, clean_images: torch.Tensor, labels: torch.Tensor) -> float:
        clean_images = clean_images.to(self.device)
        noise = torch.randn(clean_images.shape, device=self.device)
        timesteps = torch.randint(
            0, self.scheduler.config.num_train_timesteps, (clean_images.shape[0],), device=self.device
        ).long()
        noisy_images = self.scheduler.add_noise(clean_images, noise, timesteps)
        kwargs = {"class_labels": labels.to(self.device)} if self.conditional else {}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16):
            model_output = self.unet(noisy_images, timesteps, **kwargs).sample
        loss = F.mse_loss(model_output.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
        self.optimizer.step()
        if self.lr_scheduler.last_epoch < self.total_steps:
            self.lr_scheduler.step()
        self.optimizer.zero_grad()
        self.ema.step(self.unet.parameters())
        return loss.detach().item()  # the example logs the loss every step

    def ema_unet(self) -> UNet2DModel:
        model = copy.deepcopy(self.unet)
        self.ema.copy_to(model.parameters())
        return model.eval()


class StockClassConditionalSampler:
    """The stock pipelines' loop (``DDPMPipeline`` / ``DDIMPipeline``, generalised to any diffusers scheduler the
    way ``StableDiffusionPipeline`` drives one) with class labels passed to the ``UNet2DModel``: stock diffusers ships
    no class-conditional DDPM pipeline. Called like a pipeline by ``ddpm_hub.evaluation.evaluate_pipeline``.

    Noise ``x_T`` is drawn with ``randn_tensor`` and scaled by ``init_noise_sigma``; each step runs
    ``scale_model_input``, the U-Net, then ``step`` (given ``generator`` / ``eta=0`` only where it takes them).
    """

    def __init__(self, unet: UNet2DModel, scheduler):
        self.unet, self.scheduler = unet, scheduler
        parameters = inspect.signature(scheduler.step).parameters
        self._step_kwargs = {"eta": 0.0} if "eta" in parameters else {}
        self._takes_generator = "generator" in parameters

    @torch.no_grad()
    def __call__(self, batch_size, class_labels, generator=None, num_inference_steps=50, output_type="pt"):
        config = self.unet.config
        shape = (batch_size, config.in_channels, config.sample_size, config.sample_size)
        sample = randn_tensor(shape, generator=generator) * self.scheduler.init_noise_sigma  # (B, C, H, W)
        self.scheduler.set_timesteps(num_inference_steps)
        kwargs = dict(self._step_kwargs, **({"generator": generator} if self._takes_generator else {}))
        for t in self.scheduler.timesteps:
            model_input = self.scheduler.scale_model_input(sample, t)
            noise_pred = self.unet(model_input, t, class_labels=class_labels).sample
            sample = self.scheduler.step(noise_pred, t, sample, **kwargs).prev_sample
        return ImagePipelineOutput(images=to_zero_one(sample).clamp(0, 1))


# ---------------------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------------------


def command_line() -> str:
    """The command that is running, to be recorded next to its numbers."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO_ROOT)
    return " ".join(["python", shlex.quote(script), *map(shlex.quote, sys.argv[1:])])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    return value


def save_result(name: str, result: dict[str, Any]) -> Path:
    """Write ``results/<name>.json``, rebuild ``results/RESULTS.md`` from every result file, and refresh the
    README's benchmark table (``readme_table.py``)."""
    import readme_table  # benchmarks/readme_table.py, beside this file

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(_jsonable(result), indent=2) + "\n")
    write_results_md()
    if RESULTS_DIR == readme_table.RESULTS_DIR:
        readme_table.main([])
    return path


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def write_results_md() -> Path:
    """``results/RESULTS.md``: every ``results/*.json`` as a section (its ``markdown`` lines), with its command and
    the machine it ran on. Generated: edit the scripts, not this file."""
    sections = [
        "# Benchmark results: ddpm-hub vs stock diffusers",
        "",
        "Generated by `benchmarks/*.py` (see `benchmarks/README.md`); every number below comes from the command",
        "printed with it. Ratios are ours over stock (> 1 = ours is better). Do not edit by hand.",
        "",
    ]

    def order(path: Path) -> tuple:  # sampling, training, quality, others; more threads first
        result = json.loads(path.read_text())
        group = next((i for i, g in enumerate(("sampling", "training", "quality")) if path.stem.startswith(g)), 3)
        return group, -int(result.get("threads", 0) or 0), path.stem

    results = [(path, json.loads(path.read_text())) for path in sorted(RESULTS_DIR.glob("*.json"), key=order)]
    results = [(path, result) for path, result in results if "markdown" in result]
    summary = [row + [f"`{result.get('command', '?')}`"] for _, result in results for row in result.get("summary", [])]
    if summary:
        sections += ["## Summary", ""]
        sections += _table(["measurement", "ours", "stock", "ours / stock", "goal", "met", "command"], summary)
        sections += [""]
    for path, result in results:
        machine = result.get("machine", {})
        sections += [f"## {result.get('title', path.stem)}", ""]
        sections += [f"Command: `{result.get('command', '?')}`", ""]
        if machine:
            sections += [
                f"Machine: {machine.get('cpu')} ({machine.get('cpu_count')} CPUs), torch {machine.get('torch')} "
                f"({machine.get('torch_threads')} threads), diffusers {machine.get('diffusers')}, "
                f"{machine.get('date')}; load average at start {machine.get('loadavg')}, at end "
                f"{result.get('loadavg_end', '?')}.",
                "",
            ]
        sections += result["markdown"] + [""]
    out = RESULTS_DIR / "RESULTS.md"
    out.write_text("\n".join(sections))
    return out


def markdown_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return _table(header, rows)


def summary_row(
    measurement: str, ours: str, stock: str, ratio: float | str | None, goal: str, met: bool | None
) -> list:
    """One row of the summary table at the top of RESULTS.md (the command is added there); ``ratio`` is a number,
    or already written out (e.g. a median with its range)."""
    return [
        measurement,
        ours,
        stock,
        "" if ratio is None else (ratio if isinstance(ratio, str) else f"{ratio:.2f}x"),
        goal,
        "" if met is None else ("yes" if met else "**no**"),
    ]
