"""MVTec AD: the folder layout, a torch ``Dataset`` over it, and the download.

The MVTec AD layout (Bergmann et al., CVPR 2019) is the de-facto standard for
industrial anomaly detection data, and every data set in this book uses it,
the built-in one included::

    <root>/<category>/train/good/000.png             anomaly-free training images
    <root>/<category>/test/good/000.png              anomaly-free test images
    <root>/<category>/test/<defect>/000.png          defective test images
    <root>/<category>/ground_truth/<defect>/000_mask.png   their pixel masks

Any category folder in this layout works, so your own data needs nothing but
the right folder names. :class:`MVTecAD` lists the files when it is built
(cheap) and reads an image only when an item is asked for.

MVTec AD itself is licensed CC BY-NC-SA 4.0 (non-commercial use, share alike).
adlearn never ships it; :func:`download_mvtec` fetches it on request from the
official MVTec server.
"""

from __future__ import annotations

import lzma
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from adlearn.data.download import download_file, extract_archive
from adlearn.data.paths import default_data_root, find_local_copies

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
GOOD = "good"
SPLITS: tuple[str, ...] = ("train", "test")

MVTEC_CATEGORIES: tuple[str, ...] = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)
MVTEC_TEXTURES: tuple[str, ...] = ("carpet", "grid", "leather", "tile", "wood")

MVTEC_LICENSE_NOTICE = (
    "MVTec AD (Bergmann et al., CVPR 2019 / IJCV 2021) is licensed under Creative Commons "
    "Attribution-NonCommercial-ShareAlike 4.0 (CC BY-NC-SA 4.0, "
    "https://creativecommons.org/licenses/by-nc-sa/4.0/): non-commercial use only, cite the "
    "papers, share derived data under the same licence. "
    "Source: https://www.mvtec.com/company/research/datasets/mvtec-ad"
)


@dataclass(frozen=True)
class ArchiveInfo:
    """One downloadable archive: its address and, when published, its SHA-256 digest."""

    url: str
    sha256: str | None
    file_name: str


_MYDRIVE = "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download"

# The whole data set in one archive (about 4.9 GB). Address and digest as used by anomalib.
MVTEC_FULL_ARCHIVE = ArchiveInfo(
    url=f"{_MYDRIVE}/420938113-1629952094/mvtec_anomaly_detection.tar.xz",
    sha256="cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
    file_name="mvtec_anomaly_detection.tar.xz",
)

# One archive per category on the same official share. MVTec publishes no digests for these,
# so they are checked by the xz container's own CRC while unpacking instead.
_CATEGORY_DOWNLOAD_IDS = {
    "bottle": "420937370-1629951468", "cable": "420937413-1629951498",
    "capsule": "420937454-1629951595", "carpet": "420937484-1629951672",
    "grid": "420937487-1629951814", "hazelnut": "420937545-1629951845",
    "leather": "420937607-1629951964", "metal_nut": "420937637-1629952063",
    "screw": "420938130-1629953152", "tile": "420938133-1629953189",
    "toothbrush": "420938134-1629953256", "transistor": "420938166-1629953277",
    "wood": "420938383-1629953354", "zipper": "420938385-1629953449",
}
MVTEC_CATEGORY_ARCHIVES: dict[str, ArchiveInfo] = {
    category: ArchiveInfo(f"{_MYDRIVE}/{download_id}/{category}.tar.xz", None, f"{category}.tar.xz")
    for category, download_id in _CATEGORY_DOWNLOAD_IDS.items()
}
# "pill" lives on another share of the same server.
MVTEC_CATEGORY_ARCHIVES["pill"] = ArchiveInfo(
    "https://www.mydrive.ch/shares/43421/11a215a5749fcfb75e331ddd5f8e43ee/download/"
    "420938129-1629953099/pill.tar.xz",
    None,
    "pill.tar.xz",
)


def _is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def _images_in(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if _is_image(path)) if folder.is_dir() else []


def list_categories(root: str | Path) -> list[str]:
    """The category folders under ``root``: sub-folders that hold a ``train`` or ``test`` folder."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        child.name
        for child in root.iterdir()
        if child.is_dir() and not child.name.startswith(".") and ((child / "train").is_dir() or (child / "test").is_dir())
    )


def _missing_root_message(root: Path) -> str:
    return (
        f"data root {root} does not exist. Expected an MVTec-layout folder "
        "(<root>/<category>/train/good/*.png). Download MVTec AD with "
        "adlearn.data.download_mvtec(root, categories), or build the built-in data set with "
        "adlearn.data.builtin_dataset_root() and pass its result as root."
    )


def find_mask(category_dir: Path, defect_type: str, image_path: Path) -> Path | None:
    """The ground-truth mask of a defective test image, or ``None`` when there is none.

    MVTec AD names it ``ground_truth/<defect>/<stem>_mask.png``; ``<stem>.png``
    (and the other image suffixes) are accepted too, as some re-packaged data sets use them.
    """
    folder = category_dir / "ground_truth" / defect_type
    for name in (f"{image_path.stem}_mask", image_path.stem):
        for suffix in IMAGE_SUFFIXES:
            for candidate in (folder / f"{name}{suffix}", folder / f"{name}{suffix.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def read_image(path: str | Path) -> Image.Image:
    """Open an image file as an RGB :class:`PIL.Image.Image` (grey, palette, 16-bit and RGBA included).

    Raises:
        OSError: the file cannot be read as an image; the message names the path.
    """
    path = Path(path)
    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                # PIL's own conversion of 16-bit grey to RGB clips instead of scaling.
                values = np.asarray(image, dtype=np.float64)
                peak = 65535.0 if values.max() > 255 else 255.0
                image = Image.fromarray(np.round(values / peak * 255.0).astype(np.uint8))
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise OSError(f"cannot read image file {path}: {error}") from error


def read_mask(path: str | Path, threshold: int = 0) -> Image.Image:
    """Open a mask file as a binary single-channel image (0 or 255; values above ``threshold`` count).

    MVTec AD stores 0 and 255, so any non-zero value is a defect pixel by default;
    masks with soft edges (Magnetic Tile Defects) use ``threshold=127``.

    Raises:
        OSError: the file cannot be read as an image; the message names the path.
    """
    path = Path(path)
    try:
        with Image.open(path) as opened:
            opened.load()
            readable = opened.convert("RGB") if opened.mode == "P" else opened
            values = np.asarray(readable)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise OSError(f"cannot read mask file {path}: {error}") from error
    if values.ndim == 3:  # colour masks: any non-zero colour channel marks a defect pixel
        values = values[..., 0] if readable.mode == "LA" else values[..., :3].max(axis=2)
    return Image.fromarray((values > threshold).astype(np.uint8) * 255)


def _size_tuple(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``(height, width)`` from ``image_size`` (an int means a square), or ``None`` for native size."""
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        height = width = int(image_size)
    elif isinstance(image_size, Sequence) and len(image_size) == 2:
        height, width = (int(value) for value in image_size)
    else:
        raise TypeError(f"image_size must be an int, a (height, width) pair or None; got {image_size!r}.")
    if height <= 0 or width <= 0:
        raise ValueError(f"image_size must be positive; got {image_size!r}.")
    return height, width


@dataclass(frozen=True)
class Sample:
    """One file of an MVTec-layout split (nothing is loaded)."""

    path: Path
    label: int
    defect_type: str
    mask_path: Path | None


class MVTecAD(Dataset):
    """A torch ``Dataset`` over one category of an MVTec-layout folder.

    Each item is a dict: ``image`` float ``[3,H,W]`` in ``[0,1]`` (grey images are
    repeated to RGB), ``mask`` float ``[1,H,W]`` in ``{0,1}`` (resized with
    nearest neighbour; empty for good images), ``label`` int (0 good, 1
    defective), ``defect_type`` str (``"good"`` or the defect folder name) and
    ``path`` str.

    Args:
        root: the folder holding the category folders.
        category: a category folder name under ``root``.
        split: ``"train"`` (anomaly-free images only) or ``"test"``.
        image_size: side of the square the images are resized to, a
            ``(height, width)`` pair, or ``None`` to keep each file's size.

    Attributes:
        categories_found: every category under ``root``.
        defect_types: the sorted defect-type names in this split (``["good"]`` for train).
        samples: the :class:`Sample` listing, one per item.
        labels, paths: per-item labels and path strings, without loading any image.

    Raises:
        FileNotFoundError: ``root`` does not exist, or a defective image has no mask.
        ValueError: unknown ``category`` or ``split``, or a split without images.

    Example:
        >>> train = MVTecAD(root, "bottle", split="train", image_size=256)  # doctest: +SKIP
        >>> train[0]["image"].shape  # doctest: +SKIP
        torch.Size([3, 256, 256])
    """

    #: mask values above this are defect pixels (see :func:`read_mask`)
    mask_threshold: int = 0

    def __init__(
        self,
        root: str | Path,
        category: str,
        split: str = "train",
        image_size: int | tuple[int, int] | None = 256,
    ) -> None:
        self.root = Path(root).expanduser()
        self.category = category
        self.split = split
        self.image_size = _size_tuple(image_size)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}; got {split!r}.")
        if not self.root.is_dir():
            raise FileNotFoundError(_missing_root_message(self.root))
        self.categories_found = list_categories(self.root)
        self.category_dir = self.root / category
        if category not in self.categories_found:
            found = ", ".join(self.categories_found) if self.categories_found else "none"
            raise ValueError(
                f"unknown category {category!r}: there is no folder {self.category_dir} with a train/ or "
                f"test/ folder in it. Categories found under {self.root}: {found}."
            )
        self.samples = self._list_samples()
        self.defect_types = sorted({sample.defect_type for sample in self.samples})

    def _list_samples(self) -> list[Sample]:
        split_dir = self.category_dir / self.split
        if self.split == "train":
            good_dir = split_dir / GOOD
            images = _images_in(good_dir)
            if not images:
                raise ValueError(
                    f"no training images in {good_dir}; expected anomaly-free images there "
                    f"({', '.join(IMAGE_SUFFIXES)} files)."
                )
            return [Sample(path, 0, GOOD, None) for path in images]

        if not split_dir.is_dir():
            raise ValueError(f"category {self.category!r} has no test folder {split_dir}.")
        samples: list[Sample] = []
        for defect_dir in sorted(child for child in split_dir.iterdir() if child.is_dir()):
            defect_type = defect_dir.name
            for path in _images_in(defect_dir):
                if defect_type == GOOD:
                    samples.append(Sample(path, 0, GOOD, None))
                    continue
                mask_path = find_mask(self.category_dir, defect_type, path)
                if mask_path is None:
                    expected = self.category_dir / "ground_truth" / defect_type / f"{path.stem}_mask.png"
                    raise FileNotFoundError(
                        f"defective test image {path} has no ground-truth mask; expected {expected}."
                    )
                samples.append(Sample(path, 1, defect_type, mask_path))
        if not samples:
            raise ValueError(
                f"no test images under {split_dir}; expected {split_dir}/good/*.png and/or "
                f"{split_dir}/<defect>/*.png."
            )
        return samples

    @property
    def labels(self) -> list[int]:
        """Per-item labels (0 good, 1 defective), without loading images."""
        return [sample.label for sample in self.samples]

    @property
    def paths(self) -> list[str]:
        """Per-item image paths, without loading images."""
        return [str(sample.path) for sample in self.samples]

    @property
    def item_defect_types(self) -> list[str]:
        """Per-item defect-type names, without loading images."""
        return [sample.defect_type for sample in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int | str]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for a dataset of {len(self)} items.")
        sample = self.samples[index]
        image = read_image(sample.path)
        if sample.mask_path is not None:
            mask = read_mask(sample.mask_path, self.mask_threshold)
            if mask.size != image.size:
                raise ValueError(
                    f"mask {sample.mask_path} is {mask.size[0]}x{mask.size[1]} (width x height) but its "
                    f"image {sample.path} is {image.size[0]}x{image.size[1]}; expected the same size."
                )
        else:
            mask = None
        if self.image_size is not None:
            height, width = self.image_size
            if image.size != (width, height):
                image = image.resize((width, height), Image.BILINEAR)
                if mask is not None:
                    mask = mask.resize((width, height), Image.NEAREST)
        image_array = np.asarray(image, dtype=np.float32) / 255.0
        image_tensor = torch.from_numpy(image_array).permute(2, 0, 1).contiguous()
        if mask is None:
            mask_tensor = torch.zeros(1, image_tensor.shape[1], image_tensor.shape[2])
        else:
            mask_tensor = torch.from_numpy(np.asarray(mask) > 0).float().unsqueeze(0)
        return {
            "image": image_tensor,
            "mask": mask_tensor,
            "label": sample.label,
            "defect_type": sample.defect_type,
            "path": str(sample.path),
        }

    def __repr__(self) -> str:
        counts = {name: self.item_defect_types.count(name) for name in self.defect_types}
        return (
            f"MVTecAD(root={str(self.root)!r}, category={self.category!r}, split={self.split!r}, "
            f"image_size={self.image_size}, items={len(self)}, per_defect_type={counts})"
        )


def _category_is_complete(category_dir: Path) -> bool:
    return bool(_images_in(category_dir / "train" / GOOD)) and (category_dir / "test").is_dir()


def _archive_top_folder(member_name: str) -> str:
    parts = [part for part in PurePosixPath(member_name).parts if part not in (".", "")]
    return parts[0] if parts else ""


def _unpack_categories(archive: Path, root: Path, categories: Iterable[str]) -> None:
    """Unpack ``categories`` from ``archive`` into a scratch folder, then move each into ``root``.

    The move is a rename, so a category folder under ``root`` is either complete or absent.
    """
    wanted = set(categories)
    scratch = Path(tempfile.mkdtemp(prefix=".adlearn-unpack-", dir=root))
    try:
        try:
            extract_archive(archive, scratch, members=lambda name: _archive_top_folder(name) in wanted)
        except (tarfile.TarError, lzma.LZMAError, EOFError) as error:
            damaged = archive.with_name(archive.name + ".damaged")
            os.replace(archive, damaged)
            raise OSError(
                f"archive {archive} is damaged ({error}); it was renamed to {damaged}. Run "
                "download_mvtec again to download it afresh."
            ) from error
        for category in sorted(wanted):
            unpacked = scratch / category
            if not _category_is_complete(unpacked):
                raise OSError(f"archive {archive} holds no complete category {category!r} (expected {category}/train/good/).")
            os.replace(unpacked, root / category)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # our own scratch folder


def download_mvtec(
    root: str | Path | None = None,
    categories: Sequence[str] | str | None = None,
    *,
    per_category: bool = False,
    keep_archive: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download MVTec AD categories from the official server into ``root`` (MVTec layout).

    Categories already present are left alone; an interrupted download resumes
    where it stopped when called again. With ``per_category=False`` (default)
    the whole 4.9 GB archive is fetched once and verified against its published
    SHA-256 digest, and only the requested categories are unpacked. With
    ``per_category=True`` each category's own archive is fetched (smaller, e.g.
    one category on Colab); MVTec publishes no digests for those, so they are
    verified by the CRC check built into their ``.xz`` container while unpacking.

    Args:
        root: destination folder; default ``default_data_root() / "mvtec_ad"``, unless a
            local copy (:func:`adlearn.data.paths.find_local_copies`, e.g. through
            ``$ADLEARN_LOCAL_DATA``) holds every requested category: then nothing is
            downloaded and that copy is returned.
        categories: names from :data:`MVTEC_CATEGORIES` (one name or several); default all 15.
        per_category: download one archive per category instead of the whole archive.
        keep_archive: keep the downloaded archive(s) after unpacking (an archive that
            was already there before the call is always kept).
        progress: show download progress bars.
        timeout: seconds to wait for the server.

    Returns:
        ``root``, ready for :class:`MVTecAD`.

    Raises:
        ValueError: an unknown category name.
        FileExistsError: a category folder exists but is incomplete (it is not touched).
        ConnectionError / ChecksumError / OSError: the download failed, its digest was
            wrong, or the archive is damaged; each message says what to do.
    """
    explicit_root = root is not None
    root = Path(root).expanduser() if root is not None else default_data_root() / "mvtec_ad"
    if categories is None:
        wanted = list(MVTEC_CATEGORIES)
    else:
        wanted = [categories] if isinstance(categories, str) else list(categories)
    unknown = [name for name in wanted if name not in MVTEC_CATEGORIES]
    if unknown:
        raise ValueError(f"unknown MVTec AD categories {unknown}; expected names from {list(MVTEC_CATEGORIES)}.")

    if not explicit_root:
        for copy in find_local_copies("mvtec_ad"):
            if all(_category_is_complete(copy / category) for category in wanted):
                return copy
    print(MVTEC_LICENSE_NOTICE)
    root.mkdir(parents=True, exist_ok=True)
    missing = []
    for category in dict.fromkeys(wanted):
        category_dir = root / category
        if category_dir.exists():
            if not _category_is_complete(category_dir):
                raise FileExistsError(
                    f"{category_dir} exists but is not a complete MVTec AD category (no images in "
                    f"{category_dir / 'train' / GOOD}, or no test folder). adlearn does not touch it: move "
                    "it away and call download_mvtec again."
                )
            continue
        missing.append(category)
    if not missing:
        return root

    archives = (
        [(MVTEC_CATEGORY_ARCHIVES[category], [category]) for category in missing]
        if per_category
        else [(MVTEC_FULL_ARCHIVE, missing)]
    )
    for info, contents in archives:
        archive = root / info.file_name
        was_there = archive.exists()
        download_file(info.url, archive, sha256=info.sha256, timeout=timeout, progress=progress)
        _unpack_categories(archive, root, contents)
        if not keep_archive and not was_there:
            archive.unlink()  # we downloaded it in this call; the unpacked folders are what counts
    return root
