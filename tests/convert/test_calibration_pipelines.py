"""Li et al. 2021's method names mean the authors' pipelines; our variants have names of their own.

The authors' code (yhhhli/SNN_Calibration): ``--calib light`` runs bias correction only;
``--calib advanced`` runs potential correction on CIFAR and weight calibration (1024 samples,
5000 iterations, lr 1e-5) plus potential correction on ImageNet. Which IF fields each method
changes shows which corrections it ran: BC writes the per-channel ``bias``, PC the per-neuron
``v0``, WC the weights of the block feeding the layer.
"""

import inspect

import numpy as np
import pytest

from snncompile.convert import METHODS, convert
from snncompile.convert.calibration import WC_BUDGET, snn_calibration
from snncompile.errors import ConversionError

T = 8
LAYERS = ("r1", "r2", "r3")
WEIGHTS = ("c1", "c2", "fc1", "fc2")


def _changed(snn, cnn):
    """(BC ran, PC ran, WC ran) read off the converted graph."""
    bc = any(np.any(snn.nodes[n].bias != 0) for n in LAYERS)
    pc = any(snn.nodes[n].v0.shape == snn.shapes[n] for n in LAYERS)
    wc = any(not np.array_equal(snn.nodes[n].weight, cnn.nodes[n].weight) for n in WEIGHTS)
    return bc, pc, wc


@pytest.mark.parametrize("method,options,expected", [
    ("calib-light", {}, (True, False, False)),
    ("calib-advanced", {}, (False, True, False)),
    ("calib-advanced", {"wc": True, "wc_iters": 30, "wc_samples": 64, "wc_lr": 1e-3}, (False, True, True)),
    ("calib-light+pc", {}, (True, True, False)),
    ("calib-wc+pc", {}, (False, True, True)),
])
def test_each_method_runs_its_corrections(cnn, data, method, options, expected):
    snn = convert(cnn, data, method, T, progress=False, **options)
    assert _changed(snn, cnn) == expected
    for n in LAYERS:  # every pipeline starts from the MSE threshold with v0 = theta/2
        v0 = np.broadcast_to(snn.nodes[n].v0, snn.shapes[n])
        if not expected[1]:
            assert np.allclose(v0, np.asarray(snn.nodes[n].theta) / 2)


def test_advanced_weight_calibration_defaults_to_the_papers_budget():
    params = inspect.signature(snn_calibration).parameters
    assert {k: params[k].default for k in WC_BUDGET} == WC_BUDGET == {
        "wc_samples": 1024, "wc_iters": 5000, "wc_lr": 1e-5, "wc_batch": 32}
    assert METHODS["calib-wc+pc"].fixed == {"pipeline": "advanced", "wc": True, "wc_samples": 128,
                                            "wc_iters": 300, "wc_lr": 1e-4}


def test_weight_calibration_only_belongs_to_the_advanced_pipeline(cnn, data):
    with pytest.raises(ConversionError, match="method 'calib-light': unknown option\\(s\\) wc"):
        convert(cnn, data, "calib-light", T, progress=False, wc=True)
    with pytest.raises(ConversionError, match="method 'calib-wc\\+pc': unknown option\\(s\\) wc_iters"):
        convert(cnn, data, "calib-wc+pc", T, progress=False, wc_iters=10)
