"""Local copies of data sets: ``$ADLEARN_LOCAL_DATA`` for every loader, ``data import`` and ``data list``.

Every copy here is a small generated folder in ``tmp_path`` in its published layout.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adlearn.cli import main
from adlearn.data import MagneticTile, download_mvtec, find_local_copy, load_digits, load_texture_images
from adlearn.data import mvtec, paths
from adlearn.data.builtin import BUILDER_VERSION, MANIFEST_NAME
from adlearn.data.local import data_inventory, import_local_copies
from adlearn.data.mnist import read_idx


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No local copy of the machine, and an empty data root of this test's own."""
    monkeypatch.delenv("ADLEARN_LOCAL_DATA", raising=False)
    monkeypatch.setenv("ADLEARN_DATA", str(tmp_path / "data-root"))
    return tmp_path / "data-root"


def _use(monkeypatch: pytest.MonkeyPatch, *folders: Path) -> None:
    monkeypatch.setenv("ADLEARN_LOCAL_DATA", os.pathsep.join(str(folder) for folder in folders))


def make_mnist(folder: Path, counts: tuple[int, int] = (30, 10), gz: bool = True) -> Path:
    """MNIST's four IDX files (gzipped as published, or not) with ``counts`` train/test digits."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, count in zip(("train", "t10k"), counts):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        files = {
            f"{prefix}-images-idx3-ubyte": np.array([2051, count, 28, 28], ">i4").tobytes() + images.tobytes(),
            f"{prefix}-labels-idx1-ubyte": np.array([2049, count], ">i4").tobytes() + labels.tobytes(),
        }
        for name, data in files.items():
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return folder


def make_dtd(folder: Path, classes: tuple[str, ...] = ("banded", "bumpy"), per_class: int = 3) -> Path:
    for name in classes:
        (folder / "images" / name).mkdir(parents=True)
        for index in range(per_class):
            Image.fromarray(np.full((20, 24, 3), 40 * index, np.uint8)).save(folder / "images" / name / f"{name}_{index}.jpg")
    return folder


def make_mtd(folder: Path, counts: dict[str, int] | None = None) -> Path:
    """MTD's folders with empty files (listing and counting read no file)."""
    for kind, count in (counts or {"Free": 6, "Blowhole": 2, "Break": 1, "Crack": 1, "Fray": 1, "Uneven": 1}).items():
        (folder / f"MT_{kind}" / "Imgs").mkdir(parents=True)
        for index in range(count):
            (folder / f"MT_{kind}" / "Imgs" / f"exp_num_{index}.jpg").touch()
            (folder / f"MT_{kind}" / "Imgs" / f"exp_num_{index}.png").touch()
    return folder


def make_mvtec(folder: Path, categories: tuple[str, ...] = ("bottle",)) -> Path:
    for category in categories:
        (folder / category / "train" / "good").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / category / "train" / "good" / "000.png")
        (folder / category / "test" / "good").mkdir(parents=True)
    return folder


def make_all(base: Path) -> Path:
    make_mnist(base / "mnist")
    make_dtd(base / "dtd")
    make_mtd(base / "magnetic-tile")
    make_mvtec(base / "mvtec", ("bottle", "carpet"))
    return base


# --------------------------------------------------------------------------- the lookup


def test_local_data_folders_and_find_local_copy_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _hermetic: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert paths.local_data_folders() == [] and find_local_copy("dtd") is None
    monkeypatch.setenv("ADLEARN_LOCAL_DATA", f"{os.pathsep}{first}{os.pathsep} {os.pathsep}{second}")
    assert paths.local_data_folders() == [first, second]
    (first / "dtd").mkdir(parents=True)  # no images/ folder: not a copy, so it hides nothing
    make_dtd(second / "dtd")
    assert find_local_copy("dtd") == second / "dtd"
    make_dtd(first / "dtd", ("cracked",))
    assert paths.find_local_copies("dtd") == [first / "dtd", second / "dtd"]
    make_dtd(_hermetic / "dtd", ("cracked",))
    assert find_local_copy("dtd") == _hermetic / "dtd"  # the data root comes first
    make_mvtec(second / "mvtec")  # the other name of MVTec AD's folder
    assert find_local_copy("mvtec_ad") == second / "mvtec"
    with pytest.raises(ValueError, match="unknown data set"):
        find_local_copy("imagenet")


def test_mnist_from_a_local_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    copy = make_mnist(tmp_path / "copy" / "mnist")
    _use(monkeypatch, tmp_path / "copy")
    train = load_digits("train", source="mnist")
    assert train.source == "mnist" and train.images.shape == (30, 1, 28, 28) and train.digits.tolist()[:3] == [0, 1, 2]
    expected = np.frombuffer(gzip.decompress((copy / "train-images-idx3-ubyte.gz").read_bytes())[16:16 + 784], np.uint8)
    assert np.allclose(train.images[0, 0].numpy().ravel(), expected / 255.0)
    assert len(load_digits("test", source="mnist")) == 10
    assert "images from <local>/mnist" in capsys.readouterr().out  # printed relative to the local-copy folder
    with pytest.raises(FileNotFoundError, match="MNIST files not found"):  # an explicit root means that folder only
        load_digits("train", root=tmp_path / "elsewhere", source="mnist")
    plain = make_mnist(tmp_path / "plain" / "mnist", counts=(20, 5), gz=False)  # uncompressed files work too
    _use(monkeypatch, plain.parent)
    assert len(load_digits("train", source="mnist", verbose=False)) == 20
    assert read_idx(plain / "t10k-images-idx3-ubyte", header_only=True) == (5, 28, 28)


def test_mnist_local_copy_damaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = make_mnist(tmp_path / "copy" / "mnist")
    (copy / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x03" + b"\0" * 20))
    _use(monkeypatch, tmp_path / "copy")
    with pytest.raises(OSError, match=r"cannot read the MNIST file .*train-images-idx3-ubyte\.gz"):
        load_digits("train", source="auto", verbose=False)  # a damaged copy is an error, not a silent stand-in


def test_dtd_from_a_local_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    make_dtd(tmp_path / "copy" / "dtd")
    _use(monkeypatch, tmp_path / "copy")
    textures = load_texture_images(image_size=16)
    assert textures.shape == (6, 3, 16, 16)
    out = capsys.readouterr().out
    assert "6 DTD images of 2 classes (banded, bumpy) from <local>/dtd/images" in out  # no absolute path printed
    with pytest.raises(FileNotFoundError, match="no DTD textures"):
        load_texture_images(root=tmp_path / "elsewhere", image_size=16, fallback=False)


def test_magnetic_tile_from_a_local_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _hermetic: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(_hermetic / "magnetic-tile")):
        MagneticTile()
    make_mtd(tmp_path / "copy" / "magnetic-tile")
    _use(monkeypatch, tmp_path / "copy")
    train = MagneticTile(split="train")
    assert train.root == tmp_path / "copy" / "magnetic-tile" and len(train) == 4


def test_mvtec_download_uses_a_complete_local_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _hermetic: Path) -> None:
    make_mvtec(tmp_path / "copy" / "mvtec_ad", ("bottle", "carpet"))
    _use(monkeypatch, tmp_path / "copy")

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing may be downloaded")

    monkeypatch.setattr(mvtec, "download_file", no_download)
    assert download_mvtec(categories=["bottle", "carpet"]) == tmp_path / "copy" / "mvtec_ad"
    assert not _hermetic.exists()
    with pytest.raises(AssertionError, match="nothing may be downloaded"):  # a category the copy lacks
        download_mvtec(categories=["bottle", "zipper"], progress=False)
    with pytest.raises(AssertionError, match="nothing may be downloaded"):  # an explicit root is that folder
        download_mvtec(tmp_path / "mine", categories=["bottle"], progress=False)


# --------------------------------------------------------------------------- data import


def test_import_links_every_data_set_and_never_replaces(tmp_path: Path, _hermetic: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = make_all(tmp_path / "shared")
    (_hermetic / "dtd").mkdir(parents=True)
    (_hermetic / "dtd" / "mine.txt").write_text("the user's")
    assert main(["data", "import", str(source)]) == 0
    out = capsys.readouterr().out
    for name, folder in (("mnist", "mnist"), ("magnetic-tile", "magnetic-tile"), ("mvtec_ad", "mvtec")):
        link = _hermetic / ("mvtec_ad" if name == "mvtec_ad" else folder)
        assert link.is_symlink() and Path(os.readlink(link)) == (source / folder).resolve()
        assert f"linked {name}: {link} -> {source / folder}" in out
    assert f"skipped dtd: {_hermetic / 'dtd'} already exists" in out
    assert not (_hermetic / "dtd").is_symlink() and (_hermetic / "dtd" / "mine.txt").read_text() == "the user's"
    # Importing again changes nothing, and says so; so does a dangling link.
    (_hermetic / "mnist").unlink()
    (_hermetic / "mnist").symlink_to(tmp_path / "gone")
    results = import_local_copies(source)
    assert [result.linked for result in results] == [False] * 4
    assert os.readlink(_hermetic / "mnist") == str(tmp_path / "gone")
    (_hermetic / "mnist").unlink()
    assert [result.name for result in import_local_copies(source) if result.linked] == ["mnist"]
    # The loaders find what was imported without $ADLEARN_LOCAL_DATA.
    assert len(MagneticTile(split="train")) == 4 and len(load_digits("test", source="mnist", verbose=False)) == 10


def test_import_a_single_data_set_folder_and_nothing(tmp_path: Path, _hermetic: Path) -> None:
    copy = make_mtd(tmp_path / "my-tiles")
    [result] = import_local_copies(copy)
    assert result.name == "magnetic-tile" and result.linked and (_hermetic / "magnetic-tile").resolve() == copy.resolve()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no data set recognised"):
        main(["data", "import", str(tmp_path / "empty")])
    with pytest.raises(SystemExit, match="is not a folder"):
        main(["data", "import", str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="name the folder"):
        main(["data", "import"])


# --------------------------------------------------------------------------- data list


def test_list_shows_where_and_how_many(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _hermetic: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list"]) == 0
    assert "no data sets found" in capsys.readouterr().out
    shared = make_all(tmp_path / "shared")
    import_local_copies(shared)
    make_mnist(_hermetic / "MNIST" / "raw", counts=(60, 20), gz=False)  # torchvision's own download
    builtin_folder = f"builtin_v{BUILDER_VERSION}"
    (_hermetic / builtin_folder / "brick" / "train").mkdir(parents=True)
    (_hermetic / builtin_folder / "washer" / "test").mkdir(parents=True)
    (_hermetic / builtin_folder / MANIFEST_NAME).write_text("{}")
    elsewhere = tmp_path / "elsewhere"
    make_dtd(elsewhere / "dtd", ("cracked",), per_class=4)
    _use(monkeypatch, elsewhere)
    assert main(["data", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"data root: {_hermetic}"
    expected = [
        f"mnist          {Path('MNIST') / 'raw'}: 80 digits (60 train, 20 test)",
        f"mnist          mnist -> {(shared / 'mnist').resolve()}: 40 digits (30 train, 10 test)",
        f"dtd            dtd -> {(shared / 'dtd').resolve()}: 2 classes, 6 images",
        f"dtd            {elsewhere / 'dtd'}: 1 classes, 4 images",
        f"magnetic-tile  magnetic-tile -> {(shared / 'magnetic-tile').resolve()}: 6 good, 6 defective "
        "(blowhole 2, break 1, crack 1, fray 1, uneven 1)",
        f"mvtec_ad       mvtec_ad -> {(shared / 'mvtec').resolve()}: 2 categories: bottle, carpet",
        f"builtin        {builtin_folder}: 2 categories: brick, washer",
    ]
    assert lines[1:] == expected
    assert [entry.name for entry in data_inventory()] == ["mnist", "mnist", "dtd", "dtd", "magnetic-tile", "mvtec_ad", "builtin"]
