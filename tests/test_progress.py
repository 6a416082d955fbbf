"""SC-003: percent and ETA that tell the truth, also for long tracks whose later steps are slower."""

from __future__ import annotations

from lofi_engine.engine.progress import ProgressReporter
from lofi_engine.shared.eta import EtaEstimator


def test_eta_follows_step_cost_growing_with_position() -> None:
    # Two windows like a 45 s track: cache positions 1…1503, then 601…1353; a step costs 70 ms + 60 µs/position.
    positions = list(range(1, 1504)) + list(range(601, 1354))
    cost = [0.070 + 60e-6 * p for p in positions]
    eta = EtaEstimator(positions)
    for done in range(1, 400):
        eta.record(done - 1, cost[done - 1])
    truth = sum(cost[399:])
    assert abs(eta.eta(399) - truth) / truth < 0.02
    naive = sum(cost[:399]) / 399 * (len(positions) - 399)
    assert (truth - naive) / truth > 0.15, "a plain average would promise far too little here"


def test_reporter_emits_every_5_percent_in_order_and_ends_at_99_with_all_tokens() -> None:
    events = []
    reporter = ProgressReporter("t", EtaEstimator(list(range(1, 38))), lambda name, data: events.append(data))  # 37 steps
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
