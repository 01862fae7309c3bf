"""Flatten, Unflatten and ChannelShuffle (template: conformance.families.copies.reshaping)."""

from conformance.families.copies import reshaping
from conformance.spec import declare

declare(reshaping("Flatten", "flatten", notes=(
    "torch.flatten(input, start_dim, end_dim), defaults 1 and -1: dims start_dim..end_dim (inclusive, negative "
    "dims counted from the end) merged into one, row-major. A 0-d input flattens to (1,) with dims 0/-1; start_dim "
    "after end_dim and dims out of range raise (so do the defaults on a 0-d or 1-d input). A copy or a view: "
    "values bit for bit, the sign of zero included; the gradient is the cotangent reshaped back.")))
declare(reshaping("Unflatten", "unflatten", notes=(
    "input.unflatten(dim, unflattened_size): dim (negative counted from the end) split into the sizes, row-major; "
    "one size may be -1 (inferred; beside a 0 it is ambiguous and raises). unflattened_size as a tuple, a list or "
    "a torch.Size; an int raises TypeError, and so does a dim name (the named-tensor form is gone from torch 2.13). "
    "Sizes must multiply up to the dim's size; empty sizes and a 0-d input raise. Bit for bit, the sign of zero "
    "included; the gradient is the cotangent reshaped back.")))
declare(reshaping("ChannelShuffle", "channel_shuffle", notes=(
    "out[:, k·g + j] = in[:, j·(C/g) + k] for (N, C, *) inputs of 3+ dims: C = g·(C/g) channels viewed as (g, C/g), "
    "transposed. groups must be a positive int dividing C (torch raises otherwise; a float raises TypeError). Empty "
    "batch, channels and trailing dims are accepted. Bit for bit, the sign of zero included; the gradient is the "
    "inverse permutation of the cotangent.")))
