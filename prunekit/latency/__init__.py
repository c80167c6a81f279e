"""Device profiles, latency lookup tables, latency prediction and measurement.

- `schema`: the Profile schema (pydantic); `store`: profile files (`load_profile`, `list_profiles`,
  `save_profile`, locking and merging); `profile` re-exports both.
- `layers`: `enumerate_layers` (the Conv2d/Linear layers a model runs, with their signatures).
- `predict`: `predict_latency` (table sum + constant; the constant model is the runtime's).
- `measure`: timing statistics, clocks, and the warm-blocks / interleaved schedules; the runtimes
  themselves (ONNX Runtime, PyTorch, TensorRT) are `prunekit.runtimes`.
- `profiler`: `profile_model`, which measures a table on this machine through a runtime.
- `ort_layers`, `ort_graph`: ONNX Runtime's layer graphs and priced constant (used by its runtime).
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
