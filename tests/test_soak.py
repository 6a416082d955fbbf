"""Issue 23's soak, one minute of it (`make soak` runs ten): the radio and the player through the real `lofi serve`
while mpv is stopped and continued, the engine is killed and the cache's disk is filled and freed. Every fault is
recovered from (pause and resume obeyed, segments again), no process is left behind, no error lacks its code, the
server exits cleanly and the player's memory does not grow."""

from __future__ import annotations

from pathlib import Path

from soak import FAULTS, soak, summary


def test_one_minute_of_faults_leaves_the_radio_playing_and_nothing_behind(tmp_path: Path) -> None:
    report = soak(minutes=1, period=15, work=tmp_path)
    assert [f.kind for f in report.faults] == list(FAULTS), summary(report)
    assert report.problems == [], summary(report)
    assert report.segments > 3 and not report.orphans
