"""The step every conversion method shares: each ReLU becomes an IF neuron layer.

An ANN layer ``a = min(max(z, 0), c)`` becomes the soft-reset IF layer of
:class:`snncompile.ir.IF` driven by the same input z (now a sum of spikes times weights):

.. math:: v[t] = v[t-1] + z[t] + b, \\quad n[t] = \\mathrm{clamp}(\\lfloor v[t]/\\theta\\rfloor, 0, N),
          \\quad v[t] \\mathrel{-}= n[t]\\theta, \\quad y[t] = n[t]\\theta

whose rate approximates a (Rueckauer et al. 2017; Deng & Gu 2021, arXiv 2103.00476). The IF
keeps the ReLU's name, so every user of the ReLU now reads spikes y and keeps the ANN's weights.
All other nodes are unchanged; the node feeding the Output is the readout (a non-spiking
membrane integrator in the simulator). ``shift`` chooses the initial condition:
``"none"`` (v0 = 0: floor quantization), ``"v0"`` (v0 = theta/2: round quantization) or
``"bias"`` (v0 = 0 and a per-step current theta/(2T): the same total charge spread over time).

A quantized clipped ReLU (:class:`snncompile.ir.QuantClip`: QCFS, or an ONNX QDQ pair) needs no
threshold: its IF gets ``theta = lam`` (the ceiling; per channel for a per-channel quantizer),
``v0 = theta/2``, one spike per step (QCFS, Bu et al. 2022: at T = L the SNN follows the ANN),
whatever threshold the method computed; the method's calibration steps (bias/potential correction)
still apply on top. ``meta["quant_notes"]`` says so per layer.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from snncompile.errors import ConversionError
from snncompile.ir import (
    PROBABILITY_OUTPUTS,
    Add,
    AvgPool2d,
    BatchNorm,
    Concat,
    Conv2d,
    Flatten,
    GlobalAvgPool,
    Graph,
    Input,
    Linear,
    Output,
    Permute,
    QuantClip,
    Reshape,
)
from snncompile.ir.neurons import IF
from snncompile.ir.ops import ReLU

# ReLU becomes IF; the others are linear maps of their inputs (plus constant biases), exact on spikes
CONVERTIBLE = (ReLU, Input, Output, Conv2d, Linear, BatchNorm, AvgPool2d, GlobalAvgPool, Add, Concat, Flatten, Reshape,
               Permute)

__all__ = ["CONVERTIBLE", "SHIFTS", "drop_boundary_ops", "quant_note", "relu_names", "to_snn", "update_if",
           "with_meta"]

SHIFTS = ("none", "v0", "bias")


def relu_names(graph: Graph) -> list[str]:
    """ReLU nodes of the ANN in topological order; raises if the graph is already an SNN or has an
    operator that cannot act on spike trains (anything but ReLU, linear and structural nodes)."""
    spiking = graph.of_type(IF)
    if spiking:
        raise ConversionError(f"{spiking[0].name} (IF): the graph is already an SNN; convert the ANN")
    for node in graph.nodes.values():
        if not isinstance(node, CONVERTIBLE):
            raise ConversionError(f"{node.name} ({node.op}): not a ReLU, linear or structural operator; "
                                  f"an SNN cannot compute it on spike trains")
    return [n.name for n in graph.of_type(ReLU)]


def drop_boundary_ops(graph: Graph) -> Graph:
    """The ANN without what only shapes its outputs or re-rounds its input, one conversion-log line each
    in ``meta["output_log"]`` (the graph itself when there is none):

    * a Softmax/LogSoftmax/Sigmoid feeding an Output: it keeps the argmax, so the spiking network's
      readout gives the logits instead;
    * a QuantClip (QDQ pair) feeding an Output (the logits' quantizer): the readout gives the logits;
    * a QuantClip reading the network input (the input's quantizer): the spiking network injects the
      input as given (pixels k/255 are already on an 8-bit grid).
    """
    out, log = graph, []
    while True:
        drop = [n for n in out.nodes.values()
                if isinstance(n, (*PROBABILITY_OUTPUTS, QuantClip))
                and all(isinstance(u, Output) for u in out.users(n.name))]
        drop += [n for n in out.nodes.values() if isinstance(n, QuantClip) and n.inputs[0] == out.input.name
                 and n not in drop]
        if not drop:
            break
        for n in drop:
            where = "input" if n.inputs[0] == out.input.name else "output"
            why = (f"{n.op} is monotone in each class score; the readout outputs its input {n.inputs[0]}, "
                   f"whose argmax is the ANN's" if isinstance(n, PROBABILITY_OUTPUTS) else
                   f"the {where} quantizer ({n.source_op}, {n.levels_text()} levels): the spiking network "
                   + ("injects the input as given" if where == "input" else "reads out the unrounded values"))
            log.append({"node": n.name, "from_op": n.op, "to": f"dropped ({where})", "theta": None,
                        "max_spikes": None, "notes": why})
        out = out.replace({n.name: None for n in drop}, rename={n.name: n.inputs[0] for n in drop})
    if out is graph:
        return graph
    out.meta["output_log"] = list(graph.meta.get("output_log", [])) + log
    return out


def _if_node(relu: ReLU, theta: np.ndarray, shift: str, timesteps: int, max_spikes: int) -> IF:
    if isinstance(relu, QuantClip):  # no threshold search: theta = lam, v0 = theta/2 (QCFS), per channel if lam is
        lam = np.asarray(relu.lam, np.float32)
        if lam.ndim > 1:
            raise ConversionError(f"{relu.name} (QuantClip): a ceiling per neuron (shape {lam.shape}, a quantizer "
                                  "along a spatial axis) cannot be an IF threshold, which is per channel at most")
        return IF(relu.name, relu.inputs, theta=lam, v0=lam / np.float32(2), bias=np.float32(0), max_spikes=1,
                  max_value=relu.max_value, source_op=relu.source_op)
    theta = np.asarray(theta, np.float32)
    zero = np.zeros_like(theta)
    v0 = theta / 2 if shift == "v0" else zero
    bias = theta / (2 * timesteps) if shift == "bias" else zero
    return IF(relu.name, relu.inputs, theta=theta, v0=v0.astype(np.float32), bias=bias.astype(np.float32),
              max_spikes=int(max_spikes), max_value=relu.max_value, source_op=relu.source_op)


def to_snn(graph: Graph, theta: dict[str, np.ndarray], *, timesteps: int, shift: str = "none",
           max_spikes: dict[str, int] | None = None) -> Graph:
    """Replace every ReLU by an IF with threshold ``theta[name]`` (see module doc)."""
    if shift not in SHIFTS:
        raise ConversionError(f"shift must be one of {SHIFTS}, got {shift!r}")
    names = relu_names(graph)
    missing = [n for n in names if n not in theta]
    if missing:
        raise ConversionError(f"{missing[0]} (ReLU): no threshold was computed for this layer")
    max_spikes = max_spikes or {}
    mapping = {n: _if_node(graph.nodes[n], theta[n], shift, timesteps, max_spikes.get(n, 1)) for n in names}
    quant = {n: [quant_note(graph.nodes[n])] for n in names if isinstance(graph.nodes[n], QuantClip)}
    return with_meta(graph.replace(mapping), getattr(graph, "meta", {}), **({"quant_notes": quant} if quant else {}))


def quant_note(q: QuantClip) -> str:
    """The conversion-log note of a quantized activation layer."""
    lo = int(np.min(q.lo))
    neg = f"; its negative range ({lo} levels) is dropped (floor at the zero point)" if lo < 0 else ""
    lam = np.asarray(q.lam)
    per = "" if lam.ndim == 0 else " per channel"
    lam_text = f"{float(lam):.6g}" if lam.ndim == 0 else f"{lam.min():.6g} to {lam.max():.6g}"
    return (f"quantized activation ({q.source_op}, L={q.levels_text()} levels{per}, lam={lam_text}): theta = lam"
            f"{per}, v0 = theta/2, no threshold search{neg}")


def update_if(snn: Graph, name: str, **fields) -> Graph:
    """A new SNN where IF ``name`` has ``fields`` replaced (e.g. theta, v0, bias, max_spikes)."""
    arrays = {k: (np.asarray(v, np.float32) if k in ("theta", "v0", "bias") else v) for k, v in fields.items()}
    new = dataclasses.replace(snn.nodes[name], **arrays)
    return with_meta(snn.replace({name: new}), getattr(snn, "meta", {}))


def with_meta(graph: Graph, meta: dict | None = None, **extra) -> Graph:
    """Set ``graph.meta`` = ``meta`` updated by the graph's own meta and ``extra``; returns graph.

    Only for graphs a pass has just built (never the caller's input graph)."""
    merged = dict(meta or {})
    merged.update(getattr(graph, "meta", {}) or {})
    merged.update(extra)
    graph.meta = merged
    return graph
