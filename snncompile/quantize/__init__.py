"""SNN IR -> integer population IR for a hardware profile (Loihi 2 by default)."""

from snncompile.quantize.lower import lower_populations
from snncompile.quantize.numbers import QuantizationWarning, quantize_bias, quantize_weights
from snncompile.quantize.profile import LOIHI2, PROFILES, HardwareProfile
from snncompile.quantize.quantize import quantize

__all__ = [
           "LOIHI2",
           "PROFILES",
           "HardwareProfile",
           "QuantizationWarning",
           "lower_populations",
           "quantize",
           "quantize_bias",
           "quantize_weights",
]
