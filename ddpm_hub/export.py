"""Export a saved pipeline to ONNX, traced from our own modules, for a browser (onnxruntime-web) or a server.

    python -m ddpm_hub.export --model space/default_model --out DIR

writes to DIR:

    unet.onnx         the U-Net: sample (N, C, H, W), timestep (N,) int64, class_labels (N,) int64 -> (N, C, H, W)
    step_ddpm.onnx    one guided reverse step of ancestral DDPM (`DDPMHubScheduler.step_from`), see `GuidedStep`
    step_ddim.onnx    the same for DDIM with eta = 0 and eps from the clipped x_0, as the pipeline runs it
    noising.onnx      the closed form q(x_t | x_0): x_0 (B, C, H, W), timestep (1,) int64, noise -> x_t
    tables.json       what the graphs do not compute, written by the scheduler: each sampler's timesteps and step
                      coefficients per step count (`step_table`), the schedule's numbers at every t
                      (`coefficients`), and the model's facts (its recorded w, classes, image size)

Every formula in these graphs is traced from the code the pipeline runs: guidance is chain.py's `guide`, the step is
the scheduler's `step_from` (what its `step` calls), noising is `add_noise`. Timesteps are graph inputs, so one graph
serves every t and every step count; the schedule rides along as float64 constants, as the scheduler keeps it.
Nothing else derives a coefficient: a page reads t and prev_t from tables.json and hands them to the graph.

`tests/test_export.py` checks each graph against PyTorch with onnxruntime (float32, max abs difference <= 1e-4 per
step). Needs `onnx` (torch's exporter writes the graphs with it) and, to run them, `onnxruntime`: both are in the
`export` and `test` extras (`pip install -e .[export]`).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .pipelines.chain import guide
from .pipelines.pipeline_ddpm import DDPMHubPipeline
from .schedulers.scheduling_ddim import DDIMHubScheduler
from .schedulers.scheduling_ddpm import DDPMHubScheduler

SAMPLERS = ("ddpm", "ddim")
# The step counts each sampler's table covers (a page offers these): DDPM's full chain and strided ones, DDIM's short
# deterministic chains. Every count divides T = 1000, so `leading` spacing lands on the same t as the pipeline.
DEFAULT_STEPS = {"ddpm": (1000, 250, 100, 50), "ddim": (100, 50, 20)}
OPSET = 17
STEP_INPUTS = ["sample", "timestep", "prev_timestep", "class_labels", "guidance_scale", "noise"]
STEP_OUTPUTS = ["prev_sample", "pred_original_sample", "pred_epsilon"]
FILES = {"unet": "unet.onnx", "noising": "noising.onnx", "tables": "tables.json"}
# DDIM as the pipeline runs it (`DDPMHubPipeline.__call__` defaults): deterministic, eps from the clipped x_0.
DDIM_STEP_OPTIONS = {"eta": 0.0, "use_clipped_model_output": True}


def step_file(sampler: str) -> str:
    """The file name of `sampler`'s step graph."""
    return f"step_{sampler}.onnx"


class UNetGraph(nn.Module):
    """The U-Net's raw output as one tensor (N, C_out, H, W), for tracing."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        return self.unet(sample, timestep, class_labels=class_labels, return_dict=False)[0]


class GuidedStep(nn.Module):
    """One guided reverse step x_t -> x_{t-1}: the U-Net at 2B rows, classifier-free guidance, the scheduler's step.

    Inputs: sample x_t (B, C, H, W) float32; timestep t and prev_timestep (1,) int64 (prev_timestep = -1 after the
    last step; both from `step_table`); class_labels (B,) int64 in [0, num_classes); guidance_scale w (1,) float32;
    noise z (B, C, H, W) float32 (unused by DDIM with eta = 0, whose graph has no such input).
    Outputs: prev_sample x_{t-1}, pred_original_sample x_0 (clipped as configured), pred_epsilon eps, each
    (B, C, H, W): the fields `DenoisingChain.step` reports.
    """

    def __init__(self, unet: nn.Module, scheduler, null_class: int, step_options: dict | None = None):
        super().__init__()
        self.unet = unet
        self.scheduler = scheduler
        self.null_class = null_class
        self.step_options = dict(step_options or {})

    def forward(self, sample, timestep, prev_timestep, class_labels, guidance_scale, noise):
        # the U-Net's rows as `DenoisingChain.model_input` lays them out: conditional half first, then the null class
        labels = torch.cat([class_labels, torch.full_like(class_labels, self.null_class)])  # (2B,)
        model_input = torch.cat([sample, sample])  # (2B, C, H, W)
        output = self.unet(model_input, timestep.expand(model_input.shape[0]), class_labels=labels, return_dict=False)
        guided = guide(output[0], sample.shape[1], guidance_scale.reshape(1, 1, 1, 1))  # (B, C_out, H, W)
        prev_sample, pred_x0, pred_eps, _, _ = self.scheduler.step_from(
            guided, timestep, prev_timestep, sample, noise, **self.step_options
        )
        return prev_sample, pred_x0, pred_eps


class NoisingGraph(nn.Module):
    """q(x_t | x_0) in closed form (`add_noise`): x_0 (B, C, H, W), t (1,) int64, noise (B, C, H, W) -> x_t."""

    def __init__(self, scheduler):
        super().__init__()
        self.scheduler = scheduler

    def forward(self, original_samples, timestep, noise):
        return self.scheduler.add_noise(original_samples, noise, timestep)


def sampler_scheduler(pipe: DDPMHubPipeline, sampler: str):
    """A fresh scheduler of `sampler` ("ddpm" or "ddim") from the pipeline's scheduler config, as a user switches."""
    if sampler not in SAMPLERS:
        raise ValueError(f"Invalid `sampler`={sampler!r}: allowed values are {', '.join(SAMPLERS)}.")
    scheduler_class = DDPMHubScheduler if sampler == "ddpm" else DDIMHubScheduler
    return scheduler_class.from_config(pipe.scheduler.config)


def step_options(sampler: str) -> dict:
    """The options of `step_from` that `sampler`'s graph bakes in (DDIM: eta = 0, eps from the clipped x_0)."""
    return dict(DDIM_STEP_OPTIONS) if sampler == "ddim" else {}


def example_step_inputs(pipe: DDPMHubPipeline, batch_size: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs of a step graph (t = 500 -> 499, digits 0, 1, ..., w = the model's), named as the graph's."""
    config = pipe.unet.config
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, config.in_channels, config.sample_size, config.sample_size)
    return {
        "sample": torch.randn(shape, generator=generator),
        "timestep": torch.tensor([500]),
        "prev_timestep": torch.tensor([499]),
        "class_labels": torch.arange(batch_size) % config.num_class_embeds,
        "guidance_scale": torch.tensor([float(pipe.config.guidance_scale)]),
        "noise": torch.randn(shape, generator=generator),
    }


def _export(module: nn.Module, inputs: dict[str, torch.Tensor], outputs: list[str], path: Path, batch_axes) -> None:
    """Traces `module` (TorchScript tracing, `dynamo=False`: the graph is what our modules run on these inputs) and
    writes it to `path`, with the batch axis of the inputs and outputs in `batch_axes` left free."""
    dynamic_axes = {name: {0: "batch"} for name in batch_axes}
    with warnings.catch_warnings(), torch.no_grad():
        # the tracer warns about the U-Net's label check and the scheduler's config branches, which are constant in
        # a graph (validated at trace time), and the legacy exporter about its own deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            tuple(inputs.values()),
            str(path),
            input_names=list(inputs),
            output_names=outputs,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )


def export_unet(pipe: DDPMHubPipeline, path: str | os.PathLike, unet_module: nn.Module | None = None) -> Path:
    """Writes the U-Net alone to `path` (what `export` writes as unet.onnx): sample (N, C, H, W), timestep (N,)
    int64, class_labels (N,) int64 -> out (N, C_out, H, W), the batch axis free; `unet_module`: a float32 copy of
    the U-Net (default: made here). Returns `path`."""
    if unet_module is None:
        unet_module = copy.deepcopy(pipe.unet).float().eval()
    null_class = pipe.unet.config.num_class_embeds
    if null_class is None:
        raise ValueError("Invalid `pipe`: the exported U-Net takes class labels; allowed models are conditional.")
    example = example_step_inputs(pipe)
    unet_inputs = {
        "sample": torch.cat([example["sample"]] * 2),
        "timestep": example["timestep"].expand(4).contiguous(),
        "class_labels": torch.tensor([0, 1, null_class, null_class]),
    }
    path = Path(path)
    _export(UNetGraph(unet_module), unet_inputs, ["out"], path, ["sample", "timestep", "class_labels", "out"])
    return path


def check_steps(steps: dict[str, Sequence[int]], num_train_timesteps: int) -> dict[str, list[int]]:
    """`steps` per sampler, validated: known samplers, integers in [1, T]."""
    checked = {}
    for sampler, counts in steps.items():
        if sampler not in SAMPLERS:
            raise ValueError(f"Invalid sampler {sampler!r} in `steps`: allowed values are {', '.join(SAMPLERS)}.")
        counts = list(counts)
        if not counts or not all(isinstance(n, int) and 1 <= n <= num_train_timesteps for n in counts):
            raise ValueError(
                f"Invalid `steps` for {sampler}: {counts!r}: allowed values are non-empty lists of integers in "
                f"[1, {num_train_timesteps}] (num_train_timesteps)."
            )
        checked[sampler] = sorted(set(counts), reverse=True)
    return checked


def tables(pipe: DDPMHubPipeline, steps: dict[str, Sequence[int]]) -> dict:
    """tables.json: what a page shows and steps with, every number from the scheduler (see the module docstring)."""
    config = pipe.unet.config
    T = pipe.scheduler.config.num_train_timesteps
    samplers = {}
    for sampler, counts in check_steps(steps, T).items():
        scheduler = sampler_scheduler(pipe, sampler)
        samplers[sampler] = {
            "file": step_file(sampler),
            "options": step_options(sampler),
            "steps": {str(n): scheduler.step_table(n, **_table_options(sampler)) for n in counts},
        }
    noising_keys = ("alpha_bar_t", "sqrt_alpha_bar_t", "sqrt_one_minus_alpha_bar_t", "snr_t")
    coefficients = [pipe.scheduler.coefficients(t) for t in range(T)]
    return {
        "format": 1,
        "model": {
            "guidance_scale": float(pipe.config.guidance_scale),
            "num_classes": config.num_class_embeds,
            "null_class": config.num_class_embeds,
            "channels": config.in_channels,
            "sample_size": config.sample_size,
            "num_train_timesteps": T,
            "scheduler": dict(pipe.scheduler.config),
        },
        "samplers": samplers,
        "noising": {"file": FILES["noising"], **{key: [c[key] for c in coefficients] for key in noising_keys}},
    }


def _table_options(sampler: str) -> dict:
    """The options of `step_table` (it takes `step`'s, where eta alone changes a coefficient)."""
    return {"eta": DDIM_STEP_OPTIONS["eta"]} if sampler == "ddim" else {}


def export(
    model: str | os.PathLike | DDPMHubPipeline,
    out: str | os.PathLike,
    samplers: Sequence[str] = SAMPLERS,
    steps: dict[str, Sequence[int]] | None = None,
    unet: bool = True,
) -> dict[str, Path]:
    """Exports a pipeline (a saved folder, a Hub repo id, or a loaded `DDPMHubPipeline`) to ONNX in `out`.

    Args:
        model: the pipeline; a conditional model (classifier-free guidance needs its null class).
        out: the folder to write (created; files of the same names are replaced).
        samplers: which step graphs to write, from SAMPLERS.
        steps: step counts per sampler for tables.json (default DEFAULT_STEPS for the exported samplers).
        unet: also write unet.onnx (a page needs only the step graphs).

    Returns:
        {"unet", "step_ddpm", "step_ddim", "noising", "tables"}: the written files (those exported).
    """
    samplers = list(samplers)
    unknown = [s for s in samplers if s not in SAMPLERS]
    if unknown or not samplers:
        raise ValueError(
            f"Invalid `samplers`={samplers!r}: allowed values are non-empty lists of {', '.join(SAMPLERS)}."
        )
    pipe = model if isinstance(model, DDPMHubPipeline) else DDPMHubPipeline.from_pretrained(model)
    if pipe.num_classes is None:
        raise ValueError(
            "Invalid `model`: the step graphs guide towards a class; allowed models are conditional "
            "(unet num_class_embeds set)."
        )
    if steps is None:
        steps = {sampler: DEFAULT_STEPS[sampler] for sampler in samplers}
    missing = [s for s in samplers if s not in steps]
    if missing:
        raise ValueError(f"`steps` has no step counts for {missing}: allowed keys are the exported samplers.")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"Invalid `out`={str(out)!r}: it is a file; allowed values are folders (new or existing).")
    out.mkdir(parents=True, exist_ok=True)
    pipe.unet.eval()
    unet_module = copy.deepcopy(pipe.unet).float()
    written = {}

    example = example_step_inputs(pipe)
    if unet:
        written["unet"] = export_unet(pipe, out / FILES["unet"], unet_module)
    for sampler in samplers:
        module = GuidedStep(unet_module, sampler_scheduler(pipe, sampler), pipe.num_classes, step_options(sampler))
        written[f"step_{sampler}"] = out / step_file(sampler)
        batch_axes = ["sample", "class_labels", "noise", *STEP_OUTPUTS]
        _export(module, example, STEP_OUTPUTS, written[f"step_{sampler}"], batch_axes)
    noising_inputs = {k: example[k] for k in ("sample", "timestep", "noise")}
    written["noising"] = out / FILES["noising"]
    _export(
        NoisingGraph(sampler_scheduler(pipe, "ddpm")),
        noising_inputs,
        ["noisy"],
        written["noising"],
        ["sample", "noise", "noisy"],
    )
    written["tables"] = out / FILES["tables"]
    with open(written["tables"], "w", encoding="utf-8") as f:
        json.dump(tables(pipe, {s: steps[s] for s in samplers}), f, separators=(",", ":"))
    return written


class OnnxUNet:
    """The exported U-Net (`unet.onnx`) on onnxruntime's CPU provider, called as `DDPMHubPipeline.unet_forward` is:
    `(sample (N, C, H, W), timestep (N,) or a number, class_labels (N,) or None) -> (N, C_out, H, W)` float32 tensor.

    One `run` per call, so Python hands the whole forward to onnxruntime at once (the GIL is released for all of it,
    where eager PyTorch takes it back between its ops). Labels None ask for the null class, as the U-Net does.
    `benchmarks/bench_runtimes.py` measures it against eager and compiled PyTorch; the Space's engine runs it only
    when asked (`DDPM_HUB_ONNX`).

    Args:
        path: an exported `unet.onnx` (`export`).
        null_class: the model's null class label (`num_class_embeds`).
        threads: onnxruntime's intra-op threads (inter-op: 1, sequential execution).
    """

    def __init__(self, path: str | os.PathLike, null_class: int, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.null_class = int(null_class)
        self.path = Path(path)

    def __call__(self, sample: torch.Tensor, timestep, class_labels: torch.Tensor | None) -> torch.Tensor:
        rows = sample.shape[0]
        timestep = torch.as_tensor(timestep, dtype=torch.long).reshape(-1).expand(rows)
        if class_labels is None:
            class_labels = torch.full((rows,), self.null_class, dtype=torch.long)
        feed = {
            "sample": sample.detach().float().cpu().contiguous().numpy(),
            "timestep": timestep.cpu().contiguous().numpy(),
            "class_labels": class_labels.to(torch.long).cpu().contiguous().numpy(),
        }
        (out,) = self.session.run(None, feed)
        return torch.from_numpy(out).to(sample.device, sample.dtype)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ddpm_hub.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved pipeline folder or Hub repo id")
    parser.add_argument("--out", required=True, help="the folder to write the graphs and tables.json to")
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), help=f"step graphs, from {SAMPLERS}")
    parser.add_argument("--no-unet", action="store_true", help="skip unet.onnx (a page needs only the step graphs)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    written = export(args.model, args.out, samplers=args.samplers, unet=not args.no_unet)
    for name, path in written.items():
        print(f"{name}: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
