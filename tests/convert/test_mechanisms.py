"""The seed papers' mechanisms, measured on the example MNIST CNN (numbers: docs/mechanisms.md).

* Deng & Gu 2021: with the same thresholds, a soft-reset IF started at v0 = 0 computes the floor
  quantizer, whose layer-wise mean error r - a is about -theta/(2T) on the activations inside the
  quantization range; the shift (v0 = theta/2) makes it about 0. Layer-wise as in their analysis:
  each layer's IF gets the ANN's own pre-activation as its constant input for T steps.
* Li et al. 2021: bias correction (BC) shrinks the per-channel mean error E[a - r] of the layer it
  corrects, potential correction (PC) the per-neuron mean error; measured layer by layer in the
  SNN, each layer after the corrections of the layers before it, on the calibration samples the
  correction was computed on. The bounds are on the whole network (sum over layers): on this CNN
  the first layer, whose input is the constant image, does not improve (docs/mechanisms.md says why).
"""

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from snncompile import load_onnx
from snncompile.convert import convert
from snncompile.convert.bias_correction import correct_bias, correct_potential, layer_error
from snncompile.convert.calib_set import make_calib_set
from snncompile.ir import IF
from snncompile.ir.arrays import per_channel
from tests.convert.conftest import EXAMPLES

MODEL = EXAMPLES / "mnist_cnn.onnx"
pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="examples/mnist_cnn.onnx not present")
T = 8


@pytest.fixture(scope="module")
def mnist():
    ann = load_onnx(MODEL)
    x = np.load(EXAMPLES / "data" / "mnist_calib.npz")["x"][:256]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dead-channel notices
        snn = convert(ann, x, "deng", T, progress=False, threshold="mse")
    return ann, x, snn


def _layerwise_error(node: IF, z: torch.Tensor, a: torch.Tensor, v0_in_theta: float) -> float:
    """Mean r - a over neurons with 0 < a < theta, in units of theta/(2T), for IF ``node`` fed z."""
    theta = per_channel(node.theta, z)
    neuron = dataclasses.replace(node, v0=np.asarray(node.theta, np.float32) * v0_in_theta)
    v, total = neuron.init_state(z), torch.zeros_like(z)
    for _ in range(T):
        n, v = neuron.step(z, v)
        total += n
    inside = (a > 0) & (a < theta)
    return float(((total * theta / T - a) / (theta / (2 * T)))[inside].mean())


def test_deng_shift_centres_the_layerwise_conversion_error(mnist):
    ann, x, snn = mnist
    _, acts = ann.run(x, record=True)
    for node in snn.of_type(IF):
        z, a = acts[ann.nodes[node.name].inputs[0]], acts[node.name]
        floor, shifted = _layerwise_error(node, z, a, 0.0), _layerwise_error(node, z, a, 0.5)
        assert -1.2 < floor < -0.6, (node.name, floor)  # about -theta/(2T)
        assert abs(shifted) < 0.15, (node.name, shifted)  # about 0


def _channel_mean(e: torch.Tensor) -> torch.Tensor:
    return e.mean(dim=tuple(range(1, e.dim()))) if e.dim() > 1 else e


@pytest.mark.parametrize("correction,reduce", [(correct_bias, _channel_mean), (correct_potential, lambda e: e)])
def test_li_corrections_shrink_the_error_they_target(mnist, correction, reduce):
    ann, x, snn = mnist
    calib = make_calib_set(ann, x, progress=False)
    before = after = 0.0
    for node in snn.of_type(IF):
        before += float(reduce(layer_error(ann, snn, calib, node.name, T, 128)).abs().mean())
        snn, _ = correction(ann, snn, calib, node.name, T, 128)
        after += float(reduce(layer_error(ann, snn, calib, node.name, T, 128)).abs().mean())
    assert after < 0.5 * before, (before, after)
