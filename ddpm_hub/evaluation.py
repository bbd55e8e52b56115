"""Evaluating class-conditional MNIST samples with an independent judge (:mod:`ddpm_hub.judge`).

Two numbers tell whether a class-conditional digit model works:

* **accuracy** — a separately trained classifier (:class:`DigitJudge`) reads each sample; the share of samples it
  labels as the digit that was requested (per digit and averaged). Measures "does the model draw the digit asked
  for, legibly".
* **Fréchet distance** — the distance between Gaussians fitted to the judge's penultimate-layer features of the
  samples and of real held-out digits (the FID recipe, with the digit judge in place of Inception). Measures
  "do the samples look like, and vary like, real digits". It is biased upwards for small sample sizes, so it is
  reported next to ``frechet_distance_real``: the same distance for *real* training digits (same number, same
  digits), the best a model can hope for at that sample size.

The judge trains on the mnist5k ``"train"`` split (the same 4,000 images the diffusion model sees) and is scored
on ``"held_out"`` (1,000 images neither model trains on); see :mod:`ddpm_hub.data`.

Command line::

    python -m ddpm_hub.evaluation MODEL_DIR [--samples_per_digit N] [--guidance_scale G] \\
        [--num_inference_steps S] [--json OUT]
    python -m ddpm_hub.evaluation MODEL_DIR --nll [--nll_images N] [--nll_condition null|label] [--json OUT]

``--nll`` measures the variational bound on -log p(x_0) of held-out digits instead (:func:`evaluate_nll`).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg

from .data import load_mnist5k, rgb_to_luma
from .judge import (  # the judge's names, importable from here as before
    DEFAULT_JUDGE_EPOCHS,
    NUM_CLASSES,
    DigitJudge,
    _cache_path,
    _held_out_outputs,
    _judge_outputs,
    _judge_settings,
    _load_judge,
    default_judge_cache_dir,
    judge_accuracy,
    train_judge,
)

__all__ = [
    "DigitJudge",
    "default_judge_cache_dir",
    "evaluate_nll",
    "evaluate_pipeline",
    "evaluate_samples",
    "format_nll_report",
    "format_report",
    "frechet_distance",
    "judge_accuracy",
    "load_or_train_judge",
    "train_judge",
]

# `--scheduler` choices: stock diffusers schedulers, built with `from_config(model's scheduler config, **overrides)`.
STOCK_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddpm": ("DDPMScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpmsolver": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"}),
    "sde-dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
}


def load_or_train_judge(
    seed: int = 0,
    epochs: int = DEFAULT_JUDGE_EPOCHS,
    cache_dir: str | os.PathLike | None = None,
    *,
    num_threads: int | None = None,
    verbose: bool = False,
) -> DigitJudge:
    """Load the judge for these settings from the cache, or train it (:func:`train_judge`) and cache it.

    The cache file is ``cache_dir/digit_judge-<hash>.safetensors`` where the hash covers every training setting
    (seed, epochs, recipe, architecture, data split), so changing any of them trains a new judge.
    ``cache_dir`` defaults to :func:`default_judge_cache_dir` (``~/.cache/ddpm_hub/judge``).
    """
    settings = _judge_settings(seed, epochs)
    path = _cache_path(cache_dir, settings)
    if path.is_file():
        try:
            return _load_judge(path)
        except Exception as err:  # corrupt / incompatible cache file: retrain and overwrite
            print(f"ddpm_hub: ignoring unreadable judge cache {path} ({err}); retraining", file=sys.stderr)
    if verbose:
        print(f"ddpm_hub: training the digit judge ({epochs} epochs), cache: {path}", file=sys.stderr)
    return train_judge(seed, epochs, cache_dir=path.parent, num_threads=num_threads, verbose=verbose)


# ---------------------------------------------------------------------------------------------------------------------
# Fréchet distance
# ---------------------------------------------------------------------------------------------------------------------


def _sqrtm(matrix: np.ndarray) -> tuple[np.ndarray, bool]:
    """scipy.linalg.sqrtm, returning (root, whether scipy warned that the matrix is singular) without the warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        root = linalg.sqrtm(matrix)
    singular = False
    for w in caught:
        if issubclass(w.category, linalg.LinAlgWarning):
            singular = True
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return root, singular


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula), in float64.

    ``d² = |μ_a − μ_b|² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½)`` with sample means and (unbiased) covariances.

    Args:
        feats_a, feats_b: ``(N_a, D)`` and ``(N_b, D)`` arrays, ``N >= 2``.
        eps: when ``sqrtm`` of the product is not finite or scipy reports it singular (e.g. fewer samples than
            dimensions, or features that are always 0), ``eps * I`` is added to both covariances and the square
            root recomputed (the standard pytorch-fid handling); a complex result with a negligible imaginary part
            is replaced by its real part.

    Returns:
        the squared distance ``d²`` (as FID reports it), ``>= 0``; symmetric in its arguments.

    Raises:
        ValueError: for mismatched shapes, fewer than 2 rows, non-finite values, or a matrix square root with a
            significant imaginary part (numerically broken covariances).
    """
    a = np.asarray(feats_a, dtype=np.float64)
    b = np.asarray(feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature arrays must be (N, D) with the same D, got {a.shape} and {b.shape}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(
            f"need at least 2 samples per set to estimate a covariance, got {a.shape[0]} and {b.shape[0]}"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("feature arrays contain NaN or infinite values")
    mu_a, mu_b = a.mean(0), b.mean(0)
    sigma_a = np.atleast_2d(np.cov(a, rowvar=False))
    sigma_b = np.atleast_2d(np.cov(b, rowvar=False))
    diff = mu_a - mu_b

    covmean, singular = _sqrtm(sigma_a @ sigma_b)
    if singular or not np.isfinite(covmean).all():
        offset = np.eye(sigma_a.shape[0]) * eps
        covmean, _ = _sqrtm((sigma_a + offset) @ (sigma_b + offset))
    if np.iscomplexobj(covmean):
        max_imag = np.max(np.abs(np.diagonal(covmean).imag))
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"matrix square root has a significant imaginary component ({max_imag:.3g})")
        covmean = covmean.real
    distance = diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.trace(covmean)
    return float(max(distance, 0.0))


# ---------------------------------------------------------------------------------------------------------------------
# Evaluating samples and pipelines
# ---------------------------------------------------------------------------------------------------------------------


def _prepare_images(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> (N, 1, 28, 28) float32 on CPU (RGB -> luma, other sizes resized)."""
    x = torch.as_tensor(images).detach().to("cpu", torch.float32)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W) in [-1, 1], got shape {tuple(x.shape)}")
    if x.shape[1] == 3:
        x = rgb_to_luma(x)
    if tuple(x.shape[-2:]) != (28, 28):
        x = F.interpolate(x, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(-1.0, 1.0)


def evaluate_samples(
    judge: DigitJudge,
    images: torch.Tensor | np.ndarray,
    requested_labels: torch.Tensor | np.ndarray | list[int],
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Score class-conditional digit samples with the judge.

    Args:
        judge: a trained :class:`DigitJudge` (e.g. from :func:`load_or_train_judge`).
        images: ``(N, 1, 28, 28)`` in ``[-1, 1]`` (white on black). 3-channel images are converted to luma and
            other sizes resized to 28×28 (bilinear, antialiased).
        requested_labels: ``(N,)`` the digit (0..9) each sample was generated for. ``N >= 2``.
        seed: picks the real training digits for ``frechet_distance_real``.

    Returns:
        a JSON-serialisable dict:

        * ``per_digit_accuracy``: ``{digit: share of its samples the judge labels as that digit}``;
        * ``mean_accuracy``: mean of ``per_digit_accuracy``; ``accuracy``: share over all samples;
        * ``samples_per_digit``: ``{digit: count}``; ``num_samples``;
        * ``confusion``: 10×10 counts, ``confusion[requested][predicted]``;
        * ``frechet_distance``: samples vs the held-out real digits of the requested classes (100 per digit);
        * ``frechet_distance_real``: real *training* digits (same count per digit as the samples; drawn with
          replacement only if more than 400 per digit are requested) vs the same held-out digits — the
          floor for this sample size;
        * ``judge_held_out_accuracy``: the judge's accuracy on all 1,000 held-out digits.
    """
    x = _prepare_images(images)
    labels = np.asarray(torch.as_tensor(requested_labels).cpu(), dtype=np.int64).reshape(-1)
    if labels.shape[0] != x.shape[0]:
        raise ValueError(f"got {x.shape[0]} images but {labels.shape[0]} requested labels")
    if x.shape[0] < 2:
        raise ValueError("need at least 2 samples")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"requested labels must be digits 0..9, got the range {labels.min()}..{labels.max()}")

    feats, logits = _judge_outputs(judge, x)
    predicted = logits.argmax(1)
    digits = sorted(int(d) for d in np.unique(labels))
    counts = {d: int((labels == d).sum()) for d in digits}
    per_digit = {d: float((predicted[labels == d] == d).mean()) for d in digits}
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)

    held_feats, held_logits, held_y = _held_out_outputs(judge)
    judge_acc = float((held_logits.argmax(1) == held_y).mean())
    reference = held_feats[np.isin(held_y, digits)]

    train_x, train_y = load_mnist5k("train")
    train_y = train_y.numpy()
    rng = np.random.default_rng(seed)
    real_idx = np.concatenate(
        [rng.choice(np.flatnonzero(train_y == d), n, replace=n > int((train_y == d).sum())) for d, n in counts.items()]
    )
    real_feats, _ = _judge_outputs(judge, train_x[real_idx])

    return {
        "num_samples": int(x.shape[0]),
        "samples_per_digit": counts,
        "per_digit_accuracy": per_digit,
        "mean_accuracy": float(np.mean(list(per_digit.values()))),
        "accuracy": float((predicted == labels).mean()),
        "confusion": confusion.tolist(),
        "frechet_distance": frechet_distance(feats, reference),
        "frechet_distance_real": frechet_distance(real_feats, reference),
        "judge_held_out_accuracy": judge_acc,
    }


def _images_from_output(output: Any) -> torch.Tensor:
    """Pipeline output (``.images``, or a tuple whose first item is the images) -> (B, C, H, W) float in [0, 1]."""
    images = getattr(output, "images", None)
    if images is None and isinstance(output, (tuple, list)):
        images = output[0]
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
        if images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
            images = images.permute(0, 3, 1, 2)  # numpy convention (B, H, W, C)
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"the pipeline must return an object with .images as a tensor (output_type='pt'), got {type(images)}"
        )
    return images.detach().to("cpu", torch.float32)


def evaluate_pipeline(
    pipeline: Any,
    *,
    samples_per_digit: int = 50,
    guidance_scale: float | None = None,
    num_inference_steps: int | None = None,
    seed: int = 0,
    batch_size: int = 100,
    judge: DigitJudge | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Generate ``samples_per_digit`` samples of each digit 0..9 and score them with :func:`evaluate_samples`.

    The pipeline is called as ``pipeline(batch_size=B, class_labels=LongTensor(B,), guidance_scale=...,
    num_inference_steps=..., generator=torch.Generator().manual_seed(seed + batch_index), output_type="pt")``
    and must return an object whose ``.images`` is a float tensor ``(B, C, H, W)`` in ``[0, 1]`` (diffusers'
    ``output_type="pt"`` convention); they are mapped to ``[-1, 1]`` for the judge. ``guidance_scale`` /
    ``num_inference_steps`` are only passed when not ``None`` (otherwise the pipeline's defaults apply).
    Labels are generated in order 0,0,…,1,1,… and cut into batches of ``batch_size``; generators live on the
    CPU, so results do not depend on the pipeline's device.

    Args:
        judge: defaults to :func:`load_or_train_judge` (trains once, 0.5–1.5 min on CPU, then cached).

    Returns:
        :func:`evaluate_samples`'s dict plus the generation settings (``guidance_scale``,
        ``num_inference_steps``, ``seed``) and ``generation_seconds``.
    """
    if samples_per_digit < 1:
        raise ValueError(f"samples_per_digit must be >= 1, got {samples_per_digit}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if judge is None:
        judge = load_or_train_judge(verbose=verbose)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(samples_per_digit)
    kwargs: dict[str, Any] = {"output_type": "pt"}
    if guidance_scale is not None:
        kwargs["guidance_scale"] = guidance_scale
    if num_inference_steps is not None:
        kwargs["num_inference_steps"] = num_inference_steps

    chunks = []
    start_time = time.perf_counter()
    for batch_index, start in enumerate(range(0, labels.numel(), batch_size)):
        batch_labels = labels[start : start + batch_size]
        output = pipeline(
            batch_size=batch_labels.numel(),
            class_labels=batch_labels,
            generator=torch.Generator().manual_seed(seed + batch_index),
            **kwargs,
        )
        images = _images_from_output(output)
        if images.shape[0] != batch_labels.numel():
            raise ValueError(f"the pipeline returned {images.shape[0]} images for a batch of {batch_labels.numel()}")
        chunks.append(images)
        if verbose:
            print(f"generated {start + batch_labels.numel()}/{labels.numel()} samples", file=sys.stderr)
    generation_seconds = time.perf_counter() - start_time

    images = torch.cat(chunks).clamp(0.0, 1.0) * 2.0 - 1.0
    result = evaluate_samples(judge, images, labels, seed=seed)
    result.update(
        guidance_scale=guidance_scale,
        num_inference_steps=num_inference_steps,
        seed=seed,
        generation_seconds=round(generation_seconds, 2),
    )
    return result


def format_report(result: dict[str, Any]) -> str:
    """A readable table of :func:`evaluate_samples` / :func:`evaluate_pipeline` results."""
    lines = ["digit  accuracy  samples  most common mistake"]
    confusion = np.asarray(result["confusion"])
    for d, acc in result["per_digit_accuracy"].items():
        d = int(d)
        row = confusion[d].copy()
        row[d] = 0
        mistake = f"{int(row.argmax())} ({int(row.max())}x)" if row.max() > 0 else "-"
        lines.append(f"{d:>5}  {acc:>8.1%}  {result['samples_per_digit'][d]:>7}  {mistake}")
    lines += [
        "",
        f"mean accuracy                     {result['mean_accuracy']:.1%}",
        f"Fréchet distance (vs held-out)    {result['frechet_distance']:.2f}",
        f"  real training digits, same N    {result['frechet_distance_real']:.2f}",
        f"judge held-out accuracy           {result['judge_held_out_accuracy']:.1%}",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# The variational bound on held-out digits (--nll)
# ---------------------------------------------------------------------------------------------------------------------

#: How many equal blocks of timesteps the per-t terms are summed into (the rate-vs-t curve of Ho et al., Fig. 5).
NLL_BLOCKS = 10


def held_out_digits(num_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``num_images`` held-out mnist5k digits taken round-robin over the classes (0, 1, ..., 9, 0, ...).

    Returns images ``(N, 1, 28, 28)`` in ``[-1, 1]`` (8-bit values) and labels ``(N,)``.
    """
    images, labels = load_mnist5k("held_out")
    if not 1 <= num_images <= len(labels):
        raise ValueError(f"nll_images must be in [1, {len(labels)}] (the held-out digits), got {num_images}")
    rank = torch.zeros_like(labels)  # each image's position among the held-out images of its digit
    for digit in labels.unique():
        rank[labels == digit] = torch.arange(int((labels == digit).sum()))
    order = torch.from_numpy(np.lexsort((labels.numpy(), rank.numpy())))[:num_images]  # rank first, then digit
    return images[order], labels[order]


def evaluate_nll(
    pipeline: Any,
    *,
    num_images: int = 64,
    condition: str = "null",
    seed: int = 0,
    batch_size: int = 128,
    verbose: bool = False,
) -> dict[str, Any]:
    """The variational bound on -log p(x_0) in bits/dim on held-out digits, split as Ho et al. (2020) report it.

    Calls ``pipeline.bits_per_dim`` (``DDPMHubPipeline``): total = prior L_T + rate (L_1 + ... + L_{T-1}) +
    distortion (L_0, the discretized decoder), each averaged over the images (Table 2 and Fig. 5 of the paper).

    Args:
        num_images: how many held-out digits (see :func:`held_out_digits`).
        condition: ``"null"`` for the unconditional model (the null class; what the paper's Table 2 measures) or
            ``"label"`` for -log p(x_0 | digit) with each image's own label.
        seed: seeds the draws of x_t.
        batch_size: images per U-Net call.

    Returns:
        a JSON-serialisable dict: ``nll_bits_per_dim`` (mean total) and its ``nll_standard_error`` over images,
        ``rate_bits_per_dim``, ``distortion_bits_per_dim``, ``prior_bits_per_dim``, ``rate_by_timesteps`` (the
        rate summed over ``NLL_BLOCKS`` equal blocks of t), ``num_images``, ``condition``, ``seed``, and the
        ``wall_seconds`` / ``cpu_seconds`` it took.
    """
    if condition not in ("null", "label"):
        raise ValueError(f"Invalid `condition`={condition!r}: allowed values are null, label.")
    images, labels = held_out_digits(num_images)
    generator = torch.Generator().manual_seed(seed)
    wall, cpu = time.perf_counter(), time.process_time()
    parts: dict[str, list[torch.Tensor]] = {"total": [], "prior": [], "rate": [], "distortion": [], "denoising": []}
    for start in range(0, num_images, batch_size):
        batch = slice(start, start + batch_size)
        out = pipeline.bits_per_dim(
            images[batch], labels[batch] if condition == "label" else None, generator, batch_size=batch_size
        )
        for name, values in parts.items():
            values.append(getattr(out, name).cpu())
        if verbose:
            print(f"bound of {min(start + batch_size, num_images)}/{num_images} digits", file=sys.stderr)
    result = {name: torch.cat(values) for name, values in parts.items()}
    denoising = result.pop("denoising").mean(0)  # (T - 1,): timesteps 1 .. T - 1
    steps = denoising.numel() + 1
    edges = np.linspace(0, steps, NLL_BLOCKS + 1).round().astype(int)
    total = result["total"]
    return {
        "nll_bits_per_dim": float(total.mean()),
        "nll_standard_error": float(total.std() / math.sqrt(len(total))) if len(total) > 1 else None,
        "rate_bits_per_dim": float(result["rate"].mean()),
        "distortion_bits_per_dim": float(result["distortion"].mean()),
        "prior_bits_per_dim": float(result["prior"].mean()),
        "rate_by_timesteps": {
            f"{lo}-{hi - 1}": float(denoising[max(lo, 1) - 1 : hi - 1].sum())
            for lo, hi in zip(edges[:-1], edges[1:], strict=True)
        },
        "num_images": num_images,
        "condition": condition,
        "seed": seed,
        "wall_seconds": round(time.perf_counter() - wall, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
    }


def format_nll_report(result: dict[str, Any]) -> str:
    """A readable summary of :func:`evaluate_nll`'s dict."""
    what = "-log p(x_0)" if result["condition"] == "null" else "-log p(x_0 | digit)"
    return "\n".join(
        [
            f"variational bound on {what}, {result['num_images']} held-out digits, bits/dim",
            f"  total (NLL bound)    {result['nll_bits_per_dim']:.4f}"
            + (f" +- {result['nll_standard_error']:.4f}" if result["nll_standard_error"] is not None else ""),
            f"  rate  L_1..L_(T-1)   {result['rate_bits_per_dim']:.4f}",
            f"  distortion L_0       {result['distortion_bits_per_dim']:.4f}",
            f"  prior L_T            {result['prior_bits_per_dim']:.6f}",
            f"  {result['wall_seconds']} s wall, {result['cpu_seconds']} s CPU",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ddpm_hub.evaluation",
        description="Score a class-conditional MNIST DDPMHubPipeline with the digit judge (accuracy per digit and "
        "Fréchet distance to held-out digits).",
    )
    parser.add_argument("model_dir", help="directory (or Hub id) of a saved DDPMHubPipeline")
    parser.add_argument("--samples_per_digit", type=int, default=50)
    parser.add_argument("--guidance_scale", type=float, default=None, help="default: the pipeline's")
    parser.add_argument("--num_inference_steps", type=int, default=None, help="default: the pipeline's")
    parser.add_argument("--sampler", choices=["ddpm", "ddim"], default="ddpm", help="ddim: DDIMHubScheduler")
    parser.add_argument(
        "--scheduler",
        choices=sorted(STOCK_SCHEDULERS),
        default=None,
        help="sample with this stock diffusers scheduler, built with `from_config` from the model's scheduler config "
        "(overrides --sampler)",
    )
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM's eta")
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument(
        "--json",
        dest="json_path",
        default=None,
        help="also record the results in this JSON file, under a key naming the sampler and settings (other runs "
        "already in the file are kept)",
    )
    parser.add_argument("--nll", action="store_true", help="measure the variational bound (bits/dim) instead")
    parser.add_argument("--nll_images", type=int, default=64, help="--nll: how many held-out digits")
    parser.add_argument(
        "--nll_condition", choices=["null", "label"], default="null", help="--nll: null class, or each digit's label"
    )
    args = parser.parse_args(argv)

    from . import DDIMHubScheduler, DDPMHubPipeline

    if args.nll:
        return _main_nll(args, argv)

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = DDPMHubPipeline.from_pretrained(args.model_dir).to(device)
    if args.scheduler is not None:
        class_name, overrides = STOCK_SCHEDULERS[args.scheduler]
        stock = getattr(importlib.import_module("diffusers"), class_name)
        pipeline.scheduler = stock.from_config(pipeline.scheduler.config, **overrides)
    elif args.sampler == "ddim":
        pipeline.scheduler = DDIMHubScheduler.from_config(pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    call_defaults = inspect.signature(pipeline.__call__).parameters
    guidance = args.guidance_scale if args.guidance_scale is not None else pipeline.config.guidance_scale
    steps = args.num_inference_steps or call_defaults["num_inference_steps"].default
    judge = load_or_train_judge(verbose=True)
    takes_eta = args.scheduler in ("ddim",) or (args.scheduler is None and args.sampler == "ddim")
    run_pipeline = functools.partial(pipeline, eta=args.eta) if takes_eta else pipeline
    result = evaluate_pipeline(
        run_pipeline,
        samples_per_digit=args.samples_per_digit,
        guidance_scale=guidance,
        num_inference_steps=steps,
        seed=args.seed,
        batch_size=args.batch_size,
        judge=judge,
        verbose=True,
    )
    result.update(
        model=str(args.model_dir),
        sampler=args.sampler,
        scheduler=args.scheduler and type(pipeline.scheduler).__name__,
        scheduler_config=dict(pipeline.scheduler.config) if args.scheduler else None,
        eta=args.eta,
        command="python -m ddpm_hub.evaluation " + " ".join(argv if argv is not None else sys.argv[1:]),
    )
    eta = f"-eta{args.eta:g}" if takes_eta else ""
    name = f"stock-{args.scheduler}" if args.scheduler else args.sampler
    return _print_and_record(format_report(result), result, args.json_path, f"{name}{eta}-{steps}steps-w{guidance:g}")


def _main_nll(args: argparse.Namespace, argv: list[str] | None) -> int:
    """``--nll``: the bound on held-out digits, printed and recorded under ``nll-<condition>-<N>images``."""
    from . import DDPMHubPipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = DDPMHubPipeline.from_pretrained(args.model_dir).to(device)
    pipeline.set_progress_bar_config(disable=True)
    result = evaluate_nll(
        pipeline, num_images=args.nll_images, condition=args.nll_condition, seed=args.seed, verbose=True
    )
    result.update(
        model=str(args.model_dir),
        command="python -m ddpm_hub.evaluation " + " ".join(argv if argv is not None else sys.argv[1:]),
    )
    key = f"nll-{args.nll_condition}-{args.nll_images}images"
    return _print_and_record(format_nll_report(result), result, args.json_path, key)


if __name__ == "__main__":
    sys.exit(main())


def _print_and_record(report: str, result: dict[str, Any], json_path: str | None, key: str) -> int:
    """Prints the report and the result, and records the result under `key` in the json file (other runs kept)."""
    print(report)
    print()
    print(json.dumps(result, indent=2))
    if json_path:
        path = Path(json_path)
        runs = json.loads(path.read_text()) if path.is_file() else {}
        runs[key] = result
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(runs, indent=2) + "\n")
    return 0
