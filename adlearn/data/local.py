"""Local copies of data sets: link them into the data root, and say what is where.

A local copy is a folder holding public data sets in their published layouts
(``mnist/*.gz``, ``dtd/images/<class>/``, ``magnetic-tile/MT_*/``,
``mvtec_ad/<category>/``). The loaders find one through
:func:`adlearn.data.paths.find_local_copy` when ``$ADLEARN_LOCAL_DATA`` names
its folder; :func:`import_local_copies` links one into the data root instead,
so it is found without the variable (``python -m adlearn data import PATH``).
:func:`data_inventory` backs ``python -m adlearn data list``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from adlearn.data.builtin import MANIFEST_NAME
from adlearn.data.magnetic_tile import MAGNETIC_TILE_TYPES, _photographs
from adlearn.data.mnist import read_idx
from adlearn.data.mvtec import list_categories
from adlearn.data.paths import LOCAL_COPY_FOLDERS, default_data_root, find_local_copies, looks_like, mnist_file
from adlearn.data.textures import dtd_image_paths


@dataclass(frozen=True)
class ImportResult:
    """One data set met by :func:`import_local_copies`.

    Attributes:
        name: the data set (a key of :data:`adlearn.data.paths.LOCAL_COPY_FOLDERS`).
        source: the folder found in the imported path.
        link: the symbolic link in the data root.
        linked: whether the link was made now (``False``: something was already there and was left alone).
    """

    name: str
    source: Path
    link: Path
    linked: bool


def _recognised(path: Path) -> dict[str, Path]:
    """The data sets in ``path``'s sub-folders (by their usual names), or else ``path`` itself as one."""
    found: dict[str, Path] = {}
    for name, folder_names in LOCAL_COPY_FOLDERS.items():
        for folder_name in folder_names:
            if name not in found and looks_like(name, path / folder_name):
                found[name] = path / folder_name
    if not found:
        for name in LOCAL_COPY_FOLDERS:
            if looks_like(name, path):
                return {name: path}
    return found


def import_local_copies(path: str | Path, data_root: str | Path | None = None) -> list[ImportResult]:
    """Link each data set found in ``path`` into the data root, never replacing anything there.

    ``path`` may hold data sets under their usual folder names (``mnist``,
    ``dtd``, ``magnetic-tile``, ``mvtec_ad`` or ``mvtec``) or be one itself.
    Each becomes the link ``<data root>/<usual name>`` (``mvtec_ad`` for MVTec AD)
    pointing at the absolute path of the copy; where a file, folder or link of
    that name exists it is left as it is (``linked=False``).

    Args:
        path: the folder to import from.
        data_root: where the links go; default :func:`adlearn.data.default_data_root`.

    Returns:
        One :class:`ImportResult` per recognised data set (empty when none was recognised).

    Raises:
        FileNotFoundError: ``path`` is not a folder.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder; expected one holding mnist/, dtd/, magnetic-tile/ or mvtec_ad/.")
    data_root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    results = []
    for name, source in _recognised(path).items():
        link = data_root / LOCAL_COPY_FOLDERS[name][0]
        if os.path.lexists(link):  # lexists: a dangling link is something there too
            results.append(ImportResult(name, source, link, False))
            continue
        data_root.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source.resolve(), target_is_directory=True)
        results.append(ImportResult(name, source, link, True))
    return results


@dataclass(frozen=True)
class DataEntry:
    """One copy of a data set found by :func:`data_inventory`.

    Attributes:
        name: ``"mnist"``, ``"dtd"``, ``"magnetic-tile"``, ``"mvtec_ad"`` or ``"builtin"``.
        path: the folder.
        summary: what it holds, e.g. ``"70000 digits (60000 train, 10000 test)"``.
    """

    name: str
    path: Path
    summary: str


def _summary(name: str, folder: Path) -> str:
    """What a data set folder holds, from file names and (for MNIST) the IDX headers only."""
    if name == "mnist":
        train, test = (
            read_idx(mnist_file(folder, f"{prefix}-labels-idx1-ubyte"), header_only=True)[0] for prefix in ("train", "t10k")
        )
        return f"{train + test} digits ({train} train, {test} test)"
    if name == "dtd":
        images = dtd_image_paths(folder / "images")
        return f"{len({path.parent.name for path in images})} classes, {len(images)} images"
    if name == "magnetic-tile":
        counts = {kind: len(_photographs(folder / f"MT_{kind}" / "Imgs")) if (folder / f"MT_{kind}" / "Imgs").is_dir() else 0
                  for kind in MAGNETIC_TILE_TYPES}
        good = counts.pop("Free")
        return f"{good} good, {sum(counts.values())} defective ({', '.join(f'{k.lower()} {v}' for k, v in counts.items())})"
    categories = list_categories(folder)
    return f"{len(categories)} categories: {', '.join(categories)}"


def data_inventory() -> list[DataEntry]:
    """Every data set copy the loaders can find: in the data root, then in ``$ADLEARN_LOCAL_DATA``'s folders.

    Besides the local-copy folders (:func:`adlearn.data.paths.find_local_copies`)
    it lists torchvision's MNIST download (``<data root>/MNIST/raw``) and
    the built-in data sets (``<data root>/builtin_v*`` with a manifest).
    Counting reads no image (only names, and MNIST's file headers), so it is quick.
    """
    data_root = default_data_root()
    found: list[tuple[str, Path]] = []
    if looks_like("mnist", data_root / "MNIST" / "raw"):
        found.append(("mnist", data_root / "MNIST" / "raw"))
    for name in LOCAL_COPY_FOLDERS:
        found.extend((name, folder) for folder in find_local_copies(name))
    if data_root.is_dir():
        builtins = sorted(data_root.glob("builtin_v*"))
        found.extend(("builtin", folder) for folder in builtins if (folder / MANIFEST_NAME).is_file())
    entries = []
    for name, folder in found:
        try:
            summary = _summary(name, folder)
        except OSError as error:  # a damaged copy is listed, not fatal
            summary = f"unreadable: {error}"
        entries.append(DataEntry(name, folder, summary))
    return entries


def shown_path(path: Path, data_root: Path) -> str:
    """``path`` relative to ``data_root`` when it lies there (plus a link's target), else absolute."""
    try:
        shown = str(path.relative_to(data_root))
    except ValueError:
        return str(path)
    return f"{shown} -> {os.readlink(path)}" if path.is_symlink() else shown
