"""Fold and Unfold: sliding blocks of an image as columns and back (template:
conformance.families.window)."""

from conformance.families.window import window
from conformance.spec import declare

declare(window("Unfold", "unfold", 2, notes=(
    "im2col: out[n, c·Π k + κ, l] = x̃[n, c, l·s + κ·d], x̃ zero-padded (any padding >= 0); L = Π_d "
    "floor((H_d + 2p - d·(k-1) - 1)/s) + 1 blocks, row-major. A copy: compared bit for bit, the sign of zero "
    "included (padding taps are +0). The input gradient is Fold of the cotangent (sums of at most K taps: "
    "bit-exact in the exact tier). Unbatched (C, H, W) inputs and an empty batch are accepted, as torch does "
    "(the documentation names 4-D inputs only).")))
declare(window("Fold", "fold", 2, notes=(
    "col2im, the adjoint of Unfold: y[n, c, i] = Σ over the (block, tap) pairs reading i; overlapping blocks "
    "sum (from +0, taps in row-major order), taps in the padding are dropped, positions no block reads are 0. "
    "Sums exact on integers (exact tier, bit for bit); the input gradient is Unfold of the cotangent, a copy "
    "(bit for bit, the sign of zero included). Input (N, C·Π k, L) or unbatched (C·Π k, L); L must equal the "
    "number of blocks of output_size.")))
