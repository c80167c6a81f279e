"""ONNX Runtime vs PyTorch for a detector: raw head outputs, and boxes / scores after decoding.

The exported file is the network only (`DetectorNet`: images -> raw head outputs). Both sides'
raw outputs go through the same torch decoding (the detector's box coder, score threshold,
top-k and NMS: `DetectorNet.decode`), and every PyTorch detection scoring at least
`MIN_SCORE` must be found among ONNX Runtime's with the same label, its box within `BOX_ATOL`
pixels and its score within `SCORE_ATOL`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from prunekit.deploy.ort_model import OrtClassifier

MIN_SCORE = 0.05
BOX_ATOL = 0.05  # pixels of the network input
SCORE_ATOL = 1e-3


def detection_parity(model: torch.nn.Module, onnx_bytes: bytes, images: torch.Tensor, atol: float,
                     rtol: float) -> dict[str, Any]:
    """Compare the ONNX file with `model` (a DetectorNet) on `images`, as the fields of a
    `prunekit.deploy.parity.Parity`: raw outputs within atol + rtol * max|output|; `top1_agreement`
    is the fraction of PyTorch detections (score >= MIN_SCORE) ONNX Runtime reproduces; `details`
    holds the largest box and score differences."""
    model = model.eval().cpu()
    size = (int(images.shape[-2]), int(images.shape[-1]))
    with torch.no_grad():
        ref = model(images).float()
    got = torch.from_numpy(OrtClassifier(onnx_bytes, threads=1).run(images.numpy()))
    if tuple(got.shape) != tuple(ref.shape):
        from prunekit.errors import PrunekitError

        raise PrunekitError(f"exported detector returns shape {list(got.shape)}, PyTorch {list(ref.shape)}")
    align = getattr(model, "align_outputs", None)  # a two-stage detector's proposal slots
    if callable(align):
        got = align(ref, got)
    diff = float((got - ref).abs().max()) if ref.numel() else 0.0
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    tol = atol + rtol * scale
    ref_dets, got_dets = model.decode(ref, size), model.decode(got, size)  # type: ignore[operator]
    matched, total, box_diff, score_diff = match_detections(ref_dets, got_dets)
    agreement = matched / total if total else 1.0
    passed = bool(np.isfinite(diff) and diff <= tol and agreement >= 0.99)
    # Unmatched detections with raw outputs inside the tolerance are ties flipped in top-k / NMS
    # (an untrained model scores many boxes alike); the box / score differences are of matched ones.
    details = {"detections_compared": total, "unmatched": total - matched, "max_box_diff_px": round(box_diff, 6),
               "max_score_diff": round(score_diff, 8), "decoding": "torch (DetectorNet.decode) on both outputs"}
    return {"images": len(images), "logit_scale": scale, "max_abs_diff": diff, "tolerance": tol,
            "top1_agreement": agreement, "near_ties": 0, "passed": passed, "details": details}


def match_detections(ref_dets: list[dict[str, Any]], got_dets: list[dict[str, Any]]) -> tuple[int, int, float, float]:
    """(matched, compared, max box diff, max score diff): every reference detection scoring at least
    MIN_SCORE counts as matched when `got` has one of the same label within BOX_ATOL / SCORE_ATOL."""
    matched = total = 0
    box_diff = score_diff = 0.0
    for r, g in zip(ref_dets, got_dets, strict=True):
        for box, label, score in zip(r["boxes"], r["labels"], r["scores"], strict=True):
            if float(score) < MIN_SCORE:
                continue
            total += 1
            same = g["labels"] == label
            if not bool(same.any()):
                continue
            d = (g["boxes"][same] - box).abs().max(dim=1).values
            j = int(d.argmin())
            s = float((g["scores"][same][j] - score).abs())
            if float(d[j]) <= BOX_ATOL and s <= SCORE_ATOL:
                matched += 1
                box_diff, score_diff = max(box_diff, float(d[j])), max(score_diff, s)
    return matched, total, box_diff, score_diff


def postprocess_parity(model: torch.nn.Module, onnx_bytes: bytes, images: torch.Tensor) -> dict[str, Any]:
    """The network + decoding + NMS file (`postprocess.with_postprocess`) on ONNX Runtime against
    PyTorch's network and torchvision's decoding, image by image (the file has batch 1)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> dict[str, torch.Tensor]:
        boxes, scores, labels = sess.run(None, {name: x})
        return {"boxes": torch.from_numpy(boxes), "scores": torch.from_numpy(scores), "labels": torch.from_numpy(labels)}

    return {**_against_torch(model, images, run), "reference": "PyTorch network + torchvision postprocess_detections",
            "outputs": "boxes [K, 4] xyxy input pixels, scores [K], labels [K] int64"}


def _against_torch(model: torch.nn.Module, images: torch.Tensor,
                   run: Callable[[np.ndarray], dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Detections of a one-file detector (`run`: one batch-1 image -> boxes / scores / labels)
    matched, image by image, against the PyTorch network + the detector's torch decoding."""
    model = model.eval().cpu()
    size = (int(images.shape[-2]), int(images.shape[-1]))
    refs, gots = [], []
    for img in images:
        with torch.no_grad():
            refs += model.decode(model(img[None]).float(), size)  # type: ignore[operator]
        gots.append(run(img[None].numpy()))
    matched, total, box_diff, score_diff = match_detections(refs, gots)
    return {"images": len(images), "detections_compared": total, "matched": matched,
            "agreement": round(matched / total if total else 1.0, 4), "max_box_diff_px": round(box_diff, 6),
            "max_score_diff": round(score_diff, 8)}


def trt_plugin_reference(onnx_bytes: bytes) -> Callable[[np.ndarray], dict[str, torch.Tensor]]:
    """A stand-in for a file that ends in TensorRT's EfficientNMS_TRT plugin, where TensorRT is
    absent: ONNX Runtime runs the file up to the plugin's inputs, and the plugin's documented NMS is
    applied to them with torchvision (per class, scores above its threshold, the best
    `max_output_boxes`, class + the file's label offset). Returns input array -> detections."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper
    from torchvision.ops import batched_nms

    from prunekit.tasks.detection.postprocess import TRT_DOMAIN, TRT_NMS

    m = onnx.load_from_string(onnx_bytes)
    plugin = next(n for n in m.graph.node if n.op_type == TRT_NMS)
    attrs = {a.name: helper.get_attribute_value(a) for a in plugin.attribute}
    label0 = next(int(numpy_helper.to_array(helper.get_attribute_value(n.attribute[0])))
                  for n in m.graph.node if n.op_type == "Constant" and n.output[0] == "trt_label0")
    del m.graph.node[list(m.graph.node).index(plugin):]  # the plugin and what follows it (the label offset)
    del m.graph.output[:]
    m.graph.output.extend(helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, None) for x in plugin.input)
    kept = [o for o in m.opset_import if o.domain != TRT_DOMAIN]
    del m.opset_import[:]
    m.opset_import.extend(kept)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> dict[str, torch.Tensor]:
        boxes, scores = (torch.from_numpy(a)[0] for a in sess.run(None, {name: x}))
        if boxes.dim() == 2:  # one box for every class
            boxes = boxes[:, None, :].expand(-1, scores.shape[1], -1)
        anchor, cls = (scores > float(attrs["score_threshold"])).nonzero(as_tuple=True)
        b, s = boxes[anchor, cls], scores[anchor, cls]
        keep = batched_nms(b, s, cls, float(attrs["iou_threshold"]))[: int(attrs["max_output_boxes"])]
        return {"boxes": b[keep], "scores": s[keep], "labels": cls[keep] + label0}

    return run


def trt_nms_parity(model: torch.nn.Module, onnx_bytes: bytes, images: torch.Tensor) -> dict[str, Any]:
    """The TensorRT-NMS file (`with_postprocess(..., nms="trt")`) checked without TensorRT
    (`trt_plugin_reference`) against the PyTorch network + torchvision's decoding, image by image."""
    from prunekit.tasks.detection.postprocess import TRT_DOMAIN, TRT_NMS

    return {**_against_torch(model, images, trt_plugin_reference(onnx_bytes)),
            "checked": f"ONNX Runtime up to the {TRT_NMS} plugin's inputs, the plugin's documented NMS by torchvision",
            "runs_on": f"TensorRT only ({TRT_NMS}, ONNX domain {TRT_DOMAIN}); ONNX Runtime CPU cannot run it",
            "outputs": "num_detections [1, 1] int32, detection_boxes [1, K, 4] xyxy input pixels, "
                       "detection_scores [1, K], detection_classes [1, K] int32 (the detector's labels)"}
