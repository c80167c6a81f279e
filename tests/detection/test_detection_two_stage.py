"""TwoStageNet (Faster R-CNN): the whole network in one forward, torchvision's own decoding and
losses outside it, pruning through the RoI stage, and ONNX Runtime parity of the export."""

from __future__ import annotations

import pytest
import torch
from detfiles import shapes_images, shapes_targets

from prunekit.deploy.onnx import to_onnx
from prunekit.errors import PrunekitError
from prunekit.pruning import PruningGraph, apply_plan
from prunekit.select import Goal, select
from prunekit.tasks.detection.network import build_detector
from prunekit.tasks.detection.parity import detection_parity
from prunekit.tasks.detection.two_stage import TwoStageNet

TINY = "tinydetectors:tiny_faster_rcnn"


@pytest.fixture()
def net() -> TwoStageNet:
    torch.manual_seed(0)
    n = build_detector(TINY, 4)
    assert isinstance(n, TwoStageNet)
    return n.eval()


def test_decoding_the_network_output_is_torchvisions_own_inference(net: TwoStageNet) -> None:
    """Oracle: the wrapped detector's own eval forward (its transform does not resize a 64 px image)."""
    x = shapes_images(2, seed=7)
    with torch.no_grad():
        out = net(x)
        ours = net.decode(out, (64, 64))
        theirs = net.detector(list(x))
    assert out.shape == (2, 20, 4 + 4 + 16)  # slots x (proposal, 4 logits, 4 x 4 deltas)
    for a, b in zip(ours, theirs, strict=True):
        assert a["boxes"].shape == b["boxes"].shape and a["boxes"].shape[0] > 0
        torch.testing.assert_close(a["boxes"], b["boxes"], atol=1e-4, rtol=0)
        torch.testing.assert_close(a["scores"], b["scores"], atol=1e-5, rtol=0)
        assert torch.equal(a["labels"], b["labels"])


def test_padded_slots_decode_to_nothing(net: TwoStageNet) -> None:
    out = net(shapes_images(1, seed=7)).detach()
    out[:, 5:, :4] = 0.0  # proposals 5.. empty: as when the RPN keeps fewer than R
    out[:, 5:, 4:] = torch.randn_like(out[:, 5:, 4:]) * 10
    dets = net.decode(out, (64, 64))[0]
    assert dets["boxes"].shape[0] <= 5 * 3  # at most one box per class of the 5 real proposals


def test_losses_are_torchvisions_and_reach_every_stage(net: TwoStageNet) -> None:
    net.train()
    x = shapes_images(2, seed=7)
    out = net(x)
    assert out.shape == (2, 30, 4)  # training forward: the proposals (RoIs are sampled in the loss)
    losses = net.losses(out, shapes_targets(2, seed=7), (64, 64))
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    sum(losses.values()).backward()
    det = net.detector
    for p in (det.backbone.stem[0].weight, det.rpn.head.cls_logits.weight, det.roi_heads.box_head.fc6.weight):
        assert p.grad is not None and float(p.grad.abs().sum()) > 0
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    assert torch.isfinite(sum(net.losses(net(x), empty, (64, 64)).values()))
    with pytest.raises(PrunekitError, match="training forward"):
        net.losses(out, shapes_targets(2, seed=7), (64, 64))  # the kept features were used up


def test_pruning_reaches_the_box_head_through_roialign(net: TwoStageNet) -> None:
    """Oracle by hand: an FPN-level channel c feeds fc6's inputs c*49 .. c*49+48 (RoIAlign's 7x7
    bins, flattened), so pruning the backbone's output channels keeps exactly those blocks."""
    fc6 = net.detector.roi_heads.box_head.fc6
    before = fc6.weight.detach().clone().view(fc6.out_features, 32, 49)
    example = torch.zeros(1, 3, 64, 64)
    graph = PruningGraph(net, example, TINY)
    out_group = next(g for g in graph.groups if "detector.roi_heads.box_head.fc6" in g.in_layers
                     and any(n.startswith("detector.backbone") for n in g.out_layers))
    kept = [0, 3, 4, 9, 17, 30]
    graph.prune({out_group.name: kept})
    assert fc6.in_features == len(kept) * 49
    torch.testing.assert_close(fc6.weight.detach(), before[:, kept, :].reshape(fc6.out_features, -1))
    # the RPN head reads the same channels; its objectness / delta convs and the predictor keep widths
    assert net.detector.rpn.head.conv[0][0].in_channels == len(kept)
    assert [m.weight.shape[0] for m in net.output_layers()] == [3, 12, 4, 16]
    with torch.no_grad():
        assert net(shapes_images(1, seed=7)).shape == (1, 20, 24)


def test_prune_select_and_identity_reload(net: TwoStageNet) -> None:
    example = torch.zeros(1, 3, 64, 64)
    graph = PruningGraph(net, example, TINY)
    keep, _ = select(graph, graph.importance("magnitude"), Goal(kind="ratio", ratio=0.5))
    graph.prune(keep)
    reloaded = apply_plan(build_detector(TINY, 4), graph.plan(), example, TINY).eval()
    reloaded.load_state_dict(net.state_dict())
    x = shapes_images(2, seed=7)
    with torch.no_grad():
        assert torch.equal(net(x), reloaded(x))


def test_onnx_export_holds_the_rpn_nms_and_roialign(net: TwoStageNet) -> None:
    """The exported file is the whole network (TopK, NonMaxSuppression, RoiAlign inside); ONNX
    Runtime's outputs decode to torch's detections."""
    import onnx

    x = shapes_images(4, seed=7)
    export = to_onnx(net, (1, 3, 64, 64))
    def ops_of(graph: onnx.GraphProto) -> set[str]:  # NMS sits in an If branch (no boxes: no NMS)
        found = set()
        for n in graph.node:
            found.add(n.op_type)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    found |= ops_of(a.g)
        return found

    ops = ops_of(onnx.load_from_string(export.data).graph)
    assert {"NonMaxSuppression", "RoiAlign", "TopK"} <= ops
    res = detection_parity(net, export.data, x[:1], 1e-4, 1e-4)
    assert res["passed"], res
    assert res["details"]["detections_compared"] > 0


def test_mask_and_keypoint_rcnn_are_refused_in_one_line() -> None:
    with pytest.raises(PrunekitError, match="mask / keypoint head"):
        build_detector("maskrcnn_resnet50_fpn", 4)


@pytest.mark.slow
def test_torchvision_faster_rcnn_mobilenet_prunes_and_reloads() -> None:
    name = "fasterrcnn_mobilenet_v3_large_fpn"
    torch.manual_seed(0)
    net = build_detector(name, 4).eval()
    example = torch.zeros(1, 3, 128, 128)
    graph = PruningGraph(net, example, name)
    assert any(n.endswith("box_head.fc6") for g in graph.groups for n in g.out_layers)  # box head width: prunable
    keep, _ = select(graph, graph.importance("magnitude"), Goal(kind="ratio", ratio=0.3))
    graph.prune(keep)
    reloaded = apply_plan(build_detector(name, 4), graph.plan(), example, name).eval()
    reloaded.load_state_dict(net.state_dict())
    x = shapes_images(1, 128, seed=7)
    with torch.no_grad():
        assert torch.equal(net(x), reloaded(x))


def test_the_constant_model_sizes_the_roi_stage_from_a_run(net: TwoStageNet) -> None:
    """How many proposals reach each FPN level is decided by the RPN at run time, so static shape
    propagation cannot size the RoiAlign / scatter nodes; one profiled run does. Hand oracle: over
    the levels they add up to the proposal slots x FPN width (32) x 7 x 7, whatever the split."""
    import onnx

    from prunekit.latency.ort_graph import is_data_dependent, node_features, sized_graph

    shape = (1, 3, 64, 64)
    data = to_onnx(net, shape).data
    assert is_data_dependent(onnx.load_from_string(data))
    opt, ran = sized_graph(data, 1, shape)
    assert ran is not None
    feats = node_features(opt, shape, 16, ran)
    expected = net.slots() * 32 * 49 / 1e6
    roi = [s for _, k, s in feats if k == ":RoiAlign:out"]
    upd = [s for _, k, s in feats if k.endswith(":upd")]
    assert len(roi) == 2 and sum(roi) == pytest.approx(expected)
    assert sum(upd) == pytest.approx(expected)
