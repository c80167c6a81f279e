"""Optimizers: SAM / ASAM wrapper (uniform, per-channel radii, cheap every-k variant)."""

from prunekit.optim.sam import (
    ASAM_ETA,
    SAM,
    ascent_context,
    channel_perturbation,
    coupled_channel_perturbation,
    disable_running_stats,
    enable_running_stats,
    global_perturbation,
    running_stats_frozen,
    weights_of,
)

__all__ = [
    "ASAM_ETA",
    "SAM",
    "ascent_context",
    "channel_perturbation",
    "coupled_channel_perturbation",
    "disable_running_stats",
    "enable_running_stats",
    "global_perturbation",
    "running_stats_frozen",
    "weights_of",
]
