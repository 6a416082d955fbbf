"""Playback on the service's side: the player process, what it plays, and the requests that steer it.

Tracks are named by id and resolved here, through the track store (the path a player gets is the one the store
computes, never one read from a file); the player process mixes and plays them and reports back.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from lofi_engine.playback.entry import player_main
from lofi_engine.service.child_link import ChildLink
from lofi_engine.service.dispatcher import EventDispatcher
from lofi_engine.shared.errors import INVALID_PARAMS, NOT_PLAYING, PLAYBACK_FAILED, PLAYER_UNAVAILABLE, TRACK_NOT_FOUND, LofiError
from lofi_engine.shared.protocol import PLAYER_STATE, PlayerCommand
from lofi_engine.shared.settings import VOLUME_RANGE, Settings
from lofi_engine.store.tracks import TrackCache

STATE_AFTER = {"stop": {"state": "stopped", "track_id": None}, "pause": {"state": "paused"}, "resume": {"state": "playing"}}
"""What the state is once the player has a command (play sets its own: the tracks it starts)."""
MAX_PLAYLIST = 200
"""Tracks a playlist may list (a track listed twice is held once, decoded)."""
MAX_INFOS = 64
"""Tracks whose prompt and length are remembered (a playlist, or the radio's rotation, is shorter)."""
STOPPED = {"state": "stopped", "track_id": None, "position_sec": 0.0, "playlist": []}
log = logging.getLogger("lofi.service")


class Playback:
    def __init__(
        self, python: str | None, log_path: Path, events: EventDispatcher, lock: Any, config: Callable[[], Settings], cache: Callable[[], TrackCache]
    ) -> None:
        """``lock``: the service's lock, taken around what the player process reports; ``config()`` and ``cache()``
        give the service's current settings and track store."""
        self._config = config
        self._cache = cache
        self.radio_loop = False  # the radio loops its rotation whatever the setting says
        self.loop_request: bool | None = None  # set by a `playlist_loop` request; until then the setting
        self.volume: float | None = None  # set by a `volume` request; until then the setting
        self.listener: Callable[[str, dict[str, Any]], None] | None = None  # the radio, told what plays
        self.taking_over: Callable[[], bool] | None = None  # ends the radio (for a play or stop request): whether it was on
        self._shown: tuple[dict[str, Any], float] | None = None  # the last playback_state sent, and when
        self._infos: dict[str, dict[str, Any]] = {}
        self._seq = 0  # commands sent
        self._asked_at = 0  # the seq of the last command that set the state: earlier state reports are stale  # what the tracks sent to the player are (prompt, duration)
        self._events = events
        self._lock = lock
        self._link = ChildLink("player", player_main, python, log_path, self._on_event, self._on_exit)
        self.state: dict[str, Any] = dict(STOPPED)

    def handlers(self) -> dict[str, Callable[[dict], Any]]:
        """The requests this answers. Those that act on what plays (pause, resume, toggle, skip, seek) answer
        NOT_PLAYING when nothing does; each answer says what it acted on, for the client to show."""
        config, cache = self._config, self._cache

        def send(name: str, params: dict | None = None) -> dict[str, Any]:
            """The command goes to the player; its effect arrives as events (and in `playback`)."""
            self._send(PlayerCommand(name, params or {}), config())
            return {"sent": name}

        def on_playing(name: str, params: dict | None = None) -> dict[str, Any]:
            playing = self.now_playing()
            if playing is None:
                raise LofiError(NOT_PLAYING, f"nothing is playing to {name}")
            return {**send(name, params), **playing}

        def play(p: dict) -> dict[str, Any]:
            store = cache()
            ids = p.get("track_ids") if "track_ids" in p else [p["track_id"]] if p.get("track_id") is not None else None
            if ids is None:
                newest = store.tracks()
                if not newest:
                    raise LofiError(TRACK_NOT_FOUND, "no track yet: generate one first")
                ids = [newest[0]["track_id"]]
            tracks = [self._track(store, tid) for tid in _id_list(ids)]
            if self.taking_over is not None:
                self.taking_over()  # a track chosen by hand ends the radio
            result = send("play", {"tracks": tracks})
            # What was asked, until the player reports: the tracks are taken from now on (not deletable).
            self.state = {**STOPPED, "state": "starting", "track_id": tracks[0]["track_id"], "playlist": [t["track_id"] for t in tracks],
                          "info": tracks[0]["info"]}
            store.touch(tracks[0]["track_id"])
            return {**result, "track_id": tracks[0]["track_id"], **tracks[0]["info"]}

        def enqueue(p: dict) -> dict[str, Any]:
            """Play it now when nothing plays, else after the playlist (what autoplay does with a new track)."""
            if self.now_playing() is None:
                return play(p)
            tracks = [self._track(cache(), tid) for tid in self._room_for(_id_list(_one_or_more(p)))]
            return {**send("add", {"tracks": tracks}), "track_id": tracks[0]["track_id"], "queued": True, **tracks[0]["info"]}

        def stop(p: dict) -> dict[str, Any]:
            was = self.now_playing()
            if self.taking_over is not None and self.taking_over():  # the radio stopped, and its music with it
                return {"sent": "stop", "was": was}
            if self._link.alive:
                send("stop")
            return {"sent": "stop", "was": was}

        def volume(p: dict) -> dict[str, Any]:
            """``level`` sets it (0 to 100); ``change`` moves it by that much, stopping at 0 and 100."""
            lo, hi = VOLUME_RANGE
            level, change = p.get("level"), p.get("change")
            if (level is None) == (change is None):
                raise LofiError(INVALID_PARAMS, f"volume needs level (from {lo} to {hi}) or change (like +10 or -10)")
            number = level if change is None else change
            if not _finite(number):
                raise LofiError(INVALID_PARAMS, f"volume {'level' if change is None else 'change'} must be a number ({lo} to {hi}, or a change like +10), not {number!r}")
            if change is None and not lo <= level <= hi:
                raise LofiError(INVALID_PARAMS, f"volume level must be a number from {lo} to {hi}, not {level!r}")
            wanted = float(level) if change is None else self.level() + float(change)
            self.volume = float(min(hi, max(lo, wanted)))
            return {**send("settings", {"volume": self.volume}), "volume": round(self.volume), "limited": self.volume != wanted}

        def loop(p: dict) -> dict[str, Any]:
            if not isinstance(p.get("enabled"), bool):
                raise LofiError(INVALID_PARAMS, "playlist_loop needs enabled: true or false")
            self.loop_request = p["enabled"]
            return {**send("settings", {"loop": self.radio_loop or p["enabled"]}), "loop": p["enabled"]}

        def shuffle(p: dict) -> dict[str, Any]:
            enabled = p.get("enabled", not self.state.get("shuffle", False))
            if not isinstance(enabled, bool):
                raise LofiError(INVALID_PARAMS, "shuffle takes enabled: true or false (none: turn it over)")
            if self.radio_loop:
                raise LofiError(INVALID_PARAMS, "the radio plays its pieces in the order they are made: shuffle is for a playlist")
            return {**send("shuffle", {"enabled": enabled}), "shuffle": enabled}

        def seek(p: dict) -> dict[str, Any]:
            """``to`` seconds from the start of the track, or ``by`` seconds from where it is (negative: back)."""
            to, by = p.get("to"), p.get("by")
            if (to is None) == (by is None) or not _finite(to if by is None else by) or (to is not None and to < 0):
                raise LofiError(INVALID_PARAMS, "seek needs to (seconds from the start, at least 0) or by (seconds, + or -)")
            playing = self.now_playing()
            if playing is None:
                raise LofiError(NOT_PLAYING, "nothing is playing to seek in")
            duration = playing.get("duration_sec") or 0.0
            target = float(to) if by is None else playing["position_sec"] + float(by)
            target = min(max(0.0, target), duration)
            answer = on_playing("seek", {"to": target})
            self._asked_at = self._seq  # where it plays from now on, whatever reports were on their way
            self.state = {**self.state, "position_sec": target}
            self._show_state()
            return {**answer, "position_sec": round(target, 2)}

        def toggle(p: dict) -> dict[str, Any]:
            return on_playing("resume" if self.state["state"] == "paused" else "pause")

        return {
            "play": play,
            "enqueue": enqueue,
            "pause": lambda p: on_playing("pause"),
            "resume": lambda p: on_playing("resume"),
            "toggle": toggle,
            "stop": stop,
            "skip": lambda p: on_playing("skip"),
            "seek": seek,
            "shuffle": shuffle,
            "volume": volume,
            "playlist_loop": loop,
            "playlist_add": lambda p: send("add", {"tracks": [self._track(cache(), tid) for tid in self._room_for(_id_list(_one_or_more(p)))]}),
            "playlist_remove": lambda p: send("remove", {"track_id": _checked_id(p.get("track_id"))}),
            "playlist_clear": lambda p: send("clear"),
            "playback": lambda p: self.status(),
            "now_playing": lambda p: self.now_playing() or {"state": "stopped"},
        }

    def _room_for(self, ids: list[str]) -> list[str]:
        """``ids`` when the playlist has room for them (at most :data:`MAX_PLAYLIST`), else INVALID_PARAMS."""
        held = len(self.state.get("playlist") or [])
        if held + len(ids) > MAX_PLAYLIST:
            raise LofiError(INVALID_PARAMS, f"a playlist holds at most {MAX_PLAYLIST} tracks: it has {held}, adding {len(ids)} is too many")
        return ids

    def now_playing(self) -> dict[str, Any] | None:
        """What plays (or is paused or starting): track_id, state, prompt, position_sec, duration_sec, volume, radio;
        None when nothing does."""
        state = self.state
        if state.get("state") == "stopped" or state.get("track_id") is None:
            return None
        info = state.get("info") or self._infos.get(state["track_id"], {})
        return {
            "track_id": state["track_id"], "state": state["state"], "prompt": info.get("prompt"),
            "position_sec": state.get("position_sec", 0.0), "duration_sec": state.get("duration_sec") or info.get("duration_sec"),
            "volume": round(self.level()), "radio": bool(info.get("radio")),
        }

    # ---- for a piece played while it is composed ----------------------------------------------------------------

    def start_open(self, entry: dict[str, Any]) -> None:
        """The first chunk of a piece being composed, as a track that grows: now when nothing plays, else after the
        playlist."""
        store = self._cache()
        entry = {**entry, "info": {**entry.get("info", {})}}
        if self.now_playing() is None:
            self._send(PlayerCommand("play", {"tracks": [entry]}), self._config())
            self.state = {**STOPPED, "state": "starting", "track_id": entry["track_id"], "playlist": [entry["track_id"]], "info": entry["info"]}
        else:
            self._send(PlayerCommand("add", {"tracks": [entry]}), self._config())
        store.touch(entry["track_id"])

    def extend(self, track_id: str, paths: list[str]) -> None:
        self._send(PlayerCommand("extend", {"tracks": [{"track_id": track_id, "path": path} for path in paths]}), self._config())

    def close_open(self, track_id: str) -> None:
        self._send(PlayerCommand("close", {"track_id": track_id}), self._config())

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

    def set_radio_loop(self, enabled: bool) -> None:
        """The radio's rotation loops while it plays; after it, the setting (or the last request) again."""
        self.radio_loop = enabled
        if self._link.alive:
            self._send(PlayerCommand("settings", self._levels(self._config())), self._config())

    def apply_settings(self) -> None:
        """New player settings from setup(): they replace what requests set, and reach the playing player now."""
        self.volume = self.loop_request = None
        if self._link.alive:
            self._send(PlayerCommand("settings", self._levels(self._config())), self._config())

    def level(self) -> float:
        """The volume now: the last `volume` request's, else the setting's."""
        return self._config().player.volume if self.volume is None else self.volume

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

    def _levels(self, settings: Settings) -> dict[str, Any]:
        loop = settings.player.playlist_loop if self.loop_request is None else self.loop_request
        return {**settings.player.levels(), "volume": self.level(), "loop": self.radio_loop or loop}

    def _send(self, command: PlayerCommand, settings: Settings) -> None:
        if command.name == "play":
            self._infos = {}
        for track in command.params.get("tracks", []):
            self._infos[track["track_id"]] = track.get("info", {})
        for old in list(self._infos)[: max(0, len(self._infos) - MAX_INFOS)]:
            del self._infos[old]
        argv = settings.player.player_argv
        if shutil.which(argv[0]) is None:
            raise LofiError(PLAYER_UNAVAILABLE, f"the player {argv[0]} is not installed: install mpv (or set player_command) to hear tracks")
        timeout = settings.engine.stall_timeout_sec
        self._seq += 2
        if command.name == "play":  # the caller sets the state: the tracks it starts
            self._asked_at = self._seq
        changes = STATE_AFTER.get(command.name)
        if changes is not None and (command.name in ("stop", "play") or self.state.get("track_id") is not None):
            # what the state is from now on, whatever reports were on their way (a second toggle sees the first)
            self._asked_at = self._seq
            self.state = {**self.state, **changes}
            self._show_state()
        try:  # the levels first, every time: a player started now (or restarted) gets them before the command
            self._link.send(PlayerCommand("settings", self._levels(settings), self._seq - 1), {"command": argv}, timeout)
            self._link.send(PlayerCommand(command.name, command.params, self._seq), {"command": argv}, timeout)
        except (OSError, ValueError) as exc:
            raise LofiError(PLAYBACK_FAILED, f"the player process could not be reached: {exc}") from None

    def _on_event(self, name: str, fields: dict[str, Any]) -> None:
        with self._lock:
            if name == PLAYER_STATE:
                if fields.get("seq", 0) < self._asked_at:
                    return  # said before it had the last pause, resume, play or stop
                self.state = fields
                self._show_state()
                return
            if name in ("playback_pause", "playback_resume") and self.state.get("track_id") == fields.get("track_id"):
                self.state = {**self.state, "state": "paused" if name == "playback_pause" else "playing"}  # before its report
            self._events.emit(name, fields)
            if self.listener is not None:
                self.listener(name, fields)

    def _show_state(self) -> None:
        """`playback_state` when what plays, its state, the volume, loop or shuffle changed, or the position moved
        other than with the clock (a seek, a stall): clients follow the position between events themselves."""
        now = time.monotonic()
        shown = {**(self.now_playing() or {"state": "stopped", "track_id": None, "volume": round(self.level())}),
                 "loop": self.state.get("loop"), "shuffle": bool(self.state.get("shuffle")),
                 "playlist_length": len(self.state.get("playlist") or [])}
        if self._shown is not None:
            last, at = self._shown
            expected = (last.get("position_sec") or 0.0) + (now - at if last["state"] == "playing" else 0.0)
            same = all(shown.get(k) == last.get(k) for k in shown if k != "position_sec")
            if same and abs((shown.get("position_sec") or 0.0) - expected) < 1.5:
                return
        self._shown = (shown, now)
        self._events.emit("playback_state", {k: v for k, v in shown.items() if v is not None or k == "track_id"})

    def _on_exit(self, process: multiprocessing.process.BaseProcess) -> None:
        with self._lock:
            if not self._link.crashed(process):
                return
            playing = self.state.get("track_id")
            self.state = dict(STOPPED)
            self._show_state()
            if playing is not None:
                why = "stopped responding" if self._link.stalled(process) else f"crashed (exit code {process.exitcode})"
                self._events.emit("playback_end", {"track_id": playing, "reason": "error", "code": PLAYBACK_FAILED, "message": f"the player process {why}"})


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _one_or_more(params: dict) -> Any:
    return params.get("track_ids") if "track_ids" in params else [params.get("track_id")]


def _id_list(ids: Any) -> list[str]:
    if not isinstance(ids, list) or not ids:
        raise LofiError(INVALID_PARAMS, "track_ids must be a non-empty list of track ids")
    if len(ids) > MAX_PLAYLIST:
        raise LofiError(INVALID_PARAMS, f"a playlist holds at most {MAX_PLAYLIST} tracks, not {len(ids)}")
    return [_checked_id(tid) for tid in ids]


def _checked_id(track_id: Any) -> str:
    if not isinstance(track_id, str):
        raise LofiError(INVALID_PARAMS, f"track_id must be a track id (16 hex characters), not {track_id!r}")
    return track_id
