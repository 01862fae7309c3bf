"""Normalisation layers, declared through the family templates (conformance/families/normalization.py)."""

from conformance.families.normalization import local_response, normalisation
from conformance.spec import declare

declare(normalisation("BatchNorm1d", "batch", dims=1, notes="Input (N, C) or (N, C, L)."))
declare(normalisation("BatchNorm2d", "batch", dims=2, notes="Input (N, C, H, W)."))
declare(normalisation("BatchNorm3d", "batch", dims=3, notes="Input (N, C, D, H, W)."))
declare(normalisation("InstanceNorm1d", "instance", dims=1, notes="Input (N, C, L) or (C, L)."))
declare(normalisation("InstanceNorm2d", "instance", dims=2, notes="Input (N, C, H, W) or (C, H, W)."))
declare(normalisation("InstanceNorm3d", "instance", dims=3, notes="Input (N, C, D, H, W) or (C, D, H, W)."))
declare(normalisation("GroupNorm", "group"))
declare(normalisation("LayerNorm", "layer"))
declare(normalisation("RMSNorm", "rms"))
declare(local_response(
    "LocalResponseNorm", "torch.nn.LocalResponseNorm", "local_response_norm", ranks=(3, 4, 5),
    notes="b_c = a_c·(k + α/n·Σ a_c'²)^-β over channels c' in [c - ⌊n/2⌋, c + ⌊(n - 1)/2⌋] (torch's window, which "
          "for even n reaches one channel further back; for odd n the documented centred window), zeros beyond the "
          "channels counted in the average. k = 0 with an all-zero window gives 0/0 = NaN; β = 0 gives y = x. Where a "
          "non-finite input reaches a gradient element, NaN is accepted there (0·inf in the chain rule). torch "
          "discrepancies: 5-d inputs whose trailing dims cannot be viewed together raise (lrn-5d-view-raises); the "
          "composite computes in the input dtype and over/underflows in its intermediates "
          "(lrn-composite-out-of-range-*); float16 and bfloat16 inputs of rank 4 and 5 are not implemented on the CPU "
          "(avg_pool3d: unsupported)."))
declare(local_response(
    "CrossMapLRN2d", "torch.nn.CrossMapLRN2d", "cross_map_lrn2d", ranks=(4,),
    notes="(N, C, H, W) only. PyTorch documents no formula for CrossMapLRN2d: the reference is LocalResponseNorm's "
          "(its NaN gradient at non-finite inputs accepted likewise) "
          "(for odd sizes also the centred window of Torch7's SpatialCrossMapLRN, from which the module is ported; "
          "for even sizes Torch7 summed size - 1 channels, which only torch's defective loop shows). torch "
          "discrepancies: the forward's running window sum never removes channel 0 (crossmaplrn2d-forward-window-*), "
          "the hand-written backward is off by one channel (crossmaplrn2d-backward-window-*) and cannot run for size "
          "1 (crossmaplrn2d-backward-size-1-raises); intermediates over/underflow (crossmaplrn2d-out-of-range-*)."))
