"""lofi.nvim's remote plugin: the bridge between the Lua side and the engine client.

It imports nothing but pynvim and the standard-library half of `lofi_engine`; the engine itself runs in its own
process under the plugin's `.venv` interpreter. The plugin's own python3 host runs it (`lua/lofi/core/host.lua` registers
the host and these functions, and marks the host with LOFI_NVIM_HOST=1); in any other host, such as the user's
python3 host during `:UpdateRemotePlugins`, it declares nothing, so its functions are never registered twice. Handlers only validate, enqueue and return; engine events come
back through `nvim.async_call` into `require("lofi")._dispatch(event, data)`.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import pynvim

PLUGIN_ROOT = Path(__file__).resolve().parents[3]
if str(PLUGIN_ROOT) not in sys.path:
    sys.path.insert(0, str(PLUGIN_ROOT))

from lofi_engine.service.client import EngineClient  # noqa: E402  (needs PLUGIN_ROOT on sys.path)
from lofi_engine.shared.errors import LofiError  # noqa: E402
from lofi_engine.shared.log_dir import writable_log_dir  # noqa: E402
from lofi_engine.shared.settings import Settings, default_state_dir  # noqa: E402

PLUGIN_ERROR = "PLUGIN_ERROR"
HOST_MARKER = "LOFI_NVIM_HOST"
log = logging.getLogger("lofi.plugin")


class LofiPlugin:
    def __init__(self, nvim: pynvim.Nvim) -> None:
        self.nvim = nvim
        self.client: EngineClient | None = None
        self.settings: tuple | None = None  # what the client was made from
        self.log_dir = default_state_dir()
        self.log_path = self.log_dir / "plugin.log"

    @pynvim.function("LofiRequest", sync=True)
    def request(self, args: list[Any]) -> dict[str, Any]:
        """LofiRequest(settings, method, params) → {"result": …} or {"error": {"code", "message"}}."""
        try:
            settings, method, params = args
            self._configure(settings)
            assert self.client is not None
            return {"result": self.client.request(method, params or {})}
        except LofiError as exc:  # every error the editor is told of is in the log too (:LofiLog)
            self._ensure_log()
            log.error("request %r failed: %s: %s", args[1:2], exc.code, exc.message)
            return {"error": exc.to_dict()}
        except Exception as exc:  # the editor gets one clean message; the traceback goes to the log
            self._ensure_log()
            log.exception("request %r failed", args[1:2])
            return {"error": {"code": PLUGIN_ERROR, "message": f"{exc!r} (details in {self.log_path})"}}

    @pynvim.function("LofiShutdown", sync=True)
    def shutdown(self, args: list[Any]) -> bool:
        self._close()
        return True

    @pynvim.shutdown_hook
    def _on_host_exit(self) -> None:
        self._close()

    def _configure(self, settings: dict[str, Any]) -> None:
        """Create the client on first use (the engine starts on the first job); when the Lua side's settings change,
        jobs queued from then on use the new ones and the queued ones keep theirs."""
        config = Settings.from_dict(dict(settings.get("engine") or {}))
        python = settings.get("python")  # decided on the Lua side (config.engine_python); None: this host's
        key = (config, python)
        if self.client is not None and key == self.settings:
            return
        if settings.get("log_dir"):
            self.log_dir = Path(settings["log_dir"])
        self._log_to(self.log_dir)
        if self.client is None:
            self.client = EngineClient(config, on_event=self._forward, python=python, log_path=self.log_dir / "engine.log")
        else:
            kept = self.client.reconfigure(config, python)["kept_jobs"]
            log.info("settings changed; %d queued job(s) keep the settings they were queued with", kept)
        self.settings = key

    def _log_to(self, preferred_dir: Path) -> None:
        """plugin.log in ``preferred_dir``, or where the service moves its logs when that cannot be written (it says
        so to the user, once)."""
        path = writable_log_dir(preferred_dir)[0] / "plugin.log"
        if path == self.log_path and logging.getLogger("lofi").handlers:
            return
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root = logging.getLogger("lofi")
        for old in root.handlers[:]:
            root.removeHandler(old)
            old.close()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        self.log_path = path

    def _ensure_log(self) -> None:
        if not logging.getLogger("lofi").handlers:
            self._log_to(self.log_dir)

    def _forward(self, event: str, data: dict[str, Any]) -> None:
        """From the client's dispatcher thread to the editor's loop, in order."""
        failed = event in ("generation_error", "download_error", "radio_error") or (event == "playback_end" and data.get("reason") == "error")
        if failed:
            level = logging.INFO if data.get("code") == "CANCELLED" else logging.ERROR
            about = data.get("track_id") or data.get("variant") or data.get("stream_id")
            log.log(level, "%s %s: %s: %s", event, about, data.get("code"), data.get("message"))
        self.nvim.async_call(self._dispatch, event, data)

    def _dispatch(self, event: str, data: dict[str, Any]) -> None:
        try:
            self.nvim.exec_lua("require('lofi')._dispatch(...)", event, data)
        except Exception:
            log.exception("dispatching %s failed", event)

    def _close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
            self.settings = None


if os.environ.get(HOST_MARKER) == "1":
    LofiPlugin = pynvim.plugin(LofiPlugin)
