"""onnx's own backend node tests for every op snncompile lists (see node_suite.py for the rules).

Targets (issue 18, numbers in docs/onnx.md): no wrong result; every refusal a one-line CompileError;
at least 80 % of the cases a spiking network can run pass at their own opsets.
"""

from __future__ import annotations

import pytest
from node_suite import collect, pass_rate, run_case


@pytest.fixture(scope="module")
def outcomes():
    return [run_case(c) for c in collect()]


def test_cases_cover_the_newest_opsets(outcomes):
    assert len(outcomes) > 150
    assert max(o.opset for o in outcomes) >= 22


def test_no_wrong_result(outcomes):
    wrong = [f"{o.name}: {o.detail}" for o in outcomes if o.status == "wrong"]
    assert not wrong, wrong


def test_refusals_are_one_line(outcomes):
    for o in outcomes:
        if o.status == "refused":
            assert o.detail and "\n" not in o.detail, o


def test_pass_rate_over_runnable_cases(outcomes):
    rate = pass_rate(outcomes)
    missing = [o.name for o in outcomes if o.why == "not implemented"]
    assert rate >= 0.80, f"{100 * rate:.1f} %; not implemented: {missing}"


def test_no_case_refused_for_its_opset(outcomes):
    bad = [o.name for o in outcomes if o.status == "refused" and "unsupported; implemented versions" in o.detail]
    assert not bad, bad
