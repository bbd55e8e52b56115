"""Training smoke tests: training/train.py run as a user runs it (python, accelerate launch, two processes)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from olah_hub import free_port, hub_env, run_python
from safetensors.torch import load_file

from ddpm_hub import DDPMHubPipeline
from ddpm_hub.hub import select_pipeline_files

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "training" / "train.py")
TINY = [
    "--model_preset", "tiny", "--train_batch_size", "8", "--num_train_timesteps", "50", "--sample_inference_steps",
    "2", "--sample_steps", "0", "--report_to", "none", "--logging_steps", "1", "--lr_warmup_steps", "2",
]  # fmt: skip


def env(**extra) -> dict:
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "HF_ENDPOINT"))}
    return {**variables, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **extra}


def train(*args, launcher=(sys.executable,), check=True, extra_env=None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*launcher, TRAIN, *TINY, *args], capture_output=True, text=True, env=env(**(extra_env or {})), timeout=300
    )
    if check and result.returncode != 0:
        raise AssertionError(f"training failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def unet_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")


def test_tiny_run_end_to_end(tmp_path):
    out = tmp_path / "out"
    result = train("--output_dir", str(out), "--max_train_steps", "4", "--checkpointing_steps", "2")
    assert "loss" in result.stderr
    for name in ("model_index.json", "README.md", "samples.png", "training_config.json", "unet/config.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "training_config.json").read_text())
    assert config["steps"] == 4 and config["processes"] == 1
    assert config["command"].startswith("python training/train.py")
    assert "--model_preset tiny" in config["command"]
    # checkpoints and logs sit beside the pipeline but are never part of what is published
    assert (out / "checkpoints" / "checkpoint-4").is_dir()
    assert not [f for f in select_pipeline_files(out) if f.startswith(("checkpoints", "logs"))]
    pipe = DDPMHubPipeline.from_pretrained(out)
    assert pipe.unet.config.num_class_embeds == 10  # mnist5k has labels: class-conditional by default
    pipe.set_progress_bar_config(disable=True)
    images = pipe(batch_size=2, class_labels=[0, 1], num_inference_steps=3, output_type="np").images
    assert images.shape == (2, 28, 28, 1) and np.isfinite(images).all()


def test_two_processes_train_together_on_different_data(tmp_path):
    out = tmp_path / "out"
    launcher = (sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(free_port()))  # fmt: skip
    result = train("--output_dir", str(out), "--max_train_steps", "6", "--checkpointing_steps", "3", launcher=launcher)
    log = result.stderr
    assert "DistributedType.MULTI_CPU" in log and "Backend: gloo" in log
    checksums = {}
    for rank in (0, 1):
        line = next(part for part in log.split(f"process {rank}: first batch checksum ")[1:2])
        checksums[rank] = float(line.split()[0])
    assert checksums[0] != checksums[1]  # each process trains on its own shard
    assert json.loads((out / "training_config.json").read_text())["processes"] == 2
    first, last = log.split("trained to step 6: loss ")[1].split(" at the first step, ")
    assert float(last.split()[0]) < float(first)


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    steps, every = "160", "20"
    reference = tmp_path / "reference"
    train("--output_dir", str(reference), "--max_train_steps", steps, "--checkpointing_steps", every)

    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, TRAIN, *TINY, "--output_dir", str(out), "--max_train_steps", steps,
         "--checkpointing_steps", every],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(),
    )  # fmt: skip
    deadline = time.time() + 240
    while not (out / "checkpoints" / "checkpoint-20").is_dir() and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "model_index.json").exists(), "the run finished before it could be killed"
    # a checkpoint half-written when the kill came is never taken for the latest one
    (out / "checkpoints" / "checkpoint-999.tmp").mkdir(exist_ok=True)

    result = train("--output_dir", str(out), "--max_train_steps", steps, "--checkpointing_steps", every,
                   "--resume_from_checkpoint", "latest")  # fmt: skip
    assert "resumed from" in result.stderr
    resumed, expected = unet_weights(out), unet_weights(reference)
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-6, msg=name)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path):
    out = tmp_path / "out"
    result = train("--output_dir", str(out), "--max_train_steps", "20", "--checkpointing_steps", "1",
                   "--learning_rate", "1e30", "--max_grad_norm", "1e30", check=False)  # fmt: skip
    assert result.returncode == 1
    assert "error: loss is" in result.stderr and "last good checkpoint" in result.stderr
    assert "Traceback" not in result.stderr
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*"))
    assert checkpoints and all((c / "progress.json").is_file() for c in checkpoints)
    assert not (out / "model_index.json").exists()


def test_empty_image_folder_is_a_clear_error(tmp_path):
    (tmp_path / "images").mkdir()
    result = train("--output_dir", str(tmp_path / "out"), "--train_data_dir", str(tmp_path / "images"), check=False)
    assert result.returncode != 0 and "no images" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_image_folder_with_class_subfolders(tmp_path):
    from PIL import Image

    for label in ("cats", "dogs"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(np.random.default_rng(i).integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(
                tmp_path / "images" / label / f"{i}.png"
            )
    out = tmp_path / "out"
    train("--output_dir", str(out), "--train_data_dir", str(tmp_path / "images"), "--resolution", "16",
          "--channels", "3", "--max_train_steps", "2", "--model_preset", "tiny")  # fmt: skip
    config = json.loads((out / "unet" / "config.json").read_text())
    assert config["num_class_embeds"] == 2 and config["in_channels"] == 3 and config["sample_size"] == 16


def test_push_to_a_mirror_served_by_a_hub_server(tmp_path, olah_hub):
    out = tmp_path / "out"
    train("--output_dir", str(out), "--max_train_steps", "2", "--hub_mirror_dir", str(olah_hub.mirror_dir),
          "--hub_model_id", "ddpm-hub-tests/trained")  # fmt: skip
    repo = olah_hub.repo_dir("ddpm-hub-tests/trained")
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    tracked = subprocess.run(["git", "-C", str(repo), "ls-files"], capture_output=True, text=True).stdout.split()
    assert "model_index.json" in tracked and not [f for f in tracked if "checkpoint" in f or f.startswith("logs")]

    code = """
import sys

import numpy as np
import torch

from ddpm_hub import DDPMHubPipeline
pipe = DDPMHubPipeline.from_pretrained(sys.argv[1], revision=sys.argv[2])
pipe.set_progress_bar_config(disable=True)
images = pipe(batch_size=2, class_labels=[4, 5], num_inference_steps=4,
              generator=torch.Generator().manual_seed(0), output_type="np").images
np.save(sys.argv[3], images)
"""
    script = tmp_path / "load.py"
    script.write_text(code)

    def load(source: str, revision: str, saved_to: Path, environment: dict) -> None:
        argv = ["load.py", source, revision, str(saved_to)]
        run_python(f"import runpy, sys; sys.argv = {argv!r}; runpy.run_path({str(script)!r})", environment)

    load("ddpm-hub-tests/trained", sha, tmp_path / "hub.npy", hub_env(olah_hub.endpoint, tmp_path / "hf_home"))
    load(str(out), "main", tmp_path / "local.npy", {"HF_HUB_OFFLINE": "1"})
    np.testing.assert_array_equal(np.load(tmp_path / "hub.npy"), np.load(tmp_path / "local.npy"))


def test_failed_push_says_why_and_keeps_the_trained_pipeline(tmp_path):
    out = tmp_path / "out"
    closed = f"http://127.0.0.1:{free_port()}"
    result = train("--output_dir", str(out), "--max_train_steps", "2", "--push_to_hub", "--hub_model_id",
                   "ddpm-hub-tests/unreachable", "--hub_token", "hf_test", check=False,
                   extra_env={"HF_ENDPOINT": closed, "HF_HUB_OFFLINE": "0"})  # fmt: skip
    assert result.returncode == 1 and "publishing failed" in result.stderr and "Traceback" not in result.stderr
    assert (out / "model_index.json").is_file() and (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    DDPMHubPipeline.from_pretrained(out)  # still loads


@pytest.mark.parametrize("flags, message", [
    (["--loss", "weighted", "--prediction_type", "v_prediction"], "prediction_type epsilon"),
    (["--push_to_hub"], "hub_model_id"),
    (["--max_train_steps", "0"], "max_train_steps"),
    (["--dataset", "mnist5k", "--train_data_dir", "x"], "only one of"),
])  # fmt: skip
def test_bad_flags_are_rejected_with_the_flag_named(tmp_path, flags, message):
    result = train("--output_dir", str(tmp_path / "out"), *flags, check=False)
    assert result.returncode == 2 and message in result.stderr
