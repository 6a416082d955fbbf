"""A copy of the tiny model whose decoder does real extra work every step: genuinely slower than playback.

The extra work is a chain of square matrix products on the step's input that ends multiplied by zero and added to the
logits: the codes are the tiny model's own, each step just costs what a much larger model's would.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from conftest import TINY

MERGED = "decoder_model_merged.onnx"


def slow_copy(target: Path, products: int = 48, width: int = 512) -> Path:
    """``products`` [width, width] × [width, width] fp32 products a step (2·width³ flops each: compute, not memory)."""
    shutil.copytree(TINY, target, ignore=shutil.ignore_patterns(MERGED, "decoder_model.onnx", "decoder_with_past_model.onnx"))
    model = onnx.load(TINY / MERGED)
    graph = model.graph
    logits = next(o for o in graph.output if o.name == "logits")
    inner = "logits_before_slowing"
    for node in graph.node:
        node.output[:] = [inner if name == "logits" else name for name in node.output]
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["slow_ids"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["slow_ids"], ["slow_sum"], keepdims=0),
        helper.make_node("Reshape", ["slow_sum", "slow_one_one"], ["slow_scalar"]),
        helper.make_node("Expand", ["slow_scalar", "slow_row_shape"], ["slow_0"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([1, 1], dtype=np.int64), "slow_one_one"),
        numpy_helper.from_array(np.array([width, width], dtype=np.int64), "slow_row_shape"),
        numpy_helper.from_array(np.zeros((), dtype=np.float32), "slow_zero"),
    ]
    for i in range(products):
        weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        initializers.append(numpy_helper.from_array(weight, f"slow_w{i}"))
        nodes.append(helper.make_node("MatMul", [f"slow_{i}", f"slow_w{i}"], [f"slow_{i + 1}"]))
    nodes += [
        helper.make_node("ReduceSum", [f"slow_{products}"], ["slow_total"], keepdims=0),
        helper.make_node("Mul", ["slow_total", "slow_zero"], ["slow_nothing"]),
        helper.make_node("Add", [inner, "slow_nothing"], ["logits"]),
    ]
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    assert logits.name == "logits"
    onnx.save(model, target / MERGED, save_as_external_data=True, location=MERGED + ".data")
    return target
