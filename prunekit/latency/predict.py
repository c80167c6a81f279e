"""Predict a model's end-to-end latency on a target from the target's profile.

Prediction = sum over the model's Conv2d/Linear layers of the table latency at the layer's
(cin, cout), plus the profile's constant for everything else (see Profile.constant: a fixed
number, or for ONNX Runtime profiles the model's optimized graph priced node by node).
Works for dense and pruned models alike: only the layer shapes matter, not the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from prunekit.errors import PrunekitError
from prunekit.latency.layers import OP_LINEAR, LayerSpec, enumerate_layers
from prunekit.latency.schema import MissingSignatureError, Profile

MIN_TOTAL_FRACTION = 0.2


@dataclass
class LatencyPrediction:
    """Predicted latency (ms): `total_ms` = sum(per_layer) + constant_ms (the constant may be
    negative: see `predict_latency`)."""

    total_ms: float
    per_layer: dict[str, float]
    constant_ms: float
    profile: str = ""
    input_shape: tuple[int, int, int, int] = (1, 3, 224, 224)
    constant_detail: dict[str, float] = field(default_factory=dict)
    unpriced_ops: list[str] = field(default_factory=list)

    @property
    def layers_ms(self) -> float:
        return float(sum(self.per_layer.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_ms": round(self.total_ms, 4),
            "layers_ms": round(self.layers_ms, 4),
            "constant_ms": round(self.constant_ms, 4),
            "profile": self.profile,
            "input_shape": list(self.input_shape),
            "per_layer": {k: round(v, 5) for k, v in self.per_layer.items()},
            "constant_detail": {k: round(v, 5) for k, v in self.constant_detail.items()},
            "unpriced_ops": self.unpriced_ops,
        }


def default_input_shape(profile: Profile) -> tuple[int, int, int, int]:
    return (profile.batch_size, 3, int(profile.input_size[0]), int(profile.input_size[1]))


def layer_table_latency(
    layers: list[LayerSpec], profile: Profile, model_hint: str = "<MODEL>"
) -> dict[str, float]:
    """Table latency of every layer; a missing signature names all missing ones and the fix."""
    out: dict[str, float] = {}
    missing: list[str] = []
    for spec in layers:
        try:
            out[spec.name] = profile.layer_latency(spec.signature, spec.cin, spec.cout)
        except MissingSignatureError as exc:
            if spec.signature in profile.table:  # width outside the measured range
                raise
            if spec.signature not in missing:
                missing.append(spec.signature)
            del exc
    if missing:
        more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
        raise MissingSignatureError(
            missing[0] + more,
            profile.name,
            profile.profile_command(model=model_hint),
            "the model needs layers this profile has not measured",
        )
    return out


def predict_latency(
    model: nn.Module,
    profile: Profile,
    input_shape: tuple[int, int, int, int] | None = None,
    model_hint: str = "<MODEL>",
) -> LatencyPrediction:
    """Predicted end-to-end latency of `model` on `profile`'s target.

    `input_shape` defaults to the profile's (batch, 3, H, W). Raises MissingSignatureError when
    the table lacks a layer the model needs (never predicts 0 for it).
    """
    shape = tuple(input_shape) if input_shape is not None else default_input_shape(profile)
    if len(shape) != 4:
        raise PrunekitError(f"input shape must be (batch, channels, height, width), got {shape}")
    if shape[0] != profile.batch_size:
        raise PrunekitError(f"profile {profile.name} is for batch size {profile.batch_size}, not {shape[0]}")
    layers = enumerate_layers(model, shape)  # type: ignore[arg-type]
    try:
        per_layer = layer_table_latency(layers, profile, model_hint)
    except MissingSignatureError as exc:
        raise _with_fix(exc, profile, model_hint, shape, layers) from None
    detail: dict[str, float] = {}
    unpriced: list[str] = []
    gc = None
    if profile.constant.method != "fixed":  # a runtime's own constant model (e.g. ONNX Runtime's priced graph)
        from prunekit.runtimes import get_runtime

        gc = get_runtime(profile.runtime).graph_constant(model, profile, shape)
    if gc is not None:
        constant, detail, unpriced = gc.total_ms, gc.by_op, gc.unpriced
    else:
        constant = profile.constant.fixed_ms
        detail = {"fixed": constant}
    gross = float(sum(per_layer.values()) + sum(v for v in detail.values() if v > 0))
    # a negative constant (the per-node correction) never takes the total below a fifth of its
    # priced parts: a run is not five times faster than the nodes it runs
    total = max(float(sum(per_layer.values()) + constant), MIN_TOTAL_FRACTION * gross)
    return LatencyPrediction(
        total_ms=total,
        per_layer=per_layer,
        constant_ms=float(constant),
        profile=profile.name,
        input_shape=shape,  # type: ignore[arg-type]
        constant_detail=detail,
        unpriced_ops=unpriced,
    )


def _with_fix(exc: MissingSignatureError, profile: Profile, model_hint: str, shape: tuple[int, ...],
              layers: list[LayerSpec]) -> MissingSignatureError:
    """The same error, its fix naming the model's input size and class count (what `profile` must measure)."""
    heads = [s for s in layers if s.op == OP_LINEAR]
    classes = heads[-1].cout if heads else None
    command = profile.profile_command(exc.signature, model_hint, (int(shape[2]), int(shape[3])), classes)
    return MissingSignatureError(exc.signature, profile.name, command, exc.detail)
