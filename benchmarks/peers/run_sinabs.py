"""sinabs 3.1.3 on the peer protocol (run with .venv-sinabs/bin/python).

``sinabs.from_torch.from_model(model, input_shape, batch_size=100, spike_threshold=1,
reset_fn=MembraneSubtract())`` copies the model and replaces every ``nn.ReLU`` module (exact type)
with ``IAFSqueeze``; its other defaults are kept (``min_v_mem=-1``). BatchNorm is folded into the
conv before it first (``fuse_conv_bn_eval``, the same network function; sinabs would otherwise keep
BN as an analog layer and ``normalize_weights`` would scale the conv under a fixed BN).

Modes: ``multispike`` (its default spike function, floor(v/theta) spikes per step, no
normalization), ``singlespike`` (binary spikes, no normalization), and both after
``sinabs.utils.normalize_weights(..., percentile=99.9)`` on the calibration set, which needs the
layers as top-level children: we expose each activation and the weight layer feeding it under
top-level aliases. Steps are fed 8 at a time (batch-major (B*8, ...) tensors, state carried).
"""

from __future__ import annotations

import harness as H
import protocol as P
import torch
from torch import fx, nn

CHUNK = 8
MODES = {
    "multispike": ("MultiSpike", None),
    "singlespike": ("SingleSpike", None),
    "multispike-norm99.9": ("MultiSpike", 99.9),
    "singlespike-norm99.9": ("SingleSpike", 99.9),
}


class _Aliases(nn.Module):
    """The model, with its activations and their weight layers also registered at top level."""

    def __init__(self, model: nn.Module, pairs: list[tuple[str, str]]):
        super().__init__()
        self.inner = model
        for w, a in pairs:
            self.add_module("w_" + w.replace(".", "_"), model.get_submodule(w))
            self.add_module("a_" + a.replace(".", "_"), model.get_submodule(a))

    def forward(self, x):
        return self.inner(x)


def _weight_before(model: nn.Module) -> list[tuple[str, str]]:
    """(weight layer, activation module) pairs: the last Conv2d/Linear executed before each ReLU module."""
    gm = fx.symbolic_trace(model)
    mods, last, pairs = dict(gm.named_modules()), None, []
    for n in gm.graph.nodes:
        if n.op == "call_module" and isinstance(mods[n.target], (nn.Conv2d, nn.Linear)):
            last = n.target
        elif n.op == "call_module" and isinstance(mods[n.target], (nn.ReLU, nn.ReLU6)) and last is not None:
            pairs.append((last, n.target))
    return pairs


def _normalize(model: nn.Module, calib_x, percentile: float) -> str:
    from sinabs.utils import normalize_weights

    pairs = _weight_before(model)
    if not pairs:
        raise ValueError("normalize_weights: no activation modules to normalize (functional relu)")
    wrapped = _Aliases(model, pairs)
    normalize_weights(
        wrapped,
        torch.as_tensor(calib_x),
        ["a_" + a.replace(".", "_") for _, a in pairs],
        ["w_" + w.replace(".", "_") for w, _ in pairs],
        percentile=percentile,
    )
    return (
        f"normalized {len(pairs)} layer(s) (sinabs divides each bias by its own layer's factor only; its "
        "tutorials use bias-free networks); ANN after normalization: "
    )


def run_mode(name: str, spike_fn: str, percentile, model_name: str, data) -> dict:
    import sinabs.activation as act
    import sinabs.layers as sl
    from sinabs.from_torch import from_model

    calib_x, x, y = data
    model = H.fold_bn(P.load_model(model_name))
    fan = H.site_fanouts(model)
    notes = ""
    try:
        if percentile is not None:
            notes = _normalize(model, calib_x, percentile)
            notes += f"{100 * H.ann_accuracy(model, x, y):.1f} %"
        net = from_model(
            model,
            input_shape=(1, 28, 28),
            batch_size=P.BATCH,
            spike_threshold=torch.tensor(1.0),
            spike_fn=getattr(act, spike_fn),
            reset_fn=act.MembraneSubtract(),
        ).spiking_model.eval()
    except Exception as err:  # noqa: BLE001 - whatever the peer raises is its result
        return P.error_record(name, err, notes=notes)
    mods = dict(net.named_modules())
    sites = H.activation_sites(model)  # from_model keeps module paths: IAF layer at the ReLU's path
    spiking = {p: mods[p] for p in sites.values() if p is not None and isinstance(mods[p], sl.StatefulLayer)}
    analog = [p or f"{s} (functional)" for s, p in sites.items() if p not in spiking]
    layers = list(spiking.values())

    def step(xb, k):
        b = xb.shape[0]
        for m in layers:  # IAFSqueeze unflattens (b*k, ...) with its batch_size: a last batch may be smaller
            m.batch_size = b
        out = net(xb.unsqueeze(1).expand(b, k, *xb.shape[1:]).reshape(b * k, *xb.shape[1:]))
        return out.reshape(b, k, -1)

    def reset():
        for m in layers:
            m.reset_states()

    if P.timing_only():
        return P.timing_record(name, H.time_protocol(step, reset, x, chunk=CHUNK))
    rec = H.Recorder({mods[p]: fan[s] for s, p in sites.items() if p in spiking}, P.t_grid()[-1])
    acc, spikes, synops = H.run_protocol(step, reset, x, y, rec, chunk=CHUNK)
    rec.remove()
    us = H.time_protocol(step, reset, x, chunk=CHUNK, repeats=1)  # in-run: superseded by the timing pass
    return P.mode_record(
        name,
        acc=acc,
        spikes=spikes,
        synops=synops,
        binary=spike_fn == "SingleSpike",
        spiking_layers=list(spiking),
        analog_layers=analog,
        us=us,
        notes=notes,
    )


def main() -> None:
    H.run_tool("sinabs", list(MODES), lambda name, model, data: run_mode(name, *MODES[name], model, data))


if __name__ == "__main__":
    main()
