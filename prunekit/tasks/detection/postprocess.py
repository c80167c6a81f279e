"""Box decoding and NMS as an ONNX subgraph, appended to the exported network.

A TensorRT / ONNX Runtime deployment runs the network and then decodes boxes and suppresses
overlaps. `network.onnx` stops at the raw head outputs (`DetectorNet`; for a Faster R-CNN,
`TwoStageNet`, at the second stage's raw outputs per proposal: `rcnn_graph`); `with_postprocess`
appends the rest as standard ONNX ops, so one file goes from [0, 1] images to detections. Per
single-stage family, as torchvision's `postprocess_detections` does it for one image:

    raw [1, A, 4 (+ 1 centerness for FCOS) + C] -> Slice: box deltas [1, A, 4], class logits [1, A, C]
    boxes   SSD, RetinaNet: deltas / (wx, wy, ww, wh), dw / dh clamped at log(1000/16), centre-size
              decoding against the anchors (constants: they depend on the input size only)
            FCOS: left / top / right / bottom distances x the anchor's size from its centre
            then clipped to the image                                               -> boxes [1, A, 4]
    scores  SSD: Softmax over the classes, background (class 0) dropped; labels 1-based
            RetinaNet: Sigmoid; FCOS: sqrt(sigmoid(class) x sigmoid(centerness)); labels 0-based
            transposed                                                              -> scores [1, C', A]
    NonMaxSuppression(boxes, scores, per-class max, iou = nms_thresh, score > score_thresh)
    Gather / GatherND of the kept boxes and scores; TopK by score to detections_per_img
    outputs: boxes [K, 4] (xyxy, input pixels), scores [K], labels [K] (int64, as torchvision's)

One documented difference: torchvision keeps the `topk_candidates` best boxes (per class for SSD,
per feature level for RetinaNet / FCOS) *before* NMS; ONNX's NonMaxSuppression considers every
box above the score threshold. The kept set can differ only where more than `topk_candidates`
boxes pass the threshold; `export` checks the file against torchvision's decoding on real images
(`detection_parity`'s matching) and records the result.

With nms="trt" the graph ends instead in TensorRT's EfficientNMS_TRT plugin (`trt_tail`): the
form Jetson deployments build, where the plugin's NMS runs on the GPU. ONNX Runtime cannot run
it; `parity.trt_plugin_reference` stands in for the plugin to check the file where TensorRT is absent.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from prunekit.errors import PrunekitError

SUPPORTED = ("ssd", "retinanet", "fcos", "rcnn")
NMS_KINDS = ("onnx", "trt")


def postprocess_graph(net: Any, size: tuple[int, int], raw_name: str, opset: int, nms: str = "onnx") -> Any:
    """The decoding + NMS graph of a `DetectorNet` (SSD, RetinaNet, FCOS) at input `size`, input `raw_name`;
    `nms` is "onnx" (standard ops) or "trt" (TensorRT's EfficientNMS_TRT plugin, `trt_tail`)."""
    from onnx import helper, numpy_helper

    if net.family not in SUPPORTED:
        raise PrunekitError(f"box decoding + NMS in ONNX covers {', '.join(SUPPORTED)} detectors, not {net.family}")
    if nms not in NMS_KINDS:
        raise PrunekitError(f"unknown NMS kind '{nms}'", f"use one of: {', '.join(NMS_KINDS)}")
    if net.family == "rcnn":
        return rcnn_graph(net, size, raw_name, opset, nms)
    det = net.detector
    family = net.family
    anchors, _ = net.anchors(size, torch.device("cpu"))
    a = anchors.double().numpy()
    aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    acx, acy = a[:, 0] + 0.5 * aw, a[:, 1] + 0.5 * ah
    n_anchors = a.shape[0]
    classes = int(net.num_classes)
    head = 4 + (1 if family == "fcos" else 0)  # box deltas (+ centerness) before the class logits
    h, w = int(size[0]), int(size[1])

    def const(name: str, value: Any, dtype: Any = np.float32) -> Any:
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    inits = [
        const("pp_anchor_w", aw.reshape(1, n_anchors, 1)), const("pp_anchor_h", ah.reshape(1, n_anchors, 1)),
        const("pp_anchor_cx", acx.reshape(1, n_anchors, 1)), const("pp_anchor_cy", acy.reshape(1, n_anchors, 1)),
        const("pp_half", 0.5), const("pp_lo", [0.0, 0.0, 0.0, 0.0]), const("pp_hi", [w, h, w, h]),
        const("pp_s0", [0], np.int64), const("pp_s4", [4], np.int64),
        const("pp_sH", [head], np.int64), const("pp_sC", [head + classes], np.int64),
        const("pp_ax2", [2], np.int64),
        const("pp_max_det", [int(det.detections_per_img)], np.int64),
        const("pp_iou", [float(det.nms_thresh)]), const("pp_score", [float(det.score_thresh)]),
        const("pp_one", [1], np.int64), const("pp_two", [2], np.int64),
        const("pp_label0", 1 if family == "ssd" else 0, np.int64),
        const("pp_split4", [1, 1, 1, 1], np.int64),
    ]
    n = helper.make_node
    nodes = [
        n("Slice", [raw_name, "pp_s0", "pp_s4", "pp_ax2"], ["pp_deltas"]),
        n("Slice", [raw_name, "pp_sH", "pp_sC", "pp_ax2"], ["pp_logits"]),
    ]
    if family == "fcos":  # BoxLinearCoder(normalize_by_size=True): distances x the anchor's size
        nodes += [
            n("Split", ["pp_deltas", "pp_split4"], ["pp_l", "pp_t", "pp_r", "pp_b"], axis=2),
            n("Mul", ["pp_l", "pp_anchor_w"], ["pp_lw"]), n("Sub", ["pp_anchor_cx", "pp_lw"], ["pp_x1"]),
            n("Mul", ["pp_t", "pp_anchor_h"], ["pp_th"]), n("Sub", ["pp_anchor_cy", "pp_th"], ["pp_y1"]),
            n("Mul", ["pp_r", "pp_anchor_w"], ["pp_rw"]), n("Add", ["pp_anchor_cx", "pp_rw"], ["pp_x2"]),
            n("Mul", ["pp_b", "pp_anchor_h"], ["pp_bh"]), n("Add", ["pp_anchor_cy", "pp_bh"], ["pp_y2"]),
        ]
    else:  # BoxCoder: centre-size deltas with weights, width / height clamped before the exp
        wx, wy, ww, wh = (float(v) for v in det.box_coder.weights)
        clip = float(getattr(det.box_coder, "bbox_xform_clip", math.log(1000.0 / 16)))
        inits += [const("pp_weights", [wx, wy, ww, wh]), const("pp_clip", clip)]
        nodes += [
            n("Div", ["pp_deltas", "pp_weights"], ["pp_d"]),
            n("Split", ["pp_d", "pp_split4"], ["pp_dx", "pp_dy", "pp_dw0", "pp_dh0"], axis=2),
            n("Min", ["pp_dw0", "pp_clip"], ["pp_dw"]),
            n("Min", ["pp_dh0", "pp_clip"], ["pp_dh"]),
            n("Mul", ["pp_dx", "pp_anchor_w"], ["pp_mx"]), n("Add", ["pp_mx", "pp_anchor_cx"], ["pp_cx"]),
            n("Mul", ["pp_dy", "pp_anchor_h"], ["pp_my"]), n("Add", ["pp_my", "pp_anchor_cy"], ["pp_cy"]),
            n("Exp", ["pp_dw"], ["pp_ew"]), n("Mul", ["pp_ew", "pp_anchor_w"], ["pp_pw"]),
            n("Exp", ["pp_dh"], ["pp_eh"]), n("Mul", ["pp_eh", "pp_anchor_h"], ["pp_ph"]),
            n("Mul", ["pp_pw", "pp_half"], ["pp_hw"]), n("Mul", ["pp_ph", "pp_half"], ["pp_hh"]),
            n("Sub", ["pp_cx", "pp_hw"], ["pp_x1"]), n("Sub", ["pp_cy", "pp_hh"], ["pp_y1"]),
            n("Add", ["pp_cx", "pp_hw"], ["pp_x2"]), n("Add", ["pp_cy", "pp_hh"], ["pp_y2"]),
        ]
    nodes += [
        n("Concat", ["pp_x1", "pp_y1", "pp_x2", "pp_y2"], ["pp_box0"], axis=2),
        n("Max", ["pp_box0", "pp_lo"], ["pp_box1"]),
        n("Min", ["pp_box1", "pp_hi"], ["pp_boxes"]),
    ]
    if family == "ssd":
        inits += [const("pp_s1", [1], np.int64), const("pp_c1", [classes], np.int64)]
        nodes += [n("Softmax", ["pp_logits"], ["pp_probs"], axis=2),
                  n("Slice", ["pp_probs", "pp_s1", "pp_c1", "pp_ax2"], ["pp_fg"])]
    elif family == "retinanet":
        nodes += [n("Sigmoid", ["pp_logits"], ["pp_fg"])]
    else:
        nodes += [n("Slice", [raw_name, "pp_s4", "pp_sH", "pp_ax2"], ["pp_ctr"]),
                  n("Sigmoid", ["pp_logits"], ["pp_pc"]), n("Sigmoid", ["pp_ctr"], ["pp_pctr"]),
                  n("Mul", ["pp_pc", "pp_pctr"], ["pp_pp"]), n("Sqrt", ["pp_pp"], ["pp_fg"])]
    raw_shape = [1, n_anchors, head + classes]
    if nms == "trt":
        nodes += trt_tail("pp_boxes", "pp_fg", det.score_thresh, det.nms_thresh, det.detections_per_img,
                          1 if family == "ssd" else 0)
        return _model(nodes, inits, f"prunekit_{family}_postprocess_trt", raw_name, raw_shape, opset,
                      trt_outputs(int(det.detections_per_img)))
    nodes += [
        n("Transpose", ["pp_fg"], ["pp_scores_t"], perm=[0, 2, 1]),
        n("NonMaxSuppression", ["pp_boxes", "pp_scores_t", "pp_max_det", "pp_iou", "pp_score"], ["pp_sel"]),
        n("Gather", ["pp_sel", "pp_one"], ["pp_cls2"], axis=1),
        n("Gather", ["pp_sel", "pp_two"], ["pp_idx2"], axis=1),
        n("Squeeze", ["pp_cls2", "pp_one"], ["pp_cls"]),
        n("Squeeze", ["pp_idx2", "pp_one"], ["pp_idx"]),
        n("GatherND", ["pp_scores_t", "pp_sel"], ["pp_sc_all"]),
        n("Squeeze", ["pp_boxes", "pp_s0"], ["pp_boxes_a"]),
        n("Gather", ["pp_boxes_a", "pp_idx"], ["pp_bx_all"], axis=0),
        n("Add", ["pp_cls", "pp_label0"], ["pp_lab_all"]),
        n("Shape", ["pp_sc_all"], ["pp_k_all"]),
        n("Min", ["pp_k_all", "pp_max_det"], ["pp_k"]),
        n("TopK", ["pp_sc_all", "pp_k"], ["scores", "pp_order"], axis=0, largest=1, sorted=1),
        n("Gather", ["pp_bx_all", "pp_order"], ["boxes"], axis=0),
        n("Gather", ["pp_lab_all", "pp_order"], ["labels"], axis=0),
    ]
    return _model(nodes, inits, f"prunekit_{family}_postprocess", raw_name, raw_shape, opset)


def rcnn_graph(net: Any, size: tuple[int, int], raw_name: str, opset: int, nms: str = "onnx") -> Any:
    """A Faster R-CNN's second-stage decoding (`TwoStageNet`), as `RoIHeads.postprocess_detections`:

        raw [1, R, 4 + C + 4C] -> proposals [R, 4], logits [R, C], deltas [R, C, 4]
        boxes   class-specific centre-size deltas / (wx, wy, ww, wh) against the proposals, dw / dh
                clamped at log(1000/16), clipped to the image; background (class 0) dropped
        scores  Softmax over the classes; a box under 1e-2 px wide or high scores 0 (removed)
        NonMaxSuppression per class as torchvision's batched_nms does it: every (proposal, class)
                box offset by label x (image size + 1), so boxes of two classes never overlap
        outputs boxes [K, 4], scores [K], labels [K] (1-based, int64), K <= detections_per_img
    The proposals come from the network (its RPN NMS is inside it), padded slots are empty boxes.
    With nms="trt" the plugin gets the class-specific boxes [1, R, C-1, 4] and scores [1, R, C-1]
    and does the per-class NMS itself (no offset trick)."""
    from onnx import TensorProto, helper, numpy_helper

    heads = net.detector.roi_heads
    classes, slots = int(net.num_classes), int(net.slots())
    fg = classes - 1
    h, w = int(size[0]), int(size[1])
    wx, wy, ww, wh = (float(v) for v in heads.box_coder.weights)
    clip = float(heads.box_coder.bbox_xform_clip)
    labels = np.tile(np.arange(1, classes, dtype=np.int64), slots)

    def const(name: str, value: Any, dtype: Any = np.float32) -> Any:
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    inits = [
        const("rc_s0", [0], np.int64), const("rc_s4", [4], np.int64), const("rc_s4c", [4 + classes], np.int64),
        const("rc_end", [4 + 5 * classes], np.int64), const("rc_ax1", [1], np.int64), const("rc_ax2", [2], np.int64),
        const("rc_fg0", [1], np.int64), const("rc_fg1", [classes], np.int64),
        const("rc_shape_d", [slots, classes, 4], np.int64), const("rc_shape_b", [slots * fg, 4], np.int64),
        const("rc_shape_s", [1, 1, slots * fg], np.int64), const("rc_shape_f", [slots * fg], np.int64),
        const("rc_split4", [1, 1, 1, 1], np.int64),
        const("rc_weights", [wx, wy, ww, wh]), const("rc_clip", clip), const("rc_half", 0.5),
        const("rc_lo", [0.0, 0.0, 0.0, 0.0]), const("rc_hi", [w, h, w, h]), const("rc_min", 1e-2),
        const("rc_labels", labels, np.int64), const("rc_offset", (labels.astype(np.float32) * (max(h, w) + 1)).reshape(-1, 1)),
        const("rc_max_det", [int(heads.detections_per_img)], np.int64),
        const("rc_iou", [float(heads.nms_thresh)]), const("rc_score", [float(heads.score_thresh)]),
        const("rc_two", [2], np.int64), const("rc_one", [1], np.int64),
    ]
    n = helper.make_node
    nodes = [
        n("Slice", [raw_name, "rc_s0", "rc_s4", "rc_ax2"], ["rc_prop3"]),
        n("Slice", [raw_name, "rc_s4", "rc_s4c", "rc_ax2"], ["rc_logits3"]),
        n("Slice", [raw_name, "rc_s4c", "rc_end", "rc_ax2"], ["rc_deltas3"]),
        n("Squeeze", ["rc_prop3", "rc_s0"], ["rc_prop"]),
        n("Split", ["rc_prop", "rc_split4"], ["rc_px1", "rc_py1", "rc_px2", "rc_py2"], axis=1),
        n("Sub", ["rc_px2", "rc_px1"], ["rc_pw2"]), n("Sub", ["rc_py2", "rc_py1"], ["rc_ph2"]),
        n("Unsqueeze", ["rc_pw2", "rc_ax2"], ["rc_pw"]), n("Unsqueeze", ["rc_ph2", "rc_ax2"], ["rc_ph"]),
        n("Mul", ["rc_pw", "rc_half"], ["rc_pw_h"]), n("Mul", ["rc_ph", "rc_half"], ["rc_ph_h"]),
        n("Unsqueeze", ["rc_px1", "rc_ax2"], ["rc_px1u"]), n("Unsqueeze", ["rc_py1", "rc_ax2"], ["rc_py1u"]),
        n("Add", ["rc_px1u", "rc_pw_h"], ["rc_pcx"]), n("Add", ["rc_py1u", "rc_ph_h"], ["rc_pcy"]),
        n("Reshape", ["rc_deltas3", "rc_shape_d"], ["rc_deltas"]),
        n("Div", ["rc_deltas", "rc_weights"], ["rc_d"]),
        n("Split", ["rc_d", "rc_split4"], ["rc_dx", "rc_dy", "rc_dw0", "rc_dh0"], axis=2),
        n("Min", ["rc_dw0", "rc_clip"], ["rc_dw"]), n("Min", ["rc_dh0", "rc_clip"], ["rc_dh"]),
        n("Mul", ["rc_dx", "rc_pw"], ["rc_mx"]), n("Add", ["rc_mx", "rc_pcx"], ["rc_cx"]),
        n("Mul", ["rc_dy", "rc_ph"], ["rc_my"]), n("Add", ["rc_my", "rc_pcy"], ["rc_cy"]),
        n("Exp", ["rc_dw"], ["rc_ew"]), n("Mul", ["rc_ew", "rc_pw"], ["rc_bw"]),
        n("Exp", ["rc_dh"], ["rc_eh"]), n("Mul", ["rc_eh", "rc_ph"], ["rc_bh"]),
        n("Mul", ["rc_bw", "rc_half"], ["rc_hw"]), n("Mul", ["rc_bh", "rc_half"], ["rc_hh"]),
        n("Sub", ["rc_cx", "rc_hw"], ["rc_x1"]), n("Sub", ["rc_cy", "rc_hh"], ["rc_y1"]),
        n("Add", ["rc_cx", "rc_hw"], ["rc_x2"]), n("Add", ["rc_cy", "rc_hh"], ["rc_y2"]),
        n("Concat", ["rc_x1", "rc_y1", "rc_x2", "rc_y2"], ["rc_box0"], axis=2),
        n("Max", ["rc_box0", "rc_lo"], ["rc_box1"]), n("Min", ["rc_box1", "rc_hi"], ["rc_box_all"]),
        n("Slice", ["rc_box_all", "rc_fg0", "rc_fg1", "rc_ax1"], ["rc_box_fg"]),
        n("Reshape", ["rc_box_fg", "rc_shape_b"], ["rc_boxes"]),
        n("Squeeze", ["rc_logits3", "rc_s0"], ["rc_logits"]),
        n("Softmax", ["rc_logits"], ["rc_probs"], axis=1),
        n("Slice", ["rc_probs", "rc_fg0", "rc_fg1", "rc_ax1"], ["rc_probs_fg"]),
        n("Reshape", ["rc_probs_fg", "rc_shape_f"], ["rc_sc0"]),
        n("Split", ["rc_boxes", "rc_split4"], ["rc_bx1", "rc_by1", "rc_bx2", "rc_by2"], axis=1),
        n("Sub", ["rc_bx2", "rc_bx1"], ["rc_kw"]), n("Sub", ["rc_by2", "rc_by1"], ["rc_kh"]),
        n("GreaterOrEqual", ["rc_kw", "rc_min"], ["rc_okw"]), n("GreaterOrEqual", ["rc_kh", "rc_min"], ["rc_okh"]),
        n("And", ["rc_okw", "rc_okh"], ["rc_ok2"]), n("Cast", ["rc_ok2"], ["rc_okf2"], to=TensorProto.FLOAT),
        n("Reshape", ["rc_okf2", "rc_shape_f"], ["rc_okf"]),
        n("Mul", ["rc_sc0", "rc_okf"], ["rc_scores"]),
    ]
    if nms == "trt":
        inits += [const("rc_shape_tb", [1, slots, fg, 4], np.int64), const("rc_shape_ts", [1, slots, fg], np.int64)]
        nodes += [n("Reshape", ["rc_boxes", "rc_shape_tb"], ["rc_trt_boxes"]),
                  n("Reshape", ["rc_scores", "rc_shape_ts"], ["rc_trt_scores"])]
        nodes += trt_tail("rc_trt_boxes", "rc_trt_scores", heads.score_thresh, heads.nms_thresh,
                          heads.detections_per_img, 1)
        return _model(nodes, inits, "prunekit_rcnn_postprocess_trt", raw_name, [1, slots, 4 + 5 * classes], opset,
                      trt_outputs(int(heads.detections_per_img)))
    nodes += [
        n("Add", ["rc_boxes", "rc_offset"], ["rc_boxes_off2"]),
        n("Unsqueeze", ["rc_boxes_off2", "rc_s0"], ["rc_boxes_off"]),
        n("Reshape", ["rc_scores", "rc_shape_s"], ["rc_scores3"]),
        n("NonMaxSuppression", ["rc_boxes_off", "rc_scores3", "rc_max_det", "rc_iou", "rc_score"], ["rc_sel"]),
        n("Gather", ["rc_sel", "rc_two"], ["rc_idx2"], axis=1),
        n("Squeeze", ["rc_idx2", "rc_one"], ["rc_idx"]),
        n("Gather", ["rc_scores", "rc_idx"], ["scores"], axis=0),
        n("Gather", ["rc_boxes", "rc_idx"], ["boxes"], axis=0),
        n("Gather", ["rc_labels", "rc_idx"], ["labels"], axis=0),
    ]
    return _model(nodes, inits, "prunekit_rcnn_postprocess", raw_name, [1, slots, 4 + 5 * classes], opset)


TRT_DOMAIN = "trt.plugins"  # the ONNX domain TensorRT's parser (and ONNX Runtime's TensorRT EP) map to plugins
TRT_NMS = "EfficientNMS_TRT"
TRT_OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")


def trt_tail(boxes: str, scores: str, score_thresh: float, iou_thresh: float, max_det: int, label0: int) -> list:
    """TensorRT's EfficientNMS_TRT plugin on decoded corner boxes and activated per-class scores,
    NMS per class; its class indices shifted by `label0` to the detector's labels.

    The plugin's documented interface (TensorRT plugin/efficientNMSPlugin): boxes [B, N, 4] or
    [B, N, C, 4] (class-specific), scores [B, N, C]; outputs num_detections [B, 1] int32,
    detection_boxes [B, K, 4], detection_scores [B, K], detection_classes [B, K] int32, the first
    num_detections of each row valid, by descending score."""
    from onnx import helper, numpy_helper

    n = helper.make_node
    return [
        n(TRT_NMS, [boxes, scores], ["num_detections", "detection_boxes", "detection_scores", "trt_classes"],
          name="efficient_nms", domain=TRT_DOMAIN, plugin_version="1", background_class=-1,
          box_coding=0, class_agnostic=0, iou_threshold=float(iou_thresh), max_output_boxes=int(max_det),
          score_activation=0, score_threshold=float(score_thresh)),
        n("Constant", [], ["trt_label0"], value=numpy_helper.from_array(np.asarray(label0, dtype=np.int32))),
        n("Add", ["trt_classes", "trt_label0"], ["detection_classes"]),
    ]


def trt_outputs(max_det: int) -> list:
    """The value infos of the plugin's four outputs, batch 1."""
    from onnx import TensorProto, helper

    return [helper.make_tensor_value_info("num_detections", TensorProto.INT32, [1, 1]),
            helper.make_tensor_value_info("detection_boxes", TensorProto.FLOAT, [1, max_det, 4]),
            helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, [1, max_det]),
            helper.make_tensor_value_info("detection_classes", TensorProto.INT32, [1, max_det])]


def _model(nodes: list, inits: list, name: str, raw_name: str, raw_shape: list[int], opset: int,
           outputs: list | None = None) -> Any:
    """The checked ONNX model of a decoding graph: raw head outputs in; boxes, scores, labels out
    (or, given `outputs`, those: the TensorRT plugin's, with its domain imported)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(raw_name, TensorProto.FLOAT, raw_shape)],
        outputs or [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["detections", 4]),
                    helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["detections"]),
                    helper.make_tensor_value_info("labels", TensorProto.INT64, ["detections"])],
        inits,
    )
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(TRT_DOMAIN, 1)] if outputs else [])
    model = helper.make_model(graph, opset_imports=imports)
    onnx.checker.check_model(model)
    return model


def with_postprocess(network: bytes, net: Any, size: tuple[int, int], nms: str = "onnx") -> bytes:
    """`network` (images -> raw head outputs, batch 1) followed by `postprocess_graph`: one ONNX file
    (with nms="trt" it ends in TensorRT's NMS plugin, which only TensorRT runs)."""
    import onnx
    from onnx import compose

    m = onnx.load_from_string(network)
    if len(m.graph.output) != 1:
        raise PrunekitError(f"the detector network has {len(m.graph.output)} outputs, expected 1")
    dims = [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim]
    if not dims or dims[0] != 1:
        raise PrunekitError("box decoding + NMS in ONNX is built for a static batch of 1",
                            "export without --dynamic-batch and with a batch-1 target")
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 18)
    post = postprocess_graph(net, size, "pp_raw", opset, nms)
    post.ir_version = m.ir_version
    merged = compose.merge_models(m, post, io_map=[(m.graph.output[0].name, "pp_raw")])
    onnx.checker.check_model(merged)
    return merged.SerializeToString()
