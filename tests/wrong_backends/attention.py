"""Deliberately wrong adapters for the attention, transformer, Bilinear and CosineSimilarity
declarations: each reproduces one realistic implementer's mistake on top of torch.

Attention (scaled_dot_product_attention is replaced where the call tree invokes it; the kernel's
decorator is bypassed):
- ``SdpaSoftmaxOverQueries``: the softmax normalises over the query axis instead of the keys.
- ``SdpaCausalBottomRight``: the causal mask aligned at the bottom-right when L != S (torch's is
  the top-left triangle).
- ``SdpaGqaTiledHeads``: grouped-query attention repeating the key/value heads as a tile
  (head j serves query heads j, j + Hk, ...) instead of repeat_interleave.
- ``SdpaScaleIgnored``: the scale argument ignored (always 1/sqrt(E)).
- ``SdpaDropoutNotRescaled``: dropout that zeroes weights but forgets the 1/(1 − p) (same masks).
- ``MhaKeyPaddingOverQueries``: MultiheadAttention applying key_padding_mask to the queries.

Transformers (the module replaced by a Python subclass with the mistake; forward only, so the
fast-path declarations catch it quickly):
- ``EncoderResidualAfterNorm``: with norm_first, x = norm1(x) + SA(norm1(x)) (the residual taken
  after the norm).
- ``EncoderFeedForwardWithoutActivation``: the feed-forward block skips the activation.
- ``DecoderIgnoresMemoryPadding``: the cross-attention drops memory_key_padding_mask.

Bilinear and CosineSimilarity:
- ``BilinearWeightTransposed``: the weight read as (out, in2, in1).
- ``CosineClampsProduct``: max(‖x1‖·‖x2‖, eps), the older convention, instead of each norm.
- ``CosineEpsAddedToNorms``: x1·x2 / (‖x1‖·‖x2‖ + eps), the textbook "add eps" reading.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F

from backends.torch_backend import TorchBackend
from tests.wrong_backends.generic import ReplacesModule


def _sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False, *,
          softmax_dim=-1, causal="top-left", tile_heads=False, ignore_scale=False, rescale=True):
    """scaled_dot_product_attention in plain torch ops, with switchable mistakes."""
    L, S = q.shape[-2], k.shape[-2]
    if enable_gqa and q.shape[-3] != k.shape[-3]:
        g = q.shape[-3] // k.shape[-3]
        rep = [1] * (k.dim() - 3) + [g, 1, 1]
        k, v = (k.repeat(*rep), v.repeat(*rep)) if tile_heads else (k.repeat_interleave(g, -3),
                                                                  v.repeat_interleave(g, -3))
    s = 1 / math.sqrt(q.shape[-1]) if scale is None or ignore_scale else scale
    z = (q @ k.transpose(-1, -2)) * s
    if is_causal:
        i, j = torch.arange(L)[:, None], torch.arange(S)[None, :]
        allowed = j <= i if causal == "top-left" else j - S <= i - L
        z = z.masked_fill(~allowed, float("-inf"))
    if attn_mask is not None:
        z = z.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else z + attn_mask
    dead = torch.isneginf(z).all(dim=-1, keepdim=True)
    p = torch.softmax(z.masked_fill(dead, 0.0), dim=softmax_dim).masked_fill(dead, 0.0)
    if dropout_p > 0:
        keep = torch.empty(p.shape, dtype=torch.float32).bernoulli_(1 - dropout_p).to(p.dtype)
        p = p * keep / (1 - dropout_p) if rescale else p * keep
    return p @ v


class _ReplacesSdpa(TorchBackend):
    """The torch adapter with scaled_dot_product_attention replaced by ``_sdpa`` with ``mistake``."""

    mistake: dict = {}

    def call_target(self, case, fn, args, kwargs):
        if case.op == "scaled_dot_product_attention" and fn is operator.call and len(args) == 4:
            return _sdpa(*args[1:], **kwargs, **self.mistake)
        return super().call_target(case, fn, args, kwargs)


class SdpaSoftmaxOverQueries(_ReplacesSdpa):
    name = "wrong-sdpa-softmax-over-queries"
    mistake = {"softmax_dim": -2}


class SdpaCausalBottomRight(_ReplacesSdpa):
    name = "wrong-sdpa-causal-bottom-right"
    mistake = {"causal": "bottom-right"}


class SdpaGqaTiledHeads(_ReplacesSdpa):
    name = "wrong-sdpa-gqa-tiled-heads"
    mistake = {"tile_heads": True}


class SdpaScaleIgnored(_ReplacesSdpa):
    name = "wrong-sdpa-scale-ignored"
    mistake = {"ignore_scale": True}


class SdpaDropoutNotRescaled(_ReplacesSdpa):
    name = "wrong-sdpa-dropout-not-rescaled"
    mistake = {"rescale": False}


class _PaddingOverQueries(torch.nn.MultiheadAttention):
    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if key_padding_mask is not None and attn_mask is None and query.dim() == 3 and query.shape == key.shape:
            n, L = key_padding_mask.shape
            over_queries = key_padding_mask[:, :, None].expand(n, L, L)  # wrong: masks rows, not columns
            if key_padding_mask.dtype != torch.bool:
                over_queries = over_queries.to(query.dtype)
            attn_mask = over_queries.repeat_interleave(self.num_heads, dim=0)
            key_padding_mask = None
        return super().forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                               attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal)


class MhaKeyPaddingOverQueries(ReplacesModule):
    name = "wrong-mha-key-padding-over-queries"
    op, module = "MultiheadAttention", _PaddingOverQueries


class _ResidualAfterNorm(torch.nn.TransformerEncoderLayer):
    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        if not self.norm_first:
            return super().forward(src, src_mask, src_key_padding_mask, is_causal)
        x = self.norm1(src)
        x = x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal=is_causal)  # wrong: residual of norm1(x)
        return x + self._ff_block(self.norm2(x))


class EncoderResidualAfterNorm(ReplacesModule):
    name = "wrong-encoder-residual-after-norm"
    op, module = "TransformerEncoderLayer", _ResidualAfterNorm


class _NoActivation(torch.nn.TransformerEncoderLayer):
    def _ff_block(self, x):
        return self.dropout2(self.linear2(self.dropout(self.linear1(x))))  # wrong: no activation

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal=is_causal)
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal=is_causal))
        return self.norm2(x + self._ff_block(x))


class EncoderFeedForwardWithoutActivation(ReplacesModule):
    name = "wrong-encoder-no-activation"
    op, module = "TransformerEncoderLayer", _NoActivation


class _NoMemoryPadding(torch.nn.TransformerDecoderLayer):
    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False):
        return super().forward(tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask, None,  # wrong: dropped
                               tgt_is_causal, memory_is_causal)


class DecoderIgnoresMemoryPadding(ReplacesModule):
    name = "wrong-decoder-ignores-memory-padding"
    op, module = "TransformerDecoderLayer", _NoMemoryPadding


class _TransposedBilinear(torch.nn.Bilinear):
    def forward(self, input1, input2):
        w = self.weight.transpose(1, 2) if self.weight.shape[1] == self.weight.shape[2] else self.weight
        return F.bilinear(input1, input2, w, self.bias)  # wrong: A[o, j, i] for a square weight


class BilinearWeightTransposed(ReplacesModule):
    name = "wrong-bilinear-weight-transposed"
    op, module = "Bilinear", _TransposedBilinear


class _ProductClamp(torch.nn.CosineSimilarity):
    def forward(self, x1, x2):
        dot = (x1 * x2).sum(self.dim)
        n1, n2 = torch.linalg.vector_norm(x1, dim=self.dim), torch.linalg.vector_norm(x2, dim=self.dim)
        return dot / torch.clamp_min(n1 * n2, self.eps)  # wrong: one clamp of the product


class CosineClampsProduct(ReplacesModule):
    name = "wrong-cosine-clamps-product"
    op, module = "CosineSimilarity", _ProductClamp


class _EpsAdded(torch.nn.CosineSimilarity):
    def forward(self, x1, x2):
        dot = (x1 * x2).sum(self.dim)
        n1, n2 = torch.linalg.vector_norm(x1, dim=self.dim), torch.linalg.vector_norm(x2, dim=self.dim)
        return dot / (n1 * n2 + self.eps)  # wrong: eps added, not a lower bound


class CosineEpsAddedToNorms(ReplacesModule):
    name = "wrong-cosine-eps-added"
    op, module = "CosineSimilarity", _EpsAdded
