"""SC-003: percent and ETA that tell the truth, also for long tracks whose later steps are slower."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lofi_engine.engine.progress import ProgressReporter
from lofi_engine.musicgen.costs import CostStore, DecoderEta, StepCosts, job_units
from lofi_engine.musicgen.streaming import chunk_schedule
from lofi_engine.musicgen.windows import Window, finished_frames, plan_windows


TRUE = StepCosts(step_sec=0.045, step_sec_per_position=8e-6, prefill_sec_per_position=0.004, start_sec=0.3, decode_sec_per_frame=0.0015, chunk_sec=0.3, jobs=1)
COSTS = ("step_sec", "step_sec_per_position", "prefill_sec_per_position", "start_sec", "decode_sec_per_frame", "chunk_sec")


def simulated(windows: list[Window], machine: StepCosts, streamed: bool = False) -> tuple[list[float], float]:
    """What each unit of a job and its decode take on a machine whose real costs are ``machine``; ``streamed``:
    with the engine's 2 s chunks decoded as it goes (their time falls in the unit after the one they follow)."""
    units = [machine.unit(kind, position) for kind, position in job_units(windows)]
    decode = machine.decode(sum(w.new_frames for w in windows))
    if streamed:
        for unit, count in enumerate(chunk_schedule(finished_frames(windows, 4))):
            if unit + 1 < len(units):
                units[unit + 1] += count * machine.chunk_sec
            else:
                decode += count * machine.chunk_sec
    return units, decode


def test_costs_learned_from_a_job_are_this_machines() -> None:
    """SC-003: after one 45 s job (two windows) the price list is the machine's own, from a prior in steps."""
    windows = plan_windows(45, 50, 4)
    units, decode = simulated(windows, TRUE)
    learned = StepCosts.prior(cache_bytes_per_position=393_216, weight_bytes=1.45e9).learn(windows, units, 2250, decode, TRUE.chunk_sec)
    assert learned.jobs == 1
    for name in COSTS:
        assert getattr(learned, name) == pytest.approx(getattr(TRUE, name), rel=1e-6), name
    again = learned.learn(windows, [u * 2 for u in units], 2250, decode * 2)  # a busier machine: half-way there
    assert again.jobs == 2 and again.step_sec == pytest.approx(1.5 * TRUE.step_sec)


def test_eta_of_a_fresh_engine_is_within_10_percent_after_the_first_tenth() -> None:
    """SC-003 (issue 14 item 5): priced from the costs the last job left, on a machine now 30 % slower, with
    steps that cost more late in a window, the streamed chunks' decodes (none yet in the first tenth), later
    windows' prefills and the final decode still to come."""
    windows = plan_windows(45, 50, 4)
    units, decode = simulated(windows, replace(TRUE, **{k: 1.3 * getattr(TRUE, k) for k in COSTS}), streamed=True)
    eta = DecoderEta(windows, 2250, TRUE, chunk_schedule(finished_frames(windows, 4)))
    duration = sum(units) + decode
    elapsed = 0.0
    for done, seconds in enumerate(units, start=1):
        eta.record(done - 1, seconds)
        elapsed += seconds
        if elapsed >= duration / 10:
            truth = duration - elapsed
            assert abs(eta.eta(done) - truth) <= 0.01 * duration, done
    assert eta.eta(len(units)) == pytest.approx(decode), "the last step's ETA is the decode still to come"


def test_a_plain_average_of_steps_would_promise_too_little() -> None:
    """Why the price list knows positions: late steps read a longer cache."""
    windows = plan_windows(30, 50, 4)
    machine = replace(TRUE, step_sec_per_position=60e-6)
    units, decode = simulated(windows, machine)
    eta = DecoderEta(windows, 1500, machine)
    for i in range(300):
        eta.record(i, units[i])
    truth = sum(units[300:]) + decode
    assert eta.eta(300) == pytest.approx(truth, rel=1e-6)
    naive = sum(units[1:300]) / 299 * (len(units) - 300)
    assert (truth - naive) / truth > 0.15


def test_costs_are_kept_per_model_and_survive_a_broken_file(tmp_path: Path) -> None:
    store = CostStore(tmp_path / "costs.json")
    assert store.load("a") is None
    store.save("a", TRUE)
    store.save("b", replace(TRUE, step_sec=1.0))
    assert store.load("a") == TRUE and store.load("b").step_sec == 1.0
    assert not [p for p in tmp_path.iterdir() if p.name != "costs.json"], "no temp file left"
    (tmp_path / "costs.json").write_text("{not json", encoding="utf-8")
    assert store.load("a") is None  # priced from the prior again, not an error
    store.save("a", TRUE)
    assert store.load("a") == TRUE
    blocked = CostStore(tmp_path / "costs.json" / "inside")  # a file where a directory should be
    blocked.save("a", TRUE)  # logged, not raised


def test_reporter_emits_every_5_percent_in_order_and_ends_at_99_with_all_tokens() -> None:
    events = []
    reporter = ProgressReporter("t", DecoderEta([Window(0, 34, 37)], 34, TRUE), lambda name, data: events.append(data))  # 37 steps
    for done in range(1, 38):
        reporter(done, 37)
    assert [e["percent"] for e in events] == list(range(5, 100, 5)) + [99]
    assert events[-1]["tokens_generated"] == events[-1]["tokens_estimated"] == 37
    assert all(abs(e["percent"] - 100 * e["tokens_generated"] / 37) <= 5 for e in events[:-1])
    assert [e["tokens_generated"] for e in events] == sorted(e["tokens_generated"] for e in events)


def test_stage_eta_prices_an_unmeasured_stage_from_the_cost_model_then_from_measurements() -> None:
    """ACE-Step: 8 DiT steps then 24 decode chunks; the ETA is honest before and after the decode is measured."""
    from lofi_engine.shared.eta import StageEta

    units = ["diffusion"] * 8 + ["decode"] * 24
    costs = [48.0] * 8 + [12.0] * 24  # the cost model: a step is 4 chunks
    seconds = [50.0] * 8 + [13.0] * 24  # what the machine really takes
    eta = StageEta(units, costs)
    assert eta.eta(0) == 0.0  # nothing measured, no guess
    eta.record(0, seconds[0])
    truth = sum(seconds[1:])
    assert abs(eta.eta(1) - truth) / truth < 0.05
    for i in range(1, 9):
        eta.record(i, seconds[i])
    assert abs(eta.eta(9) - sum(seconds[9:])) < 1e-6  # the decode now priced from its own measurement


def test_a_finished_job_teaches_the_next_engine_its_prices(tmp_path: Path) -> None:
    """SC-003: the costs a real job measured are kept beside the optimized graphs, read by the next load (a fresh
    engine) and refined by its jobs; the job's cache buffers are let go before its decode."""
    from lofi_engine.musicgen.costs import CostStore
    from lofi_engine.musicgen.model import COSTS_FILE, MusicGen
    from tests.conftest import FIXTURES

    cache = tmp_path / "optimized"
    model = MusicGen.load(FIXTURES / "musicgen-tiny", device="cpu", optimized_cache=cache)
    assert model.costs.jobs == 0  # nothing measured on this machine yet: the prior
    model.generate("rain", duration_sec=5, seed=1)
    assert model.decoder.cache_addresses() == {}, "the cache is released before the decode"
    kept = CostStore(cache / COSTS_FILE).load(model.cost_key)
    assert kept is not None and kept.jobs == 1 and kept == model.costs
    assert kept.step_sec > 0 and kept.decode_sec_per_frame > 0
    fresh = MusicGen.load(FIXTURES / "musicgen-tiny", device="cpu", optimized_cache=cache)
    assert fresh.costs == kept
    fresh.generate("rain", duration_sec=5, seed=2)
    assert CostStore(cache / COSTS_FILE).load(fresh.cost_key).jobs == 2


def test_a_continuing_window_teaches_the_prefill_price_not_the_start() -> None:
    """The radio's windows open with a prefill of their context: that prices prefills, never a job's start."""
    window = Window(250, 750, 753)
    units, decode = simulated([window], TRUE)
    learned = TRUE.learn([window], units, 810, TRUE.decode(810))
    assert learned.start_sec == TRUE.start_sec
    assert learned.prefill_sec_per_position == pytest.approx(TRUE.prefill_sec_per_position, rel=1e-6)


def test_the_eta_knows_when_the_engine_streams_its_chunks() -> None:
    """The schedule the ETA prices (chunk decodes after which steps) is the one a real 40 s job (two windows)
    streams, every chunk but the last, which comes from the final decode."""
    from lofi_engine.musicgen.model import MusicGen
    from tests.conftest import FIXTURES

    model = MusicGen.load(FIXTURES / "musicgen-tiny", device="cpu")
    steps: list[int] = []
    emitted_after: list[int] = []
    out = model.generate("rain", duration_sec=40, seed=3, on_step=lambda done, total: steps.append(done),
                         on_chunk=lambda audio, start: emitted_after.append(len(steps)))
    schedule = chunk_schedule(finished_frames(model.windows(40), model.settings.num_codebooks))
    expected = [unit + 1 for unit, count in enumerate(schedule) for _ in range(count)]
    assert emitted_after[:-1] == expected and len(expected) == 19
    assert emitted_after[-1] == len(steps) and out.codes.shape[1] == 2000
