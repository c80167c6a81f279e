"""Two-stage detectors (torchvision Faster R-CNN) as one prunable network.

A Faster R-CNN is backbone (+ FPN) -> RPN head -> proposal decoding, top-k and NMS -> RoIAlign of
the proposals -> box head (two FC layers) -> class / box predictor. All of it is the network a
deployment runs (torchvision exports the whole of it to ONNX: TopK, NonMaxSuppression and RoiAlign
are ONNX ops), so `TwoStageNet.forward` runs all of it on a fixed batch of [0, 1] images and returns
ONE tensor `[N, R, 4 + C + 4C]`: per proposal slot, the proposal box (xyxy, input pixels), the C
class logits and the 4C class-specific box deltas. R is the RPN's post-NMS proposal count; an image
with fewer proposals is padded with empty boxes, which decoding drops (zero area).

Outside the network, as for single-stage detectors: the second-stage decoding, score threshold and
per-class NMS (`decode`: torchvision's `postprocess_detections`), and the training losses (`losses`:
torchvision's RPN and RoI-head losses; the RoI head's training proposals are sampled against the
ground truth, so its loss re-runs the small box head on them, on the features the forward kept).

Pruning traces a static stand-in of the RoI stage (`trace_forward`): the same layers with the
RoIAlign of data-dependent proposals replaced by a fixed 7x7 pooling of the first feature map, so
torch-pruning sees which box-head inputs each FPN channel feeds (channel c -> the c-th block of
7x7 inputs of the first FC layer) without tracing NMS.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import PrunekitError

TWO_STAGE_KEYS = ("proposals", "class_logits", "box_regression")


def is_faster_rcnn(detector: nn.Module) -> bool:
    """A torchvision Faster R-CNN (boxes only: Mask / Keypoint R-CNN heads are not handled)."""
    from torchvision.models.detection.faster_rcnn import FasterRCNN

    if not isinstance(detector, FasterRCNN):
        return False
    heads = detector.roi_heads
    return getattr(heads, "mask_roi_pool", None) is None and getattr(heads, "keypoint_roi_pool", None) is None


class TwoStageNet(nn.Module):
    """A Faster R-CNN: [0, 1] images `[N, 3, H, W]` -> per proposal slot `[N, R, 4 + C + 4C]`.

    In training mode the forward stops at the proposals (`[N, R, 4]`) and keeps the features and
    RPN outputs for `losses`, which runs the RoI head on proposals sampled against the targets."""

    family = "rcnn"
    keys = TWO_STAGE_KEYS

    def __init__(self, detector: nn.Module, name: str = "detector") -> None:
        super().__init__()
        if not is_faster_rcnn(detector):
            raise PrunekitError(f"model '{name}' ({type(detector).__name__}) is not a torchvision Faster R-CNN "
                                "(Mask and Keypoint R-CNN heads are not handled)")
        self.detector = detector
        t = detector.transform
        self.register_buffer("mean", torch.tensor(t.image_mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(t.image_std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        predictor = detector.roi_heads.box_predictor
        self.classes = int(predictor.cls_score.out_features)
        self.widths: tuple[int, ...] = (4, self.classes, 4 * self.classes)
        self.probe_size = 64
        self._kept: tuple | None = None  # the last training forward's features and RPN outputs

    @property
    def num_classes(self) -> int:
        """Class logits per proposal (background included)."""
        return self.classes

    def features(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.detector.backbone((x - self.mean) / self.std)
        if isinstance(feats, torch.Tensor):
            feats = OrderedDict([("0", feats)])
        return feats

    def _proposals(self, x: torch.Tensor, feats: OrderedDict[str, torch.Tensor]) -> tuple:
        """The RPN: objectness and deltas per anchor, and the NMS'd proposals per image."""
        from torchvision.models.detection.image_list import ImageList
        from torchvision.models.detection.rpn import concat_box_prediction_layers

        rpn = self.detector.rpn
        levels = list(feats.values())
        objectness, deltas = rpn.head(levels)
        sizes = [(int(x.shape[-2]), int(x.shape[-1]))] * x.shape[0]
        anchors = rpn.anchor_generator(ImageList(x, sizes), levels)
        per_level = [int(o[0].shape[0] * o[0].shape[1] * o[0].shape[2]) for o in objectness]
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        boxes = rpn.box_coder.decode(deltas.detach(), anchors).view(x.shape[0], -1, 4)
        proposals, _ = rpn.filter_proposals(boxes, objectness, sizes, per_level)
        return objectness, deltas, anchors, proposals, sizes

    def slots(self) -> int:
        """R: proposal slots per image (the RPN's post-NMS top-n in the current mode)."""
        return int(self.detector.rpn.post_nms_top_n())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._kept = None
        feats = self.features(x)
        objectness, deltas, anchors, proposals, sizes = self._proposals(x, feats)
        r = self.slots()
        padded = torch.stack([F.pad(p, (0, 0, 0, r - p.shape[0])) for p in proposals])
        if self.training:  # the box head's training RoIs are sampled against the targets: see `losses`
            if torch.is_grad_enabled():
                self._kept = (feats, objectness, deltas, anchors, proposals, sizes)
            return padded
        heads = self.detector.roi_heads
        pooled = heads.box_roi_pool(feats, list(padded.unbind(0)), sizes)
        logits, regression = heads.box_predictor(heads.box_head(pooled))
        n = x.shape[0]
        return torch.cat([padded, logits.view(n, r, -1), regression.view(n, r, -1)], dim=-1)

    def trace_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same layers on a static path (for the dependency graph): RPN head outputs, and the box
        head on a 7x7 pooling of the first feature map standing in for RoIAlign."""
        feats = self.features(x)
        objectness, deltas = self.detector.rpn.head(list(feats.values()))
        first = next(iter(feats.values()))
        size = self.detector.roi_heads.box_roi_pool.output_size
        pooled = F.adaptive_avg_pool2d(first, size)
        logits, regression = self.detector.roi_heads.box_predictor(self.detector.roi_heads.box_head(pooled))
        parts = [t.flatten(1) for t in (*objectness, *deltas, logits, regression)]
        return torch.cat(parts, dim=1)

    def split(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.keys, out.split(list(self.widths), dim=-1), strict=True))

    def losses(self, out: torch.Tensor, targets: list[dict[str, torch.Tensor]], size: tuple[int, int]
               ) -> dict[str, torch.Tensor]:
        """torchvision's RPN losses and RoI-head losses for the batch of the last training forward."""
        if self._kept is None:
            raise PrunekitError("a Faster R-CNN's losses need the training forward of the same batch first")
        feats, objectness, deltas, anchors, proposals, sizes = self._kept
        self._kept = None
        rpn = self.detector.rpn
        labels, matched = rpn.assign_targets_to_anchors(anchors, targets)
        regression_targets = rpn.box_coder.encode(matched, anchors)
        loss_objectness, loss_rpn_box = rpn.compute_loss(objectness, deltas, labels, regression_targets)
        _, roi_losses = self.detector.roi_heads(feats, [p.detach() for p in proposals], sizes, targets)
        return {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box, **roi_losses}

    @torch.no_grad()
    def decode(self, out: torch.Tensor, size: tuple[int, int]) -> list[dict[str, torch.Tensor]]:
        """Boxes, scores and labels per image: torchvision's second-stage decoding, score threshold,
        per-class NMS and top-k (`RoIHeads.postprocess_detections`)."""
        parts = self.split(out)
        n, r = out.shape[0], out.shape[1]
        proposals = list(parts["proposals"].unbind(0))
        boxes, scores, labels = self.detector.roi_heads.postprocess_detections(
            parts["class_logits"].reshape(n * r, -1), parts["box_regression"].reshape(n * r, -1), proposals,
            [tuple(size)] * n)
        return [{"boxes": b, "scores": s, "labels": la} for b, s, la in zip(boxes, scores, labels, strict=True)]

    def align_outputs(self, ref: torch.Tensor, got: torch.Tensor) -> torch.Tensor:
        """`got`'s proposal slots reordered to `ref`'s (each to the nearest proposal box): two runtimes
        may order proposals of equal score differently, which is the same network output."""
        out = got.clone()
        for i in range(ref.shape[0]):
            d = torch.cdist(ref[i, :, :4], got[i, :, :4], p=float("inf"))
            out[i] = got[i, d.argmin(dim=1)]
        return out

    def output_layers(self) -> list[nn.Module]:
        """The RPN's objectness / delta convs and the box predictor: kept at full width."""
        rpn_head, predictor = self.detector.rpn.head, self.detector.roi_heads.box_predictor
        return [rpn_head.cls_logits, rpn_head.bbox_pred, predictor.cls_score, predictor.bbox_pred]
