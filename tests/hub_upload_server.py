"""The Hub's write API, as far as ``HfApi.create_repo`` + ``HfApi.create_commit`` use it, for testing real pushes.

olah (tests/olah_hub.py) serves git repositories with the Hub's *read* protocol and refuses writes. This server takes
the writes: ``POST /api/repos/create``, ``/api/validate-yaml``, ``/api/models/<org>/<name>/preupload/<rev>`` and
``/api/models/<org>/<name>/commit/<rev>`` (the NDJSON commit; every file is sent inline, "regular" upload mode), and
turns each commit into a git commit of ``<repos_dir>/models/<org>/<name>`` on branch ``main``. With ``repos_dir`` =
olah's ``mirrors-path``, what huggingface_hub uploaded is then served by olah: push with the real client, load with
``from_pretrained``, and compare.

Space repositories work the same way (``/api/spaces/...``, committed into ``<repos_dir>/spaces/<org>/<name>``, which
olah serves as a Space); ``server.created`` keeps each create request's body (type, sdk, hardware) for the tests.
``refuse_commits=(status, message)`` answers every commit with that HTTP error, as the Hub does when it refuses an
upload, to test failure handling.

Like the Hub, a commit adds or replaces the files it names and keeps the others. Anything else (LFS uploads, pull
requests, other branches, dataset repos) is answered with an HTTP error, so a client that needs it fails loudly.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath

import yaml

_GIT = ["git", "-c", "user.name=hub-upload-server", "-c", "user.email=hub@localhost", "-c", "commit.gpgsign=false"]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run([*_GIT, *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


class HubUploadServer:
    """``with HubUploadServer(repos_dir) as server:`` push to ``server.endpoint``; ``server.commits`` lists what
    each commit request named, in order."""

    REPO_TYPES = {"model": "models", "space": "spaces"}  # create_repo's "type" -> the URL and folder segment

    def __init__(self, repos_dir: str | Path, *, refuse_commits: tuple[int, str] | None = None) -> None:
        self.repos_dir = Path(repos_dir).resolve()
        self.refuse_commits = refuse_commits
        self.commits: list[dict] = []
        self.created: list[dict] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def repo_dir(self, repo_id: str, repo_type: str = "model") -> Path:
        return self.repos_dir / self.REPO_TYPES[repo_type] / repo_id

    def start(self) -> HubUploadServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the test output clean
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    with server._lock:
                        status, answer = server._handle(self.path, body)
                except Exception as err:  # a bug here must show up as an HTTP error in the client, with the reason
                    status, answer = 500, {"error": f"{type(err).__name__}: {err}"}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 404:
                    self.send_header("X-Error-Code", "RepoNotFound")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> HubUploadServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------------------ routes

    def _handle(self, path: str, body: bytes) -> tuple[int, dict]:
        route, _, query = path.partition("?")
        parts = route.strip("/").split("/")
        if route == "/api/repos/create":
            return self._create_repo(json.loads(body))
        if route == "/api/validate-yaml":
            return self._validate_yaml(json.loads(body))
        types = {segment: repo_type for repo_type, segment in self.REPO_TYPES.items()}
        if len(parts) == 6 and parts[0] == "api" and parts[1] in types and parts[4] in ("preupload", "commit"):
            repo_type, repo_id, action, revision = types[parts[1]], f"{parts[2]}/{parts[3]}", parts[4], parts[5]
            if not (self.repo_dir(repo_id, repo_type) / ".git").is_dir():
                return 404, {"error": f"Repository {repo_id} not found"}
            if revision != "main" or "create_pr" in query:
                return 400, {"error": "this test server commits to branch main only (no other branch, no PR)"}
            if action == "preupload":
                paths = [file["path"] for file in json.loads(body)["files"]]
                files = [{"path": path, "uploadMode": "regular", "shouldIgnore": False} for path in paths]
                return 200, {"files": files}
            if self.refuse_commits is not None:
                status, message = self.refuse_commits
                return status, {"error": message}
            return self._commit(repo_id, body, repo_type)
        return 404, {"error": f"no route {route}"}

    def _create_repo(self, request: dict) -> tuple[int, dict]:
        self.created.append(request)
        repo_type = request.get("type", "model")
        if repo_type not in self.REPO_TYPES or not request.get("organization"):
            return 400, {"error": "this test server creates model and Space repos named org/name only"}
        if repo_type == "space" and request.get("sdk") not in ("gradio", "docker", "static"):
            return 400, {"error": f"a Space needs an sdk (gradio, docker or static), got {request.get('sdk')!r}"}
        repo_id = f"{request['organization']}/{request['name']}"
        repo = self.repo_dir(repo_id, repo_type)
        url = f"{self.endpoint}/{'spaces/' if repo_type == 'space' else ''}{repo_id}"
        if (repo / ".git").is_dir():
            return 409, {"error": f"You already created this {repo_type} repo", "url": url}
        repo.mkdir(parents=True)
        _git(repo, "init", "-q", "-b", "main")
        return 200, {"url": url}

    def _validate_yaml(self, request: dict) -> tuple[int, dict]:
        content = request["content"]
        if content.startswith("---\n"):
            try:
                yaml.safe_load(content.split("---\n", 2)[1])
            except yaml.YAMLError as err:
                return 400, {"errors": [{"message": str(err)}], "warnings": []}
        return 200, {"errors": [], "warnings": []}

    def _commit(self, repo_id: str, body: bytes, repo_type: str = "model") -> tuple[int, dict]:
        repo = self.repo_dir(repo_id, repo_type)
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0]["key"] != "header":
            return 400, {"error": "the commit payload must start with a header line"}
        files = {}
        for line in lines[1:]:
            if line["key"] != "file" or line["value"].get("encoding") != "base64":
                return 422, {"error": f"this test server takes inline base64 files only, got {line['key']!r}"}
            relpath = PurePosixPath(line["value"]["path"])
            if relpath.is_absolute() or ".." in relpath.parts:
                return 400, {"error": f"invalid path {relpath}"}
            files[str(relpath)] = base64.b64decode(line["value"]["content"])
        for relpath, content in files.items():
            (repo / relpath).parent.mkdir(parents=True, exist_ok=True)
            (repo / relpath).write_bytes(content)
        _git(repo, "add", "--all")
        _git(repo, "commit", "-q", "--allow-empty", "-m", lines[0]["value"]["summary"])
        sha = _git(repo, "rev-parse", "HEAD")
        self.commits.append({"repo_id": repo_id, "repo_type": repo_type, "sha": sha, "files": sorted(files)})
        prefix = "spaces/" if repo_type == "space" else ""
        return 200, {"commitUrl": f"{self.endpoint}/{prefix}{repo_id}/commit/{sha}", "commitOid": sha}
