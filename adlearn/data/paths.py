"""Where adlearn keeps data: one root folder for downloads and generated data sets.

The root is, in this order of preference:

1. ``$ADLEARN_DATA`` when that environment variable is set;
2. the repository's ``data/`` folder when adlearn runs from a checkout of the
   book (the folder that holds ``_config.yml`` next to the ``adlearn``
   package), so the built-in data set lands beside the notebooks and stays
   git-ignored;
3. ``~/.cache/adlearn`` otherwise (a pip-installed adlearn, e.g. on Colab).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV_VAR = "ADLEARN_DATA"

# The file that marks the top of a checkout of the book (Jupyter Book's configuration).
_CHECKOUT_MARKER = "_config.yml"


def repository_root() -> Path | None:
    """The checkout folder that holds the ``adlearn`` package and ``_config.yml``, if any.

    Returns:
        The folder, or ``None`` when adlearn is installed outside a checkout.
    """
    package_parent = Path(__file__).resolve().parents[2]
    if (package_parent / _CHECKOUT_MARKER).is_file() and (package_parent / "adlearn").is_dir():
        return package_parent
    return None


def default_data_root() -> Path:
    """The folder where data sets are downloaded to and generated in (see the module docstring).

    The folder is not created here; the functions that write into it create it.

    Returns:
        An absolute path.
    """
    from_environment = os.environ.get(DATA_ENV_VAR, "").strip()
    if from_environment:
        return Path(from_environment).expanduser().resolve()
    checkout = repository_root()
    if checkout is not None:
        return checkout / "data"
    return Path.home() / ".cache" / "adlearn"
