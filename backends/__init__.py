"""Backends: lower the integer SNN IR to a target (installed as snncompile.backends)."""
