"""The radio: music until it is stopped, composed while it plays.

``continue`` (MusicGen): one endless piece. The engine composes it window by window (``RadioWindowJob``, one per
window, so other requests still get their turn between windows); each window's audio joins the last one exactly
(the player plays a segment right after the one it continues, without a fade). ``same_prompt``,
``preset_cycle``, ``random_preset`` (either backend): separate pieces, cached as tracks, joined by the player's
crossfade. Whatever the strategy, the player loops what has been made so far (the rotation) and each new piece
or segment goes in right after the one playing: when generation is slower than playback the music never stops,
it repeats, and the mode says so.
"""

from __future__ import annotations

import logging
import random
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lofi_engine.service.dispatcher import EventDispatcher
from lofi_engine.service.keep_up import TOO_SLOW, too_slow_advice
from lofi_engine.service.live_play import LivePlay
from lofi_engine.service.playback import Playback
from lofi_engine.shared.errors import CANCELLED, INVALID_PARAMS, INVALID_PROMPT, WRITE_FAILED, LofiError
from lofi_engine.shared.protocol import RadioWindowJob
from lofi_engine.shared.music import MUSIC_PARAMS
from lofi_engine.shared.request import MAX_SEED, GenerateRequest
from lofi_engine.shared.settings import RADIO_STRATEGIES, Settings

log = logging.getLogger("lofi.service")

MAX_ROTATION = 8
"""Pieces or segments kept in the rotation; older ones leave it (bounded memory however long it runs)."""
STALE_SEC = 3600.0
AHEAD = 2
"""Pieces or segments composed ahead of the one playing: enough for the next join, no more (the radio composes as
it plays, not in advance)."""
RADIO_PARAMS = ("prompt", "strategy", "presets", "backend", "seed", "from", *MUSIC_PARAMS)
WAITING_FOR_DISK = "waiting for disk space"
RETRY_MAX_SEC = 60.0


@dataclass
class RadioSession:
    strategy: str
    prompts: list[str]
    backend: str
    seed: int
    music: dict[str, Any] = field(default_factory=dict)
    """Tempo, key and time signature asked for (every window or piece has them)."""
    source: str | None = None
    """continue: the audio file the stream goes on from (the user's own music, or a track's WAV)."""
    source_given: str | None = None
    """What the request named as ``from`` (a path or a track id), for the radio's state."""
    stream_id: str = field(default_factory=lambda: secrets.token_hex(8))
    prompt: str = ""
    made: int = 0
    jobs: int = 0
    """continue: windows asked for (each writes a file of its own, named by this count)."""
    windows: int = 0
    """continue: where the stream goes on from, in windows (a steer goes back over the windows not heard yet)."""
    window_of: dict[str, int] = field(default_factory=dict)
    """continue: the stream window each segment in the rotation holds."""
    dropped: list[str] = field(default_factory=list)
    """continue: segments a steer dropped before they were heard, whose files go with the next one to leave the rotation."""
    expected: str | None = None
    """continue: the file the window in flight writes (a window that finished after a steer withdrew it is dropped)."""
    rotation: list[str] = field(default_factory=list)
    """Ids of the pieces or segments in the player's rotation, oldest first."""
    waiting: str | None = None
    """The track id of the piece being composed (piece strategies)."""
    composing: bool = False
    """A window or piece is queued or being composed."""
    heard: set[str] = field(default_factory=set)
    """The pieces or segments that have started playing."""
    live: LivePlay | None = None
    """continue: the first window, heard while it is composed (as a `generate {play: true}` piece is)."""
    mode: str = "starting"
    realtime_factor: float | None = None
    failures: int = 0
    """Windows or pieces that failed in a row (the wait before the next try grows with them)."""


class Radio:
    def __init__(
        self,
        config: Callable[[], Settings],
        playback: Playback,
        events: EventDispatcher,
        submit: Callable[[RadioWindowJob], None],
        withdraw: Callable[[str], None],
        generate: Callable[[dict[str, Any]], dict[str, Any]],
        cancel: Callable[[str], None],
        schedule: Callable[[float, Callable[[], None]], None],
        audio_source: Callable[[str], tuple[Path, str | None]],
        model_version: Callable[[Any, str], str],
    ) -> None:
        """``submit(job)`` queues a window; ``withdraw(stream_id)`` drops its queued window and stops a running one;
        ``generate(params)`` queues a piece like a `generate` request; ``cancel(track_id)`` cancels one;
        ``schedule(delay, fn)`` runs ``fn`` later, under the service's lock; ``audio_source(path or track id)`` is the
        audio file a stream may go on from, and the track's prompt when it is a track (INVALID_AUDIO or
        TRACK_NOT_FOUND otherwise); ``model_version(config, backend)``: the model the engine that runs it has (MODEL_NOT_FOUND when
        none)."""
        self._config = config
        self._playback = playback
        self._events = events
        self._submit = submit
        self._withdraw = withdraw
        self._generate = generate
        self._cancel = cancel
        self._schedule = schedule
        self._audio_source = audio_source
        self._model_version = model_version
        self.session: RadioSession | None = None
        self._told_slow: set[tuple[str, str]] = set()  # (variant, device) whose slowness the user was told of

    # ---- requests ---------------------------------------------------------------------------------------------

    def handlers(self) -> dict[str, Callable[[dict], Any]]:
        return {"radio_start": self.start, "radio_stop": lambda p: self.stop(), "radio_steer": self.steer, "radio": lambda p: self.status()}

    def start(self, params: dict[str, Any]) -> dict[str, Any]:
        """Start the radio (or, when it plays, steer it to a new prompt: the same as `radio_steer`)."""
        unknown = sorted(str(k) for k in params if k not in RADIO_PARAMS)
        if unknown:
            raise LofiError(INVALID_PARAMS, f"unknown parameter {', '.join(unknown)} for radio_start; known: {', '.join(RADIO_PARAMS)}")
        # Everything is checked before anything changes: a refused start leaves the radio as it was.
        strategy = params.get("strategy")
        if strategy is not None and strategy not in RADIO_STRATEGIES:
            raise LofiError(INVALID_PARAMS, f"strategy must be one of {', '.join(RADIO_STRATEGIES)}, not {strategy!r}")
        source, source_prompt = self._source(params.get("from"), strategy)
        prompts = self._prompts({"prompt": source_prompt, **{k: v for k, v in params.items() if v is not None}}, strategy)
        # The request parser owns the backend and seed rules (a bad seed is refused, never replaced).
        given = {k: params[k] for k in ("seed", "backend", *MUSIC_PARAMS) if params.get(k) is not None}
        first = GenerateRequest.parse({"prompt": prompts[0], **given}, self._config().engine.backend)
        strategy = strategy or ("continue" if first.backend == "musicgen" else "same_prompt")
        if strategy == "continue" and first.backend != "musicgen":
            raise LofiError(INVALID_PARAMS, "the continue strategy needs musicgen; use same_prompt, preset_cycle or random_preset with ace-step")
        if source is not None and first.backend != "musicgen":
            raise LofiError(INVALID_PARAMS, "from needs musicgen: the radio continues your audio with MusicGen's continue strategy")
        if self.session is not None and self.session.strategy == strategy == "continue" and params.get("prompt") and source is None:
            return self.steer({"prompt": prompts[0]})
        if first.backend != "musicgen":
            self._model_version(self._config().engine, first.backend)  # a missing ACE-Step export is refused now, not at the first piece
        self.stop()
        self.session = RadioSession(
            strategy, prompts, first.backend, first.seed, first.music.given(), str(source) if source is not None else None, params.get("from")
        )
        self._playback.set_radio_loop(True)  # the rotation: what has been made plays on until the next piece is ready
        try:
            self._next()
        except LofiError:
            self.session = None
            self._playback.set_radio_loop(False)
            raise
        self._state()
        return self.status()

    def steer(self, params: dict[str, Any]) -> dict[str, Any]:
        """A new prompt from the next window (continue) or the next piece on, without a cut."""
        if self.session is None:
            raise LofiError(INVALID_PARAMS, "the radio is not playing; start it with radio_start")
        prompt = self._check_prompt(params.get("prompt"))
        s = self.session
        s.prompts = [prompt]
        s.prompt = prompt
        heard = [r for r in s.rotation if r in s.heard]
        if s.strategy == "continue" and heard:
            # Heard within a window or so: what was composed ahead with the old prompt and not heard yet goes, and the
            # stream goes on from the end of the segment playing, with the new prompt.
            for gone in [r for r in s.rotation if r not in s.heard]:
                s.rotation.remove(gone)
                self._playback.leave_rotation(gone)
                s.dropped.append(gone)  # its file goes later: the player may still be reading it
            s.windows = s.window_of[heard[-1]] + 1
            self._withdraw(s.stream_id)
            s.composing, s.expected = False, None
            self._next()
        self._state()
        return self.status()

    def stop(self) -> dict[str, Any]:
        """Stop the music and the generation in flight at once."""
        session, self.session = self.session, None
        if session is None:
            return {"active": False}
        if session.strategy == "continue":
            self._withdraw(session.stream_id)
        elif session.waiting is not None:
            try:
                self._cancel(session.waiting)
            except LofiError:
                pass
        self._playback.stop_now()
        self._playback.set_radio_loop(False)
        shutil.rmtree(self._folder(session), ignore_errors=True)
        self._events.emit("radio_state", {"active": False, "mode": "stopped"})
        return {"active": False}

    def status(self) -> dict[str, Any]:
        s = self.session
        if s is None:
            return {"active": False, "mode": "stopped"}
        return {
            "active": True, "mode": s.mode, "strategy": s.strategy, "prompt": s.prompt, "stream_id": s.stream_id,
            "realtime_factor": s.realtime_factor, "pieces": s.made, **s.music, **({"from": s.source_given} if s.source_given else {}),
        }

    # ---- what the engine reports ----------------------------------------------------------------------------------

    def on_event(self, name: str, fields: dict[str, Any]) -> None:
        s = self.session
        if s is None:
            return
        heard_now = fields.get("track_id") in s.rotation or (s.live is not None and s.live.playing(fields.get("track_id", "")))
        if name == "playback_start" and heard_now and fields["track_id"] not in s.heard:
            s.heard.add(fields["track_id"])
            self._next()
        elif name == "radio_chunk" and fields["stream_id"] == s.stream_id and fields["segment_path"] == s.expected and s.made == 0:
            self._first_window_chunk(fields)
        elif name == "radio_segment" and fields["stream_id"] == s.stream_id and fields["path"] != s.expected:
            Path(fields["path"]).unlink(missing_ok=True)  # composed for a window a steer withdrew
        elif name == "radio_segment" and fields["stream_id"] == s.stream_id:
            s.expected = None
            piece_id = self._piece_id(s, fields["path"])
            s.window_of[piece_id] = s.windows
            s.windows += 1
            self._arrived(piece_id, {"path": fields["path"], "info": {"prompt": fields["prompt"], "radio": True}},
                          fields["generation_time_sec"] / max(fields["duration_sec"], 1e-9), continues=not fields.get("restarted"))
        elif name == "radio_error" and fields["stream_id"] == s.stream_id and fields["code"] != CANCELLED:
            self._failed(fields)
        elif name == "generation_complete" and fields["track_id"] == s.waiting:
            s.waiting = None
            track = self._playback.track_of(fields["track_id"])
            self._arrived(fields["track_id"], track, fields["generation_time_sec"] / max(fields["duration_sec"], 1e-9), continues=False)
        elif name == "generation_error" and fields["track_id"] == s.waiting:
            s.waiting = None
            self._failed(fields)

    # ---- helpers ------------------------------------------------------------------------------------------------

    def _arrived(self, piece_id: str, track: dict[str, Any], realtime_factor: float, continues: bool) -> None:
        s = self.session
        assert s is not None
        entry = {**track, "track_id": piece_id}
        if continues and s.rotation:
            entry["follows"] = s.rotation[-1]
        playing = s.live is not None and s.live.playing(piece_id)
        if s.live is not None:  # the first window: when it plays already, the rest of it, and it is complete
            s.live.on_event("generation_complete", {"track_id": piece_id})
        if playing:
            pass
        elif s.made == 0:
            self._playback.play_now([entry])
        else:  # after the newest piece when it has not played yet (order kept), else next
            newest = s.rotation[-1] if s.rotation and s.rotation[-1] not in s.heard else None
            self._playback.insert_next([entry], after=newest)
        s.made += 1
        s.composing = False
        s.failures = 0
        s.rotation.append(piece_id)
        if len(s.rotation) > MAX_ROTATION:
            gone = s.rotation.pop(0)
            self._playback.leave_rotation(gone)
            s.window_of.pop(gone, None)
            if s.strategy == "continue":  # the player holds what it plays: the file is no longer needed
                for old in [gone, *s.dropped]:
                    segment = self._segment_file(s, old)
                    for path in [segment, *segment.parent.glob(f"{segment.stem}.*.wav")]:  # with the chunks it was heard from
                        path.unlink(missing_ok=True)
                s.dropped.clear()
        s.realtime_factor = round(realtime_factor, 3)
        mode = "live" if realtime_factor < 1.0 else "rotation"
        changed = mode != s.mode
        s.mode = mode
        self._next()
        if changed:
            self._state()
        if mode == "rotation" and s.made > 1:  # the first piece pays for a cold start: judged from the second on
            self._tell_too_slow(realtime_factor)

    def _first_window_chunk(self, fields: dict[str, Any]) -> None:
        """2 s more of the first window: it starts playing (a track that grows) once the ETA says playing it from
        its start now stays behind its composing, by the rule of a `generate {play: true}` piece."""
        s = self.session
        assert s is not None
        if s.live is None:
            s.live = LivePlay(
                lambda entry: self._playback.play_now([entry]), self._playback.extend, self._playback.close_open,
                lambda piece_id: None,  # not started while composed: it plays when it arrives, as any window
                lambda piece_id, exc: self._events.emit("playback_end", {"track_id": piece_id, "reason": "error", **exc.to_dict()}),
            )
        piece_id = self._piece_id(s, fields["segment_path"])
        s.live.watch(piece_id, fields["window_sec"], {"prompt": s.prompt, "radio": True})
        s.live.on_event("generation_progress", {"track_id": piece_id, "eta_sec": fields["eta_sec"]})
        s.live.on_event("generation_chunk", {"track_id": piece_id, **{k: fields[k] for k in ("path", "start_sec", "duration_sec")}})

    def _tell_too_slow(self, realtime_factor: float) -> None:
        """Once per variant and device for this service: the measured speed and what would keep up."""
        engine = self._config().engine
        key = (engine.variant or "small", engine.device)
        if key in self._told_slow:
            return
        self._told_slow.add(key)
        self._events.emit("service_warning", {"code": TOO_SLOW, "message": too_slow_advice(*key, realtime_factor)})

    def _failed(self, fields: dict[str, Any]) -> None:
        """A window or piece failed: the music made so far plays on; the next try waits, longer after each failure in
        a row (1 s, 2 s, … up to a minute), so a full disk or a failing model does not spin a core. The mode says so
        (once, not at every try): "waiting for disk space" when the disk is full, else "error"."""
        s = self.session
        if s is None:
            return
        if s.made == 0:
            self._events.emit("radio_state", {**self._state_fields(), "mode": "error"})
            self.stop()  # nothing plays yet and nothing can: give up rather than retry forever
            return
        s.failures += 1
        mode = WAITING_FOR_DISK if fields.get("code") == WRITE_FAILED else "error"
        if mode != s.mode:
            s.mode = mode
            self._state()
        delay = min(RETRY_MAX_SEC, 2.0 ** (s.failures - 1))
        self._schedule(delay, lambda: self._retry(s))

    def _retry(self, session: RadioSession) -> None:
        if self.session is session:
            session.composing = False
            self._next()

    def _next(self) -> None:
        """Queue the next window or piece, unless one is on its way or enough are made ahead of what plays."""
        s = self.session
        assert s is not None
        if s.composing or sum(1 for r in s.rotation if r not in s.heard) >= AHEAD:
            return
        s.composing = True
        config = self._config()
        if s.strategy == "continue":
            s.prompt = s.prompts[0]
            request = GenerateRequest.parse({"prompt": s.prompt, "seed": s.seed, **s.music}, "musicgen")
            path = self._folder(s) / f"{s.jobs:06d}.wav"
            s.jobs += 1
            s.expected = str(path)
            self._submit(RadioWindowJob(
                s.stream_id, request, config.radio.radio_window_sec, config.radio.radio_context_sec, str(path), s.windows, chunks=s.made == 0,
                continue_from=s.source,
            ))
            return
        if s.strategy == "preset_cycle":
            s.prompt = s.prompts[s.made % len(s.prompts)]
        elif s.strategy == "random_preset":
            s.prompt = random.Random(s.seed + s.made).choice(s.prompts)
        else:
            s.prompt = s.prompts[0]
        reply = self._generate({"prompt": s.prompt, "duration_sec": config.radio.radio_piece_sec, "backend": s.backend, "seed": (s.seed + s.made) % (MAX_SEED + 1), **s.music})
        if reply["status"] == "cached":  # made before: it joins at once
            s.waiting = reply["track_id"]
            self.on_event("generation_complete", {"track_id": reply["track_id"], "generation_time_sec": 0.0, "duration_sec": config.radio.radio_piece_sec})
        else:
            s.waiting = reply["track_id"]

    def _source(self, given: object, strategy: str | None) -> tuple[Path | None, str | None]:
        """The audio file a ``from`` names (a path or a track id), and the track's prompt (the radio's, unless one is
        given); only the continue strategy goes on from audio."""
        if given is None:
            return None, None
        if not isinstance(given, str) or not given:
            raise LofiError(INVALID_PARAMS, f"from must be an audio file's path or a track id, not {given!r}")
        if strategy not in (None, "continue"):
            raise LofiError(INVALID_PARAMS, f"from goes with the continue strategy (one stream going on from your audio), not {strategy}")
        return self._audio_source(given)

    def _prompts(self, params: dict[str, Any], strategy: str | None) -> list[str]:
        if strategy in ("preset_cycle", "random_preset"):
            presets = params.get("presets")
            if not isinstance(presets, list) or not presets:
                raise LofiError(INVALID_PARAMS, f"the {strategy} strategy needs presets: a list of prompts")
            return [self._check_prompt(p) for p in presets]
        return [self._check_prompt(params.get("prompt"))]

    @staticmethod
    def _check_prompt(prompt: object) -> str:
        if prompt is None:
            raise LofiError(INVALID_PROMPT, "the radio needs a prompt describing the music")
        return GenerateRequest.parse({"prompt": prompt}).prompt

    @staticmethod
    def _piece_id(session: RadioSession, segment_path: str) -> str:
        return f"{session.stream_id}-{Path(segment_path).stem}"

    def _segment_file(self, session: RadioSession, piece_id: str) -> Path:
        return self._folder(session) / f"{int(piece_id.rsplit('-', 1)[1]):06d}.wav"

    def _folder(self, session: RadioSession) -> Path:
        return self.root() / session.stream_id

    def root(self) -> Path:
        return self._config().engine.cache_dir / "radio"

    def forget(self) -> None:
        """This radio's segment files, when the service closes with the radio on."""
        if self.session is not None:
            shutil.rmtree(self._folder(self.session), ignore_errors=True)

    def forget_stale(self) -> None:
        """Segment folders a crashed session left: a live radio writes into its folder every window, so one
        untouched for an hour belongs to nobody (another editor's live radio is left alone)."""
        cutoff = time.time() - STALE_SEC
        for folder in self.root().glob("*"):
            try:
                if folder.is_dir() and folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass

    def _state_fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.status().items() if v is not None}

    def _state(self) -> None:
        self._events.emit("radio_state", self._state_fields())
