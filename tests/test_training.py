"""Training smoke tests: training/train.py run as a user runs it (python, accelerate launch, two processes)."""

import importlib.util
import io
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from olah_hub import free_port, hub_env, run_python
from safetensors.torch import load_file

from ddpm_hub import DDPMHubPipeline, DDPMHubScheduler, DDPMHubUNet2DModel
from ddpm_hub.data import load_mnist5k
from ddpm_hub.hub import select_pipeline_files
from ddpm_hub.training import DEFAULT_GUIDANCE_SCALE, diffusion_loss

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "training" / "train.py")
TINY = [
    "--model_preset", "tiny", "--train_batch_size", "8", "--num_train_timesteps", "50", "--sample_inference_steps",
    "2", "--sample_steps", "0", "--report_to", "none", "--logging_steps", "1", "--lr_warmup_steps", "2",
]  # fmt: skip


def load_train_script():
    """training/train.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("train_script", TRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def first_and_last_loss(log: str, steps: int, first_step: int = 1) -> tuple[float, float]:
    """The losses of the "trained to step N: loss A at step F, B at step N" line; F is the run's first step (after
    "(resumed from step F - 1)" when it resumed)."""
    resumed = f" (resumed from step {first_step - 1})" if first_step > 1 else ""
    line = f"trained to step {steps}{resumed}: loss "
    assert line in log, log[-2000:]
    first, last = log.split(line)[1].split("\n")[0].split(", ")
    assert first.endswith(f" at step {first_step}") and last.endswith(f" at step {steps}"), (first, last)
    return float(first.split()[0]), float(last.split()[0])


def test_tiny_run_end_to_end(tmp_path):
    out = tmp_path / "out"
    result = train("--output_dir", str(out), "--max_train_steps", "4", "--checkpointing_steps", "2",
                   "--sample_steps", "2")  # fmt: skip
    assert all(math.isfinite(loss) and loss > 0 for loss in first_and_last_loss(result.stderr, 4))
    # the sample grids (tens of seconds on the default model) are announced before and reported after; a short run
    # draws one image per class, with the documented default guidance, and the last step's grid only once
    log = result.stderr
    assert f"sampling a grid of 10 images for step 2: 2 DDPM steps, guidance {DEFAULT_GUIDANCE_SCALE}" in log
    assert "for step 4" not in log
    final = log.index("sampling a grid of 10 images for samples.png")
    assert log.index("sampled the grid in", final) < log.index("saved the pipeline")
    for name in ("model_index.json", "README.md", "samples.png", "training_config.json", "unet/config.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "training_config.json").read_text())
    assert config["steps"] == 4 and config["processes"] == 1 and config["guidance_scale"] == DEFAULT_GUIDANCE_SCALE
    from PIL import Image

    with Image.open(out / "samples.png") as grid:
        assert grid.size == (10 * 28, 28)  # one row: one image of each digit
    assert config["command"].startswith("python training/train.py")
    assert "--model_preset tiny" in config["command"]
    # checkpoints and logs sit beside the pipeline but are never part of what is published
    assert (out / "checkpoints" / "checkpoint-4").is_dir()
    assert not [f for f in select_pipeline_files(out) if f.startswith(("checkpoints", "logs"))]
    pipe = DDPMHubPipeline.from_pretrained(out)
    assert pipe.unet.config.num_class_embeds == 10  # mnist5k has labels: class-conditional by default
    # the saved weights are the EMA's, not the raw weights of the last step (both are in checkpoint-4)
    names = [name for name, _ in pipe.unet.named_parameters()]
    shadow = torch.load(out / "checkpoints" / "checkpoint-4" / "custom_checkpoint_0.pkl")["shadow_params"]
    raw, saved = load_file(out / "checkpoints" / "checkpoint-4" / "model.safetensors"), unet_weights(out)
    assert len(shadow) == len(names)
    for name, ema_tensor in zip(names, shadow, strict=True):
        torch.testing.assert_close(saved[name], ema_tensor, rtol=0, atol=0, msg=name)
    assert sum(not torch.equal(saved[name], raw[name]) for name in names) > len(names) // 2
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
    first, last = first_and_last_loss(log, 6)
    assert last < first


STEPS, EVERY = "160", "20"  # the interrupted runs below: stopped after checkpoint-20, resumed to step 160


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """An uninterrupted run that the stopped-and-resumed runs must reproduce."""
    reference = tmp_path_factory.mktemp("reference")
    train("--output_dir", str(reference), "--max_train_steps", STEPS, "--checkpointing_steps", EVERY)
    return reference


def assert_same_weights(out: Path, reference: Path) -> None:
    resumed, expected = unet_weights(out), unet_weights(reference)
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-6, msg=name)


def wait_for(condition, what: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_killed_run_resumes_to_the_same_weights(tmp_path, reference_run):
    steps, every = STEPS, EVERY
    reference = reference_run

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
    assert_same_weights(out, reference)


def stop_checkpoint(out: Path, signal_name: str) -> int:
    """The step of the checkpoint that a stop by `signal_name` left: the newest, complete, saying why it was
    written (what the run leaves when no report of it can reach anyone)."""
    checkpoint = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    progress = json.loads((checkpoint / "progress.json").read_text())
    assert progress["stopped_by"] == signal_name, progress
    assert checkpoint.name == f"checkpoint-{progress['global_step']}"
    return progress["global_step"]


def stop_report(log: str, signal_name: str) -> int:
    """The step that the stopped run's report names; it said why it stopped, where, and how to go on."""
    assert "Traceback" not in log
    line = next(line for line in log.splitlines() if "stopped at step" in line)
    assert f"{signal_name} received" in line, line
    assert "To go on, rerun the same command with --resume_from_checkpoint latest" in line, line
    return int(line.split("stopped at step ")[1].split()[0])


def resume_after_stop(out: Path, step: int, reference: Path, resume: bool = True) -> None:
    """The stopped run left a complete checkpoint at `step`, and no pipeline; resuming from `latest` gives the
    uninterrupted run's weights."""
    assert 20 <= step < int(STEPS)
    checkpoint = out / "checkpoints" / f"checkpoint-{step}"
    assert json.loads((checkpoint / "progress.json").read_text())["global_step"] == step
    assert not (out / "model_index.json").exists()
    if not resume:
        return
    result = train("--output_dir", str(out), "--max_train_steps", STEPS, "--checkpointing_steps", EVERY,
                   "--resume_from_checkpoint", "latest")  # fmt: skip
    assert f"resumed from {checkpoint} at step {step}" in result.stderr
    first_and_last_loss(result.stderr, int(STEPS), first_step=step + 1)  # names the resumed run's own first step
    assert_same_weights(out, reference)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_signal_checkpoints_at_the_next_step_and_exits(tmp_path, reference_run, signum):
    out, log = tmp_path / "stopped", tmp_path / "train.log"
    name = signal.Signals(signum).name
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, TRAIN, *TINY, "--output_dir", str(out), "--max_train_steps", STEPS,
             "--checkpointing_steps", EVERY],
            stdout=subprocess.DEVNULL, stderr=stderr, env=env(),
        )  # fmt: skip
        wait_for(lambda: (out / "checkpoints" / "checkpoint-20").is_dir(), "checkpoint-20")
        process.send_signal(signum)
        assert process.wait(timeout=120) == 0
    step = stop_report(log.read_text(), name)
    assert stop_checkpoint(out, name) == step
    resume_after_stop(out, step, reference_run, resume=signum == signal.SIGTERM)  # one handler: resume once


def test_stop_with_stdout_and_stderr_closed_still_checkpoints(tmp_path):
    """Reports to pipes that nobody reads any more (a launcher that died) neither raise nor stop the stop: the run
    trains on, then checkpoints at the step the signal came in and exits cleanly."""
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, TRAIN, *TINY, "--output_dir", str(out), "--max_train_steps", "100000",
         "--checkpointing_steps", "100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(),
    )  # fmt: skip
    try:
        for line in process.stderr:  # the first step is under way
            if b"first batch checksum" in line:
                break
        process.stdout.close()
        process.stderr.close()  # every report from now on, the progress bar's included, meets a closed pipe
        time.sleep(0.5)
        assert process.poll() is None, "a report to the closed pipe ended the run"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert stop_checkpoint(out, "SIGTERM") >= 1
    assert not (out / "model_index.json").exists()


def test_reports_to_a_closed_pipe_neither_raise_nor_fail_later():
    """`SafeStream`: print, logging and tqdm write through it; once the pipe's reader is gone the descriptor is
    /dev/null, so writers that hold the stream or the descriptor go on quietly."""
    from tqdm import tqdm

    train_script = load_train_script()
    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = train_script.SafeStream(io.TextIOWrapper(open(write_end, "wb", buffering=64), write_through=True))
    print("stopping after this step", file=stream, flush=True)  # EPIPE: dropped, and the descriptor redirected
    assert os.path.samestat(os.fstat(write_end), os.stat(os.devnull))
    handler = logging.StreamHandler(stream)
    logging.getLogger("closed-pipe").addHandler(handler)
    try:
        logging.getLogger("closed-pipe").error("stopped at step 3")
    finally:
        logging.getLogger("closed-pipe").removeHandler(handler)
    for _ in tqdm(range(3), file=stream, mininterval=0):
        pass
    os.write(write_end, b"C code writing to the descriptor")
    stream.stream.close()


@pytest.mark.parametrize("how", ["kill -9 the launcher", "Ctrl-C"])
def test_accelerate_launch_stopped_leaves_a_checkpoint_and_no_orphan(tmp_path, reference_run, how):
    """`accelerate launch` forwards no signal. Killed, even by SIGKILL, train.py gets a SIGHUP from the kernel
    (PR_SET_PDEATHSIG) and stops as after a SIGTERM, instead of training on without its launcher; its stderr, a pipe
    to the dead launcher (accelerate 1.16+), takes no report any more, so the checkpoint records the stop. Ctrl-C
    reaches both; train.py then gets SIGINT, and SIGTERM (the launcher stopping it) and SIGHUP, which must not
    count as "a second signal: stop at once"."""
    out, log = tmp_path / "stopped", tmp_path / "train.log"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [*launcher, TRAIN, *TINY, "--output_dir", str(out), "--max_train_steps", STEPS,
             "--checkpointing_steps", EVERY],
            stdout=subprocess.DEVNULL, stderr=stderr, env=env(), start_new_session=True,
        )  # fmt: skip
        wait_for(lambda: (out / "checkpoints" / "checkpoint-20").is_dir(), "checkpoint-20")
        (trainer,) = psutil.Process(process.pid).children(recursive=True)
        if how == "Ctrl-C":
            os.killpg(process.pid, signal.SIGINT)  # what the terminal does: the whole foreground process group
        else:
            process.kill()
        process.wait()
        _, orphans = psutil.wait_procs([trainer], timeout=120)
        assert not orphans, "train.py trained on after its launcher died"
    if how == "Ctrl-C":  # the launcher relays the report; its own traceback is not train.py's
        lines = log.read_text().splitlines(True)
        relayed = [line for line in lines if "[RANK 0]" in line]  # accelerate 1.16+ relays train.py's stderr with
        # a rank prefix; older launchers (the floor, 1.1) leave train.py on the inherited stderr
        text = "".join(relayed or [line for line in lines if "stopped at step" in line])
        step = stop_report(text, "SIGINT")
        assert stop_checkpoint(out, "SIGINT") == step
    else:
        step = stop_checkpoint(out, "SIGHUP")
    resume_after_stop(out, step, reference_run, resume=how != "Ctrl-C")


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


@pytest.mark.parametrize("flags, message", [
    (["--learning_rate", "-1e-3"], "argument --learning_rate: must be > 0, got -0.001"),  # not taken for an option
    (["--learning_rate", "-0.001"], "argument --learning_rate: must be > 0, got -0.001"),
    (["--learning_rate", "fast"], "argument --learning_rate: must be a number > 0, got 'fast'"),
    (["--label_dropout", "1.5"], "argument --label_dropout: must be in [0, 1), got 1.5"),
    (["--adam_beta2", "1"], "argument --adam_beta2: must be in [0, 1), got 1.0"),
    (["--max_grad_norm", "nan"], "argument --max_grad_norm: must be a finite number > 0, got 'nan'"),
    (["--train_batch_size", "0"], "argument --train_batch_size: must be >= 1, got 0"),
    (["--train_batch_size", "2.5"], "argument --train_batch_size: must be an integer >= 1, got '2.5'"),
    (["--lr_warmup_steps", "-1"], "argument --lr_warmup_steps: must be >= 0, got -1"),
    (["--block_out_channels", "16", "-32"], "argument --block_out_channels: must be >= 1, got -32"),
    (["--guidance_scale", "-2"], "argument --guidance_scale: must be >= 0, got -2.0"),
    (["--num_train_timesteps", "50", "--sample_inference_steps", "51"],
     "argument --sample_inference_steps: must be <= --num_train_timesteps (50), got 51"),
])  # fmt: skip
def test_numbers_are_checked_when_parsed(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_train_script().parse_args(["--output_dir", "out", *flags])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_defaults_worked_out_when_parsed():
    parse_args = load_train_script().parse_args
    args = parse_args(["--output_dir", "out"])
    assert args.guidance_scale == DEFAULT_GUIDANCE_SCALE and args.sample_inference_steps == 100
    args = parse_args(["--output_dir", "out", "--guidance_scale", "0", "--num_train_timesteps", "50", "--seed", "-0"])
    assert args.guidance_scale == 0 and args.sample_inference_steps == 50  # an explicit 0 is a w, not "unset"
    # the grids' DDPM steps: a tenth of the run's, within [10, 100] and at most T
    for steps, timesteps, expected in ((300, 1000, 30), (20, 1000, 10), (20, 5, 5), (5000, 1000, 100)):
        flags = ["--max_train_steps", str(steps), "--num_train_timesteps", str(timesteps)]
        assert parse_args(["--output_dir", "out", *flags]).sample_inference_steps == expected
    assert parse_args(["--output_dir", "out", "--learning_rate", "2e-4"]).learning_rate == 2e-4


@pytest.mark.parametrize("steps, images, classes, expected", [
    (999, None, 10, (10, 10)),  # a short run: one image per class, in one row
    (1000, None, 10, (80, 8)),  # 8 per class, one row per class
    (4, 30, 10, (30, 3)),  # N // classes per class
    (4, 5, 10, (10, 10)),  # at least one per class
    (4, 0, 10, (0, 10)),  # none: no samples.png
    (999, None, None, (8, 8)),  # unconditional
    (1000, None, None, (32, 8)),
    (4, 12, None, (12, 8)),
])  # fmt: skip
def test_sample_grids_are_proportionate_to_the_run(steps, images, classes, expected):
    train_script = load_train_script()
    args = train_script.parse_args(["--output_dir", "out", "--max_train_steps", str(steps)]
                                   + ([] if images is None else ["--num_sample_images", str(images)]))  # fmt: skip
    labels, count, columns = train_script.grid_layout(args, classes)
    assert (count, columns) == expected
    if classes:  # each class equally often, class 0's first
        assert torch.equal(labels, torch.arange(classes).repeat_interleave(count // classes))
    else:
        assert labels is None


def test_help_shows_the_defaults():
    result = subprocess.run([sys.executable, TRAIN, "--help"], capture_output=True, text=True, env=env(), timeout=120)
    text = " ".join(result.stdout.split())
    for flag, default in [
        ("--learning_rate LEARNING_RATE", "0.001"),
        ("--max_train_steps MAX_TRAIN_STEPS", "2000"),
        ("--seed SEED", "0"),
        ("--model_preset {base,small,tiny}", "small"),
        ("--use_ema, --no-use_ema", "True"),
        ("--adam_weight_decay ADAM_WEIGHT_DECAY", "0.0"),
    ]:
        assert f"{flag} (default: {default})" in text, flag
    assert "(default: None)" not in text and "(default: False)" not in text


def test_unreachable_hub_dataset_is_one_line(tmp_path):
    result = train("--output_dir", str(tmp_path / "out"), "--dataset_name", "ddpm-hub-tests/no-such-dataset",
                   check=False)  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if "error: " in line]
    assert len(error) == 1 and "could not load dataset 'ddpm-hub-tests/no-such-dataset'" in error[0]
    assert "HF_HUB_OFFLINE is set" in error[0]


# ---------------------------------------------------------------------------------------------------------------------
# The loss: the scheduler's weights, prediction types, accumulation, bf16
# ---------------------------------------------------------------------------------------------------------------------


def tiny_unet(seed: int = 0, **overrides) -> DDPMHubUNet2DModel:
    torch.manual_seed(seed)
    return DDPMHubUNet2DModel.from_preset("tiny", sample_size=28, **overrides)


@pytest.mark.parametrize("loss, prediction_type", [
    ("simple", "epsilon"), ("weighted", "epsilon"), ("min_snr", "epsilon"), ("min_snr", "v_prediction"),
    ("min_snr", "sample"), ("simple", "v_prediction"),
])  # fmt: skip
def test_loss_weights_are_the_formulas(loss, prediction_type):
    scheduler = DDPMHubScheduler(num_train_timesteps=100, prediction_type=prediction_type)
    x_0, labels = (tensor[:16] for tensor in load_mnist5k("train"))
    unet = tiny_unet().eval()
    draw = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    result = diffusion_loss(unet, scheduler, x_0, labels, draw(), loss=loss, snr_gamma=2.0, label_dropout=0.5)

    # the same draws, in the documented order: eps, t, label dropout
    generator = draw()
    noise = torch.randn(x_0.shape, generator=generator)
    t = torch.randint(0, 100, (16,), generator=generator)
    dropped = torch.rand(16, generator=generator) < 0.5
    assert torch.equal(result.timesteps, t) and dropped.any() and not dropped.all()
    alpha_bar = torch.cumprod(1 - scheduler.betas.double(), 0)
    a, s = alpha_bar[t].sqrt().view(-1, 1, 1, 1), (1 - alpha_bar[t]).sqrt().view(-1, 1, 1, 1)
    x_t = (a * x_0 + s * noise).float()
    target = {"epsilon": noise, "sample": x_0, "v_prediction": (a * noise - s * x_0).float()}[prediction_type]
    with torch.no_grad():
        prediction = unet(x_t, t, class_labels=torch.where(dropped, 10, labels)).sample
    per_sample = ((prediction - target) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(result.per_sample.detach(), per_sample, rtol=1e-4, atol=1e-6)

    snr = alpha_bar / (1 - alpha_bar)
    beta = scheduler.betas.double()
    elbo = beta / (2 * (1 - beta) * (1 - alpha_bar))  # beta^2 / (2 sigma^2 alpha (1 - alpha_bar)), sigma^2 = beta
    weight = {
        "simple": torch.ones(100, dtype=torch.float64),
        "weighted": elbo / elbo.mean(),
        "min_snr": snr.clamp(max=2.0) / {"epsilon": snr, "v_prediction": snr + 1, "sample": 1}[prediction_type],
    }[loss][t]
    expected = (per_sample.double() * weight).mean().float()
    torch.testing.assert_close(result.loss.detach(), expected, rtol=1e-4, atol=1e-7)


def fixed_draw_loss(folder_or_unet, prediction_type: str) -> float:
    """A model's loss on fixed images, noise and t (no label dropout): lower is a better trained model."""
    unet = folder_or_unet
    if not isinstance(unet, torch.nn.Module):
        unet = DDPMHubUNet2DModel.from_pretrained(folder_or_unet, subfolder="unet")
    x_0, labels = (tensor[:64] for tensor in load_mnist5k("held_out"))
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(x_0.shape, generator=generator)
    timesteps = torch.randint(0, 50, (64,), generator=generator)
    scheduler = DDPMHubScheduler(num_train_timesteps=50, prediction_type=prediction_type)
    with torch.no_grad():
        return diffusion_loss(
            unet.eval(), scheduler, x_0, labels, generator, noise=noise, timesteps=timesteps
        ).loss.item()


@pytest.mark.parametrize("prediction_type, loss", [("v_prediction", "min_snr"), ("sample", "simple")])
def test_v_and_x0_prediction_train_and_are_saved(tmp_path, prediction_type, loss):
    out = tmp_path / "out"
    train("--output_dir", str(out), "--max_train_steps", "60", "--prediction_type", prediction_type, "--loss", loss,
          "--no-use_ema", "--checkpointing_steps", "1000")  # fmt: skip
    scheduler_config = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler_config["prediction_type"] == prediction_type
    assert json.loads((out / "training_config.json").read_text())["loss"] == loss
    untrained = fixed_draw_loss(tiny_unet(), prediction_type)  # train.py initialises with the same seed
    trained = fixed_draw_loss(out, prediction_type)
    assert trained < 0.85 * untrained, (trained, untrained)


ACCUMULATION_RUNNER = """
import sys

import torch

sys.argv = ["train.py", *sys.argv[1:]]
sys.path.insert(0, {training!r})
import train

real = train.diffusion_loss


def per_sample_draws(unet, scheduler, x_0, labels, generator, **kwargs):
    # noise and t fixed by each image, not by its place in the batch: a batch of 16 and two micro-batches of 8
    # then see the same draws, and only the accumulation can make them differ
    seeds = (x_0.flatten(1).sum(1) * 1000).round().long()
    noise = torch.stack([torch.randn(x_0.shape[1:], generator=torch.Generator().manual_seed(int(s))) for s in seeds])
    timesteps = seeds.abs() % scheduler.config.num_train_timesteps
    return real(unet, scheduler, x_0, labels, generator, **kwargs, noise=noise, timesteps=timesteps)


train.diffusion_loss = per_sample_draws
train.main()
"""


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    runner = tmp_path / "runner.py"
    runner.write_text(ACCUMULATION_RUNNER.format(training=str(ROOT / "training")))
    # cosine LR from step 0: a schedule stepped per micro-batch instead of per optimiser step would show
    common = [*TINY, "--max_train_steps", "3", "--label_dropout", "0", "--no-use_ema", "--lr_warmup_steps", "0"]
    for name, batch, accumulation in (("big", "16", "1"), ("accumulated", "8", "2")):
        result = subprocess.run(
            [sys.executable, str(runner), *common, "--output_dir", str(tmp_path / name), "--train_batch_size", batch,
             "--gradient_accumulation_steps", accumulation],
            capture_output=True, text=True, env=env(), timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
    big, accumulated = unet_weights(tmp_path / "big"), unet_weights(tmp_path / "accumulated")
    initial = tiny_unet().state_dict()
    assert not torch.equal(big["conv_in.weight"], initial["conv_in.weight"])  # it trained
    for name, tensor in big.items():
        torch.testing.assert_close(accumulated[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


def test_bf16_mixed_precision_trains(tmp_path):
    out = tmp_path / "out"
    result = train("--output_dir", str(out), "--max_train_steps", "4", "--mixed_precision", "bf16")
    assert all(math.isfinite(loss) for loss in first_and_last_loss(result.stderr, 4))
    assert json.loads((out / "training_config.json").read_text())["mixed_precision"] == "bf16"
    for name, tensor in unet_weights(out).items():
        assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all(), name  # the weights stay float32
