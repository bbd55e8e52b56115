"""A real Hub-protocol server for tests: olah serving local git repositories as Hub model repos.

Layout under the temp dir given to :class:`OlahHub`::

    mirrors/models/<org>/<name>/   git repos on branch main (write them with ddpm_hub.hub.push_to_mirror)
    cache/                         olah's cache (repos-path); unused offline
    logs/olah.log, olah.out        olah's log file and its stdout/stderr
    olah.toml                      the config below

olah runs ``offline = true``: it never contacts huggingface.co and answers only from ``mirrors/``.

Caveats of olah 0.5.x:

* the un-revisioned metadata route (``/api/models/org/name``) answers 401 "Repository not found" offline, so clients
  must pass ``revision="main"`` (or a commit sha) to ``from_pretrained`` / ``snapshot_download``;
* it is read-only: ``create_repo`` gets ``405 Method Not Allowed``;
* huggingface_hub reads ``HF_ENDPOINT`` when it is imported, so code that talks to olah runs in a subprocess with
  :func:`hub_env` (see :func:`run_python`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CONFIG_TEMPLATE = """\
[basic]
host = {host}
port = {port}
repos-path = {cache_dir}
mirrors-path = [{mirror_dir}]

[accessibility]
offline = true

[[accessibility.proxy]]
repo = "*/*"
allow = true
use_re = false
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class OlahHub:
    """Start/stop an olah server on 127.0.0.1 that serves ``mirror_dir`` offline.

    Use as a context manager (``with OlahHub(tmp) as hub: ...``) or call :meth:`start` / :meth:`stop`.
    """

    host = "127.0.0.1"

    def __init__(self, tmp_dir: str | os.PathLike, *, startup_timeout: float = 60.0) -> None:
        self.root = Path(tmp_dir).resolve()
        self.mirror_dir = self.root / "mirrors"
        self.cache_dir = self.root / "cache"
        self.log_dir = self.root / "logs"
        self.config_path = self.root / "olah.toml"
        self.output_path = self.root / "olah.out"
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise RuntimeError("OlahHub is not started")
        return f"http://{self.host}:{self.port}"

    def repo_dir(self, repo_id: str) -> Path:
        """The git repository olah serves as the model ``repo_id`` (``org/name``)."""
        return self.mirror_dir / "models" / repo_id

    def log_tail(self, lines: int = 40) -> str:
        chunks = []
        for path in (self.output_path, self.log_dir / "olah.log"):
            if path.exists():
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
                chunks.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(chunks) or "(olah wrote no log)"

    def start(self) -> OlahHub:
        for directory in (self.mirror_dir / "models", self.cache_dir, self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):  # the free port can be taken between free_port() and olah's bind
            self.port = free_port(self.host)
            config = CONFIG_TEMPLATE.format(  # json.dumps quotes a string the way TOML does
                host=json.dumps(self.host),
                port=self.port,
                cache_dir=json.dumps(self.cache_dir.as_posix()),
                mirror_dir=json.dumps(self.mirror_dir.as_posix()),
            )
            self.config_path.write_text(config, encoding="utf-8")
            # `python -m olah.server` is the `olah-cli` entry point run with this interpreter; the log folder is a
            # command-line option only (not read from the TOML).
            command = [sys.executable, "-m", "olah.server", "--config", str(self.config_path)]
            command += ["--log-path", str(self.log_dir)]
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            with open(self.output_path, "wb") as output:
                self.process = subprocess.Popen(
                    command,
                    cwd=self.root,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_until_ready():
                return self
            if "address already in use" not in self.log_tail().lower():
                break
        code = self.process.returncode if self.process is not None else None
        self.stop()
        if code is None:
            problem = f"olah did not answer on {self.endpoint} within {self.startup_timeout:.0f} s"
        else:
            problem = f"olah exited with code {code} before answering on {self.endpoint}"
        raise RuntimeError(f"{problem}; its config is {self.config_path}. Log tail:\n{self.log_tail()}")

    def _wait_until_ready(self) -> bool:
        """True once olah answers HTTP; False if it exited or the timeout passed."""
        # A repo that does not exist: olah answers 401 "Repository not found" at once, without any upstream call.
        probe = f"{self.endpoint}/api/models/olah-probe/ready/revision/main"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(probe, timeout=2):
                    return True
            except urllib.error.HTTPError:
                return True  # any HTTP answer means the server is up
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> OlahHub:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def hub_env(endpoint: str, hf_home: str | os.PathLike, **extra: str) -> dict[str, str]:
    """Environment for a subprocess that talks to ``endpoint`` with an isolated Hugging Face cache."""
    return {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        **extra,
    }


def subprocess_env(env_extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}}
    env.update(env_extra or {})
    return env


def run_python(code: str, env_extra: dict[str, str] | None = None, timeout: float = 120.0) -> str:
    """Run a Python snippet in a fresh interpreter (so huggingface_hub sees ``env_extra`` at import) and return its
    stdout; raise ``RuntimeError`` with the exit code and stderr when it fails."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(env_extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"python snippet failed with exit code {result.returncode}\n--- stderr ---\n{result.stderr[-4000:]}"
            f"\n--- stdout ---\n{result.stdout[-2000:]}"
        )
    return result.stdout
