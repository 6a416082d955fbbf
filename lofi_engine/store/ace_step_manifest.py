"""The `manifest.json` of an ACE-Step export: what the runtime may load, and the proof that it is what was exported.

Standard library only: the editor's host reads it to name the model version before the engine starts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lofi_engine.shared.errors import MODEL_LOAD_FAILED, MODEL_NOT_FOUND, LofiError
from lofi_engine.store.jsonfile import read_json, write_json_atomic

FORMAT = "lofi-ace-step-onnx/1"
MANIFEST = "manifest.json"
GRAPHS = ("text_encoder", "condition_encoder", "dit", "vae_decoder")
VERIFIED_STAMP = ".lofi-verified.json"
"""Identities of files whose sha256 was checked, so a 6 GB DiT is hashed once, not every load. A file's identity is
its size, modification time, inode and status-change time: a rewrite in place changes the ctime, which no tool can
set back (``os.utime`` restores the mtime only), and a file put in its place has another inode."""

HOW_TO_EXPORT = (
    "ACE-Step has no published ONNX files: export a checkpoint once with "
    "`python -m lofi_engine.dev.export_ace_step CHECKPOINT_DIR --out DIR` (see README, \"ACE-Step\") and set "
    "ace_step_model_dir (CLI: --model-dir with --backend ace-step) to DIR"
)


HashCallback = Callable[[str, int, int], None]
"""``on_hash(file, bytes_hashed, bytes_total)`` while files are checked against the manifest."""


def file_entry(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "sha256": sha256_of(path)}


def sha256_of(path: Path, on_block: Callable[[int], None] | None = None) -> str:
    """``on_block(n)`` after each 64 MB hashed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 26), b""):
            digest.update(block)
            if on_block is not None:
                on_block(len(block))
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    root: Path
    data: dict[str, Any]

    @classmethod
    def read(cls, model_dir: str | Path) -> "Manifest":
        """MODEL_NOT_FOUND when there is no export at ``model_dir``; MODEL_LOAD_FAILED when its manifest is unusable."""
        root = Path(model_dir).expanduser()
        path = root / MANIFEST
        if not path.is_file():
            raise LofiError(MODEL_NOT_FOUND, f"no ACE-Step export at {root} ({MANIFEST} is missing). {HOW_TO_EXPORT}")
        data = read_json(path, None)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LofiError(MODEL_LOAD_FAILED, f"{path} is not a readable {FORMAT} manifest; export the checkpoint again")
        try:
            for role in GRAPHS:
                data["graphs"][role]["inputs"], data["graphs"][role]["outputs"]  # noqa: B018 (presence check)
            for key in ("sample_rate", "hop_length", "latent_channels", "patch_size", "steps", "shift", "text_template", "tokenizer", "silence_latent"):
                data[key]  # noqa: B018
            for files in data["variants"].values():
                for name in files.values():
                    data["files"][name]["sha256"], data["files"][name]["size"]  # noqa: B018
        except (KeyError, TypeError, AttributeError) as exc:
            raise LofiError(MODEL_LOAD_FAILED, f"{path} lacks {exc}; export the checkpoint again") from None
        return cls(root, data)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def latent_rate(self) -> float:
        """Latent frames a second (25): the sample rate over the VAE's hop."""
        return self.data["sample_rate"] / self.data["hop_length"]

    def variant_files(self, variant: str) -> dict[str, str]:
        """Graph role → file for ``variant`` (fp32 or int8)."""
        if variant not in self.data["variants"]:
            raise LofiError(
                MODEL_LOAD_FAILED,
                f"the export at {self.root} has no {variant} variant (it has {', '.join(sorted(self.data['variants']))})",
            )
        return self.data["variants"][variant]

    def files_for(self, variant: str) -> list[str]:
        """Every file a load of ``variant`` reads: graphs, their external data, the tokenizer, the silence latent."""
        graphs = list(self.variant_files(variant).values())
        data = [d for g in graphs for d in self.data.get("external_data", {}).get(g, [])]
        return graphs + data + [self.data["tokenizer"], self.data["silence_latent"]]

    def model_version(self, variant: str) -> str:
        """The version entering track ids; MODEL_LOAD_FAILED when the export lacks ``variant``."""
        self.variant_files(variant)
        source = self.data.get("source", {})
        revision = str(source.get("revision") or "local")[:12]
        return f"{self.data.get('model', 'ace-step-1.5-turbo')}-{variant}-{revision}"

    def verify(self, names: list[str], on_hash: HashCallback | None = None) -> None:
        """Every named file is listed, present, of the manifest's size and sha256 (hashed again whenever the file
        was written, replaced or moved since it was last checked)."""
        stamp_path = self.root / VERIFIED_STAMP
        stamps = read_json(stamp_path, {})
        if not isinstance(stamps, dict):
            stamps = {}
        pending = []  # every file is checked for presence and size before any is hashed
        for name in names:
            stamp = self._checked_stamp(name)
            if stamps.get(name) != stamp:
                pending.append((name, stamp))
        total = sum(self.data["files"][name]["size"] for name, _ in pending)
        hashed = 0
        for name, stamp in pending:

            def block(n: int, name: str = name) -> None:
                nonlocal hashed
                hashed += n
                if on_hash is not None:
                    on_hash(name, hashed, total)

            if sha256_of(self.root / name, block) != self.data["files"][name]["sha256"]:
                raise LofiError(MODEL_LOAD_FAILED, f"{self.root / name} does not match the sha256 in {MANIFEST}; it was changed or damaged")
            stamps[name] = stamp
        if pending:
            try:
                write_json_atomic(stamp_path, stamps)
            except OSError:
                pass  # a read-only export is verified again next time

    def _checked_stamp(self, name: str) -> str:
        """The file's identity (size, mtime, inode, ctime) and expected sha256, once it is listed, present and of the
        right size."""
        expected = self.data["files"].get(name)
        if expected is None:
            raise LofiError(MODEL_LOAD_FAILED, f"{name} is not listed in {self.root / MANIFEST}; export the checkpoint again")
        path = self.root / name
        if not path.is_file():
            raise LofiError(MODEL_LOAD_FAILED, f"{path} is missing (named by {MANIFEST}); export the checkpoint again")
        stat = path.stat()
        if stat.st_size != expected["size"]:
            raise LofiError(MODEL_LOAD_FAILED, f"{path} has {stat.st_size} bytes, the manifest says {expected['size']}")
        return f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}:{stat.st_ctime_ns}:{expected['sha256']}"
