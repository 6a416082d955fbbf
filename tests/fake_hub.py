"""A stand-in for the HuggingFace Hub's file endpoints on 127.0.0.1, so the real download code runs offline.

Serves ``{repo}/resolve/{revision}/{path}`` at any revision (HEAD with the Hub's metadata headers: the LFS sha256 of
``.onnx`` files, the git blob hash of the others; GET with Range) from a dict of file contents, records every
request of any method and path (``/api/…`` included), and can misbehave per file: cut the connection mid-file once or
every time, serve fewer bytes than announced, or serve the right number of wrong bytes.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git_blob_sha1(data: bytes) -> str:
    """The Hub's ETag of a file kept in git (not LFS): git's object id of the blob."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def catalogue_for(files: dict[str, bytes], names: dict[str, str], variant: str = "small", pin: set[str] | None = None) -> dict:
    """A LOFI_CATALOGUE override describing ``files`` (repo path → bytes) as ``variant`` (engine name → repo path):
    size and sha256 pinned for the repo paths in ``pin`` (all by default), left to the Hub's metadata for the rest."""
    entries = {}
    for name, repo_path in names.items():
        data = files[repo_path]
        pinned = pin is None or repo_path in pin
        entries[name] = {"path": repo_path, **({"size": len(data), "sha256": hashlib.sha256(data).hexdigest()} if pinned else {})}
    total = sum(len(files[p]) for p in names.values())
    return {"variants": {variant: {"files": entries, "download_bytes": total}}}


@dataclass
class FakeHub:
    repo: str
    files: dict[str, bytes]
    cut_once: set[str] = field(default_factory=set)
    cut_always: set[str] = field(default_factory=set)
    truncate: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    catalogue: object = None  # set by serve_tiny: where the LOFI_CATALOGUE override describing these files lives
    other_repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    """More repos served beside ``repo`` (EnCodec's weights): repo → path → bytes."""

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _lookup(self) -> str | None:
                path = self.path.split("?")[0]
                for repo, files in ((hub.repo, hub.files), *hub.other_repos.items()):
                    prefix = f"/{repo}/resolve/"
                    if path.startswith(prefix) and "/" in path[len(prefix):]:
                        self.revision, name = path[len(prefix):].split("/", 1)
                        self.store = files
                        return name if name in files else None
                return None

            def _headers(self, name: str, length: int, status: int = 200, extra: dict | None = None) -> None:
                data = self.store[name]
                self.send_response(status)
                is_commit = len(self.revision) == 40 and all(c in "0123456789abcdef" for c in self.revision)
                self.send_header("X-Repo-Commit", self.revision if is_commit else COMMIT)
                if name.endswith((".onnx", ".safetensors")):  # LFS files: the etag is the content's sha256
                    self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                else:
                    self.send_header("ETag", f'"{git_blob_sha1(data)}"')
                self.send_header("Content-Length", str(length))
                self.send_header("Accept-Ranges", "bytes")
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()

            def do_HEAD(self) -> None:
                name = self._lookup()
                hub.requests.append(("HEAD", self.path, None))
                if name is None:
                    self.send_error(404)
                    return
                self._headers(name, len(self.store[name]))

            def do_POST(self) -> None:
                hub.requests.append(("POST", self.path, None))
                self.send_error(404)

            def do_GET(self) -> None:
                name = self._lookup()
                hub.requests.append(("GET", self.path, self.headers.get("Range")))
                if name is None:
                    self.send_error(404)
                    return
                data = self.store[name]
                if name in hub.corrupt:  # the announced size, the wrong bytes
                    data = bytes(len(data))
                if name in hub.truncate:  # a complete response, but of a file shorter than the Hub announced
                    data = data[: len(data) // 2]
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                if start >= len(data) > 0:
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if start:
                    self._headers(name, len(data) - start, 206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
                else:
                    self._headers(name, len(data))
                body = data[start:]
                if name in hub.cut_once or name in hub.cut_always:  # the connection drops a third of the way in
                    hub.cut_once.discard(name)
                    body = body[: len(body) // 3]
                    self.close_connection = True
                self.wfile.write(body)
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def publish(self, repo_path: str, data: bytes) -> None:
        """Serve new content for a file, and describe it in the catalogue override (as a new pinned record would)."""
        import json
        from pathlib import Path

        self.files[repo_path] = data
        if self.catalogue is not None:
            path = Path(self.catalogue)
            table = json.loads(path.read_text())
            for spec in table["variants"].values():
                for entry in spec["files"].values():
                    if entry["path"] == repo_path and "size" in entry:
                        entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
                spec["download_bytes"] = sum(len(self.files[e["path"]]) for e in spec["files"].values())
            path.write_text(json.dumps(table))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def gets(self) -> list[tuple[str, str | None]]:
        """File downloads (GET of a resolve URL) with their Range header."""
        return [(path, rng) for method, path, rng in self.requests if method == "GET" and "/resolve/" in path]

    def file_requests(self) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if "/resolve/" in r[1]]


def serve_tiny(monkeypatch, tmp_path, variant: str = "small", pin: set[str] | None = None) -> FakeHub:
    """Start a FakeHub serving the tiny fixture model as ``variant`` and point this process's environment (inherited
    by the engine, the CLI, Neovim) at it: HF_ENDPOINT, a private HF_HOME, the LOFI_CATALOGUE override describing the
    tiny files, quick retries. The caller stops it."""
    import json
    from pathlib import Path

    from lofi_engine.store.catalogue import HUB_REPO, OVERRIDE_ENV, VARIANTS

    tiny = Path(__file__).parent / "fixtures" / "musicgen-tiny"
    names = VARIANTS[variant].files
    fake = FakeHub(HUB_REPO, {repo_path: (tiny / name).read_bytes() for name, repo_path in names.items()})
    catalogue = Path(tmp_path) / "catalogue.json"
    catalogue.write_text(json.dumps(catalogue_for(fake.files, names, variant, pin)))
    fake.catalogue = catalogue
    monkeypatch.setenv(OVERRIDE_ENV, str(catalogue))
    monkeypatch.setenv("HF_ENDPOINT", fake.start())
    monkeypatch.setenv("HF_HOME", str(Path(tmp_path) / "hf"))
    monkeypatch.setenv("LOFI_DOWNLOAD_BACKOFF_SEC", "0.05")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return fake


def serve_encodec(fake: FakeHub) -> dict[str, bytes]:
    """Serve the tiny EnCodec fixture as ``facebook/encodec_32khz`` beside the model, pinned in the catalogue override
    (as serve_tiny left it); returns its files."""
    import json
    from pathlib import Path

    from lofi_engine.store.catalogue import ENCODEC_REPO, ENCODEC_REVISION

    folder = Path(__file__).parent / "fixtures" / "encodec-tiny"
    files = {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}
    fake.other_repos[ENCODEC_REPO] = files
    path = Path(str(fake.catalogue))
    table = json.loads(path.read_text())
    table["encodec"] = {
        "repo": ENCODEC_REPO, "revision": ENCODEC_REVISION,
        "files": {name: {"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in files.items()},
    }
    path.write_text(json.dumps(table))
    return files
