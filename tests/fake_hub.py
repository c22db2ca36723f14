"""A Hugging Face hub on localhost for tests: just the routes ``huggingface_hub`` calls to create a repo,
make a branch and upload a folder (the YAML check of README.md, preupload, the NDJSON commit with small
files inline, the LFS batch API with basic PUT transfers and verify), pointed to by ``HF_ENDPOINT``.

It keeps what it was sent: every request (method, path, headers), and each repo's visibility and files by
branch, so a test asserts on the bytes the hub received; ``repo_info`` reads a repo's real visibility
(``add_repo`` makes one that exists already). Tokens map to user names; a request without a
known token gets the hub's 401, a write outside the user's namespace its 403.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

BAD_TOKEN = "Invalid credentials in Authorization header"  # the hub's X-Error-Message for an unknown token


@dataclass
class Repo:
    """What the fake hub holds for one model repo."""

    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    commits: list[dict] = field(default_factory=list)


@dataclass
class Seen:
    """One request the fake hub answered."""

    method: str
    path: str
    headers: dict[str, str]
    status: int = 0


class FakeHub:
    """A threaded HTTP server on 127.0.0.1 (``url`` is its endpoint); use as a context manager."""

    def __init__(self, tokens: dict[str, str] | None = None, *, lfs_from: int | None = None,
                 read_only: tuple[str, ...] = ()) -> None:
        self.tokens = dict(tokens if tokens is not None else {"hf_test": "me"})
        self.read_only = set(read_only)  # tokens whose role is "read"
        self.lfs_from = lfs_from  # files this large or larger go through LFS (None: every file inline)
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}  # uploaded LFS objects by sha256
        self.seen: list[Seen] = []
        self.yaml_checked: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def add_repo(self, repo_id: str, *, private: bool = False) -> Repo:
        """A repo that exists before the test pushes (empty ``main``), public unless ``private``."""
        with self._lock:
            self.repos[repo_id] = Repo(private=private)
            return self.repos[repo_id]

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        """The files of a repo's branch as the hub received them."""
        return self.repos[repo_id].branches[branch]

    # -- the routes: each returns (status, JSON body, extra headers) -----------------------------------

    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict]:
        """Answer one request (called by the handler under the server's lock)."""
        if method == "PUT" and (m := re.fullmatch(r"/lfs/([0-9a-f]{64})", path)):
            return self._lfs_put(m[1], body)
        if method == "POST" and (m := re.fullmatch(r"/lfs/([0-9a-f]{64})/verify", path)):
            return self._lfs_verify(m[1], json.loads(body))
        user, refused = self._user(headers)
        if refused is not None:
            return refused
        reader = headers["authorization"].removeprefix("Bearer ") in self.read_only
        if reader and method != "GET" and path != "/api/validate-yaml":
            return 403, {"error": "This token has read access only"}, {"X-Error-Message": "read access only"}
        if method == "GET" and path == "/api/whoami-v2":
            token = {"displayName": "test", "role": "read" if reader else "write"}
            return 200, {"type": "user", "name": user, "auth": {"type": "access_token", "accessToken": token}}, {}
        if method == "POST" and path == "/api/repos/create":
            return self._create(user, json.loads(body))
        if method == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(body))
        if method == "GET" and (m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", path)):
            return self._info(m[1])
        if method == "POST" and (m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/([^/]+)", path)):
            return self._preupload(user, m[1], json.loads(body))
        if method == "POST" and (m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/branch/([^/]+)", path)):
            return self._branch(user, m[1], _unquote(m[2]))
        if method == "POST" and (m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/([^/]+)", path)):
            return self._commit(user, m[1], _unquote(m[2]), body)
        if method == "POST" and (m := re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)):
            return self._lfs_batch(user, m[1], json.loads(body))
        return 404, {"error": f"fake hub: no route {method} {path}"}, {}

    def _user(self, headers: dict[str, str]) -> tuple[str, tuple | None]:
        auth = headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        if token is None:
            return "", (401, {"error": "Invalid username or password."}, {})
        if token not in self.tokens:
            return "", (401, {"error": BAD_TOKEN}, {"X-Error-Message": BAD_TOKEN})
        return self.tokens[token], None

    def _writable(self, user: str, repo_id: str) -> tuple | None:
        if repo_id.split("/")[0] != user:
            message = f'You don\'t have the rights to create a model under the namespace "{repo_id.split("/")[0]}"'
            return 403, {"error": message}, {"X-Error-Message": message}
        return None

    def _missing(self, repo_id: str) -> tuple | None:
        if repo_id not in self.repos:
            return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        return None

    def _create(self, user: str, payload: dict) -> tuple:
        repo_id = f"{payload.get('organization') or user}/{payload['name']}"
        if payload.get("type", "model") != "model":
            return 400, {"error": "fake hub: model repos only"}, {}
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
            return 400, {"error": f"invalid repo name {repo_id}"}, {}
        refused = self._writable(user, repo_id)
        if refused is not None:
            return refused
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}, {}
        self.repos[repo_id] = Repo(private=payload.get("visibility") == "private")
        return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id}, {}

    def _info(self, repo_id: str) -> tuple:
        return self._missing(repo_id) or (200, {"id": repo_id, "private": self.repos[repo_id].private,
                                                "sha": "0" * 40, "siblings": []}, {})

    def _validate_yaml(self, payload: dict) -> tuple:
        text = payload["content"]
        self.yaml_checked.append(text)
        if text.startswith("---\n"):
            try:
                meta = yaml.safe_load(text[4:text.index("\n---\n", 4)])
            except (ValueError, yaml.YAMLError) as err:
                return 400, {"errors": [{"message": f"invalid YAML: {err}"}]}, {}
            if not isinstance(meta, dict):
                return 400, {"errors": [{"message": "metadata must be a mapping"}]}, {}
        return 200, {"errors": [], "warnings": []}, {}

    def _preupload(self, user: str, repo_id: str, payload: dict) -> tuple:
        refused = self._missing(repo_id) or self._writable(user, repo_id)
        if refused is not None:
            return refused
        big = self.lfs_from
        files = [{"path": f["path"], "uploadMode": "lfs" if big is not None and f["size"] >= big else "regular",
                  "shouldIgnore": False, "oid": None} for f in payload["files"]]
        return 200, {"files": files, "commitOid": "0" * 40}, {}

    def _branch(self, user: str, repo_id: str, branch: str) -> tuple:
        refused = self._missing(repo_id) or self._writable(user, repo_id)
        if refused is not None:
            return refused
        branches = self.repos[repo_id].branches
        if branch in branches:
            return 409, {"error": f"Reference already exists: refs/heads/{branch}"}, {}
        branches[branch] = dict(branches["main"])
        return 200, {}, {}

    def _commit(self, user: str, repo_id: str, branch: str, body: bytes) -> tuple:
        refused = self._missing(repo_id) or self._writable(user, repo_id)
        if refused is not None:
            return refused
        repo = self.repos[repo_id]
        if branch not in repo.branches:
            return 404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"}
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        added: dict[str, bytes] = {}
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                added[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.lfs:
                    return 400, {"error": f"LFS object {value['oid']} was never uploaded"}, {}
                added[value["path"]] = self.lfs[value["oid"]]
            else:
                return 400, {"error": f"fake hub: no {line['key']} operations"}, {}
        repo.branches[branch].update(added)
        oid = hashlib.sha1(body).hexdigest()
        repo.commits.append({"branch": branch, "header": lines[0]["value"], "paths": sorted(added), "oid": oid})
        return 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid, "success": True}, {}

    def _lfs_batch(self, user: str, repo_id: str, payload: dict) -> tuple:
        refused = self._missing(repo_id) or self._writable(user, repo_id)
        if refused is not None:
            return refused
        objects = []
        for obj in payload["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.lfs:
                entry["actions"] = {"upload": {"href": f"{self.url}/lfs/{obj['oid']}"},
                                    "verify": {"href": f"{self.url}/lfs/{obj['oid']}/verify"}}
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}, {}

    def _lfs_put(self, oid: str, body: bytes) -> tuple:
        if hashlib.sha256(body).hexdigest() != oid:
            return 400, {"error": "sha256 mismatch"}, {}
        self.lfs[oid] = body
        return 200, {}, {}

    def _lfs_verify(self, oid: str, payload: dict) -> tuple:
        ok = oid in self.lfs and len(self.lfs[oid]) == payload.get("size")
        return (200, {}, {}) if ok else (404, {"error": "object not found"}, {})


def _unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    """The request handler class bound to ``hub``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read hub.seen instead
            return

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while (size := int(self.rfile.readline().split(b";")[0].strip(), 16)) > 0:
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _answer(self) -> None:
            from urllib.parse import urlsplit

            body = self._body()
            path = urlsplit(self.path).path
            headers = {k.lower(): v for k, v in self.headers.items()}
            with hub._lock:
                seen = Seen(self.command, path, headers)
                hub.seen.append(seen)
                status, payload, extra = hub.route(self.command, path, headers, body)
                seen.status = status
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")  # no kept-alive connection outlives the hub
            self.close_connection = True
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _answer

    return Handler
