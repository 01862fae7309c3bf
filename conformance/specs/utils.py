"""torch.nn.utils.parameters_to_vector and vector_to_parameters (template ``families.containers.gradient_utility``;
references ``reference.utils``)."""

from conformance.families.containers import gradient_utility
from conformance.spec import Regime, declare
from conformance.strategies import grad_utils as SG

declare(gradient_utility(
    "parameters_to_vector", cases=SG.to_vector_cases, invalid=SG.invalid_to_vector_cases,
    regimes=(
        Regime("several shapes", lambda c: len({a.ndim for a in c.inputs.values()}) >= 2,
               {"parameters": 3, "param0.ndim": 0, "param1.ndim": 2, "param2.ndim": 3}),
        Regime("an empty parameter", lambda c: any(a.size == 0 for a in c.inputs.values()),
               {"param0.ndim": 2, "param0.empty": True}),
        Regime("an iterator", lambda c: c.params["form"] == "iterator", {"form": "iterator"},
               "as model.parameters() is: a generator consumed once"),
        Regime("non-contiguous parameters", lambda c: any(v.kind != "contiguous" for v in c.layouts.values()),
               {"layout.param0": "strided", "param*.ndim": 2, "param*.empty": False}),
        Regime("exact tier", lambda c: c.tier == "exact", {"tier": "exact"}),
    ),
    notes="One 1-d tensor of every parameter's elements, each flattened in row-major order, in the order given "
          "(a list, a tuple or an iterator); compared bit for bit (a copy), and its gradient (each slice of the "
          "output's cotangent, reshaped) too. No parameter at all must raise (invalid cases: torch.cat of nothing).",
))

declare(gradient_utility(
    "vector_to_parameters", cases=SG.from_vector_cases, invalid=SG.invalid_from_vector_cases,
    regimes=(
        Regime("several shapes", lambda c: len({a.ndim for n, a in c.inputs.items() if n != "vec"}) >= 2,
               {"parameters": 3, "param0.ndim": 0, "param1.ndim": 2, "param2.ndim": 3}),
        Regime("an empty parameter", lambda c: any(a.size == 0 for n, a in c.inputs.items() if n != "vec"),
               {"param0.ndim": 2, "param0.empty": True}),
        Regime("non-contiguous vector", lambda c: c.layout("vec").kind != "contiguous", {"layout.vec": "strided"}),
        Regime("non-contiguous parameters", lambda c: any(c.layout(n).kind != "contiguous" for n in c.inputs
                                                          if n != "vec"),
               {"layout.param0": "strided", "param*.ndim": 2, "param*.empty": False}),
    ),
    notes="Consecutive slices of the 1-d vector, reshaped, become the parameters' values (torch replaces each "
          "one's data), compared bit for bit after the call. The vector must hold exactly the parameters' number "
          "of elements: one short or one long, or a Python list instead of a tensor, must raise (invalid cases).",
))
