"""Lazy modules: each wraps its eager declaration (conformance/families/lazy.py)."""

from conformance.families.lazy import indivisible_channels, lazy, wrong_rank
from conformance.spec import Regime, declare

declare(lazy(
    "LazyLinear", "Linear", "in_features", ranks=(1, 2, 3, 4), init="fan_in_uniform",
    invalid={"0-d input": wrong_rank(0)},
    regimes=(Regime("1-d input", lambda c: c.inputs["input"].ndim == 1, {"batch ndim": 0}),
             Regime("no bias", lambda c: not c.params["bias"], {"bias": False}),
             Regime("zero-size batch", lambda c: c.inputs["input"].size == 0,
                    {"batch ndim": 1, "zero-size batch dim": True})),
    notes="in_features is the input's last dim."))

for _nd in (1, 2, 3):
    for _kind in ("direct", "transposed"):
        declare(lazy(
            f"LazyConv{'Transpose' if _kind == 'transposed' else ''}{_nd}d",
            f"Conv{'Transpose' if _kind == 'transposed' else ''}{_nd}d", "in_channels", ranks=(_nd + 2, _nd + 1),
            init="fan_in_uniform", dims=_nd, kind=_kind,
            invalid={"input of the wrong rank": wrong_rank(_nd + 3, _nd), "groups do not divide": indivisible_channels},
            regimes=(Regime("unbatched", lambda c: c.inputs["input"].ndim == c.inputs["weight"].ndim - 1,
                            {"unbatched": True}),
                     Regime("groups > 1", lambda c: c.params["groups"] > 1,
                            {"channel regime": "small", "groups": 3, "unbatched": False}),
                     Regime("no bias", lambda c: not c.params["bias"], {"bias=False": True})),
            notes="in_channels is dim 1 of a batched input, dim 0 of an unbatched one; groups must divide it."))

for _nd in (1, 2, 3):
    declare(lazy(
        f"LazyBatchNorm{_nd}d", f"BatchNorm{_nd}d", "num_features", ranks=(2, 3) if _nd == 1 else (_nd + 2,),
        init="ones_zeros", dims=_nd, kind="batch",
        invalid={"input of the wrong rank": wrong_rank(*((1, 4) if _nd == 1 else (_nd + 1, _nd + 3)))},
        regimes=(Regime("no affine", lambda c: not c.params["affine"], {"affine": False}),
                 Regime("eval with running stats", lambda c: not c.train and c.params["track_running_stats"],
                        {"train": False, "track_running_stats": True}),
                 Regime("no running stats", lambda c: not c.params["track_running_stats"],
                        {"track_running_stats": False})),
        notes="num_features is dim 1; weight materialises as 1 and bias as 0."))

for _nd in (1, 2, 3):
    declare(lazy(
        f"LazyInstanceNorm{_nd}d", f"InstanceNorm{_nd}d", "num_features", ranks=(_nd + 2, _nd + 1),
        init="ones_zeros", dims=_nd, kind="instance", invalid={"input of the wrong rank": wrong_rank(_nd, _nd + 3)},
        regimes=(Regime("affine", lambda c: c.params["affine"], {"affine": True}),
                 Regime("unbatched", lambda c, nd=_nd: c.inputs["input"].ndim == nd + 1, {"batched": False})),
        notes="num_features is the channel dim (dim 1; dim 0 of an unbatched input)."))
