"""Box decoding + NMS as ONNX (`tasks.detection.postprocess`) against torchvision's own decoding,
for each family: SSD (softmax, background dropped), RetinaNet (sigmoid), FCOS (sigmoid x centerness,
distance boxes)."""

from __future__ import annotations

import importlib.util

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


TRT_FAMILIES = {**FAMILIES, "rcnn": "tinydetectors:tiny_faster_rcnn"}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_what_reaches_the_tensorrt_plugin_is_torchvisions_decoding(family):
    """The decoding graph for TensorRT: the plugin's inputs (run by ONNX Runtime), suppressed as the
    plugin documents it, are torchvision's decoding of the same raw outputs."""
    from prunekit.tasks.detection.parity import trt_plugin_reference

    net = build_detector(FAMILIES[family], 5).eval()
    with torch.no_grad():
        raw = net(torch.rand(1, 3, *SIZE))
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(raw.shape, generator=g) * torch.tensor([0.3] * 4 + [4.0] * (raw.shape[-1] - 4))
    net.detector.score_thresh = 0.05 if family == "ssd" else 0.6
    net.detector.topk_candidates = 10 ** 6
    net.detector.detections_per_img = 10 ** 4
    got = trt_plugin_reference(postprocess_graph(net, SIZE, "raw", 18, nms="trt").SerializeToString())(raw.numpy())
    ref = net.decode(raw, SIZE)[0]
    assert len(ref["scores"]) > 20 and got["scores"].shape == ref["scores"].shape
    matched, total, box_diff, score_diff = match_detections([ref], [got])
    assert total > 0 and matched == total and box_diff < 1e-3 and score_diff < 1e-5


@pytest.mark.parametrize("family", ["ssd", "rcnn"])
def test_the_tensorrt_nms_file_ends_in_the_plugin_with_the_detectors_thresholds(family):
    """One file from images to detections for TensorRT: EfficientNMS_TRT in the trt.plugins domain
    with the detector's thresholds and cap, its four outputs; checked on images as `export` does."""
    import onnx
    from onnx import helper

    from prunekit.tasks.detection.parity import trt_nms_parity
    from prunekit.tasks.detection.postprocess import TRT_DOMAIN, TRT_NMS, TRT_OUTPUTS

    net = build_detector(TRT_FAMILIES[family], 5).eval()
    heads = net.detector.roi_heads if family == "rcnn" else net.detector
    heads.score_thresh = 0.05
    data = with_postprocess(to_onnx(net, (1, 3, *SIZE)).data, net, SIZE, nms="trt")
    m = onnx.load_from_string(data)
    onnx.checker.check_model(m, full_check=True)
    plugins = [n for n in m.graph.node if n.op_type == TRT_NMS]
    assert len(plugins) == 1 and plugins[0].domain == TRT_DOMAIN
    attrs = {a.name: helper.get_attribute_value(a) for a in plugins[0].attribute}
    assert attrs["score_threshold"] == pytest.approx(heads.score_thresh)
    assert attrs["iou_threshold"] == pytest.approx(heads.nms_thresh)
    assert attrs["max_output_boxes"] == heads.detections_per_img
    assert attrs["background_class"] == -1 and attrs["box_coding"] == 0 and attrs["score_activation"] == 0
    assert tuple(o.name for o in m.graph.output) == TRT_OUTPUTS
    with pytest.raises(Exception):  # noqa: B017 - ONNX Runtime's CPU provider has no such plugin
        ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    rec = trt_nms_parity(net, data, torch.rand(3, 3, *SIZE))
    assert rec["detections_compared"] > 0 and rec["agreement"] == pytest.approx(1.0)


def test_the_tensorrt_nms_check_catches_a_wrong_label_offset(ssd):
    """The check can fail: shifting the labels the plugin's classes map to loses every match."""
    import onnx
    from onnx import numpy_helper

    from prunekit.tasks.detection.parity import trt_nms_parity

    ssd.detector.score_thresh = 0.05
    m = onnx.load_from_string(with_postprocess(to_onnx(ssd, (1, 3, *SIZE)).data, ssd, SIZE, nms="trt"))
    label0 = next(n for n in m.graph.node if n.output[0] == "trt_label0")
    label0.attribute[0].t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(label0.attribute[0].t) * 0))
    rec = trt_nms_parity(ssd, m.SerializeToString(), torch.rand(3, 3, *SIZE))
    assert rec["detections_compared"] > 0 and rec["agreement"] < 0.5


def test_an_unknown_nms_kind_is_refused(ssd):
    with pytest.raises(PrunekitError, match="unknown NMS kind"):
        postprocess_graph(ssd, SIZE, "raw", 18, nms="cuda")


HAS_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT and a CUDA GPU (not on this machine)")
def test_the_tensorrt_nms_engine_detects_what_the_reference_does(ssd):
    """Where TensorRT is present: the file builds (the plugin resolves), and the engine's valid
    detections match the stand-in's (FP32; boxes within 0.05 px, scores within 1e-3)."""
    import numpy as np
    import tensorrt as trt

    from prunekit.runtimes.tensorrt import EngineOptions, build_serialized_engine
    from prunekit.tasks.detection.parity import trt_plugin_reference

    ssd.detector.score_thresh = 0.05
    data = with_postprocess(to_onnx(ssd, (1, 3, *SIZE)).data, ssd, SIZE, nms="trt")
    built = build_serialized_engine(trt, data, EngineOptions(precision="fp32"))
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(built.serialized)
    context = engine.create_execution_context()
    image = torch.rand(1, 3, *SIZE)
    buffers = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dtype = torch.from_numpy(np.zeros(1, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            buffers[name] = image.cuda().to(dtype).contiguous()
        else:
            buffers[name] = torch.zeros(tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
        context.set_tensor_address(name, buffers[name].data_ptr())
    stream = torch.cuda.Stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    k = int(buffers["num_detections"].cpu()[0, 0])
    got = {"boxes": buffers["detection_boxes"].cpu()[0, :k], "scores": buffers["detection_scores"].cpu()[0, :k],
           "labels": buffers["detection_classes"].cpu()[0, :k].long()}
    ref = trt_plugin_reference(data)(image.numpy())
    matched, total, _, _ = match_detections([ref], [got])
    assert total > 0 and matched >= 0.99 * total
