"""Magnetic Tile Defects (MTD): a torch ``Dataset`` with a fixed one-class split, and the download.

MTD (Huang, Qiu and Yuan, "Surface defect saliency of magnetic tile", The
Visual Computer 36, 2020) holds 1,344 grey photographs of magnetic tiles:
952 defect-free ones and 392 with one of five defect types, each with a
pixel mask. Its authors publish it in their own layout, which is kept as is::

    <root>/MT_Free/Imgs/<name>.jpg       defect-free photographs (a blank <name>.png beside each)
    <root>/MT_<Type>/Imgs/<name>.jpg     defective ones, Type in Blowhole, Break, Crack, Fray, Uneven
    <root>/MT_<Type>/Imgs/<name>.png     their pixel masks, same name, same size

MTD comes with no train/test split; :class:`MagneticTile` fixes one (see
:data:`TEST_EVERY`) and yields the same items as :class:`~adlearn.data.MVTecAD`.
Its terms, as published: "It is welcomed to use our dataset. And if it is used
in your research, please cite our paper." adlearn never ships it;
:func:`download_magnetic_tile` fetches the authors' repository on request.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

from adlearn.data.download import ChecksumError, _free_name, download_file, extract_archive, sha256_of
from adlearn.data.mvtec import GOOD, MVTecAD, Sample, _size_tuple
from adlearn.data.paths import default_data_root, find_local_copy, looks_like

#: The authors' repository as a zip archive (the trailing dot is part of the repository's name).
MAGNETIC_TILE_URL = "https://github.com/abin24/Magnetic-tile-defect-datasets./archive/refs/heads/master.zip"
MAGNETIC_TILE_ARCHIVE = "Magnetic-tile-defect-datasets.-master.zip"
#: SHA-256 of the photographs and masks, not of the archive: GitHub builds archives on the fly,
#: so their bytes (and digest) may change while the files in them do not. It is the SHA-256 of
#: the text ``"<sha256>  <path>\n"`` (``sha256sum``'s format) for every file ``MT_*/Imgs/*``,
#: the lines sorted as strings (:func:`magnetic_tile_digest`); in a shell, in the data folder:
#: ``sha256sum MT_*/Imgs/* | LC_ALL=C sort | sha256sum``. Computed from the 2,688 files of a
#: local copy of the repository, and equal to the same over that copy's published SHA256SUMS.
MAGNETIC_TILE_CONTENT_SHA256 = "7123639790da65237ab550c5d27d8d094a8b1ecf5ff71c6669977fd6a5113012"

#: Upstream folder type -> the items' ``defect_type`` (``MT_Free`` holds the good images).
MAGNETIC_TILE_TYPES: dict[str, str] = {
    "Free": GOOD, "Blowhole": "blowhole", "Break": "break", "Crack": "crack", "Fray": "fray", "Uneven": "uneven",
}
#: Every TEST_EVERY-th defect-free image (sorted by file name, index % TEST_EVERY == 0) is a test image.
TEST_EVERY = 5
#: Mask pixels above this are defect pixels: the masks have soft, anti-aliased edges (values 1-254).
MASK_THRESHOLD = 127


def _photographs(folder: Path) -> list[Path]:
    """The ``.jpg`` photographs in ``folder``, sorted by name (the ``.png`` files beside them are masks)."""
    return sorted(
        path for path in folder.iterdir()
        if path.is_file() and path.suffix.lower() in (".jpg", ".jpeg") and not path.name.startswith(".")
    )


class MagneticTile(MVTecAD):
    """Magnetic Tile Defects as a torch ``Dataset`` with the items of :class:`~adlearn.data.MVTecAD`.

    Each item is a dict: ``image`` float ``[3,H,W]`` in ``[0,1]`` (the grey
    photograph repeated to 3 channels), ``mask`` float ``[1,H,W]`` in ``{0,1}``
    (mask value > 127; all zeros for good images), ``label`` int (0 good,
    1 defective), ``defect_type`` str (``"good"``, ``"blowhole"``, ``"break"``,
    ``"crack"``, ``"fray"`` or ``"uneven"``) and ``path`` str (the ``.jpg``).
    It is an :class:`~adlearn.data.MVTecAD` with another file listing, so code
    written for one works for the other (``labels``, ``paths``,
    ``item_defect_types``, ``defect_types``, ``samples``, ``category``).

    The split is fixed: the 952 defect-free images sorted by file name, those
    at index 0, 5, 10, ... (``index % 5 == 0``) go to ``test`` (191) and the
    rest to ``train`` (761); all 392 defective images go to ``test``. That is
    the 80/20 ratio DifferNet (Rudolph et al., WACV 2021; 97.7 image AUROC)
    used on MTD, but not necessarily the same images, so figures are not
    directly comparable with the paper's.

    The photographs vary in size (about 100-630 by 220-400 px); they are
    resized to ``image_size`` (bilinear; masks nearest neighbour) as
    :class:`~adlearn.data.MVTecAD` does: to a square for an int, so the
    aspect ratio is not kept. Files are read only when an item is asked for,
    so a damaged file is reported (by name) then.

    Args:
        root: the folder holding the ``MT_*`` folders; default a local copy
            (:func:`adlearn.data.paths.find_local_copy`), else
            ``default_data_root() / "magnetic-tile"``.
        split: ``"train"`` (defect-free images only) or ``"test"``.
        image_size: side of the square the images are resized to, a
            ``(height, width)`` pair, or ``None`` to keep each file's size.

    Raises:
        FileNotFoundError: ``root`` or an ``MT_<Type>/Imgs`` folder the split needs
            is missing, or a defective image has no mask.
        ValueError: unknown ``split``, or an ``Imgs`` folder without ``.jpg`` files.
        OSError / ValueError when an item is read: an unreadable image or mask, or a
            mask of another size than its image.
    """

    mask_threshold = MASK_THRESHOLD
    category = "magnetic_tile"

    def __init__(
        self, root: str | Path | None = None, split: str = "train", image_size: int | tuple[int, int] | None = 128
    ) -> None:
        if root is None:
            root = find_local_copy("magnetic-tile") or default_data_root() / "magnetic-tile"
        self.root = Path(root).expanduser()
        self.split = split
        self.image_size = _size_tuple(image_size)
        if split not in ("train", "test"):
            raise ValueError(f"split must be one of ('train', 'test'); got {split!r}.")
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"Magnetic Tile Defects folder {self.root} does not exist; expected {self.root}/MT_Free/Imgs/*.jpg "
                "and the other MT_<Type> folders. Download it with adlearn.data.download_magnetic_tile()."
            )
        self.category_dir = self.root
        self.categories_found = [self.category]
        self.samples = self._list_samples()
        self.defect_types = sorted({sample.defect_type for sample in self.samples})

    def _folder(self, kind: str) -> list[Path]:
        folder = self.root / f"MT_{kind}" / "Imgs"
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder} is missing: {self.root} is not a complete Magnetic Tile Defects folder (expected "
                f"MT_<Type>/Imgs/ for {', '.join(MAGNETIC_TILE_TYPES)}). Download it with "
                "adlearn.data.download_magnetic_tile()."
            )
        photographs = _photographs(folder)
        if not photographs:
            raise ValueError(f"{folder} holds no .jpg images; expected MTD's <name>.jpg photographs there.")
        return photographs

    def _list_samples(self) -> list[Sample]:
        free = self._folder("Free")
        keep = (lambda index: index % TEST_EVERY == 0) if self.split == "test" else (lambda index: index % TEST_EVERY != 0)
        samples = [Sample(path, 0, GOOD, None) for index, path in enumerate(free) if keep(index)]
        if self.split == "train":
            return samples
        for kind, defect_type in MAGNETIC_TILE_TYPES.items():
            if defect_type == GOOD:
                continue
            for path in self._folder(kind):
                mask_path = path.with_suffix(".png")
                if not mask_path.is_file():  # only existence here; the mask is read with its item
                    raise FileNotFoundError(f"defective image {path} has no mask; expected {mask_path}.")
                samples.append(Sample(path, 1, defect_type, mask_path))
        return samples

    def __repr__(self) -> str:
        counts = {name: self.item_defect_types.count(name) for name in self.defect_types}
        return (
            f"MagneticTile(root={str(self.root)!r}, split={self.split!r}, image_size={self.image_size}, "
            f"items={len(self)}, per_defect_type={counts})"
        )


def magnetic_tile_digest(root: str | Path) -> str:
    """The content digest of an MTD folder (see :data:`MAGNETIC_TILE_CONTENT_SHA256`); reads every file."""
    root = Path(root)
    files = (path for path in root.glob("MT_*/Imgs/*") if path.is_file())
    lines = sorted(f"{sha256_of(path)}  {path.relative_to(root).as_posix()}\n" for path in files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def download_magnetic_tile(
    root: str | Path | None = None, *, keep_archive: bool = False, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Download MTD from its authors' GitHub repository into ``root`` and verify its files.

    The repository's zip archive (about 60 MB) is downloaded next to ``root``
    (resumable; GitHub publishes no digest for it, so none is checked), unpacked
    into a scratch folder and checked against :data:`MAGNETIC_TILE_CONTENT_SHA256`;
    only then does it become ``root``, so ``root`` is complete or absent. A
    folder that already holds ``MT_*`` folders is returned as it is, unverified
    (check one with :func:`magnetic_tile_digest`).

    Args:
        root: the folder to create (it will hold the ``MT_*`` folders); default a
            local copy when there is one (:func:`adlearn.data.paths.find_local_copy`,
            nothing is downloaded then), else ``default_data_root() / "magnetic-tile"``.
        keep_archive: keep the zip archive after unpacking (one that was there before is always kept).
        progress: show a progress bar.
        timeout: seconds to wait for the server.

    Returns:
        The folder, ready for :class:`MagneticTile`.

    Raises:
        FileExistsError: ``root`` exists, is not empty and holds no ``MT_*`` folder (it is left alone).
        ChecksumError: the unpacked files differ from the published ones; they are
            kept aside (the message says where), nothing is deleted.
        ConnectionError / OSError: the download failed or the archive is damaged.
    """
    if root is None:
        local = find_local_copy("magnetic-tile")
        if local is not None:
            return local
    root = Path(root).expanduser() if root is not None else default_data_root() / "magnetic-tile"
    if looks_like("magnetic-tile", root):
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(
            f"{root} exists but holds no Magnetic Tile Defects folders (MT_*); adlearn does not touch it: "
            "move it away or choose another root."
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    archive = root.parent / MAGNETIC_TILE_ARCHIVE
    was_there = archive.exists()
    download_file(MAGNETIC_TILE_URL, archive, progress=progress, timeout=timeout)
    scratch = Path(tempfile.mkdtemp(prefix=".adlearn-unpack-", dir=root.parent))
    try:
        try:
            extract_archive(archive, scratch)
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            damaged = _free_name(archive.with_name(archive.name + ".damaged"))
            os.replace(archive, damaged)
            raise OSError(f"archive {archive} is damaged ({error}); it was renamed to {damaged}. Run "
                          "download_magnetic_tile again to download it afresh.") from error
        # The archive's top folder is Magnetic-tile-defect-datasets.-master/.
        tops = [folder for folder in (scratch, *scratch.iterdir()) if looks_like("magnetic-tile", folder)]
        actual = magnetic_tile_digest(tops[0]) if tops else None
        if actual != MAGNETIC_TILE_CONTENT_SHA256:
            kept = _free_name(root.parent / f"{root.name}.sha256-mismatch")
            os.replace(scratch, kept)
            kept_archive = _free_name(archive.with_name(archive.name + ".sha256-mismatch"))
            os.replace(archive, kept_archive)  # else the next call would unpack the same archive again
            found = f"content digest {actual}" if actual else "no MT_* folders"
            raise ChecksumError(
                f"the archive downloaded from {MAGNETIC_TILE_URL} holds {found}, expected the content digest "
                f"{MAGNETIC_TILE_CONTENT_SHA256} (see adlearn.data.magnetic_tile). The files on the server "
                f"changed or the download was corrupted. Nothing was deleted: the unpacked files are in {kept}, "
                f"the archive is {kept_archive}; delete them once you no longer need them."
            )
        if root.exists():
            root.rmdir()  # empty, checked above
        os.replace(tops[0], root)  # a rename: root appears complete or not at all
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # our own scratch folder (gone when it was kept aside)
    if not keep_archive and not was_there:
        archive.unlink()
    return root
