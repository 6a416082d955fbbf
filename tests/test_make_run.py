"""The README's first command, `make run PROMPT=…`, on a fresh copy of the repository (issue 12 item 10): it reaches the
consent question on a terminal without touching the network, says how to agree without one, stops with a clear error
offline, and with consent and a local Hub serving the tiny model, writes a track and plays it (to a file)."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import sysconfig
import wave
from pathlib import Path

import pytest
from fake_hub import serve_tiny

REPO = Path(__file__).resolve().parents[1]
PROMPT = "lofi hip hop, rainy window"


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    """The repository's files as a clone would have them (tracked and new, not ignored), with a .venv that borrows this
    one's packages (installing from PyPI is `make install`'s job, checked by hand: a test must not need the network)."""
    copy = tmp_path_factory.mktemp("clone") / "lofi.nvim"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True
    )
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.split(b"\0")):
            source = REPO / os.fsdecode(name)
            if source.is_file():
                target = copy / os.fsdecode(name)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    else:  # not a git checkout (an unpacked archive): everything but environments and build output
        shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".git", ".venv*", "__pycache__", "*.egg-info", "bench-*"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(copy / ".venv")], check=True)
    purelib = Path(subprocess.run(
        [str(copy / ".venv/bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip())
    (purelib / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (copy / ".venv/.installed").touch()  # what `make install` leaves
    return copy


@pytest.fixture
def user_env(tmp_path: Path, monkeypatch) -> dict[str, str]:
    for name in ("XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "YES", "PLAYER", "PROMPT"):
        monkeypatch.delenv(name, raising=False)
    return os.environ


def make_run(copy: Path, *assignments: str, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "run", f"PROMPT={PROMPT}", "DURATION=5", *assignments],
        cwd=copy, stdin=stdin, capture_output=True, text=True, timeout=300,
    )


def test_asks_on_the_terminal_before_any_request(fresh_copy: Path, user_env, tmp_path: Path, monkeypatch) -> None:
    hub = serve_tiny(monkeypatch, tmp_path)
    try:
        main, child = pty.openpty()
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PROMPT={PROMPT}", "DURATION=5"],
            cwd=fresh_copy, stdin=child, stdout=subprocess.PIPE, stderr=child, text=False,
        )
        os.close(child)
        seen = b""
        while b"[y/N]" not in seen:
            ready, _, _ = select.select([main], [], [], 120)
            assert ready, f"no question within 120 s; saw {seen!r}"
            seen += os.read(main, 4096)
        assert b"Download the MusicGen small model" in seen and b"CC BY-NC 4.0" in seen and b"GB" in seen
        assert hub.requests == []  # asked before anything reached the Hub
        os.write(main, b"n\n")
        assert proc.wait(timeout=60) != 0
        rest = b""
        while select.select([main], [], [], 0)[0]:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break
            if not chunk:
                break
            rest += chunk
        os.close(main)
        assert b"download declined" in rest and b"Traceback" not in seen + rest
        assert b"make run YES=1" in rest and b"make run MODEL_DIR=DIR" in rest  # issue 20 item 5: not a dead end
        assert hub.requests == []
    finally:
        hub.stop()


def test_without_a_terminal_it_says_how_to_agree(fresh_copy: Path, user_env, tmp_path: Path, monkeypatch) -> None:
    hub = serve_tiny(monkeypatch, tmp_path)
    try:
        done = make_run(fresh_copy)
    finally:
        hub.stop()
    assert done.returncode != 0 and "make run YES=1" in done.stderr and "Traceback" not in done.stderr
    assert hub.requests == []


def test_offline_it_stops_at_the_download_with_a_clear_error(fresh_copy: Path, user_env, tmp_path: Path, monkeypatch) -> None:
    hub = serve_tiny(monkeypatch, tmp_path)
    hub.stop()  # nothing listens there any more
    done = make_run(fresh_copy, "YES=1")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "MODEL_DOWNLOAD_FAILED: cannot reach the HuggingFace Hub" in done.stderr and "make run MODEL_DIR=DIR" in done.stderr


def test_with_consent_it_downloads_composes_and_plays(fresh_copy: Path, user_env, tmp_path: Path, monkeypatch) -> None:
    if not shutil.which("mpv"):
        pytest.skip("mpv is not installed (`make test` installs it when run as root)")
    hub = serve_tiny(monkeypatch, tmp_path)
    played = tmp_path / "played.pcm"
    try:
        done = make_run(fresh_copy, "YES=1", f"PLAYER=mpv --no-video --really-quiet --ao=pcm --ao-pcm-file={played}")
    finally:
        hub.stop()
    assert done.returncode == 0, done.stderr
    assert hub.gets()
    wav = Path(done.stderr.strip().splitlines()[-1].removeprefix("the track is at "))
    assert wav.is_file() and wav.parent == Path(user_env["XDG_CACHE_HOME"]) / "lofi.nvim" / "runs"
    with wave.open(str(wav)) as track:
        assert track.getframerate() == 32000 and track.getnframes() == 5 * 32000
    assert f'"path": "{wav}"' in done.stdout and PROMPT in done.stdout
    assert played.stat().st_size > 32000 * 2 * 4  # mpv decoded seconds of it (its pcm output is at least 16-bit)


def test_model_dir_uses_files_the_user_has_without_asking(fresh_copy: Path, user_env, tmp_path: Path) -> None:
    """Issue 20 item 5: the failure texts name `make run MODEL_DIR=DIR`, so make run takes it."""
    from conftest import TINY

    done = make_run(fresh_copy, f"MODEL_DIR={TINY}", "PLAYER=none")
    assert done.returncode == 0, done.stderr
    assert "Download" not in done.stderr and "the track is at" in done.stderr
