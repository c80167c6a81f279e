"""Layer enumeration and the predictor: equals the hand sum on a fully covered tiny model."""

from __future__ import annotations

import pytest
import torch
from latency_helpers import INPUT, tiny_model, tiny_profile
from torch import nn

from prunekit.latency.layers import arch_key, enumerate_layers, parse_signature
from prunekit.latency.predict import predict_latency
from prunekit.latency.profile import MissingSignatureError


def test_enumerate_layers_shapes_and_kinds():
    layers = enumerate_layers(tiny_model(), INPUT)
    assert [s.op for s in layers] == ["conv", "dwconv", "conv", "linear"]
    assert [s.name for s in layers] == ["0", "2", "4", "8"]
    assert layers[2].input_hw == (16, 16) and layers[2].output_hw == (8, 8)
    assert layers[1].signature == "dwconv:k3x3:s1x1:p1x1:16x16"
    assert parse_signature(layers[2].signature)["stride"] == (2, 2)
    assert layers[3].signature == "linear:r1"


def test_arch_key_ignores_widths():
    a = enumerate_layers(tiny_model(), INPUT)
    m = tiny_model()
    m[4] = nn.Conv2d(8, 12, 3, stride=2, padding=1)
    m[8] = nn.Linear(12, 4)
    assert arch_key(enumerate_layers(m, INPUT)) == arch_key(a)


def test_prediction_equals_hand_sum():
    prof = tiny_profile(fixed_ms=0.25)
    pred = predict_latency(tiny_model(), prof)
    # conv 3->8: 0.4; dw 8: 0.75; conv 8->16: 2.0; linear 16->4: 0.1; constant 0.25
    assert pred.per_layer == pytest.approx({"0": 0.4, "2": 0.75, "4": 2.0, "8": 0.1})
    assert pred.constant_ms == 0.25
    assert pred.total_ms == pytest.approx(0.4 + 0.75 + 2.0 + 0.1 + 0.25)
    assert pred.input_shape == INPUT


def test_prediction_of_a_pruned_model_uses_its_widths():
    m = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, groups=4),
        nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    pred = predict_latency(m, tiny_profile(fixed_ms=0.0))
    assert pred.total_ms == pytest.approx(0.3 + 0.5 + 1.0 + 0.05)


def test_missing_signature_is_an_error_never_zero():
    m = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.Flatten())
    with pytest.raises(MissingSignatureError) as exc:
        predict_latency(m, tiny_profile(), model_hint="mynet")
    assert "conv:k5x5:s1x1:p2x2:16x16" in exc.value.message
    assert "prunekit profile --target tiny --runtime onnxruntime --model mynet" in exc.value.one_line()


def test_batch_mismatch_is_an_error():
    with pytest.raises(Exception, match="batch size"):
        predict_latency(tiny_model(), tiny_profile(), (2, 3, 16, 16))


def test_enumerate_restores_training_mode():
    m = tiny_model().train()
    enumerate_layers(m, INPUT)
    assert m.training
    assert torch.is_grad_enabled()
