"""The settings: one schema for the CLI's flags, the RPC's parameters and the Lua `setup()` options.

Three groups, by who reads them and what a change costs:

- :class:`EngineConfig`, the engine process's (model, device, threads, where tracks and graphs are kept): a change
  restarts the engine between jobs (and reloads the model);
- :class:`PlayerConfig`, the player's (command, volume, crossfade, loop): applied live;
- :class:`RadioConfig`, the radio's (window, context, piece lengths): used from the radio's next window or piece.

Every field declares its kind, range or choices and help once (in its metadata); :func:`check_field` applies them,
and ``make schema`` writes them for Lua, which checks setup() with the same words.
"""

from __future__ import annotations

import argparse
import math
import numbers
import os
import shlex
import sys
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
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
VOLUME_RANGE = (0, 100)


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


def setting(default: Any = MISSING, *, kind: str, help: str, factory: Any = MISSING, **rule: Any) -> Any:
    """A field with its rule: ``kind`` is one of choice, int, number, bool, path, command; ``choices``, ``min``,
    ``max``, ``optional`` (None allowed) and ``less_than`` (another field's name) refine it."""
    metadata = {"kind": kind, "help": help, **rule}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def expects(f: Field) -> str:
    """What a field takes, in words (the same words in Python's errors and Lua's)."""
    meta = f.metadata
    kind, lo, hi = meta["kind"], meta.get("min"), meta.get("max")
    unit = " seconds" if f.name.endswith("_sec") else ""
    if kind == "choice":
        words = "one of " + ", ".join(meta["choices"])
    elif kind == "bool":
        words = "true or false"
    elif kind == "path":
        words = "a path"
    elif kind == "command":
        words = 'a player command like "mpv --no-video"'
    else:
        noun = "an integer" if kind == "int" else "a number" + (" of" + unit if unit else "")
        if lo is not None and hi is not None:
            words = f"{noun} from {lo:g} to {hi:g}"
        elif lo is not None:
            words = f"{noun} of at least {lo:g}"
        else:
            words = noun
        if meta.get("less_than"):
            words += f", less than {meta['less_than']}"
    return words + (", or unset" if meta.get("optional") else "")


def check_field(f: Field, value: Any, others: dict[str, Any]) -> Any:
    """``value`` checked against ``f``'s rule (paths expanded); LofiError INVALID_PARAMS naming what it takes."""
    meta = f.metadata
    if value is None and meta.get("optional"):
        return None
    kind, ok = meta["kind"], False
    if kind == "choice":
        ok = value in meta["choices"]
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind in ("int", "number"):
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and _finite(value)
        ok = ok and (kind == "number" or isinstance(value, numbers.Integral))
        ok = ok and (meta.get("min") is None or value >= meta["min"]) and (meta.get("max") is None or value <= meta["max"])
        bound = others.get(meta.get("less_than", ""))
        ok = ok and (bound is None or not isinstance(bound, numbers.Real) or value < bound)
    elif kind == "path":
        ok = isinstance(value, Path) or (isinstance(value, str) and bool(value.strip()))
        if ok:
            return Path(value).expanduser().resolve()
    elif kind == "command":
        try:
            ok = isinstance(value, str) and bool(shlex.split(value))
        except ValueError:
            ok = False
    if not ok:
        shown = value if not isinstance(value, numbers.Integral) or abs(int(value)) < 10**12 else "a huge number"
        raise LofiError(INVALID_PARAMS, f"{f.name} must be {expects(f)}, not {shown!r}")
    return value


class _Group:
    """Checks every field on construction; dict form keyed by field name."""

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        for f in fields(self):  # type: ignore[arg-type]
            setattr(self, f.name, check_field(f, values[f.name], values))

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}  # type: ignore[call-overload]


@dataclass
class EngineConfig(_Group):
    """The engine process's settings: a change restarts it between jobs (and reloads the model)."""

    backend: str = setting("musicgen", kind="choice", choices=BACKENDS,
                           help="the backend a request uses when it names none: musicgen (5–120 s) or ace-step (10–240 s, 48 kHz stereo)")
    variant: str | None = setting(
        None, kind="choice", choices=VARIANTS, optional=True,
        help="model variant: small (fp32, the default), small-int8 (smaller, ≈ 2× faster on a CPU), small-fp16 "
        "(the default with --device cuda or metal) or small-int4 (4-bit weights made locally from small's files; CPU)",
    )
    model_dir: Path | None = setting(None, kind="path", optional=True, help="a directory of model files laid out like the Hub's; skips the download")
    encodec_dir: Path | None = setting(
        None, kind="path", optional=True,
        help="EnCodec's weights for continuing audio: a folder with facebook/encodec_32khz's config.json and model.safetensors (default: downloaded once you agree)")
    ace_step_model_dir: Path | None = setting(
        None, kind="path", optional=True, help="an ACE-Step export (its manifest.json and ONNX files; default: cache_dir/models/ace-step)")
    ace_step_variant: str = setting(
        "fp32", kind="choice", choices=ACE_STEP_VARIANTS,
        help="ACE-Step weights: fp32, or int8 (weight-only for the encoders and the DiT: 4.1 GB of weights instead of 11.5 GB)")
    device: str = setting("auto", kind="choice", choices=DEVICES, help="auto, cpu, cuda or metal")
    engine_command: str | None = setting(
        None, kind="command", optional=True,
        help='run the engine elsewhere: a command that starts `lofi engine --stdio` there, e.g. "ssh -T box lofi engine --stdio" '
        "(the queue, player, library and tracks stay here; the model is there)")
    threads: int | None = setting(None, kind="int", min=1, optional=True, help="CPU threads for inference (default: all cores)")
    decoder: str = setting("auto", kind="choice", choices=DECODER_FORMS, help="decoder form: merged file, split pair, or auto (merged when present)")
    cache_dir: Path = setting(kind="path", factory=default_cache_dir, help="where tracks are kept")
    cache_max_bytes: int = setting(2 * 1024**3, kind="int", min=0, help="cache size limit in bytes (least recently played go first)")
    optimized_cache: bool = setting(
        True, kind="bool",
        help="keep ONNX Runtime's optimized model in cache_dir/optimized: loads ≈ 2× faster, ≈ 3.5 GB of disk for small (true/false)")
    stall_timeout_sec: float = setting(
        60.0, kind="number", min=1, max=86400,
        help="seconds a busy engine may go without a sign of life (it sends one a second) before it is restarted and the job in flight fails")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant is None:
            self.variant = "small-fp16" if self.device in ("cuda", "metal") else "small"

    @property
    def ace_step_dir(self) -> Path:
        """Where the ACE-Step export is read from."""
        return self.ace_step_model_dir or self.cache_dir / "models" / "ace-step"

    @property
    def optimized_dir(self) -> Path | None:
        """Where ONNX Runtime's optimized models are kept, or None when that is turned off."""
        return self.cache_dir / "optimized" if self.optimized_cache else None


@dataclass
class PlayerConfig(_Group):
    """The player's settings: applied to the playing player at once."""

    player_command: str = setting(
        "mpv --no-config --really-quiet --no-video --no-terminal", kind="command",
        help="the audio player and its options (split like a shell would, never run by one); it is fed the mixed stream on its standard input")
    crossfade_sec: float = setting(2.0, kind="number", min=0, max=30, help="seconds consecutive tracks overlap (0: none; shortened for very short tracks)")
    playlist_loop: bool = setting(True, kind="bool", help="start the playlist over at its end; one track loops, its tail crossfaded into its head (true/false)")
    volume: int = setting(100, kind="int", min=VOLUME_RANGE[0], max=VOLUME_RANGE[1], help="playback volume, 0 to 100")

    @property
    def player_argv(self) -> list[str]:
        """The player command as a program and its arguments (no shell)."""
        return shlex.split(self.player_command)

    def levels(self) -> dict[str, Any]:
        """What the player process takes live."""
        return {"volume": self.volume, "loop": self.playlist_loop, "crossfade_sec": self.crossfade_sec}


@dataclass
class RadioConfig(_Group):
    """The radio's settings: used from its next window or piece."""

    radio_window_sec: float = setting(
        15.0, kind="number", min=2, max=30,
        help="radio (continue): seconds of music a window composes, its context included (measured: with 5 s of context, 15 s windows cost "
        "the least compute per second of music and answer a steer sooner; see README, Performance)")
    radio_context_sec: float = setting(5.0, kind="number", min=1, max=29, less_than="radio_window_sec",
                                       help="radio (continue): seconds of the piece so far each window continues")
    radio_piece_sec: float = setting(30.0, kind="number", min=5, max=240, help="radio (same_prompt, preset_cycle, random_preset): seconds a piece lasts")


GROUPS: dict[str, type[_Group]] = {"engine": EngineConfig, "player": PlayerConfig, "radio": RadioConfig}


@dataclass
class Settings:
    """All the settings, by group; their dict form is flat (every field name is unique across groups)."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    player: PlayerConfig = field(default_factory=PlayerConfig)
    radio: RadioConfig = field(default_factory=RadioConfig)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Settings":
        """From RPC parameters or the Lua options; unknown keys are an error, not silently ignored."""
        if not isinstance(values, dict):
            raise LofiError(INVALID_PARAMS, "settings must be an object")
        known = {f.name: group for group, kind in GROUPS.items() for f in fields(kind)}
        unknown = sorted(str(k) for k in values if k not in known)
        if unknown:
            raise LofiError(INVALID_PARAMS, f"unknown setting {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        by_group: dict[str, dict[str, Any]] = {group: {} for group in GROUPS}
        for name, value in values.items():
            if value is not None:
                by_group[known[name]][name] = value
        return cls(**{group: kind(**by_group[group]) for group, kind in GROUPS.items()})

    def to_dict(self) -> dict[str, Any]:
        return {**self.engine.to_dict(), **self.player.to_dict(), **self.radio.to_dict()}

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One `--flag` per setting, named after the field."""
        for f in all_fields():
            default = f.default if f.default is not MISSING else None
            kind = f.metadata["kind"]
            parser.add_argument(
                "--" + f.name.replace("_", "-"),
                dest=f.name,
                type=_boolean if kind == "bool" else int if kind == "int" else float if kind == "number" else str,
                default=None,
                choices=f.metadata.get("choices"),
                help=f.metadata["help"] + (f" (default: {default})" if default is not None else ""),
            )

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> "Settings":
        """With ``--backend ace-step``, ``--model-dir`` names the ACE-Step export (unless --ace-step-model-dir does)."""
        values = {f.name: getattr(args, f.name) for f in all_fields()}
        if values["backend"] == "ace-step" and values["model_dir"] is not None and values["ace_step_model_dir"] is None:
            values["ace_step_model_dir"], values["model_dir"] = values["model_dir"], None
        return cls.from_dict(values)


def all_fields() -> list[Field]:
    """Every setting's field, group by group."""
    return [f for kind in GROUPS.values() for f in fields(kind)]


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "yes", "1", "on"):
        return True
    if text.lower() in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _finite(value: numbers.Real) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False
