"""A real headless Neovim (from the venv) with lofi.nvim's runtime path and its real remote plugin."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pynvim

REPO = Path(__file__).resolve().parents[1]


def nvim_executable() -> str:
    found = shutil.which("nvim", path=str(Path(sys.executable).parent))
    if not found:
        raise RuntimeError("nvim is not in the venv: run `make install`")
    return found


def start_nvim(home: Path, setenv) -> pynvim.Nvim:
    """Throwaway XDG dirs; `:UpdateRemotePlugins` in one editor, then a fresh editor that loads the manifest at
    startup, exactly as a user does after installing.

    ``setenv`` is pytest's ``monkeypatch.setenv``: the child Neovim inherits this process's environment.
    """
    env = {
        "XDG_CONFIG_HOME": home / "config",
        "XDG_DATA_HOME": home / "data",
        "XDG_STATE_HOME": home / "state",
        "XDG_CACHE_HOME": home / "cache",
        "NVIM_RPLUGIN_MANIFEST": home / "rplugin.vim",
    }
    for key, value in env.items():
        setenv(key, str(value))
    argv = [
        nvim_executable(), "--embed", "--headless", "-u", "NORC", "-i", "NONE", "-n",
        "--cmd", f"set rtp^={REPO}",
        "--cmd", f"let g:python3_host_prog = '{sys.executable}'",
    ]
    if not env["NVIM_RPLUGIN_MANIFEST"].exists():
        installer = pynvim.attach("child", argv=argv)
        installer.command("UpdateRemotePlugins")
        quit_nvim(installer)
    return pynvim.attach("child", argv=argv)


def quit_nvim(nvim: pynvim.Nvim) -> None:
    """`:qa!` (the editor closes the channel as it exits, which pynvim reports as an error) and close."""
    try:
        nvim.command("qa!")
    except Exception:
        pass
    nvim.close()
