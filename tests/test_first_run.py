"""First run in a real headless Neovim (issue 12 item 2): the download question comes before any network access, with
the size and the weights' licence; offline, the error says what to do; after "Not now", :LofiDownload asks again."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_hub import serve_tiny
from nvim_session import quit_nvim, start_nvim

SETUP = """
local lofi = require('lofi')
lofi.setup({ cache = { dir = ... }, autoplay = false })
_G.notes, _G.asked, _G.answer, _G.done = {}, {}, nil, {}
vim.notify = function(msg) table.insert(_G.notes, msg) end
vim.ui.select = function(items, opts, on_choice)
  table.insert(_G.asked, opts.prompt)
  _G.answer = function(i) on_choice(items[i]) end
end
"""

GENERATE = """
local name = ...
require('lofi').generate({ prompt = name, duration_sec = 5, seed = 1 }, function(err, track)
  _G.done[name] = { err = err or vim.NIL, track = track or vim.NIL }
end)
vim.wait(10000, function() return #_G.asked > 0 or _G.done[name] ~= nil end, 10)
return { asked = _G.asked, done = _G.done[name] }
"""

WAIT = """
local name = ...
vim.wait(60000, function() return _G.done[name] ~= nil end, 10)
return _G.done[name]
"""


@pytest.fixture
def first_run(tmp_path: Path, monkeypatch):
    hub = serve_tiny(monkeypatch, tmp_path)
    nvim = start_nvim(tmp_path / "home", monkeypatch.setenv)
    nvim.exec_lua(SETUP, str(tmp_path / "cache"))
    yield nvim, hub
    quit_nvim(nvim)
    hub.stop()


def test_asks_before_any_request_then_offline_says_what_to_do(first_run) -> None:
    nvim, hub = first_run
    out = nvim.exec_lua(GENERATE, "first")
    assert len(out["asked"]) == 1 and out.get("done") is None
    question = out["asked"][0]
    assert "small" in question and "GB" in question and "CC BY-NC 4.0" in question
    assert hub.requests == []  # nothing reached the Hub (not even /api/…) before the answer
    hub.stop()  # the network goes away before the user agrees
    nvim.exec_lua("_G.answer(1)")
    done = nvim.exec_lua(WAIT, "first")
    message = done["err"]["message"]
    assert done["err"]["code"] == "MODEL_DOWNLOAD_FAILED"
    assert "cannot reach the HuggingFace Hub" in message and ":LofiDownload" in message and "model.dir" in message
    assert "HF_HUB_OFFLINE" not in message and "Traceback" not in message
    # One failure, one error shown: the cause and what to do first, the Neovim way, the track last.
    errors = [n for n in nvim.exec_lua("return _G.notes") if n.startswith("lofi: MODEL_")]
    assert len(errors) == 1, errors
    assert errors[0].startswith("lofi: MODEL_DOWNLOAD_FAILED: cannot reach the HuggingFace Hub"), errors
    assert ":LofiDownload" in errors[0] and "model.dir" in errors[0], errors
    assert "--model-dir" not in errors[0] and "lofi download" not in errors[0], errors


def test_not_now_then_lofi_download_asks_again_and_downloads(first_run) -> None:
    nvim, hub = first_run
    assert len(nvim.exec_lua(GENERATE, "first")["asked"]) == 1
    nvim.exec_lua("_G.answer(2)")  # Not now
    assert nvim.exec_lua(WAIT, "first")["err"]["code"] == "MODEL_NOT_FOUND"
    # Later generations in this session are declined without asking again…
    later = nvim.exec_lua(GENERATE + "", "second")
    assert len(later["asked"]) == 1
    assert nvim.exec_lua(WAIT, "second")["err"]["code"] == "MODEL_NOT_FOUND"
    assert hub.requests == []
    # …but :LofiDownload asks, with the size and the licence, and downloads on "Download".
    asked = nvim.exec_lua("vim.cmd('LofiDownload'); return _G.asked")
    assert len(asked) == 2 and "GB" in asked[1] and "CC BY-NC 4.0" in asked[1]
    nvim.exec_lua("_G.answer(1)")
    available = nvim.exec_lua(
        "vim.wait(60000, function() return require('lofi.core.engine').request('status').model_available end, 20);"
        "return require('lofi.core.engine').request('status').model_available"
    )
    assert available is True and hub.gets()
    third = nvim.exec_lua(GENERATE, "third")
    assert len(third["asked"]) == 2
    assert nvim.exec_lua(WAIT, "third")["err"] is None
