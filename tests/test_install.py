"""The install installs the CPU build of torch, also on a plain Linux machine without a local wheel index.

PyPI's Linux wheel of torch is the CUDA build (it pulls ~18 nvidia-*/cuda-* packages and triton), and PyPI has no CPU
build: that lives on PyTorch's own index. So the README installs `requirements-torch-cpu.txt` (that index, torch
alone, `--no-deps`) before `requirements.txt` (PyPI, where the installed CPU torch satisfies `torch==X`).

The dry runs ask the package indexes; each skips, saying why, where the index it needs cannot be reached.
"""

from __future__ import annotations

import json
import platform
import re
import shlex
import socket
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
TORCH_FILE = ROOT / "requirements-torch-cpu.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_STEP = "pip install -q --no-deps -r requirements-torch-cpu.txt"
REST_STEP = "pip install -q -r requirements.txt"
NO_CONNECTION = re.compile(r"NewConnectionError|Failed to establish a new connection|Max retries exceeded")
CUDA_PACKAGE = re.compile(r"^(nvidia-|cuda-|triton\b)", re.IGNORECASE)


def requirement_lines(path: Path) -> list[str]:
    """The lines of a requirements file without comments and blank lines."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def torch_pin() -> str:
    """The torch version requirements.txt pins."""
    pins = [line for line in requirement_lines(ROOT / "requirements.txt") if re.match(r"torch\b", line)]
    assert len(pins) == 1 and pins[0].startswith("torch=="), pins
    return pins[0].removeprefix("torch==")


def readme_commands() -> list[str]:
    """The README's Quickstart commands (the `python3 -m venv ...` lines)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return [line.strip() for line in readme.splitlines() if line.startswith("python3 -m venv .venv")]


def pip_dry_run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`pip install --dry-run --report -` with this interpreter; one try per URL, so that an unreachable index fails in
    seconds instead of retrying."""
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", "--retries", "0"]
    return subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def reachable(url: str) -> bool:
    host = urlsplit(url).hostname
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def installs(result: subprocess.CompletedProcess) -> dict[str, dict]:
    report = json.loads(result.stdout)
    return {item["metadata"]["name"].lower(): item["metadata"] for item in report["install"]}


def test_install_commands_put_cpu_torch_first():
    assert requirement_lines(TORCH_FILE) == [f"--index-url {CPU_INDEX}", f"torch=={torch_pin()}"]
    # A public version (no "+cpu"): the CPU build and a GPU user's CUDA build of that version both satisfy it.
    assert re.fullmatch(r"\d+\.\d+\.\d+", torch_pin())
    # requirements.txt takes everything else from PyPI, asking no other index (pip asks every index for every package)
    index_options = ("-i", "--index-url", "--extra-index-url", "-f", "--find-links")
    rest = requirement_lines(ROOT / "requirements.txt")
    assert not [line for line in rest if line.split()[0].split("=")[0] in index_options]

    commands = readme_commands()
    assert len(commands) == 2, commands
    for command in commands:
        steps = [step.strip() for step in command.split("&&")]
        assert steps[:2] == ["python3 -m venv .venv", ". .venv/bin/activate"], command
        assert steps[2:4] == [TORCH_STEP, REST_STEP], command
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv")]
    assert ci_lines == [commands[1]]  # .ci/run runs the README's test command verbatim
    assert commands[1].endswith("&& python -m pytest -q")


@pytest.mark.parametrize("config", ["this machine's pip config", "--isolated"])
def test_torch_step_resolves_to_a_cpu_build(config):
    """Step 1 alone (as in a fresh venv): one torch wheel, of the pinned version, that depends on no CUDA package.

    `--isolated` ignores the user's pip config and PIP_* variables (e.g. a local wheel folder): what a plain machine
    resolves."""
    assert TORCH_FILE.is_file(), "requirements-torch-cpu.txt is missing"
    isolated = ["--isolated"] if config == "--isolated" else []
    result = pip_dry_run(*isolated, "--ignore-installed", "--no-deps", "-r", str(TORCH_FILE))
    if result.returncode != 0 and not reachable(CPU_INDEX):
        pytest.skip(f"{CPU_INDEX} cannot be reached from here, and pip ({config}) has no other copy of the CPU torch")
    assert result.returncode == 0, result.stderr[-3000:]

    found = installs(result)
    assert list(found) == ["torch"], list(found)
    torch = found["torch"]
    assert torch["version"].split("+")[0] == torch_pin()
    if platform.system() == "Linux":  # the CPU index labels its Linux wheels "+cpu"; macOS wheels have no label
        assert torch["version"] == f"{torch_pin()}+cpu"
    cuda = [dep for dep in torch.get("requires_dist", []) if CUDA_PACKAGE.match(dep)]
    assert not cuda, cuda


def test_rest_of_the_install_keeps_the_cpu_torch():
    """Step 2 where step 1 ran (this environment, when its torch is the CPU build), resolving from PyPI alone as a
    plain machine does: nothing replaces torch and no CUDA package comes in through another dependency."""
    installed = version("torch")
    if not installed.endswith("+cpu"):
        pytest.skip(f"this environment's torch is {installed}, not a CPU build")
    command = readme_commands()[1] if readme_commands() else ""
    assert TORCH_STEP in command, "the README's install does not install the CPU torch first"
    result = pip_dry_run("--isolated", "-r", "requirements.txt")
    if result.returncode != 0 and NO_CONNECTION.search(result.stderr):
        pytest.skip("PyPI cannot be reached from here")
    assert result.returncode == 0, result.stderr[-3000:]
    found = installs(result)
    unwanted = [name for name in found if name == "torch" or CUDA_PACKAGE.match(name)]
    assert not unwanted, f"`{shlex.join(['pip', 'install', '-r', 'requirements.txt'])}` would install {unwanted}"


def lock_pins() -> dict[str, tuple[str, str]]:
    """requirements.txt's pins: normalized name -> (version, environment marker or "")."""
    pins = {}
    for line in requirement_lines(ROOT / "requirements.txt"):
        if line == "-e .":
            continue
        requirement = Requirement(line)
        pinned = [spec for spec in requirement.specifier if spec.operator == "=="]
        assert len(pinned) == 1 and len(requirement.specifier) == 1, f"not an exact pin: {line!r}"
        pins.setdefault(canonicalize_name(requirement.name), []).append((pinned[0].version, requirement.marker))
    return pins


def test_requirements_txt_is_a_lock_of_the_project_ranges():
    """Every line of requirements.txt is an exact pin (plus `-e .`), each of pyproject.toml's requirements is pinned
    within its range for this Python, the header names the command that regenerates it (the README's), and the lock
    pins the torch of step 1 and nothing of the CUDA runtime."""
    text = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert "-e ." in requirement_lines(ROOT / "requirements.txt")
    pins = lock_pins()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = list(project["dependencies"])
    for extra in ("train", "space", "test"):
        wanted += project["optional-dependencies"][extra]
    for line in wanted:
        requirement = Requirement(line)
        entries = pins.get(canonicalize_name(requirement.name), [])
        here = [v for v, marker in entries if not marker or marker.evaluate()]
        assert len(here) == 1, f"{requirement.name} is not pinned once for this Python in requirements.txt"
        assert requirement.specifier.contains(here[0], prereleases=True), f"{here[0]} is outside {line!r}"
    assert [v for v, _ in pins["torch"]] == [torch_pin()]
    assert not [name for name in pins if CUDA_PACKAGE.match(name)], "the lock pulls the CUDA runtime"
    command = text.splitlines()[1].removeprefix("#").strip()
    assert command.startswith('echo "-e .[train,space,test]" | uv pip compile -'), command
    assert command in (ROOT / "README.md").read_text(encoding="utf-8"), "the README must say how to regenerate it"


def test_this_environment_is_the_lock():
    """What CI and a Quickstart install run on is exactly the lock: every pin that applies here is installed at its
    version (a venv made some other way fails here, saying which packages differ)."""
    differ = []
    for name, entries in lock_pins().items():
        for pinned, marker in entries:
            if marker and not marker.evaluate():
                continue
            try:
                installed = version(name)
            except PackageNotFoundError:
                differ.append(f"{name} (missing, lock {pinned})")
                continue
            if Version(installed).public != Version(pinned).public:
                differ.append(f"{name} {installed} (lock {pinned})")
    assert not differ, f"installed packages differ from requirements.txt: {differ}"
