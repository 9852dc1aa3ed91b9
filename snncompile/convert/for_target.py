"""The conversion a target can carry: ``method_for_target(target, supports, method, options)``.

A backend declares what its format holds (``Backend.supports``: ``bursts``, ``srp``, ...). The
conversion must not produce what the target cannot carry, and must say so when it adapts:

* no ``bursts`` (NIR, netx: binary spikes only): ``adafire`` (the default method) and ``adafire+ch`` keep their
  sensitivity-driven thresholds, SSC, bias correction and IAT, but with burst sizes limited to one
  spike per step (``candidates=(1,)``), logged at INFO. Explicit ``candidates`` with a burst size
  above one are refused (ConversionError), as the export would refuse the burst neurons later;
* no ``srp`` (NIR, netx): method ``srp`` is refused (its suppression mask is per-neuron state set
  from the membrane after the pre-steps).

Every other method already makes binary spikes without SRP and is returned unchanged.
"""

from __future__ import annotations

import logging

from snncompile.errors import ConversionError

__all__ = ["method_for_target"]

log = logging.getLogger("snncompile")


def method_for_target(target: str, supports, method: str | None = None,
                      options: dict | None = None) -> tuple[str, dict]:
    """(method, options) to convert with for ``target``, whose backend declares ``supports``.

    ``method`` None is the default method; ``supports`` is the backend's ``Supports`` (None, or a
    missing field, means the target carries everything). Logs each adaptation once at INFO.
    """
    from snncompile.convert import DEFAULT_METHOD

    method = method or DEFAULT_METHOD
    options = dict(options or {})
    if not getattr(supports, "bursts", True) and method in ("adafire", "adafire+ch"):
        asked = tuple(options.get("candidates", ()))
        if any(int(n) > 1 for n in asked):
            raise ConversionError(f"method {method}: candidates {asked} include burst neurons (more than one spike "
                                  f"per step); target {target} carries binary spikes only, use candidates=(1,)")
        if not asked:
            options["candidates"] = (1,)
            options.setdefault("budget", 1.0)
            log.info("target %s carries binary spikes only: method %s converts without burst neurons "
                     "(candidates=(1,), one spike per step at most)", target, method)
    if not getattr(supports, "srp", True) and method == "srp":
        raise ConversionError(f"method srp: its per-neuron suppression mask (set from the membrane after the "
                              f"pre-steps) cannot be carried by target {target}; choose another method "
                              f"(e.g. deng, which srp extends)")
    return method, options
