"""Box decoding + NMS as ONNX (`tasks.detection.postprocess`) against torchvision's own decoding,
for each family: SSD (softmax, background dropped), RetinaNet (sigmoid), FCOS (sigmoid x centerness,
distance boxes)."""

from __future__ import annotations

import onnxruntime as ort
import pytest
import torch

from prunekit.deploy.onnx import to_onnx
from prunekit.errors import PrunekitError
from prunekit.tasks.detection.network import build_detector
from prunekit.tasks.detection.parity import match_detections, postprocess_parity
from prunekit.tasks.detection.postprocess import postprocess_graph, with_postprocess

SIZE = (64, 64)


@pytest.fixture(scope="module")
def ssd():
    return build_detector("tinydetectors:tiny_ssd", 5).eval()


def _run(model_bytes: bytes, feed: dict) -> dict:
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    boxes, scores, labels = sess.run(None, feed)
    return {"boxes": torch.from_numpy(boxes), "scores": torch.from_numpy(scores), "labels": torch.from_numpy(labels)}


FAMILIES = {"ssd": "tinydetectors:tiny_ssd", "retinanet": "tinydetectors:tiny_retinanet",
            "fcos": "tinydetectors:tiny_fcos"}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_subgraph_decodes_and_suppresses_as_torchvision_does(family):
    net = build_detector(FAMILIES[family], 5).eval()
    assert net.family == family
    with torch.no_grad():
        raw = net(torch.rand(1, 3, *SIZE))
    g = torch.Generator().manual_seed(0)
    # small box deltas: boxes stay apart (clipped to the image corners they would coincide and
    # the matching by box would be ambiguous)
    raw = torch.randn(raw.shape, generator=g) * torch.tensor([0.3] * 4 + [4.0] * (raw.shape[-1] - 4))
    net.detector.score_thresh = 0.05 if family == "ssd" else 0.6
    net.detector.topk_candidates = 10 ** 6  # torchvision's pre-NMS cut (the documented difference) never applies
    net.detector.detections_per_img = 10 ** 4  # nor the final cap, where ties at the cut could differ
    post = postprocess_graph(net, SIZE, "raw", 18)
    got = _run(post.SerializeToString(), {"raw": raw.numpy()})
    ref = net.decode(raw, SIZE)[0]
    assert 20 < len(ref["scores"]) < net.detector.detections_per_img and got["scores"].shape == ref["scores"].shape
    matched, total, box_diff, score_diff = match_detections([ref], [got])
    assert total > 0 and matched == total
    assert box_diff < 1e-3 and score_diff < 1e-5
    assert torch.equal(got["labels"].sort().values, ref["labels"].sort().values)
    first = 1 if family == "ssd" else 0  # SSD's labels are 1-based (background 0 never reported)
    assert set(got["labels"].tolist()) <= set(range(first, first + 5))
    assert float(got["boxes"].min()) >= 0 and float(got["boxes"].max()) <= SIZE[0]  # clipped to the image


def test_one_file_from_images_to_detections(ssd):
    ssd.detector.score_thresh = 0.05
    data = with_postprocess(to_onnx(ssd, (1, 3, *SIZE)).data, ssd, SIZE)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["boxes", "scores", "labels"]
    rec = postprocess_parity(ssd, data, torch.rand(3, 3, *SIZE))
    assert rec["images"] == 3 and rec["detections_compared"] > 0
    assert rec["agreement"] == pytest.approx(1.0)


def test_a_dynamic_batch_network_is_refused_clearly(ssd):
    dyn = to_onnx(ssd, (1, 3, *SIZE), dynamic_batch=True).data
    with pytest.raises(PrunekitError, match="static batch of 1"):
        with_postprocess(dyn, ssd, SIZE)


def test_the_faster_rcnn_subgraph_decodes_and_suppresses_as_torchvision_does():
    """Second stage: class-specific deltas against the network's own proposals, Softmax, background
    dropped, tiny boxes removed, per-class NMS; padded (empty) proposal slots give nothing."""
    net = build_detector("tinydetectors:tiny_faster_rcnn", 5).eval()
    assert net.family == "rcnn"
    g = torch.Generator().manual_seed(0)
    slots = net.slots()
    xy = torch.rand(1, slots, 2, generator=g) * 48
    wh = 4 + torch.rand(1, slots, 2, generator=g) * 16
    proposals = torch.cat([xy, xy + wh], dim=-1)
    proposals[:, -3:] = 0.0  # fewer proposals than slots
    logits = torch.randn(1, slots, 5, generator=g) * 3
    deltas = torch.randn(1, slots, 20, generator=g) * 0.5
    deltas[0, 2, 4:8] = torch.tensor([0.0, 0.0, -20.0, 0.0])  # a box narrower than 1e-2 px: removed
    raw = torch.cat([proposals, logits, deltas], dim=-1)
    heads = net.detector.roi_heads
    heads.score_thresh, heads.detections_per_img = 0.05, 10 ** 4
    got = _run(postprocess_graph(net, SIZE, "raw", 18).SerializeToString(), {"raw": raw.numpy()})
    ref = net.decode(raw, SIZE)[0]
    assert 10 < len(ref["scores"]) and got["scores"].shape == ref["scores"].shape
    matched, total, box_diff, score_diff = match_detections([ref], [got])
    assert total > 0 and matched == total
    assert box_diff < 1e-3 and score_diff < 1e-5
    assert torch.equal(got["labels"].sort().values, ref["labels"].sort().values)
    assert set(got["labels"].tolist()) <= set(range(1, 5))
    widths = got["boxes"][:, 2] - got["boxes"][:, 0]
    assert float(widths.min()) >= 1e-2


def test_one_faster_rcnn_file_from_images_to_detections():
    net = build_detector("tinydetectors:tiny_faster_rcnn", 5).eval()
    net.detector.roi_heads.score_thresh = 0.05
    data = with_postprocess(to_onnx(net, (1, 3, *SIZE)).data, net, SIZE)
    rec = postprocess_parity(net, data, torch.rand(3, 3, *SIZE))
    assert rec["detections_compared"] > 0 and rec["agreement"] == pytest.approx(1.0)
