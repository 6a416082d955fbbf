"""SC-003: percent and ETA that tell the truth, also for long tracks whose later steps are slower."""

from __future__ import annotations

from lofi_engine.progress import EtaEstimator, ProgressReporter


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
    reporter = ProgressReporter.for_positions("t", list(range(1, 38)), lambda name, data: events.append(data))  # 37 steps
    for done in range(1, 38):
        reporter(done, 37)
    assert [e["percent"] for e in events] == list(range(5, 100, 5)) + [99]
    assert events[-1]["tokens_generated"] == events[-1]["tokens_estimated"] == 37
    assert all(abs(e["percent"] - 100 * e["tokens_generated"] / 37) <= 5 for e in events[:-1])
    assert [e["tokens_generated"] for e in events] == sorted(e["tokens_generated"] for e in events)
