"""Publishing a trained pipeline folder: push to the Hugging Face Hub, or push to a mirror git repo.

The model card is ``ddpm_hub.card``'s (its names are importable from here too). Two public pieces:

* :func:`push_to_hub` uploads a folder written by ``save_pretrained`` to the Hub (or any Hub-compatible endpoint
  named by ``HF_ENDPOINT``).
* :func:`push_to_mirror` commits the same files into ``<mirror_dir>/models/<org>/<name>``, a plain git repository
  that an olah server (``mirrors-path``) serves with the Hub protocol, for labs without access to the public Hub.

Both push functions publish exactly the files chosen by :func:`select_pipeline_files`: the pipeline itself, never
the ``checkpoints/``, ``logs/``, optimizer states or ``.bin`` files that a training run leaves next to it (diffusers'
own training examples upload those by accident), with the model card's snippets retargeted to the repository pushed
to (:func:`pipeline_payload`). A push never modifies the local folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects, validate_repo_id

from .card import (  # the model card's names, importable from here as before
    MODEL_CARD_TAGS,
    _card_evaluation,  # noqa: F401  (tests import it from here)
    describe_training_data,
    make_model_card,
    retarget_model_card,
    write_model_card,
)

__all__ = [
    "PIPELINE_FILE_PATTERNS",
    "PIPELINE_IGNORE_PATTERNS",
    "MODEL_CARD_TAGS",
    "HubPushError",
    "select_pipeline_files",
    "describe_training_data",
    "make_model_card",
    "write_model_card",
    "retarget_model_card",
    "pipeline_payload",
    "push_to_hub",
    "push_to_mirror",
    "check_repo_id",
    "push_hint",
    "push_error",
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
    "eval_*.png",  # the evaluation's plots shown in the card (eval_guidance.png, eval_nfe.png)
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

_GIT = ("git", "-c", "user.name=ddpm-hub", "-c", "user.email=ddpm-hub@localhost", "-c", "commit.gpgsign=false")


class HubPushError(RuntimeError):
    """A push failed. The message says which step failed and why; the local folder was not modified."""


def _filter_kwargs() -> dict[str, list[str]]:
    """The allow/ignore lists given to ``filter_repo_objects`` (fresh lists, safe to extend)."""
    return {"allow_patterns": list(PIPELINE_FILE_PATTERNS), "ignore_patterns": list(PIPELINE_IGNORE_PATTERNS)}


def select_pipeline_files(folder: str | os.PathLike) -> list[str]:
    """The files of ``folder`` that a push uploads, as sorted POSIX paths relative to ``folder``.

    This is the one place the selection is made: both :func:`push_to_hub` and :func:`push_to_mirror` publish exactly
    these paths (see :func:`pipeline_payload`), matched with ``huggingface_hub.utils.filter_repo_objects`` against
    ``PIPELINE_FILE_PATTERNS`` / ``PIPELINE_IGNORE_PATTERNS`` (and huggingface_hub's ``.git`` / ``.cache`` ignores).
    """
    folder = Path(folder).expanduser().resolve()
    candidates = sorted(path.relative_to(folder).as_posix() for path in folder.glob("**/*") if path.is_file())
    kwargs = _filter_kwargs()
    kwargs["ignore_patterns"] += list(DEFAULT_IGNORE_PATTERNS)
    return list(filter_repo_objects(candidates, **kwargs))


# --------------------------------------------------------------------------------------------------------------------
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


def check_repo_id(repo_id: str, *, require_namespace: bool = False) -> tuple[str | None, str]:
    """(org or None, name) of a valid Hub repo id; a ValueError says what is wrong (and that ORG/ is needed when
    `require_namespace`)."""
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


def push_hint(err: BaseException, endpoint: str, token: str | None) -> str:
    """A sentence on what to do about a failed Hub request (no token, wrong endpoint, ...), or ""."""
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


def push_error(step: str, target: str, folder: Path, err: BaseException, hint: str = "") -> HubPushError:
    """The `HubPushError` for a failed `step` of publishing `folder` to `target`: the step, the reason, the hint."""
    parts = [f"Push of {folder} to {target} failed while {step}: {_reason(err)}."]
    if hint:
        parts.append(hint)
    parts.append(f"The local folder is untouched at {folder}.")
    return HubPushError(" ".join(parts))


def pipeline_payload(folder: str | os.PathLike, repo_id: str) -> dict[str, Path | bytes]:
    """What a push of ``folder`` to ``repo_id`` publishes: repository path -> local file, or bytes for the model card.

    The paths are exactly :func:`select_pipeline_files`; ``README.md`` is the folder's card retargeted to ``repo_id``
    (:func:`retarget_model_card`), so its snippets load the repository they sit in. Nothing in ``folder`` is written.
    """
    folder = Path(folder).expanduser().resolve()
    payload: dict[str, Path | bytes] = {relpath: folder / relpath for relpath in select_pipeline_files(folder)}
    if "README.md" in payload:
        card = (folder / "README.md").read_text(encoding="utf-8")
        payload["README.md"] = retarget_model_card(card, repo_id).encode("utf-8")
    return payload


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload pipeline",
    revision: str | None = None,
    create_pr: bool = False,
    endpoint: str | None = None,
) -> str:
    """Upload a saved pipeline folder to the Hub repo ``repo_id`` (created if missing) in one commit.

    Exactly the :func:`pipeline_payload` files are sent (the :func:`select_pipeline_files` list, with the model card
    retargeted to ``repo_id``), one ``CommitOperationAdd`` each. ``endpoint`` defaults to ``HF_ENDPOINT`` (default
    https://huggingface.co), read by huggingface_hub when it is imported. ``revision`` is an existing branch to commit
    to (default ``main``); ``create_pr=True`` opens a pull request against the default branch instead.

    Returns:
        The URL of the commit (of the pull request when ``create_pr``), or its oid when the server gives no URL.

    Raises:
        ValueError: ``folder`` is not a saved pipeline folder, ``repo_id`` is malformed, or ``revision`` and
            ``create_pr`` are both given.
        HubPushError: creating the repository or uploading failed (network, token, HTTP error).
    """
    folder = _check_pipeline_folder(folder)
    check_repo_id(repo_id)
    if create_pr and revision not in (None, constants.DEFAULT_REVISION):
        raise ValueError("create_pr=True opens a pull request against the default branch: do not also pass revision")

    api = HfApi(endpoint=endpoint)  # None: HF_ENDPOINT, as read when huggingface_hub was imported
    target = f"repo '{repo_id}' at {api.endpoint}"
    operations = [
        CommitOperationAdd(path_in_repo=relpath, path_or_fileobj=content)
        for relpath, content in pipeline_payload(folder, repo_id).items()
    ]
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, token=token)
    except Exception as err:
        raise push_error("creating the repository", target, folder, err, push_hint(err, api.endpoint, token)) from err
    try:
        info = api.create_commit(
            repo_id=repo_id,
            operations=operations,
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
            token=token,
        )
    except Exception as err:
        raise push_error("uploading the files", target, folder, err, push_hint(err, api.endpoint, token)) from err
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
    the :func:`pipeline_payload` of ``folder`` (the :func:`select_pipeline_files` files, the model card retargeted to
    ``repo_id``) and makes exactly one commit, even when nothing changed.
    An olah server whose ``mirrors-path`` contains ``mirror_dir`` then serves it as the Hub model ``org/name``.

    Returns:
        The sha of the new commit (pass it, or ``"main"``, as ``revision=`` when loading through olah).

    Raises:
        ValueError: ``folder`` is not a saved pipeline folder or ``repo_id`` is not ``org/name``.
        HubPushError: git failed, or the target exists but is not a git repository.
    """
    folder = _check_pipeline_folder(folder)
    org, name = check_repo_id(repo_id, require_namespace=True)
    repo_dir = Path(mirror_dir).expanduser().resolve() / "models" / org / name
    target = f"mirror repo {repo_dir}"
    payload = pipeline_payload(folder, repo_id)
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
        for relpath, content in payload.items():
            destination = repo_dir / relpath
            destination.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                destination.write_bytes(content)
            else:
                shutil.copyfile(content, destination)
        _git(repo_dir, "add", "--all")
        _git(repo_dir, "commit", "-q", "--no-verify", "--allow-empty", "-m", commit_message)
        return _git(repo_dir, "rev-parse", "HEAD")
    except (OSError, RuntimeError) as err:
        raise push_error("committing to the mirror", target, folder, err) from err


# The earlier private names (space/deploy.py imports them)
_check_repo_id, _hint, _push_error = check_repo_id, push_hint, push_error
