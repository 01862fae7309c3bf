"""torch.nn.utils.parametrizations and fusion (templates: conformance/families/init.py)."""

from dataclasses import replace

from conformance.families.init import fusion, parametrized
from conformance.numerics import parametrizations as NP
from conformance.numerics import parametrizations as num
from conformance.spec import Regime, declare
from conformance.strategies import init as strat
from reference import fusion as RFU

declare(parametrized(
    "weight_norm", num.WEIGHT_NORM, lambda d, w, dtype, base: strat.weight_norm_draw(d, w, dtype),
    bases=("Linear", "Conv1d", "Conv2d"), params=("dim",), invalid={"dim out of range": {"dim": lambda c: 5}},
    regimes=(Regime("dim 0 (per output)", lambda c: c.params["dim"] == 0 and c.inputs["input"].shape[-1] > 1,
                    {"module": "Linear", "dim": 0, "in_features": 3, "out_features": 4}),
             Regime("dim None (whole tensor)", lambda c: c.params["dim"] is None, {"dim": None}),
             Regime("dim 1", lambda c: c.params["dim"] == 1, {"dim": 1}),
             Regime("dim -1 (the last dim)", lambda c: c.params["dim"] == -1, {"dim": -1}),
             Regime("convolution weight, last dim", lambda c: c.params["module"] == "Conv2d" and c.params["dim"] == 3,
                    {"module": "Conv2d", "dim": 3})),
    notes="W = g·v/‖v‖, the norm over every dim but dim (keeping dim; over everything for None); a negative dim counts "
          "from the end. original0 is g, original1 is v; the gradients of input, g, v and bias are compared."))

declare(replace(parametrized(
    "spectral_norm", num.SPECTRAL_NORM,
    lambda d, w, dtype, base: strat.spectral_norm_draw(d, w, dtype, base.startswith("ConvTranspose")),
    bases=("Linear", "Conv1d", "ConvTranspose1d", "Conv2d"), params=("n_power_iterations", "eps", "dim"), train=True,
    invalid={"n_power_iterations = 0": {"n_power_iterations": 0}, "dim out of range": {"dim": lambda c: 5}},
    smooth_at=lambda c: not c.train,
    comparators={"grad.parametrizations.weight.original": num.spectral_grad_comparator},
    regimes=(Regime("eval mode", lambda c: not c.train, {"train": False}),
             Regime("ConvTranspose (default dim 1)", lambda c: c.params["module"].startswith("ConvTranspose")
                    and c.params["dim"] is None, {"module": "ConvTranspose1d", "dim": None}),
             Regime("many power iterations", lambda c: c.params["n_power_iterations"] >= 5 and c.train,
                    {"n_power_iterations": 15, "train": True}),
             Regime("large eps", lambda c: c.params["eps"] > 1e-3 and c.train,
                    {"eps": "half the weight's norm", "train": True})),
    notes="Training mode runs n_power_iterations of u ← normalize(W v), v ← normalize(Wᵀ u) (dividing by "
          "max(‖·‖, eps)) on the u, v buffers (compared after the call); W/σ with σ = uᵀ W v; the gradient holds u "
          "and v constant (torch computes them without grad). Evaluation mode uses u, v as they are. dim None: 1 for "
          "ConvTranspose, else 0."), second_order_error=NP.spectral_norm_second_order_error))

declare(parametrized(
    "orthogonal", num.ORTHOGONAL, lambda d, w, dtype, base: strat.orthogonal_draw(d, w, dtype),
    bases=("Linear", "Conv1d"), params=("orthogonal_map", "use_trivialization"),
    invalid={"unknown orthogonal_map": {"orthogonal_map": "qr"}},
    smooth_at=num.orthogonal_smooth,
    regimes=(Regime("cayley", lambda c: c.params["orthogonal_map"] == "cayley", {"orthogonal_map": "cayley"}),
             Regime("householder", lambda c: c.params["orthogonal_map"] == "householder",
                    {"orthogonal_map": "householder"}),
             Regime("matrix_exp", lambda c: c.params["orthogonal_map"] == "matrix_exp",
                    {"orthogonal_map": "matrix_exp"}),
             Regime("small skew part", lambda c: c.params["orthogonal_map"] == "matrix_exp"
                    and float(abs(c.inputs["parametrizations.weight.original"]).max()) < 0.1,
                    {"orthogonal_map": "matrix_exp", "original.scale": 0.01, "module": "Linear"},
                    "‖A‖₁ of a few hundredths: matrix_exp's Taylor degree 8 in float64"),
             Regime("without trivialization", lambda c: not c.params["use_trivialization"],
                    {"use_trivialization": False}),
             Regime("batch of matrices (convolution weight)", lambda c: c.params["module"] == "Conv1d",
                    {"module": "Conv1d"})),
    notes="Q from the original X: matrix_exp / cayley of the skew part of [tril(X), 0], or the product of Householder "
          "reflectors of tril(X, -1) with diag(X) (±1) as column signs; times base (use_trivialization, a buffer). "
          "Wide weights are handled transposed; a weight of more than 2 dims is a batch of matrices."))

declare(fusion(
    RFU.fuse_conv_bn_weights, RFU.fusion_errors,
    bases=("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"),
    invalid=("training mode", "no running statistics"),
    regimes=(Regime("conv without bias", lambda c: "0.bias" not in c.inputs, {"bias=False": True}),
             Regime("bn without affine", lambda c: not c.params["bn"]["affine"], {"affine": False}),
             Regime("transposed", lambda c: c.params["transpose"], {"module": "ConvTranspose2d"}),
             Regime("grouped", lambda c: c.params["module_params"]["groups"] > 1,
                    {"module": "Conv2d", "channel regime": "small", "groups": 2})),
    notes="weight·s per output channel and (b - running_mean)·s + β, s = γ/√(running_var + eps); transpose is set "
          "for ConvTranspose (output channels in dim 1 of its weight, per group)."))
