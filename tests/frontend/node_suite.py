"""onnx's own backend node tests for the ops snncompile lists, run through the importer and executor.

The test cases come from the installed onnx (``onnx.backend.test.case.node.collect_testcases``, the
generator of ``onnx/backend/test/data/node``): each is a model at its own opset with input data and
expected outputs. A snncompile network has one input, the activation (batch first); so the first
graph input stays the input and every other input becomes a constant (an initializer holding the
test's value), as a weight would be. Outcomes per case:

* ``pass``: imported, and ``graph.run(x)`` equals the expected output (the case's rtol/atol);
* ``refused``: a one-line CompileError (the reason is kept);
* ``wrong``: imported but the result differs, or a non-CompileError was raised (a bug).

A refusal is *batch-bound* (no spiking network can run the graph: it is not a per-sample map) when
the case itself shows it, whatever the message: the input has no per-sample axis (rank 1), the
output does not keep the batch axis (transA, Flatten/Reshape/Squeeze/Transpose/Concat across the
batch axis), an op acts along the batch axis (``axis=0``: Softmax, per-axis quantization), the input
is not a tensor (sequence, optional), a constant input spans the batch (a different weight per sample), the output does not
depend on the input values (Shape, Constant), or it asks for training-time behaviour or a second
output (dropout mask, pooling indices, batch statistics). Every other refusal is *not implemented*;
the pass rate counts passes over passes + not implemented.

Run as a script to print the table of docs/onnx.md: ``python tests/frontend/node_suite.py``.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from snncompile.errors import CompileError
from snncompile.frontend.onnx import SUPPORTED_OPS, load_onnx

__all__ = ["Outcome", "collect", "pass_rate", "run_case", "summary"]


@dataclass
class Outcome:
    name: str
    op: str
    opset: int
    status: str  # pass | refused | wrong
    detail: str = ""
    why: str = ""  # for a refusal: the batch-bound category, or "not implemented"


def collect() -> list:
    """The node test cases whose every node is an op snncompile lists."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    ops = set(SUPPORTED_OPS)
    return [c for c in cases if c.model.graph.node and all(n.op_type in ops for n in c.model.graph.node)]


def _as_single_input(model: onnx.ModelProto, inputs: list[np.ndarray]) -> onnx.ModelProto:
    """The first graph input stays an input; the others become initializers with the test's values."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    if not g.input:
        return m
    keep, consts = g.input[0], list(zip(g.input[1:], inputs[1:]))
    for vi, arr in consts:
        if vi.name:
            if isinstance(arr, onnx.TensorProto):  # test data of a type numpy lacks (int4, float8, ...)
                t = onnx.TensorProto()
                t.CopyFrom(arr)
                t.name = vi.name
            else:
                t = numpy_helper.from_array(np.asarray(arr), vi.name)
            g.initializer.append(t)
    del g.input[1:]
    if m.ir_version < 4 and consts:  # IR 3 lists initializers among the inputs
        g.input.extend(vi for vi, _ in consts)
    assert g.input[0].name == keep.name
    return m


def _numpy(v):
    """Test data as numpy: a TensorProto (int4, float8, ... that numpy lacks) as its values in float32."""
    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v).astype(np.float32)
    return v


def run_case(case) -> Outcome:
    model = case.model
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    op = model.graph.node[0].op_type
    raw = list(case.data_sets[0][0])
    inputs, outputs = (list(map(_numpy, v)) for v in case.data_sets[0])
    try:
        g = load_onnx(_as_single_input(model, raw))
        got = g.run(g.input.to_network(np.asarray(inputs[0])) if inputs else np.zeros(0, np.float32))
    except CompileError as e:
        return Outcome(case.name, op, opset, "refused", str(e), _category(model, inputs, outputs, str(e)))
    except Exception as e:  # noqa: BLE001 - any other exception is a bug, reported as a wrong result
        return Outcome(case.name, op, opset, "wrong", f"{type(e).__name__}: {e}")
    got = got if isinstance(got, tuple) else (got,)
    want = np.asarray(outputs[0])
    out = got[0].numpy()
    if out.shape != want.shape:
        return Outcome(case.name, op, opset, "wrong", f"shape {out.shape} != expected {want.shape}")
    rtol, atol = max(case.rtol, 1e-4), max(case.atol, 1e-5)
    if not np.allclose(out, want.astype(np.float64), rtol=rtol, atol=atol):
        err = float(np.abs(out - want).max())
        return Outcome(case.name, op, opset, "wrong", f"max abs error {err:g}")
    return Outcome(case.name, op, opset, "pass")


_AUX = ("only the first output converts", "training_mode=1", "training mode")
_NO_INPUT = ("the graph output is a constant", "expected exactly one graph input, got 0")


def _category(model: onnx.ModelProto, inputs, outputs, msg: str) -> str:
    """Why a refused case cannot be a spiking network (see module doc), or "not implemented"."""
    if not inputs or any(k in msg for k in _NO_INPUT):
        return "output independent of the input"
    if not isinstance(inputs[0], np.ndarray):
        return "input not a tensor (sequence, optional)"
    x = inputs[0]
    if x.ndim < 2:
        return "rank-1 input"
    y = np.asarray(outputs[0])
    if y.ndim < 2 or y.shape[0] != x.shape[0]:
        return "batch axis not kept"
    if any(a.name == "axis" and a.i == 0 for nd in model.graph.node for a in nd.attribute):
        return "acts along the batch axis (axis=0)"
    if x.shape[0] > 1 and any(np.ndim(c) >= x.ndim and np.shape(c)[0] == x.shape[0] for c in inputs[1:]):
        return "constant spans the batch"
    if len([o for o in model.graph.output if o.name]) > 1 or any(k in msg for k in _AUX):
        return "training mode or second output"
    return "not implemented"


def pass_rate(outcomes: list[Outcome]) -> float:
    """Passes over the cases a spiking network could run (passes + not implemented refusals)."""
    runnable = [o for o in outcomes if o.status != "refused" or o.why == "not implemented"]
    return sum(o.status == "pass" for o in runnable) / max(len(runnable), 1)


def summary(outcomes: list[Outcome]) -> tuple[Counter, dict[str, Counter]]:
    total = Counter(o.status for o in outcomes)
    per_op: dict[str, Counter] = {}
    for o in outcomes:
        per_op.setdefault(o.op, Counter())[o.status] += 1
    return total, per_op


if __name__ == "__main__":
    import sys

    res = [run_case(c) for c in collect()]
    total, per_op = summary(res)
    n = len(res)
    why = Counter(o.why for o in res if o.status == "refused")
    print(f"{total['pass']} of {n} pass, {total['refused']} refused, {total['wrong']} wrong; "
          f"pass rate over runnable cases {100 * pass_rate(res):.1f} %")
    print("refusals: " + ", ".join(f"{k} {v}" for k, v in why.most_common()) + "\n")
    print("| op | cases | pass | refused: batch-bound | refused: not implemented |\n| --- | --- | --- | --- | --- |")
    for op in sorted(per_op):
        rows = [o for o in res if o.op == op]
        ni = sum(o.why == "not implemented" for o in rows)
        c = per_op[op]
        print(f"| {op} | {len(rows)} | {c['pass']} | {c['refused'] - ni} | {ni} |")
    if "-v" in sys.argv:
        for o in res:
            if o.status != "pass":
                print(f"{o.status:8s} [{o.why}] {o.name} (opset {o.opset}): {o.detail}")
