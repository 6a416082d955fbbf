"""The `lofi` command line: `lofi generate PROMPT …` writes a WAV and prints its metadata as one JSON line."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from lofi_engine.shared.errors import INVALID_PARAMS, MODEL_NOT_FOUND, PLAYBACK_FAILED, WRITE_FAILED, LofiError
from lofi_engine.shared.request import GenerateRequest, file_digest
from lofi_engine.shared.settings import DEFAULT_DURATION_SEC, EngineConfig, Settings
from lofi_engine.shared.track import track_metadata
from lofi_engine.store.ace_step_manifest import HOW_TO_EXPORT
from lofi_engine.store.catalogue import (
    ENCODEC,
    download_plan,
    encodec_location,
    is_available,
    locate_model,
    model_version,
    variant_dir,
)
from lofi_engine.store.consent import ConsentStore


class TerminalProgress:
    """A one-line progress bar with ETA on a terminal; silent when the stream is not one."""

    def __init__(self, stream: TextIO, unit: str = "steps", width: int = 30) -> None:
        self.stream = stream
        self.unit = unit
        self.width = width
        self.enabled = stream.isatty()
        self.started = time.monotonic()
        self.last_draw = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last_draw < 0.1 and done < total):
            return
        self.last_draw = now
        elapsed = now - self.started
        eta = elapsed / done * (total - done) if done else 0.0
        filled = self.width * done // total
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {100 * done // total:3d}% {done}/{total} {self.unit}, ETA {_clock(eta)} ")
        if done == total:
            self.stream.write("\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lofi", description="Compose music locally from a text prompt (MusicGen or ACE-Step on ONNX Runtime).")
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="generate a track and write it as a WAV file")
    generate.add_argument("prompt", help='what the music should sound like, e.g. "lofi hip hop, jazzy piano"')
    generate.add_argument(
        "--duration", type=float, default=None, help=f"seconds of audio: 5 to 120 with musicgen, 10 to 240 with ace-step (default: {DEFAULT_DURATION_SEC:g})"
    )
    generate.add_argument("--seed", type=int, default=None, help="seed for reproducible output (default: random, printed)")
    generate.add_argument("--output", "-o", type=Path, default=None, help="WAV file to write (default: ./<track_id>.wav)")
    generate.add_argument("--steps", type=int, default=None, help="ACE-Step: diffusion steps (default: the export's, 8 for turbo)")
    generate.add_argument("--top-k", type=int, default=None, help="MusicGen: sample among the k likeliest tokens (default: model's, 250; 1 = greedy)")
    generate.add_argument("--temperature", type=float, default=None, help="MusicGen: sampling temperature (default: model's, 1.0)")
    generate.add_argument("--guidance", type=float, default=None, help="MusicGen: classifier-free guidance scale (default: model's, 3.0; 1 = off)")
    generate.add_argument("--bpm", type=float, default=None, help="tempo, 30 to 300 beats a minute")
    generate.add_argument("--key", default=None, help='key and scale, e.g. "C minor", "F# major", "Bb minor"')
    generate.add_argument("--time-signature", type=int, default=None, help="beats in a bar: 2, 3, 4 or 6 (2/4, 3/4, 4/4, 6/8)")
    generate.add_argument("--continue-from", type=Path, default=None, metavar="FILE",
                          help="MusicGen: continue this audio (any file soundfile reads); the WAV is it followed by --duration seconds of new music")
    generate.add_argument("--yes", "-y", action="store_true", help="agree to downloading the model if it is missing, without asking")
    Settings.add_arguments(generate)

    serve = commands.add_parser("serve", help="serve JSON-RPC 2.0 over stdio (one JSON object a line)")
    Settings.add_arguments(serve)

    run = commands.add_parser(
        "run", help="first run: ask, download the default model, compose a track, play it and print where the WAV is (`make run`)"
    )
    run.add_argument("prompt", nargs="?", default="lofi hip hop, jazzy piano", help="what the music should sound like")
    run.add_argument("--duration", type=float, default=None, help="seconds of audio (default: 30)")
    run.add_argument("--seed", type=int, default=None, help="seed for reproducible output (default: random, printed)")
    run.add_argument("--output", "-o", type=Path, default=None, help="WAV file to write (default: <cache-dir>/runs/<track_id>.wav)")
    run.add_argument("--yes", "-y", action="store_true", help="agree to downloading the model if it is missing, without asking")
    run.add_argument(
        "--player", default=None,
        help='player command, the WAV path is appended (default: the first of mpv, ffplay, afplay, pw-play, paplay, aplay found); "none" to skip',
    )
    Settings.add_arguments(run)

    engine = commands.add_parser(
        "engine", help="the engine alone, for a service on another machine: `lofi engine --stdio`, started by its engine_command (ssh)")
    engine.add_argument("--stdio", action="store_true", required=True, help="speak the engine protocol on stdin and stdout (the only way it speaks)")
    engine.add_argument("--cache-dir", type=Path, default=None, help="this machine's cache: its models (default: the user's cache directory)")
    engine.add_argument("--model-dir", type=Path, default=None, help="this machine's MusicGen files (default: the downloaded variant)")
    engine.add_argument("--encodec-dir", type=Path, default=None, help="this machine's EnCodec weights (default: downloaded ones)")
    engine.add_argument("--ace-step-model-dir", type=Path, default=None, help="this machine's ACE-Step export")

    download = commands.add_parser("download", help="download a model variant from the HuggingFace Hub")
    download.add_argument("--yes", "-y", action="store_true", help="agree to the download without asking")
    download.add_argument("--encodec", action="store_true", help="download EnCodec's weights (what --continue-from needs) instead of the model")
    Settings.add_arguments(download)
    return parser


def run_generate(args: argparse.Namespace, default_dir: Path | None = None, hints: "Hints | None" = None) -> dict:
    from lofi_engine.engine.backends import load_backend
    from lofi_engine.engine.wav import write_wav
    from lofi_engine.musicgen.audio_prompt import read_audio_prompt
    from lofi_engine.musicgen.settings import ModelSettings

    settings = Settings.from_arguments(args)
    config = settings.engine
    flags = {
        "prompt": args.prompt, "duration_sec": args.duration, "seed": args.seed, "backend": config.backend,
        "top_k": args.top_k, "temperature": args.temperature, "guidance_scale": args.guidance, "steps": args.steps,
        "bpm": args.bpm, "key": args.key, "time_signature": args.time_signature,
    }
    request = GenerateRequest.parse({name: value for name, value in flags.items() if value is not None})
    if config.engine_command:
        return _generate_elsewhere(args, settings, request, getattr(args, "continue_from", None), default_dir)
    version = model_version(config, request.backend)
    continue_from = getattr(args, "continue_from", None)
    if continue_from is not None and request.backend != "musicgen":
        raise LofiError(INVALID_PARAMS, "--continue-from works with musicgen (ACE-Step continues no audio here)")
    if request.backend == "musicgen" and not is_available(config):
        obtain_model(config, args.yes, hints or CLI_HINTS)
    where = config.ace_step_dir if request.backend == "ace-step" else locate_model(config)
    # the audio is checked before EnCodec's weights are asked for and the model loads (a bad file is said at once)
    prompt = read_audio_prompt(continue_from, ModelSettings.read(where).sample_rate) if continue_from is not None else None
    encodec_dir = None if continue_from is None else encodec_location(config) or obtain_model(config, args.yes, ENCODEC_HINTS, ENCODEC)
    print(f"loading {request.backend} from {where} …", file=sys.stderr)
    model = load_backend(config, request.backend, version, encodec_dir=encodec_dir)
    unit = "DiT steps and decode chunks" if request.backend == "ace-step" else "steps"
    extra = {"continue_from": prompt} if prompt is not None else {}
    generation = model.run(request, on_step=TerminalProgress(sys.stderr, unit=unit), **extra)
    track_id = request.track_id(version, file_digest(continue_from) if continue_from is not None else None)
    path = write_wav(args.output or (default_dir or Path()) / f"{track_id}.wav", generation.audio, generation.sample_rate)
    meta = track_metadata(generation, track_id, path, request.music)
    print(json.dumps(meta, ensure_ascii=False), flush=True)
    return meta


def _generate_elsewhere(args: argparse.Namespace, settings: Settings, request: GenerateRequest, continue_from: Path | None,
                        default_dir: Path | None) -> dict:
    """`lofi generate --engine-command …`: the job goes to the engine at the end of the command (through the same
    service as the editor's); the track comes back into this machine's cache and is copied to --output."""
    import queue

    from lofi_engine.service.client import EngineClient
    from lofi_engine.shared.wire import request_params

    waiting: queue.Queue = queue.Queue()
    bar = TerminalProgress(sys.stderr, unit="%")

    def on_event(name: str, fields: dict) -> None:
        if name == "generation_progress":
            bar(fields["percent"], 100)
        elif name in ("generation_complete", "generation_error", "consent_required", "download_error"):
            waiting.put((name, fields))

    client = EngineClient(settings, on_event)
    try:
        params = {**request_params(request), "continue_from": str(continue_from.expanduser().absolute()) if continue_from else None}
        print(f"composing through `{settings.engine.engine_command}` …", file=sys.stderr)
        reply = client.request("generate", params)
        track_id = reply["track_id"]
        meta = client.cache.get(track_id) if reply["status"] == "cached" else None
        while meta is None:
            name, fields = waiting.get()
            if name == "consent_required":
                where = f" on {fields['host']}" if fields.get("host") else ""
                if not args.yes:
                    raise LofiError(MODEL_NOT_FOUND, f"not downloaded{where}: {fields['what']}. Pass --yes to agree to its download ({fields['license']})")
                print(f"downloading {fields['what']}{where} …", file=sys.stderr)
                client.request("download", {"consent": True, "variant": fields["variant"]})
            elif name == "download_error" or fields.get("track_id") != track_id:
                continue
            elif name == "generation_error":
                raise LofiError(fields["code"], fields["message"])
            else:
                meta = fields
        output = args.output or (default_dir or Path()) / f"{track_id}.wav"
        part = output.with_name(f".{output.name}.part")
        try:
            shutil.copyfile(meta["path"], part)
            os.replace(part, output)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise LofiError(WRITE_FAILED, f"cannot write {output}: {exc.strerror or exc}") from None
        meta = {**meta, "path": str(output)}
        print(json.dumps(meta, ensure_ascii=False), flush=True)
        return meta
    finally:
        client.close()


PLAYERS = (
    ("mpv", ("--no-video", "--really-quiet")),
    ("ffplay", ("-nodisp", "-autoexit", "-loglevel", "error")),
    ("afplay", ()),
    ("pw-play", ()),
    ("paplay", ()),
    ("aplay", ("-q",)),
)
"""What `lofi run` plays with when no --player is given: the first one on PATH."""


def find_player(choice: str | None) -> list[str] | None:
    """``--player`` split like a shell would (but run without one), or the first known player on PATH; None: none."""
    if choice is not None:
        return None if choice.strip() in ("", "none") else shlex.split(choice)
    for name, flags in PLAYERS:
        found = shutil.which(name)
        if found:
            return [found, *flags]
    return None


def run_first(args: argparse.Namespace) -> None:
    """`make run`: everything a first track needs, from the terminal."""
    config = Settings.from_arguments(args).engine
    args.steps = args.top_k = args.temperature = args.guidance = args.bpm = args.key = args.time_signature = None
    meta = run_generate(args, default_dir=config.cache_dir / "runs", hints=RUN_HINTS)
    path = meta["path"]
    player = find_player(args.player)
    if player is None:
        print(
            f"the track is at {path}; no audio player found: install mpv (apt install mpv, dnf install mpv, brew install mpv) "
            "or ffplay, pw-play, paplay, aplay, or pass --player (make run PLAYER=…)",
            file=sys.stderr,
        )
        return
    print(f"playing {path} with {Path(player[0]).name} (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        done = subprocess.run([*player, str(path)], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise LofiError(PLAYBACK_FAILED, f"cannot start {player[0]}: {exc.strerror or exc}; the track is at {path}") from None
    if done.returncode != 0:
        said = (done.stderr or "").strip().splitlines()
        raise LofiError(
            PLAYBACK_FAILED, f"{Path(player[0]).name} exited with code {done.returncode}{': ' + said[-1] if said else ''}; the track is at {path}"
        )
    print(f"the track is at {path}", file=sys.stderr)


def run_serve(args: argparse.Namespace) -> None:
    from lofi_engine.service.rpc import RpcServer

    RpcServer(Settings.from_arguments(args), sys.stdout).serve(sys.stdin)


def run_engine(args: argparse.Namespace) -> None:
    from lofi_engine.engine.stdio import serve_stdio
    from lofi_engine.shared.wire import LOCAL_PATHS

    status = serve_stdio({name: getattr(args, name) for name in LOCAL_PATHS})
    if status:
        raise SystemExit(status)


def run_download(args: argparse.Namespace) -> None:
    config = Settings.from_arguments(args).engine
    if args.encodec:
        found = encodec_location(config)
        if found is not None:
            print(f"EnCodec's weights are already here: {found}", file=sys.stderr)
            return
        path = obtain_model(config, args.yes, ENCODEC_HINTS, ENCODEC)
        print(json.dumps({"variant": ENCODEC, "path": str(path), "size_bytes": sum(f.stat().st_size for f in path.iterdir())}), flush=True)
        return
    if config.backend == "ace-step":
        raise LofiError(MODEL_NOT_FOUND, f"lofi download fetches MusicGen only. {HOW_TO_EXPORT}")
    if is_available(config):
        print(f"the {config.variant} model is already downloaded: {variant_dir(config)}", file=sys.stderr)
        return
    path = obtain_model(config, args.yes)
    size = sum(f.stat().st_size for f in path.iterdir())
    print(json.dumps({"variant": config.variant, "path": str(path), "size_bytes": size}), flush=True)


@dataclass(frozen=True)
class Hints:
    """How a user of this way in agrees without a terminal, and where they point at model files they have."""

    agree: str
    model_dir: str
    again: str


CLI_HINTS = Hints("--yes", "--model-dir DIR", "run it again")
ENCODEC_HINTS = Hints("--yes", "--encodec-dir DIR", "run it again")
RUN_HINTS = Hints("YES=1 (make run YES=1)", "make run MODEL_DIR=DIR", "run `make run` again")


def obtain_model(config: EngineConfig, agreed: bool, hints: Hints = CLI_HINTS, name: str | None = None) -> Path:
    """Download the configured MusicGen variant (or ``name``: ENCODEC) once the user agreed: before now, with --yes,
    or on the terminal. The answer is kept in the same consent store the editor's queue reads."""
    from lofi_engine.engine.download import download

    plan = download_plan(config, name)
    consent = ConsentStore(config)
    if not (agreed or consent.granted(plan.name)):
        text = (
            f"Download {plan.description} (≈ {plan.download_bytes / 1e9:.2f} GB, weights licensed {plan.license}) "
            f"from the HuggingFace Hub ({plan.repo})? [y/N] "
        )
        if not sys.stdin.isatty():
            raise LofiError(MODEL_NOT_FOUND, f"not downloaded: {plan.title}. {text.strip()} Pass {hints.agree} to agree without a terminal")
        print(text, end="", file=sys.stderr, flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            consent.record(plan.name, False)
            raise LofiError(
                MODEL_NOT_FOUND,
                f"download declined: nothing was downloaded. To go on, agree ({hints.agree}), or use files you have ({hints.model_dir})",
            )
    consent.record(plan.name, True)
    bar = TerminalProgress(sys.stderr, unit="bytes")
    return download(plan, lambda p: bar(p["bytes_downloaded"], p["bytes_total"]), f"once online, {hints.again}; or use files you have ({hints.model_dir})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"generate": run_generate, "serve": run_serve, "download": run_download, "run": run_first, "engine": run_engine}
    try:
        commands[args.command](args)
    except LofiError as exc:
        print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
