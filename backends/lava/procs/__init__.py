"""Custom Lava processes for converted networks: :class:`IFSoft` and :class:`Passthrough`.

Each process lives in its own module together with its ``fixed_pt`` and ``floating_pt``
ProcessModels. Lava's model discovery executes every ``.py`` file in this directory as a
standalone module, so those modules import only numpy and Lava, with absolute imports. This
``__init__`` (which discovery skips) first applies the Python 3.11 shim, because importing
``AbstractProcess`` pulls in the module the shim fixes.
"""

from snncompile.backends.lava.compat import apply as _apply_lava_shim

_apply_lava_shim()

from .if_soft import IFSoft
from .passthrough import Passthrough

__all__ = ["IFSoft", "Passthrough"]
