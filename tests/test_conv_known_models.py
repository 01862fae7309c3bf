"""The AMX bfloat16 convolution entry's model (conformance.numerics.conv_known): it explains what
oneDNN's AMX kernel computes in its hit geometry (a 1-wide output with a width stride >= 2: every
(batch, channel) plane's first element exact, the rest free) and nothing else, so a different
wrong value in the same case stays a failure (the masking audit's ×1.25 + 0.5)."""

from __future__ import annotations

import numpy as np

from backends.base import Case, Result
from conformance.known import load_known, modelled_tensors
from conformance.numerics.conv_known import amx_bf16_conv_hit
from conformance.spec import all_specs


def _repro() -> tuple[object, Case, Result]:
    """The entry's repro: conv2d of a 2 x 2 input with a 4 x 4 kernel, padding (3, 1), stride (1, 2):
    a 5 x 1 output."""
    spec = all_specs()["Conv2d"]
    x = np.array([3.0, 1.0, 0.0, -2.0]).reshape(1, 1, 2, 2)
    w = np.array([3, 1, 0, -2, -2, -4, -4, -4, -3, 3, 1, 4, 0, 1, 4, 2.0]).reshape(1, 1, 4, 4)
    case = Case(op="Conv2d", dtype="bfloat16", tier="exact", differentiable=("input", "weight"),
                params={"in_channels": 1, "out_channels": 1, "kernel_size": [4, 4], "stride": [1, 2],
                        "padding": [3, 1], "dilation": 1, "groups": 1, "bias": False, "padding_mode": "zeros"},
                inputs={"input": x, "weight": w})
    reference, _ = spec.run_reference(case)
    return spec, case, reference


def test_amx_model_explains_the_kernels_output_and_not_a_perturbation():
    spec, case, reference = _repro()
    assert amx_bf16_conv_hit(case)
    entry = next(e for e in load_known() if e.id == "onednn-amx-bf16-conv-wrong-sums")
    ref = np.asarray(reference.outputs["output"])
    assert ref.ravel().tolist() == [7.0, 2.0, -18.0, 11.0, 0.0]
    torch_amx = np.array([7.0, -18.0, 0.0, 11.0, 0.0]).reshape(ref.shape)  # what the AMX kernel returned
    for got, explained in ((torch_amx, True), (ref * 1.25 + 0.5, False)):
        modelled = modelled_tensors([entry], spec, case, reference, Result(outputs={"output": got}))
        assert ("output" in modelled[entry.id]) is explained
