"""Issue 10: the layout shows who may import what, and each request, setting and event is decided in one place."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lofi_engine import LofiError
from lofi_engine.musicgen.delay_pattern import (
    PREDICTED,
    build_pattern,
    undelay,
    window_length,
)
from lofi_engine.shared.request import GenerateRequest
from lofi_engine.shared.settings import Settings

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "lofi_engine"
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
ENGINE_PACKAGES = {"numpy", "onnxruntime", "tokenizers"}

# Each layer may import the standard library, these third-party packages and these parts of lofi_engine.
LAYERS: dict[str, tuple[set[str], set[str]]] = {
    "shared": (set(), {"shared"}),
    "store": (set(), {"shared", "store"}),
    "inference": ({"numpy", "onnxruntime"}, {"shared", "inference"}),
    "audio": ({"numpy"}, {"audio"}),
    "musicgen": (ENGINE_PACKAGES | {"onnx", "soundfile"}, {"shared", "store", "inference", "audio", "musicgen"}),  # onnx: derived graphs; soundfile: audio to continue
    "ace_step": (ENGINE_PACKAGES, {"shared", "store", "inference", "ace_step"}),
    "engine": (ENGINE_PACKAGES | {"soundfile", "huggingface_hub"}, {"shared", "store", "inference", "audio", "musicgen", "ace_step", "engine"}),
    "playback": ({"numpy", "soundfile"}, {"shared", "audio", "playback"}),
    "service": (set(), {"shared", "store", "service", "engine.entry", "playback.entry"}),
}


def _run_time_nodes(node: ast.AST) -> list[ast.AST]:
    """Every node, except what sits under ``if TYPE_CHECKING:`` (read by type checkers, never imported)."""
    if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
        return []
    found = [node]
    for child in ast.iter_child_nodes(node):
        found += _run_time_nodes(child)
    return found


def imports_of(path: Path, top_level_only: bool = False) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else _run_time_nodes(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; the layout rules read absolute ones"
            found.append(node.module or "")
    return found


def allowed(layer: str, module: str) -> bool:
    packages, parts = LAYERS[layer]
    root = module.split(".")[0]
    if root in STDLIB or root in packages:
        return True
    if root != "lofi_engine":
        return False
    inside = module[len("lofi_engine.") :]
    return any(inside == part or inside.startswith(part + ".") for part in parts)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_imports_only_what_is_below_it(layer: str) -> None:
    """Nothing imports upward; the editor's side (shared, store, service) imports only the standard library."""
    wrong = [
        f"{path.relative_to(REPO)} imports {module}"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for module in imports_of(path)
        if not allowed(layer, module)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_engine_entry_point_loads_nothing_but_the_standard_library_on_import() -> None:
    """The service imports engine/entry.py to spawn the engine: at module level it may import only the standard library."""
    for entry in (PACKAGE / "engine" / "entry.py", PACKAGE / "playback" / "entry.py", PACKAGE / "shared" / "child_process.py"):
        modules = [m for m in imports_of(entry, top_level_only=True) if m != "lofi_engine.shared.child_process"]
        assert all(m.split(".")[0] in STDLIB for m in modules), (entry, modules)


def test_nothing_at_run_time_imports_the_dev_tools() -> None:
    users = [
        str(path.relative_to(REPO))
        for path in PACKAGE.rglob("*.py")
        if "dev" not in path.relative_to(PACKAGE).parts[:1]
        for module in imports_of(path)
        if module.startswith("lofi_engine.dev")
    ]
    assert not users


def test_the_editor_side_imports_only_the_standard_library_at_run_time() -> None:
    """The editor's python3 host has nothing but pynvim: importing the service must not pull in the engine's packages."""
    code = (
        "import sys; import lofi_engine.service.client, lofi_engine.service.rpc, lofi_engine.store.catalogue, lofi_engine.shared.schema; "
        "print([m for m in ('numpy', 'onnxruntime', 'tokenizers', 'soundfile', 'huggingface_hub') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


# ---- one request model -------------------------------------------------------------------------------------------


def test_a_request_is_filled_with_the_one_set_of_defaults() -> None:
    request = GenerateRequest.parse({"prompt": "rain"})
    assert (request.backend, request.duration_sec, request.priority) == ("musicgen", 30.0, "normal")
    assert 0 <= request.seed < 2**32
    assert GenerateRequest.parse({"prompt": "rain"}, "ace-step").duration_sec == 30.0  # ACE-Step's default too (was 60)


def test_the_track_id_is_the_same_hash_as_before_for_plain_requests() -> None:
    """Tracks cached before the request model keep their ids: sha256 of [prompt, seed, duration, version, backend]."""
    import hashlib
    import json

    request = GenerateRequest.parse({"prompt": "rain", "seed": 7, "duration_sec": 10})
    key = json.dumps(["rain", 7, 10.0, "musicgen-small-fp32-v1", "musicgen"], ensure_ascii=False)
    assert request.track_id("musicgen-small-fp32-v1") == hashlib.sha256(key.encode()).hexdigest()[:16]
    greedy = GenerateRequest.parse({"prompt": "rain", "seed": 7, "duration_sec": 10, "top_k": 1})
    assert greedy.track_id("musicgen-small-fp32-v1") != request.track_id("musicgen-small-fp32-v1")


@pytest.mark.parametrize(
    "params, code, words",
    [
        ({"prompt": "x", "colour": "blue"}, "INVALID_PARAMS", "unknown parameter colour"),
        ({"prompt": "x", "duration_sec": 10**400}, "INVALID_DURATION", "5 to 120"),
        ({"prompt": "\ud800"}, "INVALID_PROMPT", "lone surrogate"),
        ({"prompt": "rain " * 101}, "INVALID_PROMPT", "at most 500"),
        ({"prompt": "\ufdfa" * 30}, "INVALID_PROMPT", "at most 500"),  # 30 characters, 540 once normalised
        ({"prompt": "x", "backend": "ace-step", "top_k": 5}, "INVALID_PARAMS", "musicgen only"),
        ({"prompt": "x", "steps": 4}, "INVALID_PARAMS", "ace-step only"),
        ({"prompt": "x", "priority": "urgent"}, "INVALID_PARAMS", "normal, high"),
        ({"prompt": "x", "seed": -1}, "INVALID_PARAMS", "seed"),
    ],
)
def test_bad_requests_are_refused_by_the_parser(params: dict, code: str, words: str) -> None:
    with pytest.raises(LofiError) as err:
        GenerateRequest.parse(params)
    assert err.value.code == code and words in err.value.message


def test_config_rejects_unknown_keys_naming_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(LofiError) as err:
        Settings.from_dict({"modle_dir": str(tmp_path)})
    assert err.value.code == "INVALID_PARAMS" and "unknown setting modle_dir" in err.value.message and "model_dir" in err.value.message
    with pytest.raises(LofiError) as err:
        Settings.from_dict({"variant": "large"})
    assert err.value.code == "INVALID_PARAMS" and "small, small-int8, small-fp16" in err.value.message


# ---- the delay pattern ---------------------------------------------------------------------------------------------


def test_the_delay_pattern_of_a_fresh_window() -> None:
    """Codebook k is padded at positions ≤ k and in its last 3 - k… positions; the rest is predicted."""
    pattern = build_pattern(np.zeros((4, 0), dtype=np.int64), window_length(0, 3, 4), pad=2048)
    expected = np.array(
        [
            [2048, -1, -1, -1, 2048, 2048, 2048],
            [2048, 2048, -1, -1, -1, 2048, 2048],
            [2048, 2048, 2048, -1, -1, -1, 2048],
            [2048, 2048, 2048, 2048, -1, -1, -1],
        ]
    )
    assert PREDICTED == -1 and (pattern == expected).all()


def test_a_prompt_is_laid_in_diagonally_and_read_back_unchanged() -> None:
    prompt = np.arange(8, dtype=np.int64).reshape(4, 2) + 10
    length = window_length(2, 3, 4)
    pattern = build_pattern(prompt, length, pad=2048)
    for k in range(4):
        assert list(pattern[k, k + 1 : k + 3]) == list(prompt[k])
        assert (pattern[k, k + 3 : length - 3 + k] == PREDICTED).all()
    filled = np.where(pattern == PREDICTED, 99, pattern)
    assert (undelay(filled, 2) == prompt).all()
    assert (undelay(filled, 5)[:, 2:] == 99).all()


def test_the_catalogue_has_exactly_the_settings_variants() -> None:
    from lofi_engine.shared.settings import DECODER_FORMS, VARIANTS
    from lofi_engine.store.catalogue import VARIANTS as CATALOGUE
    from lofi_engine.store.musicgen_files import DECODER_FILES

    assert tuple(CATALOGUE) == VARIANTS
    assert ("auto", *DECODER_FILES) == DECODER_FORMS


def test_a_prompt_at_the_limit_is_accepted() -> None:
    assert len(GenerateRequest.parse({"prompt": "a" * 500}).prompt) == 500
