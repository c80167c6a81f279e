"""Which layers a model runs, with the shapes a latency table is keyed by.

`enumerate_layers` runs one forward pass with hooks on every Conv2d / Linear and records the
input H x W each one actually sees (for a Linear on tokens: how many positions of a sample it
reads), so a table entry can be looked up per layer. Attention blocks that compute q/k/v with a
packed weight are converted first (`prunekit.structures.prepare`, as pruning does), so their
projections show up as the Linears they are. The
*signature* is everything about a layer except its channel counts (those are the table's
grid axes): op kind, kernel, stride, padding, dilation, groups and input H x W.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field

import torch
from torch import nn

from prunekit import structures
from prunekit.errors import PrunekitError

OP_CONV = "conv"  # dense conv (groups == 1)
OP_DWCONV = "dwconv"  # depthwise: groups == cin == cout, keyed by one channel count
OP_GCONV = "gconv"  # grouped conv: pruning keeps its group count (prunekit.pruning units), so g<groups> is
# part of the signature and the (cin, cout) grid holds multiples of the group count
OP_LINEAR = "linear"


@dataclass(frozen=True)
class LayerSpec:
    """One Conv2d/Linear call of a model, as the latency table sees it."""

    name: str
    op: str
    cin: int
    cout: int
    groups: int = 1
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    input_hw: tuple[int, int] = (1, 1)
    output_hw: tuple[int, int] = (1, 1)
    rows: int = 1  # Linear: positions per sample (1 for a classifier head)
    signature: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.signature:
            object.__setattr__(self, "signature", make_signature(self))

    @property
    def macs(self) -> int:
        """Multiply-accumulates of this layer for one sample."""
        if self.op == OP_LINEAR:
            return self.cin * self.cout * self.rows
        kh, kw = self.kernel
        return (self.cin // self.groups) * self.cout * kh * kw * self.output_hw[0] * self.output_hw[1]


def make_signature(spec: LayerSpec) -> str:
    """The table key of a layer: its op and geometry, not its channel counts."""
    if spec.op == OP_LINEAR:
        return f"linear:r{spec.rows}"
    parts = [
        spec.op,
        f"k{spec.kernel[0]}x{spec.kernel[1]}",
        f"s{spec.stride[0]}x{spec.stride[1]}",
        f"p{spec.padding[0]}x{spec.padding[1]}",
    ]
    if spec.dilation != (1, 1):
        parts.append(f"d{spec.dilation[0]}x{spec.dilation[1]}")
    if spec.op == OP_GCONV:
        parts.append(f"g{spec.groups}")
    parts.append(f"{spec.input_hw[0]}x{spec.input_hw[1]}")
    return ":".join(parts)


def parse_signature(signature: str) -> dict[str, object]:
    """Inverse of `make_signature` (used by the profiler to build the layer it must time)."""
    parts = signature.split(":")
    op = parts[0]
    if op == OP_LINEAR:
        if len(parts) != 2 or not parts[1].startswith("r"):
            raise PrunekitError(f"malformed layer signature {signature!r}", "expected 'linear:r<rows>'")
        return {"op": op, "rows": int(parts[1][1:])}
    if op not in (OP_CONV, OP_DWCONV, OP_GCONV):
        raise PrunekitError(
            f"unknown op {op!r} in layer signature {signature!r}", "ops: conv, dwconv, gconv, linear"
        )
    out: dict[str, object] = {"op": op, "dilation": (1, 1), "groups": 1}
    try:
        for part in parts[1:]:
            head, rest = part[0], part[1:]
            if head in "kspd":
                a, b = (int(v) for v in rest.split("x"))
                out[{"k": "kernel", "s": "stride", "p": "padding", "d": "dilation"}[head]] = (a, b)
            elif head == "g":
                out["groups"] = int(rest)
            else:
                a, b = (int(v) for v in part.split("x"))
                out["input_hw"] = (a, b)
    except ValueError as exc:
        raise PrunekitError(f"malformed layer signature {signature!r}", str(exc)) from exc
    if "kernel" not in out or "input_hw" not in out:
        raise PrunekitError(f"malformed layer signature {signature!r}", "kernel or input size missing")
    return out


def _pair(v: int | tuple[int, ...] | str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    return (int(v[0]), int(v[1]))


def _conv_spec(name: str, m: nn.Conv2d, x: torch.Tensor, y: torch.Tensor) -> LayerSpec:
    kernel = _pair(m.kernel_size)
    dilation = _pair(m.dilation)
    if isinstance(m.padding, str):
        padding = (
            (0, 0)
            if m.padding == "valid"
            else (dilation[0] * (kernel[0] - 1) // 2, dilation[1] * (kernel[1] - 1) // 2)
        )
    else:
        padding = _pair(m.padding)
    cin, cout, groups = m.in_channels, m.out_channels, m.groups
    if groups == 1:
        op = OP_CONV
    elif groups == cin == cout:
        op = OP_DWCONV
    else:
        op = OP_GCONV
    return LayerSpec(
        name=name,
        op=op,
        cin=cin,
        cout=cout,
        groups=groups,
        kernel=kernel,
        stride=_pair(m.stride),
        padding=padding,
        dilation=dilation,
        input_hw=(int(x.shape[-2]), int(x.shape[-1])),
        output_hw=(int(y.shape[-2]), int(y.shape[-1])),
    )


def _linear_spec(name: str, m: nn.Linear, x: torch.Tensor, batch: int) -> LayerSpec:
    """A Linear on tokens: `rows` counts every position of one sample, wherever the model put them
    (ViT [B, N, C]; Swin's windows [B * windows, N, C]; MaxViT's partitions [B, G, P, C])."""
    rows = max(1, x.numel() // max(1, int(x.shape[-1]) * max(1, batch)))
    return LayerSpec(name=name, op=OP_LINEAR, cin=m.in_features, cout=m.out_features, rows=rows)


def enumerate_layers(model: nn.Module, input_shape: tuple[int, int, int, int]) -> list[LayerSpec]:
    """Every Conv2d/Linear call of `model` on an input of `input_shape`, in execution order.

    Uses one no-grad forward pass in eval mode (restored afterwards) with forward hooks, so the
    input H x W of each layer is what the model really feeds it. A module called twice gets
    two entries (`name`, `name#1`). A model with unconverted attention blocks is enumerated as a
    converted copy (the model itself is not changed).
    """
    if len(input_shape) != 4:
        raise PrunekitError(f"input shape must be (batch, channels, height, width), got {tuple(input_shape)}")
    if structures.needs_prepare(model):  # a dense transformer: count it as it will be pruned
        model = copy.deepcopy(model)
        structures.prepare(model)
    names = {m: n for n, m in model.named_modules()}
    found: list[LayerSpec] = []
    calls: dict[str, int] = {}

    def hook(mod: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        base = names.get(mod, type(mod).__name__) or type(mod).__name__
        k = calls.get(base, 0)
        calls[base] = k + 1
        name = base if k == 0 else f"{base}#{k}"
        if isinstance(mod, nn.Conv2d):
            found.append(_conv_spec(name, mod, args[0], out))
        else:
            found.append(_linear_spec(name, mod, args[0], int(input_shape[0])))

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    try:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
        dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
        model.eval()
        with torch.no_grad():
            model(torch.zeros(tuple(input_shape), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return found


def arch_key(layers: list[LayerSpec]) -> str:
    """A fingerprint of a model's layer *geometry* (not widths): pruned variants share it."""
    text = "|".join(f"{spec.name.split('#')[0]}={spec.signature}" for spec in layers)
    return hashlib.sha1(text.encode()).hexdigest()[:12]
