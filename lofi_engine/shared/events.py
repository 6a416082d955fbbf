"""Every event the engine and the service send, declared once with its fields.

The engine process sends them over its pipe, the service passes them on (JSON-RPC notifications, the editor's
``lofi.on``), and the Lua side reads the same declarations from the generated ``lua/lofi/schema.lua``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lofi_engine.shared.music import MUSIC_PARAMS


@dataclass(frozen=True)
class EventSpec:
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    doc: str = ""


_MUSIC = MUSIC_PARAMS
_TRACK = ("track_id", "path", "duration_sec", "sample_rate", "prompt", "seed", "generation_time_sec", "model_version", "backend", "channels")

EVENTS: dict[str, EventSpec] = {
    spec.name: spec
    for spec in (
        EventSpec(
            "generation_start", ("track_id", "prompt", "duration_sec", "seed", "backend"), (*_MUSIC, "continue_from"),
            "the engine began a job (bpm, key, time_signature, continue_from: when asked for)"
        ),
        EventSpec(
            "generation_progress",
            ("track_id", "percent", "tokens_generated", "tokens_estimated", "eta_sec"),
            ("stage",),
            "every 5 % of a job; stage names ACE-Step's unit kind (dit, decode)",
        ),
        EventSpec("generation_chunk", ("track_id", "path", "start_sec", "duration_sec"), (), "playable audio before the track is done"),
        EventSpec("generation_complete", _TRACK, ("cached", "created_at", "last_played_at", "size_bytes", *_MUSIC, "continue_from"), "the track is written and cached"),
        EventSpec("generation_error", ("track_id", "code", "message"), (), "the job failed or was cancelled"),
        EventSpec(
            "model_load_progress",
            ("track_id", "file", "bytes_loaded", "bytes_total", "percent"),
            ("stage",),
            "model files checked (stage verify) or opened",
        ),
        EventSpec(
            "consent_required",
            ("variant", "what", "size_bytes", "files", "license"),
            ("track_id", "host"),
            "a job needs a download the user has not agreed to (variant: the model's, or encodec-32khz: EnCodec's weights, "
            "which continuing audio needs; what: it in words; host: the machine it goes to, when the engine runs elsewhere)",
        ),
        EventSpec(
            "download_progress",
            ("variant", "file", "bytes_downloaded", "bytes_total", "percent"),
            ("track_id", "what"),
            "bytes of the download so far (what: the model or EnCodec's weights, in words)",
        ),
        EventSpec(
            "service_warning",
            ("code", "message"),
            ("log_dir",),
            "something is wrong that did not stop the work, said once (log_dir: the logs moved there, the state folder "
            "cannot be written)",
        ),
        EventSpec("download_complete", ("variant", "path"), ("what",), "the download is complete (the model, or EnCodec's weights)"),
        EventSpec("download_error", ("variant", "code", "message"), (), "the download failed"),
        EventSpec(
            "radio_segment",
            ("stream_id", "path", "start_sec", "duration_sec", "prompt", "generation_time_sec"),
            ("restarted",),
            "the radio's endless stream has its next stretch of audio, continuing the last one exactly (restarted: the "
            "engine lost the stream, after a crash, and this starts it over: it follows with a crossfade)",
        ),
        EventSpec(
            "radio_chunk",
            ("stream_id", "segment_path", "path", "start_sec", "duration_sec", "eta_sec", "window_sec"),
            (),
            "2 s of the radio's first window while it is composed (its segment_path is the segment it becomes part of; "
            "eta_sec: until the window is done; window_sec: the audio it gives): the radio is heard before its first "
            "window is finished",
        ),
        EventSpec("radio_error", ("stream_id", "code", "message"), (), "a radio window failed (CANCELLED once the radio is stopped)"),
        EventSpec(
            "radio_state",
            ("active", "mode"),
            ("strategy", "prompt", "stream_id", "realtime_factor", "pieces", *_MUSIC, "from"),
            "the radio started, stopped, was steered, or changed mode: live (generation keeps up) or rotation",
        ),
        EventSpec(
            "playback_start", ("track_id",), ("prompt", "duration_sec", "backend", "radio"), "a track (or a radio segment) began to play (its crossfade in)"
        ),
        EventSpec("playback_pause", ("track_id",), (), "playback paused"),
        EventSpec(
            "playback_state",
            ("state", "track_id", "volume"),
            ("prompt", "position_sec", "duration_sec", "radio", "loop", "shuffle", "playlist_length"),
            "what plays changed (track, state, volume, loop, shuffle, playlist length) or its position jumped (seek, stall); the one "
            "view of the player that clients show (state: starting, playing, paused, stopped)",
        ),
        EventSpec("playback_resume", ("track_id",), (), "playback resumed"),
        EventSpec(
            "playback_end",
            ("track_id", "reason"),
            ("code", "message"),
            "a track stopped playing: reason finished, skipped, stopped or error (then code and message)",
        ),
    )
}


def event(name: str, fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(name, fields)`` after checking them against the declaration: a misspelt field is a bug, caught here."""
    spec = EVENTS[name]
    missing = [f for f in spec.required if f not in fields]
    unknown = [f for f in fields if f not in spec.required and f not in spec.optional]
    if missing or unknown:
        raise ValueError(f"event {name}: missing {missing}, unknown {unknown}")
    return name, fields
