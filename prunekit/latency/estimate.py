"""Roofline-estimated profiles for devices that cannot be measured from here.

An *estimated* profile has the same table layout as a measured one, but every entry is
computed from public peak throughput and memory bandwidth:

    t(layer) = max( FLOPs_padded / (peak * eff_compute),  bytes / (bandwidth * eff_memory) ) + launch

FLOPs_padded = 2 * batch * Ho * Wo * kh * kw * ceil(cin / groups, k_align) * ceil(cout, n_tile)
(tensor cores work on channel blocks: a width between blocks costs the next block, which is
the staircase), bytes = precision bytes * (input + output activations + weights). A width
that is not a multiple of the tensor-core alignment also pays a reformat pass over its input
(TensorRT pads such tensors). Depthwise convs run on the CUDA cores (no tensor cores). The
profile is marked `estimated` with the figures and formula in its provenance; a measured
profile (`prunekit profile --runtime tensorrt` on the device) replaces it.

The shipped profiles/jetson-orin.json is `estimate_profile()` as written by
`python tools/estimate_profile.py --out profiles/jetson-orin.json`.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from prunekit.latency.layers import (
    OP_DWCONV,
    OP_GCONV,
    OP_LINEAR,
    LayerSpec,
    arch_key,
    enumerate_layers,
    parse_signature,
)
from prunekit.latency.ort_layers import cell_macs
from prunekit.latency.schema import (
    Constant,
    EstimatedProvenance,
    ModelRecord,
    Profile,
    TableEntry,
)

# NVIDIA Jetson AGX Orin 64GB, public figures (Jetson AGX Orin Series Technical Brief / data sheet).
JETSON_AGX_ORIN: dict[str, Any] = {
    "gpu": "Ampere, 16 SMs, 2048 CUDA cores, 64 third-generation tensor cores, 1.3 GHz",
    "int8_sparse_tops_gpu": 170.0,
    "fp16_dense_tensor_tflops": 42.5,  # 170 sparse INT8 TOPS / 2 (dense) / 2 (FP16 vs INT8)
    "fp32_cuda_tflops": 5.3,
    "fp16_cuda_tflops": 10.6,  # 2x FP32 on the CUDA cores (depthwise convs run there)
    "memory_bandwidth_gbs": 204.8,  # LPDDR5, 256-bit
    "l2_cache_mb": 4.0,
    # assumptions of this estimate (not published figures):
    "eff_compute": 0.5,  # fraction of tensor-core peak a TensorRT conv kernel reaches
    "eff_memory": 0.7,  # fraction of DRAM bandwidth a kernel reaches
    "launch_us": 4.0,  # per-kernel launch/scheduling cost inside an engine
    "k_align": 8,  # FP16 tensor-core channel alignment (cin blocks)
    "n_tile": 32,  # output-channel tile of the conv kernels (cout staircase)
}
FORMULA = (
    "t = max(2*B*Ho*Wo*kh*kw*ceil(cin/g, k_align)*ceil(cout, n_tile) / (fp16_dense_tensor_tflops*eff_compute), "
    "bytes / (memory_bandwidth_gbs*eff_memory)) + launch_us; bytes = 2*(input + output + weights) "
    "elements; + a reformat pass over the input when cin is not a multiple of k_align; depthwise: "
    "CUDA-core fp16_cuda_tflops, no tiles"
)

DEFAULT_MODELS = [
    ("resnet18", 224, 1000),
    ("resnet50", 224, 1000),
    ("mobilenet_v2", 224, 1000),
    ("efficientnet_b0", 224, 1000),
    ("googlenet", 224, 1000),
    ("resnet18", 32, 10),
]


def _ceil(x: int, q: int) -> int:
    return int(math.ceil(x / q) * q)


def roofline_ms(info: dict[str, Any], cin: int, cout: int, batch: int, spec: dict[str, Any]) -> float:
    """Estimated latency (ms) of one layer at (cin, cout) on the device described by `spec`."""
    ka, nt = int(spec["k_align"]), int(spec["n_tile"])
    bw = spec["memory_bandwidth_gbs"] * 1e9 * spec["eff_memory"]
    if info["op"] == OP_LINEAR:
        rows = int(info["rows"]) * batch
        flops = 2 * rows * _ceil(cin, ka) * _ceil(cout, nt)
        elems = rows * (cin + cout) + cin * cout
        peak = spec["fp16_dense_tensor_tflops"] * 1e12 * spec["eff_compute"]
        reformat = 0.0
    else:
        macs = cell_macs(info, cin, cout, batch)
        h, w = info["input_hw"]
        out_hw = macs / max(
            1,
            batch
            * (cin // (cin if info["op"] == OP_DWCONV else int(info.get("groups", 1))))
            * cout
            * info["kernel"][0]
            * info["kernel"][1],
        )
        kk = info["kernel"][0] * info["kernel"][1]
        if info["op"] == OP_DWCONV:
            flops = 2 * batch * out_hw * kk * cout
            peak = spec["fp16_cuda_tflops"] * 1e12 * spec["eff_compute"]
            weights = cout * kk
        elif info["op"] == OP_GCONV:
            g = int(info["groups"])
            flops = 2 * batch * out_hw * kk * (cin // g) * cout
            peak = spec["fp16_dense_tensor_tflops"] * 1e12 * spec["eff_compute"]
            weights = cout * (cin // g) * kk
        else:
            flops = 2 * batch * out_hw * kk * _ceil(cin, ka) * _ceil(cout, nt)
            peak = spec["fp16_dense_tensor_tflops"] * 1e12 * spec["eff_compute"]
            weights = cout * cin * kk
        elems = batch * (cin * h * w + cout * out_hw) + weights
        reformat = 0.0 if cin % ka == 0 or cin < 4 else 2 * 2 * batch * cin * h * w / bw
    t = max(flops / peak, 2 * elems / bw) + reformat
    return (t + spec["launch_us"] * 1e-6) * 1e3


def estimate_profile(
    name: str = "jetson-orin",
    spec: dict[str, Any] | None = None,
    models: list[tuple[str, int, int]] | None = None,
    step: int = 8,
) -> Profile:
    """An estimated TensorRT FP16 batch-1 profile covering `models` (torchvision names)."""
    from prunekit.latency.profiler import GridOptions, plan_signature
    from prunekit.models import build_model

    spec = dict(spec or JETSON_AGX_ORIN)
    prov = EstimatedProvenance(
        device_model="NVIDIA Jetson AGX Orin 64GB (GPU only, MAXN)",
        formula=FORMULA,
        spec={k: v for k, v in spec.items()},
        sources=[
            "NVIDIA Jetson AGX Orin Series Technical Brief v1.2",
            "NVIDIA Jetson AGX Orin Series Data Sheet (module specifications)",
        ],
        date=_dt.date.today().isoformat(),
        notes=(
            "estimate: replace with a measured table by running `prunekit profile --target jetson-orin "
            "--runtime tensorrt --model <MODEL>` on the Orin (see profiles/README.md)"
        ),
    )
    prof = Profile(
        name=name,
        aliases=["orin", "jetson-agx-orin"],
        runtime="tensorrt",
        precision="fp16",
        batch_size=1,
        threads=None,
        input_size=(224, 224),
        align_cin=int(spec["k_align"]),
        align_cout=1,
        pad=int(spec["n_tile"]),
        provenance=prov,
        constant=Constant(method="fixed", fixed_ms=0.05),
        description=(
            "Jetson AGX Orin, TensorRT FP16, batch 1 - ESTIMATED from a roofline of public specs, "
            "not measured"
        ),
    )
    opts = GridOptions(step=step)
    for model_name, hw, classes in models or DEFAULT_MODELS:
        model = build_model(model_name, classes).eval()
        layers = enumerate_layers(model, (1, 3, hw, hw))
        by_sig: dict[str, list[LayerSpec]] = {}
        for s in layers:
            by_sig.setdefault(s.signature, []).append(s)
        for sig, specs in by_sig.items():
            cin, cout = plan_signature(specs, prof, opts)
            info = parse_signature(sig)
            old = prof.table.get(sig)
            cells = old.cells() if old else {}
            axis_out = cout if cout is not None else None
            if axis_out is None:
                for c in sorted(set(cin) | {a for a, _ in cells}):
                    cells[(c, c)] = roofline_ms(info, c, c, 1, spec)
            else:
                all_in = sorted(set(cin) | {a for a, _ in cells})
                all_out = sorted(set(axis_out) | {b for _, b in cells})
                for a in all_in:
                    for b in all_out:
                        cells[(a, b)] = roofline_ms(info, a, b, 1, spec)
            prof.table[sig] = TableEntry.from_cells(cells, info["op"] == OP_DWCONV, "float16")
        key = f"{model_name}@{hw}x{hw}" + (f"/c{classes}" if classes != 1000 else "")
        prof.models[key] = ModelRecord(
            model=model_name,
            arch=arch_key(layers),
            input_shape=[1, 3, hw, hw],
            num_classes=classes,
            signatures=len(by_sig),
        )
    return prof
