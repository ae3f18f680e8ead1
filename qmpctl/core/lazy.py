"""numpy, imported on first use.

Importing numpy is a tenth of a second of every start (docs/testing.md, "Time
per run"), and a `qmpctl migrate` first needs it when memory is compared. The
verify modules name numpy through `numpy` here; the runner loads it with
`preload` while the migration runs, when the controller has nothing else to
do, so the compare does not wait for it either.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule(types.ModuleType):
    """A module that is imported when one of its attributes is first read;
    after that it holds the module's attributes itself, so reading them costs
    what reading a module's costs. Importing twice is harmless (Python's
    import lock and `sys.modules`), so threads may share it."""

    def __getattr__(self, name: str) -> Any:
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        return getattr(module, name)


numpy: Any = LazyModule("numpy")


def preload() -> None:
    """Import what `LazyModule` left for later, now."""
    numpy.ndarray  # noqa: B018  (the read is the import)
