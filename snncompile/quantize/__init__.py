"""Float population graph -> integer population graph for a hardware profile (Loihi 2 by default).

The population graph it quantizes comes from :func:`snncompile.lower.lower_populations`.
"""

from snncompile.quantize.numbers import QuantizationWarning, quantize_bias, quantize_weights
from snncompile.quantize.profile import LOIHI2, PROFILES, HardwareProfile
from snncompile.quantize.quantize import quantize

__all__ = [
           "LOIHI2",
           "PROFILES",
           "HardwareProfile",
           "QuantizationWarning",
           "quantize",
           "quantize_bias",
           "quantize_weights",
]
