"""Detectors as prunable networks: the raw head outputs of a torchvision-style detector.

`DetectorNet` wraps a torchvision single-stage detector (SSD / SSDlite, RetinaNet, FCOS, or any
`package.module:factory` model that is an instance of one of these classes) and exposes what
pruning, the latency model and ONNX see: one fixed-size batch of [0, 1] images in, the head's
raw outputs out, as ONE tensor `[N, anchors, sum of the head widths]` (per anchor: the keys of
the head's output dict in `DetectorNet.keys`, e.g. SSD: 4 box deltas then C class logits).
The detector's normalisation is the first op inside the network (so the ONNX file takes [0, 1]
images); its anchor generation, loss, box decoding and NMS stay outside (`losses`, `decode`),
computed by the detector's own torchvision code, because they are not part of the network a
TensorRT deployment runs.

The box / class output convolutions are found by tracing (`output_layers`: the convs of the
head whose output no other layer reads) and are never pruned: their widths are the anchors x
(4 | classes) the decoder expects.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.tasks.detection.two_stage import TwoStageNet, is_faster_rcnn

# torchvision detector builders prunekit builds by name (see README "Detection").
TORCHVISION_DETECTORS = (
    "ssdlite320_mobilenet_v3_large",
    "ssd300_vgg16",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
)
FASTER_RCNN = tuple(n for n in TORCHVISION_DETECTORS if n.startswith("fasterrcnn"))
# Their RPN proposal counts as prunekit builds them. torchvision's defaults (1000 at test time,
# 2000 in training, for 800 px COCO images) make the box head ~100x the backbone's cost at 128 px;
# its own 320 px mobilenet model uses 150. A factory keeps whatever it sets.
FASTER_RCNN_PROPOSALS = {"rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 100,
                         "rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_train": 300,
                         "box_batch_size_per_image": 128}
# Mask and keypoint heads: a second RoI branch per instance, not handled.
TWO_STAGE = (
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
    "keypointrcnn_resnet50_fpn",
)

HEAD_KEYS = {
    "ssd": ("bbox_regression", "cls_logits"),
    "retinanet": ("bbox_regression", "cls_logits"),
    "fcos": ("bbox_regression", "bbox_ctrness", "cls_logits"),
}


def detector_family(detector: nn.Module) -> str | None:
    """'ssd' | 'retinanet' | 'fcos' for a torchvision single-stage detector, else None."""
    from torchvision.models.detection.fcos import FCOS
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection.ssd import SSD

    for cls, name in ((SSD, "ssd"), (RetinaNet, "retinanet"), (FCOS, "fcos")):
        if isinstance(detector, cls):
            return name
    return None


class DetectorNet(nn.Module):
    """The network part of a detector: [0, 1] images `[N, 3, H, W]` -> raw head outputs `[N, A, K]`.

    `detector` is kept whole as a submodule (its parameters are this module's), so torchvision's
    own loss and post-processing code run on the same layers after pruning.
    """

    def __init__(self, detector: nn.Module, name: str = "detector") -> None:
        super().__init__()
        family = detector_family(detector)
        if family is None:
            raise PrunekitError(
                f"model '{name}' ({type(detector).__name__}) is not a torchvision SSD, RetinaNet, FCOS or Faster R-CNN detector",
                "build it with torchvision's SSD / RetinaNet / FCOS / FasterRCNN classes (any backbone), or use "
                + ", ".join(TORCHVISION_DETECTORS[:3]),
            )
        self.detector = detector
        self.family = family
        self.keys = HEAD_KEYS[family]
        t = detector.transform
        self.register_buffer("mean", torch.tensor(t.image_mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(t.image_std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.widths: tuple[int, ...] = ()
        self.probe_size = 64  # a small input the network runs on (set by build_detector)
        self._anchors: dict[tuple[int, int], tuple[torch.Tensor, list[int]]] = {}

    @property
    def num_classes(self) -> int:
        """Class logits per anchor (background included where the family has one)."""
        return int(self.widths[self.keys.index("cls_logits")]) if self.widths else -1

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Backbone (+ FPN) feature maps of normalised images."""
        feats = self.detector.backbone((x - self.mean) / self.std)
        if isinstance(feats, torch.Tensor):
            feats = OrderedDict([("0", feats)])
        return list(feats.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.detector.head(self.features(x))
        parts = [out[k] if out[k].dim() == 3 else out[k].unsqueeze(-1) for k in self.keys]
        if not self.widths and not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            self.widths = tuple(int(p.shape[-1]) for p in parts)
        return torch.cat(parts, dim=-1)

    # -- outside the network: anchors, loss, decoding -------------------------------------------------
    def split(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """The head's output dict back from the one tensor `forward` returns."""
        if not self.widths:
            with torch.no_grad():
                self.forward(torch.zeros(1, 3, self.probe_size, self.probe_size, device=out.device))
        parts = out.split(list(self.widths), dim=-1)
        return dict(zip(self.keys, parts, strict=True))

    def anchors(self, size: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, list[int]]:
        """The anchors of one image of `size` (they depend on the input size only, not on widths)
        and the number of feature positions per level; cached per size."""
        key = (int(size[0]), int(size[1]))
        if key not in self._anchors:
            from torchvision.models.detection.image_list import ImageList

            was = self.training
            with torch.no_grad():
                x = torch.zeros(1, 3, *key, device=device)
                feats = self.eval().features(x)
                anchors = self.detector.anchor_generator(ImageList(x, [key]), feats)[0]
            self.train(was)
            self._anchors[key] = (anchors.detach(), [int(f.shape[-2] * f.shape[-1]) for f in feats])
        anchors, per_level = self._anchors[key]
        return anchors.to(device), per_level

    def losses(self, out: torch.Tensor, targets: list[dict[str, torch.Tensor]], size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The detector's own training losses for raw outputs `out` (boxes in input pixels, xyxy)."""
        head = self.split(out)
        anchors, per_level = self.anchors(size, out.device)
        batch = [anchors] * out.shape[0]
        det = self.detector
        if self.family == "ssd":
            from torchvision.ops import boxes as box_ops

            matched = []
            for t in targets:
                if t["boxes"].numel() == 0:
                    matched.append(torch.full((anchors.size(0),), -1, dtype=torch.int64, device=out.device))
                else:
                    matched.append(det.proposal_matcher(box_ops.box_iou(t["boxes"], anchors)))
            return det.compute_loss(targets, head, batch, matched)
        if self.family == "retinanet":
            return det.compute_loss(targets, head, batch)
        return det.compute_loss(targets, head, batch, per_level)

    @torch.no_grad()
    def decode(self, out: torch.Tensor, size: tuple[int, int]) -> list[dict[str, torch.Tensor]]:
        """Boxes (xyxy, input pixels), scores and labels per image: the detector's own box decoding,
        score threshold, top-k and per-class NMS (torchvision `postprocess_detections`)."""
        head = self.split(out)
        anchors, per_level = self.anchors(size, out.device)
        sizes = [tuple(size)] * out.shape[0]
        det = self.detector
        if self.family == "ssd":
            return det.postprocess_detections(head, [anchors] * out.shape[0], sizes)
        positions = sum(per_level)
        per_anchor = head["cls_logits"].shape[1] // positions
        counts = [n * per_anchor for n in per_level]
        split = {k: list(v.split(counts, dim=1)) for k, v in head.items()}
        return det.postprocess_detections(split, [list(anchors.split(counts))] * out.shape[0], sizes)

    def output_layers(self) -> list[nn.Module]:
        """The head's output layers (class logits, box deltas, centerness): kept at full width."""
        return head_output_layers(self)


def head_output_layers(net: DetectorNet, size: int | None = None) -> list[nn.Module]:
    """The Conv2d / Linear layers of the head whose outputs no other layer reads (traced once:
    every leaf module's inputs are recorded, and a layer whose output tensor is nobody's input
    produces the network's output)."""
    produced: dict[int, nn.Module] = {}
    read: set[int] = set()
    leaves = [m for m in net.detector.head.modules() if not list(m.children())]

    def hook(mod: nn.Module, inputs: tuple, output: object) -> None:
        tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
        read.update(id(t) for t in tensors)
        keep.extend(tensors)
        if isinstance(mod, (nn.Conv2d, nn.Linear)) and isinstance(output, torch.Tensor):
            produced[id(output)] = mod
            keep.append(output)  # ids stay unique while the tensors live

    keep: list[torch.Tensor] = []
    handles = [m.register_forward_hook(hook) for m in leaves]
    was = net.training
    try:
        with torch.no_grad():
            size = size or net.probe_size
            net.eval()(torch.zeros(1, 3, size, size, device=net.mean.device))
    finally:
        for h in handles:
            h.remove()
        net.train(was)
    out: list[nn.Module] = []
    for tid, mod in produced.items():
        if tid not in read and mod not in out:
            out.append(mod)
    return out


def build_detector(name: str, num_classes: int) -> DetectorNet | TwoStageNet:
    """A torchvision detector by name (no weights, no backbone weights: nothing is downloaded),
    or `package.module:factory` (called with num_classes=) returning a torchvision-style detector."""
    if num_classes < 2:
        raise PrunekitError(f"a detector needs at least 2 classes (background + 1), got {num_classes}")
    if ":" in name:
        detector = _factory(name, num_classes)
    elif name in TWO_STAGE:
        raise PrunekitError(
            f"model '{name}' has a mask / keypoint head (a second RoI branch per instance), which prunekit "
            "does not handle", f"use one of {', '.join(TORCHVISION_DETECTORS)}",
        )
    elif name in TORCHVISION_DETECTORS:
        import torchvision

        builder = torchvision.models.get_model_builder(name)
        extra = FASTER_RCNN_PROPOSALS if name in FASTER_RCNN else {}
        detector = builder(weights=None, weights_backbone=None, num_classes=num_classes, **extra)
    else:
        raise PrunekitError(f"unknown detection model '{name}'",
                            f"use one of {', '.join(TORCHVISION_DETECTORS)}, or package.module:factory")
    net: DetectorNet | TwoStageNet
    if is_faster_rcnn(detector):
        net = TwoStageNet(detector, name)
    else:
        net = DetectorNet(detector, name)
    fixed = getattr(detector.transform, "fixed_size", None)
    sizes = [64] + ([int(min(fixed))] if fixed else []) + [320]
    for i, size in enumerate(sizes):  # the smallest input it runs on (SSD300's VGG extras need 300)
        try:
            with torch.no_grad():
                net.eval()(torch.zeros(1, 3, size, size))
            net.probe_size = size
            break
        except RuntimeError as exc:
            if i == len(sizes) - 1:
                raise PrunekitError(f"detector '{name}' does not run on a {size} px input "
                                    f"({str(exc).splitlines()[0][:120]})", "check the factory's detector") from None
    net.train()
    return net


def _factory(spec: str, num_classes: int) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PrunekitError(f"cannot import '{module_name}' for model '{spec}': {exc}",
                            "make sure the module is on PYTHONPATH") from exc
    factory: Callable[..., nn.Module] | None = getattr(module, attr, None)
    if not callable(factory):
        raise PrunekitError(f"'{spec}' is not a callable model factory", "use package.module:function")
    try:
        detector = factory(num_classes=num_classes)
    except Exception as exc:  # user code: any failure is reported, not traced back
        raise PrunekitError(f"model factory '{spec}' failed: {type(exc).__name__}: {str(exc)[:160]}",
                            "the factory must accept num_classes= and return a detector") from exc
    if not isinstance(detector, nn.Module):
        raise PrunekitError(f"'{spec}' returned {type(detector).__name__}, not a torch.nn.Module")
    return detector


# Every network class a detection run holds (single-stage and two-stage).
DETECTOR_NETS = (DetectorNet, TwoStageNet)

