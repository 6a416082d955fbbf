"""Which files make each model variant, what they weigh, and where they live on this machine.

Standard library only: the editor's host imports this to answer requests before the engine has started.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from lofi_engine.shared.errors import INVALID_PARAMS, MODEL_NOT_FOUND, LofiError
from lofi_engine.shared.settings import EngineConfig
from lofi_engine.store import musicgen_files as files
from lofi_engine.store.ace_step_manifest import Manifest

HUB_REPO = "gabotechs/music_gen"
HUB_REVISION = "675386ca686a378fe9ff739b60fdf29c310b3560"
"""The Hub commit every file is downloaded from: the sizes and sha256s below are this commit's."""
LICENSE = "CC BY-NC 4.0 (non-commercial use only)"
"""The licence of MusicGen's weights; the user sees it before agreeing to the download."""
ENCODEC = "encodec-32khz"
"""The download that continuing the user's audio needs: EnCodec's weights, from which its encoder is derived."""
ENCODEC_REPO = "facebook/encodec_32khz"
ENCODEC_REVISION = "4a85b2dcb3d26bb32fa2a64f1f0d36441a6cf629"
"""The commit of MusicGen's audio tokenizer's weights (../shared/reference/encodec-encoder.md; a later commit adds
only the README)."""
ENCODEC_LICENSE = "CC BY-NC 4.0, as MusicGen's weights (the repo shows no licence of its own)"
OVERRIDE_ENV = "LOFI_CATALOGUE"
"""Test/dev hook: the path of a JSON file that replaces the Hub revision and some variants' files, e.g.
``{"revision": "…", "variants": {"small": {"files": {"config.json": {"path": "small/config.json", "size": 7791,
"sha256": "…"}, …}}}}`` (variants it does not name keep the published table), and EnCodec's record
(``"encodec": {"repo": …, "revision": …, "files": {"model.safetensors": {"path": …, "size": …, "sha256": …}, …}}``). The tests point it at the tiny fixture
model that their local stand-in Hub serves; users have no reason to set it."""


@dataclass(frozen=True)
class FileCheck:
    """What a downloaded file must be; None where the pinned record does not say (then the Hub's metadata, read after
    the user agreed, decides: the LFS sha256 or the git blob hash, and the announced size)."""

    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Variant:
    files: dict[str, str]
    """The engine's file name → the file's path in the Hub repo."""
    version: str
    """What enters every track id made with it."""
    download_bytes: int
    """As published, known without the network (for the consent question): exact for small (the pinned record of
    its files, generation_config.json ≈ 330 B), approximate for the others (checked against the Hub's metadata once
    the user agreed)."""
    checks: dict[str, FileCheck] = field(default_factory=dict)
    """The engine's file name → its pinned size and sha256, where known."""

    def check(self, name: str) -> FileCheck:
        return self.checks.get(name, FileCheck())


_SHARED = {files.CONFIG: "small/config.json", files.GENERATION_CONFIG: "small/generation_config.json", files.TOKENIZER: "small/tokenizer.json"}
_PINNED = {  # ../shared/reference/musicgen-onnx.md: the published fp32 set at HUB_REVISION
    "small/config.json": FileCheck(7_791, "f290b5e3900a0f4db08eb6f2c09001f2bdbbc0c9bbc958340b8af40a3ae732bc"),
    "small/tokenizer.json": FileCheck(2_422_169, "71c33c3bf57bf2e19b4f8ac686ad8d182a79f7cd1a4921889437c453420223f1"),
    "small_fp32/text_encoder.onnx": FileCheck(438_689_759, "433fa8c0e3f60b7ff85c3eb48148c659b57504857c74d43190b2833f11ee3533"),
    "small_fp32/decoder_model_merged.onnx": FileCheck(1_692_230_645, "e316822aa20ffe205dc675cd3a80ccaf332f283eb01a883d05199026ce2ad023"),
    "small_fp32/encodec_decode.onnx": FileCheck(118_056_304, "ee905fd6a4b9094d499938b10cbc11fcf3935dddc7f723727457d21b25174ff0"),
}


def _variant(file_paths: dict[str, str], version: str, download_bytes: int) -> Variant:
    checks = {name: _PINNED[path] for name, path in file_paths.items() if path in _PINNED}
    return Variant(file_paths, version, download_bytes, checks)


VARIANTS: dict[str, Variant] = {
    "small": _variant(
        {
            **_SHARED,
            files.TEXT_ENCODER: "small_fp32/text_encoder.onnx",
            files.DECODER_MERGED: "small_fp32/decoder_model_merged.onnx",
            files.AUDIO_DECODER: "small_fp32/encodec_decode.onnx",
        },
        "musicgen-small-fp32-v1",
        2_251_406_998,
    ),
    "small-int8": _variant(
        {
            **_SHARED,
            files.TEXT_ENCODER: "small_fp32/text_encoder.onnx",
            files.DECODER_MERGED: "small_i8/decoder_model_merged.onnx",
            files.AUDIO_DECODER: "small_fp32/encodec_decode.onnx",
        },
        "musicgen-small-int8-v1",
        990_000_000,
    ),
    "small-fp16": _variant(
        {
            **_SHARED,
            files.TEXT_ENCODER: "small_fp16/text_encoder.onnx",
            files.DECODER: "small_fp16/decoder_model.onnx",
            files.DECODER_WITH_PAST: "small_fp16/decoder_with_past_model.onnx",
            files.AUDIO_DECODER: "small_fp16/encodec_decode.onnx",
        },
        "musicgen-small-fp16-v1",
        1_900_000_000,
    ),
    "small-int4": Variant(  # small's fp32 files; the 4-bit decoder is derived from them locally (no extra download)
        {
            **_SHARED,
            files.TEXT_ENCODER: "small_fp32/text_encoder.onnx",
            files.DECODER_MERGED: "small_fp32/decoder_model_merged.onnx",
            files.AUDIO_DECODER: "small_fp32/encodec_decode.onnx",
        },
        "musicgen-small-int4-v1",
        2_251_406_998,
    ),
}
"""The published table, keyed by the settings' variant names (``shared.settings.VARIANTS``, the vocabulary; a test
keeps them equal). Read it through ``variants()``, which applies the LOFI_CATALOGUE hook."""

_override_cache: dict[tuple[str, float], tuple[str, dict[str, Variant], dict]] = {}


@dataclass(frozen=True)
class Download:
    """Something the user may agree to download: a model variant, or EnCodec's weights."""

    name: str
    """A variant's name, or ENCODEC: the consent store's key and the `download` request's ``variant``."""
    title: str
    """What it is, in a few words ("the MusicGen small model")."""
    description: str
    """What it is and what it is for, for the question."""
    repo: str
    revision: str
    files: dict[str, str]
    """The file name on this machine → the file's path in the Hub repo."""
    checks: dict[str, FileCheck]
    download_bytes: int
    license: str
    target: Path
    """The folder the files are assembled in, named as the engine reads them."""

    def check(self, name: str) -> FileCheck:
        return self.checks.get(name, FileCheck())

    def question(self) -> dict:
        """What the user is asked before it is downloaded (no network needed): `consent_required`'s fields."""
        return {"variant": self.name, "what": self.description, "size_bytes": self.download_bytes, "files": sorted(self.files), "license": self.license}


_ENCODEC_FILES = {"config.json": "config.json", "model.safetensors": "model.safetensors"}
_ENCODEC_BYTES = 239_000_757
"""config.json (757 B) and model.safetensors (≈ 239 MB) at ENCODEC_REVISION; checked against the Hub's metadata (the
LFS sha256 and size) once the user agreed."""


def _catalogue() -> tuple[str, dict[str, Variant], dict]:
    """The Hub revision, the variant table and EnCodec's record (repo, revision, files) in force."""
    encodec = {"repo": ENCODEC_REPO, "revision": ENCODEC_REVISION, "files": {n: {"path": p} for n, p in _ENCODEC_FILES.items()}}
    path = os.environ.get(OVERRIDE_ENV)
    if not path:
        return HUB_REVISION, VARIANTS, encodec
    try:
        key = (path, os.stat(path).st_mtime)
        if key not in _override_cache:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            table = dict(VARIANTS)
            for name, spec in data.get("variants", {}).items():
                entries = spec["files"]
                checks = {f: FileCheck(e.get("size"), e.get("sha256")) for f, e in entries.items()}
                sizes = [c.size for c in checks.values()]
                total = sum(sizes) if None not in sizes else int(spec["download_bytes"])
                version = spec.get("version", VARIANTS[name].version if name in VARIANTS else f"musicgen-{name}-v1")
                table[name] = Variant({f: e["path"] for f, e in entries.items()}, version, total, checks)
            _override_cache[key] = (str(data.get("revision", HUB_REVISION)), table, {**encodec, **data.get("encodec", {})})
        return _override_cache[key]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LofiError(MODEL_NOT_FOUND, f"{OVERRIDE_ENV}={path} is not a usable catalogue: {exc!r}") from None


def variants() -> dict[str, Variant]:
    """The variant table in force: the published one, or the LOFI_CATALOGUE override (tests)."""
    return _catalogue()[1]


def hub_revision() -> str:
    """The Hub revision downloads are pinned to (HUB_REVISION unless LOFI_CATALOGUE names another)."""
    return _catalogue()[0]


def assembled_dir(config: EngineConfig, name: str) -> Path:
    """Where a download's files are assembled (links into huggingface_hub's cache, named as the engine reads them)."""
    return config.cache_dir / "models" / name


def encodec_location(config: EngineConfig) -> Path | None:
    """EnCodec's weights: the ``encodec_dir`` setting, else the downloaded ones; None when neither is there."""
    if config.encodec_dir is not None:
        return config.encodec_dir.expanduser()
    path = assembled_dir(config, ENCODEC)
    return path if all((path / name).is_file() for name in _catalogue()[2]["files"]) else None


def download_plan(config: EngineConfig, name: str | None = None) -> Download:
    """The download called ``name`` (default: the configured variant): a variant of MusicGen, or ENCODEC."""
    revision, table, encodec = _catalogue()
    if name == ENCODEC:
        entries = encodec["files"]
        checks = {f: FileCheck(e.get("size"), e.get("sha256")) for f, e in entries.items()}
        sizes = [c.size for c in checks.values()]
        total = sum(sizes) if None not in sizes else _ENCODEC_BYTES  # type: ignore[arg-type]
        return Download(
            ENCODEC, "EnCodec's weights", f"EnCodec's weights ({encodec['repo']}), which continuing your own audio needs", encodec["repo"], encodec["revision"],
            {f: e["path"] for f, e in entries.items()}, checks, total, ENCODEC_LICENSE, assembled_dir(config, ENCODEC),
        )
    variant_name = name or str(config.variant)
    if variant_name not in table:
        raise LofiError(INVALID_PARAMS, f"nothing called {variant_name!r} to download: a variant ({', '.join(table)}) or {ENCODEC}")
    variant = table[variant_name]
    return Download(
        variant_name, f"the MusicGen {variant_name} model", f"the MusicGen {variant_name} model", HUB_REPO, revision, variant.files, variant.checks, variant.download_bytes, LICENSE,
        assembled_dir(config, variant_name),
    )


def have(config: EngineConfig, name: str) -> bool:
    """Whether the download ``name`` is not needed: its files are on this machine (or the settings name others)."""
    if name == ENCODEC:
        return encodec_location(config) is not None
    if name == config.variant:
        return is_available(config)
    plan = download_plan(config, name)
    return all((plan.target / file).is_file() for file in plan.files)


def variant_dir(config: EngineConfig) -> Path:
    """Where the configured variant is assembled once downloaded."""
    return assembled_dir(config, str(config.variant))


def is_available(config: EngineConfig) -> bool:
    if config.model_dir is not None:
        return True
    path = variant_dir(config)
    return all((path / name).is_file() for name in variants()[config.variant].files)


def locate_model(config: EngineConfig) -> Path:
    """``model_dir`` when given, else the downloaded variant; MODEL_NOT_FOUND says how to get it."""
    if config.model_dir is not None:
        return config.model_dir
    if not is_available(config):
        raise LofiError(
            MODEL_NOT_FOUND,
            f"the {config.variant} model is not downloaded (looked in {variant_dir(config)}); "
            f"run `lofi download --variant {config.variant}` or pass --model-dir",
        )
    return variant_dir(config)


def download_question(config: EngineConfig, name: str | None = None) -> dict:
    """What the user is asked before the variant (or ``name``) is downloaded (no network needed)."""
    return download_plan(config, name).question()


def model_version(config: EngineConfig, backend: str = "musicgen") -> str:
    """The version that enters every track id: the variant's, or a fingerprint of a user-supplied directory.

    For ACE-Step: the export's manifest names it (MODEL_NOT_FOUND, saying how to export, when there is none).
    """
    if backend == "ace-step":
        return Manifest.read(config.ace_step_dir).model_version(config.ace_step_variant)
    if config.model_dir is None:
        return variants()[config.variant].version
    digest = hashlib.sha256()
    directory = config.model_dir
    for path in sorted(directory.glob("*")) if directory.is_dir() else []:
        if path.is_file():
            size = path.stat().st_size
            digest.update(f"{path.name}:{size}:".encode())
            with open(path, "rb") as f:
                digest.update(f.read(1 << 16))
                f.seek(max(0, size - (1 << 16)))
                digest.update(f.read())
    return f"musicgen-local-{digest.hexdigest()[:10]}-v1"
