"""Device profiles, latency lookup tables, latency prediction and measurement.

- `profile`: the Profile schema, `load_profile`, `list_profiles`, `save_profile`.
- `layers`: `enumerate_layers` (the Conv2d/Linear layers a model runs, with their signatures).
- `predict`: `predict_latency` (table sum + constant).
- `measure`: end-to-end timing on ONNX Runtime, PyTorch (CPU/CUDA) and TensorRT.
- `profiler`: `profile_model`, which measures a table on this machine.
- `estimate`: roofline-estimated profiles for devices that cannot be measured here.
"""

from prunekit.latency.layers import LayerSpec, enumerate_layers
from prunekit.latency.predict import LatencyPrediction, predict_latency
from prunekit.latency.profile import (
    MissingSignatureError,
    Profile,
    ProfileSummary,
    list_profiles,
    load_profile,
    save_profile,
)

__all__ = [
    "LatencyPrediction",
    "LayerSpec",
    "MissingSignatureError",
    "Profile",
    "ProfileSummary",
    "enumerate_layers",
    "list_profiles",
    "load_profile",
    "predict_latency",
    "save_profile",
]
