"""Compatibility shims for old dependencies that the papers' reference code uses.

imgaug 0.4.0 (the augmentation library of the DRÆM and MemSeg reference code)
was released before NumPy 2 and does not import under it: ``imgaug/imgaug.py``
reads ``np.sctypes`` at import time, and a few augmenters use the removed
aliases ``np.bool`` and ``np.complex`` when they run.

:func:`import_imgaug` makes it usable without changing NumPy for anybody else:

* ``np.sctypes`` is put back on the ``numpy`` module **only while imgaug is
  imported**, and removed again afterwards;
* the imgaug modules that use the removed aliases at run time get their
  module-level name ``np`` replaced by a thin proxy of NumPy that also answers
  ``bool``, ``complex``, ``float``, ``int``, ``object``, ``str`` and
  ``sctypes``. Every other module keeps the real NumPy.

Known limitation: ``iaa.pillike.Autocontrast`` with a *non-zero* cutoff (its
default ``cutoff=(0, 20)`` samples one) still fails under NumPy 2 / Pillow
>= 10 inside imgaug's own code (it passes NumPy integers where Pillow expects
Python ones); the reference pipelines in :mod:`adlearn.simulation.reference`
therefore use ``iaa.pillike.Autocontrast(cutoff=0)``... when the shimmed
version fails, which is what :func:`autocontrast_augmenter` returns.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

import numpy as np

__all__ = ["import_imgaug", "NumpyAliasProxy"]

# The aliases NumPy 2 removed that imgaug 0.4.0 touches (import time or run time).
_REMOVED_ALIASES: dict[str, Any] = {
    "bool": bool,
    "int": int,
    "float": float,
    "complex": complex,
    "object": object,
    "str": str,
}


def _legacy_sctypes() -> dict[str, list[type]]:
    """The value ``np.sctypes`` had in NumPy 1.x (the scalar types by kind)."""
    return {
        "int": [np.int8, np.int16, np.int32, np.int64],
        "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
        "float": [np.float16, np.float32, np.float64, np.longdouble],
        "complex": [np.complex64, np.complex128, np.clongdouble],
        "others": [bool, object, bytes, str, np.void],
    }


class NumpyAliasProxy(types.ModuleType):
    """A stand-in for the ``numpy`` module that also knows NumPy 1's removed aliases.

    Attribute reads go to the real NumPy first; only names NumPy 2 no longer
    has (``np.bool``, ``np.sctypes``, ...) are answered from the legacy table.
    """

    def __init__(self) -> None:
        super().__init__("numpy")
        self.__dict__["_legacy"] = {**_REMOVED_ALIASES, "sctypes": _legacy_sctypes()}

    def __getattr__(self, name: str) -> Any:
        legacy = self.__dict__["_legacy"]
        # NumPy 2 raises AttributeError (with a migration hint) for the removed
        # names, so check those first instead of relying on the exception.
        if name in legacy:
            return legacy[name]
        return getattr(np, name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(np)) | set(self.__dict__["_legacy"]))


def _needs_shim() -> bool:
    return int(np.__version__.split(".")[0]) >= 2


def import_imgaug() -> types.ModuleType:
    """Import ``imgaug.augmenters`` under NumPy 1 or 2 and return it (``iaa``).

    Under NumPy 2 the shim described in the module docstring is applied: the
    global ``numpy`` module is patched only for the duration of the import,
    then imgaug's own modules are pointed at :class:`NumpyAliasProxy`.

    Returns:
        The ``imgaug.augmenters`` module.

    Raises:
        ImportError: imgaug is not installed (it is listed in requirements.txt).
    """
    if "imgaug.augmenters" in sys.modules and not _needs_shim():
        return sys.modules["imgaug.augmenters"]
    if not _needs_shim():
        return importlib.import_module("imgaug.augmenters")

    patched_sctypes = "sctypes" not in np.__dict__
    if patched_sctypes:
        # Setting the attribute puts it in the module __dict__, which wins over
        # NumPy 2's module-level __getattr__ that would raise.
        np.sctypes = _legacy_sctypes()  # type: ignore[attr-defined]
    try:
        try:
            augmenters = importlib.import_module("imgaug.augmenters")
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError(
                "imgaug is needed for the reference (per-sample) anomaly pipelines; "
                "install it with `pip install imgaug==0.4.0` (it is in requirements.txt)."
            ) from error
    finally:
        if patched_sctypes:
            del np.sctypes  # type: ignore[attr-defined]

    proxy = NumpyAliasProxy()
    for name, module in list(sys.modules.items()):
        if (name == "imgaug" or name.startswith("imgaug.")) and getattr(module, "np", None) is np:
            module.np = proxy  # type: ignore[attr-defined]
    return augmenters
