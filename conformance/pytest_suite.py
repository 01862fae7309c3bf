"""The conformance suite as a pytest module (collected with ``--nnconform``; see plugin.py)."""

from conformance.plugin import check_target


def test_conformance(nnconform_session, nnconform_target):
    check_target(nnconform_session, nnconform_target)
