"""Anomaly-source textures: a DTD folder, the offline stand-in, the download path, and bad folders."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adlearn.data import textures as T
from adlearn.data.download import sha256_of


def make_dtd(root: Path, per_class: int = 3) -> Path:
    """A tiny DTD layout: ``root/dtd/images/<class>/*.jpg`` with images of different sizes."""
    rng = np.random.default_rng(0)
    for name, (height, width) in {"banded": (40, 60), "dotted": (50, 30)}.items():
        folder = root / "dtd" / "images" / name
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}_{index:04d}.jpg")
    return root


def test_loads_a_dtd_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_dtd(tmp_path)
    textures = T.load_texture_images(tmp_path, image_size=32)
    assert textures.shape == (6, 3, 32, 32) and textures.dtype == torch.float32
    assert 0 <= textures.min() and textures.max() <= 1 and textures.std() > 0.1
    assert "6 DTD images" in capsys.readouterr().out
    # The dtd folder or its images folder work as the root too.
    assert torch.equal(T.load_texture_images(tmp_path / "dtd", image_size=32, verbose=False), textures)
    assert torch.equal(T.load_texture_images(tmp_path / "dtd" / "images", image_size=32, verbose=False), textures)


def test_subset_is_seeded_and_uint8_is_available(tmp_path: Path) -> None:
    make_dtd(tmp_path)
    first = T.load_texture_images(tmp_path, image_size=16, count=3, seed=1, verbose=False)
    again = T.load_texture_images(tmp_path, image_size=16, count=3, generator=torch.Generator().manual_seed(1), verbose=False)
    assert first.shape == (3, 3, 16, 16) and torch.equal(first, again)
    as_bytes = T.load_texture_images(tmp_path, image_size=16, count=3, seed=1, dtype=torch.uint8, verbose=False)
    assert as_bytes.dtype == torch.uint8 and torch.allclose(as_bytes.float() / 255, first)


def test_empty_texture_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "dtd" / "images" / "banded").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds no images") as info:
        T.load_texture_images(tmp_path, image_size=16)
    assert str(tmp_path / "dtd" / "images") in str(info.value)


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    make_dtd(tmp_path, per_class=1)
    broken = tmp_path / "dtd" / "images" / "banded" / "banded_9999.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match="banded_9999.jpg"):
        T.load_texture_images(tmp_path, image_size=16, verbose=False)


def test_missing_dtd_falls_back_with_a_notice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    textures = T.load_texture_images(tmp_path / "nothing_here", image_size=24, count=10)
    assert textures.shape == (10, 3, 24, 24) and 0 <= textures.min() and textures.max() <= 1
    output = capsys.readouterr().out
    assert "DTD not found" in output and "stand-in" in output and "download_dtd" in output
    with pytest.raises(FileNotFoundError, match="download_dtd"):
        T.load_texture_images(tmp_path / "nothing_here", image_size=24, fallback=False)


def test_fallback_textures_are_seeded_varied_and_avoid_the_builtin_photographs() -> None:
    first = T.fallback_textures(12, 32, seed=0)
    assert torch.equal(first, T.fallback_textures(12, 32, seed=0))
    assert not torch.equal(first, T.fallback_textures(12, 32, seed=1))
    per_texture_mean = first.mean(dim=(1, 2, 3))
    assert per_texture_mean.std() > 0.02  # not twelve copies of one picture
    assert not {"brick", "grass", "gravel"} & set(T.FALLBACK_PHOTOGRAPHS)
    assert len(T.FALLBACK_PATTERNS) >= 5



def test_fallback_patterns_have_muted_natural_colours() -> None:
    """Drawn patterns vary in brightness around one muted hue, as DTD's materials do, not in vivid colours."""
    textures = T.fallback_textures(48, 32, seed=0)
    patterns = textures[1::2]  # odd indices are drawn patterns, even ones photograph crops
    brightest, darkest = patterns.amax(dim=1), patterns.amin(dim=1)
    saturation = ((brightest - darkest) / brightest.clamp_min(1e-6)).mean(dim=(1, 2))  # HSV saturation
    assert saturation.median() < 0.3
    assert saturation.max() > 0.1  # muted, not grey
    contrast = brightest.flatten(1).quantile(0.95, dim=1) - brightest.flatten(1).quantile(0.05, dim=1)
    assert contrast.min() > 0.05  # every pattern is still visible

def test_bad_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="image_size"):
        T.load_texture_images(tmp_path, image_size=2)
    with pytest.raises(ValueError, match="count"):
        T.load_texture_images(tmp_path, count=0)
    with pytest.raises(ValueError, match="dtype"):
        T.load_texture_images(tmp_path, dtype=torch.int64)


def test_download_dtd_from_a_local_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = make_dtd(tmp_path / "source")
    archive = tmp_path / "dtd-r1.0.1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "dtd", arcname="dtd")
    monkeypatch.setattr(T, "DTD_URL", archive.as_uri())
    monkeypatch.setattr(T, "DTD_SHA256", sha256_of(archive))
    root = T.download_dtd(tmp_path / "data", progress=False)
    assert root == tmp_path / "data"
    assert not (root / "dtd-r1.0.1.tar.gz").exists()  # the archive is removed after unpacking
    assert T.load_texture_images(root, image_size=16, verbose=False).shape == (6, 3, 16, 16)
    assert T.download_dtd(root, progress=False) == root  # already there: nothing to do
    # A dtd folder without images is not touched.
    (tmp_path / "other" / "dtd").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="no DTD images"):
        T.download_dtd(tmp_path / "other", progress=False)


def test_download_dtd_rejects_a_wrong_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from adlearn.data.download import ChecksumError

    archive = tmp_path / "fake.tar.gz"
    archive.write_bytes(b"definitely not DTD")
    monkeypatch.setattr(T, "DTD_URL", archive.as_uri())
    with pytest.raises(ChecksumError):
        T.download_dtd(tmp_path / "data", progress=False)


def test_image_folder_reads_images_at_any_depth(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for index, relative in enumerate(["n01/a.jpg", "n01/b.png", "n02/deeper/c.JPEG", "notes.txt"]):
        path = tmp_path / "imagenet" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if relative.endswith(".txt"):
            path.write_text("not an image")
        else:
            Image.fromarray(rng.integers(0, 255, (40 + index, 50, 3), dtype=np.uint8)).save(path)
    images = T.load_image_folder(tmp_path / "imagenet", image_size=32)
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.uint8
    assert T.load_image_folder(tmp_path / "imagenet", image_size=32, count=2, seed=1).shape[0] == 2
    natural, source = T.load_natural_images(tmp_path / "imagenet", 16, verbose=False)
    assert natural.shape == (3, 3, 16, 16) and source.startswith("3 images from")
    with pytest.raises(FileNotFoundError, match="no image folder"):
        T.load_image_folder(tmp_path / "missing", image_size=32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        T.load_image_folder(tmp_path / "empty", image_size=32)


def test_natural_images_fall_back_to_the_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADLEARN_DATA", str(tmp_path))
    monkeypatch.setattr(T, "find_local_copy", lambda name: None)
    images, source = T.load_natural_images(None, 24, count=5, verbose=False)
    assert images.shape == (5, 3, 24, 24) and images.dtype == torch.uint8
    assert source == "5 offline stand-in textures"
