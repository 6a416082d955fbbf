"""The settings and events vocabulary, written out for the Lua side as ``lua/lofi/schema.lua``.

Generated, never edited by hand: ``make schema`` (``python -m lofi_engine.shared.schema``) rewrites it and a test
fails when it is out of date, so Lua's defaults, ranges, allowed values and event names are always Python's.
"""

from __future__ import annotations

import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from lofi_engine.shared.events import EVENTS
from lofi_engine.shared.request import MAX_SEED, PARAMS
from lofi_engine.shared.settings import (
    BACKENDS,
    DEFAULT_DURATION_SEC,
    DURATION_LIMITS,
    MAX_PENDING,
    PRIORITIES,
    GROUPS,
    expects,
)

LUA_FILE = Path(__file__).resolve().parents[2] / "lua" / "lofi" / "schema.lua"


def schema() -> dict[str, Any]:
    settings = {}
    for group, kind in GROUPS.items():
        for f in fields(kind):
            entry: dict[str, Any] = {"help": f.metadata["help"], "group": group, "kind": f.metadata["kind"], "expects": expects(f)}
            if f.default is not MISSING and f.default is not None:
                entry["default"] = f.default
            for rule in ("choices", "min", "max", "less_than", "optional"):
                if f.metadata.get(rule) is not None:
                    value = f.metadata[rule]
                    entry[rule] = list(value) if isinstance(value, tuple) else value
            settings[f.name] = entry
    return {
        "backends": list(BACKENDS),
        "durations": {backend: list(limits) for backend, limits in DURATION_LIMITS.items()},
        "default_duration_sec": DEFAULT_DURATION_SEC,
        "priorities": list(PRIORITIES),
        "max_pending": MAX_PENDING,
        "max_seed": MAX_SEED,
        "generate_params": list(PARAMS),
        "settings": settings,
        "events": {name: {"required": list(spec.required), "optional": list(spec.optional), "doc": spec.doc} for name, spec in EVENTS.items()},
    }


def to_lua(value: Any, indent: str = "") -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    inner = indent + "  "
    if isinstance(value, list):
        if not value:
            return "{}"
        return "{ " + ", ".join(to_lua(v, inner) for v in value) + " }"
    items = [f"{inner}[{to_lua(str(k))}] = {to_lua(v, inner)}," for k, v in sorted(value.items())]
    return "{\n" + "\n".join(items) + f"\n{indent}}}"


def lua_source() -> str:
    return (
        "-- Generated from lofi_engine/shared (settings, request, events) by `make schema`; do not edit.\n"
        f"return {to_lua(schema())}\n"
    )


if __name__ == "__main__":
    LUA_FILE.write_text(lua_source(), encoding="utf-8")
    print(f"wrote {LUA_FILE}", file=sys.stderr)
