"""Embedding and EmbeddingBag (``conformance.families.sparse``): lookups and bags of rows, padding_idx,
in-place max_norm renormalisation, frequency-scaled and sparse gradients."""

from conformance.families.sparse import embedding, embedding_bag
from conformance.numerics.sparse import has_tied_rows, reads_padding_row, renormalises
from conformance.spec import Regime, declare

declare(embedding(
    regimes=(
        Regime("max_norm renormalises", renormalises,
               {"max_norm": 0.5, "weight.scale": 4.0, "rows used": 16}, "some referenced row is rescaled in place"),
        Regime("max_norm with inf norm", lambda c: c.params["max_norm"] is not None
               and c.params["norm_type"] == float("inf"), {"max_norm": 1.0, "norm_type": float("inf")}),
        Regime("negative padding_idx", lambda c: (c.params["padding_idx"] or 0) < 0,
               {"padding_idx": "a negative row"}),
        Regime("padding_idx referenced", reads_padding_row,
               {"padding_idx": "a row", "num_embeddings": 2, "indices ndim": 2, "indices shape[*]": 4,
                "rows used": 2}, "the padding row is read (its gradient must stay 0)"),
        Regime("scale_grad_by_freq with repeats", lambda c: c.params["scale_grad_by_freq"]
               and c.inputs["input"].size > len(set(c.inputs["input"].reshape(-1).tolist())),
               {"scale_grad_by_freq": True, "rows used": 1, "indices ndim": 1, "indices shape[*]": 5}),
        Regime("sparse gradient", lambda c: c.params["sparse"], {"sparse": True}),
        Regime("0-d indices", lambda c: c.inputs["input"].ndim == 0, {"indices ndim": 0}),
    ),
    notes="Output = weight[indices] (after renormalisation with max_norm, which rescales referenced rows in place: "
          "compared as state.weight; rows within the norm's rounding of max_norm are accepted either way). "
          "grad.weight: scatter-add of the cotangent, divided by row frequency with scale_grad_by_freq, none "
          "for padding_idx (negative counts from the end); sparse=True is compared densified. Out-of-range "
          "indices and padding_idx are invalid.",
))

declare(embedding_bag(
    regimes=(
        Regime("empty bags", lambda c: "offsets" in c.inputs and (c.inputs["input"].size == 0 or bool(
               (c.inputs["offsets"][1:] == c.inputs["offsets"][:-1]).any())),
               {"input form": "1-d with offsets", "bags": 3, "bag length[1]": 0}, "a bag of length 0 gives zeros"),
        Regime("include_last_offset", lambda c: "offsets" in c.inputs and c.params["include_last_offset"],
               {"input form": "1-d with offsets", "include_last_offset": True}, "B + 1 offsets, CSR style"),
        Regime("per_sample_weights", lambda c: "per_sample_weights" in c.inputs,
               {"mode": "sum", "per_sample_weights": True}, "weighted sums, and their gradient"),
        Regime("padding_idx in a bag", reads_padding_row,
               {"padding_idx": "a row", "num_embeddings": 2, "rows used": 2, "input form": "2-d", "bags": 3,
                "bag size": 4, "zero-length bags": False},
               "padding entries left out of sums, means (and their counts) and maxima"),
        Regime("a bag of padding only", lambda c: c.params["num_embeddings"] == 1
               and c.params["padding_idx"] is not None and c.inputs["input"].size > 0,
               {"num_embeddings": 1, "padding_idx": "a row", "input form": "2-d", "mode": "mean",
                "zero-length bags": False},
               "nothing left in the bag: zeros, no division"),
        Regime("max_norm renormalises", renormalises, {"max_norm": 0.5, "weight.scale": 4.0, "rows used": 16,
                                                        "bag size": 3}, "referenced rows rescaled in place"),
        Regime("max_norm with inf norm", lambda c: c.params["max_norm"] is not None
               and c.params["norm_type"] == float("inf"), {"max_norm": 1.0, "norm_type": float("inf")}),
        Regime("negative padding_idx", lambda c: (c.params["padding_idx"] or 0) < 0, {"padding_idx": "a negative row"}),
        Regime("max with a repeated row", lambda c: c.params["mode"] == "max" and c.inputs["input"].ndim == 2
               and any(len(set(r.tolist())) < len(r) for r in c.inputs["input"]),
               {"mode": "max", "input form": "2-d", "rows used": 1, "bag size": 3, "zero-length bags": False},
               "a row twice in a bag: its gradient once"),
        Regime("tied maxima", lambda c: c.params["mode"] == "max" and has_tied_rows(c),
               {"mode": "max", "tied rows": True, "tier": "exact", "input form": "2-d", "bags": 2, "bag size": 3,
                "num_embeddings": 6, "rows used": 6, "max_norm": None, "padding_idx": "none",
                "zero-length bags": False},
               "distinct rows hold equal values: any of them may take a bag's gradient"),
        Regime("scale_grad_by_freq with repeats", lambda c: c.params["scale_grad_by_freq"]
               and c.inputs["input"].size > len(set(c.inputs["input"].reshape(-1).tolist())),
               {"scale_grad_by_freq": True, "mode": "sum", "rows used": 1, "input form": "2-d", "bag size": 3,
                "zero-length bags": False}),
        Regime("sparse gradient", lambda c: c.params["sparse"], {"sparse": True, "mode": "sum"}),
        Regime("zero-length bags, 2-d", lambda c: c.inputs["input"].ndim == 2 and c.inputs["input"].shape[1] == 0,
               {"input form": "2-d", "zero-length bags": True}, "(B, 0): B empty bags"),
    ),
    notes="mode sum: Σ per_sample_weights·w'[i] per bag; mean: the sum over the bag's size; max: the per-dim "
          "maximum. A 2-d input (B, N) is B bags of N; a 1-d input with offsets is B bags starting at the offsets "
          "(B + 1 offsets, the last the input's length, with include_last_offset); empty bags give zeros in every "
          "mode. padding_idx entries are left out (of sums, of means and their counts, of maxima). max_norm "
          "renormalises every referenced row in place (state.weight). grad.weight: each entry's share scatter-added "
          "(divided by the row's frequency in the input with scale_grad_by_freq; in max mode to the entry holding "
          "the maximum: distinct rows tied are each accepted, torch's choice is undocumented); "
          "grad.per_sample_weights: <g_bag, w'[i]>. sparse=True is compared densified. Offsets are drawn "
          "non-decreasing (torch does not check it). Invalid: indices or padding_idx out of range, offsets with a "
          "2-d input or none with a 1-d one, offsets[0] != 0, a last offset beyond the input, per_sample_weights "
          "with mode mean/max or of another shape, max mode with scale_grad_by_freq or sparse, an unknown mode.",
))
