"""Publishing a trained pipeline folder: model card, push to the Hugging Face Hub, or push to a mirror git repo.

Three public pieces:

* :func:`make_model_card` writes the ``README.md`` of a pipeline repository (YAML metadata + how to load it).
* :func:`push_to_hub` uploads a folder written by ``save_pretrained`` to the Hub (or any Hub-compatible endpoint
  named by ``HF_ENDPOINT``).
* :func:`push_to_mirror` commits the same files into ``<mirror_dir>/models/<org>/<name>``, a plain git repository
  that an olah server (``mirrors-path``) serves with the Hub protocol, for labs without access to the public Hub.

Both push functions upload exactly the files chosen by :func:`select_pipeline_files`: the pipeline itself, never
the ``checkpoints/``, ``logs/``, optimizer states or ``.bin`` files that a training run leaves next to it (diffusers'
own training examples upload those by accident). A push never modifies the local folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import HfApi, ModelCard, ModelCardData, constants, get_token
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects, validate_repo_id

__all__ = [
    "PIPELINE_FILE_PATTERNS",
    "PIPELINE_IGNORE_PATTERNS",
    "MODEL_CARD_TAGS",
    "HubPushError",
    "select_pipeline_files",
    "make_model_card",
    "push_to_hub",
    "push_to_mirror",
]

# --------------------------------------------------------------------------------------------------------------------
# Which files make up a pipeline repository
# --------------------------------------------------------------------------------------------------------------------
# Patterns are matched the way ``huggingface_hub.upload_folder`` matches them (``fnmatch`` on the POSIX path relative
# to the folder), so ``*`` also crosses ``/``: ``*.py`` is any Python file at any depth. A file is uploaded when it
# matches one allow pattern and no ignore pattern.

PIPELINE_FILE_PATTERNS: tuple[str, ...] = (
    "model_index.json",  # which class loads each component
    "README.md",  # the model card
    "*.py",  # component / pipeline code, at the root and in the component subfolders (trust_remote_code)
    "*/config.json",  # model configs (unet/config.json)
    "*/scheduler_config.json",  # scheduler configs (scheduler/scheduler_config.json)
    "*.safetensors",  # weights
    "*.safetensors.index.json",  # the index of sharded weights
    "sample*.png",  # sample grids shown in the model card (samples.png, samples/epoch_10.png, ...)
    "sample*.jpg",
    "sample*.gif",
    "training_config.json",  # how the weights were trained (the model card's Training section)
    "evaluation.json",  # what the evaluation measured (the model card's Evaluation section)
)

PIPELINE_IGNORE_PATTERNS: tuple[str, ...] = (
    # training-state folders (accelerate's save_state, diffusers' --checkpointing_steps)
    "checkpoints/*",
    "*/checkpoints/*",
    "checkpoint-*",
    "*/checkpoint-*",
    # logs and trackers
    "logs/*",
    "*/logs/*",
    "runs/*",
    "*/runs/*",
    "wandb/*",
    "*/wandb/*",
    "*events.out.tfevents*",
    # pickled weights and optimizer / RNG states
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.pkl",
    "*optimizer*",
    "*random_states*",
    # hidden files and folders (.git, .ipynb_checkpoints, .cache, ...) and bytecode
    ".*",
    "*/.*",
    "*__pycache__*",
)

MODEL_CARD_TAGS: tuple[str, ...] = ("diffusers", "ddpm", "ddpm-hub", "class-conditional", "mnist", "pytorch")

_GIT = ("git", "-c", "user.name=ddpm-hub", "-c", "user.email=ddpm-hub@localhost", "-c", "commit.gpgsign=false")


class HubPushError(RuntimeError):
    """A push failed. The message says which step failed and why; the local folder was not modified."""


def _filter_kwargs() -> dict[str, list[str]]:
    """The allow/ignore lists given to ``filter_repo_objects`` and ``upload_folder`` (fresh lists: ``upload_folder``
    appends to the ``ignore_patterns`` list it is given)."""
    return {"allow_patterns": list(PIPELINE_FILE_PATTERNS), "ignore_patterns": list(PIPELINE_IGNORE_PATTERNS)}


def select_pipeline_files(folder: str | os.PathLike) -> list[str]:
    """The files of ``folder`` that a push uploads, as sorted POSIX paths relative to ``folder``.

    This is the one place the selection is made: :func:`push_to_mirror` copies exactly these files, and
    :func:`push_to_hub` hands the same patterns to ``upload_folder``, which lists and filters the folder the same way
    (``folder.glob("**/*")`` + ``filter_repo_objects``; it also always skips ``.git`` and ``.cache/huggingface``).
    """
    folder = Path(folder).expanduser().resolve()
    candidates = sorted(path.relative_to(folder).as_posix() for path in folder.glob("**/*") if path.is_file())
    kwargs = _filter_kwargs()
    kwargs["ignore_patterns"] += list(DEFAULT_IGNORE_PATTERNS)
    return list(filter_repo_objects(candidates, **kwargs))


# --------------------------------------------------------------------------------------------------------------------
# Model card
# --------------------------------------------------------------------------------------------------------------------

SAMPLING_SNIPPET = """\
import torch

generator = torch.Generator().manual_seed(0)
# one image per digit 0..9, with classifier-free guidance (guidance_scale=1: plain conditional sampling)
images = pipe(
    batch_size=10, class_labels=list(range(10)), guidance_scale=2.0, num_inference_steps=1000, generator=generator
).images
images[3].save("digit_3.png")

# faster: 50 DDIM steps on the same model (with the ddpm_hub package)
from ddpm_hub import DDIMHubScheduler

pipe.scheduler = DDIMHubScheduler.from_config(pipe.scheduler.config)
images = pipe(batch_size=10, class_labels=list(range(10)), num_inference_steps=50, generator=generator).images"""


def _plain(value: Any) -> Any:
    """Make ``value`` YAML-safe: tuples -> lists, paths -> strings, numpy/torch scalars -> Python numbers."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalar
        try:
            return _plain(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return ", ".join(_format_value(item) for item in value)
    return str(value)


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, prefix=f"{name}.")
        else:
            yield name, value


def _evaluation_section(evaluation: Mapping[str, Any] | None) -> str:
    if evaluation is None:
        return "Not evaluated: no evaluation results were recorded for this checkpoint."
    rows = [
        f"| {name} | {_format_value(value).replace('|', '&#124;')} |" for name, value in _flatten(_plain(evaluation))
    ]
    if not rows:
        return "Not evaluated: the evaluation results are empty."
    return "\n".join(["| metric | value |", "| --- | --- |", *rows])


def _training_section(training: Mapping[str, Any] | None) -> str:
    if training is None:
        return "The training configuration was not recorded."
    config = yaml.safe_dump(_plain(training), sort_keys=False, allow_unicode=True).strip()
    return f"```yaml\n{config}\n```"


def make_model_card(
    *,
    repo_id: str,
    sample_image: str | None,
    training: Mapping[str, Any] | None,
    evaluation: Mapping[str, Any] | None,
    license: str = "apache-2.0",
    datasets: Iterable[str] = ("mnist",),
    base_text: str | None = None,
) -> ModelCard:
    """The model card (``README.md``) of a pipeline repository.

    Args:
        repo_id: ``org/name`` the card is written for; it appears in every loading snippet.
        sample_image: path of a sample grid *relative to the repository root* (e.g. ``"samples.png"``), or None.
            It must match ``PIPELINE_FILE_PATTERNS`` (``sample*.png`` ...) to be uploaded with the pipeline.
        training: the training configuration, shown as a YAML block (None: "not recorded").
        evaluation: metric name -> value (nested dicts are flattened to ``a.b``), shown as a table
            (None: "Not evaluated").
        license, datasets: card metadata.
        base_text: replaces the default one-paragraph description.

    Save it next to ``model_index.json`` with ``card.save(folder / "README.md")`` before pushing.
    """
    data = ModelCardData(
        library_name="diffusers",
        license=license,
        tags=list(MODEL_CARD_TAGS),
        datasets=list(datasets),
        pipeline_tag="unconditional-image-generation",
    )
    name = repo_id.split("/")[-1]
    description = base_text or (
        "A class-conditional denoising diffusion probabilistic model (DDPM) that draws 28x28 handwritten digits, "
        "trained with the readable `ddpm_hub` package on "
        f"{', '.join(data.datasets)}. The repository is a complete diffusers pipeline folder (`model_index.json`, "
        "`unet/`, `scheduler/`): a U-Net that predicts the noise added to an image at step t, given t and a digit "
        "class, and the DDPM noise scheduler that turns those predictions into samples, one reverse step at a time."
    )
    sample = f"![Samples drawn from this model]({sample_image})\n\n" if sample_image else ""
    body = f"""
# {name}

{description}

{sample}## How to load

1. With the `ddpm_hub` package (`pip install ddpm-hub`):

```python
from ddpm_hub import DDPMHubPipeline

pipe = DDPMHubPipeline.from_pretrained("{repo_id}")
```

2. With diffusers alone, without installing `ddpm_hub`: the component code ships in this repository, so let
diffusers load it with `trust_remote_code=True` (read the `.py` files first: they run on your machine).

```python
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("{repo_id}", trust_remote_code=True)
```

3. Component by component: the U-Net from `unet/`, and the noise schedule from `scheduler/` with the stock
diffusers `DDPMScheduler` (its config is a standard `DDPMScheduler` config).

```python
from diffusers import DDPMScheduler
from ddpm_hub import DDPMHubUNet2DModel

unet = DDPMHubUNet2DModel.from_pretrained("{repo_id}", subfolder="unet")
scheduler = DDPMScheduler.from_pretrained("{repo_id}", subfolder="scheduler")
```

## Sampling

```python
{SAMPLING_SNIPPET}
```

## Training

{_training_section(training)}

## Evaluation

{_evaluation_section(evaluation)}
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


TRAINING_FILE = "training_config.json"
EVALUATION_FILE = "evaluation.json"
SAMPLE_FILE = "samples.png"


def write_model_card(folder: str | os.PathLike, repo_id: str | None = None) -> Path:
    """Writes ``README.md`` into a saved pipeline folder from what the folder records about itself.

    Reads ``training_config.json`` (written by ``training/train.py``), ``evaluation.json`` (written by
    ``python -m ddpm_hub.evaluation``) and ``samples.png`` when present, so the card can be regenerated at any time,
    e.g. after evaluating. Returns the card's path.
    """
    path = Path(folder)

    def read_json(name: str) -> dict | None:
        file = path / name
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None

    card = make_model_card(
        repo_id=repo_id or f"ddpm-hub/{path.resolve().name}",
        sample_image=SAMPLE_FILE if (path / SAMPLE_FILE).is_file() else None,
        training=read_json(TRAINING_FILE),
        evaluation=_card_evaluation(read_json(EVALUATION_FILE)),
    )
    card.save(path / "README.md")
    return path / "README.md"


def _card_evaluation(runs: dict | None) -> dict | None:
    """The headline numbers of each evaluation run in ``evaluation.json``; the full file ships beside the card."""
    if runs is None:
        return None
    keep = ("mean_accuracy", "frechet_distance", "frechet_distance_real", "judge_held_out_accuracy", "num_samples",
            "generation_seconds", "command")  # fmt: skip
    # runs of `python -m ddpm_hub.evaluation --nll`: the variational bound in bits/dim
    keep += ("nll_bits_per_dim", "nll_standard_error", "rate_bits_per_dim", "distortion_bits_per_dim",
             "prior_bits_per_dim", "num_images")  # fmt: skip
    return {name: {key: run[key] for key in keep if key in run} for name, run in runs.items()}


# --------------------------------------------------------------------------------------------------------------------
# Pushing
# --------------------------------------------------------------------------------------------------------------------


def _check_pipeline_folder(folder: str | os.PathLike) -> Path:
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder: pass the folder written by pipeline.save_pretrained(...)")
    if not (path / "model_index.json").is_file():
        raise ValueError(
            f"{path} is not a saved pipeline folder: it has no model_index.json. Pass the folder written by "
            "pipeline.save_pretrained(...), not a checkpoint or a component subfolder."
        )
    return path


def _check_repo_id(repo_id: str, *, require_namespace: bool = False) -> tuple[str | None, str]:
    try:
        validate_repo_id(repo_id)
    except ValueError as err:  # HFValidationError is a ValueError
        raise ValueError(f"invalid repo_id {repo_id!r}: {err}") from None
    if "/" not in repo_id:
        if require_namespace:
            raise ValueError(f"invalid repo_id {repo_id!r}: expected 'org/name'")
        return None, repo_id
    org, name = repo_id.split("/")
    return org, name


def _reason(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = " ".join(lines[:3]) or "(no message)"
    if len(text) > 500:
        text = text[:497] + "..."
    return f"{type(err).__name__}: {text}"


def _hint(err: BaseException, endpoint: str, token: str | None) -> str:
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status in (401, 403):
        if token is None and get_token() is None:
            return "No token was given and none is saved: run `hf auth login` or pass a write token."
        return "Check that the token is valid and has write access to this namespace."
    if status == 405:
        return (
            f"{endpoint} does not accept uploads (a read-only mirror such as olah?): "
            "push to its mirror git repository with push_to_mirror / --mirror_dir instead."
        )
    if status is None and type(err).__name__ in {"ConnectError", "ConnectTimeout", "ReadTimeout", "ConnectionError"}:
        return f"Could not reach {endpoint}: check the network connection and HF_ENDPOINT."
    return ""


def _push_error(step: str, target: str, folder: Path, err: BaseException, hint: str = "") -> HubPushError:
    parts = [f"Push of {folder} to {target} failed while {step}: {_reason(err)}."]
    if hint:
        parts.append(hint)
    parts.append(f"The local folder is untouched at {folder}.")
    return HubPushError(" ".join(parts))


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload pipeline",
    revision: str | None = None,
    create_pr: bool = False,
) -> str:
    """Upload a saved pipeline folder to the Hub repo ``repo_id`` (created if missing) in one commit.

    Only :func:`select_pipeline_files` files are sent. The endpoint is ``HF_ENDPOINT`` (default https://huggingface.co),
    read by huggingface_hub when it is imported. ``revision`` is an existing branch to commit to (default ``main``);
    ``create_pr=True`` opens a pull request against the default branch instead.

    Returns:
        The URL of the commit (of the pull request when ``create_pr``), or its oid when the server gives no URL.

    Raises:
        ValueError: ``folder`` is not a saved pipeline folder, ``repo_id`` is malformed, or ``revision`` and
            ``create_pr`` are both given.
        HubPushError: creating the repository or uploading failed (network, token, HTTP error).
    """
    folder = _check_pipeline_folder(folder)
    _check_repo_id(repo_id)
    if create_pr and revision not in (None, constants.DEFAULT_REVISION):
        raise ValueError("create_pr=True opens a pull request against the default branch: do not also pass revision")

    api = HfApi()  # endpoint: HF_ENDPOINT, as read when huggingface_hub was imported
    target = f"repo '{repo_id}' at {api.endpoint}"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, token=token)
    except Exception as err:
        raise _push_error("creating the repository", target, folder, err, _hint(err, api.endpoint, token)) from err
    try:
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
            token=token,
            **_filter_kwargs(),
        )
    except Exception as err:
        raise _push_error("uploading the files", target, folder, err, _hint(err, api.endpoint, token)) from err
    return str(getattr(info, "pr_url", None) or getattr(info, "commit_url", None) or getattr(info, "oid", info))


def _git(repo_dir: Path, *args: str) -> str:
    # Drop GIT_DIR, GIT_INDEX_FILE, ... inherited from a calling git hook: they would redirect these commands to
    # another repository.
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    result = subprocess.run([*_GIT, *args], cwd=repo_dir, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
        raise RuntimeError(f"`git {' '.join(args)}` failed in {repo_dir}: {message}")
    return result.stdout.strip()


def _clear_work_tree(repo_dir: Path) -> None:
    for entry in repo_dir.iterdir():
        if entry.name == ".git":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def push_to_mirror(
    folder: str | os.PathLike,
    mirror_dir: str | os.PathLike,
    repo_id: str,
    *,
    commit_message: str = "Upload pipeline",
) -> str:
    """Commit a saved pipeline folder to the mirror git repository ``<mirror_dir>/models/<org>/<name>``.

    The repository (branch ``main``) is created with ``git init`` if missing. Each push replaces the whole work tree by
    the :func:`select_pipeline_files` files of ``folder`` and makes exactly one commit, even when nothing changed.
    An olah server whose ``mirrors-path`` contains ``mirror_dir`` then serves it as the Hub model ``org/name``.

    Returns:
        The sha of the new commit (pass it, or ``"main"``, as ``revision=`` when loading through olah).

    Raises:
        ValueError: ``folder`` is not a saved pipeline folder or ``repo_id`` is not ``org/name``.
        HubPushError: git failed, or the target exists but is not a git repository.
    """
    folder = _check_pipeline_folder(folder)
    org, name = _check_repo_id(repo_id, require_namespace=True)
    repo_dir = Path(mirror_dir).expanduser().resolve() / "models" / org / name
    target = f"mirror repo {repo_dir}"
    files = select_pipeline_files(folder)
    if repo_dir == folder or repo_dir in folder.parents or folder in repo_dir.parents:
        raise ValueError(f"the mirror repository {repo_dir} and the pipeline folder {folder} must not overlap")
    try:
        if not (repo_dir / ".git").exists():
            if repo_dir.exists() and any(repo_dir.iterdir()):
                raise RuntimeError(f"{repo_dir} exists, is not empty and is not a git repository; not touching it")
            repo_dir.mkdir(parents=True, exist_ok=True)
            _git(repo_dir, "init", "-q", "-b", "main")
        elif _git(repo_dir, "symbolic-ref", "--quiet", "HEAD") != "refs/heads/main":
            # someone switched the mirror to another branch: come back to main (its work tree is replaced below)
            if _git(repo_dir, "branch", "--list", "main"):
                _git(repo_dir, "checkout", "-q", "-f", "main")
            else:
                _git(repo_dir, "checkout", "-q", "--orphan", "main")
        _clear_work_tree(repo_dir)
        for relpath in files:
            destination = repo_dir / relpath
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / relpath, destination)
        _git(repo_dir, "add", "--all")
        _git(repo_dir, "commit", "-q", "--no-verify", "--allow-empty", "-m", commit_message)
        return _git(repo_dir, "rev-parse", "HEAD")
    except (OSError, RuntimeError) as err:
        raise _push_error("committing to the mirror", target, folder, err) from err
