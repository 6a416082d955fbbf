"""The Lua side's layout (lua/lofi/): layers, each requiring only itself and the layers below, at the top of the file,
with no require cycle. The Lua files are read, not run: no Neovim needed. tests/test_architecture.py is the Python
side's equivalent."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LUA = REPO / "lua"
PLUGIN = REPO / "plugin" / "lofi.lua"

# From the bottom up. Each layer may require its own modules and those of the layers named here, nothing else of
# lofi's. `api` is require("lofi") (lua/lofi/init.lua): no layer below it requires it.
LAYERS: dict[str, set[str]] = {
    "core": {"core"},  # schema (generated), config, engine (requests to the remote plugin), host
    "state": {"core", "state"},  # events, callbacks, what plays and the radio, the library
    "ui": {"core", "state", "ui"},  # messages, the progress line, statusline, queue window, pickers, consent, keymaps
    "reactions": {"core", "state", "ui", "reactions"},  # what happens on each event
    "api": {"core", "state", "ui", "reactions", "api"},  # require("lofi")
    "commands": {"core", "state", "ui", "api", "commands"},  # the :Lofi* commands and the <Plug> mappings
    "health": {"core", "state", "ui", "reactions", "api", "commands", "health"},  # :checkhealth lofi
    "plugin": {"core", "state", "ui", "reactions", "api", "commands", "health"},  # plugin/lofi.lua, the entry point
}

# Modules outside the folders that name their layer.
SINGLE_MODULES = {
    "lofi": "api",
    "lofi.schema": "core",  # lua/lofi/schema.lua: written there by `make schema` (LUA_FILE in lofi_engine/shared/schema.py)
    "lofi.reactions": "reactions",
    "lofi.health": "health",  # Neovim's :checkhealth looks for lua/lofi/health.lua
}
FOLDERS = {"core", "state", "ui", "commands"}  # lua/lofi/<folder>/…: that layer

# The only requires allowed inside a function body: (file, module) and why. Nothing else may dodge a cycle this way.
INSIDE_FUNCTIONS: dict[tuple[str, str], str] = {
    ("lua/lofi/ui/messages.lua", "fidget.progress"): "an optional plugin, looked for each time (it may load later)",
    ("plugin/lofi.lua", "lofi.state.player"): "VimLeavePre: forget what plays, under pcall, as Neovim exits",
}

# Lua, read well enough to find requires and function bodies: comments and strings are skipped, block keywords counted.
TOKEN = re.compile(
    r"""
    (?P<long_comment>--\[(?P<lc_eq>=*)\[.*?\](?P=lc_eq)\])
  | (?P<comment>--[^\n]*)
  | (?P<long_string>\[(?P<ls_eq>=*)\[.*?\](?P=ls_eq)\])
  | (?P<string>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>0[xX][0-9a-fA-F.]+|[0-9][0-9.eE+-]*)
  | (?P<op>\.\.\.|\.\.|[^\sA-Za-z0-9_])
  | (?P<space>\s+)
    """,
    re.VERBOSE | re.DOTALL,
)
KINDS = ("long_comment", "comment", "long_string", "string", "name", "number", "op", "space")
OPENERS = {"function", "do", "if", "repeat"}  # `for … do` and `while … do` open at their `do`
CLOSERS = {"end", "until"}


@dataclass(frozen=True)
class Require:
    module: str
    line: int
    in_function: bool  # inside a function body
    before_code: bool  # before the file's first function


def shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def lua_string(text: str) -> str:
    if text.startswith("["):
        return text[text.index("[", 1) + 1 : text.rindex("]", 0, -1)]
    return text[1:-1]


def requires_of(path: Path) -> list[Require]:
    """Every `require("x")`, `require "x"` and `pcall(require, "x")` of a file. A require of anything but a literal
    string is an error: the layout rules could not read it."""
    source = path.read_text(encoding="utf-8")
    tokens = []  # (kind, text, line)
    pos = 0
    while pos < len(source):
        match = TOKEN.match(source, pos)
        assert match, f"{shown(path)}: cannot read the Lua at offset {pos}"
        kind = next(k for k in KINDS if match.group(k) is not None)
        if kind not in ("long_comment", "comment", "space"):
            text = match.group(0)
            tokens.append(("string" if kind == "long_string" else kind, text, source.count("\n", 0, pos) + 1))
        pos = match.end()

    found: list[Require] = []
    blocks: list[str] = []
    seen_function = False
    for i, (kind, text, line) in enumerate(tokens):
        if kind == "name" and text in OPENERS:
            blocks.append(text)
            seen_function = seen_function or text == "function"
        elif kind == "name" and text in CLOSERS:
            assert blocks, f"{shown(path)}:{line}: `{text}` closes nothing"
            blocks.pop()
        if kind != "name" or text != "require" or (i > 0 and tokens[i - 1][1] in (".", ":")):
            continue
        after = tokens[i + 1 : i + 3]
        if after and after[0][0] == "string":  # require "x"
            name = after[0][1]
        elif len(after) == 2 and after[0][1] in ("(", ",") and after[1][0] == "string":  # require("x"), pcall(require, "x")
            name = after[1][1]
        else:
            raise AssertionError(f"{shown(path)}:{line}: a require of something other than a literal module name")
        found.append(Require(lua_string(name), line, "function" in blocks, not seen_function))
    assert not blocks, f"{shown(path)}: {len(blocks)} block(s) left open at the end"
    return found


def module_of(path: Path) -> str:
    parts = list(path.relative_to(LUA).with_suffix("").parts)
    if parts[-1] == "init":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    if module in SINGLE_MODULES:
        return SINGLE_MODULES[module]
    parts = module.split(".")
    if parts[0] == "lofi" and len(parts) > 1 and parts[1] in FOLDERS:
        return parts[1]
    return None


def lua_files() -> list[Path]:
    return sorted((LUA / "lofi").rglob("*.lua"))


def graph() -> dict[str, list[Require]]:
    """Each module of lua/lofi → its requires of lofi modules."""
    return {
        module_of(path): [r for r in requires_of(path) if r.module == "lofi" or r.module.startswith("lofi.")]
        for path in lua_files()
    }


def test_the_reader_finds_requires_and_function_bodies(tmp_path: Path) -> None:
    """The checks below are only as good as this reader: strings and comments that look like code fool it not."""
    sample = tmp_path / "sample.lua"
    sample.write_text(
        '\n'.join([
            'local a = require("lofi.core.config") -- require("lofi.fake")',
            "local b = require 'lofi.state.events'",
            'local s = "function end require(\\"lofi.fake\\")" .. [[ end function ]]',
            "--[==[ function require('lofi.fake') ]==]",
            "local function f()",
            "  if a then for _ = 1, 2 do while false do end end elseif b then repeat until true else end",
            '  local ok, fidget = pcall(require, "fidget.progress")',
            "  return { fn = function() return require('lofi') end }",
            "end",
            'local c = require("lofi.ui.messages")',
        ]),
        encoding="utf-8",
    )
    assert [(r.module, r.line, r.in_function, r.before_code) for r in requires_of(sample)] == [
        ("lofi.core.config", 1, False, True),
        ("lofi.state.events", 2, False, True),
        ("fidget.progress", 7, True, False),
        ("lofi", 8, True, False),
        ("lofi.ui.messages", 10, False, False),
    ]
    sample.write_text("local name = 'lofi.x'\nlocal x = require(name)\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="literal module name"):
        requires_of(sample)


def test_every_file_belongs_to_a_known_layer() -> None:
    unknown = [str(path.relative_to(REPO)) for path in lua_files() if layer_of(module_of(path)) is None]
    assert not unknown, f"not in a layer (see LAYERS, FOLDERS and SINGLE_MODULES): {unknown}"
    assert (LUA / "lofi" / "health.lua").is_file(), ":checkhealth lofi looks for lua/lofi/health.lua"


def test_every_required_module_exists() -> None:
    """Every lofi module that the plugin, the remote plugin or the tests name (require, package.loaded) is a file."""
    modules = set(graph())
    sources = [PLUGIN, *lua_files(), *sorted((REPO / "tests").glob("*.py")), *sorted((REPO / "rplugin").rglob("*.py"))]
    named = re.compile(r"""(?:require\s*\(?\s*|package\.loaded\[\s*)["'](lofi(?:\.[\w.]+)?)["']""")
    missing = [
        f"{path.relative_to(REPO)}: {name}"
        for path in sources
        if path.name != Path(__file__).name
        for name in named.findall(path.read_text(encoding="utf-8"))
        if name not in modules
    ]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_requires_only_itself_and_the_layers_below(layer: str) -> None:
    """Nothing requires upward: a lower layer that must reach a higher one is handed a function by it."""
    files = [PLUGIN] if layer == "plugin" else [p for p in lua_files() if layer_of(module_of(p)) == layer]
    assert files or layer == "plugin", f"layer {layer} has no file"
    wrong = [
        f"{path.relative_to(REPO)}:{r.line} requires {r.module} (layer {layer_of(r.module)})"
        for path in files
        for r in requires_of(path)
        if (r.module == "lofi" or r.module.startswith("lofi.")) and layer_of(r.module) not in LAYERS[layer]
    ]
    assert not wrong, "\n".join(wrong)


def test_no_require_cycle() -> None:
    modules = graph()
    edges = {module: sorted({r.module for r in reqs if r.module in modules}) for module, reqs in modules.items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("require cycle: " + " -> ".join(path[path.index(module) :] + [module]))
        if module in done:
            return
        for other in edges[module]:
            visit(other, path + [module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])


def test_requires_are_at_the_top_of_the_file() -> None:
    """No require inside a function body (the way a cycle hides), and lofi's own before the file's first function;
    the exceptions are listed in INSIDE_FUNCTIONS, each with its reason."""
    wrong = []
    used = set()
    for path in [PLUGIN, *lua_files()]:
        name = str(path.relative_to(REPO))
        for r in requires_of(path):
            if r.in_function and (name, r.module) in INSIDE_FUNCTIONS:
                used.add((name, r.module))
            elif r.in_function:
                wrong.append(f"{name}:{r.line}: require({r.module!r}) inside a function body")
            elif path != PLUGIN and not r.before_code:
                wrong.append(f"{name}:{r.line}: require({r.module!r}) after the file's first function")
    assert not wrong, "\n".join(wrong)
    assert used == set(INSIDE_FUNCTIONS), f"exceptions no longer needed: {sorted(set(INSIDE_FUNCTIONS) - used)}"
