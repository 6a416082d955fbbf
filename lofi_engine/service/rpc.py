"""`lofi serve`: the engine client behind JSON-RPC 2.0 over stdio, one JSON object a line.

Requests are the client's methods (generate, queue, download, tracks, track_played, status, shutdown); events
are notifications named as the spec's (generation_start, generation_progress, generation_complete, …). Bad input
gets a JSON-RPC error and the server keeps serving.
"""

from __future__ import annotations

import json
import threading
from typing import Any, TextIO

from lofi_engine.service.client import METHOD_NOT_FOUND, EngineClient
from lofi_engine.shared.settings import EngineConfig
from lofi_engine.shared.errors import LofiError

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND_RPC = -32601
INVALID_PARAMS_RPC = -32602
INTERNAL_ERROR = -32603
ENGINE_ERROR = -32000


class RpcServer:
    def __init__(self, config: EngineConfig, stdout: TextIO, python: str | None = None) -> None:
        self.stdout = stdout
        # Held while a request is answered, so a notification it causes (a cached track's completion) follows
        # the response on the wire.
        self.write_lock = threading.RLock()
        self.client = EngineClient(config, on_event=self.notify, python=python)

    def write(self, message: dict[str, Any]) -> None:
        with self.write_lock:
            self.stdout.write(json.dumps(message, ensure_ascii=False) + "\n")
            self.stdout.flush()

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.write({"jsonrpc": "2.0", "method": method, "params": params})

    def serve(self, stdin: TextIO) -> None:
        try:
            for line in stdin:
                if line.strip() and not self.handle(line):
                    break
        finally:
            self.client.close()

    def handle(self, line: str) -> bool:
        """Answer one line; False once the peer asked to shut down."""
        with self.write_lock:
            try:
                message = json.loads(line)
            except ValueError as exc:
                self._error(None, PARSE_ERROR, f"Parse error: {exc}")
                return True
            if not isinstance(message, dict) or not isinstance(message.get("method"), str):
                self._error(message.get("id") if isinstance(message, dict) else None, INVALID_REQUEST, "Invalid Request: expected an object with a method")
                return True
            request_id = message.get("id")
            method, params = message["method"], message.get("params", {})
            if not isinstance(params, dict):
                self._error(request_id, INVALID_PARAMS_RPC, "Invalid params: params must be an object")
                return True
            if method == "shutdown":
                self._reply(request_id, {"status": "shutting_down"})
                return False
            try:
                result = self.client.request(method, params)
            except LofiError as exc:
                code = METHOD_NOT_FOUND_RPC if exc.code == METHOD_NOT_FOUND else INVALID_PARAMS_RPC if exc.code.startswith("INVALID_") else ENGINE_ERROR
                self._error(request_id, code, exc.message, {"code": exc.code})
            except Exception as exc:  # never let one request take the server down
                self._error(request_id, INTERNAL_ERROR, f"Internal error: {exc!r}")
            else:
                self._reply(request_id, result)
            return True

    def _reply(self, request_id: Any, result: Any) -> None:
        if request_id is not None:
            self.write({"jsonrpc": "2.0", "id": request_id, "result": result})

    def _error(self, request_id: Any, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        error: dict[str, Any] = {"code": code, "message": message}
        if data:
            error["data"] = data
        self.write({"jsonrpc": "2.0", "id": request_id, "error": error})
