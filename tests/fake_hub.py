"""A stand-in for the HuggingFace Hub's file endpoints on 127.0.0.1, so the real download code runs offline.

Serves ``{repo}/resolve/{revision}/{path}`` (HEAD with the Hub's metadata headers, GET with Range) from a dict of
file contents, records every request, and can misbehave per file: cut the connection mid-file once, serve fewer
bytes than announced, or serve the right number of wrong bytes.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class FakeHub:
    repo: str
    files: dict[str, bytes]
    cut_once: set[str] = field(default_factory=set)
    truncate: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _lookup(self) -> str | None:
                prefix = f"/{hub.repo}/resolve/main/"
                path = self.path.split("?")[0]
                return path[len(prefix):] if path.startswith(prefix) and path[len(prefix):] in hub.files else None

            def _headers(self, name: str, length: int, status: int = 200, extra: dict | None = None) -> None:
                data = hub.files[name]
                self.send_response(status)
                self.send_header("X-Repo-Commit", COMMIT)
                if name.endswith(".onnx"):  # LFS files: the etag is the content's sha256
                    self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                else:
                    self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
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
                self._headers(name, len(hub.files[name]))

            def do_GET(self) -> None:
                name = self._lookup()
                hub.requests.append(("GET", self.path, self.headers.get("Range")))
                if name is None:
                    self.send_error(404)
                    return
                data = hub.files[name]
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
                if name in hub.cut_once:  # the connection drops a third of the way in, once
                    hub.cut_once.discard(name)
                    body = body[: len(body) // 3]
                    self.close_connection = True
                self.wfile.write(body)
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def gets(self) -> list[tuple[str, str | None]]:
        """File downloads (GET of a resolve URL) with their Range header."""
        return [(path, rng) for method, path, rng in self.requests if method == "GET" and "/resolve/" in path]

    def file_requests(self) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if "/resolve/" in r[1]]
