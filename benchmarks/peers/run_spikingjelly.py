"""SpikingJelly 2.0.0 ann2snn on the peer protocol (run with .venv-spikingjelly/bin/python).

``Converter(RateCodingRecipe(dataloader, mode))``: Conv-BN fusion, then every ``nn.ReLU`` becomes
VoltageScaler(1/s) -> IFNode(soft reset, threshold 1) -> VoltageScaler(s), s from calibration
(an exponential moving average, momentum 0.1, of the per-batch statistic over the calibration
batches of 100). Modes: "max", "99.9%", and 0.5 (half the max). The net runs single-step on the
constant image, state reset per batch; its last layer is analog and is accumulated. Spikes are
the IFNodes' binary outputs; synops use our fan-out (SpikingJelly's SynOpCounter counts 0 here).
"""

from __future__ import annotations

import harness as H
import protocol as P
import torch

MODES = {"max": "max", "99.9%": "99.9%", "0.5": 0.5}


def _convert(model, calib_x, mode):
    from spikingjelly.activation_based.ann2snn import Converter
    from spikingjelly.activation_based.ann2snn.recipes.rate_coding import RateCodingRecipe

    loader = [torch.as_tensor(calib_x[i : i + P.BATCH]) for i in range(0, len(calib_x), P.BATCH)]
    return Converter(RateCodingRecipe(loader, mode=mode)).convert(model)


def run_mode(name: str, mode, model_name: str, data) -> dict:
    from spikingjelly.activation_based import functional, neuron

    calib_x, x, y = data
    model = P.load_model(model_name)
    fan = H.site_fanouts(model)
    try:
        snn = _convert(model, calib_x, mode).eval()
    except Exception as err:  # noqa: BLE001 - whatever the peer raises is its result
        return P.error_record(name, err)
    mods = dict(snn.named_modules())
    neurons = [
        mods[n.target]
        for n in snn.graph.nodes  # graph order = the ANN's execution order
        if n.op == "call_module" and isinstance(mods[n.target], neuron.BaseNode)
    ]
    n_sites = len(fan)
    analog = list(fan)[len(neurons) :]

    def step(xb, k):
        return torch.stack([snn(xb) for _ in range(k)], 1)

    def reset():
        functional.reset_net(snn)

    if P.timing_only():
        return P.timing_record(name, H.time_protocol(step, reset, x))
    rec = H.Recorder(dict(zip(neurons, fan.values())), P.t_grid()[-1])
    acc, spikes, synops = H.run_protocol(step, reset, x, y, rec)
    rec.remove()
    us = H.time_protocol(step, reset, x, repeats=1)  # in-run: superseded by the timing pass
    return P.mode_record(
        name,
        acc=acc,
        spikes=spikes,
        synops=synops,
        binary=True,
        spiking_layers=list(fan)[: len(neurons)],
        analog_layers=analog,
        us=us,
        notes=f"{len(neurons)} IFNode(s) for {n_sites} activation(s)",
    )


def main() -> None:
    H.run_tool("spikingjelly", list(MODES), lambda name, model, data: run_mode(name, MODES[name], model, data))


if __name__ == "__main__":
    main()
