"""Custom Lava processes."""
