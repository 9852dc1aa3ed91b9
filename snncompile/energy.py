"""Energy estimates with cited constants (all energies in joules per sample).

Models
------
``horowitz45nm``: M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014,
45 nm CMOS: a 32-bit float multiply-accumulate costs 4.6 pJ (multiply 3.7 pJ + add 0.9 pJ), a 32-bit
float add 0.9 pJ. ANN = MACs x 4.6 pJ; SNN = synaptic operations (accumulates) x 0.9 pJ.

``loihi``: M. Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning",
IEEE Micro 38(1), 2018, Table 1: 23.6 pJ per synaptic spike operation, 52 pJ per inactive and
81 pJ per active neuron update, 1.7 pJ per within-tile spike. SNN = synops x 23.6 + (neuron updates -
spikes) x 52 + spikes x (81 + 1.7) pJ, with neuron updates = neurons x timesteps. The ANN side keeps
Horowitz's 4.6 pJ per MAC (a conventional accelerator).

Users may pass their own constants (a JSON object with the keys below; ``model`` names it).
"""

from __future__ import annotations

import math
from pathlib import Path

from snncompile.errors import DataError

__all__ = ["ENERGY_MODELS", "estimate", "load_constants"]

ENERGY_MODELS: dict[str, dict] = {
    "horowitz45nm": {
        "model": "horowitz45nm", "ann_mac_pj": 4.6, "snn_synop_pj": 0.9, "neuron_update_pj": 0.0,
        "active_neuron_update_pj": 0.0, "spike_pj": 0.0,
        "citation": "Horowitz, Computing's energy problem, ISSCC 2014 (45 nm): FP32 MAC 4.6 pJ, FP32 add 0.9 pJ",
    },
    "loihi": {
        "model": "loihi", "ann_mac_pj": 4.6, "snn_synop_pj": 23.6, "neuron_update_pj": 52.0,
        "active_neuron_update_pj": 81.0, "spike_pj": 1.7,
        "citation": "Davies et al., Loihi, IEEE Micro 38(1) 2018, Table 1; the ANN side (and the SNN's analog input "
                    "layer) is a 45 nm FP32 MAC, 4.6 pJ: Horowitz ISSCC 2014",
    },
}
_KEYS = ("ann_mac_pj", "snn_synop_pj", "neuron_update_pj", "active_neuron_update_pj", "spike_pj")


def load_constants(spec: str) -> dict:
    """A built-in model name or the path of a JSON file with the keys of :data:`ENERGY_MODELS`.

    Every constant must be a finite number >= 0 (pJ); the file is read only if it is a regular file
    of at most 1 MiB."""
    from snncompile.safeio import clean, read_json

    if spec in ENERGY_MODELS:
        return dict(ENERGY_MODELS[spec])
    p = Path(spec)
    if not p.exists():
        raise DataError(f"{clean(spec)}: not a known energy model ({', '.join(ENERGY_MODELS)}) nor a readable "
                        f"JSON file")
    c = read_json(p, "energy constants", cap=1 << 20)
    if not isinstance(c, dict):
        raise DataError(f"{clean(spec)}: energy constants must be a JSON object with keys {', '.join(_KEYS)}")
    missing = [k for k in _KEYS if not _number(c.get(k))]
    if missing:
        raise DataError(f"{clean(spec)}: energy constants need numeric keys {', '.join(missing)}")
    bad = [k for k in _KEYS if not (math.isfinite(c[k]) and c[k] >= 0)]
    if bad:
        raise DataError(f"{clean(spec)}: energy constant {bad[0]} = {c[bad[0]]!r}; each must be a finite number >= 0 (pJ)")
    return {"model": clean(c.get("model", p.stem), 80), "citation": clean(c.get("citation", "user-supplied"), 300),
            **{k: float(c[k]) for k in _KEYS}}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def estimate(constants: dict, *, ann_macs: float, synops: float, spikes: float, neuron_updates: float,
             input_macs: float = 0.0) -> dict:
    """Per-sample energies (J) of the ANN and the SNN from per-sample operation counts.

    ``input_macs``: the SNN's first weighted layers act on the analog input, not on spikes: they
    are multiply-accumulates at the ANN's MAC energy, once per sample (the input is held constant
    over the sample's steps)."""
    pj = 1e-12
    ann = ann_macs * constants["ann_mac_pj"] * pj
    snn = (synops * constants["snn_synop_pj"] + max(neuron_updates - spikes, 0.0) * constants["neuron_update_pj"]
           + spikes * (constants["active_neuron_update_pj"] + constants["spike_pj"])
           + input_macs * constants["ann_mac_pj"]) * pj
    return {"model": constants["model"], "constants": {k: constants[k] for k in (*_KEYS, "citation")},
            "ann_joules_per_sample": ann, "snn_joules_per_sample": snn, "ratio": (ann / snn) if snn else None,
            "input_macs_per_sample": float(input_macs),
            "input_layer": "analog input held constant: its layers' MACs counted once per sample at ann_mac_pj"}
