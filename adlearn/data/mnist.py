"""Handwritten digits for the AnoGAN chapter: MNIST, or an offline stand-in that says so.

MNIST (LeCun et al., 60,000 training and 10,000 test images of 28×28 pixels) is
read through ``torchvision.datasets.MNIST`` when its files are on disk, from a
local copy of the raw IDX files (``<folder>/mnist/*.gz``, found by
:func:`adlearn.data.paths.find_local_copy`, e.g. through ``$ADLEARN_LOCAL_DATA``), or
downloaded when ``allow_download=True`` and the network answers within a short
time-out.  Without both, :func:`load_digits` falls back to scikit-learn's
bundled handwritten digits (1,797 images of 8×8 pixels with 17 grey levels),
scaled up to a 20×20 box and centred in a 28×28 frame the way MNIST digits are,
and prints a notice: figures measured on the stand-in are *not* MNIST figures.

:func:`one_class_split` builds the one-class protocol of the anomaly-detection
literature: some digits are "normal" (training data), every other digit is an
anomaly.  Its datasets yield the dictionaries every method in the book reads::

    {"image": [1, 28, 28] float in [0, 1], "mask": [1, 28, 28] zeros,
     "label": 0 normal / 1 anomalous, "defect_type": "7", "path": "mnist/test/00042"}

Example::

    split = one_class_split(normal_digits=(7,), seed=0)
    detector.fit(split.train)
    prediction = detector.predict(split.test.images)
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from adlearn.data.paths import default_data_root, display_path, find_local_copy, mnist_file

SOURCES: tuple[str, ...] = ("auto", "mnist", "sklearn")
SPLITS: tuple[str, ...] = ("train", "test")
IMAGE_SIZE = 28
#: MNIST digits are scaled to fit a 20×20 box and centred in the 28×28 frame.
DIGIT_BOX = 20
#: the fixed seed of the stand-in's train/test split (MNIST's split is fixed too)
SKLEARN_SPLIT_SEED = 0
SKLEARN_TEST_FRACTION = 0.3
MNIST_HOSTS: tuple[tuple[str, int], ...] = (("ossci-datasets.s3.amazonaws.com", 443), ("yann.lecun.com", 80))


@dataclass(frozen=True)
class DigitImages:
    """A whole split of digits as tensors.

    Attributes:
        images: ``[N, 1, 28, 28]`` float in ``[0, 1]``, white digit on black.
        digits: ``[N]`` int64 class of each image (0–9).
        source: ``"mnist"`` or ``"sklearn-digits"``.
        split: ``"train"`` or ``"test"``.
    """

    images: torch.Tensor
    digits: torch.Tensor
    source: str
    split: str

    def __len__(self) -> int:
        return int(self.digits.shape[0])


class DigitDataset(Dataset):
    """Digit images as the book's dataset items (see the module docstring).

    The whole set is kept as tensors (``images``, ``labels``, ``digits``), so a
    method can score it in one batch without a DataLoader.
    """

    def __init__(self, images: torch.Tensor, digits: torch.Tensor, labels: torch.Tensor, paths: Sequence[str], source: str) -> None:
        if images.ndim != 4 or images.shape[1] != 1:
            raise ValueError(f"images must be [N, 1, H, W], got {tuple(images.shape)}.")
        count = images.shape[0]
        if digits.shape != (count,) or labels.shape != (count,) or len(paths) != count:
            raise ValueError(
                f"digits, labels and paths must have one entry per image ({count}); got "
                f"{tuple(digits.shape)}, {tuple(labels.shape)} and {len(paths)}."
            )
        self.images = images
        self.digits = digits
        self.labels = labels
        self.paths = list(paths)
        self.source = source

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for a dataset of {len(self)} images.")
        image = self.images[index]
        return {
            "image": image,
            "mask": torch.zeros_like(image),
            "label": int(self.labels[index]),
            "defect_type": str(int(self.digits[index])),
            "path": self.paths[index],
        }

    def __iter__(self) -> Iterator[dict]:
        return (self[i] for i in range(len(self)))

    def subset(self, indices: torch.Tensor | Sequence[int]) -> "DigitDataset":
        """A new dataset holding only ``indices`` (in that order)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return DigitDataset(
            self.images[index], self.digits[index], self.labels[index], [self.paths[i] for i in index.tolist()], self.source
        )

    def __repr__(self) -> str:
        anomalous = int(self.labels.sum())
        return f"DigitDataset({len(self)} images from {self.source}: {len(self) - anomalous} normal, {anomalous} anomalous)"


@dataclass(frozen=True)
class OneClassSplit:
    """The one-class protocol's three datasets.

    Attributes:
        train: normal digits only, for training.
        holdout: normal digits held out of training, for thresholds and score normalisation.
        test: normal (label 0) and anomalous (label 1) digits from the test split.
        normal_digits: the digits called normal.
        anomalous_digits: the digits called anomalous.
        source: ``"mnist"`` or ``"sklearn-digits"``.
    """

    train: DigitDataset
    holdout: DigitDataset
    test: DigitDataset
    normal_digits: tuple[int, ...]
    anomalous_digits: tuple[int, ...]
    source: str


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Bound every socket operation inside the block (torchvision's downloader sets none)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _network_answers(timeout: float) -> bool:
    """Whether one of MNIST's download hosts accepts a connection within ``timeout`` seconds."""
    for host, port in MNIST_HOSTS:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True
        except OSError:
            continue
    return False


def read_idx(path: str | Path, header_only: bool = False) -> tuple[int, ...] | np.ndarray:
    """An unsigned-byte IDX file of MNIST (gzipped or not) as a uint8 array, or only its shape.

    torchvision's own reader opens uncompressed files only, and a local copy keeps
    the published ``.gz`` files as they are.

    Raises:
        OSError: the file is not an unsigned-byte IDX file, or is truncated; the message names it.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            magic = handle.read(4)
            if len(magic) != 4 or magic[:3] != b"\x00\x00\x08" or not 1 <= magic[3] <= 3:
                raise OSError("not an unsigned-byte IDX file")
            shape = tuple(int(v) for v in np.frombuffer(handle.read(4 * magic[3]), dtype=">u4"))
            if header_only:
                return shape
            data = np.frombuffer(handle.read(), dtype=np.uint8)
    except (OSError, EOFError, ValueError) as error:  # gzip raises BadGzipFile (an OSError) and EOFError
        raise OSError(f"cannot read the MNIST file {path}: {error}") from error
    if data.size != int(np.prod(shape)):
        raise OSError(
            f"cannot read the MNIST file {path}: {data.size} bytes of data, expected {int(np.prod(shape))} for shape {shape}."
        )
    return data.reshape(shape)


def _load_local_mnist(folder: Path, split: str) -> DigitImages:
    """MNIST from a local copy of its four IDX files (``.gz`` or not)."""
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(mnist_file(folder, f"{prefix}-images-idx3-ubyte"))
    digits = read_idx(mnist_file(folder, f"{prefix}-labels-idx1-ubyte"))
    return DigitImages(
        images=torch.from_numpy(images.copy()).unsqueeze(1).float() / 255.0,
        digits=torch.from_numpy(digits.astype(np.int64)),
        source="mnist",
        split=split,
    )


def _load_mnist(
    root: Path, split: str, allow_download: bool, timeout: float, local: Path | None = None
) -> tuple[DigitImages, Path]:
    """MNIST through torchvision from ``root/MNIST/raw``, else from the local copy ``local``, else downloaded.

    Downloads only when allowed and reachable. Returns the digits and the folder they came from.
    """
    from torchvision.datasets import MNIST

    raw_folder = root / "MNIST" / "raw"
    train = split == "train"
    try:
        dataset = MNIST(str(root), train=train, download=False)
    except RuntimeError:
        if local is not None:
            return _load_local_mnist(local, split), local
        if not allow_download:
            raise FileNotFoundError(
                f"MNIST files not found in {display_path(raw_folder)} (expected train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte); pass allow_download=True to download them, or set "
                "ADLEARN_LOCAL_DATA to a folder holding a local copy mnist/*.gz (root=None only)."
            ) from None
        if not _network_answers(timeout):
            raise ConnectionError(f"MNIST is not in {raw_folder} and its download hosts did not answer within {timeout} s.")
        try:
            with _socket_timeout(timeout):
                dataset = MNIST(str(root), train=train, download=True)
        except Exception as error:  # urllib raises URLError, TimeoutError, RuntimeError (bad checksum), ...
            raise ConnectionError(f"downloading MNIST into {raw_folder} failed: {error}") from error
    images = dataset.data.unsqueeze(1).float() / 255.0
    return DigitImages(images=images, digits=dataset.targets.long(), source="mnist", split=split), raw_folder


@functools.lru_cache(maxsize=1)
def _sklearn_digits_28() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8×8 digits, scaled to a 20×20 box and centred in 28×28 like MNIST."""
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    small = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # 17 grey levels -> [0, 1]
    box = F.interpolate(small, size=(DIGIT_BOX, DIGIT_BOX), mode="bicubic", align_corners=False).clamp(0.0, 1.0)
    margin = (IMAGE_SIZE - DIGIT_BOX) // 2
    images = F.pad(box, (margin, margin, margin, margin))
    return images, torch.from_numpy(bunch.target.astype(np.int64))


def _load_sklearn(split: str) -> DigitImages:
    """The stand-in's fixed, per-digit stratified train/test split (70 % / 30 %)."""
    images, digits = _sklearn_digits_28()
    rng = np.random.default_rng(SKLEARN_SPLIT_SEED)
    chosen = []
    for digit in range(10):
        members = np.flatnonzero(digits.numpy() == digit)
        members = members[rng.permutation(len(members))]
        test_count = int(round(SKLEARN_TEST_FRACTION * len(members)))
        chosen.append(members[:test_count] if split == "test" else members[test_count:])
    index = torch.from_numpy(np.sort(np.concatenate(chosen)))
    return DigitImages(images=images[index].clone(), digits=digits[index].clone(), source="sklearn-digits", split=split)


def load_digits(
    split: str = "train",
    *,
    root: str | Path | None = None,
    source: str = "auto",
    allow_download: bool = False,
    timeout: float = 10.0,
    verbose: bool = True,
) -> DigitImages:
    """Load one split of handwritten digits as ``[N, 1, 28, 28]`` floats in ``[0, 1]``.

    Args:
        split: ``"train"`` or ``"test"``.
        root: folder holding ``MNIST/raw/`` (torchvision's layout); default
            :func:`adlearn.data.paths.default_data_root` (``$ADLEARN_DATA``, the checkout's ``data/``, ...),
            and then, only for this default, a local copy (``find_local_copy("mnist")``).
        source: ``"mnist"`` (fail if unavailable), ``"sklearn"`` (the offline stand-in), or
            ``"auto"`` (MNIST when available, else the stand-in, with a printed notice).
        allow_download: try to download MNIST when its files are missing.
        timeout: seconds to wait for the download hosts (the download never hangs longer per request).
        verbose: print which data was loaded.

    Raises:
        ValueError: unknown ``split`` or ``source``.
        FileNotFoundError: ``source="mnist"``, the files are missing and downloading is not allowed.
        ConnectionError: ``source="mnist"`` and the download failed.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}.")
    if timeout <= 0:
        raise ValueError(f"timeout must be positive (seconds), got {timeout}.")
    # An explicit root means exactly that folder; the default also looks for local copies.
    local = find_local_copy("mnist") if root is None else None
    root = Path(root) if root is not None else default_data_root()
    if source in ("auto", "mnist"):
        try:
            digits, where = _load_mnist(root, split, allow_download, timeout, local)
        except (FileNotFoundError, ConnectionError) as error:
            if source == "mnist":
                raise
            if verbose:
                print(
                    f"NOTICE: MNIST is not available: {error}\nUsing scikit-learn's bundled 8×8 handwritten digits "
                    "(1,797 images) scaled up to 28×28 instead: a small offline stand-in, so figures measured on it "
                    "are not MNIST figures."
                )
            return _load_sklearn(split)
        if verbose:
            print(f"MNIST {split} split: {len(digits)} images from {display_path(where)}")
        return digits
    digits = _load_sklearn(split)
    if verbose:
        print(f"scikit-learn digits (offline stand-in for MNIST), {split} split: {len(digits)} images scaled to 28×28")
    return digits


def _check_digits(name: str, values: Sequence[int]) -> tuple[int, ...]:
    digits = tuple(int(v) for v in values)
    bad = [v for v in digits if not 0 <= v <= 9]
    if bad or len(set(digits)) != len(digits):
        raise ValueError(f"{name} must be distinct digits 0-9, got {tuple(values)}.")
    return digits


def one_class_split(
    normal_digits: Sequence[int] = (7,),
    anomalous_digits: Sequence[int] | None = None,
    *,
    root: str | Path | None = None,
    source: str = "auto",
    allow_download: bool = False,
    seed: int = 0,
    holdout_fraction: float = 0.1,
    max_train: int | None = None,
    max_test: int | None = None,
    verbose: bool = True,
) -> OneClassSplit:
    """The one-class protocol: train on ``normal_digits``, test on them against ``anomalous_digits``.

    Training images come from the train split (normal digits only, a fraction held
    out); test images from the test split, labelled 1 when their digit is anomalous.
    The same arguments give the same datasets.

    Args:
        normal_digits: the digits called normal, e.g. ``(7,)`` or ``(7, 8)``.
        anomalous_digits: the anomalous digits; default every other digit.
        root, source, allow_download: see :func:`load_digits`.
        seed: seeds the hold-out choice and any subsampling.
        holdout_fraction: share of the normal training images kept out of ``train`` for ``holdout``.
        max_train: keep at most this many training images (after the hold-out).
        max_test: keep at most this many test images (a random subset; normal share kept roughly).
        verbose: print which data was loaded and the split's sizes.
    """
    normal = _check_digits("normal_digits", normal_digits)
    if not normal:
        raise ValueError("normal_digits is empty; name at least one digit as normal.")
    anomalous = tuple(d for d in range(10) if d not in normal) if anomalous_digits is None else _check_digits("anomalous_digits", anomalous_digits)
    if not anomalous or set(normal) & set(anomalous):
        raise ValueError(f"anomalous_digits must be non-empty and disjoint from normal_digits {normal}, got {anomalous}.")
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}.")
    for name, value in (("max_train", max_train), ("max_test", max_test)):
        if value is not None and value < 2:
            raise ValueError(f"{name} must be at least 2 or None, got {value}.")
    generator = torch.Generator().manual_seed(int(seed))
    train_split = load_digits("train", root=root, source=source, allow_download=allow_download, verbose=verbose)
    test_split = load_digits("test", root=root, source=train_split.source.split("-")[0], allow_download=False, verbose=False)
    prefix = f"{train_split.source}"

    normal_index = torch.nonzero(torch.isin(train_split.digits, torch.tensor(normal)), as_tuple=True)[0]
    normal_index = normal_index[torch.randperm(len(normal_index), generator=generator)]
    holdout_count = int(round(holdout_fraction * len(normal_index)))
    holdout_index, train_index = normal_index[:holdout_count], normal_index[holdout_count:]
    if max_train is not None:
        train_index = train_index[:max_train]
    if len(train_index) == 0:
        raise ValueError(f"no training images of digits {normal} are left (holdout_fraction={holdout_fraction}).")

    def build(split: DigitImages, index: torch.Tensor) -> DigitDataset:
        index = torch.sort(index).values
        digits = split.digits[index]
        labels = torch.isin(digits, torch.tensor(anomalous)).long()
        paths = [f"{prefix}/{split.split}/{i:05d}" for i in index.tolist()]
        return DigitDataset(split.images[index], digits, labels, paths, split.source)

    test_index = torch.nonzero(torch.isin(test_split.digits, torch.tensor(normal + anomalous)), as_tuple=True)[0]
    if max_test is not None and len(test_index) > max_test:
        test_index = test_index[torch.randperm(len(test_index), generator=generator)[:max_test]]
    result = OneClassSplit(
        train=build(train_split, train_index),
        holdout=build(train_split, holdout_index),
        test=build(test_split, test_index),
        normal_digits=normal,
        anomalous_digits=anomalous,
        source=train_split.source,
    )
    if verbose:
        print(
            f"one-class split on {result.source}: normal {normal}; train {len(result.train)}, "
            f"hold-out {len(result.holdout)}, test {len(result.test)} ({int(result.test.labels.sum())} anomalous)"
        )
    return result
