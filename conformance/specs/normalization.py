"""Normalisation layers, declared through the family templates (conformance/families/normalization.py)."""

from conformance.families.normalization import local_response, normalisation
from conformance.spec import declare

_BN = ("Normalises with the biased batch variance; running_var takes the unbiased one. momentum=None is "
       "the cumulative average (factor 1/num_batches_tracked). Eval mode with running stats uses them; "
       "without running stats both modes use batch statistics. num_batches_tracked is compared exactly.")
_DEGENERATE = (" torch discrepancy (CPU backward): an input that is channels_last(_3d)-contiguous only through a "
               "size-1 N or spatial dim with a contiguous grad_output gets wrong gradients "
               "(batchnorm-cpu-backward-degenerate-channels-last).")
_IN = ("Statistics of each sample's channel over its spatial axes (biased variance); affine parameters per channel "
       "(bias=False keeps only the weight). With track_running_stats the running statistics are updated in training "
       "with the mean over N of the per-instance mean and unbiased variance and used in eval; num_batches_tracked is "
       "never counted. momentum None (undocumented for InstanceNorm) is passed to F.instance_norm as 0.0: the running "
       "statistics stay unchanged. An unbatched (C, *spatial) input is one sample. Without affine parameters or running "
       "statistics num_features is not used (torch only warns on a mismatch).")

declare(normalisation("BatchNorm1d", "batch", dims=1, notes="Input (N, C) or (N, C, L). " + _BN))
declare(normalisation("BatchNorm2d", "batch", dims=2, notes="Input (N, C, H, W). " + _BN + _DEGENERATE))
declare(normalisation("BatchNorm3d", "batch", dims=3, notes="Input (N, C, D, H, W). " + _BN + _DEGENERATE))
declare(normalisation("InstanceNorm1d", "instance", dims=1, notes="Input (N, C, L) or (C, L). " + _IN))
declare(normalisation("InstanceNorm2d", "instance", dims=2, notes="Input (N, C, H, W) or (C, H, W). " + _IN))
declare(normalisation("InstanceNorm3d", "instance", dims=3, notes="Input (N, C, D, H, W) or (C, D, H, W). " + _IN))
declare(normalisation(
    "GroupNorm", "group",
    notes="Input (N, C, *) of rank 2 to 5; the C channels fall into num_groups consecutive groups and each sample's "
          "group is standardised over its channels and spatial axes (biased variance); weight and bias per channel "
          "(bias=False: weight only). torch rejects N·(C/G)·prod(spatial) = 1, so a single-element group (v = 0, "
          "y = bias) needs N >= 2. Without affine, num_channels is not checked against the input. torch discrepancy: "
          "the CPU channels-last kernel computes the variance in one pass (groupnorm-cpu-channels-last-one-pass-"
          "variance)."))
declare(normalisation(
    "LayerNorm", "layer",
    notes="Statistics over the trailing normalized_shape dims of each sample (biased variance, eps inside the square "
          "root); normalized_shape an int, a tuple or a list, from one to all dims (an unbatched input normalised "
          "whole); weight and bias of normalized_shape (elementwise_affine; bias=False keeps the weight). An empty "
          "batch gives an empty output and zero parameter gradients."))
declare(normalisation(
    "RMSNorm", "rms",
    notes="y = x/√(mean(x²) + eps)·weight over the trailing normalized_shape dims; eps None is torch.finfo(x.dtype).eps "
          "(documented; the reference gets it from the case dtype: 2^-52, 2^-23, 2^-10, 2^-7). An all-zero row gives 0. "
          "torch discrepancy: float16/bfloat16 use float32's eps for None (rmsnorm-cpu-eps-none-float32-eps)."))
declare(local_response(
    "LocalResponseNorm", "torch.nn.LocalResponseNorm", "local_response_norm", ranks=(3, 4, 5),
    notes="b_c = a_c·(k + α/n·Σ a_c'²)^-β over channels c' in [c - ⌊n/2⌋, c + ⌊(n - 1)/2⌋] (torch's window, which "
          "for even n reaches one channel further back; for odd n the documented centred window), zeros beyond the "
          "channels counted in the average. k = 0 with an all-zero window gives 0/0 = NaN. torch discrepancies: 5-d "
          "inputs whose trailing dims cannot be viewed together raise (lrn-5d-view); float16 and bfloat16 inputs "
          "of rank 4 and 5 are not implemented on the CPU (avg_pool3d)."))
declare(local_response(
    "CrossMapLRN2d", "torch.nn.CrossMapLRN2d", "cross_map_lrn2d", ranks=(4,),
    notes="(N, C, H, W) only. PyTorch documents no formula for CrossMapLRN2d: the reference is LocalResponseNorm's "
          "(for odd sizes also the centred window of Torch7's SpatialCrossMapLRN, from which the module is ported). "
          "torch discrepancies: the forward's running window sum never removes channel 0 (crossmaplrn2d-forward-"
          "channel-zero), and the hand-written backward is off by one channel (crossmaplrn2d-backward-window)."))
