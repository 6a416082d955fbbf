"""The first thing a child process (engine, player) does, before it imports anything beyond the standard library.

A child may run under another interpreter than the service (the plugin's own .venv while the editor's host is
the system Python): it takes its own standard library and site-packages back from the path list spawn copied
over, and moves its stdio off the service's (which may be an editor's RPC channel) onto its log.
"""

import os
import sys


def bootstrap(log_path: str, repo_root: str) -> None:
    _own_process_group()
    _detach_stdio(log_path)
    _own_sys_path(repo_root)


def _own_process_group() -> None:
    """A process group of its own, which what it starts (the player's mpv) joins: the service ends them together."""
    if hasattr(os, "setpgid"):
        try:
            os.setpgid(0, 0)
        except OSError:  # already a group leader
            pass


def _detach_stdio(log_path: str) -> None:
    """stdin from /dev/null, stdout and stderr to the log (the service chose a folder it could write; should it have
    become unwritable since, to /dev/null): the client's fds may be an editor's RPC channel."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    try:
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        log = os.open(os.devnull, os.O_WRONLY)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def _own_sys_path(repo_root: str) -> None:
    import site

    stdlib = os.path.dirname(os.__file__)
    sys.path[:] = [repo_root, stdlib, os.path.join(stdlib, "lib-dynload")]
    for directory in site.getsitepackages():
        site.addsitedir(directory)
