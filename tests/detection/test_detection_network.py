"""DetectorNet: raw head outputs, output layers kept, pruning, plan + safetensors reload, losses."""

from __future__ import annotations

import pytest
import torch
from detfiles import shapes_images, shapes_targets
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from prunekit.errors import PrunekitError
from prunekit.pruning import PruningGraph, apply_plan
from prunekit.select import Goal, select
from prunekit.tasks import resolve_task
from prunekit.tasks.detection.network import DetectorNet, build_detector

SSD = "ssdlite320_mobilenet_v3_large"


def _prune_reload(name: str, ratio: float = 0.5) -> tuple[DetectorNet, DetectorNet, PruningGraph]:
    torch.manual_seed(0)
    net = build_detector(name, 4).eval()
    heads = {id(m): (m.out_channels) for m in net.output_layers()}
    example = torch.zeros(1, 3, 64, 64)
    graph = PruningGraph(net, example, name)
    keep, _ = select(graph, graph.importance("magnitude"), Goal(kind="ratio", ratio=ratio))
    graph.prune(keep)
    assert {id(m): m.out_channels for m in net.output_layers()} == heads  # box / class widths kept
    reloaded = apply_plan(build_detector(name, 4), graph.plan(), example, name)
    reloaded.load_state_dict(st_load(st_save({k: v.contiguous() for k, v in net.state_dict().items()})))
    return net, reloaded.eval(), graph


def test_ssdlite_network_prune_and_reload() -> None:
    net, reloaded, graph = _prune_reload(SSD)
    dense = build_detector(SSD, 4)
    assert len(net.output_layers()) == 12  # 6 levels x (boxes, classes)
    assert sum(p.numel() for p in net.parameters()) < 0.5 * sum(p.numel() for p in dense.parameters())
    x = shapes_images(2, seed=5)
    with torch.no_grad():
        out = net(x)
        assert out.shape[0] == 2 and out.shape[-1] == 4 + 4  # 4 box deltas + 4 class logits per anchor
        assert torch.equal(out, reloaded(x))  # identity reload: plan replay + safetensors
        dets = net.decode(out, (64, 64))
    assert len(dets) == 2 and dets[0]["boxes"].shape[-1] == 4
    assert dets[0]["boxes"].numel() == 0 or float(dets[0]["boxes"].max()) <= 64.0


def test_losses_are_the_detectors_and_train() -> None:
    net = build_detector(SSD, 4).train()
    x, ys = shapes_images(2, seed=5), shapes_targets(2, seed=5)
    losses = net.losses(net(x), ys, (64, 64))
    assert set(losses) == {"bbox_regression", "classification"}
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total) and net.detector.backbone.features[0][0][0].weight.grad is not None
    # an empty image (no boxes) is a valid target
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    assert torch.isfinite(sum(net.losses(net(x), empty, (64, 64)).values()))


@pytest.mark.parametrize("factory", ["tinydetectors:tiny_fcos", "tinydetectors:tiny_retinanet"])
def test_factory_detectors_prune_and_reload(factory: str) -> None:
    net, reloaded, graph = _prune_reload(factory, ratio=0.5)
    assert any(g.name.startswith("detector.backbone") for g in graph.groups)
    x = shapes_images(2, seed=5)
    with torch.no_grad():
        assert torch.equal(net(x), reloaded(x))
    net.train()
    assert torch.isfinite(sum(net.losses(net(x), shapes_targets(2, seed=5), (64, 64)).values()))


def test_task_inference_and_refusals() -> None:
    assert resolve_task(None, SSD).name == "detection"
    assert resolve_task(None, "resnet18").name == "classification"
    assert resolve_task(None, "fasterrcnn_mobilenet_v3_large_fpn").name == "detection"
    with pytest.raises(PrunekitError, match="not a torchvision SSD, RetinaNet, FCOS or Faster R-CNN detector"):
        build_detector("tinydetectors:not_a_detector", 4)
    with pytest.raises(PrunekitError, match="unknown detection model 'resnet18'"):
        build_detector("resnet18", 4)


def test_a_detector_that_does_not_trace_names_the_layer() -> None:
    net = build_detector("tinydetectors:size_bound_fcos", 4)  # runs at 64 px
    with pytest.raises(PrunekitError, match=r"in layer 'detector.backbone.stem.6'"):
        PruningGraph(net, torch.zeros(1, 3, 96, 96), "tinydetectors:size_bound_fcos")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fcos_resnet50_fpn", "retinanet_resnet50_fpn"])
def test_torchvision_fpn_detectors_prune_and_reload(name: str) -> None:
    net, reloaded, graph = _prune_reload(name, ratio=0.3)
    x = shapes_images(1, seed=5)
    with torch.no_grad():
        assert torch.equal(net(x), reloaded(x))


def test_latency_calibration_copies_keep_the_output_convs() -> None:
    """The ONNX Runtime constant model prunes copies with Torch-Pruning: the box / class convs stay."""
    from prunekit.latency.ort_graph import calibration_variants

    net = build_detector("tinydetectors:tiny_retinanet", 4).eval()
    widths = [m.out_channels for m in net.output_layers()]
    variants = calibration_variants(net, (1, 3, 64, 64))
    assert len(variants) == 3  # dense + two unevenly pruned copies
    for v in variants[1:]:
        assert [m.out_channels for m in v.output_layers()] == widths
        assert sum(p.numel() for p in v.parameters()) < sum(p.numel() for p in net.parameters())
        with torch.no_grad():
            assert v(torch.zeros(1, 3, 64, 64)).shape == net(torch.zeros(1, 3, 64, 64)).shape
