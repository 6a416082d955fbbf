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
    """Throwaway XDG dirs and no rplugin manifest: the plugin registers its own python3 host (the repo's .venv), as
    it does for a user who never ran `:UpdateRemotePlugins` and has no `g:python3_host_prog`.

    ``setenv`` is pytest's ``monkeypatch.setenv``: the child Neovim inherits this process's environment.
    """
    env = {
        "XDG_CONFIG_HOME": home / "config",
        "XDG_DATA_HOME": home / "data",
        "XDG_STATE_HOME": home / "state",
        "XDG_CACHE_HOME": home / "cache",
        "NVIM_RPLUGIN_MANIFEST": home / "rplugin.vim",  # never written: nothing but the plugin itself registers it
    }
    for key, value in env.items():
        setenv(key, str(value))
    return pynvim.attach("child", argv=nvim_argv())


def nvim_argv() -> list[str]:
    return [nvim_executable(), "--embed", "--headless", "-u", "NORC", "-i", "NONE", "-n", "--cmd", f"set rtp^={REPO}"]


def quit_nvim(nvim: pynvim.Nvim) -> None:
    """`:qa!` (the editor closes the channel as it exits, which pynvim reports as an error) and close."""
    try:
        nvim.command("qa!")
    except Exception:
        pass
    nvim.close()
