"""Magnetic Tile Defects: the split, the items, the errors, the content digest and the download.

Everything runs on small generated folders in MTD's layout (``MT_<Type>/Imgs/<name>.jpg``
+ ``<name>.png``); the download reads a fake archive through a ``file://`` URL.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adlearn.data import ChecksumError, MagneticTile, MVTecAD, download_magnetic_tile
from adlearn.data import magnetic_tile as M

DEFECTS = ("Blowhole", "Break", "Crack", "Fray", "Uneven")
N_FREE, PER_DEFECT = 12, 2  # 12 good images: indices 0, 5, 10 are test images


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No local copy of the machine, and a data root of this test's own."""
    monkeypatch.delenv("ADLEARN_LOCAL_DATA", raising=False)
    monkeypatch.setenv("ADLEARN_DATA", str(tmp_path / "data-root"))


def _jpeg(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=95)


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def soft_mask(height: int, width: int) -> np.ndarray:
    """Left half 255, a band of 200 (a defect pixel) and one of 100 (not one) at the right."""
    mask = np.zeros((height, width), np.uint8)
    mask[:, : width // 2] = 255
    mask[:, -4:-2] = 200
    mask[:, -2:] = 100
    return mask


def make_mtd(root: Path, n_free: int = N_FREE, per_defect: int = PER_DEFECT) -> Path:
    """A tiny MTD folder: grey JPEGs of varying size, blank masks beside the good ones, soft masks beside the others."""
    rng = np.random.default_rng(0)
    for index in range(n_free):
        height, width = 40 + 2 * index, 64 - index  # sizes vary, as in MTD
        name = f"exp{index % 3}_num_{1000 + 37 * index}"  # sorted by name != creation order
        _jpeg(root / "MT_Free" / "Imgs" / f"{name}.jpg", rng.integers(60, 200, (height, width), dtype=np.uint8))
        _png(root / "MT_Free" / "Imgs" / f"{name}.png", np.zeros((height, width), np.uint8))
    for kind in DEFECTS:
        for index in range(per_defect):
            name = f"exp1_num_{kind.lower()}{index}"
            _jpeg(root / f"MT_{kind}" / "Imgs" / f"{name}.jpg", rng.integers(60, 200, (48, 64), dtype=np.uint8))
            _png(root / f"MT_{kind}" / "Imgs" / f"{name}.png", soft_mask(48, 64))
    return root


@pytest.fixture
def mtd(tmp_path: Path) -> Path:
    return make_mtd(tmp_path / "magnetic-tile")


# --------------------------------------------------------------------------- split


def test_split_rule_and_counts(mtd: Path) -> None:
    train, test = MagneticTile(mtd, "train", image_size=32), MagneticTile(mtd, "test", image_size=32)
    free = sorted(path.name for path in (mtd / "MT_Free" / "Imgs").glob("*.jpg"))
    assert [Path(p).name for p, d in zip(test.paths, test.item_defect_types) if d == "good"] == free[0::5]
    assert sorted(Path(p).name for p in train.paths) == sorted(set(free) - set(free[0::5]))
    assert len(train) == 9 and train.labels == [0] * 9 and train.defect_types == ["good"]
    assert len(test) == 3 + 5 * PER_DEFECT and test.labels.count(1) == 5 * PER_DEFECT
    assert test.defect_types == ["blowhole", "break", "crack", "fray", "good", "uneven"]
    assert {test.item_defect_types.count(name) for name in test.defect_types if name != "good"} == {PER_DEFECT}
    assert not set(train.paths) & set(test.paths)
    assert all(p.endswith(".jpg") for p in train.paths + test.paths)  # masks are never items
    assert isinstance(test, MVTecAD) and test.category == "magnetic_tile"
    assert "split='test'" in repr(test) and "'fray': 2" in repr(test)


def test_split_sizes_of_the_real_data_set(tmp_path: Path) -> None:
    """952 good and 392 defective files give 761 train and 191 + 392 test items (files are not read to list them)."""
    counts = {"Free": 952, "Blowhole": 115, "Break": 85, "Crack": 57, "Fray": 32, "Uneven": 103}
    for kind, count in counts.items():
        folder = tmp_path / f"MT_{kind}" / "Imgs"
        folder.mkdir(parents=True)
        for index in range(count):
            (folder / f"exp_num_{index}.jpg").touch()
            (folder / f"exp_num_{index}.png").touch()
    train, test = MagneticTile(tmp_path, "train"), MagneticTile(tmp_path, "test")
    assert (len(train), len(test), test.labels.count(0), test.labels.count(1)) == (761, 583, 191, 392)


# --------------------------------------------------------------------------- items


def test_items_shapes_dtypes_and_values(mtd: Path) -> None:
    test = MagneticTile(mtd, "test", image_size=32)
    for index in (0, len(test) - 1):
        item = test[index]
        assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
        assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
        assert torch.equal(item["image"][0], item["image"][1]) and torch.equal(item["image"][0], item["image"][2])
        assert item["mask"].shape == (1, 32, 32) and item["mask"].dtype == torch.float32
        assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
        assert isinstance(item["label"], int) and isinstance(item["path"], str)
    assert test[0]["label"] == 0 and test[0]["defect_type"] == "good" and float(test[0]["mask"].sum()) == 0
    assert test[-1]["label"] == 1 and test[-1]["defect_type"] == "uneven"
    assert MagneticTile(mtd, "train", image_size=(24, 40))[0]["image"].shape == (3, 24, 40)
    native = MagneticTile(mtd, "train", image_size=None)
    assert native[0]["image"].shape[1:] != native[1]["image"].shape[1:]  # each file's own size


def test_mask_binarised_above_127_and_resized_nearest(mtd: Path) -> None:
    native = MagneticTile(mtd, "test", image_size=None)[-1]["mask"][0]
    expected = torch.from_numpy(soft_mask(48, 64) > 127).float()
    assert torch.equal(native, expected)  # 200 counts, 100 does not
    halved = MagneticTile(mtd, "test", image_size=(24, 32))[-1]["mask"][0]
    assert torch.equal(halved[:, :16], torch.ones(24, 16))  # left half stays exactly the left half
    assert float(halved[:, 16:30].sum()) == 0.0


# --------------------------------------------------------------------------- errors


def test_unknown_split_and_missing_root(tmp_path: Path, mtd: Path) -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        MagneticTile(mtd, "validation")
    with pytest.raises(FileNotFoundError, match=r"nowhere.*download_magnetic_tile"):
        MagneticTile(tmp_path / "nowhere")


def test_missing_or_empty_folders(mtd: Path) -> None:
    for path in (mtd / "MT_Crack" / "Imgs").iterdir():
        path.unlink()
    MagneticTile(mtd, "train")  # the training split reads MT_Free only
    with pytest.raises(ValueError, match=r"MT_Crack.Imgs holds no \.jpg"):
        MagneticTile(mtd, "test")
    (mtd / "MT_Crack" / "Imgs").rmdir()
    (mtd / "MT_Crack").rmdir()
    with pytest.raises(FileNotFoundError, match=r"MT_Crack.Imgs is missing.*not a complete"):
        MagneticTile(mtd, "test")
    with pytest.raises(FileNotFoundError, match=r"MT_Free.Imgs is missing"):
        MagneticTile(mtd.parent, "train")  # a folder without MT_* folders


def test_defective_image_without_mask(mtd: Path) -> None:
    mask = mtd / "MT_Fray" / "Imgs" / "exp1_num_fray1.png"
    mask.unlink()
    with pytest.raises(FileNotFoundError, match=r"exp1_num_fray1\.jpg has no mask; expected .*exp1_num_fray1\.png"):
        MagneticTile(mtd, "test")


def test_corrupt_and_truncated_images_fail_when_read(mtd: Path) -> None:
    garbage, cut = sorted((mtd / "MT_Break" / "Imgs").glob("*.jpg"))
    garbage.write_bytes(b"not a jpeg at all")
    cut.write_bytes(cut.read_bytes()[:200])
    test = MagneticTile(mtd, "test")  # construction reads no file
    for path in (garbage, cut):
        with pytest.raises(OSError, match=f"cannot read image file .*{path.name}"):
            test[test.paths.index(str(path))]


def test_mask_of_another_size(mtd: Path) -> None:
    _png(mtd / "MT_Blowhole" / "Imgs" / "exp1_num_blowhole0.png", np.zeros((10, 10), np.uint8))
    test = MagneticTile(mtd, "test")
    index = test.paths.index(str(mtd / "MT_Blowhole" / "Imgs" / "exp1_num_blowhole0.jpg"))
    with pytest.raises(ValueError, match=r"exp1_num_blowhole0\.png is 10x10 .* is 64x48"):
        test[index]


# --------------------------------------------------------------------------- digest and download


def test_content_digest_is_sha256sum_of_the_sorted_lines(mtd: Path) -> None:
    lines = sorted(
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(mtd).as_posix()}\n"
        for path in mtd.glob("MT_*/Imgs/*")
    )
    digest = M.magnetic_tile_digest(mtd)
    assert digest == hashlib.sha256("".join(lines).encode()).hexdigest() and len(lines) == 2 * (N_FREE + 5 * PER_DEFECT)
    (mtd / "README.md").write_text("not part of the digest")
    assert M.magnetic_tile_digest(mtd) == digest
    path = next((mtd / "MT_Fray" / "Imgs").glob("*.png"))
    path.write_bytes(path.read_bytes() + b"\0")
    assert M.magnetic_tile_digest(mtd) != digest


def _fake_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digest: str | None = None) -> Path:
    """A zip like GitHub's (one top folder), served by a file:// URL; returns the archive."""
    source = make_mtd(tmp_path / "source")
    archive = tmp_path / "served" / "master.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("Magnetic-tile-defect-datasets.-master/", "")
        bundle.writestr("Magnetic-tile-defect-datasets.-master/README.md", "It is welcomed to use our dataset.")
        for path in sorted(source.rglob("*")):
            bundle.write(path, f"Magnetic-tile-defect-datasets.-master/{path.relative_to(source).as_posix()}")
    monkeypatch.setattr(M, "MAGNETIC_TILE_URL", archive.as_uri())
    monkeypatch.setattr(M, "MAGNETIC_TILE_CONTENT_SHA256", digest or M.magnetic_tile_digest(source))
    return archive


def test_download_from_a_fake_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _fake_archive(tmp_path, monkeypatch)
    root = download_magnetic_tile(tmp_path / "data" / "magnetic-tile", progress=False)
    assert root == tmp_path / "data" / "magnetic-tile"
    assert (root / "README.md").is_file() and len(MagneticTile(root, "test")) == 3 + 5 * PER_DEFECT
    assert sorted(path.name for path in root.parent.iterdir()) == ["magnetic-tile"]  # archive and scratch gone
    archive.unlink()  # a second call finds the folder and downloads nothing
    assert download_magnetic_tile(root, progress=False) == root
    # Without root: the data root's folder (ADLEARN_DATA), downloaded there.
    _fake_archive(tmp_path / "again", monkeypatch)
    assert download_magnetic_tile(progress=False, keep_archive=True) == tmp_path / "data-root" / "magnetic-tile"
    assert (tmp_path / "data-root" / M.MAGNETIC_TILE_ARCHIVE).is_file()


def test_download_digest_mismatch_keeps_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_archive(tmp_path, monkeypatch, digest="0" * 64)
    root = tmp_path / "data" / "magnetic-tile"
    with pytest.raises(ChecksumError, match=r"expected the content digest 0{64}.*Nothing was deleted") as error:
        download_magnetic_tile(root, progress=False)
    assert not root.exists()
    kept = tmp_path / "data" / "magnetic-tile.sha256-mismatch"
    kept_archive = tmp_path / "data" / f"{M.MAGNETIC_TILE_ARCHIVE}.sha256-mismatch"
    assert str(kept) in str(error.value) and str(kept_archive) in str(error.value)
    assert len(list(kept.glob("*/MT_*/Imgs/*.jpg"))) == N_FREE + 5 * PER_DEFECT and kept_archive.is_file()


def test_download_refuses_a_foreign_folder_and_a_damaged_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data" / "magnetic-tile"
    root.mkdir(parents=True)
    (root / "mine.txt").write_text("the user's")
    with pytest.raises(FileExistsError, match="does not touch it"):
        download_magnetic_tile(root, progress=False)
    assert (root / "mine.txt").read_text() == "the user's"
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    monkeypatch.setattr(M, "MAGNETIC_TILE_URL", broken.as_uri())
    with pytest.raises(OSError, match=r"is damaged .*renamed to .*\.damaged"):
        download_magnetic_tile(tmp_path / "other" / "magnetic-tile", progress=False)
    assert (tmp_path / "other" / f"{M.MAGNETIC_TILE_ARCHIVE}.damaged").is_file()
    assert not (tmp_path / "other" / "magnetic-tile").exists()


def test_download_uses_a_local_copy_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mtd: Path) -> None:
    monkeypatch.setenv("ADLEARN_LOCAL_DATA", str(mtd.parent))
    monkeypatch.setattr(M, "MAGNETIC_TILE_URL", (tmp_path / "no-such.zip").as_uri())  # would fail if used
    assert download_magnetic_tile(progress=False) == mtd
    assert MagneticTile(split="test").root == mtd
