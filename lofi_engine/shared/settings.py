"""The engine's settings: one schema for the CLI's flags, the RPC's parameters and the Lua `setup()` options."""

from __future__ import annotations

import argparse
import numbers
import os
import shlex
import sys
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lofi_engine.shared.errors import INVALID_PARAMS, LofiError

BACKENDS = ("musicgen", "ace-step")
DURATION_LIMITS = {"musicgen": (5.0, 120.0), "ace-step": (10.0, 240.0)}
"""Seconds of audio each backend makes: MusicGen stitches 30 s windows, ACE-Step composes the whole piece at once."""
DEFAULT_DURATION_SEC = 30.0
PRIORITIES = ("normal", "high")
MAX_PENDING = 10
"""Jobs that may wait behind the running one (FR-021)."""
VARIANTS = ("small", "small-int8", "small-fp16", "small-int4")
DEVICES = ("auto", "cpu", "cuda", "metal")
DECODER_FORMS = ("auto", "merged", "split")
ACE_STEP_VARIANTS = ("fp32", "int8")
RADIO_STRATEGIES = ("continue", "same_prompt", "preset_cycle", "random_preset")


def _user_dir(xdg_variable: str, posix_default: str, darwin_default: str) -> Path:
    if os.environ.get(xdg_variable):
        base = Path(os.environ[xdg_variable])
    elif sys.platform == "darwin":
        base = Path.home() / darwin_default
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path.home() / posix_default
    return base / "lofi.nvim"


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/lofi.nvim` or the platform's user cache directory."""
    return _user_dir("XDG_CACHE_HOME", ".cache", "Library/Caches")


def default_state_dir() -> Path:
    """`$XDG_STATE_HOME/lofi.nvim` (logs) or the platform's equivalent."""
    return _user_dir("XDG_STATE_HOME", ".local/state", "Library/Logs")


@dataclass
class EngineConfig:
    backend: str = field(
        default="musicgen",
        metadata={"help": "the backend a request uses when it names none: musicgen (5–120 s) or ace-step (10–240 s, 48 kHz stereo)", "choices": BACKENDS},
    )
    variant: str | None = field(
        default=None,
        metadata={
            "help": "model variant: small (fp32, the default), small-int8 (smaller, ≈ 2× faster on a CPU), small-fp16 "
            "(the default with --device cuda or metal) or small-int4 (4-bit weights made locally from small's files; CPU)",
            "choices": VARIANTS,
        },
    )
    model_dir: Path | None = field(
        default=None, metadata={"help": "a directory of model files laid out like the Hub's; skips the download"}
    )
    ace_step_model_dir: Path | None = field(
        default=None,
        metadata={"help": "an ACE-Step export (its manifest.json and ONNX files; default: cache_dir/models/ace-step)"},
    )
    ace_step_variant: str = field(
        default="fp32", metadata={"help": "ACE-Step weights: fp32, or int8 (weight-only for the encoders and the DiT: 4.1 GB of weights instead of 11.5 GB)", "choices": ACE_STEP_VARIANTS}
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or metal", "choices": DEVICES})
    threads: int | None = field(default=None, metadata={"help": "CPU threads for inference (default: all cores)"})
    decoder: str = field(
        default="auto", metadata={"help": "decoder form: merged file, split pair, or auto (merged when present)", "choices": DECODER_FORMS}
    )
    cache_dir: Path = field(default_factory=default_cache_dir, metadata={"help": "where tracks are kept"})
    cache_max_bytes: int = field(default=2 * 1024**3, metadata={"help": "cache size limit in bytes (least recently played go first)"})
    optimized_cache: bool = field(
        default=True,
        metadata={"help": "keep ONNX Runtime's optimized model in cache_dir/optimized: loads ≈ 2× faster, ≈ 3.5 GB of disk for small (true/false)"},
    )
    stall_timeout_sec: float = field(
        default=60.0,
        metadata={"help": "seconds a busy engine may go without a sign of life (it sends one a second) before it is restarted and the job in flight fails"},
    )
    player_command: str = field(
        default="mpv --no-config --really-quiet --no-video --no-terminal",
        metadata={"help": "the audio player and its options (split like a shell would, never run by one); it is fed the mixed stream on its standard input"},
    )
    crossfade_sec: float = field(default=2.0, metadata={"help": "seconds consecutive tracks overlap (0: none; shortened for very short tracks)"})
    playlist_loop: bool = field(default=True, metadata={"help": "start the playlist over at its end; one track loops, its tail crossfaded into its head (true/false)"})
    volume: int = field(default=100, metadata={"help": "playback volume, 0 to 100"})
    radio_window_sec: float = field(
        default=15.0,
        metadata={"help": "radio (continue): seconds of music a window composes, its context included (measured: with 5 s of context, 15 s windows cost the least compute per second of music and answer a steer sooner; see README, Performance)"},
    )
    radio_context_sec: float = field(default=5.0, metadata={"help": "radio (continue): seconds of the piece so far each window continues"})
    radio_piece_sec: float = field(default=30.0, metadata={"help": "radio (same_prompt, preset_cycle, random_preset): seconds a piece lasts"})

    def __post_init__(self) -> None:
        if self.variant is None:
            self.variant = "small-fp16" if self.device in ("cuda", "metal") else "small"
        for f in fields(self):
            value = getattr(self, f.name)
            choices = f.metadata.get("choices")
            if choices and value not in choices:
                raise LofiError(INVALID_PARAMS, f"{f.name} must be one of {', '.join(choices)}, not {value!r}")
        if self.threads is not None and (not _is_int(self.threads) or self.threads < 1):
            raise LofiError(INVALID_PARAMS, f"threads must be a positive integer, not {self.threads!r}")
        if not isinstance(self.optimized_cache, bool):
            raise LofiError(INVALID_PARAMS, f"optimized_cache must be true or false, not {self.optimized_cache!r}")
        if isinstance(self.stall_timeout_sec, bool) or not isinstance(self.stall_timeout_sec, numbers.Real) or not 1 <= self.stall_timeout_sec <= 86400:
            raise LofiError(INVALID_PARAMS, f"stall_timeout_sec must be a number of seconds from 1 to 86400, not {self.stall_timeout_sec!r}")
        if not isinstance(self.crossfade_sec, numbers.Real) or isinstance(self.crossfade_sec, bool) or not 0 <= self.crossfade_sec <= 30:
            raise LofiError(INVALID_PARAMS, f"crossfade_sec must be a number of seconds from 0 to 30, not {self.crossfade_sec!r}")
        window, context, piece = self.radio_window_sec, self.radio_context_sec, self.radio_piece_sec
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (window, context, piece)) or not (
            1 <= context < window <= 30 and 5 <= piece <= 240
        ):
            raise LofiError(
                INVALID_PARAMS,
                f"radio_context_sec must be at least 1 and less than radio_window_sec (at most 30), radio_piece_sec from 5 to 240; not {context!r}, {window!r}, {piece!r}",
            )
        if not isinstance(self.playlist_loop, bool):
            raise LofiError(INVALID_PARAMS, f"playlist_loop must be true or false, not {self.playlist_loop!r}")
        if not _is_int(self.volume) or not 0 <= self.volume <= 100:
            raise LofiError(INVALID_PARAMS, f"volume must be an integer from 0 to 100, not {self.volume!r}")
        try:
            command = shlex.split(self.player_command) if isinstance(self.player_command, str) else []
        except ValueError:
            command = []
        if not command:
            raise LofiError(INVALID_PARAMS, f"player_command must name a player, like \"mpv --no-video\", not {self.player_command!r}")
        if not _is_int(self.cache_max_bytes) or self.cache_max_bytes < 0:
            raise LofiError(INVALID_PARAMS, f"cache_max_bytes must be a non-negative integer, not {self.cache_max_bytes!r}")
        for name in ("model_dir", "ace_step_model_dir", "cache_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                if not isinstance(value, str) or not value.strip():
                    raise LofiError(INVALID_PARAMS, f"{name} must be a path, not {value!r}")
                value = Path(value)
            if value is not None:
                setattr(self, name, value.expanduser().resolve())

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "EngineConfig":
        """From RPC parameters or the Lua options; unknown keys are an error, not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise LofiError(INVALID_PARAMS, f"unknown setting {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**{k: v for k, v in values.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One `--flag` per setting, named after the field."""
        for f in fields(cls):
            kind = {
                "threads": int, "cache_max_bytes": int, "optimized_cache": _boolean, "stall_timeout_sec": float,
                "crossfade_sec": float, "playlist_loop": _boolean, "volume": int,
                "radio_window_sec": float, "radio_context_sec": float, "radio_piece_sec": float,
            }.get(f.name, str)
            default = f.default if f.default is not MISSING else None
            parser.add_argument(
                "--" + f.name.replace("_", "-"),
                dest=f.name,
                type=kind,
                default=None,
                choices=f.metadata.get("choices"),
                help=f.metadata["help"] + (f" (default: {default})" if default is not None else ""),
            )

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> "EngineConfig":
        """With ``--backend ace-step``, ``--model-dir`` names the ACE-Step export (unless --ace-step-model-dir does)."""
        values = {f.name: getattr(args, f.name) for f in fields(cls)}
        if values["backend"] == "ace-step" and values["model_dir"] is not None and values["ace_step_model_dir"] is None:
            values["ace_step_model_dir"], values["model_dir"] = values["model_dir"], None
        return cls.from_dict(values)

    @property
    def ace_step_dir(self) -> Path:
        """Where the ACE-Step export is read from."""
        return self.ace_step_model_dir or self.cache_dir / "models" / "ace-step"

    @property
    def player_argv(self) -> list[str]:
        """The player command as a program and its arguments (no shell)."""
        return shlex.split(self.player_command)

    @property
    def optimized_dir(self) -> Path | None:
        """Where ONNX Runtime's optimized models are kept, or None when that is turned off."""
        return self.cache_dir / "optimized" if self.optimized_cache else None


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "yes", "1", "on"):
        return True
    if text.lower() in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
