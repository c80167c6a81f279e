"""`package.module:factory` detectors for the tests: torchvision's FCOS / RetinaNet classes around a
two-level toy backbone (fast to build, trace and prune)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class TinyBackbone(nn.Module):
    """Two feature levels (strides 4 and 8) of 32 channels."""

    out_channels = 32

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(32, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU())

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        a = self.stem(x)
        return OrderedDict([("0", a), ("1", self.down(a))])


def tiny_fcos(num_classes: int) -> nn.Module:
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOS, FCOSHead

    anchors = AnchorGenerator(sizes=((16,), (32,)), aspect_ratios=((1.0,), (1.0,)))
    head = FCOSHead(32, 1, num_classes, num_convs=1)
    return FCOS(TinyBackbone(), num_classes, anchor_generator=anchors, head=head, min_size=64, max_size=64)


def tiny_retinanet(num_classes: int) -> nn.Module:
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.retinanet import RetinaNet

    anchors = AnchorGenerator(sizes=((16,), (32,)), aspect_ratios=((0.5, 1.0, 2.0),) * 2)
    return RetinaNet(TinyBackbone(), num_classes, anchor_generator=anchors, min_size=64, max_size=64)


def not_a_detector(num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten())


class SizeBound(nn.Module):
    """A layer that only runs on 64 px inputs' feature maps (16 x 16): fails anywhere else."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 16:
            raise RuntimeError("this layer only takes 16x16 maps")
        return x


def size_bound_fcos(num_classes: int) -> nn.Module:
    model = tiny_fcos(num_classes)
    model.backbone.stem.append(SizeBound())
    return model


def tiny_ssd(num_classes: int) -> nn.Module:
    """torchvision's SSD class (softmax scores, background class 0) around the toy backbone."""
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD, SSDHead

    anchors = DefaultBoxGenerator([[2], [2]])
    head = SSDHead([32, 32], anchors.num_anchors_per_location(), num_classes)
    return SSD(TinyBackbone(), anchors, (64, 64), num_classes, head=head)


def tiny_faster_rcnn(num_classes: int) -> nn.Module:
    """torchvision's FasterRCNN class (RPN, RoIAlign over both levels, a two-FC box head) around
    the toy backbone, with few proposals."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    anchors = AnchorGenerator(sizes=((16,), (32,)), aspect_ratios=((0.5, 1.0, 2.0),) * 2)
    return FasterRCNN(TinyBackbone(), None, rpn_anchor_generator=anchors, min_size=64, max_size=64,
                      box_roi_pool=MultiScaleRoIAlign(["0", "1"], 7, 2), box_head=TwoMLPHead(32 * 49, 48),
                      box_predictor=FastRCNNPredictor(48, num_classes), rpn_pre_nms_top_n_test=60,
                      rpn_post_nms_top_n_test=20, rpn_pre_nms_top_n_train=60, rpn_post_nms_top_n_train=30,
                      box_batch_size_per_image=32, box_score_thresh=0.0)
