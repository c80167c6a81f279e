"""The part of an ONNX Runtime model the layer table does not cover, priced node by node.

ONNX Runtime rewrites a CNN before running it: BatchNorm is folded, activations and residual
adds fuse into the convolutions, the tensors move to a blocked (NCHWc) layout, and *reorder*
nodes convert layouts wherever a layer cannot use the blocked kernels (e.g. an input width
that is not a multiple of 4). Which nodes exist therefore depends on the pruned widths.

So the constant is not one number: `graph_constant` exports the model, lets ONNX Runtime
optimise it (nothing is run), and prices every node that is not a table layer (pools,
element-wise ops, reorders, concat, ...) with a per-op cost `a + b * Melements` fitted from
ONNX Runtime profiler samples (`calibrate_constant`), plus the executor's per-run and
per-node overhead. Used by the onnxruntime runtime (`prunekit.runtimes.onnxruntime`), which is
how the predictor and `profile` reach it.
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

from prunekit.deploy.onnx import to_onnx
from prunekit.latency.measure import time_one
from prunekit.latency.schema import OpCost, Profile
from prunekit.runtimes.ort_session import ort_session, profile_onnx_nodes, session_timer

TABLE_OPS = {"Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul"}
MAX_SAMPLES = 160


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
    return key


def is_table_node(node: onnx.NodeProto) -> bool:
    return node.op_type in TABLE_OPS


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
            out = _node_out(n, [s for s in ins if s is not None], consts, block)
            for o in n.output:
                if o:
                    shapes[o] = out
        if len(rest) == len(pending):
            break
        pending = rest
    return shapes


def _node_out(
    n: onnx.NodeProto, ins: list[list[int]], consts: dict[str, np.ndarray], block: int
) -> list[int]:
    op, at, x = n.op_type, _attrs(n), ins[0]
    try:
        if op in ("Conv", "FusedConv") and len(ins) > 1:
            return _conv_out(x, ins[1], at)
        if op in ("MaxPool", "AveragePool", "LpPool"):
            return _pool_out(x, at)
        if op.startswith("Global"):
            return x[:2] + [1] * (len(x) - 2)
        if op == "ReorderInput":
            return [x[0], int(math.ceil(x[1] / block) * block)] + x[2:]
        if op == "ReorderOutput":
            return [x[0], int(at.get("channels", x[1]))] + x[2:]
        if op in ("Gemm", "FusedGemm"):
            m = x[1] if at.get("transA", 0) else x[0]
            nn_ = ins[1][0] if at.get("transB", 0) else ins[1][1]
            return [m, nn_]
        if op in ("MatMul", "FusedMatMul"):
            return x[:-1] + [ins[1][-1]]
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
    model: onnx.ModelProto, input_shape: tuple[int, ...], block: int
) -> list[tuple[str, str, float]]:
    """(node name, op key, Melements) for every non-table node of an optimized graph."""
    shapes = propagate_shapes(model, input_shape, block)
    out = []
    for n in model.graph.node:
        if is_table_node(n):
            continue
        a = shapes.get(n.input[0]) if n.input and n.input[0] else None
        b = shapes.get(n.output[0]) if n.output else None
        el = max(int(np.prod(a)) if a else 0, int(np.prod(b)) if b else 0)
        out.append((n.name, op_key(n), el / 1e6))
    return out


@dataclass
class GraphConstant:
    """Priced remainder of one model's ONNX Runtime graph."""

    total_ms: float
    by_op: dict[str, float] = field(default_factory=dict)
    nodes: int = 0
    unpriced: list[str] = field(default_factory=list)


def _generic_cost(profile: Profile) -> OpCost:
    """A fallback for op kinds never calibrated: the median-cost calibrated element-wise op."""
    cands = [c for k, c in profile.constant.ops.items() if "Pool" not in k and "Reorder" not in k]
    if not cands:
        return OpCost(a_ms=0.002, b_ms_per_melem=0.5, samples=0)
    cands.sort(key=lambda c: c.b_ms_per_melem)
    return cands[len(cands) // 2]


def graph_constant(
    model: nn.Module | bytes, profile: Profile, input_shape: tuple[int, int, int, int]
) -> GraphConstant:
    """Price everything in the model's ONNX Runtime graph that the layer table does not cover."""
    data = model if isinstance(model, bytes) else to_onnx(model, input_shape).data
    opt = optimized_model(data, profile.threads or 1)
    feats = node_features(opt, input_shape, profile.pad)
    c = profile.constant
    by_op: dict[str, float] = {}
    unpriced: list[str] = []
    generic = None
    for _, key, melems in feats:
        cost = c.ops.get(key)
        if cost is None:
            generic = generic or _generic_cost(profile)
            cost = generic
            if key not in unpriced:
                unpriced.append(key)
        by_op[key] = by_op.get(key, 0.0) + cost.a_ms + cost.b_ms_per_melem * melems
    n_nodes = len(opt.graph.node)
    overhead = c.fixed_ms + c.per_node_ms * n_nodes
    by_op["overhead"] = max(
        overhead, -sum(by_op.values())
    )  # a (small) negative correction, never below 0 total
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
        # end-to-end time minus the profiled node times, per node. It is about zero and can be
        # negative: profiling adds a little to every node's time (also to the table's, which
        # were profiled the same way). The median over samples is robust to a disturbed run.
        arr = np.asarray(c.overhead_samples, dtype=float).reshape(-1, 2)
        per_node = arr[:, 1] / np.maximum(arr[:, 0], 1.0)
        c.fixed_ms, c.per_node_ms = 0.0, round(float(np.median(per_node)), 7)


def _add_samples(store: dict[str, list[list[float]]], key: str, new: list[list[float]]) -> None:
    cur = store.get(key, []) + new
    if len(cur) > MAX_SAMPLES:  # keep the size spread: sort by size, take evenly spaced samples
        cur.sort()
        idx = np.linspace(0, len(cur) - 1, MAX_SAMPLES).round().astype(int)
        cur = [cur[i] for i in idx]
    store[key] = [[round(a, 5), round(b, 6)] for a, b in cur]


def calibration_variants(model: nn.Module, input_shape: tuple[int, int, int, int]) -> list[nn.Module]:
    """The dense model and unevenly pruned copies (odd widths: reorders, slow-path kernels)."""
    import copy

    variants = [model]
    try:
        import torch
        import torch_pruning as tp
    except ImportError:
        return variants
    for ratio, round_to in ((0.3, None), (0.55, 8)):
        try:
            m = copy.deepcopy(model).eval()
            x = torch.zeros(input_shape)
            head = [mod for mod in m.modules() if isinstance(mod, nn.Linear)][-1:]
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
        new: dict[str, list[list[float]]] = {}
        kernel_sum = 0.0
        for rec in nodes:
            kernel_sum += rec["ms"]
            node = by_name.get(rec["name"])
            if node is None or is_table_node(node):
                continue
            a = rec["inputs"][0] if rec["inputs"] else []
            b = rec["outputs"][0] if rec["outputs"] else []
            el = max(int(np.prod(a)) if a else 0, int(np.prod(b)) if b else 0) / 1e6
            new.setdefault(op_key(node), []).append([el, rec["ms"]])
        for key, samples in new.items():
            _add_samples(c.samples, key, samples)
        # the same statistic as the kernel times (fastest runs), so the difference is the executor's
        # overhead and not how busy the machine happened to be
        wall = time_one(session_timer(data, threads, input_shape), warmup=3, repeats=repeats).fast_ms
        c.overhead_samples = (c.overhead_samples + [[len(opt.graph.node), round(wall - kernel_sum, 5)]])[
            -200:
        ]
    c.method = "ort-graph"
    fit_ops(profile)
    return profile
