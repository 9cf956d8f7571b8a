# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""A stand-in for the Hugging Face Hub that serves local folders as dataset repositories over HTTP, for tests that
must go through the real Hub resolution of `huggingface_hub` and `datasets` without the network.

It answers the routes those libraries call for a dataset repository: the repository info (`/api/datasets/<id>` and
`/api/datasets/<id>/revision/<rev>`), the file listing (`/api/datasets/<id>/tree/<rev>/<path>`, `.../paths-info/<rev>`)
and file downloads (`/datasets/<id>/resolve/<rev>/<path>`, also with byte ranges). Every repository has one commit;
any other route is answered 404 and recorded in `LocalHub.unanswered`.

    with LocalHub({"org/name": folder}) as hub:
        ...  # HF_ENDPOINT=hub.endpoint in the environment of the code under test
"""

import hashlib
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse


class LocalHub:
    def __init__(self, repositories: dict[str, os.PathLike]):
        self.repositories = {repo_id: Path(folder) for repo_id, folder in repositories.items()}
        self.requests: list[str] = []
        self.unanswered: list[str] = []
        self._server = None

    # one commit per repository, named by its content
    def commit(self, repo_id: str) -> str:
        digest = hashlib.sha1()
        for path in self.files(repo_id):
            digest.update(path.encode() + b"\0" + self.etag(repo_id, path).encode())
        return digest.hexdigest()

    def files(self, repo_id: str) -> list[str]:
        root = self.repositories[repo_id]
        return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())

    def etag(self, repo_id: str, path: str) -> str:
        return hashlib.sha256((self.repositories[repo_id] / path).read_bytes()).hexdigest()

    def entry(self, repo_id: str, path: str) -> dict | None:
        full = self.repositories[repo_id] / path
        if full.is_file():
            return {"type": "file", "path": path, "oid": self.etag(repo_id, path)[:40], "size": full.stat().st_size}
        if full.is_dir():
            return {"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0}
        return None

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "LocalHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub._answer(self, body=False)

            def do_GET(self):
                hub._answer(self, body=True)

            def do_POST(self):
                hub._answer(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ----------------------------------------------------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        url = urlparse(handler.path)
        path = unquote(url.path)
        self.requests.append(f"{handler.command} {path}")
        form = {}
        if handler.command == "POST":
            length = int(handler.headers.get("Content-Length") or 0)
            raw = handler.rfile.read(length).decode()
            form = json.loads(raw) if raw.startswith("{") else parse_qs(raw)
        for pattern, route in (
            (r"/api/datasets/([^/]+/[^/]+)(?:/revision/([^/]+))?", self._info),
            (r"/api/datasets/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", self._tree),
            (r"/api/datasets/([^/]+/[^/]+)/paths-info/([^/]+)", self._paths_info),
            (r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self._resolve),
        ):
            match = re.fullmatch(pattern, path)
            if match and match.group(1) in self.repositories:
                revision = match.group(2)
                if revision not in (None, "main", self.commit(match.group(1))):
                    return self._send(handler, 404, b"", {"X-Error-Code": "RevisionNotFound"}, body)
                return route(handler, body, *match.groups(), query=parse_qs(url.query), form=form)
        self.unanswered.append(f"{handler.command} {handler.path}")
        code = "RepoNotFound" if path.startswith("/api/") else "EntryNotFound"
        self._send(handler, 404, b"{}", {"X-Error-Code": code, "Content-Type": "application/json"}, body)

    def _send(self, handler, status: int, content: bytes, headers: dict, body: bool) -> None:
        handler.send_response(status)
        for name, value in {"Content-Length": str(len(content)), **headers}.items():
            handler.send_header(name, value)
        handler.end_headers()
        if body:
            handler.wfile.write(content)

    def _json(self, handler, value, body: bool) -> None:
        self._send(handler, 200, json.dumps(value).encode(), {"Content-Type": "application/json"}, body)

    def _info(self, handler, body, repo_id, revision, query, form):
        self._json(
            handler,
            {
                "id": repo_id,
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                "author": repo_id.split("/")[0],
                "sha": self.commit(repo_id),
                "private": False,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "cardData": {},
                "lastModified": "2026-01-01T00:00:00.000Z",
                "createdAt": "2026-01-01T00:00:00.000Z",
                "siblings": [{"rfilename": path} for path in self.files(repo_id)],
            },
            body,
        )

    def _tree(self, handler, body, repo_id, revision, folder, query, form):
        folder = (folder or "").strip("/")
        root = self.repositories[repo_id] / folder
        if not root.is_dir():
            return self._send(handler, 404, b"{}", {"X-Error-Code": "EntryNotFound"}, body)
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        children = root.rglob("*") if recursive else root.iterdir()
        base = self.repositories[repo_id]
        entries = [self.entry(repo_id, child.relative_to(base).as_posix()) for child in sorted(children)]
        self._json(handler, entries, body)

    def _paths_info(self, handler, body, repo_id, revision, query, form):
        paths = form.get("paths", [])
        paths = [paths] if isinstance(paths, str) else paths
        entries = [self.entry(repo_id, path.strip("/")) for path in paths]
        self._json(handler, [entry for entry in entries if entry is not None], body)

    def _resolve(self, handler, body, repo_id, revision, path, query, form):
        full = self.repositories[repo_id] / path
        headers = {"X-Repo-Commit": self.commit(repo_id)}
        if not full.is_file():
            return self._send(handler, 404, b"", {**headers, "X-Error-Code": "EntryNotFound"}, body)
        content = full.read_bytes()
        headers.update({"ETag": f'"{self.etag(repo_id, path)}"', "Accept-Ranges": "bytes"})
        ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", handler.headers.get("Range") or "")
        if ranged and ranged.group(1):
            start = int(ranged.group(1))
            end = min(int(ranged.group(2)) if ranged.group(2) else len(content) - 1, len(content) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            return self._send(handler, 206, content[start : end + 1], headers, body)
        self._send(handler, 200, content, headers, body)
