"""Where adlearn keeps data: one root folder for downloads and generated data sets.

The root is, in this order of preference:

1. ``$ADLEARN_DATA`` when that environment variable is set;
2. the repository's ``data/`` folder when adlearn runs from a checkout of the
   book (the folder that holds ``_config.yml`` next to the ``adlearn``
   package), so the built-in data set lands beside the notebooks and stays
   git-ignored;
3. ``~/.cache/adlearn`` otherwise (a pip-installed adlearn, e.g. on Colab).

Local copies of public data sets (e.g. on a machine without a network) are found
by :func:`find_local_copy` in the data root and in the folders named by
``$ADLEARN_LOCAL_DATA``; every loader asks it before downloading.
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


# --------------------------------------------------------------------------- local copies

LOCAL_DATA_ENV_VAR = "ADLEARN_LOCAL_DATA"

#: The data sets a local copy can hold, each with the folder names it may have (the first is
#: the canonical one, used in the data root): ``<folder>/mnist/*.gz`` (the raw IDX files),
#: ``<folder>/dtd/images/<class>/``, ``<folder>/magnetic-tile/MT_*/`` and ``<folder>/mvtec_ad/<category>/``.
LOCAL_COPY_FOLDERS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist",),
    "dtd": ("dtd",),
    "magnetic-tile": ("magnetic-tile",),
    "mvtec_ad": ("mvtec_ad", "mvtec"),
}
#: MNIST's four IDX files; a local copy may hold each one gzipped (``<name>.gz``) or not.
MNIST_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)


def local_data_folders() -> list[Path]:
    """The folders named by ``$ADLEARN_LOCAL_DATA`` (separated by ``os.pathsep``), in order; empty entries skipped."""
    entries = os.environ.get(LOCAL_DATA_ENV_VAR, "").split(os.pathsep)
    return [Path(entry.strip()).expanduser().resolve() for entry in entries if entry.strip()]


def display_path(path: str | Path) -> str:
    """``path`` as the notebooks print it: ``<data>/...`` under the data root, ``<local>/...`` under a
    ``$ADLEARN_LOCAL_DATA`` folder, else as given; committed outputs then hold no machine's absolute paths."""
    resolved = Path(path).expanduser().resolve()
    for label, base in [("<data>", default_data_root().resolve())] + [("<local>", f) for f in local_data_folders()]:
        try:
            return str(Path(label) / resolved.relative_to(base))
        except ValueError:
            continue
    return str(path)


def mnist_file(folder: Path, name: str) -> Path | None:
    """``folder/name`` or ``folder/name.gz``, whichever is a file (the uncompressed one first)."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def looks_like(name: str, folder: str | Path) -> bool:
    """Whether ``folder`` has the layout of data set ``name`` (a key of :data:`LOCAL_COPY_FOLDERS`).

    Cheap checks on names only (no file is read), so a stale or empty folder does not
    hide a good copy further down the search path; the loaders check the contents.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return False
    if name == "mnist":
        return all(mnist_file(folder, file) is not None for file in MNIST_FILES)
    if name == "dtd":
        return (folder / "images").is_dir()
    if name == "magnetic-tile":
        return any(child.is_dir() for child in folder.glob("MT_*"))
    if name == "mvtec_ad":
        return any((child / "train").is_dir() or (child / "test").is_dir() for child in folder.iterdir() if child.is_dir())
    raise ValueError(f"unknown data set {name!r}; expected one of {list(LOCAL_COPY_FOLDERS)}.")


def find_local_copies(name: str) -> list[Path]:
    """Every folder holding data set ``name``: in the data root, then in each ``$ADLEARN_LOCAL_DATA`` folder.

    The data root comes first, so what was downloaded or imported there
    (``python -m adlearn data import``) wins over the environment's copies.

    Args:
        name: ``"mnist"``, ``"dtd"``, ``"magnetic-tile"`` or ``"mvtec_ad"``.

    Returns:
        The folders (``<base>/<folder name>``) that pass :func:`looks_like`, without duplicates.
    """
    if name not in LOCAL_COPY_FOLDERS:
        raise ValueError(f"unknown data set {name!r}; expected one of {list(LOCAL_COPY_FOLDERS)}.")
    found: list[Path] = []
    for base in [default_data_root(), *local_data_folders()]:
        for folder_name in LOCAL_COPY_FOLDERS[name]:
            candidate = base / folder_name
            if candidate not in found and looks_like(name, candidate):
                found.append(candidate)
    return found


def find_local_copy(name: str) -> Path | None:
    """The first folder :func:`find_local_copies` finds for data set ``name``, or ``None``.

    Every loader asks this before it downloads anything.
    """
    copies = find_local_copies(name)
    return copies[0] if copies else None
