"""The ONNX Runtime constant model: graph shapes match the runtime's, ops are priced from samples."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from latency_helpers import INPUT, tiny_profile
from torch import nn

from prunekit.deploy.onnx import to_onnx
from prunekit.latency.ort_graph import (
    fit_ops,
    graph_constant,
    is_data_dependent,
    is_table_node,
    node_features,
    node_size,
    op_key,
    per_node_overhead,
    sized_graph,
)
from prunekit.latency.predict import predict_latency
from prunekit.runtimes.ort_session import profile_onnx_nodes


def odd_model() -> nn.Module:
    """Odd widths force layout reorders and un-fused element-wise ops in ONNX Runtime."""
    return nn.Sequential(
        nn.Conv2d(3, 18, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(18, 21, 3, padding=1),
        nn.SiLU(),
        nn.Conv2d(21, 21, 3, padding=1, groups=21),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(21, 4),
    ).eval()


def test_graph_elements_match_the_runtime_profiler():
    data = to_onnx(odd_model(), INPUT).data
    nodes, opt_bytes = profile_onnx_nodes(data, 1, INPUT, warmup=1, repeats=3)
    opt = onnx.load_from_string(opt_bytes)
    predicted = {name: (key, melems) for name, key, melems in node_features(opt, INPUT, block=16)}
    by_name = {n.name: n for n in opt.graph.node}
    checked = 0
    for rec in nodes:
        node = by_name.get(rec["name"])
        if node is None or is_table_node(node):
            continue
        a = rec["inputs"][0] if rec["inputs"] else []
        b = rec["outputs"][0] if rec["outputs"] else []
        el = max(int(np.prod(a)) if a else 0, int(np.prod(b)) if b else 0) / 1e6
        key, melems = predicted[rec["name"]]
        assert key == op_key(node)
        assert melems == pytest.approx(el), rec["name"]
        checked += 1
    assert checked >= 3


def test_per_node_overhead_trusts_small_models_over_noisy_big_ones():
    # per-node values -2.5 us (a 0.5 ms model), +10 us and +5 us (12 ms models, where +-1 ms is noise)
    samples = [[100.0, -0.25, 0.5], [200.0, 2.0, 12.0], [200.0, 1.0, 12.0]]
    assert per_node_overhead(samples) == pytest.approx(-0.0025)
    # without the kernel sums (older profiles) it is the plain median
    assert per_node_overhead([s[:2] for s in samples]) == pytest.approx(0.005)


def test_graph_constant_prices_every_non_table_node():
    prof = tiny_profile()
    prof.constant.method = "ort-graph"
    prof.constant.samples = {"nchwc:ReorderOutput": [[0.01, 0.01], [0.02, 0.02]], ":Flatten": [[0.0, 0.001]]}
    prof.constant.overhead_samples = [[10.0, 0.02], [20.0, 0.04]]
    fit_ops(prof)
    assert prof.constant.ops["nchwc:ReorderOutput"].b_ms_per_melem == pytest.approx(1.0, rel=1e-3)
    assert prof.constant.per_node_ms == pytest.approx(0.002)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    ).eval()
    gc = graph_constant(model, prof, INPUT)
    assert gc.total_ms > 0 and gc.by_op["overhead"] == pytest.approx(0.002 * gc.nodes)
    pred = predict_latency(model, prof)
    assert pred.constant_ms == pytest.approx(gc.total_ms)
    assert pred.total_ms == pytest.approx(sum(pred.per_layer.values()) + gc.total_ms)


def test_per_node_correction_is_not_cut_short_by_the_ops_it_sits_next_to():
    """Hand oracle: the correction (-2 us x nodes) stays whole even where it outweighs the priced
    ops (a dense model whose ops are nearly all fused away), so a dense model and its pruned copy
    are corrected alike; only the total is guarded, at MIN_TOTAL_FRACTION of its priced parts."""
    from prunekit.latency.predict import MIN_TOTAL_FRACTION

    prof = tiny_profile()
    prof.constant.method = "ort-graph"
    prof.constant.samples = {":Flatten": [[0.0, 0.0001]]}
    fit_ops(prof)
    prof.constant.fixed_ms, prof.constant.per_node_ms = 0.0, -0.002
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 4)).eval()
    gc = graph_constant(model, prof, INPUT)
    assert gc.by_op["overhead"] == pytest.approx(-0.002 * gc.nodes)
    assert gc.total_ms < 0  # the ops cost less than the correction takes off
    pred = predict_latency(model, prof)
    assert pred.total_ms == pytest.approx(pred.layers_ms + gc.total_ms)
    prof.constant.per_node_ms = -10.0  # absurd: the guard holds the total at a fifth of the priced parts
    guarded = predict_latency(model, prof)
    gross = guarded.layers_ms + sum(v for v in guarded.constant_detail.values() if v > 0)
    assert guarded.total_ms == pytest.approx(MIN_TOTAL_FRACTION * gross)


def test_roialign_and_scatter_are_sized_by_what_they_compute():
    """Hand oracle: a RoiAlign costs per pooled output element (boxes x C x 7 x 7), not by the
    feature map it samples; a scatter per update (its share of the boxes), not by the tensor it
    writes into. Each has its own cost key, so samples sized the old way are never mixed in."""
    roi = onnx.helper.make_node("RoiAlign", ["x", "rois", "idx"], ["y"], name="r")
    assert node_size(roi, [[1, 8, 32, 32], [5, 4], [5]], [5, 8, 7, 7]) == pytest.approx(5 * 8 * 49 / 1e6)
    assert node_size(roi, [[1, 8, 32, 32], [0, 4], [0]], [0, 8, 7, 7]) == 0.0
    sc = onnx.helper.make_node("ScatterElements", ["data", "indices", "updates"], ["out"], name="s")
    full, part = [20, 8, 7, 7], [3, 8, 7, 7]
    assert node_size(sc, [full, part, part], full) == pytest.approx(3 * 8 * 49 / 1e6)
    assert op_key(roi) == ":RoiAlign:out" and op_key(sc) == ":ScatterElements:upd"
    add = onnx.helper.make_node("Add", ["a", "b"], ["c"], name="a")
    assert node_size(add, [[1, 8, 4, 4], [1]], [1, 8, 4, 4]) == pytest.approx(128 / 1e6)


def test_a_static_graph_is_never_run_to_size_it():
    data = to_onnx(odd_model(), INPUT).data
    assert not is_data_dependent(onnx.load_from_string(data))
    opt, ran = sized_graph(data, 1, INPUT)
    assert ran is None and len(opt.graph.node) > 0
