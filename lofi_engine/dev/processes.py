"""Processes as /proc shows them: what lofi started, and whether it is still there."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for the user
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def descendants(root: int) -> dict[int, list[str]]:
    """Every process under ``root`` (children, grandchildren, …) with its argv."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found: dict[int, list[str]] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                try:
                    found[pid] = [a for a in (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0") if a]
                except OSError:
                    found[pid] = []
                frontier.append(pid)
    return found
