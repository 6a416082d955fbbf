"""Issue 12 on a real screen: Neovim's own TUI in tmux, with Neovim's own vim.notify, read with `tmux capture-pane`.
The editor's state is read over its --listen socket (nvim_get_mode answers even at a hit-enter prompt); generation
ends are written to a file by the editor, so every wait is on an event, never on a fixed sleep."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pynvim
import pytest

from conftest import TINY
from nvim_session import REPO, nvim_executable

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

STATUSLINE = r"%<%f\ %h%w%m%r%=%{v:lua.require'lofi'.statusline()}\ \ %-14.(%l,%c%V%)\ %P"

INIT = """
require('lofi').setup({model = {dir = %(model)r}, cache = {dir = %(cache)r}, autoplay = false})
local marker = %(marker)r
require('lofi').on('generation_complete', function(d) vim.fn.writefile({d.prompt}, marker, 'a') end)
vim.cmd([[set laststatus=2 statusline=%(statusline)s]])
"""


class Screen:
    def __init__(self, tmp_path: Path, init_text: str | None = None, extra_env: dict[str, str] | None = None, columns: int = 120) -> None:
        self.name = "lofi-" + uuid.uuid4().hex[:8]
        self.socket = str(tmp_path / "nvim.sock")
        self.marker = tmp_path / "completed.txt"
        self.prompts_seen: list[str] = []
        home = tmp_path / "home"
        env = {f"XDG_{k}_HOME": str(home / k.lower()) for k in ("CONFIG", "DATA", "STATE", "CACHE")}
        env.update(extra_env or {})
        init = tmp_path / "init.lua"
        init.write_text((init_text or INIT) % {"model": str(TINY), "cache": str(tmp_path / "cache"),
                                               "marker": str(self.marker), "statusline": STATUSLINE})
        command = [nvim_executable(), "-u", "NORC", "-i", "NONE", "-n", "--cmd", f"set rtp^={REPO}",
                   "--listen", self.socket, "-c", f"luafile {init}"]
        line = shlex.join(["env", *(f"{k}={v}" for k, v in env.items()), *command])
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(columns), "-y", "30", line], check=True)
        self.wait(lambda: os.path.exists(self.socket), "the editor's socket")
        self.nvim = pynvim.attach("socket", path=self.socket)
        self.wait(lambda: self.nvim.exec_lua("return package.loaded['lofi'] ~= nil"), "lofi loaded")

    def text(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True).stdout

    def lines(self) -> list[str]:
        return self.text().rstrip("\n").split("\n")

    def prompted(self) -> bool:
        """A hit-enter or more prompt: on the screen or in the editor's mode."""
        mode = self.nvim.request("nvim_get_mode")
        text = self.text()
        return bool(mode["blocking"]) or mode["mode"] in ("r", "rm") or "Press ENTER" in text or "-- More --" in text

    def type(self, keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", keys], check=True)

    def enter(self) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, "Enter"], check=True)

    def command(self, text: str) -> None:
        self.type(":" + text)
        self.enter()

    def completed(self) -> list[str]:
        return self.marker.read_text().splitlines() if self.marker.exists() else []

    def wait(self, condition, what: str, timeout: float = 60.0, no_prompt: bool = False):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if no_prompt:
                assert not self.prompted(), f"a prompt while waiting for {what}:\n{self.text()}"
            value = condition()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}:\n{self.text()}")

    def close(self) -> None:
        try:
            self.nvim.command("qa!")
        except Exception:
            pass
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def screen(tmp_path: Path):
    s = Screen(tmp_path)
    yield s
    s.close()


def test_four_tracks_in_a_row_raise_no_prompt_and_leave_no_progress_in_messages(screen: Screen) -> None:
    for i in range(4):
        screen.command(f"LofiGenerate track {i} duration=5 seed={i}")
    screen.wait(lambda: len(screen.completed()) == 4, "four tracks", timeout=120, no_prompt=True)
    assert not screen.prompted()
    messages = screen.nvim.exec_lua("return vim.api.nvim_exec2('messages', {output = true}).output").splitlines()
    lofi = [m for m in messages if m.startswith("lofi")]
    assert not [m for m in lofi if "%" in m], lofi  # 80 progress events, none kept
    assert len([m for m in lofi if m.startswith("lofi: ready ")]) == 4, lofi
    assert len(lofi) <= 11, lofi  # 4 starts, 4 completions, 3 "queued at position"
    shown = screen.nvim.exec_lua("return #require('lofi.ui.messages').progress_log")
    assert shown >= 80


def test_progress_never_covers_insert_mode(screen: Screen) -> None:
    screen.command("LofiGenerate typing along duration=20 seed=5")
    screen.wait(lambda: screen.nvim.exec_lua("return #require('lofi.ui.messages').progress_log") > 0, "progress")
    screen.type("i")
    screen.wait(lambda: screen.nvim.request("nvim_get_mode")["mode"] == "i", "insert mode")
    screen.wait(lambda: screen.lines()[-1].startswith("-- INSERT --"), "-- INSERT --")
    before = screen.nvim.exec_lua("return #require('lofi.ui.messages').progress_log")
    bottom = []

    def more_progress() -> bool:
        bottom.append(screen.lines()[-1])
        return screen.nvim.exec_lua("return #require('lofi.ui.messages').progress_log") >= before + 3

    screen.wait(more_progress, "more progress")
    assert all(line.startswith("-- INSERT --") for line in bottom), [line for line in bottom if "INSERT" not in line]
    screen.type("\x1b")
    screen.wait(lambda: len(screen.completed()) == 1, "the track", no_prompt=True)


def statusline_row(screen: Screen) -> str:
    return screen.lines()[-2]


def test_the_statusline_follows_the_job_even_from_the_queue_window_and_clears_at_its_end(screen: Screen) -> None:
    screen.command("LofiGenerate statusline please duration=30 seed=6")
    percent = re.compile(r"♪ (\d+)%")
    screen.wait(lambda: percent.search(statusline_row(screen)), "progress on the statusline")
    row = statusline_row(screen)
    assert "[No Name]" in row and re.search(r"0,0-1\s+All", row), f"the default statusline's fields stay: {row}"
    screen.command("LofiQueue")
    screen.wait(lambda: screen.nvim.exec_lua("return vim.api.nvim_win_get_config(0).relative") == "editor", "the queue window")
    seen_status, seen_queue = set(), set()

    def progressed() -> bool:
        text = screen.text()
        found = percent.search(statusline_row(screen))
        if found:
            seen_status.add(found.group(1))
        queued = re.search(r"running\s+(\d+)%", text)
        if queued:
            seen_queue.add(queued.group(1))
        return len(seen_status) >= 3 and len(seen_queue) >= 3

    screen.wait(progressed, "the statusline and the queue window to move while the queue window has focus")
    screen.wait(lambda: screen.completed() == ["statusline please"], "the track", no_prompt=True)
    screen.wait(lambda: "♪" not in screen.text(), "the statusline to clear")
    screen.wait(lambda: "nothing is generating" in screen.text(), "the queue window to show the end too")


FIRST_RUN_INIT = """
require('lofi').setup({cache = {dir = %(cache)r}, autoplay = false})
local marker = %(marker)r
require('lofi').on('generation_complete', function(d) vim.fn.writefile({d.prompt}, marker, 'a') end)
"""


def test_answering_the_download_question_raises_no_prompt(tmp_path: Path, monkeypatch) -> None:
    """Neovim's own vim.ui.select (inputlist) answered with 1: the messages after it must not raise hit-enter."""
    from fake_hub import serve_tiny

    hub = serve_tiny(monkeypatch, tmp_path)
    names = ("LOFI_CATALOGUE", "HF_ENDPOINT", "HF_HOME", "LOFI_DOWNLOAD_BACKOFF_SEC")
    s = Screen(tmp_path, FIRST_RUN_INIT, {k: os.environ[k] for k in names if k in os.environ})
    try:
        s.command("LofiGenerate first track duration=5 seed=1")
        s.wait(lambda: "Type number" in s.text(), "the download question")
        s.type("1")
        s.enter()
        s.wait(lambda: s.completed() == ["first track"], "the track after the download", timeout=120, no_prompt=True)
        assert not s.prompted(), s.text()
    finally:
        s.close()
        hub.stop()


def test_an_offline_download_says_what_to_do_whole_at_80_columns(tmp_path: Path, monkeypatch) -> None:
    """Issue 20 item 5: offline, :LofiDownload retried for 14 s, then its error was cut after ":LofiDownload" in the
    echo area and in :messages, "set model.dir" only in the log. Now it answers at once (no retries against a Hub
    that never answered), and the answer to the user's own command is shown whole, and kept whole in :messages."""
    from fake_hub import serve_tiny

    hub = serve_tiny(monkeypatch, tmp_path)
    hub.stop()  # no network: nothing listens at HF_ENDPOINT
    names = ("LOFI_CATALOGUE", "HF_ENDPOINT", "HF_HOME")
    s = Screen(tmp_path, FIRST_RUN_INIT, {k: os.environ[k] for k in names if k in os.environ}, columns=80)
    try:
        s.command("LofiDownload")
        s.wait(lambda: "Type number" in s.text(), "the download question")
        s.type("1")
        s.enter()
        s.wait(lambda: "model.dir" in "".join(s.lines()), "the whole error on the screen")
        shown = "".join(s.lines())
        assert "MODEL_DOWNLOAD_FAILED: cannot reach the HuggingFace Hub" in shown and ":LofiDownload again" in shown, s.text()
        assert "tries" not in shown, s.text()
        s.enter()  # the error is longer than a line: Neovim asks for Enter, as for its own long errors
        s.wait(lambda: not s.prompted(), "the prompt answered")
        history = s.nvim.exec_lua("return vim.api.nvim_exec2('messages', {output = true}).output")
        assert "set model.dir to a folder with the model's files" in history and "Connection refused" in history, history
    finally:
        s.close()


PLAYING_INIT = INIT.replace(
    "autoplay = false}",
    "autoplay = false, player = {cmd = {'mpv', '--no-config', '--really-quiet', '--no-video', '--ao=null'}, loop = true, volume = 70}}",
)


def test_lofinow_at_80_columns_is_one_line_with_where_and_how_loud(tmp_path: Path) -> None:
    """:LofiNow after other messages raised a hit-enter prompt at 80 columns (its answer wrapped to two lines). Now it
    is one line the message area holds: a long prompt gives way, the position and the volume stay."""
    s = Screen(tmp_path, PLAYING_INIT, columns=80)
    try:
        prompt = "a long evening walk through rainy streets with a mellow jazz piano and soft vinyl crackle"
        s.command(f"LofiGenerate {prompt} duration=5 seed=1")
        s.wait(lambda: s.completed() == [prompt], "the track", timeout=120, no_prompt=True)
        s.command("LofiPlay")
        s.wait(lambda: s.nvim.exec_lua("return require('lofi').now_playing().state") == "playing", "playing", no_prompt=True)
        s.command("LofiVolume 70")
        s.command("LofiNow")
        s.wait(lambda: "volume 70" in s.lines()[-1] and "▶" in s.lines()[-1], "the answer on the last line", no_prompt=True)
        line = s.lines()[-1]
        assert re.fullmatch(r"lofi: ▶ \"a long evening walk[^\"]*…\" 0:0\d / 0:05, volume 70 *", line), s.text()
        assert not s.prompted(), s.text()
    finally:
        s.close()
