"""Tests of ddpm_hub.hub and ddpm_hub.push: file selection, model card, mirror pushes served by olah, push failures.

They use a tiny *stock* diffusers DDPMPipeline, so they do not depend on ddpm_hub's own pipeline classes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from hub_upload_server import HubUploadServer
from huggingface_hub import ModelCard
from olah_hub import free_port, hub_env, run_python, subprocess_env

from ddpm_hub import DDPMHubPipeline, DDPMHubScheduler, DDPMHubUNet2DModel
from ddpm_hub.hub import (
    HubPushError,
    describe_training_data,
    make_model_card,
    push_to_hub,
    push_to_mirror,
    retarget_model_card,
    select_pipeline_files,
    write_model_card,
)
from ddpm_hub.push import main as push_main

ROOT = Path(__file__).resolve().parents[1]
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


def git_bytes(repo: Path, blob: str) -> bytes:
    return subprocess.run(["git", "show", blob], cwd=repo, check=True, capture_output=True).stdout


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


@pytest.mark.parametrize("prediction_type,says", [("epsilon", "predicts the noise"), ("sample", "clean image x_0")])
def test_model_card_says_what_the_unet_predicts(prediction_type, says):
    training = {**TRAINING, "prediction_type": prediction_type}
    text = make_model_card(repo_id=REPO_ID, sample_image=None, training=training, evaluation=None).text
    assert says in text and (prediction_type == "epsilon") == ("predicts the noise" in text)


def test_model_card_without_evaluation_says_so():
    card = make_model_card(repo_id=REPO_ID, sample_image=None, training=None, evaluation=None, license="mit")
    assert "not evaluated" in card.text.lower()
    assert "![" not in card.text
    assert ModelCard(str(card)).data.license == "mit"


# ------------------------------------------------------------------------------------------------ cards of real models
# Tiny ddpm_hub pipelines saved the way training/train.py saves them, with the card written from the folder.

PLACEHOLDER = "ddpm-hub/"  # write_model_card's repo id when none is known: ddpm-hub/<folder name>


def save_hub_pipeline(folder: Path, *, channels: int, num_classes: int | None, training: dict | None) -> Path:
    """A saved DDPMHubPipeline (random 8x8 tiny U-Net), its training_config.json, and the card write_model_card
    makes from them."""
    torch.manual_seed(0)
    unet = DDPMHubUNet2DModel.from_preset(
        "tiny", sample_size=8, in_channels=channels, out_channels=channels, num_class_embeds=num_classes
    )
    w = (training or {}).get("guidance_scale", 1.5)  # recorded in model_index.json, as train.py does
    DDPMHubPipeline(unet=unet, scheduler=DDPMHubScheduler(num_train_timesteps=10), guidance_scale=w).save_pretrained(
        folder
    )
    if training is not None:
        (folder / "training_config.json").write_text(json.dumps(training))
    write_model_card(folder)
    return folder


def image_folder(root: Path, classes: dict[str, int], size: int = 12) -> Path:
    """An image folder with one sub-folder per class, RGB PNGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def load_train_module():
    spec = importlib.util.spec_from_file_location("ddpm_hub_train_script", ROOT / "training" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def card_code(card_text: str) -> str:
    """The card's Python blocks that load (way 1) and sample, run against ``folder``, with few steps."""
    blocks = re.findall(r"```python\n(.*?)```", card_text, flags=re.DOTALL)
    load = next(block for block in blocks if "DDPMHubPipeline.from_pretrained" in block)
    sampling = card_text.split("## Sampling", 1)[1]
    (sampling_code,) = re.findall(r"```python\n(.*?)```", sampling.split("## Training", 1)[0], flags=re.DOTALL)
    return (
        load
        + "pipe.set_progress_bar_config(disable=True)\n"
        + re.sub(r"num_inference_steps=\d+", "num_inference_steps=3", sampling_code)
    )


def run_card_code(card_text: str, folder: Path, repo_id: str, tmp_path: Path, monkeypatch) -> dict:
    """Runs the card's loading + sampling snippets, with the repo id pointing at the local folder."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(card_code(card_text).replace(f'"{repo_id}"', repr(str(folder))), namespace)
    return namespace


@pytest.fixture(scope="module")
def image_folder_model(tmp_path_factory) -> Path:
    """A 2-class RGB image-folder model: the data record comes from train.py's own loading code."""
    train = load_train_module()
    data_dir = image_folder(tmp_path_factory.mktemp("data") / "pets", {"cat": 3, "dog": 2})
    out = tmp_path_factory.mktemp("saved") / "pets-ddpm"
    argv = ["--train_data_dir", str(data_dir), "--resolution", "8", "--channels", "3", "--output_dir", str(out)]
    args = train.parse_args(argv)
    images, labels, class_names = train.load_training_data(args)
    training = {**vars(args), "data": train.data_record(args, images, class_names, int(labels.max()) + 1)}
    return save_hub_pipeline(out, channels=3, num_classes=2, training=training)


def test_training_records_the_data_and_the_sub_folder_of_each_label(image_folder_model):
    data = json.loads((image_folder_model / "training_config.json").read_text())["data"]
    assert data["source"] == "image_folder" and data["location"].endswith("pets")
    assert (data["num_images"], data["resolution"], data["channels"]) == (5, 8, 3)
    assert data["class_names"] == ["cat", "dog"]  # label 0 is the sub-folder cat/, label 1 is dog/


def test_card_of_an_image_folder_model(image_folder_model, tmp_path, monkeypatch):
    text = (image_folder_model / "README.md").read_text()
    meta = ModelCard(text).data
    assert "8x8 RGB images" in text and "5 images of the image folder" in text
    assert "digit" not in text.lower() and "mnist" not in text.lower() and "28x28" not in text
    assert "mnist" not in meta.tags and not meta.datasets and "class-conditional" in meta.tags
    assert "| 0 | cat |" in text and "| 1 | dog |" in text and "| class label | sub-folder |" in text
    assert "class_labels=[0, 1]," in text and "range(10)" not in text
    namespace = run_card_code(text, image_folder_model, "ddpm-hub/pets-ddpm", tmp_path, monkeypatch)
    assert [image.size for image in namespace["images"]] == [(8, 8), (8, 8)]
    assert namespace["images"][0].mode == "RGB" and (tmp_path / "class_0.png").is_file()


def test_card_of_an_unconditional_model(tmp_path_factory, tmp_path, monkeypatch):
    training = {"data": {"source": "hub_dataset", "location": "someone/faces", "split": "train", "num_images": 64}}
    folder = tmp_path_factory.mktemp("saved") / "faces"
    save_hub_pipeline(folder, channels=1, num_classes=None, training=training)
    text = (folder / "README.md").read_text()
    meta = ModelCard(text).data
    assert "An unconditional denoising diffusion" in text and "8x8 grayscale images" in text
    assert "the Hub dataset `someone/faces` (split `train`)" in text and meta.datasets == ["someone/faces"]
    assert "class-conditional" not in meta.tags and "class_labels" not in card_code(text)
    namespace = run_card_code(text, folder, "ddpm-hub/faces", tmp_path, monkeypatch)
    assert len(namespace["images"]) == 4 and namespace["images"][0].size == (8, 8)


def test_card_of_an_mnist5k_model(tmp_path_factory):
    training = {"dataset": "mnist5k", "resolution": 28, "channels": 1, "guidance_scale": 3.0}  # no "data" entry
    data = describe_training_data(training, {"sample_size": 28, "in_channels": 1, "num_class_embeds": 10})
    assert data["class_names"] == [str(digit) for digit in range(10)] and data["num_classes"] == 10
    card = make_model_card(repo_id=REPO_ID, sample_image=None, training=training, evaluation=None)
    assert "28x28 grayscale handwritten digits" in card.text
    assert "class_labels=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]," in card.text
    assert "guidance_scale=3.0," in card.text and "| 3 | 3 |" in card.text
    assert card.data.datasets == ["mnist"] and "mnist" in card.data.tags


def test_card_says_how_to_install_ddpm_hub(image_folder_model):
    text = (image_folder_model / "README.md").read_text()
    assert "pip install ddpm-hub" not in text and "pip install -e ." in text and "not on PyPI" in text


def test_retarget_model_card_replaces_the_repo_id_of_every_snippet(image_folder_model):
    text = (image_folder_model / "README.md").read_text()
    assert text.count('from_pretrained("ddpm-hub/pets-ddpm"') == 4
    note = 'Compare with `DDPMPipeline.from_pretrained("google/ddpm-cifar10-32")`.'
    edited = text.replace("## Classes", f"{note}\n\n## Classes")
    new = retarget_model_card(edited, "lab/pets")
    assert new.count('from_pretrained("lab/pets"') == 4 and "ddpm-hub/pets-ddpm" not in new
    assert "\n# pets\n" in new and note in new  # the hand edit, and the other repo it names, are kept
    assert retarget_model_card(new, "lab/pets") == new


def test_cli_mirror_push_publishes_the_card_for_its_repo_id(image_folder_model, tmp_path):
    before = folder_hash(image_folder_model)
    assert push_main([str(image_folder_model), "--repo_id", "lab/pets", "--mirror_dir", str(tmp_path)]) == 0
    published = (tmp_path / "models" / "lab" / "pets" / "README.md").read_text()
    assert published.count('from_pretrained("lab/pets"') == 4 and PLACEHOLDER not in published
    assert published == retarget_model_card((image_folder_model / "README.md").read_text(), "lab/pets")
    assert folder_hash(image_folder_model) == before  # the local card keeps its own id


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


UPLOADED_ID = "ddpm-hub-tests/uploaded"


@pytest.fixture(scope="module")
def through_olah(pipeline_folder, olah_hub, tmp_path_factory) -> dict:
    """push_to_mirror into olah's mirror dir; push_to_hub (twice) through the Hub write API of HubUploadServer, which
    commits into the same mirror dir; then with HF_ENDPOINT=olah: load both pipelines and sample from them, list the
    repo files, read the published card, and try push_to_hub to olah itself (which olah must refuse)."""
    before = folder_hash(pipeline_folder)
    sha = push_to_mirror(pipeline_folder, olah_hub.mirror_dir, REPO_ID)
    work = tmp_path_factory.mktemp("through_olah")
    with HubUploadServer(olah_hub.mirror_dir) as server:
        lines = [
            "import json",
            "from huggingface_hub import HfApi, hf_hub_download",
            f"folder, endpoint = {str(pipeline_folder)!r}, {server.endpoint!r}",
            f"urls = [push_to_hub(folder, {UPLOADED_ID!r}, token='hf_fake', endpoint=endpoint, commit_message=m)",
            "        for m in ('first upload', 'second upload')]",
            f"by_sha = DDPMPipeline.from_pretrained({REPO_ID!r}, revision={sha!r})",
            f"by_branch = DDPMPipeline.from_pretrained({REPO_ID!r}, revision='main')",
            f"uploaded = DDPMPipeline.from_pretrained({UPLOADED_ID!r}, revision='main')",
            f"np.savez({str(work / 'images.npz')!r}, by_sha=sample(by_sha), by_branch=sample(by_branch),",
            "         uploaded=sample(uploaded))",
            f"files = [s.rfilename for s in HfApi().model_info({REPO_ID!r}, revision={sha!r}).siblings]",
            f"uploaded_files = [s.rfilename for s in HfApi().model_info({UPLOADED_ID!r}, revision='main').siblings]",
            f"card = open(hf_hub_download({UPLOADED_ID!r}, 'README.md', revision='main')).read()",
            f"error = push_error({str(pipeline_folder)!r}, 'ddpm-hub-tests/new-repo')",
            "print(json.dumps({'files': files, 'push_error': error, 'urls': urls, 'uploaded_files': uploaded_files,",
            "                  'uploaded_card': card}))",
        ]
        code = SAMPLE_CODE + PUSH_TO_HUB_CODE + "\n".join(lines)
        stdout = run_python(code, hub_env(olah_hub.endpoint, work / "hf_home"), timeout=180)
        commits = list(server.commits)
    with np.load(work / "images.npz") as images:
        result = {"sha": sha, "images": dict(images), **json.loads(stdout.strip().splitlines()[-1])}
    result["commits"] = commits
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


def test_push_to_hub_uploads_exactly_the_pipeline(pipeline_folder, through_olah, olah_hub):
    """push_to_hub -> the Hub's commit API (HubUploadServer) -> olah -> from_pretrained: the same images as the local
    folder; each commit named exactly the PIPELINE_FILES (no checkpoints, logs, .bin, hidden files) with the local
    bytes, the card retargeted to the repo pushed to; the local folder untouched."""
    namespace: dict = {}
    exec(SAMPLE_CODE, namespace)
    expected = namespace["sample"](DDPMPipeline.from_pretrained(pipeline_folder))
    np.testing.assert_allclose(through_olah["images"]["uploaded"], expected, atol=1e-6, rtol=0)

    commits = through_olah["commits"]
    assert [commit["repo_id"] for commit in commits] == [UPLOADED_ID, UPLOADED_ID]
    assert all(set(commit["files"]) == PIPELINE_FILES for commit in commits)
    assert [url.rsplit("/", 1)[-1] for url in through_olah["urls"]] == [commit["sha"] for commit in commits]
    assert set(through_olah["uploaded_files"]) == PIPELINE_FILES

    repo = olah_hub.repo_dir(UPLOADED_ID)
    assert git(repo, "log", "--format=%s", "main").splitlines() == ["second upload", "first upload"]
    for relpath in PIPELINE_FILES - {"README.md"}:
        assert git_bytes(repo, f"main:{relpath}") == (pipeline_folder / relpath).read_bytes(), relpath
    card = through_olah["uploaded_card"]
    assert card == retarget_model_card((pipeline_folder / "README.md").read_text(), UPLOADED_ID)
    assert f'from_pretrained("{UPLOADED_ID}"' in card and REPO_ID not in card
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


def curve_point(w, accuracy, frechet, real=2.0, steps=100):
    return {"scheduler": "DDPMHubScheduler", "family": "ddpm", "steps": steps, "guidance_scale": w,
            "nfe_per_image": steps * (1 if w in (0, 1) else 2), "num_samples": 200, "mean_accuracy": accuracy,
            "frechet_distance": frechet, "frechet_distance_real": real}  # fmt: skip


def test_card_shows_the_recorded_curves_and_samples_at_the_recommended_scale(tmp_path):
    folder = save_hub_pipeline(tmp_path / "curved", channels=1, num_classes=10, training={"guidance_scale": 2.0})
    plain = (folder / "README.md").read_text()
    evaluation = {
        "ddpm-100steps-w2": {"mean_accuracy": 1.0, "frechet_distance": 5.0, "num_samples": 200},
        "guidance_curve": {
            "num_samples": 200,
            "points": [curve_point(1.0, 0.95, 2.4), curve_point(1.5, 0.995, 3.1), curve_point(2.0, 1.0, 5.0)],
            "recommended_guidance_scale": 1.5,
            "rule": "the lowest Fréchet ratio among the scales with judge accuracy >= 99%",
            "plot": "eval_guidance.png",
            "command": "python benchmarks/bench_nfe.py --curve guidance",
        },
    }
    (folder / "evaluation.json").write_text(json.dumps(evaluation))
    (folder / "eval_guidance.png").write_bytes(b"png")
    text = write_model_card(folder).read_text()
    assert "guidance_scale=2.0," in plain and "guidance_scale=1.5," in text  # the snippet follows the curve
    assert "### Guidance: accuracy against diversity" in text and "Quality per U-Net call" not in text
    assert "| DDPMHubScheduler | 100 | 1.5 | 200 | 99.5% | 3.10 | 2.00 | 1.55x |" in text
    assert "| DDPMHubScheduler | 100 | 1 | 100 | 95.0% | 2.40 | 2.00 | 1.20x |" in text
    assert "**w = 1.5**" in text and "![Guidance: accuracy against diversity](eval_guidance.png)" in text
    assert "| ddpm-100steps-w2.mean_accuracy | 1 |" in text and "guidance_curve.points" not in text  # no flat rows
    assert "eval_guidance.png" in select_pipeline_files(folder)
    assert f'from_pretrained("{PLACEHOLDER}curved"' in text


def test_regenerating_a_card_keeps_its_repo_id(tmp_path):
    folder = save_hub_pipeline(tmp_path / "kept", channels=1, num_classes=None, training=None)
    make_model_card(repo_id="someone/elsewhere", sample_image=None, training=None, evaluation=None).save(
        folder / "README.md"
    )
    text = write_model_card(folder).read_text()
    assert 'from_pretrained("someone/elsewhere"' in text and f"{PLACEHOLDER}kept" not in text
