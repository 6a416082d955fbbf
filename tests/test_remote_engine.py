"""Issue 22: the engine reached through a command (as ssh would start it on another machine): `lofi engine --stdio`
in another working directory with its own cache. The queue, player, library and track store stay here; the audio
travels over the link as bytes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import PROMPT, TINY

from lofi_engine import LofiError
from lofi_engine.shared.version import VERSION
from lofi_engine.shared.wire import PROTOCOL, Wire

FIXTURES = Path(__file__).parent / "fixtures"


def engine_command(where: Path, *args: str) -> str:
    """What ssh would run on the other machine: the engine, in its own directory, with its own cache."""
    where.mkdir(parents=True, exist_ok=True)
    return f"sh -c 'cd {where} && exec {sys.executable} -m lofi_engine engine --stdio --cache-dir {where}/cache {' '.join(args)}'"


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return tmp_path / "box"


def test_a_piece_composed_over_the_link_is_the_one_composed_here(engine, remote: Path, tmp_path: Path) -> None:
    client, events = engine(model_dir=None, engine_command=engine_command(remote, "--model-dir", str(TINY)))
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})["track_id"]
    done = events.wait_event("generation_complete", track_id=tid, timeout=120)
    assert Path(done["path"]) == tmp_path / "cache" / "tracks" / f"{tid}.wav" and client.request("tracks")[0]["track_id"] == tid
    chunks = [d for n, d in events.events if n == "generation_chunk"]
    assert [c["start_sec"] for c in chunks] == [0.0, 2.0, 4.0] and all(c["path"].startswith(str(tmp_path / "cache")) for c in chunks)
    status = client.request("status")
    size = Path(done["path"]).stat().st_size
    assert size < status["engine_remote"]["link_bytes"]["received"] < 1.2 * size  # the audio came once: the track is its chunks joined
    assert status["engine_remote"]["version"] == VERSION and status["engine_remote"]["cache_dir"] == str(remote / "cache")
    assert status["engine_pid"] is not None
    # the model is the other side's: there, not here (this side has no model at all)
    assert status["model_available"] is True and status["model_version"] == done["model_version"] == status["engine_remote"]["model_versions"]["musicgen"]
    assert not [p for p in (remote / "cache" / "tracks").iterdir() if p.name != ".lock"]  # the store is here, not there
    here, here_events = engine(cache_dir=str(tmp_path / "here"))
    assert here.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})["track_id"] == tid
    local = here_events.wait_event("generation_complete", track_id=tid)
    assert Path(done["path"]).read_bytes() == Path(local["path"]).read_bytes()
    assert "engine@" in (tmp_path / "engine.log").read_text()  # the remote engine's log, in the engine log here


def test_continuing_audio_and_the_radio_go_over_the_link(heard_service, remote: Path, tmp_path: Path) -> None:
    command = engine_command(remote, "--model-dir", str(TINY), "--encodec-dir", str(FIXTURES / "encodec-tiny"))
    client, events, out = heard_service(engine_command=command, radio_window_sec=6, radio_context_sec=2)
    t = np.arange(2 * 32000) / 32000
    soundfile.write(tmp_path / "mine.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 32000)
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 2, "continue_from": str(tmp_path / "mine.wav"), "play": True})["track_id"]
    done = events.wait_event("generation_complete", track_id=tid, timeout=120)
    assert done["continue_from"] == str(tmp_path / "mine.wav") and done["duration_sec"] == 7.0
    events.wait_event("playback_start", track_id=tid)
    started = client.request("radio_start", {"prompt": PROMPT, "seed": 3, "from": str(tmp_path / "mine.wav")})
    segment = events.wait_event("radio_segment", stream_id=started["stream_id"], timeout=120)
    assert Path(segment["path"]).parent == tmp_path / "cache" / "radio" / started["stream_id"] and Path(segment["path"]).is_file()
    chunk = next(d for n, d in events.events if n == "radio_chunk" and d["stream_id"] == started["stream_id"])
    assert chunk["segment_path"] == segment["path"] and Path(chunk["path"]).parent == Path(segment["path"]).parent
    events.wait_event("playback_start", track_id=f"{started['stream_id']}-000000")
    events.wait_event("radio_segment", stream_id=started["stream_id"], nth=2, timeout=120)
    client.request("radio_stop")


def test_a_command_that_cannot_reach_an_engine_is_engine_unavailable_with_its_reason(engine, tmp_path: Path) -> None:
    client, events = engine(engine_command="no-such-command-anywhere --stdio")
    with pytest.raises(LofiError) as err:
        client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})
    assert err.value.code == "ENGINE_UNAVAILABLE" and "no-such-command-anywhere" in err.value.message
    said = "ssh: Could not resolve hostname box: Name or service not known"
    client.reconfigure(client.settings.__class__.from_dict({**client.settings.to_dict(), "engine_command": f"sh -c 'echo \"{said}\" >&2; exit 255'"}))
    for seed in (2, 3):  # tried again at the next request: the service goes on serving
        with pytest.raises(LofiError) as err:
            client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": seed})
        assert err.value.code == "ENGINE_UNAVAILABLE" and err.value.message.endswith(said) and "exit code 255" in err.value.message, err.value
    assert client.request("status")["engine"] == "stopped" and client.request("queue")["pending"] == []


def test_versions_that_differ_are_refused_naming_both(engine, tmp_path: Path) -> None:
    # the engine's side: a service of another protocol is told so, and the engine ends
    proc = subprocess.Popen([sys.executable, "-m", "lofi_engine", "engine", "--stdio", "--cache-dir", str(tmp_path / "box")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    wire = Wire(proc.stdout, proc.stdin)
    wire.send({"type": "hello", "protocol": PROTOCOL + 1, "version": "9.9.9", "settings": {}})
    answer, _ = wire.receive()
    assert answer["type"] == "error" and answer["code"] == "ENGINE_VERSION_MISMATCH"
    assert f"protocol {PROTOCOL} (lofi.nvim {VERSION})" in answer["message"] and "protocol 2 (lofi.nvim 9.9.9)" in answer["message"]
    assert proc.wait(timeout=30) == 1
    # the service's side: an engine of another protocol (a real process speaking the wire) is refused
    old = tmp_path / "old_engine.py"
    old.write_text(
        "import sys\nsys.path.insert(0, %r)\nfrom lofi_engine.shared.wire import Wire\n"
        "w = Wire(sys.stdin.buffer, sys.stdout.buffer)\nw.receive()\n"
        "w.send({'type': 'hello', 'protocol': 0, 'version': '0.0.1', 'host': 'old', 'available': {}})\nw.receive()\n" % str(Path(__file__).parents[1])
    )
    client, events = engine(engine_command=f"{sys.executable} {old}")
    with pytest.raises(LofiError) as err:
        client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})
    assert err.value.code == "ENGINE_VERSION_MISMATCH" and "lofi.nvim 0.0.1" in err.value.message and f"lofi.nvim {VERSION}" in err.value.message


def test_a_dropped_link_starts_the_job_again_and_nothing_is_lost(engine, remote: Path, tmp_path: Path) -> None:
    from slow_model import slow_copy

    slow = slow_copy(tmp_path / "slow-model", products=16)
    client, events = engine(model_dir=None, engine_command=engine_command(remote, "--model-dir", str(slow)), threads=1)
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})["track_id"]
    queued = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 2})["track_id"]
    events.wait_event("generation_progress", track_id=tid, timeout=120)
    first = client.engine_pid
    os.kill(first, signal.SIGKILL)  # ssh killed, the network gone
    warned = events.wait_event("service_warning", code="ENGINE_UNAVAILABLE")
    assert "starts again in 1 s (try 1 of 6)" in warned["message"], warned
    events.wait_event("generation_complete", track_id=tid, timeout=300)
    events.wait_event("generation_complete", track_id=queued, timeout=300)
    assert client.engine_pid != first
    assert not [d for n, d in events.events if n == "generation_error"]


def test_a_hung_link_is_caught_by_the_heartbeat(engine, remote: Path) -> None:
    from slow_model import slow_copy

    slow = slow_copy(remote / "slow-model", products=16)
    client, events = engine(model_dir=None, engine_command=engine_command(remote, "--model-dir", str(slow)), threads=1, stall_timeout_sec=3)
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})["track_id"]
    events.wait_event("generation_progress", track_id=tid, timeout=120)
    hung = client.engine_pid
    os.kill(hung, signal.SIGSTOP)  # the network hangs: nothing comes, nothing closes
    failed = events.wait_event("generation_error", track_id=tid, timeout=60)
    assert failed["code"] == "MODEL_INFERENCE_FAILED" and "stopped responding" in failed["message"]
    with pytest.raises(ProcessLookupError):
        os.kill(hung, 0)  # ended, not left behind
    again = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 2})["track_id"]
    events.wait_event("generation_complete", track_id=again, timeout=300)


def test_the_remote_asks_for_its_model_naming_the_host_and_its_download_streams_back(engine, remote: Path, monkeypatch, tmp_path: Path) -> None:
    from fake_hub import serve_tiny

    hub = serve_tiny(monkeypatch, tmp_path)  # the other side reaches this stand-in Hub (its environment is this one's)
    try:
        client, events = engine(model_dir=None, engine_command=engine_command(remote))
        tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})["track_id"]
        asked = events.wait_event("consent_required", track_id=tid)
        status = client.request("status")
        assert asked["variant"] == "small" and asked["host"] == status["engine_remote"]["host"] and status["model_available"] is False
        assert hub.requests == []
        client.request("download", {"consent": True})
        done = events.wait_event("download_complete", variant="small", timeout=120)
        assert done["path"] == str(remote / "cache" / "models" / "small")  # the model is there
        assert [p for p in events.names("download_progress")][-1]["percent"] == 100
        events.wait_event("generation_complete", track_id=tid, timeout=120)
        assert not (tmp_path / "cache" / "models").exists()  # and not here
        assert client.request("status")["model_available"] is True  # what :LofiDownload reads: "already available"
    finally:
        hub.stop()


def test_the_editor_runs_its_engine_elsewhere_and_checkhealth_checks_it(nvim, remote: Path, tmp_path: Path) -> None:
    """Lua: engine.command (a list, like player.cmd) or engine.host (ssh); the tracks land here; :checkhealth asks the
    other side (reachable, version, model, providers)."""
    remote.mkdir(parents=True)
    command = ["sh", "-c", f"cd {remote} && exec {sys.executable} -m lofi_engine engine --stdio --cache-dir {remote}/cache --model-dir {TINY}"]
    expanded = nvim.exec_lua("require('lofi').setup({engine = {host = 'me@box.lan'}}); return require('lofi.core.config').engine_command()")
    assert expanded == "ssh -T me@box.lan lofi engine --stdio"
    from test_nvim_schema import setup_error

    assert "engine.host must be a host ssh can reach (box, me@box.lan), or nil, not \"box; rm -rf ~\"" in setup_error(nvim, {"engine": {"host": "box; rm -rf ~"}})
    assert "engine.command must be a list of strings like { 'ssh', '-T', 'box', 'lofi', 'engine', '--stdio' }" in setup_error(nvim, {"engine": {"command": "ssh box"}})
    nvim.exec_lua("require('lofi').setup(...)", {"engine": {"command": command}, "cache": {"dir": str(tmp_path / "cache")}, "autoplay": False})
    track = nvim.exec_lua("""
      local done
      require('lofi').generate({prompt = 'over there', duration_sec = 5, seed = 1}, function(err, track) done = {err = err, track = track} end)
      vim.wait(120000, function() return done ~= nil end, 10)
      return done
    """)
    assert track.get("err") is None and track["track"]["path"].startswith(str(tmp_path / "cache")), track
    nvim.command("checkhealth lofi")
    text = "\n".join(nvim.current.buffer[:])
    assert f"reached through `sh -c 'cd {remote}" in text and f"lofi.nvim {VERSION}, protocol {PROTOCOL}" in text, text
    assert "the small model is on" in text and "execution providers on" in text, text
    assert "no ACE-Step export on" in text and "no ACE-Step export in" not in text, text  # the export is asked of that side too
    nvim.exec_lua("require('lofi').setup(...)", {"engine": {"command": ["no-such-command-anywhere"]}, "cache": {"dir": str(tmp_path / "cache")}})
    nvim.command("bwipeout! | checkhealth lofi")
    text = "\n".join(nvim.current.buffer[:])
    assert "cannot be reached: ENGINE_UNAVAILABLE: cannot start the engine command `no-such-command-anywhere`" in text, text


def test_the_command_line_composes_through_the_engine_command(remote: Path, tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]

    def lofi(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lofi_engine", "generate", PROMPT, "--duration", "5", "--seed", "1", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                              env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONPATH": str(repo)})

    done = lofi("--engine-command", engine_command(remote, "--model-dir", str(TINY)), "--cache-dir", str(tmp_path / "cache"), "--output", "there.wav")
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)
    assert meta["path"] == "there.wav" and meta["duration_sec"] == 5.0
    here = lofi("--model-dir", str(TINY), "--cache-dir", str(tmp_path / "here"), "--output", "here.wav")
    assert here.returncode == 0, here.stderr
    assert json.loads(here.stdout)["track_id"] == meta["track_id"]
    assert (tmp_path / "there.wav").read_bytes() == (tmp_path / "here.wav").read_bytes()
    failed = lofi("--engine-command", "no-such-command-anywhere --stdio", "--output", "never.wav")
    assert failed.returncode == 1 and "ENGINE_UNAVAILABLE: cannot start the engine command" in failed.stderr and "Traceback" not in failed.stderr
    assert not (tmp_path / "never.wav").exists()


def test_over_a_real_ssh_the_piece_is_composed_there_and_played_here(heard_service, tmp_path: Path) -> None:
    """Item 5: a real `ssh localhost` (OpenSSH's server started for this test, as root): the engine runs at the end of
    it in its own directory, and the piece is heard here while it is composed."""
    import sshd

    reason = sshd.why_not()
    if reason:
        pytest.skip(reason)
    server = sshd.Sshd(tmp_path / "sshd")
    try:
        box = tmp_path / "box"
        box.mkdir()
        remote = f"'cd {box} && exec {sys.executable} -m lofi_engine engine --stdio --cache-dir {box}/cache --model-dir {TINY}'"
        client, events, out = heard_service(engine_command=server.command(f"sh -c {remote}"), playlist_loop=False)
        tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1, "play": True})["track_id"]
        events.wait_event("generation_complete", track_id=tid, timeout=120)
        events.wait_event("playback_end", track_id=tid, reason="finished", timeout=120)
        assert client.request("status")["engine_remote"]["cache_dir"] == str(box / "cache")
        assert (tmp_path / "cache" / "tracks" / f"{tid}.wav").is_file()
    finally:
        server.stop()


def test_while_the_other_machine_cannot_be_reached_the_jobs_wait_and_run_when_it_can(engine, remote: Path, tmp_path: Path) -> None:
    """A link that drops and cannot be made again at once (the network is down a while): the job in flight and the
    queued one wait, tried again after 1, 2, 4 … s, and run once the other machine answers; nothing is lost."""
    from slow_model import slow_copy

    slow = slow_copy(tmp_path / "slow-model", products=16)
    down = tmp_path / "network-down"
    said = "ssh: connect to host box port 22: Network is unreachable"
    script = (f"if [ -e {down} ]; then echo '{said}' >&2; exit 255; fi; cd {remote} && "
              f"exec {sys.executable} -m lofi_engine engine --stdio --cache-dir {remote}/cache --model-dir {slow}")
    remote.mkdir()
    client, events = engine(model_dir=None, engine_command=f"sh -c \"{script}\"", threads=1)
    tid = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})["track_id"]
    queued = client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 2})["track_id"]
    events.wait_event("generation_progress", track_id=tid, timeout=120)
    down.touch()
    os.kill(client.engine_pid, signal.SIGKILL)  # the link drops, and the network stays down
    events.wait_event("service_warning", code="ENGINE_UNAVAILABLE", nth=2, timeout=60)  # the drop, then a try that failed
    warnings = [d["message"] for d in events.names("service_warning")]
    assert "the link to the engine dropped; the generate starts again in 1 s (try 1 of 6)" in warnings[0], warnings
    assert said in warnings[1] and "starts again in 2 s (try 2 of 6)" in warnings[1], warnings
    assert [j["track_id"] for j in client.request("queue")["pending"]] == [tid, queued]  # nothing lost, order kept
    down.unlink()  # the network is back
    events.wait_event("generation_complete", track_id=tid, timeout=300)
    events.wait_event("generation_complete", track_id=queued, timeout=300)
    assert not events.names("generation_error")


def test_what_is_not_the_engine_protocol_is_said_not_obeyed(engine, remote: Path, tmp_path: Path) -> None:
    """A login script printing a banner on stdout (what breaks binary protocols over ssh) is ENGINE_UNAVAILABLE saying
    something else writes to the stream; bytes that are not the protocol make the engine say so in its log and end."""
    banner = engine_command(remote, "--model-dir", str(TINY)).replace("sh -c 'cd", "sh -c 'echo Welcome to box; cd", 1)
    client, events = engine(model_dir=None, engine_command=banner)
    with pytest.raises(LofiError) as err:
        client.request("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 1})
    assert err.value.code == "ENGINE_UNAVAILABLE" and "something else writing to this stream" in err.value.message, err.value
    for garbage in (b"GET / HTTP/1.1\r\n\r\n", b"J\xff\xff\xff\xff", b"J\x00\x00\x00\x05{oops"):
        done = subprocess.run([sys.executable, "-m", "lofi_engine", "engine", "--stdio", "--cache-dir", str(tmp_path / "box")],
                              input=garbage, capture_output=True, timeout=60)
        assert done.returncode == 2 and done.stdout == b"" and b"Traceback" not in done.stderr, done
        assert b"not a service of the engine protocol" in done.stderr
