"""SNN Toolbox 0.6.0 on the peer protocol (run with .venv-snntoolbox/bin/python).

The torch model is rebuilt in Keras by hand (keras_models.py; max logit difference recorded), then
the toolbox's own steps: parse (``softmax_to_relu = True``, which the toolbox's docs recommend: the
output layer spikes like the others instead of sampling from a softmax), ``normalize_parameters``
(percentile 99.9 on the calibration set), build the INI temporal-mean-rate SNN (reset by
subtraction, constant analog input, dt 1). Its
``simulate`` loop is unrolled here, step for step as the toolbox does it, so that spikes can be
read at every T: prediction at T = argmax of the output layer's spike counts over the first T steps,
a sample whose output has not spiked yet counts as wrong (the toolbox's rule). Spikes: every
spiking layer's spike train except the output layer's (the readout, not counted for any tool);
INI's pooling layers spike too and are counted. Synops: the toolbox's
own per-layer counter (``get_layer_synaptic_operations`` with its fan-outs).
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_models as K
import numpy as np
import protocol as P
import torch

CONFIG = """[paths]
path_wd = {wd}
dataset_path = {wd}
filename_ann = {name}
[tools]
evaluate_ann = False
normalize = True
[normalization]
percentile = 99.9
[simulation]
simulator = INI
duration = {T}
batch_size = {batch}
num_to_test = {n}
keras_backend = tensorflow
[conversion]
softmax_to_relu = True
[cell]
reset = Reset by subtraction
[input]
poisson_input = False
[output]
log_vars = {{'spiketrains_n_b_l_t', 'synaptic_operations_b_t'}}
plot_vars = {{}}
verbose = 0
"""


def _build_snn(name: str, keras_model, calib_x: np.ndarray, x: np.ndarray, y: np.ndarray, wd: Path):
    """Parse, normalize and build the INI SNN with the toolbox's own functions."""
    from snntoolbox.bin.utils import import_target_sim, update_setup
    from snntoolbox.conversion.utils import normalize_parameters
    from snntoolbox.parsing.model_libs import keras_input_lib

    keras_model.compile("sgd", "categorical_crossentropy", ["accuracy"])  # the parser reads loss and metrics
    keras_model.save(wd / f"{name}.h5")
    # update_setup insists on these files; the simulation below takes the arrays directly
    np.savez_compressed(wd / "x_norm.npz", calib_x)
    np.savez_compressed(wd / "x_test.npz", x)
    np.savez_compressed(wd / "y_test.npz", np.eye(10, dtype=np.float32)[y])
    cfg = wd / "config"
    cfg.write_text(CONFIG.format(wd=wd, name=name, T=P.t_grid()[-1], batch=P.BATCH, n=len(x)))
    config = update_setup(str(cfg))
    parser = keras_input_lib.ModelParser(keras_input_lib.load(str(wd), name)["model"], config)
    parser.parse()
    parsed = parser.build_parsed_model()
    normalize_parameters(parsed, config, x_norm=calib_x)
    snn = import_target_sim(config).SNN(config)
    snn.build(parsed)
    return snn


def _simulate(snn, xb: np.ndarray, counting: bool):
    """One batch to T_max: (output spike counts (B, classes, T) cumulative, spikes[t], synops[t])."""
    from snntoolbox.simulation.utils import get_layer_synaptic_operations
    from tensorflow import keras

    T, n = P.t_grid()[-1], xb.shape[0]
    if n < P.BATCH:  # the INI model is built for batches of P.BATCH: pad, and read only the first n
        xb = np.concatenate([xb, np.zeros((P.BATCH - n, *xb.shape[1:]), xb.dtype)])
    snn.reset(0)
    if counting and snn.fanout is None:
        snn.set_connectivity()
    out = np.zeros((n, snn.num_classes, T))
    spikes, synops = np.zeros(T), np.zeros(T)
    for t in range(T):
        snn.set_time(np.float32(t + 1))
        out[:, :, t] = snn.snn.predict_on_batch(xb)[:n] > 0
        if not counting:
            continue
        i = 0
        for layer in snn.snn.layers:
            if getattr(layer, "spiketrain", None) is not None:
                st = keras.backend.get_value(layer.spiketrain)[:n]
                if layer is not snn.snn.layers[-1]:  # the output layer is the readout: not counted, as for the others
                    spikes[t] += np.count_nonzero(st)
                synops[t] += get_layer_synaptic_operations(st, snn.fanout[i + 1]).sum()
                i += 1
    return np.cumsum(out, 2), spikes, synops


def _time(snn, xs: np.ndarray, repeats: int = 3) -> dict[str, float]:
    """Timing-only run (no spike reading): one batch to T_max, us per sample-step, after an untimed
    warm-up (TensorFlow traces its step function on the first call), ``repeats`` times, the median.
    A batch of fewer than P.BATCH samples is padded (the INI model has a fixed batch size) and
    counted as P.BATCH."""
    T = P.t_grid()[-1]
    snn.reset(0)
    snn.set_time(np.float32(1))
    snn.snn.predict_on_batch(np.resize(xs[: P.BATCH], (P.BATCH, *xs.shape[1:])))
    return P.median_us(lambda: _simulate(snn, xs[: P.BATCH], False), P.BATCH * T, repeats)


def run_model(name: str, data) -> tuple[float, dict]:
    calib_x, x, y = data
    torch_model = P.load_model(name)
    keras_model = K.build_keras(name, P.load_model(name))
    diff = K.check(keras_model, torch_model, x[:200])
    ann = float((keras_model.predict(x.transpose(0, 2, 3, 1), verbose=0).argmax(1) == y).mean())
    notes = f"Keras rebuild, max |softmax diff| vs torch {diff:.1e}; Keras ANN {100 * ann:.1f} %"
    if any(getattr(lyr, "max_value", None) is not None for lyr in keras_model.layers):
        notes += (
            "; ReLU(max_value=6) is parsed as a plain ReLU ('Parsing ReLU parameters not yet implemented')"
        )
    grid = P.t_grid()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            snn = _build_snn(
                name, keras_model, calib_x.transpose(0, 2, 3, 1), x.transpose(0, 2, 3, 1), y, Path(tmp)
            )
        except Exception as err:  # noqa: BLE001 - whatever the peer raises is its result
            traceback.print_exc()
            return ann, P.error_record("percentile 99.9", err, notes=notes)
        xs = x.transpose(0, 2, 3, 1)
        if P.timing_only():
            return ann, P.timing_record("percentile 99.9", _time(snn, xs))
        correct, spikes, synops = np.zeros(len(grid)), np.zeros(grid[-1]), np.zeros(grid[-1])
        for i in range(0, len(xs), P.BATCH):
            cum, sp, so = _simulate(snn, xs[i : i + P.BATCH], True)
            guess = cum.argmax(1)
            guess[cum.sum(1) == 0] = -1
            correct += [(guess[:, t - 1] == y[i : i + P.BATCH]).sum() for t in grid]
            spikes, synops = spikes + sp, synops + so
        us = _time(snn, xs, repeats=1)  # in-run: superseded by the timing pass
        layers = [lyr.name for lyr in snn.snn.layers if getattr(lyr, "spiketrain", None) is not None]
    idx = [t - 1 for t in grid]
    rec = P.mode_record(
        "percentile 99.9",
        acc=correct / len(x),
        spikes=np.cumsum(spikes)[idx] / len(x),
        synops=np.cumsum(synops)[idx] / len(x),
        binary=True,
        spiking_layers=layers,
        analog_layers=[],
        us=us,
        notes=notes,
    )
    return ann, rec


def main() -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(P.THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    torch.set_num_threads(P.THREADS)
    data = P.load_data()
    for name in P.models():
        started = time.time()
        ann, rec = run_model(name, data)
        print(f"  snntoolbox {name}: {P.describe(rec)}", flush=True)
        path = P.write_result(
            "snntoolbox",
            name,
            version=P.version_of("snntoolbox"),
            ann_accuracy=ann,
            modes=[rec],
            started=started,
        )
        print(f"snntoolbox {name}: wrote {path}", flush=True)


if __name__ == "__main__":
    main()
