"""Layer structures torch-pruning needs help with, each handled here and registered in one table.

torch-pruning (DepGraph) traces a model through autograd and couples channels across layers. It
gets some structures wrong or cannot express them; this module is what prunekit adds:

- **Attention heads.** `nn.MultiheadAttention`, torchvision's Swin `ShiftedWindowAttention(V2)`,
  MaxViT's `RelativePositionalMultiHeadAttention` and timm's ViT `Attention` compute q/k/v with
  one packed weight, and most derive the head width from the *input* width, so neither heads nor
  the embedding can be pruned on their own. `prepare(model)` converts each into a `HeadAttention` (same math, separate
  `q`/`k`/`v`/`proj` Linears, explicit `num_heads` / `head_dim`), table `CONVERTERS`. Whole heads
  are then one pruning unit each (`head_dim` channels of q, k, v and of proj's input), and the
  per-head parameters (relative position bias, Swin V2's logit scale and bias MLP) follow.
- **Trace surrogates.** Window partitions, cyclic shifts and patch merging reshape channels-last
  tensors in ways torch-pruning's reshape heuristics misread (on Swin they made its index lists
  grow until the machine ran out of memory). While the graph is traced (`tracing(model)`), those
  modules run a surrogate with the same channel flow and no reshapes (table `TRACE_SURROGATES`).
- **Channel shuffle.** `view -> transpose(1, 2) -> view` (ShuffleNet) permutes channels across the
  two halves of a concat; `channel_shuffles(dg)` finds it so the groups it touches are kept whole
  (their channels are coupled across groups), and the rest of the model prunes normally.
- **Pruning units.** A grouped convolution (ResNeXt, RegNet) keeps its group count, so every conv
  group must lose the same channel positions; a GroupNorm keeps its groups the same way; an
  attention block loses whole heads. `channel_units(...)` turns these rules into a partition of a
  group's channels into units removed together.
- **Cached widths.** Attributes a model's forward reads instead of its weights' shapes
  (torchvision ViT's `hidden_dim`) are refreshed after pruning (table `FIXUPS`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

# ---------------------------------------------------------------------------------------- tracing


class _TraceOnly(torch.autograd.Function):
    """One opaque autograd node computing `fn(x)`: torch-pruning sees x -> output, nothing between."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        ctx.shape = x.shape
        with torch.no_grad():
            return fn(x).clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # never used for training
        return grad.new_zeros(ctx.shape), None


def opaque(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`fn(x)` as a single channel-preserving node of the traced graph (tracing only)."""
    return _TraceOnly.apply(x, fn)


# ---------------------------------------------------------------------------------------- attention


class HeadAttention(nn.Module):
    """Multi-head attention with separate q/k/v/proj Linears and explicit head counts.

    Subclasses define the token layout (plain sequence, shifted windows, partitions) and the
    positional bias; heads are pruned by removing `head_dim` rows of q, k, v and columns of proj
    (done by torch-pruning), then `drop_heads` removes the per-head parameters.
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, qkv_bias: bool, proj_bias: bool, k_bias: bool = True):
        super().__init__()
        inner = num_heads * head_dim
        self.num_heads, self.head_dim = num_heads, head_dim
        self.q = nn.Linear(dim, inner, bias=qkv_bias)
        self.k = nn.Linear(dim, inner, bias=qkv_bias and k_bias)
        self.v = nn.Linear(dim, inner, bias=qkv_bias)
        self.proj = nn.Linear(inner, dim, bias=proj_bias)
        self.trace_surrogate = False

    def head_params(self) -> list[tuple[nn.Module, str, int]]:
        """(owner, attribute, dim) of every parameter with one slice per head, besides q/k/v/proj."""
        return []

    def drop_heads(self, heads: list[int]) -> None:
        """Remove the per-head parameters of `heads` (q/k/v/proj were already pruned) and recount."""
        old = self.num_heads
        keep = torch.tensor([h for h in range(old) if h not in set(heads)], dtype=torch.long)
        for owner, attr, dim in self.head_params():
            p = getattr(owner, attr)
            new = nn.Parameter(p.data.index_select(dim, keep.to(p.device)).clone(), requires_grad=p.requires_grad)
            setattr(owner, attr, new)
            if isinstance(owner, nn.Linear) and attr == "weight" and dim == 0:
                owner.out_features = len(keep)
        self.num_heads = self.q.out_features // self.head_dim

    def _surrogate(self, x: torch.Tensor) -> torch.Tensor:
        # The channel flow of attention, for torch-pruning: q, k, v read x; their channels meet
        # (elementwise, head by head); proj reads them and writes the output.
        return self.proj(self.q(x) + self.k(x) + self.v(x))

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """[..., N, heads*head_dim] -> [..., heads, N, head_dim]."""
        return t.unflatten(-1, (self.num_heads, self.head_dim)).transpose(-3, -2)

    @staticmethod
    def _merge(t: torch.Tensor) -> torch.Tensor:
        """[..., heads, N, head_dim] -> [..., N, heads*head_dim]."""
        return t.transpose(-3, -2).flatten(-2)


class SelfAttention(HeadAttention):
    """`nn.MultiheadAttention` (packed in-projection, no bias_k/v, no zero attention) with prunable heads.

    Called like the original (`attn(q, k, v, need_weights=False)`); returns `(output, None)`:
    attention weights are not computed.
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, bias: bool, dropout: float, batch_first: bool):
        super().__init__(dim, num_heads, head_dim, qkv_bias=bias, proj_bias=bias)
        self.dropout, self.batch_first = dropout, batch_first

    @classmethod
    def convert(cls, m: nn.Module) -> SelfAttention | None:
        """The equivalent SelfAttention of `m`, or None where `m` uses an option it does not have."""
        if not isinstance(m, nn.MultiheadAttention):
            return None
        if not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
            return None
        dim, heads = m.embed_dim, m.num_heads
        has_bias = m.in_proj_bias is not None
        new = cls(dim, heads, dim // heads, has_bias, float(m.dropout), bool(m.batch_first))
        w = m.in_proj_weight.detach()
        b = m.in_proj_bias.detach() if has_bias else None
        for i, lin in enumerate((new.q, new.k, new.v)):
            lin.weight.data.copy_(w[i * dim:(i + 1) * dim])
            if b is not None:
                lin.bias.data.copy_(b[i * dim:(i + 1) * dim])
        new.proj.weight.data.copy_(m.out_proj.weight.detach())
        if new.proj.bias is not None and m.out_proj.bias is not None:
            new.proj.bias.data.copy_(m.out_proj.bias.detach())
        return new.to(w.device, w.dtype).train(m.training)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, None]:
        if self.trace_surrogate:
            return self.proj(self.q(query) + self.k(key) + self.v(value)), None
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        q, k, v = self._heads(self.q(query)), self._heads(self.k(key)), self._heads(self.v(value))
        mask = _additive_mask(attn_mask, key_padding_mask, q)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal and mask is None,
        )
        out = self.proj(self._merge(out))
        return (out if self.batch_first else out.transpose(0, 1)), None


def _additive_mask(
    attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, q: torch.Tensor
) -> torch.Tensor | None:
    """MultiheadAttention's masks (True = masked out, or additive floats) as one additive mask."""
    batch, heads, n = q.shape[0], q.shape[1], q.shape[2]
    mask = None
    if attn_mask is not None:
        m = attn_mask
        if m.dtype == torch.bool:
            m = torch.zeros(m.shape, dtype=q.dtype, device=q.device).masked_fill(m, float("-inf"))
        if m.dim() == 3:
            m = m.view(batch, heads, n, -1)
        mask = m.to(q.dtype)
    if key_padding_mask is not None:
        kp = key_padding_mask
        if kp.dtype == torch.bool:
            kp = torch.zeros(kp.shape, dtype=q.dtype, device=q.device).masked_fill(kp, float("-inf"))
        kp = kp.to(q.dtype).view(batch, 1, 1, -1)
        mask = kp if mask is None else mask + kp
    return mask


class WindowAttention(HeadAttention):
    """Swin's (shifted) window attention on [B, H, W, C], V1 (scaled dot product + bias table) or
    V2 (cosine attention with a learned logit scale, continuous position bias from a small MLP)."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, window_size: list[int], shift_size: list[int],
                 qkv_bias: bool, proj_bias: bool, attention_dropout: float, dropout: float, v2: bool):
        super().__init__(dim, num_heads, head_dim, qkv_bias, proj_bias, k_bias=not v2)
        self.window_size, self.shift_size = list(window_size), list(shift_size)
        self.attention_dropout, self.dropout, self.v2 = attention_dropout, dropout, v2

    @classmethod
    def convert(cls, m: nn.Module) -> WindowAttention | None:
        from torchvision.models.swin_transformer import ShiftedWindowAttention, ShiftedWindowAttentionV2

        if not isinstance(m, ShiftedWindowAttention):
            return None
        v2 = isinstance(m, ShiftedWindowAttentionV2)
        dim, heads = m.qkv.in_features, m.num_heads
        new = cls(dim, heads, dim // heads, m.window_size, m.shift_size, m.qkv.bias is not None,
                  m.proj.bias is not None, float(m.attention_dropout), float(m.dropout), v2)
        _split_packed(m.qkv, (new.q, new.k, new.v))
        new.proj = m.proj
        new.register_buffer("relative_position_index", m.relative_position_index.clone())
        if v2:
            new.logit_scale = m.logit_scale
            new.cpb_mlp = m.cpb_mlp
            new.register_buffer("relative_coords_table", m.relative_coords_table.clone())
        else:
            new.relative_position_bias_table = m.relative_position_bias_table
        return new.to(m.qkv.weight.device, m.qkv.weight.dtype).train(m.training)

    def head_params(self) -> list[tuple[nn.Module, str, int]]:
        if self.v2:
            return [(self, "logit_scale", 0), (self.cpb_mlp[-1], "weight", 0)]
        return [(self, "relative_position_bias_table", 1)]

    def position_bias(self) -> torch.Tensor:
        """[1, heads, N, N] bias over the N = wh * ww tokens of a window."""
        n = self.window_size[0] * self.window_size[1]
        if self.v2:
            table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)
        else:
            table = self.relative_position_bias_table
        bias = table[self.relative_position_index].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        return 16 * torch.sigmoid(bias) if self.v2 else bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.trace_surrogate:
            return self._surrogate(x)
        b, h, w, _ = x.shape
        wh, ww = self.window_size
        x = F.pad(x, (0, 0, 0, (-w) % ww, 0, (-h) % wh))
        hp, wp = x.shape[1], x.shape[2]
        sh = self.shift_size[0] if wh < hp else 0
        sw = self.shift_size[1] if ww < wp else 0
        if sh or sw:
            x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
        nh, nw = hp // wh, wp // ww
        tokens = x.view(b, nh, wh, nw, ww, -1).permute(0, 1, 3, 2, 4, 5).reshape(b * nh * nw, wh * ww, -1)
        q, k, v = self._heads(self.q(tokens)), self._heads(self.k(tokens)), self._heads(self.v(tokens))
        if self.v2:
            attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
            attn = attn * torch.clamp(self.logit_scale, max=math.log(100.0)).exp()
        else:
            attn = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)
        attn = attn + self.position_bias()
        if sh or sw:
            n = wh * ww
            attn = attn.view(b, nh * nw, self.num_heads, n, n) + _shift_mask(hp, wp, wh, ww, sh, sw, x)[None, :, None]
            attn = attn.view(b * nh * nw, self.num_heads, n, n)
        attn = F.dropout(attn.softmax(dim=-1), p=self.attention_dropout, training=self.training)
        out = F.dropout(self.proj(self._merge(attn @ v)), p=self.dropout, training=self.training)
        out = out.view(b, nh, nw, wh, ww, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
        if sh or sw:
            out = torch.roll(out, shifts=(sh, sw), dims=(1, 2))
        return out[:, :h, :w, :].contiguous()


def _shift_mask(hp: int, wp: int, wh: int, ww: int, sh: int, sw: int, like: torch.Tensor) -> torch.Tensor:
    """[windows, N, N]: -100 between tokens of a shifted window that came from different regions."""

    def bands(size: int, window: int, shift: int) -> torch.Tensor:
        idx = torch.arange(size, device=like.device)
        return (idx >= size - window).long() + (idx >= size - shift).long() if shift else torch.zeros_like(idx)

    region = bands(hp, wh, sh)[:, None] * 3 + bands(wp, ww, sw)[None, :]
    region = region.view(hp // wh, wh, wp // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)
    differ = region[:, None, :] != region[:, :, None]
    return torch.zeros(differ.shape, dtype=like.dtype, device=like.device).masked_fill(differ, -100.0)


class PartitionAttention(HeadAttention):
    """MaxViT's relative-position attention on partitioned tokens [B, G, P, D]."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, max_seq_len: int, scale: float):
        super().__init__(dim, num_heads, head_dim, qkv_bias=True, proj_bias=True)
        self.max_seq_len, self.scale = max_seq_len, scale

    @classmethod
    def convert(cls, m: nn.Module) -> PartitionAttention | None:
        from torchvision.models.maxvit import RelativePositionalMultiHeadAttention

        if not isinstance(m, RelativePositionalMultiHeadAttention):
            return None
        new = cls(m.merge.out_features, m.n_heads, m.head_dim, m.max_seq_len, float(m.scale_factor))
        _split_packed(m.to_qkv, (new.q, new.k, new.v))
        new.proj = m.merge
        new.relative_position_bias_table = m.relative_position_bias_table
        new.register_buffer("relative_position_index", m.relative_position_index.clone())
        return new.to(m.to_qkv.weight.device, m.to_qkv.weight.dtype).train(m.training)

    def head_params(self) -> list[tuple[nn.Module, str, int]]:
        return [(self, "relative_position_bias_table", 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.trace_surrogate:
            return self._surrogate(x)
        q, k, v = self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x))
        n = self.max_seq_len
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = (q @ (k * self.scale).transpose(-2, -1) + bias.permute(2, 0, 1).unsqueeze(0)).softmax(dim=-1)
        return self.proj(self._merge(attn @ v))


class TokenAttention(HeadAttention):
    """timm's ViT/DeiT `Attention` on [B, N, C] (optional q/k norms over the head width)."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, qkv_bias: bool, proj_bias: bool, scale: float,
                 attn_drop: float, proj_drop: float):
        super().__init__(dim, num_heads, head_dim, qkv_bias, proj_bias)
        self.scale, self.attn_drop, self.proj_drop = scale, attn_drop, proj_drop
        self.q_norm: nn.Module = nn.Identity()
        self.k_norm: nn.Module = nn.Identity()

    @classmethod
    def convert(cls, m: nn.Module) -> TokenAttention | None:
        try:
            from timm.models.vision_transformer import Attention
        except ImportError:
            return None
        if type(m) is not Attention or m.gate is not None or not isinstance(m.norm, nn.Identity):
            return None
        new = cls(m.qkv.in_features, m.num_heads, m.head_dim, m.qkv.bias is not None, m.proj.bias is not None,
                  float(m.scale), float(m.attn_drop.p), float(m.proj_drop.p))
        _split_packed(m.qkv, (new.q, new.k, new.v))
        new.proj = m.proj
        new.q_norm, new.k_norm = m.q_norm, m.k_norm
        return new.to(m.qkv.weight.device, m.qkv.weight.dtype).train(m.training)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        if self.trace_surrogate:
            return self._surrogate(x)
        q, k, v = self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x))
        q, k = self.q_norm(q), self.k_norm(k)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop if self.training else 0.0,
            is_causal=is_causal, scale=self.scale,
        )
        return F.dropout(self.proj(self._merge(out)), p=self.proj_drop, training=self.training)


class TimmWindowAttention(HeadAttention):
    """timm's Swin `WindowAttention` on windows [B * windows, N, C] (the block partitions)."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, window_area: int, qkv_bias: bool, scale: float,
                 attn_drop: float, proj_drop: float):
        super().__init__(dim, num_heads, head_dim, qkv_bias, proj_bias=True)
        self.window_area, self.scale, self.attn_drop, self.proj_drop = window_area, scale, attn_drop, proj_drop

    @classmethod
    def convert(cls, m: nn.Module) -> TimmWindowAttention | None:
        try:
            from timm.models.swin_transformer import WindowAttention
        except ImportError:
            return None
        if type(m) is not WindowAttention:
            return None
        new = cls(m.qkv.in_features, m.num_heads, m.qkv.out_features // 3 // m.num_heads, m.window_area,
                  m.qkv.bias is not None, float(m.scale), float(m.attn_drop.p), float(m.proj_drop.p))
        _split_packed(m.qkv, (new.q, new.k, new.v))
        new.proj = m.proj
        new.relative_position_bias_table = m.relative_position_bias_table
        new.register_buffer("relative_position_index", m.relative_position_index.clone(), persistent=False)
        return new.to(m.qkv.weight.device, m.qkv.weight.dtype).train(m.training)

    def head_params(self) -> list[tuple[nn.Module, str, int]]:
        return [(self, "relative_position_bias_table", 1)]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.trace_surrogate:
            return self._surrogate(x)
        n = x.shape[1]
        q, k, v = self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x))
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = (q * self.scale) @ k.transpose(-2, -1) + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = (attn.view(-1, windows, self.num_heads, n, n) + mask[None, :, None]).view(-1, self.num_heads, n, n)
        attn = F.dropout(attn.softmax(dim=-1), p=self.attn_drop, training=self.training)
        return F.dropout(self.proj(self._merge(attn @ v)), p=self.proj_drop, training=self.training)


def _split_packed(packed: nn.Linear, parts: tuple[nn.Linear, nn.Linear, nn.Linear]) -> None:
    """Copy a packed [q; k; v] Linear into three Linears (a part without bias drops that slice)."""
    n = packed.out_features // 3
    for i, lin in enumerate(parts):
        lin.weight.data.copy_(packed.weight.detach()[i * n:(i + 1) * n])
        if lin.bias is not None and packed.bias is not None:
            lin.bias.data.copy_(packed.bias.detach()[i * n:(i + 1) * n])


CONVERTERS: tuple[Callable[[nn.Module], HeadAttention | None], ...] = (
    SelfAttention.convert,
    WindowAttention.convert,
    PartitionAttention.convert,
    TokenAttention.convert,
    TimmWindowAttention.convert,
)


def prepare(model: nn.Module) -> int:
    """Convert, in place, every attention block `CONVERTERS` knows into a HeadAttention; returns the count.

    The converted model computes the same function (to float rounding); its state-dict keys of
    the converted blocks change (`qkv.weight` -> `q.weight`, `k.weight`, `v.weight`), so a pruned
    model is always rebuilt through `prepare` (which `PruningGraph` and `apply_plan` do).
    """
    count = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, HeadAttention):
            continue
        for convert in CONVERTERS:
            new = convert(module)
            if new is not None:
                _replace(model, name, new)
                count += 1
                break
    return count


def needs_prepare(model: nn.Module) -> bool:
    """Whether `prepare` would convert anything in `model` (cheap: type checks only)."""
    from torchvision.models.maxvit import RelativePositionalMultiHeadAttention
    from torchvision.models.swin_transformer import ShiftedWindowAttention

    kinds: tuple[type, ...] = (nn.MultiheadAttention, ShiftedWindowAttention, RelativePositionalMultiHeadAttention)
    try:
        from timm.models.swin_transformer import WindowAttention
        from timm.models.vision_transformer import Attention

        kinds += (Attention, WindowAttention)
    except ImportError:
        pass
    return any(isinstance(m, kinds) and not isinstance(m, HeadAttention) for m in model.modules())


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def attention_blocks(model: nn.Module) -> dict[str, HeadAttention]:
    """Every HeadAttention of `model`, by module name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, HeadAttention)}


# ------------------------------------------------------------------------------------ surrogates


def _patch_merging_surrogate(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # Swin's patch merging concatenates the four 2x2 neighbours along channels: channel c of the
    # input is channel c, C+c, 2C+c and 3C+c of the merged tensor. A channel-first concat of four
    # copies says exactly that to torch-pruning, without the strided slices it would misread.
    from torchvision.models.swin_transformer import PatchMergingV2

    t = F.avg_pool2d(x.permute(0, 3, 1, 2), 2, ceil_mode=True)
    t = torch.cat([t * 1.0 for _ in range(4)], dim=1).permute(0, 2, 3, 1)
    if isinstance(m, PatchMergingV2):
        return m.norm(m.reduction(t))
    return m.reduction(m.norm(t))


def _opaque_surrogate(m: nn.Module, x: torch.Tensor, *args: Any) -> torch.Tensor:
    forward = type(m).forward
    return opaque(x, lambda t: forward(m, t, *args))


def _token_subsample_surrogate(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # timm LeViT's Downsample views [B, N, C] tokens as a grid and keeps every stride-th one, a
    # view torch-pruning misreads (it pruned the next q Linear's inputs differently from its
    # producer's outputs). The same token count, taken along the token axis only, has the same
    # channel flow.
    n = -(-m.resolution[0] // m.stride) * -(-m.resolution[1] // m.stride)
    return x[:, :n] * 1.0


def _window_block_surrogate(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # timm's Swin block partitions windows in a method around its attention: skip the partition.
    return m.attn(x)


def _surrogate_table() -> dict[type, tuple[str, Callable[..., torch.Tensor]]]:
    """Module type -> (the method replaced while tracing, its surrogate)."""
    from torchvision.models.maxvit import WindowDepartition, WindowPartition
    from torchvision.models.swin_transformer import PatchMerging, PatchMergingV2

    table: dict[type, tuple[str, Callable[..., torch.Tensor]]] = {
        PatchMerging: ("forward", _patch_merging_surrogate),
        PatchMergingV2: ("forward", _patch_merging_surrogate),
        WindowPartition: ("forward", _opaque_surrogate),
        WindowDepartition: ("forward", _opaque_surrogate),
    }
    try:
        from timm.models import swin_transformer as timm_swin

        table[timm_swin.PatchMerging] = ("forward", _patch_merging_surrogate)
        table[timm_swin.SwinTransformerBlock] = ("_attn", _window_block_surrogate)
    except ImportError:
        pass
    try:
        from timm.models import levit as timm_levit

        table[timm_levit.Downsample] = ("forward", _token_subsample_surrogate)
    except ImportError:
        pass
    return table


TRACE_SURROGATES = _surrogate_table


@contextlib.contextmanager
def tracing(model: nn.Module) -> Iterator[None]:
    """Run the model's surrogates (attention channel flow, opaque reshapes) while the graph is traced."""
    table = TRACE_SURROGATES()
    touched: list[tuple[nn.Module, str]] = []
    try:
        for m in model.modules():
            if isinstance(m, HeadAttention):
                m.trace_surrogate = True
                touched.append((m, ""))
            elif type(m) in table:
                attr, fn = table[type(m)]
                object.__setattr__(m, attr, (lambda mod, f: lambda *a, **k: f(mod, *a, **k))(m, fn))
                touched.append((m, attr))
        yield
    finally:
        for m, attr in touched:
            if isinstance(m, HeadAttention):
                m.trace_surrogate = False
            else:
                m.__dict__.pop(attr, None)


# ------------------------------------------------------------------------------------ shuffles


def channel_shuffles(dg: tp.DependencyGraph) -> set[Any]:
    """Nodes of ShuffleNet-style channel shuffles (view to 5-D, transpose(1, 2), view back to 4-D).

    The two views are made plain pass-throughs for torch-pruning's index mapping (its reshape rule
    misreads them and divides by zero); the transposes are returned so the groups they touch can
    be kept whole: a shuffle couples channels of different groups, which a group cannot express.
    """
    found: set[Any] = set()
    for node in list(dg.module2node.values()):
        if node.type != tp.ops.OPTYPE.RESHAPE or _saved_rank(node) != 5:
            continue
        chain, cur = [node], node
        while len(cur.inputs) == 1 and cur.inputs[0].type == tp.ops.OPTYPE.ELEMENTWISE:
            cur = cur.inputs[0]
            chain.append(cur)
            if _is_transpose_12(cur):
                break
        if not _is_transpose_12(cur) or len(cur.inputs) != 1 or cur.inputs[0].type != tp.ops.OPTYPE.RESHAPE:
            continue
        first = cur.inputs[0]
        if _saved_rank(first) != 4:
            continue
        node.type = first.type = tp.ops.OPTYPE.ELEMENTWISE
        found.update(chain)
        found.add(first)
    return found


def fix_splits(dg: tp.DependencyGraph) -> None:
    """Give channel splits (`torch.chunk` / `split` on dim 1) their real sizes and output order.

    torch-pruning infers chunk sizes by walking the graph (on ShuffleNet it walks into the next
    block and gets them wrong) and assumes the consumers of a split are listed in output order;
    autograd records both exactly (`_saved_split_size`, each consumer's `output_nr`).
    """
    for node in dg.module2node.values():
        fn = node.grad_fn
        if node.type != tp.ops.OPTYPE.SPLIT or fn is None or getattr(fn, "_saved_dim", None) != 1:
            continue
        sizes = getattr(fn, "_saved_self_sym_sizes", None)
        if sizes is None or len(sizes) < 2:
            continue
        total = int(sizes[1])
        if hasattr(fn, "_saved_split_sizes"):
            chs = [int(c) for c in fn._saved_split_sizes]
        elif hasattr(fn, "_saved_split_size"):
            size = int(fn._saved_split_size)
            chs = [min(size, total - s) for s in range(0, total, size)]
        else:
            continue
        order = []
        for out in node.outputs:
            nrs = {nr for f, nr in (out.grad_fn.next_functions if out.grad_fn is not None else ()) if f is fn}
            order.append(nrs.pop() if len(nrs) == 1 else None)
        if None in order or sorted(order) != list(range(len(chs))):
            continue  # a consumer of several outputs, or an unused output: leave it to torch-pruning
        node.outputs = [out for _, out in sorted(zip(order, node.outputs, strict=True), key=lambda t: t[0])]
        node.module.split_sizes = chs
        node.module.offsets = [sum(chs[:i]) for i in range(len(chs) + 1)]


def _saved_rank(node: Any) -> int:
    sizes = getattr(node.grad_fn, "_saved_self_sym_sizes", None) or getattr(node.grad_fn, "_saved_self_sizes", None)
    return len(sizes) if sizes is not None else -1


def _is_transpose_12(node: Any) -> bool:
    fn = node.grad_fn
    return (
        fn is not None
        and "Transpose" in fn.name()
        and {getattr(fn, "_saved_dim0", None), getattr(fn, "_saved_dim1", None)} == {1, 2}
    )


# ------------------------------------------------------------------------------------ units


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def unit_key(module: nn.Module, is_out: bool, heads: dict[nn.Module, HeadAttention]) -> Callable[[int], int] | None:
    """For a layer of a group: channel index -> key; channels with equal keys are removed together.

    None where the layer puts no constraint on which channels go.
    """
    if module in heads:
        attn = heads[module]
        if (is_out and module is not attn.proj) or (not is_out and module is attn.proj):
            return lambda i, d=attn.head_dim: i // d  # whole heads
        return None
    if isinstance(module, nn.Conv2d) and module.groups > 1:
        depthwise = module.groups == module.in_channels == module.out_channels
        if depthwise:
            return None
        per_group = (module.out_channels if is_out else module.in_channels) // module.groups
        return lambda i, c=per_group: i % c  # the same position in every conv group
    if isinstance(module, nn.GroupNorm) and module.num_groups > 1:
        return lambda i, c=module.num_channels // module.num_groups: i % c
    return None


def channel_units(width: int, constrained: list[tuple[Callable[[int], int], list[int], list[int]]]) -> list[list[int]]:
    """Partition channels 0..width-1 into units: members of one unit must be removed together.

    `constrained`: per constrained layer, (key, its channel indices, their positions in the group).
    """
    uf = _UnionFind(width)
    for key, idxs, roots in constrained:
        first: dict[int, int] = {}
        for i, r in zip(idxs, roots, strict=True):
            k = key(int(i))
            if k in first:
                uf.union(first[k], int(r))
            else:
                first[k] = int(r)
    units: dict[int, list[int]] = {}
    for c in range(width):
        units.setdefault(uf.find(c), []).append(c)
    return sorted(units.values(), key=lambda u: u[0])


def head_linears(model: nn.Module) -> dict[nn.Module, HeadAttention]:
    """q/k/v/proj Linear -> the HeadAttention it belongs to."""
    out: dict[nn.Module, HeadAttention] = {}
    for attn in attention_blocks(model).values():
        for lin in (attn.q, attn.k, attn.v, attn.proj):
            out[lin] = attn
    return out


# ------------------------------------------------------------------------------------ fixups


def _fix_vit(m: nn.Module) -> None:
    m.hidden_dim = m.conv_proj.out_channels


def _fixup_table() -> dict[type, Callable[[nn.Module], None]]:
    from torchvision.models.vision_transformer import VisionTransformer

    return {VisionTransformer: _fix_vit}


FIXUPS = _fixup_table


def refresh_attributes(model: nn.Module) -> None:
    """Update attributes a forward reads instead of weight shapes, after channels were removed."""
    table = FIXUPS()
    for m in model.modules():
        fix = table.get(type(m))
        if fix is not None:
            fix(m)
