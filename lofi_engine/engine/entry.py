"""Entry point of the engine process, started by the client with multiprocessing's "spawn" method.

It may run under another interpreter than the client (the plugin's own .venv while the editor's host is the
system Python): :func:`bootstrap` gives it its own paths before anything but the standard library is imported.
"""

import sys

from lofi_engine.shared.child_process import bootstrap


def engine_main(conn, cancel, config: dict, log_path: str, repo_root: str) -> None:
    """``cancel``: a multiprocessing Event the client sets to stop the running (ACE-Step) job."""
    bootstrap(log_path, repo_root)

    import logging

    from lofi_engine.engine.worker import Worker
    from lofi_engine.shared.settings import EngineConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s engine[%(process)d] %(levelname)s %(message)s")
    logging.getLogger("lofi.engine").info("engine started under %s", sys.executable)
    Worker(conn, EngineConfig(**config), cancel).serve()
