"""Assemble a self-contained Space folder from this repository, and upload it as a Hugging Face Space.

    python space/deploy.py --out DIR                                   # assemble only: DIR runs with `python app.py`
    python space/deploy.py --out DIR --repo_id ORG/NAME [--hardware zero-a10g|cpu-basic|cpu-upgrade] [--private]
                           [--token T] [--commit_message MSG] [--torch VERSION]

The folder (see README.md, "Deploying as a Space"):

    DIR/README.md          space/README.md under a Spaces header (sdk: gradio, sdk_version, app_file, models,
                           suggested_hardware = --hardware)
    DIR/requirements.txt   space/requirements.txt with every package pinned exactly (`==`) to the version installed
                           where this script runs (what was tested is what the Space installs; a version outside
                           space/requirements.txt's range stops the assembly), and torch pinned for the hardware (the
                           CPU build from PyTorch's CPU index on CPU hardware; PyPI's CUDA build and `spaces` on
                           ZeroGPU)
    DIR/app.py, ...        the app, its modules, its prose and examples (everything in space/ but this script)
    DIR/ddpm_hub/          the library, copied from the repository (app.py imports the copy next to it)
    DIR/default_model/     every bundled pipeline folder of space/ (those holding model_index.json), only the files
                           a model push would upload (ddpm_hub.hub.select_pipeline_files)

Nothing in the repository is changed. The upload is one `upload_folder(repo_type="space")` commit after
`create_repo(repo_type="space", space_sdk="gradio", space_hardware=..., exist_ok=True)`; it fails the way the model
push does: one line on stderr saying which step failed and why, exit status 1, the local folder untouched. The Hub
endpoint is HF_ENDPOINT (default https://huggingface.co).

    python space/deploy.py --static --out DIR                          # the static page (a Static Space, free)

The static folder (`assemble_static`): index.html, app.mjs and ddpm.mjs (space/static/), onnxruntime-web's WASM files
(ort/, copied from space/static/node_modules, installed with `npm ci` from the pinned package-lock.json), the graphs
and tables.json of `python -m ddpm_hub.export` for the bundled default model (model/), ten real digits (digits.json)
and a README.md with the Static Space header (`sdk: static`, COOP/COEP `custom_headers` for threads). The page
loads nothing from anywhere else.

    python space/deploy.py --static --out DIR --repo_id ORG/NAME [--private] [--token T] [--commit_message MSG]

publishes it as a Static Space (free to host on any account): the same `upload_space` as the Gradio Space, with
`create_repo(repo_type="space", space_sdk="static")` and no hardware request; it fails the same way.

This script lives in space/, not in the ddpm_hub package: the library never imports the Space.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from ddpm_hub.hub import (  # the installed package (`pip install -e .`), whose ddpm_hub/ this script copies
    PIPELINE_IGNORE_PATTERNS,
    HubPushError,
    _check_repo_id,
    _hint,
    _push_error,
    select_pipeline_files,
)

SPACE = Path(__file__).resolve().parent
ROOT = SPACE.parent

HARDWARE = ("zero-a10g", "cpu-basic", "cpu-upgrade")  # ZeroGPU, and the two CPU flavours
ZERO_GPU_HARDWARE = ("zero-a10g",)
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
MARKER = ".space_deploy.json"  # marks a folder this script assembled (hidden: never uploaded)
NOT_COPIED = {"deploy.py", "README.md", "requirements.txt", "requirements-zerogpu.txt", "__pycache__"}  # rewritten
# ZeroGPU installs only the PyTorch releases on its list, under Python 3.10.13 (huggingface/hub-docs,
# docs/hub/spaces-zerogpu.md: 2.1.0 ... 2.8.0), so its folder installs a lock of its own, made by uv for that
# Python and the newest listed torch (the command is in the lock's header).
ZERO_GPU_LOCK = SPACE / "requirements-zerogpu.txt"
ZERO_GPU_PYTHON = "3.10.13"
PAYMENT_REQUIRED_HINT = (
    "The Hub asks for a PRO subscription to host a Gradio Space on free cpu-basic hardware (HTTP 402): deploy with "
    "--hardware zero-a10g instead (a free account may host up to 2 ZeroGPU Spaces), or subscribe."
)


class DeployError(RuntimeError):
    """Assembling the folder failed; the message says why."""


# --------------------------------------------------------------------------------------------------------------------
# Assembling the folder
# --------------------------------------------------------------------------------------------------------------------


def repository_torch_pin(requirements: Path = ROOT / "requirements.txt") -> str:
    """The torch version the repository pins (`torch==X` in its requirements.txt)."""
    match = re.search(r"^torch==([^\s;#]+)", requirements.read_text(encoding="utf-8"), flags=re.MULTILINE)
    if match is None:
        raise DeployError(f"{requirements} pins no torch version (expected a line `torch==X.Y.Z`): pass --torch")
    return match.group(1).split("+")[0]


def installed_version(name: str) -> str | None:
    """The version of `name` installed where this script runs, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_pin(line: str, source: Path) -> str:
    """One requirement line (`name[extras] <specifier> ; marker`) as `name[extras]==<installed version> ; marker`:
    the version installed where this script runs, which must satisfy the line's own range."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requirement = Requirement(line.split(" #", 1)[0].strip())
    except InvalidRequirement as err:
        raise DeployError(f"{source}: can't read the requirement {line.strip()!r}: {err}") from None
    version = installed_version(requirement.name)
    if version is None:
        raise DeployError(
            f"{requirement.name} ({source}) is not installed here: the folder pins the versions installed where "
            f"space/deploy.py runs, so install {source.name} first (`pip install -r {source}`) and test with it"
        )
    if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
        raise DeployError(
            f"{requirement.name} {version} is installed here, outside {source}'s range "
            f"`{requirement.specifier}`: install a version in the range (and test with it), or change the range"
        )
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    marker = f" ; {requirement.marker}" if requirement.marker else ""
    return f"{requirement.name}{extras}=={version}{marker}"


def space_requirements(hardware: str, torch_version: str, source: Path = SPACE / "requirements.txt") -> str:
    """space/requirements.txt with every package pinned exactly to its installed version (`installed_pin`) and the
    torch lines replaced by a pin that fits the hardware.

    CPU hardware gets the CPU build (PyTorch's CPU index: PyPI's default Linux wheel is the multi-GB CUDA build).
    ZeroGPU gets its own lock, `ZERO_GPU_LOCK` (a listed torch, PyPI's CUDA build, and the `spaces` package whose
    `@spaces.GPU` attaches the GPU), since it runs another Python and torch than the ones tested here.

    Raises:
        DeployError: a package is not installed here, or its installed version is outside the source's range, or
            gradio's pin differs from space/README.md's `sdk_version` (the Space installs that gradio).
    """
    if hardware in ZERO_GPU_HARDWARE:
        lock = ZERO_GPU_LOCK.read_text(encoding="utf-8")
        head = f"# Written by space/deploy.py for {hardware} (ZeroGPU, Python {ZERO_GPU_PYTHON}): {ZERO_GPU_LOCK.name}"
        return f"{head}\n{lock}"
    kept = []
    for line in source.read_text(encoding="utf-8").splitlines():
        bare = line.strip()
        if bare.startswith("# torch:") or re.match(r"^torch\b(?!vision)", bare):
            continue
        kept.append(installed_pin(line, source) if bare and not bare.startswith(("#", "-")) else line)
    head = [
        f"# Written by space/deploy.py for {hardware}: the CPU build of torch, named by its +cpu tag so that no",
        "# multi-GB CUDA build is taken (a Space installs this file in one `pip install -r`)",
        "# Every other package is pinned to the version installed where space/deploy.py assembled this folder.",
        f"--extra-index-url {CPU_TORCH_INDEX}",
        f"torch=={torch_version}+cpu",
    ]
    return "\n".join([*head, *kept]) + "\n"


def zero_gpu_torch() -> str:
    """The torch version of the ZeroGPU lock."""
    match = re.search(r"^torch==([^\s;#]+)", ZERO_GPU_LOCK.read_text(encoding="utf-8"), flags=re.MULTILINE)
    if match is None:
        raise DeployError(f"{ZERO_GPU_LOCK} pins no torch version: regenerate it with the command in its header")
    return match.group(1)


def split_front_matter(text: str) -> tuple[dict, str]:
    """A README's YAML header and its body."""
    match = re.match(r"^---\n(.*?)\n---\n", text, flags=re.DOTALL)
    if match is None:
        return {}, text
    return yaml.safe_load(match.group(1)) or {}, text[match.end() :]


def space_readme(hardware: str, source: Path = SPACE / "README.md") -> str:
    """space/README.md under the Spaces header: sdk, sdk_version, app_file, models, suggested_hardware."""
    header, body = split_front_matter(source.read_text(encoding="utf-8"))
    if "sdk_version" not in header:
        raise DeployError(f"{source} has no `sdk_version` in its YAML header: the Space needs the Gradio version")
    header.update({"sdk": "gradio", "app_file": "app.py", "suggested_hardware": hardware})
    if hardware in ZERO_GPU_HARDWARE:
        header["python_version"] = ZERO_GPU_PYTHON
    text = yaml.safe_dump(header, sort_keys=False, allow_unicode=True, width=119)
    return f"---\n{text}---\n{body}"


def bundled_models(space: Path = SPACE) -> list[Path]:
    """The pipeline folders bundled with the Space (default_model/, x0_model/, ...: those with model_index.json)."""
    return sorted(path for path in space.iterdir() if path.is_dir() and (path / "model_index.json").is_file())


def _ignore_for_copy(models: set[Path]):
    def ignore(directory: str, names: list[str]) -> set[str]:
        here = Path(directory)
        skipped = {name for name in names if name.startswith(".") or name == "__pycache__" or name.endswith(".pyc")}
        if here == SPACE:
            skipped |= {name for name in names if name in NOT_COPIED or here / name in models}
        return skipped

    return ignore


def _check_out(out: Path) -> None:
    for source in (SPACE, ROOT / "ddpm_hub"):
        if out == source or source in out.parents or out in source.parents:
            raise DeployError(f"--out {out} must not overlap {source}: choose a folder outside it")
    if out.exists() and not out.is_dir():
        raise DeployError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise DeployError(f"--out {out} exists, is not empty and was not assembled by this script; not touching it")


def assemble(out: str | Path, hardware: str = "zero-a10g", torch_version: str | None = None) -> Path:
    """Writes the self-contained Space folder `out` (replacing one this script wrote before). Returns its path."""
    if hardware not in HARDWARE:
        raise ValueError(f"invalid hardware {hardware!r}: choose one of {', '.join(HARDWARE)}")
    out = Path(out).expanduser().resolve()
    _check_out(out)
    if hardware in ZERO_GPU_HARDWARE:
        if torch_version not in (None, zero_gpu_torch()):
            raise DeployError(
                f"ZeroGPU installs the torch of {ZERO_GPU_LOCK.name} ({zero_gpu_torch()}); to change it, regenerate "
                "that lock with the command in its header (a version on ZeroGPU's list)"
            )
        torch_version = zero_gpu_torch()
    elif torch_version is None:  # the repository's pin, which must be the torch tested here
        torch_version = repository_torch_pin()
        installed = installed_version("torch")
        if installed is not None and installed.split("+")[0] != torch_version:
            raise DeployError(
                f"torch {installed} is installed here but the repository pins {torch_version}: install that one "
                "(and test with it), or pass --torch"
            )
    models = bundled_models()
    if not models:
        raise DeployError(f"{SPACE} holds no pipeline folder (default_model/ with model_index.json): train one first")
    # Everything is read before anything is written: a bad source leaves an earlier assembly as it was.
    readme = space_readme(hardware)
    requirements = space_requirements(hardware, torch_version)
    sdk_version = split_front_matter(readme)[0]["sdk_version"]
    if f"gradio=={sdk_version}" not in requirements.splitlines():
        raise DeployError(
            f"the installed gradio is not space/README.md's sdk_version {sdk_version} (the Space installs that one): "
            f"install gradio=={sdk_version}, or change sdk_version"
        )
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(SPACE, out, ignore=_ignore_for_copy(set(models)))
    shutil.copytree(ROOT / "ddpm_hub", out / "ddpm_hub", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
    for model in models:
        for relpath in select_pipeline_files(model):
            destination = out / model.name / relpath
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model / relpath, destination)
    (out / "README.md").write_text(readme, encoding="utf-8")
    (out / "requirements.txt").write_text(requirements, encoding="utf-8")
    marker = {"hardware": hardware, "torch": torch_version, "models": [model.name for model in models]}
    (out / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return out


# --------------------------------------------------------------------------------------------------------------------
# The static page (a Static Space: free to host, runs in each visitor's browser)
# --------------------------------------------------------------------------------------------------------------------

STATIC = SPACE / "static"
STATIC_FILES = ("index.html", "app.mjs", "ddpm.mjs")
# onnxruntime-web's WASM-only build: the module and its SIMD + threads binary (WebGPU's JSEP build is twice the size)
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
STATIC_MARKER = ".static_deploy.json"
# Cross-origin isolation (SharedArrayBuffer, hence WASM threads): the headers a Static Space sends for the page
ISOLATION_HEADERS = {"cross-origin-embedder-policy": "require-corp", "cross-origin-opener-policy": "same-origin"}


def ort_dist(static: Path = STATIC) -> Path:
    """onnxruntime-web's dist/ folder, installed by `npm ci` from space/static/package-lock.json if it is absent."""
    dist = static / "node_modules" / "onnxruntime-web" / "dist"
    if not all((dist / name).is_file() for name in ORT_FILES):
        npm = shutil.which("npm")
        if npm is None:
            raise DeployError(
                f"{dist} is missing and npm is not installed: install Node.js (npm), or run `npm ci` in {static}"
            )
        result = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=static, capture_output=True, text=True)
        if result.returncode != 0 or not all((dist / name).is_file() for name in ORT_FILES):
            raise DeployError(f"`npm ci` in {static} failed: {(result.stderr or result.stdout).strip()[-500:]}")
    return dist


def static_readme(full_space_url: str | None) -> str:
    """The static folder's README.md: the Static Space header and what the page is."""
    header = {
        "title": "ddpm-hub in the browser",
        "emoji": "🌀",
        "colorFrom": "yellow",
        "colorTo": "gray",
        "sdk": "static",
        "app_file": "index.html",
        "custom_headers": dict(ISOLATION_HEADERS),
        "license": "mit",
        "short_description": "A diffusion model, step by step, in your browser",
    }
    text = yaml.safe_dump(header, sort_keys=False, allow_unicode=True, width=119)
    full = f"the full Gradio Space ({full_space_url})" if full_space_url else "the full Gradio Space (`space/app.py`)"
    return (
        f"---\n{text}---\n\n# ddpm-hub in the browser\n\nA class-conditional DDPM on MNIST, run by onnxruntime-web "
        "(WASM) in the visitor's browser: forward noising of a real digit, and the reverse chain step by step "
        "(x_t, the predicted x_0 and the guided noise, with each step's coefficients). The graphs in model/ are "
        "exported from the ddpm_hub library (`python -m ddpm_hub.export`), so the page computes no formula itself. "
        f"The training objective, the ELBO and other schedulers are in {full}.\n"
    )


def real_digits(per_digit: int = 1) -> dict:
    """`per_digit` held-out MNIST digits of each class as uint8 values (0 = black), for the forward view."""
    import torch

    from ddpm_hub.data import load_mnist5k

    images, labels = load_mnist5k("held_out")
    chosen = [int(i) for digit in range(10) for i in (labels == digit).nonzero()[:per_digit, 0]]
    pixels = ((images[chosen, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)  # (N, 28, 28)
    return {"labels": [int(labels[i]) for i in chosen], "images": pixels.reshape(len(chosen), -1).tolist()}


def assemble_static(out: str | Path, model: str | Path | None = None, full_space_url: str | None = None) -> Path:
    """Writes the static page folder `out` (replacing one this script wrote before). Returns its path."""
    from ddpm_hub.export import export

    out = Path(out).expanduser().resolve()
    for source in (SPACE, ROOT / "ddpm_hub"):
        if out == source or source in out.parents or out in source.parents:
            raise DeployError(f"--out {out} must not overlap {source}: choose a folder outside it")
    if out.exists() and not out.is_dir():
        raise DeployError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / STATIC_MARKER).is_file():
        raise DeployError(f"--out {out} exists, is not empty and was not assembled by this script; not touching it")
    model = Path(model) if model is not None else SPACE / "default_model"
    if not (model / "model_index.json").is_file():
        raise DeployError(f"{model} is not a saved pipeline folder (no model_index.json)")
    dist = ort_dist()
    if out.exists():
        shutil.rmtree(out)
    (out / "ort").mkdir(parents=True)
    version = json.loads((dist.parent / "package.json").read_text(encoding="utf-8"))["version"]
    marker = {"onnxruntime-web": version, "model": str(model)}  # first: a failed build is still ours to replace
    (out / STATIC_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    for name in STATIC_FILES:
        shutil.copyfile(STATIC / name, out / name)
    for name in ORT_FILES:
        shutil.copyfile(dist / name, out / "ort" / name)
    export(model, out / "model", unet=False)
    (out / "digits.json").write_text(json.dumps(real_digits(), separators=(",", ":")), encoding="utf-8")
    (out / "README.md").write_text(static_readme(full_space_url), encoding="utf-8")
    return out


# --------------------------------------------------------------------------------------------------------------------
# Uploading
# --------------------------------------------------------------------------------------------------------------------


def _space_hint(err: BaseException, endpoint: str, token: str | None, sdk: str = "gradio") -> str:
    if sdk == "gradio" and getattr(getattr(err, "response", None), "status_code", None) == 402:
        return PAYMENT_REQUIRED_HINT
    return _hint(err, endpoint, token)


SDKS = ("gradio", "static")  # the Space kinds this script publishes: the Gradio app, and the static page


def upload_space(
    folder: str | Path,
    repo_id: str,
    *,
    sdk: str = "gradio",
    hardware: str | None = "zero-a10g",
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload Space",
) -> str:
    """Creates the Space `repo_id` if missing and uploads `folder` in one commit: the Gradio app (`sdk="gradio"`, on
    `hardware`) or the static page (`sdk="static"`: served as files, no hardware to choose; `hardware` must be None).

    Both go through the same steps and failure handling: `create_repo(repo_type="space", space_sdk=sdk, ...)`, one
    `upload_folder` commit without hidden files (PIPELINE_IGNORE_PATTERNS), and for Gradio the hardware request.

    Returns:
        The URL of the commit (or its oid when the server gives no URL).

    Raises:
        ValueError: `repo_id` is malformed, `sdk` is not one of SDKS, or `hardware` is not one of HARDWARE (Gradio)
            or is given for a static Space.
        HubPushError: creating the Space, uploading or setting the hardware failed; the folder is untouched.
    """
    from huggingface_hub import HfApi  # reads HF_ENDPOINT when imported

    folder = Path(folder).expanduser().resolve()
    _check_repo_id(repo_id, require_namespace=True)
    if sdk not in SDKS:
        raise ValueError(f"invalid sdk {sdk!r}: choose one of {', '.join(SDKS)}")
    if sdk == "static" and hardware is not None:
        raise ValueError(f"invalid hardware {hardware!r} for sdk 'static': a Static Space runs on no hardware (None)")
    if sdk == "gradio" and hardware not in HARDWARE:
        raise ValueError(f"invalid hardware {hardware!r}: choose one of {', '.join(HARDWARE)}")
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder: assemble the Space first (--out)")
    api = HfApi()
    target = f"{'Static ' if sdk == 'static' else ''}Space '{repo_id}' at {api.endpoint}"

    def failed(step: str, err: BaseException) -> HubPushError:
        return _push_error(step, target, folder, err, _space_hint(err, api.endpoint, token, sdk))

    options = {"space_hardware": hardware} if sdk == "gradio" else {}
    try:
        api.create_repo(
            repo_id, repo_type="space", space_sdk=sdk, private=private, exist_ok=True, token=token, **options
        )
    except Exception as err:
        raise failed("creating the Space", err) from err
    try:
        info = api.upload_folder(
            repo_id=repo_id,
            repo_type="space",
            folder_path=folder,
            commit_message=commit_message,
            token=token,
            ignore_patterns=list(PIPELINE_IGNORE_PATTERNS),
        )
    except Exception as err:
        raise failed("uploading the files", err) from err
    if sdk == "gradio":
        try:  # create_repo sets the hardware of a new Space only; an existing one is switched here
            api.request_space_hardware(repo_id, hardware, token=token)
        except Exception as err:
            raise failed(f"requesting the {hardware} hardware", err) from err
    return str(getattr(info, "commit_url", None) or getattr(info, "oid", info))


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python space/deploy.py",
        description="Assemble a self-contained Space folder from this repository and upload it as a Hugging Face "
        "Space (Gradio SDK, or with --static the in-browser page as a Static Space).",
    )
    parser.add_argument("--out", required=True, help="the folder to assemble (replaced if this script wrote it)")
    parser.add_argument("--repo_id", default=None, help="upload to the Space ORG/NAME (default: assemble only)")
    parser.add_argument(
        "--static",
        action="store_true",
        help="assemble the static page (onnxruntime-web in the browser) instead; with --repo_id, publish it as a "
        "Static Space (free to host)",
    )
    parser.add_argument("--full_space_url", default=None, help="with --static: the full Gradio Space the page links")
    parser.add_argument(
        "--hardware",
        default=None,
        choices=HARDWARE,
        help="zero-a10g (the default): ZeroGPU (free accounts may host 2); cpu-basic needs PRO for Gradio Spaces "
        "(HTTP 402). Not with --static",
    )
    parser.add_argument("--private", action="store_true", help="create the Space as private")
    parser.add_argument("--token", default=None, help="Hub token with write access (default: the saved login)")
    parser.add_argument("--commit_message", default="Upload Space")
    parser.add_argument(
        "--torch",
        default=None,
        help="torch version to pin (default: the repository's pin, which must be installed). Not with --static",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.static:
            given = [flag for flag, value in (("--hardware", args.hardware), ("--torch", args.torch)) if value]
            if given:
                raise ValueError(
                    f"{' and '.join(given)} cannot be used with --static: a Static Space is served as files, with no "
                    "hardware or torch to choose"
                )
            folder = assemble_static(args.out, full_space_url=args.full_space_url)
            size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6
            print(f"assembled {folder} (static, {size:.1f} MB): serve it, e.g. `python -m http.server -d {folder}`")
        else:
            args.hardware = args.hardware or "zero-a10g"
            folder = assemble(args.out, args.hardware, args.torch)
            print(f"assembled {folder} ({args.hardware}): `cd {folder} && python app.py` runs it locally")
        if args.repo_id is not None:
            where = upload_space(
                folder,
                args.repo_id,
                sdk="static" if args.static else "gradio",
                hardware=None if args.static else args.hardware,
                private=args.private,
                token=args.token,
                commit_message=args.commit_message,
            )
            print(f"uploaded {folder} to the {'Static ' if args.static else ''}Space {args.repo_id}", end="")
            print("" if args.static else f" ({args.hardware})")
            print(f"  {where}")
    except (DeployError, HubPushError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
