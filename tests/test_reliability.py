"""Issue 11: a full disk, a half-finished write, a hostile track id or a nonsensical model file never costs a user
their queue, their model or their files.

A full disk is a real one: a small tmpfs (as root; a read-only directory where mounting is not allowed and
permissions hold). Processes are real (`lofi serve`, `lofi generate`), files are real, nothing is mocked.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from conftest import FIXTURES, PROMPT, TINY, reference

from lofi_engine import LofiError, MusicGen
from lofi_engine.engine.wav import write_wav
from lofi_engine.store.tracks import TrackCache

REPO = Path(__file__).resolve().parents[1]
ACE_TINY = FIXTURES / "ace-step-tiny"
ID_A, ID_B, ID_C = "0123456789abcdef", "fedcba9876543210", "00000000deadbeef"


# ---- a disk that is really full -------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path):
    """``make(size, full=False, read_only=False)``: a directory on a tmpfs of that size (filled up to the last
    byte with ``full``), unmounted after the test. Without the right to mount, a non-root user gets a read-only
    directory instead (writes fail for real, with EACCES); root, whom permissions do not stop, is told why not."""
    mounted: list[Path] = []

    def make(size: str, full: bool = False, read_only: bool = False) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
        if done.returncode != 0:
            if os.geteuid() == 0:
                pytest.skip(f"a full disk is simulated with a tmpfs and this machine refuses to mount one: {done.stderr.strip()}")
            where.chmod(0o555)
            return where
        mounted.append(where)
        if full:
            fd = os.open(where / "filler", os.O_WRONLY | os.O_CREAT)
            try:
                while os.write(fd, b"\0" * 4096):
                    pass
            except OSError:
                assert shutil.disk_usage(where).free == 0
            finally:
                os.close(fd)
        return where

    yield make
    gc.collect()  # sessions map their optimized copies: let them go before unmounting
    for where in reversed(mounted):
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=True)


def snapshot(folder: Path) -> dict[str, tuple[str, int, float]]:
    """Every file's sha256, mode and mtime (links not followed), to show nothing was changed or deleted."""
    found = {}
    for path in sorted(folder.rglob("*")):
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            found[str(path)] = ("-> " + os.readlink(path), info.st_mode, info.st_mtime)
        elif stat.S_ISREG(info.st_mode):
            found[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), info.st_mode, info.st_mtime)
    return found


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".part"))


# ---- item 1: a cache that cannot be saved never makes a good model "corrupt" ------------------------------------


@pytest.mark.parametrize("size, full", [("64k", True), ("1m", False)], ids=["no-space-at-all", "room-for-some-copies"])
def test_optimized_cache_on_a_full_disk_still_loads_the_model_and_deletes_nothing(
    tiny_copy: Path, small_fs: Callable[..., Path], caplog: pytest.LogCaptureFixture, size: str, full: bool
) -> None:
    disk = small_fs(size, full=full)
    before = snapshot(tiny_copy)
    with caplog.at_level(logging.WARNING, logger="lofi.engine"):
        for _ in range(2):  # and again: a failed save is not remembered as a broken model
            model = MusicGen.load(tiny_copy, device="cpu", optimized_cache=disk / "optimized")
            out = model.generate(PROMPT, duration_sec=5, top_k=1)
            np.testing.assert_array_equal(out.codes, reference("greedy_g3_codes"))
            del model
    assert snapshot(tiny_copy) == before
    assert "not keeping an optimized copy" in caplog.text or os.geteuid() != 0
    assert not (disk / "optimized").exists() or leftovers(disk / "optimized") == []


def test_a_corrupt_original_is_model_load_failed_naming_exactly_that_file(tiny_copy: Path, small_fs: Callable[..., Path], tmp_path: Path) -> None:
    bad = tiny_copy / "encodec_decode.onnx"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    for cache in (tmp_path / "optimized", small_fs("64k", full=True) / "optimized", None):
        with pytest.raises(LofiError) as info:
            MusicGen.load(tiny_copy, device="cpu", optimized_cache=cache)
        assert info.value.code == "MODEL_LOAD_FAILED" and str(bad) in info.value.message
        assert info.value.path == bad  # the worker deletes this file of a download, and only this one


# ---- item 3: a track id is a track id --------------------------------------------------------------------------


class Server:
    """`lofi serve` over the tiny model, as an editor drives it."""

    def __init__(self, cache: Path, *extra: str, env: dict[str, str | None] | None = None) -> None:
        """``env``: variables set for the server (None: removed)."""
        merged = {**os.environ, "XDG_STATE_HOME": str(cache.parent / "state"), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lofi_engine", "serve", "--model-dir", str(TINY), "--cache-dir", str(cache), *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env={k: v for k, v in merged.items() if v is not None},
        )
        self.lines: list[dict] = []
        self.next_id = 0

    def call(self, method: str, params: dict | None = None) -> dict:
        self.next_id += 1
        request_id = self.next_id
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": method, "params": params or {}, "id": request_id}) + "\n")
        self.proc.stdin.flush()
        return self.read_until(lambda m: m.get("id") == request_id)

    def read_until(self, done: Callable[[dict], bool], timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            assert line, f"server exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
            message = json.loads(line)
            self.lines.append(message)
            if done(message):
                return message
        raise AssertionError("timed out")

    def generate(self, **params: Any) -> dict:
        answer = self.call("generate", {"duration_sec": 5, **params})["result"]
        return self.read_until(lambda m: m.get("method") in ("generation_complete", "generation_error") and m["params"]["track_id"] == answer["track_id"])

    def close(self) -> int:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        return self.proc.wait(timeout=30)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """Files outside the cache a hostile track id could name: x.json + x.wav (0644) and a symlinked pair."""
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "x.json").write_text(json.dumps({"track_id": "x", "secret": "do not read"}))
    (folder / "x.wav").write_bytes(b"RIFF not really")
    for name in ("x.json", "x.wav"):
        (folder / name).chmod(0o644)
    (folder / "link.json").symlink_to(folder / "x.json")
    (folder / "link.wav").symlink_to(folder / "x.wav")
    return folder


def test_path_like_track_ids_are_refused_and_nothing_outside_the_cache_is_touched(tmp_path: Path, victim: Path) -> None:
    before = snapshot(victim)
    cache = tmp_path / "cache"
    server = Server(cache)
    try:
        assert server.call("status")["result"]
        tracks = cache / "tracks"
        hostile = [
            str(victim / "x"), os.path.relpath(victim / "x", tracks), os.path.relpath(victim / "link", tracks), "../../victim/x",
            "/tmp/v/x", "0123456789ABCDEF", "0123456789abcde/", "0123456789abcdef/../x", "", "..", ".", "x" * 16,
        ]
        for track_id in hostile:
            for method in ("track_played", "cancel"):
                error = server.call(method, {"track_id": track_id})["error"]
                assert error["code"] == -32602 and error["data"]["code"] == "INVALID_PARAMS", (method, track_id, error)
                assert "secret" not in error["message"]
        assert server.call("tracks")["result"] == []
    finally:
        assert server.close() == 0
    assert snapshot(victim) == before


def test_a_tracks_json_never_chooses_the_path_that_is_played(tmp_path: Path, victim: Path) -> None:
    before = snapshot(victim)
    cache = tmp_path / "cache"
    server = Server(cache)
    try:
        done = server.generate(prompt="lofi", seed=7)
        assert done["method"] == "generation_complete"
        tid = done["params"]["track_id"]
        wav = (cache / "tracks" / f"{tid}.wav").resolve()
        meta_file = cache / "tracks" / f"{tid}.json"
        meta = json.loads(meta_file.read_text())
        meta["path"] = str(victim / "x.wav")  # a JSON rewritten by someone else
        meta_file.write_text(json.dumps(meta))
        again = server.call("generate", {"prompt": "lofi", "seed": 7, "duration_sec": 5})["result"]
        assert again["status"] == "cached" and Path(again["path"]).resolve() == wav
        cached = server.read_until(lambda m: m.get("method") == "generation_complete" and m["params"].get("cached"))
        assert Path(cached["params"]["path"]).resolve() == wav
        assert [Path(t["path"]).resolve() for t in server.call("tracks")["result"]] == [wav]
        assert Path(server.call("track_played", {"track_id": tid})["result"]["path"]).resolve() == wav
    finally:
        assert server.close() == 0
    assert snapshot(victim) == before


def test_every_cache_method_checks_the_id(tmp_path: Path, victim: Path) -> None:
    cache = TrackCache(tmp_path / "tracks", 10**9)
    cache.prepare()
    for bad in ("../victim/x", str(victim / "x"), "ABCDEF0123456789", None, 12, "0123456789abcdef\n"):
        for call in (cache.get, cache.touch, cache.remove, cache.wav_path, cache.meta_path, cache.remove_chunks, lambda t: cache.chunk_path(t, 0)):
            with pytest.raises(LofiError) as info:
                call(bad)
            assert info.value.code == "INVALID_PARAMS"
        with pytest.raises(LofiError):
            cache.put({"track_id": bad, "path": str(victim / "x.wav")})
    assert sorted(p.name for p in victim.iterdir()) == ["link.json", "link.wav", "x.json", "x.wav"]


# ---- item 6: a WAV on a full disk ------------------------------------------------------------------------------


@pytest.mark.parametrize("size, full", [("64k", True), ("256k", False)], ids=["no-space-at-all", "full-mid-write"])
def test_a_wav_on_a_full_disk_is_write_failed_with_the_free_space_and_leaves_nothing(small_fs: Callable[..., Path], size: str, full: bool) -> None:
    disk = small_fs(size, full=full)
    before = sorted(p.name for p in disk.iterdir())
    target = disk / "track.wav"
    with pytest.raises(LofiError) as info:
        write_wav(target, np.zeros(10 * 32000, np.float32), 32000)  # 640 KB
    assert info.value.code == "WRITE_FAILED" and str(target) in info.value.message and "free" in info.value.message
    assert sorted(p.name for p in disk.iterdir()) == before


def test_the_cli_on_a_full_disk_says_write_failed_without_a_traceback(small_fs: Callable[..., Path]) -> None:
    disk = small_fs("128k")
    done = subprocess.run(
        [sys.executable, "-m", "lofi_engine", "generate", "lofi", "--duration", "5", "--seed", "1", "--model-dir", str(TINY), "--output", str(disk / "out.wav")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert done.returncode == 1 and "WRITE_FAILED:" in done.stderr and "free" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(disk.iterdir()) == []


def test_the_service_on_a_full_disk_fails_the_job_with_write_failed_and_keeps_serving(small_fs: Callable[..., Path]) -> None:
    disk = small_fs("192k")
    server = Server(disk / "cache")
    try:
        done = server.generate(prompt="lofi", seed=3)
        assert done["method"] == "generation_error" and done["params"]["code"] == "WRITE_FAILED", done
        assert "free" in done["params"]["message"]
        assert leftovers(disk / "cache") in ([], [".lock"])
        assert not list((disk / "cache" / "tracks").glob("*.wav"))
        assert server.call("status")["result"]["pending"] == 0
    finally:
        assert server.close() == 0


# ---- item 8: a cache directory that cannot be made --------------------------------------------------------------


def test_a_cache_directory_that_cannot_be_made_is_write_failed_naming_it(tmp_path: Path, small_fs: Callable[..., Path]) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("")
    read_only = small_fs("64k", read_only=True)
    for root in (Path("/proc/x/tracks"), a_file / "tracks", read_only / "tracks", read_only):
        with pytest.raises(LofiError) as info:
            TrackCache(root, 10**9).prepare()
        assert info.value.code == "WRITE_FAILED" and str(root) in info.value.message


def _client_prepares_the_cache() -> bool:
    return "prepare()" in (REPO / "lofi_engine" / "service" / "client.py").read_text()


@pytest.mark.skipif(not _client_prepares_the_cache(), reason="issue 11 item 8: EngineClient does not call TrackCache.prepare() yet")
def test_serve_with_a_cache_directory_that_cannot_be_made_says_write_failed(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lofi_engine", "serve", "--model-dir", str(TINY), "--cache-dir", "/proc/x"],
        input="", capture_output=True, text=True, cwd=REPO, timeout=60, env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")},
    )
    assert done.returncode != 0 and "WRITE_FAILED" in done.stderr and "/proc/x" in done.stderr and "Traceback" not in done.stderr


# ---- item 9: nonsensical model configs ------------------------------------------------------------------------

NONSENSE = [  # (file, keys to the field, value, the field as the message names it)
    ("config.json", ["audio_encoder", "upsampling_ratios"], [0], "audio_encoder.upsampling_ratios"),
    ("config.json", ["audio_encoder", "upsampling_ratios"], [], "audio_encoder.upsampling_ratios"),
    ("config.json", ["audio_encoder", "upsampling_ratios"], [8, -5, 4, 4], "audio_encoder.upsampling_ratios"),
    ("config.json", ["audio_encoder", "upsampling_ratios"], "8544", "audio_encoder.upsampling_ratios"),
    ("config.json", ["audio_encoder", "upsampling_ratios"], [32000, 32000], "audio_encoder.upsampling_ratios"),
    ("config.json", ["audio_encoder", "sampling_rate"], -32000, "audio_encoder.sampling_rate"),
    ("config.json", ["audio_encoder", "sampling_rate"], 0, "audio_encoder.sampling_rate"),
    ("config.json", ["audio_encoder", "sampling_rate"], "32000", "audio_encoder.sampling_rate"),
    ("config.json", ["audio_encoder", "sampling_rate"], 10**30, "audio_encoder.sampling_rate"),
    ("config.json", ["decoder", "num_codebooks"], 0, "decoder.num_codebooks"),
    ("config.json", ["decoder", "num_codebooks"], True, "decoder.num_codebooks"),
    ("config.json", ["decoder", "max_position_embeddings"], 100, "decoder.max_position_embeddings"),
    ("config.json", ["decoder", "hidden_size"], None, "decoder.hidden_size"),
    ("config.json", ["decoder"], [], "decoder"),
    ("config.json", ["audio_encoder"], None, "audio_encoder"),
    ("config.json", [], ["not", "an", "object"], "JSON object"),
    ("generation_config.json", [], [], "JSON object"),
    ("generation_config.json", ["top_k"], 0, "top_k"),
    ("generation_config.json", ["top_k"], 2.5, "top_k"),
    ("generation_config.json", ["temperature"], -1, "temperature"),
    ("generation_config.json", ["temperature"], 0, "temperature"),
    ("generation_config.json", ["guidance_scale"], "high", "guidance_scale"),
    ("generation_config.json", ["pad_token_id"], -1, "pad_token_id"),
]
BROKEN_TEXT = [("config.json", '{"decoder": NaN}'), ("generation_config.json", ""), ("config.json", "[" * 100_000)]

PROBE = textwrap.dedent(
    """
    import json, sys
    from lofi_engine import LofiError, MusicGen
    for model_dir in sys.argv[1:]:
        try:
            MusicGen.load(model_dir, device="cpu").generate("x", duration_sec=5, seed=1)
            print(json.dumps({"dir": model_dir, "code": None}), flush=True)
        except LofiError as exc:
            print(json.dumps({"dir": model_dir, "code": exc.code, "message": exc.message, "path": str(exc.path)}), flush=True)
    """
)


def _model_with(tmp_path: Path, name: str, file: str, text: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for source in TINY.iterdir():
        if source.suffix == ".onnx":
            (folder / source.name).symlink_to(source)
        else:
            shutil.copy(source, folder / source.name)
    (folder / file).write_text(text)
    return folder


def test_every_nonsensical_config_value_is_model_load_failed_naming_file_and_field(tmp_path: Path) -> None:
    cases: dict[str, tuple[str, str]] = {}
    for i, (file, keys, value, field) in enumerate(NONSENSE):
        data = json.loads((TINY / file).read_text())
        if keys:
            holder = data
            for key in keys[:-1]:
                holder = holder[key]
            holder[keys[-1]] = value
        else:
            data = value
        cases[str(_model_with(tmp_path, f"case{i}", file, json.dumps(data)))] = (file, field)
    for i, (file, text) in enumerate(BROKEN_TEXT):
        cases[str(_model_with(tmp_path, f"text{i}", file, text))] = (file, "cannot read")
    done = subprocess.run([sys.executable, "-c", PROBE, *cases], capture_output=True, text=True, cwd=REPO, timeout=120)  # a hang fails here
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and len(results) == len(cases), done.stderr[-3000:]
    for result in results:
        file, field = cases[result["dir"]]
        assert result["code"] == "MODEL_LOAD_FAILED", (file, field, result)
        assert str(Path(result["dir"]) / file) in result["message"] and field in result["message"], (file, field, result)
        assert result["path"] == str(Path(result["dir"]) / file)  # the file at fault, not its neighbour


def test_the_cli_names_the_nonsense_without_a_traceback(tmp_path: Path) -> None:
    config = json.loads((TINY / "config.json").read_text())
    config["audio_encoder"]["sampling_rate"] = -32000
    model = _model_with(tmp_path, "model", "config.json", json.dumps(config))
    done = subprocess.run(
        [sys.executable, "-m", "lofi_engine", "generate", "x", "--duration", "5", "--model-dir", str(model), "--output", str(tmp_path / "x.wav")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert done.returncode == 1 and "MODEL_LOAD_FAILED:" in done.stderr and "audio_encoder.sampling_rate" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "x.wav").exists()


# ---- item 10: the cache repairs itself ---------------------------------------------------------------------------


def _track(cache: TrackCache, track_id: str, seconds: float = 1.0, chunks: int = 0) -> None:
    audio = np.zeros(int(seconds * 32000), np.float32)
    write_wav(cache.wav_path(track_id), audio, 32000)
    for i in range(chunks):
        write_wav(cache.chunk_path(track_id, i * 32000), audio[:32000], 32000)
    cache.put({"track_id": track_id, "path": str(cache.wav_path(track_id)), "duration_sec": seconds, "sample_rate": 32000, "prompt": "p", "seed": 1})


def _crash_leftovers(root: Path) -> None:
    """What kills leave: an orphan WAV (killed between its rename and the JSON's), temp files of both kinds of
    write, the chunks of a generation that never finished, a JSON whose WAV is gone, an unreadable JSON."""
    write_wav(root / f"{ID_C}.wav", np.zeros(32000, np.float32), 32000)
    (root / f".{ID_C}.abcd1234.part").write_bytes(b"\0" * 5000)
    (root / f".{ID_A}.json.xyz.part").write_text("{")
    write_wav(root / "1111111111111111.chunks" / f"{0:012d}.wav", np.zeros(32000, np.float32), 32000)
    (root / "2222222222222222.json").write_text(json.dumps({"track_id": "2222222222222222"}))
    (root / "3333333333333333.json").write_text("{not json")
    write_wav(root / "3333333333333333.wav", np.zeros(100, np.float32), 32000)


def test_on_start_the_cache_repairs_what_a_crash_left(tmp_path: Path) -> None:
    root = tmp_path / "tracks"
    writer = TrackCache(root, 10**9)
    writer.prepare()
    _track(writer, ID_A, chunks=2)
    _crash_leftovers(root)
    (root / "notes.txt").write_text("not ours: left alone")
    writer.close()  # the editor that wrote all this is gone

    TrackCache(root, 10**9).prepare()
    assert sorted(p.name for p in root.iterdir()) == [".lock", f"{ID_A}.json", f"{ID_A}.wav", "notes.txt"]
    assert [t["track_id"] for t in TrackCache(root, 10**9).tracks()] == [ID_A]


def test_a_second_editor_starting_leaves_the_first_ones_work_in_progress(tmp_path: Path) -> None:
    root = tmp_path / "tracks"
    first = TrackCache(root, 10**9)
    first.prepare()
    _track(first, ID_A, chunks=2)
    _crash_leftovers(root)  # all of it fresh: it may be the first editor's writes in flight
    TrackCache(root, 10**9).prepare()
    kept = {p.name for p in root.iterdir()}
    assert {f"{ID_A}.chunks", f"{ID_C}.wav", f".{ID_C}.abcd1234.part", "1111111111111111.chunks"} <= kept
    assert "2222222222222222.json" not in kept and "3333333333333333.wav" not in kept  # never in flight: broken
    hour_ago = time.time() - 3600
    for path in root.iterdir():
        os.utime(path, (hour_ago, hour_ago), follow_symlinks=False)
    TrackCache(root, 10**9).prepare()
    assert sorted(p.name for p in root.iterdir()) == [".lock", f"{ID_A}.chunks", f"{ID_A}.json", f"{ID_A}.wav"]  # its chunks may be looping


def test_lofi_serve_repairs_its_cache_as_it_starts(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    root = cache / "tracks"
    writer = TrackCache(root, 10**9)
    writer.prepare()
    _track(writer, ID_A, chunks=1)
    _crash_leftovers(root)
    writer.close()
    server = Server(cache)
    try:
        assert [t["track_id"] for t in server.call("tracks")["result"]] == [ID_A]
        assert sorted(p.name for p in root.iterdir()) == [".lock", f"{ID_A}.json", f"{ID_A}.wav"]
    finally:
        assert server.close() == 0


def test_the_size_limit_counts_everything_the_cache_holds(tmp_path: Path) -> None:
    root = tmp_path / "tracks"
    cache = TrackCache(root, 10**9)
    cache.prepare()
    _track(cache, ID_A, chunks=3)
    _track(cache, ID_B, chunks=3)
    (root / "notes.txt").write_bytes(b"\0" * 10_000)
    (root / f".{ID_C}.abcd.part").write_bytes(b"\0" * 3_000)
    on_disk = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert cache.total_bytes() == on_disk

    def size(*names: str) -> int:
        return sum(p.stat().st_size for n in names for p in [root / n, *(root / n).rglob("*")] if p.is_file())

    tracks_only = size(f"{ID_A}.wav", f"{ID_A}.json", f"{ID_B}.wav", f"{ID_B}.json", "notes.txt", f".{ID_C}.abcd.part")
    cache.max_bytes = tracks_only + size(f"{ID_B}.chunks")  # room for both tracks and B's chunks once A's are gone
    assert cache.evict(keep=ID_B) == []
    assert not (root / f"{ID_A}.chunks").exists() and (root / f"{ID_B}.chunks").is_dir()
    cache.max_bytes = tracks_only  # then the just-finished track's chunks go too, before any track does
    assert cache.evict(keep=ID_B) == []
    assert not (root / f"{ID_B}.chunks").exists()
    assert {t["track_id"] for t in cache.tracks()} == {ID_A, ID_B}
    cache.max_bytes = tracks_only - 1
    assert cache.evict(keep=ID_B) == [ID_A]
    assert [t["track_id"] for t in cache.tracks()] == [ID_B]
    assert cache.total_bytes() == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_lofi_serve_keeps_the_cache_within_its_limit_counting_the_newest_chunks(tmp_path: Path) -> None:
    """Issue 23 item 11: with a 700 KB limit the cache held 961 KB, the newest track's chunks left uncounted. A 5 s
    tiny track is a 320 KB WAV and 320 KB of chunks: after each one the cache is within the limit, chunk folders
    (copies) go before any track, and the third track evicts the first."""
    limit = 700_000
    server = Server(tmp_path / "cache", "--cache-max-bytes", str(limit), "--optimized-cache", "false")
    try:
        done = [server.generate(prompt=PROMPT, seed=seed)["params"] for seed in (1, 2, 3)]
        assert all("path" in d for d in done), done
        stats = server.call("cache_stats")["result"]
        on_disk = sum(p.stat().st_size for p in (tmp_path / "cache" / "tracks").rglob("*") if p.is_file())
        assert stats["bytes"] == on_disk and on_disk <= limit, stats
        assert [t["track_id"] for t in server.call("tracks")["result"]] == [done[2]["track_id"], done[1]["track_id"]]
    finally:
        assert server.close() == 0


@pytest.mark.parametrize("state", ["a file", "a read-only disk"])
def test_an_unwritable_state_folder_is_said_once_and_the_logs_go_to_a_temp_folder(tmp_path: Path, small_fs: Callable[..., Path], state: str) -> None:
    """Issue 23 item 9: with XDG_STATE_HOME unwritable every generate failed with "the engine crashed … details in <a
    log that cannot exist>" and every play with "player process crashed". Now one service_warning (WRITE_FAILED,
    naming the folder) says where the logs went, and the engine and the player work, logging there."""
    if state == "a file":
        home = tmp_path / "state-file"
        home.write_text("not a folder")
    else:
        home = small_fs("1M", read_only=True)
    temp = tmp_path / "tmp"
    temp.mkdir()
    player = "mpv --no-config --really-quiet --no-video --ao=null"
    server = Server(tmp_path / "cache", "--player-command", player, env={"XDG_STATE_HOME": str(home), "TMPDIR": str(temp)})
    try:
        warning = server.read_until(lambda m: m.get("method") == "service_warning")["params"]
        moved = temp / f"lofi.nvim-{os.getuid()}"
        assert warning["code"] == "WRITE_FAILED" and str(home / "lofi.nvim") in warning["message"], warning
        assert warning["log_dir"] == str(moved) and str(moved) in warning["message"]
        done = server.generate(prompt=PROMPT, seed=1)
        assert done["method"] == "generation_complete", done
        assert server.call("play", {"track_id": done["params"]["track_id"]})["result"]
        server.read_until(lambda m: m.get("method") == "playback_start")
        server.call("stop")
        status = server.call("status")["result"]
        assert status["log_path"] == str(moved / "engine.log") and status["log_warning"] == warning["message"]
        assert (moved / "engine.log").stat().st_size > 0 and (moved / "player.log").is_file()
        assert sum(m.get("method") == "service_warning" for m in server.lines) == 1
    finally:
        assert server.close() == 0
    assert "Traceback" not in server.proc.stderr.read()


def test_onnx_runtime_writes_nothing_in_the_users_home(tmp_path: Path) -> None:
    """Issue 23 item 10: importing ONNX Runtime wrote a device id and a telemetry store to
    ~/.cache/Microsoft/DeveloperTools/.onnxruntime. The engine turns that off: after a track is made (the engine
    process imports ONNX Runtime and runs it), the user's home holds nothing lofi did not make. The server is started
    without ORT_DISABLE_TELEMETRY in its environment, as an editor starts it."""
    home = tmp_path / "home"
    home.mkdir()
    server = Server(tmp_path / "cache", env={"HOME": str(home), "XDG_CACHE_HOME": None, "ORT_DISABLE_TELEMETRY": None})
    try:
        assert server.generate(prompt=PROMPT, seed=1)["method"] == "generation_complete"
    finally:
        assert server.close() == 0
    written = [str(p.relative_to(home)) for p in home.rglob("*")]
    assert written == [], written


# ---- item 12: ACE-Step's verified stamp ---------------------------------------------------------------------------


def test_a_flipped_bit_with_the_same_size_and_mtime_is_found(tmp_path: Path) -> None:
    from lofi_engine.ace_step.pipeline import AceStep

    export = Path(shutil.copytree(ACE_TINY, tmp_path / "ace-step", ignore=shutil.ignore_patterns(".lofi-verified.json")))
    AceStep.load(export, device="cpu")
    assert (export / ".lofi-verified.json").is_file()
    latent = export / "silence_latent.npy"
    before = latent.stat()
    data = bytearray(latent.read_bytes())
    data[-1] ^= 0x01
    with open(latent, "r+b") as f:  # rewritten in place: same inode, same size
        f.write(data)
    os.utime(latent, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = latent.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    with pytest.raises(LofiError) as info:
        AceStep.load(export, device="cpu")
    assert info.value.code == "MODEL_LOAD_FAILED" and "silence_latent.npy" in info.value.message and "sha256" in info.value.message


# ---- item 4: prompt length, item 5: declining a download --------------------------------------------------------------


def test_a_huge_prompt_is_refused_at_once_before_any_model_work(engine) -> None:
    """A 20 KB prompt took 32 s and 6.4 GB on the tiny model: now INVALID_PROMPT with the limit, nothing started."""
    client, events = engine()
    with pytest.raises(LofiError) as err:
        client.request("generate", {"prompt": "lofi hip hop " * 1600, "duration_sec": 5})
    assert err.value.code == "INVALID_PROMPT" and "at most 500" in err.value.message
    assert client.engine_pid is None and client.request("queue")["pending"] == []


def test_declining_a_download_fails_only_the_jobs_that_need_it(engine) -> None:
    """Item 5: with the model present, `download {consent: false}` costs no queued job."""
    client, events = engine(stall_timeout_sec=60)
    ids = [client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": seed})["track_id"] for seed in (1, 2, 3)]
    assert client.request("download", {"consent": False})["status"] == "declined"
    for tid in ids:
        assert events.wait_event("generation_complete", track_id=tid)["track_id"] == tid
    assert not events.names("generation_error")
