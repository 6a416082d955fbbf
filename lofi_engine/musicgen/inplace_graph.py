"""The in-place decoder graphs, derived at load time from the published MusicGen decoder files.

The published decoder concatenates the past self-attention cache with the new position into a fresh ``present``
every step, and attention reads it again: late in a window the cache moves three times a step. Here the
published graph is rewritten, never modified on disk:

* **step graph**, from the with-past graph (``decoder_with_past_model.onnx``, or the merged file's
  ``use_cache_branch`` branch): each layer's self-attention core (head split, concat with the past, scaled
  scores, softmax, weighted sum, head merge) becomes one ``com.microsoft.GroupQueryAttention`` node that reads
  the projections the published graph computes and writes the new keys/values into the past buffer in place.
  Each layer's cross-attention core (fp32 and int8 files) becomes one ``com.microsoft.MultiHeadAttention`` that
  reads the cached encoder keys/values as they are and the encoder mask as its attention bias, which drops the
  head split, merge and shape arithmetic that cost more than the attention itself at one token a step.
  Everything else (embeddings, layer norms, projections, quantization, FFN, heads) is the published graph's own
  nodes and weights. The cache's shape no longer tells the position, so the position
  comes from an input (``past_sequence_length``) together with GroupQueryAttention's ``seqlens_k`` and
  ``total_sequence_length``. With an empty past the same graph prefills any number of positions (causal).
* **cross graph**, from the no-past graph: only what makes the cross-attention keys/values
  (``present.{i}.encoder.*``), run once per window.

Every step of the match is checked (op types, permutations, scalar scales, single consumers, a data-independent
mask); anything unexpected raises :class:`Unsupported` with the reason and the caller keeps the published path.
Weights are streamed into one external-data file, so building holds the published model once in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

if TYPE_CHECKING:  # onnx is imported where a graph is built, never on a warm load
    import onnx

REWRITE_VERSION = 2
"""Enters the cache key: a change to the rewrite rebuilds every cached in-place graph."""
PAST_LENGTH = "past_sequence_length"
SEQLENS_K = "seqlens_k"
TOTAL_LENGTH = "total_sequence_length"
SELF_PAST = "past_key_values.{}.decoder.{}"
SELF_PRESENT = "present.{}.decoder.{}"
CROSS_PAST = "past_key_values.{}.encoder.{}"
CROSS_PRESENT = "present.{}.encoder.{}"
MS_DOMAIN = "com.microsoft"
STEP, CROSS = "step.onnx", "cross.onnx"


class Unsupported(Exception):
    """The published graph does not have the structure the rewrite proves exact for; the message says where."""


@dataclass(frozen=True)
class Shape:
    layers: int
    heads: int
    head_dim: int


# ---------------------------------------------------------------------------------------------------------------
# Reading the published files


@dataclass
class Published:
    """The published decoder's two computations as standalone graphs, and where their weights are."""

    with_past: "onnx.GraphProto"
    no_past: "onnx.GraphProto"
    with_past_weights: list["onnx.GraphProto"]
    no_past_weights: list["onnx.GraphProto"]
    opsets: list["onnx.OperatorSetIdProto"]


def published_graphs(model_dir: Path, form: str) -> Published:
    """The published decoder (merged file or split pair), read once."""
    import onnx

    from lofi_engine.store import musicgen_files as files

    if form == "merged":
        model = onnx.load(str(model_dir / files.DECODER_MERGED))
        (with_past, then_branch), (no_past, else_branch) = _merged_branches(model)
        return Published(with_past, no_past, [model.graph, then_branch], [model.graph, else_branch], list(model.opset_import))
    with_past = onnx.load(str(model_dir / files.DECODER_WITH_PAST))
    no_past = onnx.load(str(model_dir / files.DECODER))
    return Published(with_past.graph, no_past.graph, [with_past.graph], [no_past.graph], list(with_past.opset_import))


def _merged_branches(model: "onnx.ModelProto") -> list[tuple["onnx.GraphProto", "onnx.GraphProto"]]:
    """The merged file is one ``If(use_cache_branch)``: then = with past, else = without. Each branch becomes a
    standalone graph holding the outer scope's initializers and inputs it reads, and the If's output names."""
    import onnx

    top = model.graph
    ifs = [n for n in top.node if n.op_type == "If"]
    if len(ifs) != 1 or list(ifs[0].input) != ["use_cache_branch"]:
        raise Unsupported("the merged decoder is not one If node switched by use_cache_branch")
    node = ifs[0]
    branches = {a.name: a.g for a in node.attribute}
    outer = [n for n in top.node if n is not node]
    graphs = []
    for name in ("then_branch", "else_branch"):
        branch = branches.get(name)
        if branch is None or len(branch.output) != len(node.output):
            raise Unsupported(f"the merged decoder's If has no usable {name}")
        graph = onnx.GraphProto(name=f"{branch.name or name}_standalone")
        renames = {out.name: top_name for out, top_name in zip(branch.output, node.output)}
        graph.node.extend(outer)
        for n in branch.node:
            copy = graph.node.add()
            copy.CopyFrom(n)
            copy.output[:] = [renames.get(o, o) for o in n.output]
            copy.input[:] = [renames.get(i, i) for i in n.input]
        # The initializers are not copied (they are large): the caller streams them from ``top`` and ``branch``.
        graph.input.extend(i for i in top.input if i.name != "use_cache_branch")
        for out, top_name in zip(branch.output, node.output):
            info = graph.output.add()
            info.CopyFrom(out)
            info.name = top_name
            if out.name in renames and not any(out.name in n.output for n in branch.node):
                # A branch output that is an outer value passed straight through: keep it through an Identity.
                graph.node.add().CopyFrom(onnx.helper.make_node("Identity", [out.name], [top_name]))
        graph.doc_string = ""
        graphs.append((graph, branch))
    return graphs


def _initializers(sources: list["onnx.GraphProto"]) -> Iterable["onnx.TensorProto"]:
    for source in sources:
        yield from source.initializer


# ---------------------------------------------------------------------------------------------------------------
# Graph helpers


class _Graph:
    """Producers, consumers and constants of a graph's nodes (rebuilt after each edit)."""

    def __init__(self, graph: "onnx.GraphProto", initializer_names: set[str], small_constants: dict[str, np.ndarray]) -> None:
        self.graph = graph
        self.initializer_names = initializer_names
        self.constants = dict(small_constants)
        self.refresh()

    def refresh(self) -> None:
        import onnx

        self.producer: dict[str, "onnx.NodeProto"] = {}
        self.consumers: dict[str, list["onnx.NodeProto"]] = {}
        for node in self.graph.node:
            for out in node.output:
                self.producer[out] = node
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
            if node.op_type == "Constant" and node.output[0] not in self.constants:
                for a in node.attribute:
                    if a.name == "value" and a.type == onnx.AttributeProto.TENSOR and _numel(a.t.dims) <= 16:
                        self.constants[node.output[0]] = onnx.numpy_helper.to_array(a.t)
                    elif a.name in ("value_float", "value_int"):
                        self.constants[node.output[0]] = np.array(onnx.helper.get_attribute_value(a))
                    elif a.name in ("value_floats", "value_ints"):
                        self.constants[node.output[0]] = np.array(onnx.helper.get_attribute_value(a))
        self.outputs = {o.name for o in self.graph.output}
        self.inputs = {i.name for i in self.graph.input}

    def only_consumer(self, name: str, where: str) -> "onnx.NodeProto":
        users = self.consumers.get(name, [])
        if len(users) != 1 or name in self.outputs:
            raise Unsupported(f"{where}: {name} has {len(users)} consumers, expected one")
        return users[0]

    def scalar(self, name: str) -> float | None:
        value = self.constants.get(name)
        if value is None or value.size != 1:
            return None
        return float(value.reshape(-1)[0])

    def ints(self, name: str) -> list[int] | None:
        value = self.constants.get(name)
        return None if value is None else [int(v) for v in value.reshape(-1)]


def _numel(dims: Iterable[int]) -> int:
    return int(np.prod(list(dims))) if dims else 1


def _attr(node: "onnx.NodeProto", name: str, default=None):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _scale_of(g: _Graph, node: "onnx.NodeProto") -> tuple[str, float] | None:
    """(data input, factor) when ``node`` multiplies or divides by a constant scalar."""
    if node.op_type not in ("Mul", "Div") or len(node.input) != 2:
        return None
    a, b = node.input
    if node.op_type == "Mul":
        for data, const in ((a, b), (b, a)):
            value = g.scalar(const)
            if value is not None and data not in g.constants:
                return data, value
        return None
    value = g.scalar(b)
    if value is None or value == 0:
        return None
    return a, 1.0 / value


def _is_perm(node: "onnx.NodeProto", perm: list[int]) -> bool:
    return node.op_type == "Transpose" and list(_attr(node, "perm", [])) == perm


def _data_independent(g: _Graph, name: str) -> bool:
    """Whether ``name`` depends on the graph's inputs only through their shapes (a causal or zero mask)."""
    seen: set[str] = set()
    stack = [name]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        if current in g.inputs:
            return False
        node = g.producer.get(current)
        if node is None or node.op_type == "Shape":
            continue
        stack.extend(i for i in node.input if i)
    return True


# ---------------------------------------------------------------------------------------------------------------
# The self-attention match


@dataclass
class _Attention:
    query: str
    key: str
    value: str
    output: str
    scale: float
    remove: list["onnx.NodeProto"]


def _head_split_input(g: _Graph, name: str, where: str) -> tuple[str, float, list]:
    """``name`` is ``Transpose(0,2,1,3)(Reshape(x, [B, n, H, D]))``, optionally after ``x * c``: (x, c, nodes)."""
    transpose = g.producer.get(name)
    g.only_consumer(name, where)
    if transpose is None or not _is_perm(transpose, [0, 2, 1, 3]):
        raise Unsupported(f"{where}: expected the head split's Transpose(0,2,1,3), found {transpose.op_type if transpose else 'an input'}")
    reshape = g.producer.get(transpose.input[0])
    if reshape is None or reshape.op_type != "Reshape":
        raise Unsupported(f"{where}: expected a Reshape before the head split")
    g.only_consumer(transpose.input[0], where)
    flat, factor, nodes = reshape.input[0], 1.0, [transpose, reshape]
    producer = g.producer.get(flat)
    scaled = _scale_of(g, producer) if producer is not None else None
    if scaled is not None and len(g.consumers.get(flat, [])) == 1:
        flat, factor = scaled[0], scaled[1]
        nodes.append(producer)
    return flat, factor, nodes


def _walk_scales(g: _Graph, name: str, where: str, backwards: bool) -> tuple[str, float, list]:
    """Follow constant-scalar Mul/Div nodes from ``name``; (where it stops, the product, the nodes)."""
    factor, nodes = 1.0, []
    while True:
        if backwards:
            node = g.producer.get(name)
            scaled = _scale_of(g, node) if node is not None else None
            if scaled is None or len(g.consumers.get(name, [])) != 1 or name in g.outputs:
                return name, factor, nodes
            name, factor = scaled[0], factor * scaled[1]
        else:
            users = g.consumers.get(name, [])
            if len(users) != 1:
                return name, factor, nodes
            node = users[0]
            scaled = _scale_of(g, node)
            if scaled is None or scaled[0] != name:
                return name, factor, nodes
            name, factor = node.output[0], factor * scaled[1]
        nodes.append(node)


def _match_layer(g: _Graph, layer: int, shape: Shape) -> _Attention:
    where = f"layer {layer} self-attention"
    past_key, past_value = SELF_PAST.format(layer, "key"), SELF_PAST.format(layer, "value")
    present_key, present_value = SELF_PRESENT.format(layer, "key"), SELF_PRESENT.format(layer, "value")
    remove: list = []
    new = {}
    for which, past, present in (("key", past_key, present_key), ("value", past_value, present_value)):
        concat = g.producer.get(present)
        if concat is None or concat.op_type != "Concat" or len(concat.input) != 2 or _attr(concat, "axis") not in (2, -2):
            raise Unsupported(f"{where}: {present} is not Concat(past, new) on the sequence axis")
        if _through_identity(g, concat.input[0]) != past:
            raise Unsupported(f"{where}: {present} does not extend {past}")
        flat, factor, nodes = _head_split_input(g, concat.input[1], f"{where} ({which})")
        if factor != 1.0:
            raise Unsupported(f"{where}: the new {which} is scaled before the cache")
        new[which] = flat
        remove += [concat, *nodes]

    core = _attention_core(g, where, present_key, present_value, shape, exclusive=True)
    if core.mask is not None and not _data_independent(g, core.mask):
        raise Unsupported(f"{where}: the self-attention mask depends on the inputs' values (not causal only)")
    return _Attention(core.query, new["key"], new["value"], core.output, core.scale, remove + core.remove)


@dataclass
class _Core:
    query: str
    output: str
    scale: float
    mask: str | None
    remove: list["onnx.NodeProto"]


def _attention_core(g: _Graph, where: str, keys: str, values: str, shape: Shape, exclusive: bool) -> _Core:
    """From the keys and values (``[B, heads, L, head_dim]``) to the head-merged output: split query heads,
    scaled scores, optional additive mask, softmax, weighted values, merged heads. ``exclusive``: the keys and
    values feed nothing else (the self-attention cache, whose tensors the rewrite replaces)."""
    # keys -> Transpose(0,1,3,2) [Mul c] -> scores MatMul(q-side, k-side)
    users = g.consumers.get(keys, [])
    transposes = [u for u in users if _is_perm(u, [0, 1, 3, 2])]
    if len(transposes) != 1 or (exclusive and len(users) != 1):
        raise Unsupported(f"{where}: {keys} is not read once, transposed (0,1,3,2) for the scores")
    transpose_k = transposes[0]
    k_side, k_factor, k_nodes = _walk_scales(g, transpose_k.output[0], where, backwards=False)
    scores = g.only_consumer(k_side, where)
    if scores.op_type != "MatMul" or scores.input[1] != k_side:
        raise Unsupported(f"{where}: expected MatMul(query, keys) for the scores, found {scores.op_type}")
    q_side, q_factor, q_nodes = _walk_scales(g, scores.input[0], where, backwards=True)
    query, q_flat_factor, q_split = _head_split_input(g, q_side, f"{where} (query)")
    remove = [transpose_k, *k_nodes, scores, *q_nodes, *q_split]

    # scores -> [Mul/Div c] -> [Add(mask)] -> Softmax(-1) -> MatMul(probs, values)
    current, s_factor, s_nodes = _walk_scales(g, scores.output[0], where, backwards=False)
    remove += s_nodes
    node = g.only_consumer(current, where)
    mask = None
    if node.op_type == "Add":
        mask = node.input[1] if node.input[0] == current else node.input[0]
        remove.append(node)
        current = node.output[0]
        node = g.only_consumer(current, where)
    if node.op_type != "Softmax" or _attr(node, "axis", -1) not in (-1, 3):
        raise Unsupported(f"{where}: expected Softmax over the keys, found {node.op_type}")
    remove.append(node)
    weighted = g.only_consumer(node.output[0], where)
    if weighted.op_type != "MatMul" or weighted.input[0] != node.output[0] or weighted.input[1] != values:
        raise Unsupported(f"{where}: expected MatMul(probabilities, {values})")
    if exclusive and len(g.consumers.get(values, [])) != 1:
        raise Unsupported(f"{where}: {values} has other uses")
    remove.append(weighted)

    # -> Transpose(0,2,1,3) -> Reshape([B, n, hidden]) -> the output projection
    merge = g.only_consumer(weighted.output[0], where)
    if not _is_perm(merge, [0, 2, 1, 3]):
        raise Unsupported(f"{where}: expected the head merge's Transpose(0,2,1,3)")
    reshape = g.only_consumer(merge.output[0], where)
    if reshape.op_type != "Reshape":
        raise Unsupported(f"{where}: expected a Reshape after the head merge")
    remove += [merge, reshape]

    scale = q_factor * q_flat_factor * k_factor * s_factor
    expected = 1.0 / math.sqrt(shape.head_dim)
    if not math.isclose(scale, expected, rel_tol=1e-5):
        raise Unsupported(f"{where}: attention scale {scale:g} is not 1/sqrt({shape.head_dim})")
    return _Core(query, reshape.output[0], scale, mask, remove)


def _match_cross(g: _Graph, layer: int, shape: Shape) -> _Core:
    """Layer ``layer``'s cross-attention over the cached encoder keys/values (graph inputs, maybe behind an
    Identity): becomes one MultiHeadAttention reading them as they are (``[B, heads, L, head_dim]``), its mask
    as attention bias."""
    where = f"layer {layer} cross-attention"
    key, value = CROSS_PAST.format(layer, "key"), CROSS_PAST.format(layer, "value")
    aliases = {n.output[0] for n in g.graph.node if n.output and _through_identity(g, n.output[0]) == key} | {key}
    keys = [n.input[0] for n in g.graph.node if _is_perm(n, [0, 1, 3, 2]) and n.input[0] in aliases]
    if len(keys) != 1:
        raise Unsupported(f"{where}: {key} is not transposed once for the scores")
    values = [n.input[1] for n in g.graph.node if n.op_type == "MatMul" and len(n.input) == 2 and _through_identity(g, n.input[1]) == value]
    if len(values) != 1:
        raise Unsupported(f"{where}: {value} is not weighted once")
    core = _attention_core(g, where, keys[0], values[0], shape, exclusive=False)
    if core.mask is None:
        raise Unsupported(f"{where}: no encoder attention mask is added to the scores")
    return core


def _through_identity(g: _Graph, name: str) -> str:
    """Follow Identity and single-input Concat nodes back to their source."""
    while True:
        node = g.producer.get(name)
        if node is None or not (node.op_type == "Identity" or (node.op_type == "Concat" and len(node.input) == 1)):
            return name
        name = node.input[0]


def _infer_shape(graph: "onnx.GraphProto") -> Shape:
    layers = 0
    heads = head_dim = None
    for value in graph.input:
        if value.name.startswith("past_key_values.") and value.name.endswith(".decoder.key"):
            layers += 1
            dims = value.type.tensor_type.shape.dim
            if len(dims) != 4 or not dims[1].dim_value or not dims[3].dim_value:
                raise Unsupported(f"{value.name} has no static head count and head size")
            heads, head_dim = dims[1].dim_value, dims[3].dim_value
    if not layers or heads is None or head_dim is None:
        raise Unsupported("the with-past graph has no past_key_values.*.decoder.key inputs")
    if sorted(v.name for v in graph.input if v.name.endswith(".decoder.key")) != sorted(SELF_PAST.format(i, "key") for i in range(layers)):
        raise Unsupported("the self-attention cache inputs are not numbered 0..layers-1")
    return Shape(layers, heads, head_dim)


# ---------------------------------------------------------------------------------------------------------------
# Building


def build_step_graph(with_past: "onnx.GraphProto", weights: list["onnx.GraphProto"]) -> tuple["onnx.GraphProto", Shape]:
    """The with-past graph with each self-attention core replaced by an in-place GroupQueryAttention."""
    import onnx
    from onnx import TensorProto, helper

    shape = _infer_shape(with_past)
    dtype = next(i.type.tensor_type.elem_type for i in with_past.input if i.name == SELF_PAST.format(0, "key"))
    if dtype not in (TensorProto.FLOAT, TensorProto.FLOAT16):
        raise Unsupported(f"self-attention cache of type {TensorProto.DataType.Name(dtype)}")
    if shape.head_dim % 8:
        raise Unsupported(f"head size {shape.head_dim} is not a multiple of 8 (GroupQueryAttention)")
    init_names = {t.name for t in _initializers(weights)}
    small = {t.name: onnx.numpy_helper.to_array(t) for t in _initializers(weights) if _numel(t.dims) <= 16}
    g = _Graph(with_past, init_names, small)
    matches = [_match_layer(g, i, shape) for i in range(shape.layers)]
    crosses = [_match_cross(g, i, shape) for i in range(shape.layers)] if dtype == TensorProto.FLOAT else []

    removed = {id(n) for m in [*matches, *crosses] for n in m.remove}
    kept = [n for n in with_past.node if id(n) not in removed]
    available = {o for n in kept for o in n.output} | g.inputs | init_names | {""}
    available |= {m.output for m in [*matches, *crosses]} | {SELF_PRESENT.format(i, w) for i in range(shape.layers) for w in ("key", "value")}
    dangling = sorted({i for n in kept for i in n.input if i not in available})
    if dangling:
        raise Unsupported(f"the rewrite would leave {dangling[0]} unread-able (it is used outside attention)")
    for i, m in enumerate(matches):
        kept.append(
            helper.make_node(
                "GroupQueryAttention",
                [m.query, m.key, m.value, SELF_PAST.format(i, "key"), SELF_PAST.format(i, "value"), SEQLENS_K, TOTAL_LENGTH],
                [m.output, SELF_PRESENT.format(i, "key"), SELF_PRESENT.format(i, "value")],
                name=f"inplace_self_attention_{i}",
                domain=MS_DOMAIN,
                num_heads=shape.heads,
                kv_num_heads=shape.heads,
                scale=float(m.scale),
            )
        )
    for i, c in enumerate(crosses):  # the cached encoder keys/values read as they are, the mask as a bias
        kept.append(
            helper.make_node(
                "MultiHeadAttention",
                [c.query, CROSS_PAST.format(i, "key"), CROSS_PAST.format(i, "value"), "", "", c.mask],
                [c.output],
                name=f"cross_attention_{i}",
                domain=MS_DOMAIN,
                num_heads=shape.heads,
                scale=float(c.scale),
            )
        )
    del with_past.node[:]
    with_past.node.extend(kept)
    g.refresh()
    _position_from_input(g, shape)

    # Inputs and outputs: the cache is [rows, heads, capacity, head_dim]; the position comes from inputs.
    self_outputs = {SELF_PRESENT.format(i, w) for i in range(shape.layers) for w in ("key", "value")}
    outputs = [o for o in with_past.output if o.name == "logits" or o.name in self_outputs]
    if len(outputs) != 1 + 2 * shape.layers:
        raise Unsupported("the with-past graph does not output logits and every present.*.decoder.*")
    del with_past.output[:]
    with_past.output.extend(outputs)
    for value in list(with_past.input) + list(with_past.output):
        if ".decoder." in value.name:
            value.type.tensor_type.shape.dim[2].ClearField("dim_value")
            value.type.tensor_type.shape.dim[2].dim_param = "capacity"
        if value.name == "input_ids":
            value.type.tensor_type.shape.dim[1].ClearField("dim_value")
            value.type.tensor_type.shape.dim[1].dim_param = "sequence_length"
    with_past.input.extend(
        [
            helper.make_tensor_value_info(PAST_LENGTH, TensorProto.INT64, []),
            helper.make_tensor_value_info(SEQLENS_K, TensorProto.INT32, ["rows"]),
            helper.make_tensor_value_info(TOTAL_LENGTH, TensorProto.INT32, []),
        ]
    )
    del with_past.value_info[:]
    _prune(with_past)
    _toposort(with_past)
    return with_past, shape


def _position_from_input(g: _Graph, shape: Shape) -> None:
    """What still reads the cache inputs reads only their length (``Shape(past)[2]``): it becomes the
    ``past_sequence_length`` input."""
    from onnx import helper

    attention = {n.name for n in g.graph.node if n.op_type == "GroupQueryAttention"}
    replacements = []
    for i in range(shape.layers):
        for which in ("key", "value"):
            stack = [SELF_PAST.format(i, which)]
            while stack:
                name = stack.pop()
                for user in g.consumers.get(name, []):
                    if user.name in attention:
                        continue
                    if user.op_type == "Identity" or (user.op_type == "Concat" and len(user.input) == 1):
                        stack.append(user.output[0])
                        continue
                    if user.op_type != "Shape" or _attr(user, "start") is not None or _attr(user, "end") is not None:
                        raise Unsupported(f"{user.op_type} reads the self-attention cache besides attention")
                    for reader in g.consumers.get(user.output[0], []):
                        index = g.ints(reader.input[1]) if reader.op_type == "Gather" and len(reader.input) == 2 else None
                        if index not in ([2], [-2]) or _attr(reader, "axis", 0) != 0 or g.constants[reader.input[1]].ndim != 0:
                            raise Unsupported(f"the cache's shape is read other than as its length ({reader.op_type})")
                        replacements.append(reader)
    for reader in replacements:
        reader.CopyFrom(helper.make_node("Identity", [PAST_LENGTH], list(reader.output), name=reader.name))


def build_cross_graph(no_past: "onnx.GraphProto", weights: list["onnx.GraphProto"]) -> "onnx.GraphProto":
    """Only what computes the cross-attention keys and values from the encoder's states.

    Each ``present.{i}.encoder.*`` is ``Transpose(0,2,1,3)(Reshape(projection(encoder_hidden_states), shape))``;
    the published ``shape`` is computed from the decoder's hidden state (which would drag the whole decoder in),
    so it is replaced by the constant ``[0, -1, heads, head_dim]`` (the same shape: batch kept, sequence inferred)."""
    import onnx
    from onnx import helper

    outputs = [o for o in no_past.output if ".encoder." in o.name and o.name.startswith("present.")]
    if not outputs:
        raise Unsupported("the no-past graph outputs no present.*.encoder.*")
    g = _Graph(no_past, {t.name for t in _initializers(weights)}, {})
    for out in outputs:
        dims = out.type.tensor_type.shape.dim
        if len(dims) != 4 or not dims[1].dim_value or not dims[3].dim_value:
            raise Unsupported(f"{out.name} has no static head count and head size")
        transpose = g.producer.get(_through_identity(g, out.name))
        if transpose is None or not _is_perm(transpose, [0, 2, 1, 3]):
            raise Unsupported(f"{out.name} is not the head split of a projection")
        reshape = g.producer.get(transpose.input[0])
        if reshape is None or reshape.op_type != "Reshape" or _attr(reshape, "allowzero", 0) != 0:
            raise Unsupported(f"{out.name} is not the head split of a projection")
        const = f"{out.name}.head_split_shape"
        no_past.node.append(helper.make_node("Constant", [], [const], value=onnx.numpy_helper.from_array(
            np.array([0, -1, dims[1].dim_value, dims[3].dim_value], dtype=np.int64), const)))
        reshape.input[1] = const
    del no_past.output[:]
    no_past.output.extend(outputs)
    del no_past.value_info[:]
    _prune(no_past)
    _toposort(no_past)
    names = {i.name for i in no_past.input}
    if "encoder_hidden_states" not in names or not names <= {"encoder_hidden_states", "input_ids", "encoder_attention_mask"}:
        raise Unsupported(f"the cross-attention keys read {sorted(names)}")
    return no_past


def _prune(graph: "onnx.GraphProto") -> None:
    """Drop nodes and inputs that no output needs (any node order)."""
    producer = {o: n for n in graph.node for o in n.output}
    needed: set[str] = set()
    keep: set[int] = set()
    stack = [o.name for o in graph.output]
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producer.get(name)
        if node is None or id(node) in keep:
            continue
        keep.add(id(node))
        stack.extend(i for i in node.input if i)
        for a in node.attribute:  # subgraphs read outer names
            if a.g is not None and a.g.node:
                stack.extend(_subgraph_reads(a.g))
    kept = [n for n in graph.node if id(n) in keep]
    del graph.node[:]
    graph.node.extend(kept)
    inputs = [i for i in graph.input if i.name in needed]
    del graph.input[:]
    graph.input.extend(inputs)


def _reads(graph: "onnx.GraphProto") -> set[str]:
    return _subgraph_reads(graph) | {o.name for o in graph.output}


def _subgraph_reads(graph: "onnx.GraphProto") -> set[str]:
    names = set()
    for node in graph.node:
        names.update(node.input)
        for a in node.attribute:
            if a.g is not None:
                names |= _subgraph_reads(a.g)
    return names


def _toposort(graph: "onnx.GraphProto") -> None:
    pending = list(graph.node)
    ordered = []
    produced = {o for n in pending for o in n.output}
    available = {i for n in pending for i in n.input if i not in produced} | {""}  # inputs and initializers
    while pending:
        progress = []
        rest = []
        for node in pending:
            (progress if all(i in available for i in node.input) else rest).append(node)
        if not progress:
            raise Unsupported("the rewritten graph has a cycle")
        for node in progress:
            available.update(node.output)
        ordered += progress
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def save(graph: "onnx.GraphProto", weights: list["onnx.GraphProto"], opsets: list, path: Path, quantize_int4: bool = False, accuracy_level: int = 0) -> None:
    """Write ``graph`` with the initializers it reads (streamed from ``weights``') into ``path`` + ``path.data``.

    ``quantize_int4``: every MatMul with a constant 2-D float weight becomes a weight-only 4-bit MatMulNBits
    (block 32, symmetric, fp32 scales)."""
    import onnx
    from onnx import TensorProto, helper

    needed = _reads(graph)
    data_name = path.name + ".data"
    weights_of = {}
    if quantize_int4:
        weights_of = {n.input[1]: n for n in graph.node if n.op_type == "MatMul" and len(n.input) == 2}
    offset = 0
    initializers = []
    replaced_nodes = {}
    with open(path.parent / data_name, "wb") as data:

        def external(name: str, array: np.ndarray | None = None, tensor: "onnx.TensorProto" | None = None) -> "onnx.TensorProto":
            nonlocal offset
            if tensor is not None:
                raw = tensor.raw_data if tensor.HasField("raw_data") else onnx.numpy_helper.to_array(tensor).tobytes()
                dims, dtype = list(tensor.dims), tensor.data_type
            else:
                assert array is not None
                raw, dims, dtype = array.tobytes(), list(array.shape), helper.np_dtype_to_tensor_dtype(array.dtype)
            if len(raw) < 1024:
                small = TensorProto(name=name, dims=dims, data_type=dtype, raw_data=raw)
                return small
            pad = (-offset) % 64
            data.write(b"\0" * pad)
            offset += pad
            data.write(raw)
            out = TensorProto(name=name, dims=dims, data_type=dtype, data_location=TensorProto.EXTERNAL)
            for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(len(raw)))):
                entry = out.external_data.add()
                entry.key, entry.value = key, value
            offset += len(raw)
            return out

        seen = set()
        for tensor in _initializers(weights):
            if tensor.name not in needed or tensor.name in seen:
                continue
            seen.add(tensor.name)
            node = weights_of.get(tensor.name)
            if node is not None and tensor.data_type == TensorProto.FLOAT and len(tensor.dims) == 2 and tensor.dims[0] % 32 == 0:
                packed, scales = quantize_4bit(onnx.numpy_helper.to_array(tensor))
                initializers.append(external(tensor.name + "_q4", packed))
                initializers.append(external(tensor.name + "_scales", scales))
                k, n = tensor.dims
                replaced_nodes[id(node)] = helper.make_node(
                    "MatMulNBits", [node.input[0], tensor.name + "_q4", tensor.name + "_scales"], list(node.output),
                    name=(node.name or tensor.name) + "_q4", domain=MS_DOMAIN, K=int(k), N=int(n), bits=4, block_size=32,
                    accuracy_level=accuracy_level,
                )
                continue
            initializers.append(external(tensor.name, tensor=tensor))
    if replaced_nodes:
        nodes = [replaced_nodes.get(id(n), n) for n in graph.node]
        del graph.node[:]
        graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    imports = [o for o in opsets if o.domain not in ("", MS_DOMAIN)]
    onnx_version = next((o.version for o in opsets if o.domain in ("", "ai.onnx")), 17)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", onnx_version), helper.make_opsetid(MS_DOMAIN, 1), *imports],
        producer_name="lofi.nvim in-place decoder",
    )
    model.ir_version = 8
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def quantize_4bit(weight: np.ndarray, block: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``weight`` [K, N] as MatMulNBits' B [N, K/block, block/2] (uint8, two values a byte, low nibble first,
    value + 8) and scales [N * K/block] (symmetric: the block's largest magnitude maps to -8)."""
    k, n = weight.shape
    blocks = weight.T.reshape(n, k // block, block).astype(np.float32)
    peak_index = np.abs(blocks).argmax(axis=2)
    peak = np.take_along_axis(blocks, peak_index[..., None], axis=2)[..., 0]
    scales = peak / -8.0
    safe = np.where(scales == 0, 1.0, scales)
    q = np.clip(np.rint(blocks / safe[..., None]), -8, 7).astype(np.int16) + 8
    q = q.astype(np.uint8)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    return np.ascontiguousarray(packed), np.ascontiguousarray(scales.reshape(-1).astype(np.float32))


def build(model_dir: Path, form: str, out_dir: Path, quantize_int4: bool = False, accuracy_level: int = 0) -> Shape:
    """Write ``step.onnx`` and ``cross.onnx`` (with their ``.data``) into ``out_dir``; raises :class:`Unsupported`."""
    published = published_graphs(model_dir, form)
    step, shape = build_step_graph(published.with_past, published.with_past_weights)
    save(step, published.with_past_weights, published.opsets, out_dir / STEP, quantize_int4, accuracy_level)
    cross = build_cross_graph(published.no_past, published.no_past_weights)
    save(cross, published.no_past_weights, published.opsets, out_dir / CROSS, quantize_int4, accuracy_level)
    return shape


# ---------------------------------------------------------------------------------------------------------------
# Opening (cached)

INT4_BLOCK = 32
INT4_ACCURACY_LEVEL = 4
"""MatMulNBits' accuracy level for the int4 variant (4: int8 activations; measured by `make bench`)."""


def open_in_place(
    model_dir: Path,
    form: str,
    threads: int | None,
    providers: list[str],
    cache_dir: Path | None,
    quantize: str | None = None,
):
    """The in-place decoder's two sessions (``{"step": …, "cross": …}``), from the cache or built now.

    Raises :class:`Unsupported` when the published graph's structure is not the one the rewrite is proven on
    (the caller logs it and keeps the published path), LofiError when a file does not load."""
    from lofi_engine.inference.optimized_graphs import open_derived
    from lofi_engine.store import musicgen_files as files

    sources = [model_dir / name for name in (files.DECODER_FILES[form] if form == "merged" else (files.DECODER_WITH_PAST, files.DECODER))]
    int4 = quantize == "int4"
    tag = f"inplace-v{REWRITE_VERSION}" + (f"-int4-b{INT4_BLOCK}-a{INT4_ACCURACY_LEVEL}" if int4 else "")

    def derive(directory: Path) -> dict[str, Path]:
        build(model_dir, form, directory, quantize_int4=int4, accuracy_level=INT4_ACCURACY_LEVEL)
        return {"step": directory / STEP, "cross": directory / CROSS}

    required = {"step": ("input_ids", PAST_LENGTH, SEQLENS_K, TOTAL_LENGTH), "cross": ("encoder_hidden_states",)}
    return open_derived("int4" if int4 else "inplace", sources, tag, derive, threads, providers, required, cache_dir)
