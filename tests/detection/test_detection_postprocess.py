"""Box decoding + NMS as ONNX (`tasks.detection.postprocess`) against torchvision's own decoding."""

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


def test_the_subgraph_decodes_and_suppresses_as_torchvision_does(ssd):
    with torch.no_grad():
        raw = ssd(torch.rand(1, 3, *SIZE))
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(raw.shape, generator=g) * torch.tensor([1.0] * 4 + [4.0] * (raw.shape[-1] - 4))
    ssd.detector.score_thresh = 0.05  # few enough boxes per class that torchvision's top-k cut never applies
    post = postprocess_graph(ssd, SIZE, "raw", 18)
    got = _run(post.SerializeToString(), {"raw": raw.numpy()})
    ref = ssd.decode(raw, SIZE)[0]
    assert len(ref["scores"]) > 20 and got["scores"].shape == ref["scores"].shape
    matched, total, box_diff, score_diff = match_detections([ref], [got])
    assert total > 0 and matched == total
    assert box_diff < 1e-3 and score_diff < 1e-5
    assert set(got["labels"].tolist()) <= set(range(1, 5))  # 1-based, background never reported
    assert float(got["boxes"].min()) >= 0 and float(got["boxes"].max()) <= SIZE[0]  # clipped to the image


def test_one_file_from_images_to_detections(ssd):
    ssd.detector.score_thresh = 0.05
    data = with_postprocess(to_onnx(ssd, (1, 3, *SIZE)).data, ssd, SIZE)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["boxes", "scores", "labels"]
    rec = postprocess_parity(ssd, data, torch.rand(3, 3, *SIZE))
    assert rec["images"] == 3 and rec["detections_compared"] > 0
    assert rec["agreement"] == pytest.approx(1.0)


def test_other_families_and_dynamic_batches_are_refused_clearly(ssd):
    retina = build_detector("tinydetectors:tiny_retinanet", 3).eval()
    with pytest.raises(PrunekitError, match="covers ssd detectors, not retinanet"):
        postprocess_graph(retina, SIZE, "raw", 18)
    dyn = to_onnx(ssd, (1, 3, *SIZE), dynamic_batch=True).data
    with pytest.raises(PrunekitError, match="static batch of 1"):
        with_postprocess(dyn, ssd, SIZE)
