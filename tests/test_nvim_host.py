"""The remote plugin's own python3 host (issue 12 item 1): a real headless Neovim whose `python3` lacks pynvim, with no
`g:python3_host_prog` and no :UpdateRemotePlugins, still generates; the user's python3 provider and their other
remote plugins keep working and the plugin's functions are never registered on the user's host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pynvim
import pytest
import soundfile
from conftest import TINY
from nvim_session import nvim_argv, quit_nvim

GENERATE = """
local done
require('lofi').setup(...)
local result, err = require('lofi').generate({ prompt = 'rain', duration_sec = 5, seed = 3 }, function(e, track)
  done = { err = e, track = track }
end)
vim.wait(120000, function() return done ~= nil end, 10)
return { result = result, err = err, done = done }
"""


def python_without_pynvim() -> str:
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if Path(candidate).exists() and subprocess.run([candidate, "-c", "import pynvim"], capture_output=True).returncode != 0:
            return candidate
    pytest.skip("no python3 without pynvim on this machine")


def isolated_env(home: Path, path: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVIM", "VIRTUAL_ENV", "PYTHON"))}
    env.update(
        PATH=path, HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"),
        XDG_STATE_HOME=str(home / "state"), XDG_CACHE_HOME=str(home / "cache"), NVIM_RPLUGIN_MANIFEST=str(home / "rplugin.vim"),
    )
    return env


def attach(env: dict[str, str], *extra: str) -> pynvim.Nvim:
    old = os.environ.copy()
    try:  # pynvim's child session inherits this process's environment
        os.environ.clear()
        os.environ.update(env)
        return pynvim.attach("child", argv=[*nvim_argv(), *extra])
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_generates_when_the_editors_python3_lacks_pynvim(tmp_path: Path) -> None:
    bare = python_without_pynvim()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(bare)
    (bin_dir / "python").symlink_to(bare)
    env = isolated_env(tmp_path / "home", f"{bin_dir}:/usr/bin:/bin")
    nvim = attach(env)
    try:
        assert nvim.exec_lua("return vim.fn.exepath('python3')") == str(bin_dir / "python3")
        assert nvim.eval("has('python3')") == 0  # the editor's own python3 provider cannot start here
        opts = {"model": {"dir": str(TINY)}, "cache": {"dir": str(tmp_path / "cache")}, "autoplay": False, "notify": False}
        out = nvim.exec_lua(GENERATE, opts)
        assert out.get("err") is None and out["done"] and out["done"].get("err") is None, out
        assert soundfile.info(out["done"]["track"]["path"]).frames == 5 * 32000
        assert nvim.eval("exists('g:python3_host_prog')") == 0  # the user's provider settings are untouched
        # The host is the plugin's .venv interpreter, started by the plugin itself.
        host = nvim.exec_lua("return vim.fn['remote#host#IsRunning']('lofi_python3')")
        assert host
        assert not (tmp_path / "home" / "rplugin.vim").exists()
    finally:
        quit_nvim(nvim)


def test_other_remote_plugins_and_the_users_python3_host_keep_working(tmp_path: Path) -> None:
    """A user whose python3 has pynvim runs :UpdateRemotePlugins for another plugin: that plugin works, the manifest
    does not register lofi's functions on the user's host, and lofi still runs in its own host."""
    other = tmp_path / "other"
    (other / "rplugin" / "python3").mkdir(parents=True)
    (other / "rplugin" / "python3" / "other_plugin.py").write_text(
        "import os, pynvim\n\n"
        "@pynvim.plugin\n"
        "class Other:\n"
        "    def __init__(self, nvim):\n"
        "        self.nvim = nvim\n\n"
        "    @pynvim.function('OtherPid', sync=True)\n"
        "    def pid(self, args):\n"
        "        return os.getpid()\n"
    )
    env = isolated_env(tmp_path / "home", "/usr/bin:/bin")
    user_host = ["--cmd", f"set rtp+={other}", "--cmd", f"let g:python3_host_prog = '{sys.executable}'"]
    installer = attach(env, *user_host)
    installer.command("UpdateRemotePlugins")
    quit_nvim(installer)
    manifest = (tmp_path / "home" / "rplugin.vim").read_text()
    assert "OtherPid" in manifest and "Lofi" not in manifest

    nvim = attach(env, *user_host)
    try:
        other_pid = nvim.call("OtherPid")
        assert isinstance(other_pid, int)
        opts = {"model": {"dir": str(TINY)}, "cache": {"dir": str(tmp_path / "cache")}, "autoplay": False, "notify": False}
        out = nvim.exec_lua(GENERATE, opts)
        assert out["done"] and out["done"].get("err") is None, out
        assert nvim.eval("g:python3_host_prog") == sys.executable
        assert nvim.eval("py3eval('1 + 1')") == 2  # the user's :python3 still works
        assert nvim.call("OtherPid") == other_pid
        channels = nvim.exec_lua(
            "local h = vim.fn['remote#host#Require']; return { h('lofi_python3'), h('python3') }"
        )
        assert channels[0] != channels[1]  # lofi has a process of its own
    finally:
        quit_nvim(nvim)
