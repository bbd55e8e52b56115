"""space/deploy.py: the assembled Space folder runs on its own, and a failed upload loses nothing.

The main test assembles the folder, installs ONLY its requirements.txt into a fresh virtual environment (no system
site-packages, no PYTHONPATH: the app must import the `ddpm_hub` copy inside the folder), launches `python app.py`
there on a free port with the bundled model, and drives one short chain through gradio_client. The folder's
requirements pin exactly the versions installed where the tests (and deploy.py) run. The upload tests run
the command against endpoints on 127.0.0.1: a closed port, and a tiny server that answers 402 as the Hub does for a
free account's Gradio Space on cpu-basic.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.metadata
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "space"
DEPLOY = SPACE / "deploy.py"
START_TIMEOUT_S = 180
INSTALL_TIMEOUT_S = 900

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def latest_files(outputs: list) -> list[str | None]:
    """Per output slot of a streamed gradio_client job, the last file shown there. A file output comes as a path or
    as a dict holding one (FileData); a frame that leaves a panel as it was sends `{"__type__": "update"}` (the final
    frame of a chain keeps the last step's predictions)."""
    latest = [None] * len(outputs[-1])
    for frame in outputs:
        for slot, value in enumerate(frame):
            if isinstance(value, (str, os.PathLike)):
                latest[slot] = os.fspath(value)
            elif isinstance(value, dict) and value.get("path"):
                latest[slot] = value["path"]
    return latest


def deploy_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a deploy run: this repository's ddpm_hub, no saved token, no real Hub."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING"))}
    env.update({"PYTHONPATH": str(ROOT), "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_DISABLE_TELEMETRY": "1"})
    env.update(extra)
    return env


def run_deploy(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DEPLOY), *args],
        cwd=tmp_path,
        env=deploy_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def snapshot(folder: Path) -> dict[str, str]:
    """Every file of `folder` (hidden ones included) -> its sha256."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def deploy_module():
    spec = importlib.util.spec_from_file_location("ddpm_hub_space_deploy", DEPLOY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cpu_folder(tmp_path_factory) -> Path:
    """`python space/deploy.py --out DIR --hardware cpu-basic`, assemble only."""
    tmp = tmp_path_factory.mktemp("deploy_cpu")
    result = run_deploy(tmp, "--out", str(tmp / "space"), "--hardware", "cpu-basic")
    assert result.returncode == 0, result.stderr
    return tmp / "space"


# ---------------------------------------------------------------------------------------------------------------------
# The folder
# ---------------------------------------------------------------------------------------------------------------------


def test_folder_holds_app_library_models_and_spaces_header(cpu_folder):
    files = snapshot(cpu_folder)
    assert (cpu_folder / "app.py").is_file() and "deploy.py" not in files
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in files)
    # The library, copied file for file.
    library = {
        f"ddpm_hub/{path.relative_to(ROOT / 'ddpm_hub').as_posix()}": hashlib.sha256(path.read_bytes()).hexdigest()
        for path in (ROOT / "ddpm_hub").rglob("*.py")
    }
    assert {name: files.get(name) for name in library} == library
    # Every bundled model, with exactly the files a model push uploads.
    from ddpm_hub.hub import select_pipeline_files

    models = [path for path in SPACE.iterdir() if (path / "model_index.json").is_file()]
    assert any(model.name == "default_model" for model in models)
    for model in models:
        shipped = sorted(name.split("/", 1)[1] for name in files if name.startswith(f"{model.name}/"))
        assert shipped == select_pipeline_files(model)
    # The examples and every other file of space/ the app reads.
    for example in (SPACE / "examples").glob("*.png"):
        assert files[f"examples/{example.name}"] == hashlib.sha256(example.read_bytes()).hexdigest()
    # The Spaces header.
    text = (cpu_folder / "README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py" and (cpu_folder / header["app_file"]).is_file()
    assert header["suggested_hardware"] == "cpu-basic" and header["models"]
    requirements = (cpu_folder / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert f"gradio=={header['sdk_version']}" in requirements
    # CPU hardware: torch pinned as the repository pins it, from PyTorch's CPU index; no `spaces`.
    pin = next(line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("torch=="))
    assert f"{pin}+cpu" in requirements and "--extra-index-url https://download.pytorch.org/whl/cpu" in requirements
    assert sum(line.startswith("torch") for line in requirements) == 1 and "spaces" not in requirements


def requirement_lines(folder: Path, name: str = "requirements.txt") -> list[str]:
    path = folder / name if name else folder
    return [
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith(("#", "-"))
    ]


def test_folder_pins_every_requirement_to_the_installed_version(cpu_folder):
    """What a Space installs is what was tested: `name==version` of the version installed where deploy.py ran (this
    interpreter's environment: the tests run it with sys.executable), for every package of space/requirements.txt."""
    from packaging.requirements import Requirement

    lines = requirement_lines(cpu_folder)
    source = [Requirement(line).name.lower() for line in requirement_lines(SPACE)]
    assert sorted(Requirement(line).name.lower() for line in lines) == sorted(source)
    for line in lines:
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", line
        installed = importlib.metadata.version(requirement.name)
        if requirement.name == "torch":  # the CPU build, named by its tag, of the version installed here
            assert specifier.version == installed.split("+")[0] + "+cpu", line
        else:
            assert specifier.version == installed, line


def test_a_package_missing_or_outside_its_range_stops_the_assembly(deploy_module, tmp_path):
    source = tmp_path / "requirements.txt"
    source.write_text("numpy<1\n", encoding="utf-8")
    with pytest.raises(deploy_module.DeployError, match="numpy .* outside .*<1"):
        deploy_module.space_requirements("cpu-basic", "2.0.0", source)
    source.write_text("numpy>=1 ; python_version >= '3'\nddpm-hub-no-such-package>=1\n", encoding="utf-8")
    with pytest.raises(deploy_module.DeployError, match="ddpm-hub-no-such-package .*is not installed"):
        deploy_module.space_requirements("cpu-basic", "2.0.0", source)
    source.write_text("numpy>=1 ; python_version >= '3'\n", encoding="utf-8")
    written = deploy_module.space_requirements("cpu-basic", "2.0.0", source).splitlines()
    assert f'numpy=={importlib.metadata.version("numpy")} ; python_version >= "3"' in written


# The PyTorch releases ZeroGPU installs, and its Python (huggingface/hub-docs, docs/hub/spaces-zerogpu.md).
ZERO_GPU_TORCH = ("2.1.0", "2.1.1", "2.1.2", "2.2.0", "2.2.2", "2.4.0", "2.5.1", "2.6.0", "2.7.1", "2.8.0")


def test_zero_gpu_folder_takes_a_listed_cuda_torch_and_spaces(deploy_module, tmp_path):
    """ZeroGPU installs only listed torch releases under Python 3.10.13 ("No candidate PyTorch version found for
    ZeroGPU" otherwise): the folder installs the ZeroGPU lock, whose torch is on that list."""
    folder = deploy_module.assemble(tmp_path / "zero", "zero-a10g")
    requirements = requirement_lines(folder)
    assert not any("download.pytorch.org" in line for line in requirements)
    (torch_pin,) = [line for line in requirements if line.startswith("torch==")]
    assert torch_pin.removeprefix("torch==") in ZERO_GPU_TORCH
    assert any(line.startswith("spaces==") for line in requirements)
    header = yaml.safe_load((folder / "README.md").read_text(encoding="utf-8").split("---\n")[1])
    assert header["suggested_hardware"] == "zero-a10g" and header["python_version"] == "3.10.13"
    assert f"gradio=={header['sdk_version']}" in requirements
    with pytest.raises(deploy_module.DeployError, match="ZeroGPU installs the torch"):
        deploy_module.assemble(tmp_path / "zero2", "zero-a10g", torch_version="2.13.0")
    with pytest.raises(ValueError, match="hardware"):
        deploy_module.assemble(tmp_path / "bad", "t4-small")


def test_zero_gpu_lock_pins_every_space_requirement_for_python_3_10():
    """requirements-zerogpu.txt is a uv lock of space/requirements.txt (plus a listed torch and `spaces`) for
    Python 3.10: every package exactly once, inside space/requirements.txt's range, and the header says how it was
    made."""
    from packaging.requirements import Requirement

    text = (SPACE / "requirements-zerogpu.txt").read_text(encoding="utf-8")
    assert "uv pip compile space/requirements.txt" in text.splitlines()[1] and "--python-version 3.10.13" in text
    pins = {}
    for line in requirement_lines(SPACE / "requirements-zerogpu.txt", name=""):
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==" and requirement.name.lower() not in pins, line
        pins[requirement.name.lower().replace("_", "-")] = specifier.version
    for line in requirement_lines(SPACE):
        requirement = Requirement(line)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in the ZeroGPU lock"
        if name != "torch":  # the lock's torch is ZeroGPU's, chosen by its list
            assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def test_space_requirements_cover_the_library_dependencies():
    """The folder installs only requirements.txt, so it must list everything ddpm_hub and the Space import."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["space"]]
    listed = {
        line.split("==")[0].split(">")[0].split("<")[0].strip().lower()
        for line in (SPACE / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith(("#", "-"))
    }
    missing = [name for name in wanted if name.split(">")[0].split("=")[0].split("<")[0].strip().lower() not in listed]
    assert not missing, f"space/requirements.txt lacks {missing}"


def test_out_folder_that_is_not_an_assembly_is_left_alone(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = run_deploy(tmp_path, "--out", str(out))
    assert result.returncode == 1 and "not touching it" in result.stderr
    assert snapshot(out) == {"notes.txt": hashlib.sha256(b"keep me").hexdigest()}
    result = run_deploy(tmp_path, "--out", str(SPACE / "build"))
    assert result.returncode == 1 and "must not overlap" in result.stderr
    assert not (SPACE / "build").exists()


# ---------------------------------------------------------------------------------------------------------------------
# The folder runs on its own
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow  # the install alone took 3.7 min on a quiet 2-core machine and 10.7 min on a loaded one
def test_folder_runs_from_a_fresh_venv_with_only_its_requirements(cpu_folder, tmp_path):
    from gradio_client import Client

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_RETRIES"] = "0"  # an index that cannot be reached (PyTorch's CPU index offline) is skipped at once
    started = time.monotonic()
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(cpu_folder / "requirements.txt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    print(f"pip install of the folder's requirements: {time.monotonic() - started:.0f} s")
    assert install.returncode == 0, install.stderr[-3000:]
    # Nothing but the folder provides ddpm_hub.
    where = subprocess.run(
        [str(python), "-c", "import ddpm_hub; print(ddpm_hub.__file__)"],
        cwd=cpu_folder,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).resolve() == (cpu_folder / "ddpm_hub" / "__init__.py").resolve()
    outside = subprocess.run([str(python), "-c", "import ddpm_hub"], cwd=tmp_path, env=env, capture_output=True)
    assert outside.returncode != 0

    port = free_port()
    env.update(
        {
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(port),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "DDPM_HUB_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        }
    )
    env.pop("DDPM_HUB_MODEL", None)  # the bundled model
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [str(python), "app.py"], cwd=cpu_folder, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert server.poll() is None, f"app.py exited with {server.returncode}:\n{log_path.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"no answer in {START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.5)
        client = Client(url, verbose=False)
        job = client.submit("3", 2.0, "ddim", 0.0, 4, 0, 2, api_name="/generate")  # 4 DDIM steps, 2 images
        info = job.result(timeout=300)[3]
        assert len(job.outputs()) >= 2 and "after 4 steps" in info  # streamed, then done
        from PIL import Image

        for picture in latest_files(job.outputs())[:3]:  # x_t, the predicted noise, the predicted x_0
            assert picture is not None
            with Image.open(picture) as image:
                assert image.size[0] > 28 and image.getextrema() != (0, 0)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ---------------------------------------------------------------------------------------------------------------------
# A failed upload
# ---------------------------------------------------------------------------------------------------------------------


def test_unreachable_hub_exits_1_with_one_clear_line_and_keeps_the_folder(cpu_folder, tmp_path):
    out = tmp_path / "space"
    result = run_deploy(
        tmp_path,
        "--out",
        str(out),
        "--repo_id",
        "ddpm-hub/explainer",
        "--hardware",
        "cpu-basic",
        HF_ENDPOINT=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        HF_TOKEN="hf_test_token_for_a_closed_port",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "creating the Space" in lines[0] and "Could not reach" in lines[0] and "untouched" in lines[0]
    assert snapshot(out) == snapshot(cpu_folder)  # the whole assembled folder, as an assembly without upload


class _PaymentRequired(http.server.BaseHTTPRequestHandler):
    """Answers every request as the Hub answers a free account creating a Gradio Space on cpu-basic."""

    requests: list[str] = []

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        type(self).requests.append(f"{self.command} {self.path} {json.dumps(body, sort_keys=True)}")
        message = {
            "error": "Static Spaces are free for everyone, but hosting Gradio and Docker Spaces on free cpu-basic "
            "requires a PRO subscription"
        }
        payload = json.dumps(message).encode()
        self.send_response(402)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_GET = do_PUT = _answer

    def log_message(self, *args):
        pass


def test_payment_required_on_cpu_basic_points_to_zero_gpu(cpu_folder, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PaymentRequired)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = run_deploy(
            tmp_path,
            "--out",
            str(tmp_path / "space"),
            "--repo_id",
            "ddpm-hub/explainer",
            "--hardware",
            "cpu-basic",
            HF_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}",
            HF_TOKEN="hf_test_token",
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "402" in line and "--hardware zero-a10g" in line and "untouched" in line
    created = [request for request in _PaymentRequired.requests if "/api/repos/create" in request]
    assert created and '"sdk": "gradio"' in created[0] and '"type": "space"' in created[0]
    assert '"hardware": "cpu-basic"' in created[0]
    assert snapshot(tmp_path / "space") == snapshot(cpu_folder)


# ---------------------------------------------------------------------------------------------------------------------
# Publishing the static page (a Static Space)
# ---------------------------------------------------------------------------------------------------------------------

STATIC_ID = "ddpm-hub-tests/static-page"


@pytest.fixture(scope="module")
def static_published(olah_hub, tmp_path_factory) -> dict:
    """`python space/deploy.py --static --out DIR --repo_id ORG/NAME` against the Hub's write API (HubUploadServer,
    committing into olah's mirrors), then the Space read back through olah as a visitor's client reads it."""
    pytest.importorskip("onnx", reason="the export needs onnx (pip install -e .[export])")
    from hub_upload_server import HubUploadServer
    from olah_hub import hub_env, run_python

    static = SPACE / "static"
    if shutil.which("npm") is None and not (static / "node_modules" / "onnxruntime-web").is_dir():
        pytest.skip("npm is not installed and space/static/node_modules is missing: the page needs onnxruntime-web")
    tmp = tmp_path_factory.mktemp("deploy_static")
    out = tmp / "site"
    with HubUploadServer(olah_hub.mirror_dir) as server:
        result = run_deploy(
            tmp,
            "--static",
            "--out",
            str(out),
            "--repo_id",
            STATIC_ID,
            "--commit_message",
            "static page",
            HF_ENDPOINT=server.endpoint,
            HF_TOKEN="hf_test_token",
        )
        created, commits = list(server.created), list(server.commits)
    assert result.returncode == 0, result.stdout + result.stderr
    code = "\n".join(
        [
            "import json",
            "from huggingface_hub import HfApi, hf_hub_download",
            f"files = HfApi().list_repo_files({STATIC_ID!r}, repo_type='space', revision='main')",
            f"readme = open(hf_hub_download({STATIC_ID!r}, 'README.md', repo_type='space', revision='main')).read()",
            f"wasm = hf_hub_download({STATIC_ID!r}, 'ort/ort-wasm-simd-threaded.wasm', repo_type='space',",
            "                       revision='main')",
            "print(json.dumps({'files': files, 'readme': readme, 'wasm': wasm}))",
        ]
    )
    stdout = run_python(code, hub_env(olah_hub.endpoint, tmp / "hf_home_reader"), timeout=120)
    return {
        "out": out,
        "stdout": result.stdout,
        "created": created,
        "commits": commits,
        "repo": olah_hub.mirror_dir / "spaces" / STATIC_ID,
        **json.loads(stdout.strip().splitlines()[-1]),
    }


def test_static_page_is_published_as_a_static_space(static_published):
    """The create request states a Space with the static SDK (and no hardware); one commit carries every file of the
    folder but the hidden marker; olah serves them back, byte for byte, under a README that says `sdk: static` with
    the cross-origin isolation headers."""
    out = static_published["out"]
    (created,) = static_published["created"]
    assert created["type"] == "space" and created["sdk"] == "static" and "hardware" not in created
    assert created["organization"] + "/" + created["name"] == STATIC_ID
    local = {name for name in snapshot(out) if not name.startswith(".")}
    assert {"index.html", "app.mjs", "ddpm.mjs", "README.md", "model/step_ddpm.onnx", "ort/ort.wasm.min.mjs"} <= local
    (commit,) = static_published["commits"]
    assert commit["repo_type"] == "space" and set(commit["files"]) == local
    assert set(static_published["files"]) >= local  # the served Space (olah adds .gitattributes where it has one)
    assert Path(static_published["wasm"]).read_bytes() == (out / "ort" / "ort-wasm-simd-threaded.wasm").read_bytes()
    assert static_published["readme"] == (out / "README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(static_published["readme"].split("---\n")[1])
    assert header["sdk"] == "static" and header["app_file"] == "index.html"
    assert header["custom_headers"] == {
        "cross-origin-embedder-policy": "require-corp",
        "cross-origin-opener-policy": "same-origin",
    }
    assert f"Static Space {STATIC_ID}" in static_published["stdout"]


def test_static_upload_refused_says_which_step_and_keeps_the_folder(static_published, tmp_path):
    """The Hub refuses the commit (HTTP 413): `upload_space` raises the push error naming the step and the reason,
    and the built folder is byte for byte as it was."""
    from hub_upload_server import HubUploadServer
    from olah_hub import hub_env, run_python

    out = static_published["out"]
    before = snapshot(out)
    code = "\n".join(
        [
            "import sys",
            f"sys.path.insert(0, {str(SPACE)!r})",
            "from deploy import upload_space",
            "from ddpm_hub.hub import HubPushError",
            "try:",
            f"    upload_space({str(out)!r}, 'ddpm-hub-tests/refused', sdk='static', hardware=None, token='hf_t')",
            "except HubPushError as err:",
            "    print(err)",
            "else:",
            "    raise SystemExit('the upload did not fail')",
        ]
    )
    refusal = (413, "Payload Too Large: this Space's files exceed the limit")
    with HubUploadServer(tmp_path / "repos", refuse_commits=refusal) as server:
        message = run_python(code, {**hub_env(server.endpoint, tmp_path / "hf_home"), "PYTHONPATH": str(ROOT)})
        created = list(server.created)
    assert created and created[0]["sdk"] == "static"  # the Space was created; its commit was refused
    assert "uploading the files" in message and "413" in message and f"untouched at {out}" in message
    assert "Static Space 'ddpm-hub-tests/refused'" in message
    assert snapshot(out) == before


def test_static_flags_that_do_not_apply_are_refused_before_anything_is_built(deploy_module, tmp_path):
    out = tmp_path / "site"
    result = run_deploy(tmp_path, "--static", "--out", str(out), "--hardware", "cpu-basic")
    assert result.returncode == 1 and "--hardware cannot be used with --static" in result.stderr
    assert not out.exists()
    with pytest.raises(ValueError, match="hardware 'cpu-basic' for sdk 'static'"):
        deploy_module.upload_space(tmp_path, "org/name", sdk="static", hardware="cpu-basic")
    with pytest.raises(ValueError, match="invalid sdk 'docker': choose one of gradio, static"):
        deploy_module.upload_space(tmp_path, "org/name", sdk="docker")
