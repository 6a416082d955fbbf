"""Issue 21 item 3: the endless radio goes on from the user's own audio (a file or a cached track): the stream's first
window continues that audio's codes exactly as a continued piece does, and the stream is new music only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import PROMPT, TINY

from lofi_engine import LofiError, MusicGen
from lofi_engine.musicgen.audio_prompt import read_audio_prompt
from lofi_engine.musicgen.radio import ContinuousStream
from lofi_engine.musicgen.streaming import DECODE_CONTEXT, LOOKAHEAD
from lofi_engine.shared.request import GenerateRequest

FIXTURES = Path(__file__).parent / "fixtures"
ENCODEC_TINY = FIXTURES / "encodec-tiny"
HOP = 640


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> MusicGen:
    return MusicGen.load(TINY, device="cpu", encodec_dir=ENCODEC_TINY, optimized_cache=tmp_path_factory.mktemp("optimized"))


@pytest.fixture(scope="module")
def mine(tmp_path_factory) -> Path:
    """3 s of a gliding tone, as a 16-bit WAV (what the service's engine reads)."""
    t = np.arange(3 * 32000) / 32000
    path = tmp_path_factory.mktemp("audio") / "mine.wav"
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * (220 + 40 * t) * t)).astype(np.float32), 32000)
    return path


def from_audio(model: MusicGen, source: Path, **request) -> ContinuousStream:
    given = model.prompt_codes(read_audio_prompt(source, model.sample_rate, context_sec=2.0))
    return ContinuousStream(model, GenerateRequest.parse({"prompt": PROMPT, "seed": 3, **request}), window_sec=6.0, context_sec=2.0, given=given)


def test_the_first_window_is_the_continuation_a_continued_piece_makes(model: MusicGen, mine: Path) -> None:
    radio = from_audio(model, mine)
    first = radio.next_window()
    piece = model.generate(PROMPT, duration_sec=6, seed=3, continue_from=mine, context_sec=2.0)
    given = 100  # 2 s of the audio's codes
    assert np.array_equal(first.codes, piece.codes[:, given:]) and first.codes_from == 0 and first.first_frame == 0
    assert len(first.audio) == (300 - LOOKAHEAD) * HOP  # new music only: the audio itself is not played again
    new_music = piece.audio[3 * 32000 :][: len(first.audio)]  # the piece is the audio, then the new music
    np.testing.assert_allclose(first.audio, new_music, atol=1e-4)
    # decoded with the audio's codes as context: the one-call decode of all the codes, from the new music on
    whole = model.decode_audio(piece.codes)[given * HOP :][: len(first.audio)]
    assert np.abs(first.audio - whole).max() < 1e-3


def test_it_streams_its_first_window_and_goes_on_like_any_stream(model: MusicGen, mine: Path) -> None:
    streamed, whole = from_audio(model, mine, top_k=1), from_audio(model, mine, top_k=1)
    chunks: list[tuple[int, np.ndarray]] = []
    first = streamed.next_window(on_chunk=lambda audio, at: chunks.append((at, audio.copy())))
    assert [at for at, _ in chunks] == [0, 100 * HOP, 200 * HOP]
    np.testing.assert_array_equal(np.concatenate([a for _, a in chunks]), first.audio)
    reference = whole.next_window()
    assert np.array_equal(first.codes, reference.codes)
    np.testing.assert_allclose(first.audio, reference.audio, atol=1e-4)
    segments = [first] + [streamed.next_window() for _ in range(3)]
    codes = np.concatenate([s.codes for s in segments], axis=1)
    assert [s.first_frame for s in segments] == [0, 290, 490, 690]  # gapless
    audio = np.concatenate([s.audio for s in segments])
    hop = model.settings.hop_length
    context = whole.given[:, -DECODE_CONTEXT:]
    rendered = model.decode_audio(np.concatenate([context, codes], axis=1))[DECODE_CONTEXT * hop :][: len(audio)]
    assert np.abs(audio - rendered).max() < 1e-3
    streamed.rewind(1)  # a steer heard in the first segment goes on from there
    again = streamed.next_window()
    assert again.first_frame == 290 and np.array_equal(again.codes, segments[1].codes)


# ---- through the service ---------------------------------------------------------------------------------------------


@pytest.fixture
def radio(heard_service):
    return lambda **settings: heard_service(
        model_dir=str(TINY), encodec_dir=str(ENCODEC_TINY), radio_window_sec=6, radio_context_sec=2, **settings
    )


def test_radio_from_a_file_plays_the_continuation_of_it(radio, model: MusicGen, mine: Path) -> None:
    client, events, out = radio()
    started = client.request("radio_start", {"prompt": PROMPT, "seed": 3, "from": str(mine)})
    assert started["active"] and started["strategy"] == "continue" and started["from"] == str(mine)
    segment = events.wait_event("radio_segment", stream_id=started["stream_id"], timeout=60)
    assert segment["start_sec"] == 0.0
    chunks = [d for n, d in events.events if n == "radio_chunk" and d["stream_id"] == started["stream_id"]]
    assert [c["start_sec"] for c in chunks][:3] == [0.0, 2.0, 4.0], "its first window is heard while it is composed"
    heard_first = soundfile.read(segment["path"], dtype="float32")[0]
    expected = from_audio(model, mine).next_window().audio
    np.testing.assert_allclose(heard_first, expected, atol=1e-4)  # the same continuation as the library's (16-bit file)
    events.wait_event("playback_start", track_id=f"{started['stream_id']}-000000")
    assert client.request("radio")["from"] == str(mine)
    events.wait_event("radio_segment", stream_id=started["stream_id"], nth=2, timeout=60)  # and it goes on
    assert client.request("radio_stop") == {"active": False}


def test_radio_from_a_track_takes_its_prompt(radio, mine: Path) -> None:
    client, events, _ = radio()
    tid = client.request("generate", {"prompt": "rainy piano", "duration_sec": 5, "seed": 1})["track_id"]
    events.wait_event("generation_complete", track_id=tid)
    started = client.request("radio_start", {"from": tid, "seed": 3})
    assert started["prompt"] == "rainy piano" and started["from"] == tid
    assert events.wait_event("radio_segment", stream_id=started["stream_id"], timeout=60)["prompt"] == "rainy piano"
    client.request("radio_stop")


@pytest.mark.parametrize(
    "params, code",
    [
        ({"prompt": PROMPT, "from": "/no/such/file.wav"}, "INVALID_AUDIO"),
        ({"prompt": PROMPT, "from": "."}, "INVALID_AUDIO"),
        ({"prompt": PROMPT, "from": "0123456789abcdef"}, "TRACK_NOT_FOUND"),
        ({"prompt": PROMPT, "from": 7}, "INVALID_PARAMS"),
        ({"prompt": PROMPT, "from": "MINE", "strategy": "same_prompt"}, "INVALID_PARAMS"),
        ({"from": "MINE"}, "INVALID_PROMPT"),  # a file has no prompt of its own
    ],
)
def test_a_refused_start_from_audio_changes_nothing(radio, mine: Path, params: dict, code: str) -> None:
    client, _, _ = radio()
    params = {k: str(mine) if v == "MINE" else v for k, v in params.items()}
    with pytest.raises(LofiError) as err:
        client.request("radio_start", params)
    assert err.value.code == code, err.value
    assert client.request("radio") == {"active": False, "mode": "stopped"}


def test_a_silent_file_ends_the_radio_with_invalid_audio(radio, tmp_path: Path) -> None:
    client, events, _ = radio()
    soundfile.write(tmp_path / "quiet.wav", np.zeros(64000, dtype=np.float32), 32000)
    started = client.request("radio_start", {"prompt": PROMPT, "from": str(tmp_path / "quiet.wav")})
    failed = events.wait_event("radio_error", stream_id=started["stream_id"], timeout=60)
    assert failed["code"] == "INVALID_AUDIO" and "quiet.wav is silent" in failed["message"]
    events.wait_event("radio_state", active=False)
