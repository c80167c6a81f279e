"""The part of an ONNX Runtime model the layer table does not cover, priced node by node.

ONNX Runtime rewrites a CNN before running it: BatchNorm is folded, activations and residual
adds fuse into the convolutions, the tensors move to a blocked (NCHWc) layout, and *reorder*
nodes convert layouts wherever a layer cannot use the blocked kernels (e.g. an input width
that is not a multiple of 4). Which nodes exist therefore depends on the pruned widths.

So the constant is not one number: `graph_constant` exports the model, lets ONNX Runtime
optimise it (nothing is run), and prices every node that is not a table layer (pools,
element-wise ops, reorders, concat, ...) with a per-op cost `a + b * size` fitted from
ONNX Runtime profiler samples (`calibrate_constant`), plus the executor's per-run and
per-node overhead. A node's size is its larger tensor in millions of elements, except for a
MatMul of two activations (attention's Q K^T and A V: no weight, so no table layer): there it
is its multiply-accumulates in millions (batch x heads x M x K x N), which grows with the
heads a pruned block keeps. Softmax, LayerNorm and GELU are element-wise in this sense (heads x
tokens^2, tokens x width, tokens x MLP width).

A detector's graph has sizes no static propagation can know: the RPN's NonZero / NMS decide how
many proposals reach each FPN level's RoiAlign and the ScatterElements that reassemble them.
For a graph with such ops (`DATA_DEPENDENT_OPS`) the sizes come from one run under ONNX Runtime's
profiler instead (the shapes it records; the times of that one run are not used). The number of
boxes per level depends on the image, but their total is fixed (the proposal slots are padded),
and the per-level costs add up to about the same. Used by the onnxruntime runtime
(`prunekit.runtimes.onnxruntime`), which is how the predictor and `profile` reach it.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from torch import nn

from prunekit import structures
from prunekit.deploy.onnx import to_onnx
from prunekit.errors import PrunekitError
from prunekit.latency.layers import parse_signature
from prunekit.latency.measure import time_one
from prunekit.latency.ort_layers import GMACS_PER_S, cell_macs
from prunekit.latency.schema import OpCost, Profile
from prunekit.runtimes.ort_session import ort_session, profile_onnx_nodes, session_timer

TABLE_OPS = {"Conv", "FusedConv", "Gemm", "FusedGemm"}
MATMUL_OPS = {"MatMul", "FusedMatMul"}  # table layers when B is a weight, else priced by MACs (attention)
MAX_SAMPLES = 160
# ops whose cost follows one tensor (not the larger of input 0 and the output): input index, key tag
SIZED_BY = {"RoiAlign": (-1, "out"), "ScatterElements": (2, "upd"), "ScatterND": (2, "upd")}
# ops whose output sizes depend on the data: a graph with one is sized from a profiled run
DATA_DEPENDENT_OPS = {"NonZero", "NonMaxSuppression", "RoiAlign", "If", "Loop", "Scan", "Unique"}


def _short_domain(domain: str) -> str:
    if domain.endswith("nchwc"):
        return "nchwc"
    if domain == "com.microsoft":
        return "ms"
    return ""


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def op_key(node: onnx.NodeProto) -> str:
    """Cost-model key of a node: domain, op type, and for pools the window and stride."""
    key = f"{_short_domain(node.domain)}:{node.op_type}"
    if node.op_type in ("MaxPool", "AveragePool"):
        at = _attrs(node)
        k = at.get("kernel_shape", [1])
        s = at.get("strides", [1])
        key += f":k{k[0]}s{s[0]}"
    elif node.op_type in SIZED_BY:
        key += f":{SIZED_BY[node.op_type][1]}"
    return key


def is_table_node(node: onnx.NodeProto, weights: set[str] | frozenset[str] = frozenset()) -> bool:
    """Whether the layer table prices `node`: a conv, a Gemm, or a MatMul by a weight (`weights`:
    the graph's initializer names). A MatMul of two activations is not a layer: attention."""
    if node.op_type in MATMUL_OPS:
        return len(node.input) > 1 and node.input[1] in weights
    return node.op_type in TABLE_OPS


def weight_names(model: onnx.ModelProto) -> set[str]:
    """Names of the graph's initializers (what a table layer's weight is)."""
    return {t.name for t in model.graph.initializer}


def node_size(node: onnx.NodeProto, inputs: list[list[int]], output: list[int] | None) -> float:
    """The size an op cost scales with: MACs (millions) for a MatMul of two activations; for a
    RoiAlign its output (boxes x channels x 7 x 7: the feature map it samples does not matter) and
    for a scatter its updates (an FPN level's share of the boxes); else the larger of the first
    input and the output; in millions of elements."""
    a = inputs[0] if inputs else None
    if node.op_type in SIZED_BY:
        i = SIZED_BY[node.op_type][0]
        t = output if i < 0 else (inputs[i] if len(inputs) > i else None)
        return float(np.prod(t)) / 1e6 if t else 0.0
    if node.op_type in MATMUL_OPS and a and output:
        k = a[-2] if (_attrs(node).get("transA", 0) and len(a) > 1) else a[-1]
        return float(np.prod(output)) * k / 1e6
    el = max(int(np.prod(a)) if a else 0, int(np.prod(output)) if output else 0)
    return el / 1e6


def optimized_model(onnx_bytes: bytes, threads: int) -> onnx.ModelProto:
    """The graph ONNX Runtime would run (all optimisations, this machine's kernels); not executed."""
    with tempfile.TemporaryDirectory(prefix="prunekit-opt-") as tmp:
        path = os.path.join(tmp, "opt.onnx")
        ort_session(onnx_bytes, threads, optimized_path=path)
        return onnx.load(path)


def _conv_out(x: list[int], w: list[int], at: dict[str, Any]) -> list[int]:
    k = at.get("kernel_shape", w[2:])
    s = at.get("strides", [1] * len(k))
    d = at.get("dilations", [1] * len(k))
    p = at.get("pads", [0] * (2 * len(k)))
    out = [x[0], w[0]]
    for i in range(len(k)):
        out.append((x[2 + i] + p[i] + p[i + len(k)] - d[i] * (k[i] - 1) - 1) // s[i] + 1)
    return out


def _pool_out(x: list[int], at: dict[str, Any]) -> list[int]:
    k = at.get("kernel_shape", [1, 1])
    s = at.get("strides", [1] * len(k))
    p = at.get("pads", [0] * (2 * len(k)))
    ceil = at.get("ceil_mode", 0)
    out = [x[0], x[1]]
    for i in range(len(k)):
        num = x[2 + i] + p[i] + p[i + len(k)] - k[i]
        out.append((math.ceil(num / s[i]) if ceil else num // s[i]) + 1)
    return out


def _broadcast(shapes: list[list[int]]) -> list[int]:
    try:
        return list(np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        return max(shapes, key=lambda s: int(np.prod(s)) if s else 0)


def propagate_shapes(
    model: onnx.ModelProto, input_shape: tuple[int, ...], block: int
) -> dict[str, list[int]]:
    """Shapes of every tensor of an optimized ONNX Runtime graph (NCHWc tensors padded to `block`)."""
    g = model.graph
    shapes: dict[str, list[int]] = {}
    consts: dict[str, np.ndarray] = {}
    for t in g.initializer:
        shapes[t.name] = list(t.dims)
        if t.data_type == onnx.TensorProto.INT64 and len(t.dims) <= 1:
            consts[t.name] = numpy_helper.to_array(t)
    init_names = {t.name for t in g.initializer}
    for i, inp in enumerate(x for x in g.input if x.name not in init_names):
        dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        shapes[inp.name] = list(input_shape) if i == 0 else dims
    pending = list(g.node)
    for _ in range(len(pending) + 1):
        if not pending:
            break
        rest = []
        for n in pending:
            ins = [shapes.get(i) for i in n.input if i]
            if not n.input or ins[0] is None:
                rest.append(n)
                continue
            outs = _node_outs(n, ins, consts, block)
            for o, shape in zip(n.output, outs, strict=False):
                if o:
                    shapes[o] = shape
        if len(rest) == len(pending):
            break
        pending = rest
    return shapes


def _const(n: onnx.NodeProto, i: int, consts: dict[str, np.ndarray]) -> list[int] | None:
    """Input `i` of `n` as a list of ints when it is a constant (axes, split sizes, starts)."""
    if len(n.input) > i and n.input[i] in consts:
        return [int(v) for v in consts[n.input[i]].reshape(-1)]
    return None


def _node_outs(
    n: onnx.NodeProto, ins: list[list[int] | None], consts: dict[str, np.ndarray], block: int
) -> list[list[int]]:
    """Shapes of every output of `n` (multi-output ops: Split; else the one output's shape)."""
    op, at, x = n.op_type, _attrs(n), ins[0] or []
    outs = [o for o in n.output]
    try:
        if op == "Split" and x:
            ax = at.get("axis", 0)
            ax = ax + len(x) if ax < 0 else ax
            sizes = _const(n, 1, consts) or at.get("split")
            if not sizes:
                k = len(outs)
                sizes = [-(-x[ax] // k)] * (k - 1) + [x[ax] - (k - 1) * -(-x[ax] // k)]
            return [x[:ax] + [int(v)] + x[ax + 1:] for v in sizes]
    except (IndexError, TypeError, ValueError):
        pass
    return [_node_out(n, [s for s in ins if s is not None], consts, block)] * max(1, len(outs))


def _node_out(
    n: onnx.NodeProto, ins: list[list[int]], consts: dict[str, np.ndarray], block: int
) -> list[int]:
    op, at, x = n.op_type, _attrs(n), ins[0]
    try:
        if op in ("Squeeze", "Unsqueeze"):
            axes = _const(n, 1, consts) or at.get("axes")
            if op == "Squeeze":
                if axes is None:
                    return [d for d in x if d != 1]
                drop = {a + len(x) if a < 0 else a for a in axes}
                return [d for i, d in enumerate(x) if i not in drop]
            if axes is not None:
                rank = len(x) + len(axes)
                put = sorted(a + rank if a < 0 else a for a in axes)
                out, rest = [], iter(x)
                for i in range(rank):
                    out.append(1 if i in put else next(rest))
                return out
        if op == "Gather":
            idx = _const(n, 1, consts)
            ax = at.get("axis", 0)
            ax = ax + len(x) if ax < 0 else ax
            if idx is not None:
                scalar = n.input[1] in consts and consts[n.input[1]].ndim == 0
                return x[:ax] + ([] if scalar else [len(idx)]) + x[ax + 1:]
        if op == "Slice":
            starts, ends = _const(n, 1, consts), _const(n, 2, consts)
            axes = _const(n, 3, consts) or list(range(len(starts or [])))
            steps = _const(n, 4, consts) or [1] * len(axes)
            if starts is not None and ends is not None:
                out = list(x)
                for s0, e0, a, st in zip(starts, ends, axes, steps, strict=False):
                    a = a + len(x) if a < 0 else a
                    out[a] = len(range(*slice(s0, e0, st).indices(x[a])))
                return out
        if op in ("MatMul", "FusedMatMul") and len(ins) > 1:
            a, b = list(x), list(ins[1])
            if op == "FusedMatMul":
                if at.get("transA", 0) and len(a) > 1:
                    a[-2], a[-1] = a[-1], a[-2]
                if at.get("transB", 0) and len(b) > 1:
                    b[-2], b[-1] = b[-1], b[-2]
            if len(a) >= 2 and len(b) >= 2:
                return _broadcast([a[:-2], b[:-2]]) + [a[-2], b[-1]]
            return a[:-1] + [b[-1]]
        if op in ("Conv", "FusedConv") and len(ins) > 1:
            return _conv_out(x, ins[1], at)
        if op in ("MaxPool", "AveragePool", "LpPool"):
            return _pool_out(x, at)
        if op.startswith("Global"):
            return x[:2] + [1] * (len(x) - 2)
        if op == "ReorderInput":
            return [x[0], int(math.ceil(x[1] / block) * block)] + x[2:]
        if op == "ReorderOutput":
            c = int(at.get("channels", x[1]))
            return [x[0], *x[2:], c] if at.get("channels_last", 0) else [x[0], c, *x[2:]]
        if op == "Pad":
            pads = _const(n, 1, consts) or at.get("pads")
            if pads and len(pads) == 2 * len(x):
                return [d + pads[i] + pads[i + len(x)] for i, d in enumerate(x)]
        if op in ("Gemm", "FusedGemm"):
            m = x[1] if at.get("transA", 0) else x[0]
            nn_ = ins[1][0] if at.get("transB", 0) else ins[1][1]
            return [m, nn_]
        if op == "Flatten":
            ax = at.get("axis", 1)
            return [int(np.prod(x[:ax])), int(np.prod(x[ax:]))]
        if op == "Reshape" and len(n.input) > 1 and n.input[1] in consts:
            tgt = [int(v) for v in consts[n.input[1]].reshape(-1)]
            tgt = [x[i] if v == 0 and i < len(x) else v for i, v in enumerate(tgt)]
            if -1 in tgt:
                known = int(np.prod([v for v in tgt if v != -1])) or 1
                tgt[tgt.index(-1)] = int(np.prod(x)) // known
            return tgt
        if op == "Concat":
            ax = at.get("axis", 1)
            ax = ax + len(x) if ax < 0 else ax
            out = list(x)
            out[ax] = sum(s[ax] for s in ins)
            return out
        if op == "Transpose":
            perm = at.get("perm", list(range(len(x)))[::-1])
            return [x[p] for p in perm]
        if op in ("Add", "Mul", "Sub", "Div", "Sum", "Max", "Min", "Where", "Pow", "BiasGelu", "Equal"):
            return _broadcast(ins)
    except (IndexError, TypeError, ValueError, KeyError):
        pass
    return list(x)


def node_features(
    model: onnx.ModelProto, input_shape: tuple[int, ...], block: int,
    ran: dict[str, dict[str, Any]] | None = None,
) -> list[tuple[str, str, float]]:
    """(node name, op key, size) for every non-table node of an optimized graph (`node_size`).

    `ran`: profiler records by node name (`profile_onnx_nodes`); a node found there is sized by
    the shapes it actually had, the others by static propagation."""
    shapes = propagate_shapes(model, input_shape, block)
    weights = weight_names(model)
    ran = ran or {}
    out = []
    for n in model.graph.node:
        if is_table_node(n, weights):
            continue
        rec = ran.get(n.name)
        if rec is not None:
            ins = [list(v) for v in rec["inputs"]]
            b = list(rec["outputs"][0]) if rec["outputs"] else None
        else:
            ins = [shapes.get(i) or [] for i in n.input if i]
            b = shapes.get(n.output[0]) if n.output else None
        out.append((n.name, op_key(n), node_size(n, ins, b)))
    return out


def is_data_dependent(model: onnx.ModelProto) -> bool:
    """Whether some tensor sizes of `model` depend on its input data (`DATA_DEPENDENT_OPS`)."""
    return any(n.op_type in DATA_DEPENDENT_OPS for n in model.graph.node)


def sized_graph(
    data: bytes, threads: int, input_shape: tuple[int, ...]
) -> tuple[onnx.ModelProto, dict[str, dict[str, Any]] | None]:
    """The optimized graph of `data`, and for a data-dependent one the profiler's record of every
    node from one run (its shapes), else None: the graph is only optimised, never run."""
    if not is_data_dependent(onnx.load_from_string(data)):
        return optimized_model(data, threads), None
    nodes, opt_bytes = profile_onnx_nodes(data, threads, input_shape, warmup=0, repeats=1)
    return onnx.load_from_string(opt_bytes), {r["name"]: r for r in nodes}


@dataclass
class GraphConstant:
    """Priced remainder of one model's ONNX Runtime graph."""

    total_ms: float
    by_op: dict[str, float] = field(default_factory=dict)
    nodes: int = 0
    unpriced: list[str] = field(default_factory=list)


def _generic_cost(profile: Profile) -> OpCost:
    """A fallback for op kinds never calibrated: the median-cost calibrated element-wise op."""
    cands = [
        c for k, c in profile.constant.ops.items()
        if "Pool" not in k and "Reorder" not in k and k.split(":")[-1] not in MATMUL_OPS
    ]
    if not cands:
        return OpCost(a_ms=0.002, b_ms_per_melem=0.5, samples=0)
    cands.sort(key=lambda c: c.b_ms_per_melem)
    return cands[len(cands) // 2]


def _matmul_cost(profile: Profile) -> OpCost:
    """A fallback for an uncalibrated MatMul of two activations (ms per million MACs): a calibrated
    one, else the median ms / MMAC of the largest measured cell of each Linear signature (else of
    each conv signature) of the table."""
    for k, c in profile.constant.ops.items():
        if k.split(":")[-1] in MATMUL_OPS and c.samples:
            return c
    rates: dict[bool, list[float]] = {True: [], False: []}
    for sig, entry in profile.table.items():
        if entry.cout is None or sig.startswith(("dwconv", "gconv")):
            continue
        cells = entry.cells()
        (cin, cout), ms = max(cells.items(), key=lambda kv: kv[0][0] * kv[0][1])
        try:
            info = parse_signature(sig)
        except PrunekitError:
            continue
        macs = cell_macs(info, cin, cout, profile.batch_size)
        if macs > 0 and ms > 0:
            rates[sig.startswith("linear")].append(ms / (macs / 1e6))
    found = rates[True] or rates[False]
    rate = float(np.median(found)) if found else 1.0 / GMACS_PER_S
    return OpCost(a_ms=0.0, b_ms_per_melem=round(rate, 6), samples=0)


def graph_constant(
    model: nn.Module | bytes, profile: Profile, input_shape: tuple[int, int, int, int]
) -> GraphConstant:
    """Price everything in the model's ONNX Runtime graph that the layer table does not cover."""
    data = model if isinstance(model, bytes) else to_onnx(as_pruned(model), input_shape).data
    opt, ran = sized_graph(data, profile.threads or 1, input_shape)
    feats = node_features(opt, input_shape, profile.pad, ran)
    c = profile.constant
    by_op: dict[str, float] = {}
    unpriced: list[str] = []
    fallback: dict[bool, OpCost] = {}
    for _, key, size in feats:
        cost = c.ops.get(key)
        if cost is None:
            is_mm = key.split(":")[-1] in MATMUL_OPS
            if is_mm not in fallback:
                fallback[is_mm] = _matmul_cost(profile) if is_mm else _generic_cost(profile)
            cost = fallback[is_mm]
            if key not in unpriced:
                unpriced.append(key)
        by_op[key] = by_op.get(key, 0.0) + cost.a_ms + cost.b_ms_per_melem * size
    n_nodes = len(opt.graph.node)
    # the per-node correction is mostly negative (it takes the profiler's addition off every
    # node, the table's layers included), so the constant may be below 0: `predict_latency`
    # guards the total instead. (Clamping it here at -ops cut the correction short for a dense
    # model whose ops are nearly all fused away, and for its pruned copies not.)
    by_op["overhead"] = c.fixed_ms + c.per_node_ms * n_nodes
    return GraphConstant(total_ms=float(sum(by_op.values())), by_op=by_op, nodes=n_nodes, unpriced=unpriced)


# ------------------------------------------------------------------ calibration
def _nnls(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """y ~ a + b x with a, b >= 0, minimising the *relative* error (small nodes count as much as big ones)."""
    from scipy.optimize import nnls

    w = 1.0 / np.maximum(y, 1e-4)
    A = np.stack([np.ones_like(x), x], axis=1) * w[:, None]
    sol, _ = nnls(A, y * w)
    return float(sol[0]), float(sol[1])


def fit_ops(profile: Profile) -> None:
    """Refit every op cost and the executor overhead from the stored samples (in place)."""
    c = profile.constant
    for key, samples in c.samples.items():
        arr = np.asarray(samples, dtype=float).reshape(-1, 2)
        a, b = _nnls(arr[:, 0], arr[:, 1])
        c.ops[key] = OpCost(a_ms=round(a, 6), b_ms_per_melem=round(b, 6), samples=len(arr))
    if c.overhead_samples:
        c.fixed_ms, c.per_node_ms = 0.0, round(per_node_overhead(c.overhead_samples), 7)


def per_node_overhead(samples: list[list[float]]) -> float:
    """Executor overhead per node (ms) from [nodes, end-to-end - profiled kernel sum, kernel sum] samples.

    It is about -1 to -4 us on ONNX Runtime 1.x: the profiler adds that to every node's time (also
    to the table's cells, profiled the same way), so the correction is negative. A sample's noise
    grows with the model's time: on a 12 ms model a quiet 2-core machine moves the difference by
    +-1 ms, 5 us per node, while a 0.3 ms model pins it to a fraction of a microsecond. So each
    sample's per-node value is weighted by (nodes / kernel sum)^2, its inverse variance, and the
    weighted median is taken (robust to one disturbed run). Samples without the kernel sum
    (profiles made before it was stored) count equally: the plain median.
    """
    arr = [list(map(float, s)) for s in samples]
    values = np.asarray([s[1] / max(s[0], 1.0) for s in arr])
    if not all(len(s) >= 3 and s[2] > 0 for s in arr):
        return float(np.median(values))
    weights = np.asarray([(s[0] / s[2]) ** 2 for s in arr])
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2)])


def _add_samples(store: dict[str, list[list[float]]], key: str, new: list[list[float]]) -> None:
    cur = store.get(key, []) + new
    if len(cur) > MAX_SAMPLES:  # keep the size spread: sort by size, take evenly spaced samples
        cur.sort()
        idx = np.linspace(0, len(cur) - 1, MAX_SAMPLES).round().astype(int)
        cur = [cur[i] for i in idx]
    store[key] = [[round(a, 5), round(b, 6)] for a, b in cur]


def as_pruned(model: nn.Module) -> nn.Module:
    """`model` as prunekit prunes it: a copy with its attention blocks converted to separate
    q/k/v Linears (`structures.prepare`, the same function), or `model` itself when there are none.
    The layer table enumerates the converted form, so the priced graph must be the same one."""
    if not structures.needs_prepare(model):
        return model
    import copy

    converted = copy.deepcopy(model)
    structures.prepare(converted)
    return converted


def transformer_variants(model: nn.Module, input_shape: tuple[int, int, int, int]) -> list[nn.Module]:
    """Copies of a model with attention blocks, pruned as prunekit prunes them: fewer heads per block
    and narrower MLPs (uneven over the blocks), so the samples span the attention sizes a pruned
    model has. Empty when the model has no attention blocks or does not prune."""
    import copy

    import torch

    probe = as_pruned(model)
    if probe is model and not structures.attention_blocks(model):
        return []
    from prunekit.pruning import PruningGraph, kept_width

    out = []
    for k, (heads_keep, mlp_keep) in enumerate(((0.67, 0.6), (0.34, 0.3))):
        try:
            m = copy.deepcopy(probe).eval()
            graph = PruningGraph(m, torch.zeros(input_shape), "calibration")
            keep = {}
            for i, g in enumerate(graph.groups):
                heads = g.step > 1
                single = len(g.out_layers) == 1
                if not heads and not single:  # the embedding width: kept (its LayerNorms stay dense)
                    continue
                frac = (heads_keep if heads else mlp_keep) * (0.75 + 0.25 * ((i + k) % 3))
                n = kept_width(g.width, min(1.0, frac), round_to=8, step=g.step)
                keep[g.name] = torch.arange(n)
            graph.prune(keep)
            out.append(m)
        except Exception:  # calibration falls back to the dense graph's samples
            break
    return out


def calibration_variants(model: nn.Module, input_shape: tuple[int, int, int, int]) -> list[nn.Module]:
    """The dense model and unevenly pruned copies (odd widths: reorders, slow-path kernels; for a
    transformer, fewer heads and narrower MLPs)."""
    import copy

    variants = [model]
    pruned = transformer_variants(model, input_shape)
    if pruned:
        return [as_pruned(model), *pruned]
    try:
        import torch
        import torch_pruning as tp
    except ImportError:
        return variants
    for ratio, round_to in ((0.3, None), (0.55, 8)):
        try:
            m = copy.deepcopy(model).eval()
            x = torch.zeros(input_shape)
            declared = getattr(m, "output_layers", None)  # a detector names its box / class layers
            head = list(declared()) if callable(declared) else [mod for mod in m.modules() if isinstance(mod, nn.Linear)][-1:]
            layer_ratio = {}
            convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
            for i, mod in enumerate(convs):
                layer_ratio[mod] = ratio * (0.5 + (i % 3) / 2)  # uneven: 0.5x, 1x, 1.5x the ratio
            pruner = tp.pruner.MagnitudePruner(
                m,
                x,
                importance=tp.importance.MagnitudeImportance(p=2),
                pruning_ratio=ratio,
                pruning_ratio_dict=layer_ratio,
                ignored_layers=head,
                round_to=round_to,
                **({"forward_fn": lambda mod, x: mod.trace_forward(x)} if hasattr(m, "trace_forward") else {}),
            )
            pruner.step()
            variants.append(m)
        except Exception:  # a model torch-pruning cannot trace is calibrated on its dense graph only
            break
    return variants


def calibrate_constant(
    profile: Profile,
    model: nn.Module,
    input_shape: tuple[int, int, int, int],
    label: str = "model",
    repeats: int = 25,
) -> Profile:
    """Record ONNX Runtime profiler samples of every non-table node of `model` and variants; refit."""
    c = profile.constant
    threads = profile.threads or 1
    for variant in calibration_variants(model, input_shape):
        data = to_onnx(variant, input_shape).data
        nodes, opt_bytes = profile_onnx_nodes(data, threads, input_shape, warmup=3, repeats=repeats)
        opt = onnx.load_from_string(opt_bytes)
        by_name = {n.name: n for n in opt.graph.node}
        weights = weight_names(opt)
        new: dict[str, list[list[float]]] = {}
        kernel_sum = 0.0
        for rec in nodes:
            kernel_sum += rec["ms"]
            node = by_name.get(rec["name"])
            if node is None or is_table_node(node, weights):
                continue
            size = node_size(node, [list(v) for v in rec["inputs"]],
                             list(rec["outputs"][0]) if rec["outputs"] else None)
            new.setdefault(op_key(node), []).append([size, rec["ms"]])
        for key, samples in new.items():
            _add_samples(c.samples, key, samples)
        # the same statistic as the kernel times (fastest runs), so the difference is the executor's
        # overhead and not how busy the machine happened to be
        wall = time_one(session_timer(data, threads, input_shape), warmup=3, repeats=repeats).fast_ms
        c.overhead_samples = (c.overhead_samples + [[len(opt.graph.node), round(wall - kernel_sum, 5), round(kernel_sum, 5)]])[
            -200:
        ]
    c.method = "ort-graph"
    fit_ops(profile)
    return profile
