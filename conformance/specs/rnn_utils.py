"""torch.nn.utils.rnn: packing, padding and splitting variable-length sequences (copies, exact)."""

import numpy as np

from conformance.families import recurrent as F
from conformance.numerics import recurrent as NR
from conformance.spec import Regime, declare
from conformance.strategies import recurrent as SR

declare(F.sequence_utility(
    "pack_padded_sequence", cases=lambda dtype: SR.pack_case(dtype), reference=F.pack_padded_reference,
    args=F.pack_padded_args, kwargs=("batch_first", "enforce_sorted"), outputs=F.PACKED_OUTPUTS,
    compared=("data", "batch_sizes", "sorted_indices", "unsorted_indices", "grad.input"),
    ties=lambda c: c.inputs["lengths"], invalid=SR.kinds_of(SR.PACK_INVALID, SR.pack_case),
    regimes=(
        Regime("unsorted batch", lambda c: not c.params["enforce_sorted"] and SR.is_unsorted(c.inputs["lengths"]),
               {"enforce_sorted": False, "lengths kind": "increasing", "B": 4, "T": 6}),
        Regime("tied lengths", lambda c: SR.has_ties(c.inputs["lengths"]),
               {"enforce_sorted": False, "lengths kind": "all equal", "B": 3},
               "any order of equal lengths is accepted"),
        Regime("batch_first", lambda c: c.params["batch_first"], {"batch_first": True}),
        Regime("lengths as a tensor", lambda c: c.params["lengths_as"] == "tensor", {"lengths as": "tensor"}),
        Regime("padding never used", lambda c: bool(np.all(c.inputs["lengths"] == SR.padded_steps(c))),
               {"lengths kind": "all full"})),
    notes=("Lengths as a Python list or a CPU int64 tensor. enforce_sorted=True requires decreasing lengths and "
           "leaves sorted_indices/unsorted_indices None; otherwise the batch is sorted by decreasing length, any "
           "order among equal lengths accepted (data and the gradient must follow the backend's order).")))

declare(F.sequence_utility(
    "pad_packed_sequence", cases=lambda dtype: SR.pad_case(dtype), reference=F.pad_packed_reference,
    args=F.packed_input, kwargs=("batch_first", "padding_value", "total_length"), outputs=("output", "lengths"),
    compared=("output", "lengths", "grad.data"), invalid=lambda dtype: SR.pad_case(dtype, invalid=True),
    regimes=(
        Regime("unsorted batch", lambda c: "sorted_indices" in c.inputs, {"indices": "permutation", "B": 4}),
        Regime("total_length beyond the longest",
               lambda c: (c.params["total_length"] or 0) > len(c.inputs["batch_sizes"]), {"total_length": "longer"}),
        Regime("batch_first", lambda c: c.params["batch_first"], {"batch_first": True}),
        Regime("non-finite padding_value", lambda c: not np.isfinite(c.params["padding_value"]),
               {"padding_value": float("nan"), "lengths kind": "random", "B": 3, "T": 5})),
    notes=("Pads each sequence after its length with padding_value (any float, ±inf and NaN too) up to "
           "total_length (>= the longest; shorter is invalid) or the longest length, in the original batch "
           "order (unsorted_indices); lengths are returned as an int64 CPU tensor.")))

declare(F.sequence_utility(
    "pad_packed_sequence", variant="roundtrip", cases=lambda dtype: SR.roundtrip_case(dtype),
    reference=F.roundtrip_reference, args=F.roundtrip_args, kwargs=("batch_first", "padding_value", "total_length"),
    outputs=("output", "lengths"), compared=("output", "lengths", "grad.input"),
    regimes=(
        Regime("unsorted batch", lambda c: SR.is_unsorted(c.inputs["lengths"]),
               {"enforce_sorted": False, "lengths kind": "increasing", "B": 4, "T": 6}),
        Regime("shorter than the input", lambda c: (c.params["total_length"] or c.inputs["lengths"].max())
               < SR.padded_steps(c), {"lengths kind": "all short", "T": 8, "total_length": "exact"},
               "steps past every length are cut")),
    notes="pad_packed_sequence(pack_padded_sequence(x, lengths, ...), ...): one call tree, two functions."))

declare(F.sequence_utility(
    "pad_sequence", cases=lambda dtype: SR.sequence_list_case("pad_sequence", dtype),
    reference=F.pad_sequence_reference, args=F.sequence_list_args, outputs=("output",),
    kwargs=("batch_first", "padding_value", "padding_side"),
    compared=("output", *NR.tensor_names("grad.sequence", SR.MAX_SEQUENCES)),
    invalid=SR.kinds_of(SR.PAD_SEQUENCE_INVALID, SR.sequence_list_case, "pad_sequence"),
    regimes=(
        Regime("padding_side left", lambda c: c.params["padding_side"] == "left", {"padding_side": "left"}),
        Regime("batch_first", lambda c: c.params["batch_first"], {"batch_first": True}),
        Regime("empty sequences", lambda c: 0 in SR.lengths_of_list(c), {"lengths kind": "with empty", "B": 3},
               "a sequence of length 0 is all padding"),
        Regime("equal lengths (no padding)", lambda c: len(set(SR.lengths_of_list(c).tolist())) == 1,
               {"lengths kind": "all equal", "B": 3}),
        Regime("one sequence", lambda c: c.params["count"] == 1, {"B": 1}),
        Regime("single steps", lambda c: set(SR.lengths_of_list(c).tolist()) == {1},
               {"lengths kind": "single steps", "B": 3}),
        Regime("signed zero or non-finite padding_value", lambda c: np.signbit(c.params["padding_value"])
               or not np.isfinite(c.params["padding_value"]),
               {"padding_value": -0.0, "lengths kind": "random", "B": 3}),
        Regime("large padding_value", lambda c: c.params["padding_value"] == 2.0**15,
               {"padding_value": 2.0**15, "lengths kind": "increasing", "B": 2}),
        Regime("trailing dims", lambda c: c.inputs["sequence0"].ndim == 3, {"feature ndim": 2}),
        Regime("sequences as a tuple", lambda c: c.params["container"] == "tuple", {"container": "tuple"}),
        Regime("expanded (stride 0) sequence", lambda c: c.layout("sequence0").kind == "expanded",
               {"layout.sequence0": "expanded", "lengths kind": "all equal"}),
        Regime("±0, ±inf and NaN values", lambda c: SR.has_specials(c.inputs["sequence0"]),
               {"tier": "float", "sequence0.kind": "special", "lengths kind": "all equal"})),
    notes=("Stacks B sequences (L_b, *) into (T, B, *) or (B, T, *), T = max L_b, each sequence at steps [0, L_b) "
           "('right') or [T - L_b, T) ('left'), padding_value (any float, ±0, ±inf, NaN) elsewhere; a list or a "
           "tuple of sequences, each in its own layout; sequences of length 0 allowed. Invalid: no sequence, a 0-d "
           "sequence, differing trailing dims, another padding_side, a padding_value beyond the dtype's range (torch "
           "converts it to the dtype and rejects an overflow, even one that would round to the largest value).")))

declare(F.sequence_utility(
    "pack_sequence", cases=lambda dtype: SR.sequence_list_case("pack_sequence", dtype),
    reference=F.pack_sequence_reference, args=F.sequence_list_args, kwargs=("enforce_sorted",),
    outputs=F.PACKED_OUTPUTS,
    compared=("data", "batch_sizes", "sorted_indices", "unsorted_indices",
              *NR.tensor_names("grad.sequence", SR.MAX_SEQUENCES)),
    ties=SR.lengths_of_list, invalid=SR.kinds_of(SR.PACK_SEQUENCE_INVALID, SR.sequence_list_case, "pack_sequence"),
    regimes=(
        Regime("unsorted (enforce_sorted=False)", lambda c: SR.is_unsorted(SR.lengths_of_list(c)),
               {"enforce_sorted": False, "lengths kind": "increasing", "B": 4}, "the packed rows are sorted"),
        Regime("tied lengths, unsorted allowed", lambda c: not c.params["enforce_sorted"]
               and SR.has_ties(SR.lengths_of_list(c)), {"enforce_sorted": False, "lengths kind": "all equal", "B": 3},
               "any order of equal lengths is accepted"),
        Regime("one sequence", lambda c: c.params["count"] == 1, {"B": 1}),
        Regime("single steps", lambda c: set(SR.lengths_of_list(c).tolist()) == {1},
               {"lengths kind": "single steps", "B": 3}),
        Regime("trailing dims", lambda c: c.inputs["sequence0"].ndim == 3, {"feature ndim": 2}),
        Regime("±0, ±inf and NaN values", lambda c: SR.has_specials(c.inputs["sequence0"]),
               {"tier": "float", "sequence0.kind": "special", "lengths kind": "all equal"})),
    notes=("pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted): B sequences (L_b, *), L_b >= 1, "
           "decreasing when enforce_sorted (indices then None), otherwise sorted by decreasing length, any order "
           "among equal lengths accepted (data and the gradients must follow the backend's order). Invalid: no "
           "sequence, a 0-d one, differing trailing dims, a length 0, unsorted with enforce_sorted.")))

declare(F.sequence_utility(
    "unpad_sequence", cases=lambda dtype: SR.unpad_case(dtype), reference=F.unpad_reference, args=F.unpad_args,
    kwargs=("batch_first",), outputs=F.listed_outputs, mutated=("padded_sequences",),
    compared=(*NR.tensor_names("output", SR.MAX_SEQUENCES + 1), "grad.padded_sequences"),
    comparators={"state.padded_sequences": NR.untouched_input}, invalid=SR.kinds_of(SR.UNPAD_INVALID, SR.unpad_case),
    regimes=(
        Regime("batch_first", lambda c: c.params["batch_first"], {"batch_first": True}),
        Regime("no sequence", lambda c: c.inputs["lengths"].size == 0, {"sequences": "none"}, "B = 0: an empty list"),
        Regime("empty sequences", lambda c: 0 in c.inputs["lengths"],
               {"lengths kind": "with empty", "B": 3, "sequences": "some"}),
        Regime("padding beyond every length", lambda c: c.inputs["lengths"].size and SR.steps_of_padded(c)
               > c.inputs["lengths"].max(), {"padding steps": 2, "sequences": "some"}),
        Regime("trailing dims", lambda c: c.inputs["padded_sequences"].ndim == 4, {"feature ndim": 2}),
        Regime("expanded (stride 0) input", lambda c: c.layout("padded_sequences").kind == "expanded",
               {"layout.padded_sequences": "expanded", "sequences": "some"}),
        Regime("±0, ±inf and NaN values", lambda c: SR.has_specials(c.inputs["padded_sequences"]),
               {"tier": "float", "padded_sequences.kind": "special", "sequences": "some",
                "lengths kind": "all equal"})),
    notes=("Splits padded (T, B, *) or (B, T, *) into the B sequences padded[:lengths[b], b], lengths an int64 CPU "
           "tensor in [0, T]; the input must come back untouched (state.padded_sequences). Invalid: a length count "
           "other than B, a length beyond T or below 0.")))

declare(F.sequence_utility(
    "unpack_sequence", cases=lambda dtype: SR.unpack_case(dtype), reference=F.unpack_reference, args=F.unpack_args,
    kwargs=(), outputs=F.listed_outputs, compared=(*NR.tensor_names("output", SR.MAX_SEQUENCES), "grad.data"),
    invalid=SR.kinds_of(SR.UNPACK_INVALID, SR.unpack_case),
    regimes=(
        Regime("unsorted batch", lambda c: "sorted_indices" in c.inputs, {"indices": "permutation", "B": 4}),
        Regime("one sequence", lambda c: c.params["count"] == 1, {"B": 1}),
        Regime("tied lengths", lambda c: SR.has_ties(SR.packed_lengths(c)),
               {"lengths kind": "all equal", "B": 3}),
        Regime("trailing dims", lambda c: c.inputs["data"].ndim == 3, {"feature ndim": 2}),
        Regime("±0, ±inf and NaN values", lambda c: SR.has_specials(c.inputs["data"]),
               {"tier": "float", "data.kind": "special"})),
    notes=("The B sequences (L_b, *) of a PackedSequence (as pack_sequence makes it, sorted or with its indices), "
           "in the original batch order. Invalid: a tensor where the PackedSequence is expected.")))
