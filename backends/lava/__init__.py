"""Lava backend."""
