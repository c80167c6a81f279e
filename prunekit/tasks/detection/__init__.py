"""Detection: torchvision detectors (SSDlite, SSD, RetinaNet, FCOS, Faster R-CNN) pruned as networks.

    network.py   DetectorNet: [0, 1] images -> raw head outputs (what pruning / latency / ONNX see);
                 the detector's own anchors, losses, box decoding and NMS outside it
    two_stage.py TwoStageNet: a Faster R-CNN, RPN + proposal NMS + RoIAlign + box head in the network
    data.py      shapes (generated, exact boxes), coco:DIR, voc:DIR, validated on reading
    metrics.py   mAP@[.5:.95] / mAP@.5 by pycocotools
    robust.py    mAP on corrupted images: mPC and rPC (Michaelis et al. 2019)
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from prunekit.data import DataBundle
from prunekit.tasks.detection.data import SPEC_HELP, load_detection_data
from prunekit.tasks.detection.network import DETECTOR_NETS, TORCHVISION_DETECTORS, TWO_STAGE, build_detector
from prunekit.tasks.registry import Task, register_task

Target = dict[str, torch.Tensor]

# Methods whose own search optimises a classifier's cross-entropy over logits (C-SAM's soft-mask
# task loss with its KL stability terms between class distributions; S2AP's PGD on logits):
# on a detector there are no per-image logits for those terms.
CLASSIFIER_ONLY = {
    "csam": "C-SAM's mask search optimises cross-entropy and KL terms over per-image class logits, "
            "which a detector does not have",
    "s2ap": "S2AP's score search and adversarial fine-tuning attack per-image class logits (PGD on "
            "cross-entropy), which a detector does not have",
}


class DetectionObjective:
    """The detector's own training losses (torchvision's), summed; crowd / difficult boxes left out."""

    def to_device(self, y: list[Target], device: torch.device) -> list[Target]:
        return [{k: v.to(device) for k, v in t.items()} for t in y]

    def count(self, y: list[Target]) -> int:
        return len(y)

    def loss(self, model: nn.Module, x: torch.Tensor, out: torch.Tensor, y: list[Target]) -> torch.Tensor:
        targets = []
        for t in y:
            keep = t["iscrowd"] == 0 if "iscrowd" in t else slice(None)
            targets.append({"boxes": t["boxes"][keep].float(), "labels": t["labels"][keep]})
        losses = model.losses(out.float(), targets, (int(x.shape[-2]), int(x.shape[-1])))  # type: ignore[operator]
        return sum(losses.values())  # type: ignore[return-value]

    def correct(self, out: torch.Tensor, y: list[Target]) -> int | None:
        return None


OBJECTIVE = DetectionObjective()


@register_task
class Detection(Task):
    name = "detection"
    help = "object detectors (torchvision SSDlite / SSD / RetinaNet / FCOS / Faster R-CNN, or factories), mAP"
    default_model = "ssdlite320_mobilenet_v3_large"
    default_data = "shapes"
    metric = "map"
    data_help = SPEC_HELP
    # SSDlite from scratch needs about 600 steps of 16 on the generated set before its mAP means
    # anything (3 + 3 epochs at 64: mAP 0.2 %; these: 34 % dense, 40 % pruned, 4 minutes on 2 cores)
    train_defaults = {"pretrain_epochs": 40, "epochs": 10, "batch_size": 16}

    def owns_model(self, name: str) -> bool:
        return name in TORCHVISION_DETECTORS or name in TWO_STAGE

    def build_model(self, name: str, num_classes: int) -> nn.Module:
        return build_detector(name, num_classes)

    def load_data(self, spec: str, input_size: int | None, num_classes: int | None) -> DataBundle:
        return load_detection_data(spec, input_size, OBJECTIVE)

    def evaluate(self, model: nn.Module, data: DataBundle, device: torch.device) -> dict[str, Any]:
        from prunekit.tasks.detection.metrics import evaluate_map

        scores = evaluate_map(model, data.loader("val", 32, shuffle=False), data.num_classes, device)
        out: dict[str, Any] = {k: round(v, 6) for k, v in scores.items()}
        out["decode_nms_ms"] = round(decode_time_ms(model, data), 4)
        return out

    def check_parity(self, model: nn.Module, onnx_bytes: bytes, images: torch.Tensor, atol: float,
                     rtol: float) -> dict[str, Any] | None:
        from prunekit.tasks.detection.parity import detection_parity

        return detection_parity(model, onnx_bytes, images, atol, rtol)

    def export_extras(self, model: nn.Module, onnx_bytes: bytes, images: torch.Tensor) -> dict[str, tuple[bytes, dict]]:
        from prunekit.tasks.detection.parity import postprocess_parity, trt_nms_parity
        from prunekit.tasks.detection.postprocess import SUPPORTED, with_postprocess

        if getattr(model, "family", None) not in SUPPORTED:
            return {}
        size = (int(images.shape[-2]), int(images.shape[-1]))
        data = with_postprocess(onnx_bytes, model, size)
        trt = with_postprocess(onnx_bytes, model, size, nms="trt")
        return {"pruned_nms.onnx": (data, postprocess_parity(model, data, images)),
                "pruned_trtnms.onnx": (trt, {**trt_nms_parity(model, trt, images), "engine": True})}

    def robustness(self, models: dict[str, Any], data: DataBundle, options: Any) -> dict[str, Any] | None:
        from prunekit.errors import PrunekitError
        from prunekit.tasks.detection.robust import detection_robustness, val_batches

        if options.pgd or options.certify_samples or options.corrupted_dir is not None:
            raise PrunekitError("--pgd, --certify and --corrupted-dir are for classifiers",
                                "a detector is evaluated on generated corruptions: mAP, mPC and rPC")
        device = torch.device(options.device)
        nets = {}
        for name, m in models.items():
            if not isinstance(m, DETECTOR_NETS):
                raise PrunekitError(f"'{name}' is not a detector network", "evaluate a detection run folder")
            m.to(device).eval()
            nets[name] = (lambda x, m=m: m(x.to(device)), m)
        batches = val_batches(data, options.batch_size, options.limit)
        return detection_robustness(nets, batches, data.num_classes, list(options.corruptions),
                                    list(options.severities), options.seed)

    def evaluate_exported(self, run: Any, data: DataBundle, dense_onnx: Any, pruned_onnx: Any, corruptions: Any,
                          severities: Any, seed: int, limit: int | None, threads: int) -> dict[str, Any] | None:
        from prunekit.deploy.ort_model import OrtClassifier
        from prunekit.tasks.detection.robust import detection_robustness, val_batches

        nets = {"dense": (OrtClassifier(dense_onnx, threads=threads), run.dense.eval()),
                "pruned": (OrtClassifier(pruned_onnx, threads=threads), run.pruned.eval())}
        res = detection_robustness(nets, val_batches(data, 32, limit), data.num_classes, list(corruptions),
                                   list(severities), seed)
        out: dict[str, Any] = {
            "evaluated": "the exported ONNX networks on ONNX Runtime CPU (fp32), decoded by the detector's torch "
                         "post-processing, on the same corrupted images",
            "metric": "mAP@[.5:.95] (clean), mPC (corrupted), rPC (r_c)", "protocol": res["protocol"],
            "data": str(run.settings["data"]), "corruptions": list(corruptions), "severities": list(severities),
            "seed": seed, "limit": limit, "n_images": res["n_images"],
        }
        for which, m in res["models"].items():
            out[which] = {"clean": m["map"], "corrupted": m["mpc"], "r_c": m["rpc"], "map": m["map"],
                          "map_50": m["map_50"], "mpc": m["mpc"], "rpc": m["rpc"],
                          "per_corruption": m["per_corruption"], "cells": m["cells"]}
        out["pruned"]["mce_vs_dense"] = None  # mCE is the classifier's (error rates vs AlexNet / dense)
        return out

    def check_method(self, method: str) -> None:
        if method in CLASSIFIER_ONLY:
            raise ValueError(f"method '{method}' does not run on detectors: {CLASSIFIER_ONLY[method]}; "
                             "use magnitude, taylor, halp or adasap")


@torch.no_grad()
def decode_time_ms(model: nn.Module, data: DataBundle, images: int = 8) -> float:
    """Box decoding + NMS per image, measured (median of `images` single-image calls on the CPU):
    it is not part of the network, so the latency table does not price it."""
    if not isinstance(model, DETECTOR_NETS):
        from prunekit.errors import PrunekitError

        raise PrunekitError(f"{type(model).__name__} is not a detector network (prunekit.tasks.detection.DetectorNet)")
    was, device = model.training, next(model.parameters()).device
    model.cpu().eval()
    size = (data.input_size, data.input_size)
    times = []
    try:
        for i in range(min(images, len(data.val_set))):
            out = model(data.val_set[i][0][None])
            model.decode(out, size)  # warm
            t = time.perf_counter()
            model.decode(out, size)
            times.append((time.perf_counter() - t) * 1000)
    finally:
        model.to(device).train(was)
    times.sort()
    return times[len(times) // 2] if times else 0.0
