"""Digits for the AnoGAN chapter: MNIST read from local files, the offline stand-in, the one-class split."""

import numpy as np
import pytest
import torch

from adlearn.data import mnist
from adlearn.data.mnist import DigitDataset, load_digits, one_class_split


def write_fake_mnist(root, train_count=30, test_count=20, seed=0):
    """Tiny MNIST files in torchvision's layout (``root/MNIST/raw``, uncompressed IDX)."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    contents = {}
    for prefix, count in (("train", train_count), ("t10k", test_count)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        header = np.array([2051, count, 28, 28], dtype=">i4").tobytes()
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([2049, count], dtype=">i4").tobytes() + labels.tobytes())
        contents[prefix] = (images, labels)
    return contents


def test_offline_stand_in_looks_like_mnist_and_says_so(tmp_path, capsys):
    train = load_digits("train", root=tmp_path)
    notice = capsys.readouterr().out
    assert "NOTICE: MNIST is not available" in notice and "scikit-learn" in notice and str(tmp_path) in notice
    test = load_digits("test", root=tmp_path, verbose=False)
    assert capsys.readouterr().out == ""
    assert train.source == test.source == "sklearn-digits"
    assert len(train) + len(test) == 1797 and abs(len(test) - 0.3 * 1797) < 10
    assert train.images.shape[1:] == (1, 28, 28) and train.images.dtype == torch.float32
    assert float(train.images.min()) == 0.0 and float(train.images.max()) == 1.0
    # the digit sits in the central 20×20 box, the 4-pixel frame is black, as in MNIST
    assert float(train.images[..., :4, :].abs().max()) == 0.0 and float(train.images[..., :, -4:].abs().max()) == 0.0
    assert set(train.digits.tolist()) == set(range(10))
    again = load_digits("train", source="sklearn", verbose=False)
    assert torch.equal(again.images, train.images) and torch.equal(again.digits, train.digits)


def test_mnist_is_read_from_local_files(tmp_path, capsys):
    contents = write_fake_mnist(tmp_path)
    train = load_digits("train", root=tmp_path)
    assert "MNIST train split: 30 images" in capsys.readouterr().out
    test = load_digits("test", root=tmp_path, source="mnist", verbose=False)
    assert train.source == "mnist" and len(test) == 20
    assert torch.equal(train.images[:, 0], torch.from_numpy(contents["train"][0]).float() / 255)
    assert torch.equal(test.digits, torch.from_numpy(contents["t10k"][1]).long())


def test_mnist_missing_or_unreachable(tmp_path, monkeypatch, capsys):
    with pytest.raises(FileNotFoundError, match=r"MNIST files not found in .*MNIST.raw.*allow_download=True"):
        load_digits("train", root=tmp_path, source="mnist")
    # a network that does not answer: no download is attempted, the stand-in is used and the notice says why
    monkeypatch.setattr(mnist, "_network_answers", lambda timeout: False)
    with pytest.raises(ConnectionError, match="did not answer within 0.5 s"):
        load_digits("train", root=tmp_path, source="mnist", allow_download=True, timeout=0.5)
    fallback = load_digits("train", root=tmp_path, allow_download=True, timeout=0.5)
    assert fallback.source == "sklearn-digits" and "did not answer" in capsys.readouterr().out


def test_load_digits_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split must be one of"):
        load_digits("validation")
    with pytest.raises(ValueError, match="source must be one of"):
        load_digits("train", source="emnist")
    with pytest.raises(ValueError, match="timeout must be positive"):
        load_digits("train", timeout=0)


def test_one_class_split_protocol(tmp_path):
    split = one_class_split((3, 8), root=tmp_path, seed=1, verbose=False)
    assert split.normal_digits == (3, 8) and split.anomalous_digits == (0, 1, 2, 4, 5, 6, 7, 9)
    assert set(split.train.digits.tolist()) == {3, 8} and int(split.train.labels.sum()) == 0
    assert set(split.holdout.digits.tolist()) == {3, 8} and len(split.holdout) > 0
    assert not set(split.train.paths) & set(split.holdout.paths)
    assert torch.equal(split.test.labels, (~torch.isin(split.test.digits, torch.tensor([3, 8]))).long())
    assert set(split.test.digits.tolist()) == set(range(10))
    item = split.test[0]
    assert set(item) == {"image", "mask", "label", "defect_type", "path"}
    assert item["image"].shape == item["mask"].shape == (1, 28, 28) and float(item["mask"].abs().sum()) == 0.0
    assert item["defect_type"] == str(int(split.test.digits[0])) and item["path"].startswith("sklearn-digits/test/")
    assert item["label"] == int(split.test.digits[0] not in (3, 8))


def test_one_class_split_is_deterministic_and_subsamples(tmp_path):
    first = one_class_split((7,), root=tmp_path, seed=0, verbose=False)
    second = one_class_split((7,), root=tmp_path, seed=0, verbose=False)
    other = one_class_split((7,), root=tmp_path, seed=5, verbose=False)
    assert first.train.paths == second.train.paths and first.holdout.paths == second.holdout.paths
    assert torch.equal(first.test.images, second.test.images)
    assert first.holdout.paths != other.holdout.paths
    small = one_class_split((7,), (1, 2), root=tmp_path, max_train=10, max_test=20, holdout_fraction=0.0, verbose=False)
    assert len(small.train) == 10 and len(small.test) == 20 and len(small.holdout) == 0
    assert set(small.test.digits.tolist()) <= {1, 2, 7}
    assert isinstance(small.train.subset([0, 2]), DigitDataset) and len(small.train.subset([0, 2])) == 2


def test_one_class_split_on_local_mnist(tmp_path):
    write_fake_mnist(tmp_path, train_count=50, test_count=40)
    split = one_class_split((4,), root=tmp_path, holdout_fraction=0.2, verbose=False)
    assert split.source == "mnist" and len(split.train) + len(split.holdout) == 5
    assert len(split.test) == 40 and int(split.test.labels.sum()) == 36
    assert split.test[0]["path"] == "mnist/test/00000"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(normal_digits=()), "normal_digits is empty"),
        (dict(normal_digits=(10,)), "normal_digits must be distinct digits 0-9"),
        (dict(normal_digits=(1, 1)), "normal_digits must be distinct"),
        (dict(normal_digits=(1,), anomalous_digits=(1, 2)), "disjoint from normal_digits"),
        (dict(holdout_fraction=1.0), "holdout_fraction must be in"),
        (dict(max_test=1), "max_test must be at least 2"),
    ],
)
def test_one_class_split_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        one_class_split(root=tmp_path, verbose=False, **kwargs)


def test_dataset_index_errors():
    dataset = DigitDataset(torch.zeros(2, 1, 28, 28), torch.tensor([1, 2]), torch.tensor([0, 1]), ["a", "b"], "x")
    with pytest.raises(IndexError, match="out of range for a dataset of 2"):
        dataset[2]
    with pytest.raises(ValueError, match="one entry per image"):
        DigitDataset(torch.zeros(2, 1, 28, 28), torch.tensor([1]), torch.tensor([0, 1]), ["a", "b"], "x")
