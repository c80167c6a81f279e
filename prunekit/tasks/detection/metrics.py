"""mAP of a detector, computed by pycocotools' COCOeval (the reference implementation).

`mean_ap(predictions, targets)` builds the ground-truth and detection sets in memory (boxes in
the pixels of the evaluated image size) and returns COCO's AP@[.5:.95] and AP@.5. Ground-truth
boxes marked `iscrowd` (COCO crowds, VOC "difficult") are ignored the COCO way: detections
matching them count neither as true nor as false positives.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable

import torch

from prunekit.errors import MissingDependencyError, PrunekitError

Target = dict[str, torch.Tensor]


def mean_ap(predictions: list[Target], targets: list[Target], num_classes: int) -> dict[str, float]:
    """{"map": AP@[.5:.95], "map_50": AP@.5} over all images (COCO protocol, 100 detections per image)."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:
        raise MissingDependencyError("detection mAP needs pycocotools, which is not installed",
                                     "pip install 'pycocotools>=2.0.7'") from exc
    if len(predictions) != len(targets):
        raise ValueError("one prediction per target image")
    images, gts, dets = [], [], []
    for i, (p, t) in enumerate(zip(predictions, targets, strict=True)):
        images.append({"id": i + 1})
        crowd = t.get("iscrowd", torch.zeros(len(t["labels"]), dtype=torch.int64))
        for box, label, c in zip(t["boxes"].tolist(), t["labels"].tolist(), crowd.tolist(), strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            gts.append({"id": len(gts) + 1, "image_id": i + 1, "category_id": int(label), "bbox": [box[0], box[1], w, h],
                        "area": w * h, "iscrowd": int(c)})
        for box, label, score in zip(p["boxes"].tolist(), p["labels"].tolist(), p["scores"].tolist(), strict=True):
            dets.append({"image_id": i + 1, "category_id": int(label), "score": float(score),
                         "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    if not gts:
        raise PrunekitError("the validation set has no objects to compute mAP over", "check --data")
    gt = COCO()
    gt.dataset = {"images": images, "annotations": gts,
                  "categories": [{"id": c} for c in range(1, num_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if not dets:
            return {"map": 0.0, "map_50": 0.0}
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [max(float(v), 0.0) for v in ev.stats[:2]]  # -1: no ground truth in any category
    return {"map": stats[0], "map_50": stats[1]}


@torch.no_grad()
def evaluate_map(
    net: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, list[Target]]],
    num_classes: int,
    device: torch.device | None = None,
    transform: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    decode_with: torch.nn.Module | None = None,
) -> dict[str, float]:
    """mAP of `net` (a DetectorNet, or any function of images returning its raw outputs, decoded by
    `decode_with`) over `batches`; `transform(images, batch_index)` corrupts the inputs first."""
    device = device or torch.device("cpu")
    decoder = decode_with if decode_with is not None else net
    if isinstance(net, torch.nn.Module):
        net.to(device).eval()
    preds: list[Target] = []
    targets: list[Target] = []
    for b, (x, ys) in enumerate(batches):
        if transform is not None:
            x = transform(x, b)
        x = x.to(device)
        out = net(x)
        for det in decoder.decode(out, (int(x.shape[-2]), int(x.shape[-1]))):  # type: ignore[operator]
            preds.append({k: v.cpu() for k, v in det.items()})
        targets.extend(ys)
    if not targets:
        raise PrunekitError("the validation set is empty", "check --data")
    return mean_ap(preds, targets, num_classes)
