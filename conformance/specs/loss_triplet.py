"""Triplet losses: TripletMarginLoss, TripletMarginWithDistanceLoss (template ``families.loss``)."""

from conformance.families.loss import reduction_loss
from conformance.numerics import loss as N
from conformance.numerics import loss_modes as NM
from conformance.spec import Regime, declare
from conformance.strategies import loss_triplet as T

declare(reduction_loss(
    "TripletMarginLoss", "triplet_margin_loss", cases=T.triplet_cases("TripletMarginLoss"),
    invalid=T.invalid_triplet_cases("TripletMarginLoss"), args=T.NAMES, errors=N.triplet_errors,
    length=N.triplet_length, smooth_at=T.smooth_triplet,
    second_order_error=NM.triplet_second_order_error,
    regimes=(Regime("swap", lambda case: bool(case.params["swap"]), {"swap": True},
                    "d(a, n) replaced by min(d(a, n), d(p, n))."),
             Regime("swap ties", T.swap_tie, {"swap": True, "values": "swap ties", "eps": 0.0},
                    "d(p, n) = d(a, n): torch.minimum splits the gradient equally (any split is accepted)."),
             Regime("at the kink", T.at_the_kink, {"swap": False, "values": "at the kink", "eps": 0.0, "p": 1.0},
                    "z = 0 exactly: clamp_min passes the gradient there."),
             Regime("unbatched (D)", lambda case: case.inputs["anchor"].ndim == 1, {"unbatched (D)": True}),
             Regime("p = 1", lambda case: case.params["p"] == 1, {"p": 1.0}),
             Regime("fractional p", lambda case: case.params["p"] != round(case.params["p"]), {"p": 1.5}),
             Regime("eps = 0", lambda case: case.params["eps"] == 0, {"eps": 0.0})),
    notes="ℓ = max(margin + d(a, p) - d(a, n), 0) per triplet, d = torch's pairwise distance ‖x1 - x2 + eps‖_p over "
          "the last dim (eps inside the norm, as PairwiseDistance); with swap, d(a, n) becomes min(d(a, n), "
          "d(p, n)). Inputs (N, D) or (D), one rank (else RuntimeError); margin > 0 (else ValueError); reduction and "
          "the deprecated size_average/reduce. clamp_min passes the gradient at z = 0; the norm's gradient follows "
          "torch's norm_backward (0 where an entry of the difference is 0); at a swap tie the gradient may go to "
          "either distance or be split (torch splits it equally).",
))

declare(reduction_loss(
    "TripletMarginWithDistanceLoss", "triplet_margin_with_distance_loss",
    cases=T.triplet_cases("TripletMarginWithDistanceLoss"),
    invalid=T.invalid_triplet_cases("TripletMarginWithDistanceLoss"),
    args=T.NAMES, errors=N.triplet_errors, length=N.triplet_length, legacy=False, smooth_at=T.smooth_triplet,
    second_order_error=NM.triplet_second_order_error,
    kwargs=T.with_distance_kwargs,
    regimes=(Regime("PairwiseDistance module", lambda case: "module" in (case.params["distance_function"] or {}),
                    {"distance": "PairwiseDistance"}, "distance_function=torch.nn.PairwiseDistance(p, eps)."),
             Regime("plain callable", lambda case: "call" in (case.params["distance_function"] or {}),
                    {"distance": "callable"},
                    "distance_function=functools.partial(torch.nn.functional.pairwise_distance, p=p, eps=eps)."),
             Regime("swap", lambda case: bool(case.params["swap"]), {"swap": True}),
             Regime("swap ties", T.swap_tie,
                    {"swap": True, "values": "swap ties", "distance": "PairwiseDistance", "eps": 0.0},
                    "d(p, n) = d(a, n): torch.minimum splits the gradient equally (any split is accepted)."),
             Regime("at the kink", T.at_the_kink,
                    {"swap": False, "values": "at the kink", "distance": "PairwiseDistance", "eps": 0.0, "p": 2.0},
                    "z = 0 exactly: clamp_min passes the gradient there."),
             Regime("unbatched (D)", lambda case: case.inputs["anchor"].ndim == 1, {"unbatched (D)": True})),
    notes="ℓ = max(margin + d(a, p) - d(a, n), 0) per triplet with distance_function d: the default (None: "
          "torch.pairwise_distance, p = 2, eps = 1e-6), a torch.nn.PairwiseDistance(p, eps) module, or a plain "
          "callable (functools.partial of torch.nn.functional.pairwise_distance); swap as in TripletMarginLoss. "
          "reduction 'none', 'mean', 'sum' (no deprecated flags); margin > 0; inputs of one rank. Gradient "
          "conventions as in TripletMarginLoss.",
))
