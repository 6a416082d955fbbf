"""Issue 21 item 2 (library): MusicGen continues the user's audio exactly as transformers' generate(input_values=…)
does, and the track is that audio followed by the new music, joined without a click."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import PROMPT, TINY

from lofi_engine import LofiError, MusicGen
from lofi_engine.audio.resample import resample
from lofi_engine.musicgen.audio_prompt import JOIN_FRAMES

FIXTURES = Path(__file__).parent / "fixtures"
TONE = np.load(FIXTURES / "musicgen-tiny-reference" / "encodec.npz")["tone_1s_audio"].astype(np.float32)
EXPECTED = np.load(FIXTURES / "musicgen-tiny-reference" / "audio_prompt_g3_codes.npy")
HOP = 640


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> MusicGen:
    return MusicGen.load(TINY, device="cpu", encodec_dir=FIXTURES / "encodec-tiny", optimized_cache=tmp_path_factory.mktemp("optimized"))


@pytest.mark.parametrize("form", ["merged", "split"])
def test_continuing_audio_is_token_exact_with_transformers(form: str, tmp_path: Path) -> None:
    """Greedy, guidance 3.0, 5 s more: the codes start with the audio's own, then transformers' continuation."""
    model = MusicGen.load(TINY, device="cpu", decoder=form, encodec_dir=FIXTURES / "encodec-tiny", optimized_cache=tmp_path)
    out = model.generate(PROMPT, 5, top_k=1, guidance_scale=3.0, continue_from=TONE)
    assert out.codes.shape == (4, 50 + 250)
    np.testing.assert_array_equal(out.codes, EXPECTED)


def test_the_track_is_the_audio_then_the_new_music_joined_without_a_click(model: MusicGen) -> None:
    out = model.generate(PROMPT, 5, seed=3, continue_from=TONE)
    assert len(out.audio) == len(TONE) + 5 * 32000 and out.duration_sec == 5
    fade = JOIN_FRAMES * HOP
    np.testing.assert_array_equal(out.audio[: len(TONE) - fade], TONE[: len(TONE) - fade])  # the user's audio as it was
    rendered = model.decode_audio(out.codes)  # what transformers returns: EnCodec's rendering of all the codes
    np.testing.assert_allclose(out.audio[len(TONE) :], rendered[50 * HOP :], atol=1e-3, rtol=0)  # the new music, exactly
    ramp = np.linspace(0, 1, fade, dtype=np.float32)
    seam = TONE[-fade:] * (1 - ramp) + rendered[50 * HOP - fade : 50 * HOP] * ramp
    np.testing.assert_allclose(out.audio[len(TONE) - fade : len(TONE)], seam, atol=1e-3, rtol=0)  # a crossfade, no jump


def test_the_chunks_are_the_audio_with_its_seam_as_soon_as_it_is_composed_then_the_new_music(model: MusicGen) -> None:
    """What a player plays while the piece is composed: the first chunk is the user's audio (its seam included) once
    the seam's frames are final, long before the end; then the new music; joined, they are the track."""
    chunks: list[tuple[int, np.ndarray]] = []
    steps: list[int] = []
    out = model.generate(PROMPT, 5, seed=3, continue_from=TONE, on_step=lambda done, total: steps.append(done),
                         on_chunk=lambda audio, first: chunks.append((first, audio.copy(), len(steps))))
    assert chunks[0][0] == 0 and len(chunks[0][1]) == len(TONE) and chunks[1][0] == len(TONE)
    assert chunks[0][2] <= 20 < len(steps)  # given after ≈ 13 of the 253 steps (the seam needs 10 frames composed)
    assert [first for first, *_ in chunks] == sorted(first for first, *_ in chunks)
    np.testing.assert_array_equal(np.concatenate([a for _, a, _ in chunks]), out.audio)


def test_any_file_at_any_rate_and_channel_count_is_read(model: MusicGen, tmp_path: Path) -> None:
    stereo = np.stack([TONE, 0.5 * TONE], axis=1)
    for name, rate, audio in (("a.flac", 32000, stereo), ("b.ogg", 44100, resample(TONE, 32000, 44100)), ("c.wav", 48000, resample(TONE, 32000, 48000))):
        soundfile.write(tmp_path / name, audio, rate)
        out = model.generate(PROMPT, 5, seed=1, continue_from=tmp_path / name)
        expected = (audio.mean(axis=1) if audio.ndim == 2 else resample(audio, rate, 32000))
        assert len(out.audio) == len(expected) + 5 * 32000, name
    long = np.tile(TONE, 40)  # 40 s: its last 10 s are continued
    out = model.generate(PROMPT, 5, seed=1, continue_from=long, top_k=1)
    short = model.generate(PROMPT, 5, seed=1, continue_from=long[-10 * 32000 :], top_k=1)
    assert np.array_equal(out.codes, short.codes) and len(out.audio) == len(long) + 5 * 32000


def test_bad_audio_gets_invalid_audio_naming_it(model: MusicGen, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not audio")
    soundfile.write(tmp_path / "silent.wav", np.zeros(32000 * 2, dtype=np.float32), 32000)
    soundfile.write(tmp_path / "short.wav", TONE[:8000], 32000)
    for source, words in (
        (tmp_path / "missing.wav", "missing.wav: no such file"), (tmp_path, "is not a regular file"),
        (tmp_path / "notes.txt", "notes.txt cannot be read as audio"), (tmp_path / "silent.wav", "silent.wav is silent"),
        (tmp_path / "short.wav", "short.wav is too short to continue: 0.25 s"), (Path("/dev/null"), "/dev/null is not a regular file"),
    ):
        with pytest.raises(LofiError) as err:
            model.generate(PROMPT, 5, continue_from=source)
        assert err.value.code == "INVALID_AUDIO" and words in err.value.message, err.value.message


def test_without_the_encoder_it_says_what_to_load(tiny: MusicGen) -> None:
    with pytest.raises(LofiError) as err:
        tiny.generate(PROMPT, 5, continue_from=TONE)
    assert err.value.code == "MODEL_LOAD_FAILED" and "encodec_dir" in err.value.message


def test_the_cli_continues_a_file_and_writes_it_followed_by_the_new_music(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    soundfile.write(tmp_path / "mine.flac", np.stack([TONE, TONE], axis=1), 32000)

    def lofi(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lofi_engine", "generate", PROMPT, "--model-dir", str(TINY), *args], cwd=repo, capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})

    done = lofi("--continue-from", str(tmp_path / "mine.flac"), "--encodec-dir", str(FIXTURES / "encodec-tiny"), "--duration", "5", "--seed", "2",
                "--output", str(tmp_path / "out.wav"))
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)
    written, rate = soundfile.read(tmp_path / "out.wav", dtype="float32")
    assert rate == 32000 and meta["duration_sec"] == 6.0 and len(written) == len(TONE) + 5 * 32000
    fade = JOIN_FRAMES * HOP
    given = soundfile.read(tmp_path / "mine.flac", dtype="float32")[0].mean(axis=1)  # as FLAC stored it (16 bits)
    np.testing.assert_allclose(written[: len(TONE) - fade], given[: len(TONE) - fade], atol=1e-6)
    plain = lofi("--duration", "5", "--seed", "2", "--output", str(tmp_path / "plain.wav"))
    assert json.loads(plain.stdout)["track_id"] != meta["track_id"]  # the audio continued is part of the id
    for args, words in (
        (("--continue-from", str(tmp_path / "mine.flac")), "MODEL_NOT_FOUND: not downloaded: EnCodec's weights. Download EnCodec's weights"),
        (("--continue-from", str(tmp_path / "nope.wav"), "--encodec-dir", str(FIXTURES / "encodec-tiny")), "INVALID_AUDIO: " + str(tmp_path / "nope.wav")),
    ):
        bad = lofi(*args, "--output", str(tmp_path / "bad.wav"))
        assert bad.returncode != 0 and words in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
        assert not (tmp_path / "bad.wav").exists()


def test_json_rpc_continues_a_file_or_a_cached_track(tmp_path: Path) -> None:
    """`generate {continue_from: path | track id}` through `lofi serve` with the encodec_dir setting: the track is
    the audio followed by the new music; the source is recorded; bad sources get coded errors."""
    from test_rpc import Server

    soundfile.write(tmp_path / "mine.wav", TONE, 32000)
    server = Server(tmp_path / "cache", "--encodec-dir", str(FIXTURES / "encodec-tiny"))
    try:
        first = server.call("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 2, "continue_from": str(tmp_path / "mine.wav")})["result"]
        done = server.read_until(lambda m: m.get("method") == "generation_complete" and m["params"]["track_id"] == first["track_id"])["params"]
        assert done["continue_from"] == str(tmp_path / "mine.wav") and done["duration_sec"] == 6.0
        audio, given = soundfile.read(done["path"], dtype="float32")[0], soundfile.read(tmp_path / "mine.wav", dtype="float32")[0]
        np.testing.assert_allclose(audio[: len(given) - JOIN_FRAMES * HOP], given[: len(given) - JOIN_FRAMES * HOP], atol=1e-6)
        again = server.call("generate", {"prompt": PROMPT, "duration_sec": 5, "seed": 2, "continue_from": first["track_id"]}, id=2)["result"]
        assert again["track_id"] != first["track_id"]
        longer = server.read_until(lambda m: m.get("method") == "generation_complete" and m["params"]["track_id"] == again["track_id"])["params"]
        assert longer["duration_sec"] == 11.0  # the 6 s track, then 5 s more
        for n, (source, code) in enumerate(((str(tmp_path / "nope.wav"), "INVALID_AUDIO"), (str(tmp_path), "INVALID_AUDIO"), ("0123456789abcdef", "TRACK_NOT_FOUND")), 3):
            refused = server.call("generate", {"prompt": PROMPT, "continue_from": source}, id=n)
            assert refused["error"]["data"]["code"] == code, refused
        soundfile.write(tmp_path / "quiet.wav", np.zeros(64000, dtype=np.float32), 32000)
        quiet = server.call("generate", {"prompt": PROMPT, "duration_sec": 5, "continue_from": str(tmp_path / "quiet.wav")}, id=9)["result"]
        failed = server.read_until(lambda m: m.get("method") == "generation_error" and m["params"]["track_id"] == quiet["track_id"])["params"]
        assert failed["code"] == "INVALID_AUDIO" and "quiet.wav is silent" in failed["message"]
    finally:
        assert server.close() == 0


def test_a_long_continuation_runs_several_windows_and_its_progress_counts_them(model: MusicGen) -> None:
    """30 s after 1 s of audio: two windows, the first holding the audio's codes; the ETA's units are its steps."""
    from lofi_engine.musicgen.audio_prompt import read_audio_prompt
    from lofi_engine.shared.request import GenerateRequest

    request = GenerateRequest.parse({"prompt": PROMPT, "duration_sec": 30, "seed": 1})
    prompt = read_audio_prompt(TONE, 32000)
    eta = model.progress_model(request, prompt)
    steps: list[int] = []
    out = model.run(request, on_step=lambda done, total: steps.append(total), continue_from=prompt)
    assert eta.total == steps[0] == len(steps) and len(model.windows(30, 50)) == 2
    assert out.codes.shape == (4, 50 + 1500) and len(out.audio) == len(TONE) + 30 * 32000


def test_the_last_decode_is_priced_on_the_frames_it_decodes(model: MusicGen) -> None:
    """The ETA's last decode of a continued piece: the frames after the last chunk (counted from the audio's
    end), with the decode's context, exactly the frames the streamer's last decode reads."""
    from lofi_engine.musicgen.streaming import DECODE_CONTEXT, AudioStreamer, tail_frames

    read: list[int] = []
    streamer = AudioStreamer(lambda codes: (read.append(codes.shape[1]), np.zeros(codes.shape[1] * HOP, np.float32))[1], HOP,
                             lambda audio, first: None, emitted_frames=50)
    codes = np.zeros((4, 50 + 250), dtype=np.int64)
    streamer.feed(300, lambda: codes)
    streamer.finish(codes)
    assert read[-1] == tail_frames(300, 50) == 300 - 250 + DECODE_CONTEXT
    assert tail_frames(300) == 300 - 200 + DECODE_CONTEXT  # a piece of its own: chunks from frame 0
