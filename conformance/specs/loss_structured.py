"""Structured losses: CTCLoss, AdaptiveLogSoftmaxWithLoss (forward, log_prob, predict), LinearCrossEntropyLoss."""

from conformance.families.loss import reduction_loss
from conformance.families.loss_structured import lce_ctor, projection_loss
from conformance.numerics import loss_structured as N
from conformance.spec import Regime, declare
from conformance.strategies import loss_structured as SL

declare(reduction_loss(
    "CTCLoss", "ctc_loss", cases=SL.ctc_cases, invalid=SL.invalid_ctc_cases, args=SL.CTC_ARGS, legacy=False,
    errors=N.ctc_errors, length=N.ctc_length, comparators={"grad.log_probs": N.ctc_gradient_comparator},
    regimes=(Regime("repeated labels", SL.ctc_has_repeats, SL.CTC_PINS["repeats"],
                    "Consecutive equal labels: an alignment needs a blank between them (no skip transition)."),
             Regime("impossible alignment", SL.ctc_impossible, SL.CTC_PINS["impossible"],
                    "An input shorter than its target plus its repeats: loss +inf, gradient NaN (zero_infinity: 0)."),
             Regime("impossible alignment, zero_infinity", SL.ctc_impossible,
                    {**SL.CTC_PINS["impossible"], "zero_infinity": True}, "The infinite loss and its gradient zeroed."),
             Regime("empty target", SL.ctc_empty_target, SL.CTC_PINS["empty target"],
                    "target_lengths 0: the all-blank path; 'mean' divides by max(0, 1)."),
             Regime("input length 0", SL.ctc_input_length(0), SL.CTC_PINS["input 0"],
                    "T_n = 0: loss 0 for an empty target, +inf otherwise; no gradient."),
             Regime("input length 1", SL.ctc_input_length(1), SL.CTC_PINS["input 1"]),
             Regime("target fills the padded width", SL.ctc_full_width, SL.CTC_PINS["full width"]),
             Regime("concatenated targets", SL.ctc_concatenated, SL.CTC_PINS["concatenated"]),
             Regime("unbatched input", SL.ctc_unbatched, SL.CTC_PINS["unbatched"]),
             Regime("lengths as Python lists", SL.ctc_lists, SL.CTC_PINS["lists"]),
             Regime("long input", SL.ctc_long, SL.CTC_PINS["long"],
                    "T = 32..96: the log-space recursion's rounding errors grow with T (the analysed bound too)."),
             Regime("-inf log-probabilities", SL.ctc_has(float("-inf")), SL.CTC_PINS["-inf"],
                    "Probability-0 entries; paths through them vanish (possibly every path)."),
             Regime("NaN log-probability", SL.ctc_has(float("nan")), SL.CTC_PINS["NaN"],
                    "A NaN on a visited state makes the loss NaN; elsewhere only its own gradient element."),
             Regime("blank is the last class", SL.ctc_blank_not_zero, SL.CTC_PINS["blank"]),
             Regime("unnormalised log_probs", SL.ctc_unnormalised, SL.CTC_PINS["unnormalised"],
                    "The two gradient forms differ by ĝ·exp(log_probs): both are accepted."),
             Regime("empty log_probs", SL.ctc_empty, SL.CTC_PINS["empty"],
                    "No sample or T = 0: torch rejects an empty log_probs (known).")),
    notes="nll_n = -log Σ over the alignments of length input_lengths[n] that collapse (merge repeats, drop blanks) "
          "to targets[n, :target_lengths[n]]; 'none' gives (N) (() unbatched), 'sum' the sum, 'mean' the batch mean of "
          "nll_n / max(target_lengths[n], 1). zero_infinity replaces an infinite nll (impossible alignment) and its "
          "gradient by 0; without it the loss is +inf and the gradient NaN inside the input length. Targets padded "
          "(N, S) (entries past a length are ignored, any value) or concatenated 1-d (the only 1-d form, unbatched "
          "too); lengths as int64 tensors ((N) or ()) or Python lists. Gradient: torch returns the derivative of "
          "ctc_loss(log_softmax(x)) at x = log_probs with softmax(x) taken as exp(log_probs), i.e. ∂loss/∂log_probs "
          "+ ĝ_n·exp(log_probs) inside the input length (0 beyond); both that and ∂loss/∂log_probs (equal behind a "
          "log_softmax of normalised log_probs) are accepted, the whole tensor in one form. torch's CPU kernel has "
          "no float16/bfloat16 (unsupported). Documented but unchecked by torch: a target equal to blank or outside "
          "[0, C) (known).",
))

declare(projection_loss(
    "AdaptiveLogSoftmaxWithLoss", "adaptive_log_softmax_with_loss", call=N.adaptive_call, grads=N.adaptive_grads,
    cases=SL.adaptive_cases("forward"), invalid=SL.invalid_adaptive_cases("forward"),
    parameters=SL.adaptive_parameters, errors=N.adaptive_errors_of, length=N.adaptive_length,
    outputs=("output", "loss"),
    regimes=(Regime("empty projection (div_value large)", SL.adaptive_empty_projection,
                    SL.ADAPTIVE_PINS["empty projection"],
                    "in_features // div_value^(i+1) = 0: a cluster's scores are all 0 (uniform within the cluster)."),
             Regime("targets on cutoff boundaries", SL.adaptive_on_boundaries, SL.ADAPTIVE_PINS["boundaries"]),
             Regime("single-class clusters", SL.adaptive_single_class_cluster,
                    SL.ADAPTIVE_PINS["single-class cluster"]),
             Regime("unbatched input", SL.adaptive_unbatched, SL.ADAPTIVE_PINS["unbatched"]),
             Regime("empty batch", SL.adaptive_empty, SL.ADAPTIVE_PINS["empty"], "N = 0: output (0,), loss NaN.")),
    notes="output_n = log p(target_n | x_n): log_softmax(head)[target] in the shortlist, else "
          "log_softmax(head)[cluster entry] + log_softmax(cluster scores)[target - cutoff]; loss = mean(-output) "
          "(NaN for an empty batch). Cluster i projects through in_features // div_value^(i+1) features (a Python "
          "float floor division, 0 allowed). Every parameter (head weight and bias, each cluster's two weights) is "
          "differentiable; a cluster no target reaches gets zero gradients.",
))

declare(projection_loss(
    "AdaptiveLogSoftmaxWithLoss", "adaptive_log_prob", variant="log_prob", method="log_prob", call=N.adaptive_call,
    grads=N.adaptive_grads, cases=SL.adaptive_cases("log_prob"), invalid=SL.invalid_adaptive_cases("log_prob"),
    parameters=SL.adaptive_parameters, errors=N.adaptive_errors_of, length=N.adaptive_length,
    regimes=(Regime("empty projection (div_value large)", SL.adaptive_empty_projection,
                    SL.ADAPTIVE_PINS["empty projection"]),
             Regime("single-class clusters", SL.adaptive_single_class_cluster,
                    SL.ADAPTIVE_PINS["single-class cluster"]),
             Regime("empty batch", SL.adaptive_empty, SL.ADAPTIVE_PINS["empty"])),
    notes="module.log_prob(input): (N, n_classes) log-probabilities (each row's exp sums to 1), (N, in_features) "
          "input only (documented shape; an unbatched input raises).",
))

declare(projection_loss(
    "AdaptiveLogSoftmaxWithLoss", "adaptive_predict", variant="predict", method="predict", backward=False,
    call=N.adaptive_call, grads=N.adaptive_grads, cases=SL.adaptive_cases("predict"),
    invalid=SL.invalid_adaptive_cases("predict"), parameters=SL.adaptive_parameters,
    comparators={"output": N.predict_comparator},
    regimes=(Regime("tied head scores", SL.adaptive_tied, SL.ADAPTIVE_PINS["ties"],
                    "Two equal head rows: equal scores; ties go to the lowest class."),
             Regime("single-class clusters", SL.adaptive_single_class_cluster,
                    SL.ADAPTIVE_PINS["single-class cluster"]),
             Regime("empty batch", SL.adaptive_empty, SL.ADAPTIVE_PINS["empty"])),
    notes="module.predict(input): argmax_c log p(c | x), (N,) int64; torch takes the head's argmax first and "
          "evaluates the clusters only where it is a cluster entry (the same class). Near-ties within the error "
          "bounds of the log-probabilities may go to either class.",
))

declare(projection_loss(
    "LinearCrossEntropyLoss", "linear_cross_entropy", call=N.lce_call, grads=N.lce_grads, ctor=lce_ctor,
    buffers=lambda case: ("weight",) if "weight" in case.inputs else (),  # (_WeightedLoss's buffer)
    cases=SL.lce_cases, invalid=SL.invalid_lce_cases, parameters=SL.LCE_PARAMETERS, errors=N.lce_errors,
    length=N.lce_length,
    regimes=(Regime("all targets ignored", SL.lce_all_ignored, SL.LCE_PINS["all ignored"],
                    "'mean' is 0/0 = NaN and no gradient reaches the input or the linear layer."),
             Regime("all targets ignored, chunked", SL.lce_all_ignored, SL.LCE_PINS["all ignored, chunked"],
                    "The chunked path's 'mean' over no counted target."),
             Regime("probability targets", SL.lce_probabilities, SL.LCE_PINS["probabilities"]),
             Regime("K-dimensional loss", SL.lce_k_dimensional, SL.LCE_PINS["K-dimensional"]),
             Regime("chunked path, several chunks", SL.lce_chunked, SL.LCE_PINS["chunked"]),
             Regime("unbatched input", SL.lce_unbatched, SL.LCE_PINS["unbatched"]),
             Regime("empty batch", SL.lce_empty, SL.LCE_PINS["empty"]),
             Regime("weights with zeros/negatives", SL.lce_weights_not_positive, SL.LCE_PINS["weights"]),
             Regime("ignore_index inside the class range", SL.lce_ignore_is_a_class, SL.LCE_PINS["ignore a class"]),
             Regime("label_smoothing 1", SL.lce_full_smoothing, SL.LCE_PINS["full smoothing"])),
    notes="cross_entropy(linear(input) reshaped to (N, C, *out_features), target): the module stores the linear "
          "weight flat (C·Π out_features, in_features) and its bias (C·Π out_features). Class indices (ignore_index "
          "None means -100) or probabilities (ignore_index must stay None); weights, label smoothing in [0, 1] and "
          "'mean' as CrossEntropyLoss (all targets ignored: NaN, zero gradients). options=None is the reference path; "
          "a LinearCrossEntropyOptions selects the chunked evaluation of the same value (it falls back to the "
          "reference path for label smoothing, probabilities or out_features).",
))
