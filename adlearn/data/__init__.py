"""Data sets of the book: MVTec AD and the built-in offline data set, in one folder layout.

* :class:`MVTecAD` reads any folder in the MVTec AD layout (the real data set,
  the built-in one, or your own) and yields the item dicts every method reads.
* :func:`download_mvtec` fetches MVTec AD (CC BY-NC-SA 4.0) on request.
* :func:`builtin_dataset_root` builds the built-in data set from photographs
  bundled with scikit-image on first use (seconds, no network) and returns its root.
* :class:`MagneticTile` reads Magnetic Tile Defects with a fixed split;
  :func:`download_magnetic_tile` fetches it.
* :func:`find_local_copy` finds local copies of the public data sets (the data
  root, then ``$ADLEARN_LOCAL_DATA``); every loader asks it before downloading.
* :func:`default_data_root` says where all of this lives; :func:`download_file`
  and :func:`extract_archive` are the careful download helpers underneath.

Example:
    >>> from adlearn.data import MVTecAD, builtin_dataset_root  # doctest: +SKIP
    >>> test = MVTecAD(builtin_dataset_root(), "washer", split="test", image_size=128)  # doctest: +SKIP
"""

from adlearn.data.builtin import (
    BUILTIN_CATEGORIES,
    BUILTIN_DEFECTS,
    CATEGORY_CHANGED_IN,
    build_builtin_dataset,
    builtin_dataset_root,
    builtin_version,
)
from adlearn.data.download import ChecksumError, download_file, extract_archive
from adlearn.data.magnetic_tile import MagneticTile, download_magnetic_tile
from adlearn.data.mnist import DigitDataset, OneClassSplit, load_digits, one_class_split
from adlearn.data.mvtec import MVTEC_CATEGORIES, MVTecAD, download_mvtec, list_categories
from adlearn.data.paths import default_data_root, find_local_copy
from adlearn.data.textures import download_dtd, load_texture_images

__all__ = [
    "DigitDataset",
    "OneClassSplit",
    "BUILTIN_CATEGORIES",
    "CATEGORY_CHANGED_IN",
    "builtin_version",
    "BUILTIN_DEFECTS",
    "ChecksumError",
    "MVTEC_CATEGORIES",
    "MVTecAD",
    "MagneticTile",
    "build_builtin_dataset",
    "builtin_dataset_root",
    "default_data_root",
    "download_dtd",
    "download_file",
    "download_magnetic_tile",
    "download_mvtec",
    "extract_archive",
    "find_local_copy",
    "list_categories",
    "load_digits",
    "load_texture_images",
    "one_class_split",
]
