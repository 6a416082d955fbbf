"""Entry point of the engine process, started by the client with multiprocessing's "spawn" method.

It may run under another interpreter than the client (the plugin's own .venv while the editor's host is the
system Python), so before importing anything beyond what every interpreter preloads (os, sys, site) it takes
its own standard library and site-packages back from the path list spawn copied over from the client.
"""

import os
import sys


def engine_main(conn, cancel, config: dict, log_path: str, repo_root: str) -> None:
    """``cancel``: a multiprocessing Event the client sets to stop the running (ACE-Step) job."""
    _detach_stdio(log_path)
    _own_sys_path(repo_root)

    import logging

    from lofi_engine.engine.worker import Worker
    from lofi_engine.shared.settings import EngineConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s engine[%(process)d] %(levelname)s %(message)s")
    logging.getLogger("lofi.engine").info("engine started under %s", sys.executable)
    Worker(conn, EngineConfig.from_dict(config), cancel).serve()


def _detach_stdio(log_path: str) -> None:
    """stdin from /dev/null, stdout and stderr to the log: the client's fds may be an editor's RPC channel."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def _own_sys_path(repo_root: str) -> None:
    import site

    stdlib = os.path.dirname(os.__file__)
    sys.path[:] = [repo_root, stdlib, os.path.join(stdlib, "lib-dynload")]
    for directory in site.getsitepackages():
        site.addsitedir(directory)
