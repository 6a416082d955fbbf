"""Entry point of the player process, started by the service like the engine (multiprocessing "spawn")."""

import sys

from lofi_engine.shared.child_process import bootstrap


def player_main(conn, cancel, settings: dict, log_path: str, repo_root: str) -> None:
    """``settings``: the player command (crossfade, loop and volume arrive as a ``settings`` command; ``cancel`` is
    unused: the player stops on ``stop``)."""
    bootstrap(log_path, repo_root)

    import logging

    from lofi_engine.playback.player import Player

    logging.basicConfig(level=logging.INFO, format="%(asctime)s player[%(process)d] %(levelname)s %(message)s")
    logging.getLogger("lofi.player").info("player started under %s", sys.executable)
    Player(conn, tuple(settings["command"])).serve()
