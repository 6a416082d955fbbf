"""`lofi serve`: the engine client behind JSON-RPC 2.0 over stdio, one JSON object a line.

Requests are the client's methods (generate, queue, download, tracks, track_played, status, shutdown); events
are notifications named as the spec's (generation_start, generation_progress, generation_complete, …).

Whatever arrives on stdin (any bytes, any nesting, any size) gets a JSON-RPC error and the server keeps serving:
a line is read as bytes and decoded as strict UTF-8 here, whatever the locale says; a line over
:data:`MAX_LINE_BYTES`, nesting deeper than :data:`MAX_DEPTH`, a lone surrogate, a batch (an array) and a bad
``id`` are refused with a coded error. Every error reply carries the spec's code in ``error.data.code``. A request
without an ``id`` is a notification and gets no reply, unless it is not a request at all (then, as JSON-RPC 2.0
says, an Invalid Request error with a null id). Replies are always valid UTF-8 JSON: no lone surrogates, no NaN.
"""

from __future__ import annotations

import io
import json
import logging
import math
import threading
from typing import Any, BinaryIO, TextIO, Union

from lofi_engine.service.client import METHOD_NOT_FOUND, EngineClient
from lofi_engine.shared import errors
from lofi_engine.shared.errors import LofiError
from lofi_engine.shared.settings import Settings

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND_RPC = -32601
INVALID_PARAMS_RPC = -32602
INTERNAL_ERROR = -32603
ENGINE_ERROR = -32000

MAX_LINE_BYTES = 1 << 20
"""A request is a few hundred bytes; a longer line is refused (and skipped to its end) without being parsed."""
MAX_DEPTH = 32
"""Arrays and objects nested deeper than this in ``params`` are refused (no method takes more than 2)."""
log = logging.getLogger("lofi.rpc")
Line = Union[bytes, str]


class RpcServer:
    def __init__(self, config: Settings, stdout: TextIO | BinaryIO, python: str | None = None) -> None:
        self.stdout = stdout
        # Bytes go to the binary layer underneath a text stdout, so a reply is UTF-8 whatever the locale's encoding.
        self._binary = getattr(stdout, "buffer", None)
        # Held while a request is answered, so a notification it causes (a cached track's completion) follows
        # the response on the wire.
        self.write_lock = threading.RLock()
        self.client = EngineClient(config, on_event=self.notify, python=python)

    def write(self, message: dict[str, Any]) -> None:
        data = encode(message)
        with self.write_lock:
            if self._binary is not None:
                self._binary.write(data)
                self._binary.flush()
            elif isinstance(self.stdout, io.TextIOBase):
                self.stdout.write(data.decode("utf-8"))
                self.stdout.flush()
            else:
                self.stdout.write(data)  # type: ignore[arg-type]
                self.stdout.flush()

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.write({"jsonrpc": "2.0", "method": method, "params": params})

    def serve(self, stdin: TextIO | BinaryIO) -> None:
        """Answer line after line until end of input or `shutdown`; the peer going away ends it quietly."""
        source = getattr(stdin, "buffer", stdin)  # bytes: invalid UTF-8 is answered, not raised while reading
        try:
            while True:
                line = source.readline(MAX_LINE_BYTES + 1)
                if not line:
                    break
                if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n" if isinstance(line, bytes) else "\n"):
                    _skip_rest_of_line(source)
                    self._refuse(PARSE_ERROR, f"Parse error: a line longer than {MAX_LINE_BYTES} bytes is not a request")
                    continue
                if line.strip() and not self.handle(line):
                    break
        except BrokenPipeError:
            pass  # nobody is reading the replies any more
        finally:
            self.client.close()

    def handle(self, line: Line) -> bool:
        """Answer one line; False once the peer asked to shut down."""
        with self.write_lock:
            message = self._parse(line)
            if message is None:
                return True
            has_id, request_id = "id" in message, message.get("id")
            method, params = message["method"], message.get("params")
            if params is None:
                params = {}
            problem = _params_problem(params)
            if problem is not None:
                if has_id:
                    self._error(request_id, INVALID_PARAMS_RPC, f"Invalid params: {problem[0]}", problem[1])
                return True
            if method == "shutdown":
                if has_id:
                    self._reply(request_id, {"status": "shutting_down"})
                return False
            try:
                result = self.client.request(method, params)
            except LofiError as exc:
                code = METHOD_NOT_FOUND_RPC if exc.code == METHOD_NOT_FOUND else INVALID_PARAMS_RPC if exc.code.startswith("INVALID_") else ENGINE_ERROR
                error = (code, exc.message, exc.code)
            except (OverflowError, UnicodeError, RecursionError) as exc:  # what a validator let through from bad input
                error = (INVALID_PARAMS_RPC, f"Invalid params: {_bad_input(exc)}", errors.INVALID_PARAMS)
            except Exception as exc:  # a bug: never let one request take the server (and the queue) down
                log.exception("%s failed", method)
                error = (INTERNAL_ERROR, f"Internal error: {exc!r}", errors.INTERNAL_ERROR)
            else:
                if has_id:
                    self._reply(request_id, result)
                return True
            if has_id:
                self._error(request_id, *error)
            return True

    def _parse(self, line: Line) -> dict[str, Any] | None:
        """The request on ``line``, or None once it has been refused (a parse error or an Invalid Request)."""
        if isinstance(line, bytes):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                self._refuse(PARSE_ERROR, f"Parse error: the line is not valid UTF-8 (at byte {exc.start})")
                return None
        else:
            text = line
        try:
            message = json.loads(text, parse_constant=_no_constant)
        except RecursionError:
            self._refuse(PARSE_ERROR, "Parse error: nested too deeply")
            return None
        except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers past Python's digit limit
            self._refuse(PARSE_ERROR, f"Parse error: {_short(str(exc))}")
            return None
        if isinstance(message, list):
            self._refuse(INVALID_REQUEST, "Invalid Request: batches (arrays) are not supported; send one request object a line")
            return None
        if not isinstance(message, dict):
            self._refuse(INVALID_REQUEST, "Invalid Request: expected an object with a method")
            return None
        if "id" in message and not _valid_id(message["id"]):
            self._refuse(INVALID_REQUEST, "Invalid Request: id must be a string (valid Unicode), a finite number or null")
            return None
        request_id = message.get("id")
        if "jsonrpc" in message and message["jsonrpc"] != "2.0":
            self._error(request_id, INVALID_REQUEST, 'Invalid Request: jsonrpc must be "2.0"', errors.INVALID_REQUEST)
            return None
        method = message.get("method")
        if not isinstance(method, str) or _has_lone_surrogate(method):
            self._error(request_id, INVALID_REQUEST, "Invalid Request: method must be a string naming a method", errors.INVALID_REQUEST)
            return None
        return message

    def _refuse(self, rpc_code: int, message: str) -> None:
        """A line that is no request: the reply's id is null (JSON-RPC 2.0, 5.1)."""
        self._error(None, rpc_code, message, errors.INVALID_REQUEST)

    def _reply(self, request_id: Any, result: Any) -> None:
        self.write({"jsonrpc": "2.0", "id": request_id, "result": result})

    def _error(self, request_id: Any, code: int, message: str, data_code: str) -> None:
        self.write({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message, "data": {"code": data_code}}})


def encode(message: Any) -> bytes:
    """One line of UTF-8 JSON. Text that cannot be UTF-8 (a lone surrogate) becomes U+FFFD and a number JSON
    cannot carry (NaN, infinity) becomes null, so that a reply is always valid JSON."""
    try:
        return (json.dumps(message, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    except (ValueError, UnicodeError, RecursionError):
        return (json.dumps(_clean(message, 0), ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def _clean(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH * 4:
        return None
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8") if _has_lone_surrogate(value) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_clean(str(k), depth + 1): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, depth + 1) for v in value]
    if value is None or isinstance(value, (bool, int)):
        return value
    return _clean(str(value), depth + 1)


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _valid_id(value: Any) -> bool:
    """JSON-RPC 2.0: a string, a number or null (and nothing that cannot be written back)."""
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        return not _has_lone_surrogate(value)
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _params_problem(params: Any) -> tuple[str, str] | None:
    """Why ``params`` cannot be handed to a method and the spec's code for it, or None: not an object, nested too
    deeply, or holding text that is not valid Unicode (walked without recursion, so no depth overflows the stack)."""
    if not isinstance(params, dict):
        return "params must be an object", errors.INVALID_PARAMS
    prompt = params.get("prompt")
    if isinstance(prompt, str) and _has_lone_surrogate(prompt):
        return "prompt must be valid Unicode text (it holds a lone surrogate)", errors.INVALID_PROMPT
    problem = _structure_problem(params)
    return None if problem is None else (problem, errors.INVALID_PARAMS)


def _structure_problem(params: dict[str, Any]) -> str | None:
    stack: list[tuple[Any, int]] = [(params, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_DEPTH:
                return f"params are nested more than {MAX_DEPTH} levels deep"
            for key, item in value.items():
                if _has_lone_surrogate(key):
                    return "a key in params is not valid Unicode (it holds a lone surrogate)"
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > MAX_DEPTH:
                return f"params are nested more than {MAX_DEPTH} levels deep"
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and _has_lone_surrogate(value):
            return "a text in params is not valid Unicode (it holds a lone surrogate)"
    return None


def _bad_input(exc: Exception) -> str:
    if isinstance(exc, OverflowError):
        return "a number in params is too large"
    if isinstance(exc, UnicodeError):
        return "a text in params is not valid Unicode"
    return "params are nested too deeply"


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _skip_rest_of_line(source: Any) -> None:
    newline = b"\n"
    while True:
        more = source.readline(MAX_LINE_BYTES)
        if not more:
            return
        if isinstance(more, str):
            newline = "\n"
        if more.endswith(newline):
            return
