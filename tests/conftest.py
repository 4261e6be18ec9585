"""Shared test set-up: the quick profile, a moderate thread count, and small data sets.

Fixtures for every test module:

* ``builtin_root`` -- the built-in data set (all four categories, 256x256 PNG
  files, but only :data:`BUILTIN_TEST_SIZES` images), built once per session
  into a temporary folder;
* ``tiny_mvtec_root`` -- a handmade MVTec-layout folder with one category,
  ``widget`` (see :func:`make_tiny_mvtec`).

Both are shared by the whole session: read them, never write into them (copy
``tiny_mvtec_root`` with ``shutil.copytree`` into ``tmp_path`` to break it on purpose).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Before anything imports adlearn.profiles: tests run the quick profile unless told otherwise.
os.environ.setdefault("ADLEARN_PROFILE", "quick")

import torch  # noqa: E402  (after the environment is set)
from PIL import Image  # noqa: E402

# A moderate thread count: OMP_NUM_THREADS when set, else at most 4 (CI machines have 2 cores).
_threads = os.environ.get("OMP_NUM_THREADS", "").strip()
torch.set_num_threads(int(_threads) if _threads.isdigit() and int(_threads) > 0 else min(4, os.cpu_count() or 1))

# Images per folder of the session's built-in data set: small, so it builds in about a second.
BUILTIN_TEST_SIZES = {"n_train": 10, "n_test_good": 4, "n_test_per_defect": 2}

TINY_SIZE = 32  # side of the tiny data set's images
TINY_LAYOUT = {"train/good": 3, "test/good": 2, "test/dent": 2, "test/scratch": 1}


@pytest.fixture(scope="session")
def builtin_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a small built-in data set (brick, grass, gravel, washer) built for this session."""
    from adlearn.data import build_builtin_dataset

    return build_builtin_dataset(tmp_path_factory.mktemp("builtin") / "root", seed=0, verbose=False, **BUILTIN_TEST_SIZES)


def make_tiny_mvtec(root: Path, category: str = "widget") -> Path:
    """Write a tiny MVTec-layout category by hand and return ``root``.

    ``train/good`` holds 3 images (the first one grey, the others RGB),
    ``test/good`` 2, ``test/dent`` 2 and ``test/scratch`` 1, all 32x32 PNG;
    each defective image has ``ground_truth/<defect>/<stem>_mask.png`` (0/255)
    marking a rectangle whose pixels were set to white in the image.
    """
    rng = np.random.default_rng(123)
    for folder, count in TINY_LAYOUT.items():
        image_dir = root / category / folder
        image_dir.mkdir(parents=True, exist_ok=True)
        defect = folder.split("/")[1]
        for index in range(count):
            pixels = rng.integers(40, 200, size=(TINY_SIZE, TINY_SIZE, 3), dtype=np.uint8)
            if defect != "good":
                mask = np.zeros((TINY_SIZE, TINY_SIZE), np.uint8)
                top, left = 4 + 3 * index, 6 + 2 * index
                mask[top : top + 5, left : left + 8] = 255
                pixels[mask > 0] = 255
                mask_dir = root / category / "ground_truth" / defect
                mask_dir.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(mask_dir / f"{index:03d}_mask.png")
            image = Image.fromarray(pixels)
            if folder == "train/good" and index == 0:
                image = image.convert("L")
            image.save(image_dir / f"{index:03d}.png")
    return root


@pytest.fixture(scope="session")
def tiny_mvtec_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a handmade MVTec-layout folder with the category ``widget`` (see :func:`make_tiny_mvtec`)."""
    return make_tiny_mvtec(tmp_path_factory.mktemp("tiny_mvtec"))
