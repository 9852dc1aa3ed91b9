"""SIGTERM handling shared by the CLI and the long-running loops.

The CLI's SIGTERM handler raises :class:`Terminated` (a KeyboardInterrupt, so the cleanup of
Ctrl-C runs: Lava stopped, temporary output removed) and records the request here. A Python
exception raised by a signal handler is lost when the signal lands inside an at-fork callback
(``logging``'s, while Lava forks its processes): the run would go on and exit 0. So the loops that
can run for long (the Lava runner, the simulators' batches, the pipeline's stages, the output
writer) call :func:`checkpoint`, which raises :class:`Terminated` again while a request is pending.
"""

from __future__ import annotations

__all__ = ["Terminated", "checkpoint", "clear", "pending", "request"]

_pending = False


class Terminated(KeyboardInterrupt):
    """SIGTERM (CI cancellation, ``timeout``): unwinds like Ctrl-C, then the CLI exits 143."""


def request() -> None:
    global _pending
    _pending = True


def pending() -> bool:
    """Whether a SIGTERM has been requested and not cleared."""
    return _pending


def clear() -> None:
    global _pending
    _pending = False


def checkpoint() -> None:
    """Raise Terminated if a SIGTERM arrived and its exception was lost (see the module doc)."""
    if _pending:
        raise Terminated()
