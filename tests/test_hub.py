"""Tests of ddpm_hub.hub and ddpm_hub.push: file selection, model card, mirror pushes served by olah, push failures.

They use a tiny *stock* diffusers DDPMPipeline, so they do not depend on ddpm_hub's own pipeline classes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from huggingface_hub import HfApi, ModelCard
from olah_hub import free_port, hub_env, run_python, subprocess_env

from ddpm_hub import hub
from ddpm_hub.hub import HubPushError, make_model_card, push_to_hub, push_to_mirror, select_pipeline_files
from ddpm_hub.push import main as push_main

REPO_ID = "ddpm-hub-tests/tiny-ddpm"

PIPELINE_FILES = {
    "README.md",
    "model_index.json",
    "samples.png",
    "scheduler/scheduler_config.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "unet/unet_notes.py",
}
TRAINING_LEFTOVERS = {
    "checkpoints/checkpoint-10/model.safetensors",
    "checkpoints/checkpoint-10/optimizer.bin",
    "checkpoints/checkpoint-10/random_states_0.pkl",
    "checkpoints/checkpoint-10/unet/config.json",
    "checkpoint-20/unet/diffusion_pytorch_model.safetensors",
    "logs/events.out.tfevents.1700000000.host.1.0",
    "logs/run-1/config.json",
    "pytorch_model.bin",
    "unet/diffusion_pytorch_model.bin",
    "optimizer.pt",
    ".ipynb_checkpoints/notes.py",
}

EVALUATION = {"digit_accuracy": 0.9375, "fid": 12.5, "per_class": {"3": 0.875}}
TRAINING = {"dataset": "mnist5k", "num_epochs": 3, "learning_rate": 1e-4, "block_out_channels": (8, 16)}

SAMPLE_CODE = """
import numpy as np, torch
from diffusers import DDPMPipeline

def sample(pipe):
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    return pipe(batch_size=2, generator=generator, num_inference_steps=3, output_type="np").images
"""


def tiny_pipeline() -> DDPMPipeline:
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    return DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=10))


def folder_hash(folder: Path) -> str:
    """Hash of every path, file mode and file content under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(oct(path.lstat().st_mode).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory) -> Path:
    """A saved tiny pipeline + model card + sample image, with the leftovers of a training run around it."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("saved") / "tiny-ddpm"
    tiny_pipeline().save_pretrained(folder)
    card = make_model_card(repo_id=REPO_ID, sample_image="samples.png", training=TRAINING, evaluation=EVALUATION)
    card.save(folder / "README.md")
    Image.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)).save(folder / "samples.png")
    (folder / "unet" / "unet_notes.py").write_text("# component code shipped with the weights\n")
    for relpath in TRAINING_LEFTOVERS:
        (folder / relpath).parent.mkdir(parents=True, exist_ok=True)
        (folder / relpath).write_bytes(b"training leftover " + relpath.encode())
    return folder


# ---------------------------------------------------------------------------------------------------- file selection


def test_selection_keeps_the_pipeline_and_drops_training_leftovers(pipeline_folder):
    selected = select_pipeline_files(pipeline_folder)
    assert set(selected) == PIPELINE_FILES
    assert selected == sorted(selected)
    assert not set(selected) & TRAINING_LEFTOVERS


def test_upload_folder_selects_the_same_files(pipeline_folder, monkeypatch):
    """push_to_hub hands the patterns to upload_folder: its own listing must equal select_pipeline_files."""
    api = HfApi(endpoint="http://127.0.0.1:9")  # never contacted
    if not hasattr(api, "_prepare_upload_folder_additions"):
        pytest.skip("huggingface_hub internals changed")
    monkeypatch.setattr(HfApi, "_validate_yaml", lambda self, *args, **kwargs: None)  # the only network call
    kwargs = hub._filter_kwargs()
    operations = api._prepare_upload_folder_additions(pipeline_folder, "", **kwargs)
    assert {op.path_in_repo for op in operations} == set(select_pipeline_files(pipeline_folder))


# ---------------------------------------------------------------------------------------------------- model card


def test_model_card_metadata_round_trips():
    card = make_model_card(repo_id=REPO_ID, sample_image="samples.png", training=TRAINING, evaluation=EVALUATION)
    data = ModelCard(str(card)).data
    assert data.library_name == "diffusers"
    assert data.license == "apache-2.0"
    assert data.pipeline_tag == "unconditional-image-generation"
    assert data.datasets == ["mnist"]
    assert set(data.tags) == {"diffusers", "ddpm", "ddpm-hub", "class-conditional", "mnist", "pytorch"}


def test_model_card_body():
    text = make_model_card(repo_id=REPO_ID, sample_image="samples.png", training=TRAINING, evaluation=EVALUATION).text
    # the three ways to load
    assert f'DDPMHubPipeline.from_pretrained("{REPO_ID}")' in text
    assert f'DiffusionPipeline.from_pretrained("{REPO_ID}", trust_remote_code=True)' in text
    assert f'DDPMHubUNet2DModel.from_pretrained("{REPO_ID}", subfolder="unet")' in text
    assert f'DDPMScheduler.from_pretrained("{REPO_ID}", subfolder="scheduler")' in text
    assert "![" in text and "(samples.png)" in text
    # training config and evaluation numbers
    assert "learning_rate: 0.0001" in text and "mnist5k" in text
    assert "| digit_accuracy | 0.9375 |" in text
    assert "| fid | 12.5 |" in text
    assert "| per_class.3 | 0.875 |" in text
    assert "not evaluated" not in text.lower()


def test_model_card_without_evaluation_says_so():
    card = make_model_card(repo_id=REPO_ID, sample_image=None, training=None, evaluation=None, license="mit")
    assert "not evaluated" in card.text.lower()
    assert "![" not in card.text
    assert ModelCard(str(card)).data.license == "mit"


# ---------------------------------------------------------------------------------------------------- mirror pushes


def test_push_to_mirror_twice_makes_two_commits(pipeline_folder, tmp_path):
    before = folder_hash(pipeline_folder)
    first = push_to_mirror(pipeline_folder, tmp_path, REPO_ID, commit_message="first")
    second = push_to_mirror(pipeline_folder, tmp_path, REPO_ID, commit_message="second")
    repo = tmp_path / "models" / REPO_ID

    assert first != second and len(second) == 40
    assert git(repo, "rev-parse", "main") == second
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(repo, "log", "--format=%s", "main").splitlines() == ["second", "first"]
    assert set(git(repo, "ls-files").splitlines()) == PIPELINE_FILES
    assert git(repo, "status", "--porcelain") == ""
    for relpath in PIPELINE_FILES:
        assert (repo / relpath).read_bytes() == (pipeline_folder / relpath).read_bytes()
    assert not (repo / "checkpoints").exists() and not (repo / "logs").exists()
    assert folder_hash(pipeline_folder) == before


def test_push_to_mirror_replaces_files_that_left_the_pipeline(pipeline_folder, tmp_path):
    repo = tmp_path / "models" / REPO_ID
    push_to_mirror(pipeline_folder, tmp_path, REPO_ID)
    (repo / "stale.safetensors").write_bytes(b"old")  # e.g. a file the previous pipeline version had
    git(repo, "add", "stale.safetensors")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "add a stale file")
    push_to_mirror(pipeline_folder, tmp_path, REPO_ID)
    assert not (repo / "stale.safetensors").exists()
    assert set(git(repo, "ls-files").splitlines()) == PIPELINE_FILES


def test_push_to_mirror_errors(pipeline_folder, tmp_path):
    with pytest.raises(ValueError, match="model_index.json"):
        push_to_mirror(pipeline_folder / "unet", tmp_path, REPO_ID)
    with pytest.raises(ValueError, match="repo_id"):
        push_to_mirror(pipeline_folder, tmp_path, "not/a/repo")
    with pytest.raises(ValueError, match="org/name"):
        push_to_mirror(pipeline_folder, tmp_path, "no-namespace")
    occupied = tmp_path / "models" / "org" / "occupied"
    occupied.mkdir(parents=True)
    (occupied / "keep.txt").write_text("not a git repo")
    before = folder_hash(pipeline_folder)
    with pytest.raises(HubPushError, match="not a git repository") as info:
        push_to_mirror(pipeline_folder, tmp_path, "org/occupied")
    assert f"untouched at {pipeline_folder}" in str(info.value)
    assert (occupied / "keep.txt").read_text() == "not a git repo"
    assert folder_hash(pipeline_folder) == before


def test_cli_pushes_to_mirror(pipeline_folder, tmp_path, capsys):
    assert push_main([str(pipeline_folder), "--repo_id", REPO_ID, "--mirror_dir", str(tmp_path)]) == 0
    assert "commit" in capsys.readouterr().out
    assert push_main([str(pipeline_folder), "--repo_id", REPO_ID, "--mirror_dir", str(tmp_path), "--private"]) == 1
    assert capsys.readouterr().err.startswith("error: --private cannot be used with --mirror_dir")


# ---------------------------------------------------------------------------------------------------- through olah
# Importing torch + diffusers in a fresh interpreter costs seconds on a busy machine, so everything that must run with
# HF_ENDPOINT=<olah> happens in one subprocess, and the tests below check its results.

PUSH_TO_HUB_CODE = """
from ddpm_hub.hub import HubPushError, push_to_hub

def push_error(folder, repo_id):
    try:
        push_to_hub(folder, repo_id, token="hf_fake")
    except HubPushError as err:
        return str(err)
    raise SystemExit("push_to_hub did not fail")
"""


@pytest.fixture(scope="module")
def through_olah(pipeline_folder, olah_hub, tmp_path_factory) -> dict:
    """push_to_mirror into olah's mirror dir, then with HF_ENDPOINT=olah: load the pipeline by sha and by branch and
    sample from both, list the repo files, and try push_to_hub (which olah must refuse)."""
    before = folder_hash(pipeline_folder)
    sha = push_to_mirror(pipeline_folder, olah_hub.mirror_dir, REPO_ID)
    work = tmp_path_factory.mktemp("through_olah")
    lines = [
        "import json",
        "from huggingface_hub import HfApi",
        f"by_sha = DDPMPipeline.from_pretrained({REPO_ID!r}, revision={sha!r})",
        f"by_branch = DDPMPipeline.from_pretrained({REPO_ID!r}, revision='main')",
        f"np.savez({str(work / 'images.npz')!r}, by_sha=sample(by_sha), by_branch=sample(by_branch))",
        f"files = [s.rfilename for s in HfApi().model_info({REPO_ID!r}, revision={sha!r}).siblings]",
        f"error = push_error({str(pipeline_folder)!r}, 'ddpm-hub-tests/new-repo')",
        "print(json.dumps({'files': files, 'push_error': error}))",
    ]
    code = SAMPLE_CODE + PUSH_TO_HUB_CODE + "\n".join(lines)
    stdout = run_python(code, hub_env(olah_hub.endpoint, work / "hf_home"), timeout=120)
    with np.load(work / "images.npz") as images:
        result = {"sha": sha, "images": dict(images), **json.loads(stdout.strip().splitlines()[-1])}
    result["folder_unchanged"] = folder_hash(pipeline_folder) == before
    return result


def test_mirror_push_loads_through_olah(pipeline_folder, through_olah):
    """push_to_mirror -> olah serves it -> DDPMPipeline.from_pretrained gives the same images as the local folder."""
    namespace: dict = {}
    exec(SAMPLE_CODE, namespace)
    expected = namespace["sample"](DDPMPipeline.from_pretrained(pipeline_folder))
    assert expected.shape == (2, 8, 8, 1)
    np.testing.assert_allclose(through_olah["images"]["by_sha"], expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(through_olah["images"]["by_branch"], expected, atol=1e-6, rtol=0)
    assert set(through_olah["files"]) == PIPELINE_FILES  # only the pipeline was published
    assert through_olah["folder_unchanged"]


def test_push_to_hub_is_refused_by_read_only_olah(pipeline_folder, through_olah):
    """olah has no write routes: create_repo gets 405, reported as a HubPushError pointing at push_to_mirror."""
    message = through_olah["push_error"]
    assert "creating the repository" in message and "405" in message and "push_to_mirror" in message
    assert f"untouched at {pipeline_folder}" in message


# ---------------------------------------------------------------------------------------------------- Hub failures


def test_push_to_hub_rejects_bad_arguments_before_any_network(pipeline_folder, tmp_path):
    with pytest.raises(ValueError, match="repo_id"):
        push_to_hub(pipeline_folder, "bad repo id!")
    with pytest.raises(ValueError, match="repo_id"):
        push_to_hub(pipeline_folder, "a/b/c")
    (tmp_path / "unet").mkdir()
    with pytest.raises(ValueError, match="not a saved pipeline folder"):
        push_to_hub(tmp_path, REPO_ID)
    with pytest.raises(ValueError, match="create_pr"):
        push_to_hub(pipeline_folder, REPO_ID, revision="dev", create_pr=True)
    assert push_main([str(tmp_path), "--repo_id", REPO_ID]) == 1


def test_push_to_hub_unreachable_endpoint(pipeline_folder, tmp_path):
    """HF_ENDPOINT points at a closed port: push_to_hub raises HubPushError, the CLI prints it and exits with 1."""
    before = folder_hash(pipeline_folder)
    env = hub_env(f"http://127.0.0.1:{free_port()}", tmp_path / "hf_home")  # nothing listens there
    folder, repo_id = str(pipeline_folder), REPO_ID
    code = PUSH_TO_HUB_CODE + "\n".join(
        [
            "import sys",
            "from ddpm_hub.push import main",
            f"print(push_error({folder!r}, {repo_id!r}))",
            "sys.stdout.flush()",
            f"sys.exit(main([{folder!r}, '--repo_id', {repo_id!r}]))  # what the ddpm-hub-push script does",
        ]
    )
    cli = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(env), capture_output=True, text=True, timeout=120
    )
    message = cli.stdout
    assert "creating the repository" in message and "Could not reach" in message, cli.stderr
    assert f"untouched at {pipeline_folder}" in message
    assert cli.returncode == 1
    assert cli.stderr.startswith("error: ") and "Traceback" not in cli.stderr
    assert "untouched" in cli.stderr
    assert folder_hash(pipeline_folder) == before
