"""Straight-through binarisation: binary mask forward, identity gradient backward."""

from __future__ import annotations

import torch
from torch import Tensor

from prunekit.errors import PrunekitError


def topk_binary(scores: Tensor, k: int) -> Tensor:
    """0/1 tensor (same shape and dtype) with ones at the ``k`` largest entries (ties: lowest index)."""
    n = scores.numel()
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
        raise PrunekitError(f"k must be an integer in [0, {n}], got {k!r}")
    flat = scores.detach().reshape(-1)
    mask = torch.zeros_like(flat)
    if k > 0:
        # stable sort keeps ties in index order, so the result is deterministic
        order = torch.sort(flat, descending=True, stable=True).indices[:k]
        mask[order] = 1
    return mask.reshape(scores.shape)


def ste_binarize(scores: Tensor, k: int | None = None, threshold: float | None = None) -> Tensor:
    """Binary mask with a straight-through gradient (d mask / d scores = identity).

    Forward: ones at the top-``k`` entries (over the whole tensor), or where
    ``scores >= threshold``; give exactly one of the two. Backward: the incoming gradient is
    passed to ``scores`` unchanged.
    """
    if (k is None) == (threshold is None):
        raise PrunekitError("ste_binarize needs exactly one of k or threshold")
    if k is not None:
        hard = topk_binary(scores, k)
    else:
        hard = (scores.detach() >= threshold).to(scores.dtype)
    return hard + (scores - scores.detach())
