"""Per-family numerics: tolerance glue (``conformance.tolerance.analysed_tolerance`` over the error
analyses beside each reference), comparators accepting documented alternatives, and the
predicates named by ``conformance/known/<family>.toml``. One module per family."""
