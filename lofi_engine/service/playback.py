"""Playback on the service's side: the player process, what it plays, and the requests that steer it.

Tracks are named by id and resolved here, through the track store (the path a player gets is the one the store
computes, never one read from a file); the player process mixes and plays them and reports back.
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
from pathlib import Path
from typing import Any, Callable

from lofi_engine.playback.entry import player_main
from lofi_engine.service.child_link import ChildLink
from lofi_engine.service.dispatcher import EventDispatcher
from lofi_engine.shared.errors import INVALID_PARAMS, PLAYBACK_FAILED, PLAYER_UNAVAILABLE, TRACK_NOT_FOUND, LofiError
from lofi_engine.shared.protocol import PLAYER_STATE, PlayerCommand
from lofi_engine.shared.settings import EngineConfig
from lofi_engine.store.tracks import TrackCache

STOPPED = {"state": "stopped", "track_id": None, "position_sec": 0.0, "playlist": []}
log = logging.getLogger("lofi.service")


class Playback:
    def __init__(
        self, python: str | None, log_path: Path, events: EventDispatcher, lock: Any, config: Callable[[], EngineConfig], cache: Callable[[], TrackCache]
    ) -> None:
        """``lock``: the service's lock, taken around what the player process reports; ``config()`` and ``cache()``
        give the service's current settings and track store."""
        self._config = config
        self._cache = cache
        self.loop_override: bool | None = None  # the radio loops its rotation whatever the setting says
        self.volume: float | None = None  # set by a `volume` request; until then the setting
        self.listener: Callable[[str, dict[str, Any]], None] | None = None  # the radio, told what plays
        self._events = events
        self._lock = lock
        self._link = ChildLink("player", player_main, python, log_path, self._on_event, self._on_exit)
        self.state: dict[str, Any] = dict(STOPPED)

    def handlers(self) -> dict[str, Callable[[dict], Any]]:
        """The requests this answers."""
        config, cache = self._config, self._cache

        def send(name: str, params: dict | None = None) -> dict[str, Any]:
            """The command goes to the player; its effect arrives as events (and in `playback`)."""
            self._send(PlayerCommand(name, params or {}), config())
            return {"sent": name}

        def play(p: dict) -> dict[str, Any]:
            store = cache()
            ids = p.get("track_ids") if "track_ids" in p else [p["track_id"]] if p.get("track_id") is not None else None
            if ids is None:
                newest = store.tracks()
                if not newest:
                    raise LofiError(TRACK_NOT_FOUND, "no track yet: generate one first")
                ids = [newest[0]["track_id"]]
            tracks = [self._track(store, tid) for tid in _id_list(ids)]
            result = send("play", {"tracks": tracks})
            # What was asked, until the player reports: the tracks are taken from now on (not deletable).
            self.state = {**self.state, "state": "starting", "track_id": tracks[0]["track_id"], "playlist": [t["track_id"] for t in tracks]}
            store.touch(tracks[0]["track_id"])
            return {**result, "track_id": tracks[0]["track_id"]}

        def volume(p: dict) -> dict[str, Any]:
            level = p.get("level")
            if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 <= level <= 100:
                raise LofiError(INVALID_PARAMS, f"volume level must be a number from 0 to 100, not {level!r}")
            self.volume = float(level)
            return send("settings", {"volume": self.volume})

        def loop(p: dict) -> dict[str, Any]:
            if not isinstance(p.get("enabled"), bool):
                raise LofiError(INVALID_PARAMS, "playlist_loop needs enabled: true or false")
            self.loop_override = p["enabled"]
            return send("settings", {"loop": p["enabled"]})

        def toggle(p: dict) -> dict[str, Any]:
            return send("resume" if self.state["state"] == "paused" else "pause")

        return {
            "play": play,
            "pause": lambda p: send("pause"),
            "resume": lambda p: send("resume"),
            "toggle": toggle,
            "stop": lambda p: send("stop"),
            "skip": lambda p: send("skip"),
            "volume": volume,
            "playlist_loop": loop,
            "playlist_add": lambda p: send("add", {"tracks": [self._track(cache(), tid) for tid in _id_list(_one_or_more(p))]}),
            "playlist_remove": lambda p: send("remove", {"track_id": _checked_id(p.get("track_id"))}),
            "playlist_clear": lambda p: send("clear"),
            "playback": lambda p: self.status(),
        }

    # ---- for the radio ------------------------------------------------------------------------------------------

    def track_of(self, track_id: str) -> dict[str, Any]:
        return self._track(self._cache(), track_id)

    def play_now(self, entries: list[dict[str, Any]]) -> None:
        self._send(PlayerCommand("play", {"tracks": entries}), self._config())
        self.state = {**self.state, "state": "starting", "track_id": entries[0]["track_id"], "playlist": [e["track_id"] for e in entries]}

    def insert_next(self, entries: list[dict[str, Any]], after: str | None = None) -> None:
        """After ``after`` when it is in the playlist, else after the track playing."""
        self._send(PlayerCommand("insert", {"tracks": entries, "after": after}), self._config())

    def leave_rotation(self, track_id: str) -> None:
        if self.state.get("track_id") != track_id:
            self._send(PlayerCommand("remove", {"track_id": track_id}), self._config())

    def set_loop(self, enabled: bool) -> None:
        self.loop_override = enabled
        if self._link.alive:
            self._send(PlayerCommand("settings", {"loop": enabled}), self._config())

    def stop_now(self) -> None:
        if self._link.alive:
            self._send(PlayerCommand("stop"), self._config())

    @property
    def python(self) -> str | None:
        return self._link.python

    @python.setter
    def python(self, python: str | None) -> None:
        self._link.python = python

    def status(self) -> dict[str, Any]:
        return dict(self.state)

    def close(self) -> None:
        self._link.stop()

    def _track(self, store: TrackCache, track_id: str) -> dict[str, Any]:
        meta = store.get(_checked_id(track_id))
        if meta is None:
            raise LofiError(TRACK_NOT_FOUND, f"no cached track {track_id}")
        info = {k: meta[k] for k in ("prompt", "duration_sec", "backend") if k in meta}
        return {"track_id": track_id, "path": str(store.wav_path(track_id)), "info": info}

    def _send(self, command: PlayerCommand, config: EngineConfig) -> None:
        argv = config.player_argv
        if shutil.which(argv[0]) is None:
            raise LofiError(PLAYER_UNAVAILABLE, f"the player {argv[0]} is not installed: install mpv (or set player_command) to hear tracks")
        levels = {
            "volume": config.volume if self.volume is None else self.volume,
            "loop": config.playlist_loop if self.loop_override is None else self.loop_override,
            "crossfade_sec": config.crossfade_sec,
        }
        try:  # the levels first, every time: a player started now (or restarted) gets them before the command
            self._link.send(PlayerCommand("settings", levels), {"command": argv}, config.stall_timeout_sec)
            self._link.send(command, {"command": argv}, config.stall_timeout_sec)
        except (OSError, ValueError) as exc:
            raise LofiError(PLAYBACK_FAILED, f"the player process could not be reached: {exc}") from None

    def _on_event(self, name: str, fields: dict[str, Any]) -> None:
        with self._lock:
            if name == PLAYER_STATE:
                self.state = fields
                return
            self._events.emit(name, fields)
            if self.listener is not None:
                self.listener(name, fields)

    def _on_exit(self, process: multiprocessing.process.BaseProcess) -> None:
        with self._lock:
            if not self._link.crashed(process):
                return
            playing = self.state.get("track_id")
            self.state = dict(STOPPED)
            if playing is not None:
                why = "stopped responding" if self._link.stalled(process) else f"crashed (exit code {process.exitcode})"
                self._events.emit("playback_end", {"track_id": playing, "reason": "error", "code": PLAYBACK_FAILED, "message": f"the player process {why}"})


def _one_or_more(params: dict) -> Any:
    return params.get("track_ids") if "track_ids" in params else [params.get("track_id")]


def _id_list(ids: Any) -> list[str]:
    if not isinstance(ids, list) or not ids:
        raise LofiError(INVALID_PARAMS, "track_ids must be a non-empty list of track ids")
    return [_checked_id(tid) for tid in ids]


def _checked_id(track_id: Any) -> str:
    if not isinstance(track_id, str):
        raise LofiError(INVALID_PARAMS, f"track_id must be a track id (16 hex characters), not {track_id!r}")
    return track_id
