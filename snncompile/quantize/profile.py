"""Hardware profiles: the integer formats a target's neurons and synapses use.

The Loihi 2 profile mirrors Lava 0.10.0's bit-accurate ``fixed_pt`` models (values read from
``lava/proc/dense/models.py`` ``PyDenseModelBitAcc.run_spk``, ``lava/utils/weightutils.py``
``clip_weights``/``truncate_weights`` and ``lava/proc/lif/models.py`` ``AbstractPyLifModelFixed``):

* synaptic weights: 8-bit magnitude + sign. Lava clips to ``[-2**8, 2**8 - 1]`` and, when a matrix
  has mixed signs, truncates the LSB (``(w >> 1) << 1``), so a mixed-sign mantissa is an even integer
  in ``[-256, 254]``; one-signed matrices keep ``[0, 255]`` / ``[-255, 0]``. The effective weight
  is ``w << weight_exp`` (a negative exponent right-shifts the accumulated sum, flooring).
* membrane ``v``: 24-bit signed, saturating at ``±(2**23 - 1)``.
* threshold: unsigned 17-bit mantissa ``vth``; the effective threshold is ``vth << 6``.
* synaptic input ``a_in`` is shifted left by 6 before it is added to ``v``.
* bias: 13-bit signed mantissa and 3-bit unsigned exponent, ``bias_mant << bias_exp``.
* graded spikes carry up to 24-bit payloads (``num_message_bits``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LOIHI2", "PROFILES", "HardwareProfile"]


@dataclass(frozen=True)
class HardwareProfile:
    """Integer constraints of a neuromorphic target (all widths in bits)."""

    name: str
    weight_bits: int = 8  # magnitude bits of a weight mantissa (sign extra)
    mixed_sign_drops_lsb: bool = True  # Lava truncates the LSB of mixed-sign matrices
    weight_exp_min: int = -8
    weight_exp_max: int = 7
    membrane_bits: int = 24  # signed, saturating
    vth_bits: int = 17  # unsigned threshold mantissa
    vth_shift: int = 6  # effective threshold = vth << vth_shift
    act_shift: int = 6  # synaptic input is added as a_in << act_shift
    bias_mant_bits: int = 13  # signed
    bias_exp_max: int = 7  # unsigned 3-bit exponent
    payload_bits: int = 24  # graded spike payload, signed
    input_bits: int = 8  # input current payload (unsigned pixel-like values)
    headroom_bits: int = 5  # membrane range kept free above the threshold (saturation margin)
    accum_exact_bits: int = 24  # |a_in| bound that Lava's float32 Conv keeps exact (and clamps to)

    @property
    def v_max(self) -> int:
        return 2 ** (self.membrane_bits - 1) - 1

    @property
    def vth_max(self) -> int:
        return 2**self.vth_bits - 1

    @property
    def bias_mant_max(self) -> int:
        return 2 ** (self.bias_mant_bits - 1) - 1

    def weight_range(self, mixed: bool) -> tuple[int, int, int]:
        """(low, high, step) of a weight mantissa for a mixed-sign or one-signed matrix."""
        top = 2**self.weight_bits
        if mixed:
            step = 2 if self.mixed_sign_drops_lsb else 1
            return -top, top - step, step
        return -(top - 1), top - 1, 1


LOIHI2 = HardwareProfile(name="loihi2")
PROFILES = {"loihi2": LOIHI2}
