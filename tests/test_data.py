"""Tests of the data layer: paths, downloads, archives, the MVTec loader and the built-in data set.

Everything runs on generated files; downloads use ``file://`` URLs and a tiny
HTTP server on 127.0.0.1, never the internet.
"""

from __future__ import annotations

import hashlib
import http.server
import inspect
import io
import json
import shutil
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adlearn.data import (
    BUILTIN_CATEGORIES,
    BUILTIN_DEFECTS,
    ChecksumError,
    MVTecAD,
    build_builtin_dataset,
    builtin_dataset_root,
    default_data_root,
    download_file,
    download_mvtec,
    extract_archive,
)
from adlearn.data import builtin, mvtec, paths
from adlearn.data.builtin import DEFECT_AREA_RANGE, MANIFEST_NAME, VISIBLE_CHANGE, BuiltinSettings, render_item

from conftest import BUILTIN_TEST_SIZES, TINY_SIZE

# --------------------------------------------------------------------------- helpers


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): _sha256(path.read_bytes()) for path in sorted(root.rglob("*")) if path.is_file()
    }


class _RangeServer:
    """A tiny HTTP server on 127.0.0.1 that serves one payload and honours ``Range: bytes=N-``.

    ``truncate_next`` makes the next response stop after that many body bytes (a
    broken connection); ``honour_range=False`` makes it ignore ranges like some servers do.
    """

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.honour_range = True
        self.truncate_next: int | None = None
        self.range_headers: list[str | None] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep the test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path != "/file.bin":
                    self.send_error(404, "not here")
                    return
                header = self.headers.get("Range")
                owner.range_headers.append(header)
                start = 0
                if header and owner.honour_range:
                    start = int(header.split("=")[1].rstrip("-"))
                    if start >= len(owner.payload):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(owner.payload)}")
                        self.end_headers()
                        return
                body = owner.payload[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(owner.payload) - 1}/{len(owner.payload)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if owner.truncate_next is not None:
                    body, owner.truncate_next = body[: owner.truncate_next], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/file.bin"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "_RangeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


# --------------------------------------------------------------------------- paths


def test_default_data_root_honours_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ADLEARN_DATA", str(tmp_path / "somewhere"))
    assert default_data_root() == (tmp_path / "somewhere").resolve()


def test_default_data_root_checkout_or_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ADLEARN_DATA", raising=False)
    checkout = paths.repository_root()
    if checkout is not None:
        assert default_data_root() == checkout / "data"
        assert (checkout / "adlearn" / "data" / "paths.py").is_file()
    # Outside a checkout (no _config.yml next to the package) the user's cache folder is used.
    monkeypatch.setattr(paths, "_CHECKOUT_MARKER", "no-such-marker.yml")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.repository_root() is None
    assert default_data_root() == tmp_path / ".cache" / "adlearn"


# --------------------------------------------------------------------------- download_file


def test_download_file_url_with_checksum(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    payload = bytes(range(256)) * 1000
    source.write_bytes(payload)
    target = tmp_path / "sub" / "copy.bin"
    result = download_file(source.as_uri(), target, sha256=_sha256(payload), progress=False)
    assert result == target
    assert target.read_bytes() == payload
    assert not target.with_name("copy.bin.part").exists()


def test_download_file_checksum_mismatch_keeps_bad_file(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"corrupted contents")
    target = tmp_path / "copy.bin"
    expected = "0" * 64
    with pytest.raises(ChecksumError) as error:
        download_file(source.as_uri(), target, sha256=expected, progress=False)
    message = str(error.value)
    assert expected in message and _sha256(b"corrupted contents") in message and "copy.bin" in message
    assert not target.exists()
    kept = tmp_path / "copy.bin.sha256-mismatch"
    assert kept.read_bytes() == b"corrupted contents"  # renamed, not deleted
    assert str(kept) in message


def test_download_file_never_overwrites_existing_file(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"new server contents")
    target = tmp_path / "mine.bin"
    target.write_bytes(b"the user's own file")
    assert download_file(source.as_uri(), target, progress=False) == target
    assert target.read_bytes() == b"the user's own file"
    with pytest.raises(ChecksumError, match="mine.bin"):
        download_file(source.as_uri(), target, sha256=_sha256(b"new server contents"), progress=False)
    assert target.read_bytes() == b"the user's own file"
    # A matching digest accepts the existing file without downloading anything.
    target.write_bytes(b"new server contents")
    source.unlink()
    assert download_file(source.as_uri(), target, sha256=_sha256(b"new server contents"), progress=False) == target


def test_download_file_resumes_partial_download_with_range(tmp_path: Path) -> None:
    payload = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    target = tmp_path / "file.bin"
    target.with_name("file.bin.part").write_bytes(payload[:123_456])
    with _RangeServer(payload) as server:
        download_file(server.url, target, sha256=_sha256(payload), progress=False)
    assert server.range_headers == ["bytes=123456-"]
    assert target.read_bytes() == payload


def test_download_file_broken_connection_then_resume(tmp_path: Path) -> None:
    payload = np.random.default_rng(1).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    target = tmp_path / "file.bin"
    partial = tmp_path / "file.bin.part"
    with _RangeServer(payload) as server:
        server.truncate_next = 50_000
        with pytest.raises(ConnectionError, match="resume"):
            download_file(server.url, target, sha256=_sha256(payload), progress=False, timeout=10)
        assert not target.exists()
        assert partial.read_bytes() == payload[:50_000]  # kept for the next attempt
        download_file(server.url, target, sha256=_sha256(payload), progress=False, timeout=10)
    assert server.range_headers == [None, "bytes=50000-"]
    assert target.read_bytes() == payload
    assert not partial.exists()


def test_download_file_server_ignoring_range_restarts_cleanly(tmp_path: Path) -> None:
    payload = b"abcdefghij" * 5000
    target = tmp_path / "file.bin"
    target.with_name("file.bin.part").write_bytes(b"XXXXX")  # stale bytes that must not survive
    with _RangeServer(payload) as server:
        server.honour_range = False
        download_file(server.url, target, sha256=_sha256(payload), progress=False)
    assert target.read_bytes() == payload


def test_download_file_complete_part_file_is_finished(tmp_path: Path) -> None:
    payload = b"0123456789" * 100
    target = tmp_path / "file.bin"
    target.with_name("file.bin.part").write_bytes(payload)
    with _RangeServer(payload) as server:
        download_file(server.url, target, sha256=_sha256(payload), progress=False)  # server answers 416
    assert target.read_bytes() == payload


def test_download_file_errors_are_connection_errors(tmp_path: Path) -> None:
    with _RangeServer(b"x") as server:
        with pytest.raises(ConnectionError, match="HTTP 404"):
            download_file(server.url.replace("file.bin", "missing.bin"), tmp_path / "a.bin", progress=False)
    with pytest.raises(ConnectionError, match="could not download"):
        download_file((tmp_path / "does-not-exist.bin").as_uri(), tmp_path / "b.bin", progress=False)
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "b.bin").exists()


# --------------------------------------------------------------------------- extract_archive


def _add_bytes(bundle: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    bundle.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("suffix, mode", [(".tar.gz", "w:gz"), (".tar.xz", "w:xz")])
def test_extract_archive_tar(tmp_path: Path, suffix: str, mode: str) -> None:
    archive = tmp_path / f"data{suffix}"
    with tarfile.open(archive, mode) as bundle:
        _add_bytes(bundle, "cat/a.txt", b"alpha")
        _add_bytes(bundle, "cat/sub/b.txt", b"beta")
        _add_bytes(bundle, "other/c.txt", b"gamma")
    names = extract_archive(archive, tmp_path / "out", members=lambda name: name.startswith("cat/"))
    assert names == ["cat/a.txt", "cat/sub/b.txt"]
    assert (tmp_path / "out" / "cat" / "sub" / "b.txt").read_bytes() == b"beta"
    assert not (tmp_path / "out" / "other").exists()


@pytest.mark.parametrize("evil_name", ["../escaped.txt", "/tmp/adlearn-absolute-escape.txt", "ok/../../escaped.txt"])
def test_extract_archive_refuses_escaping_paths(tmp_path: Path, evil_name: str) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        _add_bytes(bundle, evil_name, b"gotcha")
    with pytest.raises(ValueError, match="outside"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/adlearn-absolute-escape.txt").exists()


def test_extract_archive_refuses_links_out_and_zip_escapes(tmp_path: Path) -> None:
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as bundle:
        link = tarfile.TarInfo("cat/link")
        link.type = tarfile.SYMTYPE
        link.linkname = "../../etc/passwd"
        bundle.addfile(link)
    with pytest.raises(ValueError, match="points outside"):
        extract_archive(archive, tmp_path / "out")

    zipped = tmp_path / "evil.zip"
    with zipfile.ZipFile(zipped, "w") as bundle:
        bundle.writestr("fine.txt", "fine")
        bundle.writestr("../escaped.txt", "gotcha")
    with pytest.raises(ValueError, match="outside"):
        extract_archive(zipped, tmp_path / "zip_out")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "zip_out" / "fine.txt").exists()  # zip members are all checked first


def test_extract_archive_does_not_overwrite(tmp_path: Path) -> None:
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("a.txt", "from the archive")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.txt").write_text("the user's file")
    with pytest.raises(FileExistsError, match="a.txt"):
        extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_text() == "the user's file"
    with pytest.raises(ValueError, match="archive type"):
        extract_archive(tmp_path / "data.rar", tmp_path / "out")


# --------------------------------------------------------------------------- MVTecAD on handmade data


def test_mvtec_train_items(tiny_mvtec_root: Path) -> None:
    train = MVTecAD(tiny_mvtec_root, "widget", split="train", image_size=None)
    assert len(train) == 3
    assert train.categories_found == ["widget"]
    assert train.defect_types == ["good"]
    assert train.labels == [0, 0, 0]
    item = train[0]
    assert set(item) == {"image", "mask", "label", "defect_type", "path"}
    assert item["image"].shape == (3, TINY_SIZE, TINY_SIZE) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, TINY_SIZE, TINY_SIZE) and item["mask"].dtype == torch.float32
    assert float(item["image"].min()) >= 0.0 and float(item["image"].max()) <= 1.0
    assert item["label"] == 0 and item["defect_type"] == "good" and item["path"].endswith("train/good/000.png")
    assert torch.equal(item["mask"], torch.zeros(1, TINY_SIZE, TINY_SIZE))
    # The first training image is stored grey: it comes back as three equal channels.
    assert torch.equal(item["image"][0], item["image"][1]) and torch.equal(item["image"][1], item["image"][2])
    # Values are the stored bytes / 255.
    stored = _read_rgb(Path(train.paths[1]))
    assert torch.allclose(train[1]["image"], torch.from_numpy(stored).permute(2, 0, 1).float() / 255)
    assert train[-1]["path"] == train.paths[2]
    with pytest.raises(IndexError):
        train[3]


def test_mvtec_test_items_and_masks(tiny_mvtec_root: Path) -> None:
    test = MVTecAD(tiny_mvtec_root, "widget", split="test", image_size=None)
    assert len(test) == 5
    assert test.defect_types == ["dent", "good", "scratch"]
    assert test.item_defect_types == ["dent", "dent", "good", "good", "scratch"]
    assert test.labels == [1, 1, 0, 0, 1]
    for index in range(len(test)):
        item = test[index]
        mask = item["mask"][0]
        assert set(torch.unique(mask).tolist()) <= {0.0, 1.0}
        if item["label"] == 0:
            assert mask.sum() == 0
        else:
            assert mask.sum() == 5 * 8
            # Exactly the masked pixels were painted white in the handmade images.
            assert torch.all(item["image"][:, mask > 0] == 1.0)


def test_mvtec_resizes_image_bilinear_and_mask_nearest(tiny_mvtec_root: Path) -> None:
    test = MVTecAD(tiny_mvtec_root, "widget", split="test", image_size=16)
    item = test[0]
    assert item["image"].shape == (3, 16, 16) and item["mask"].shape == (1, 16, 16)
    assert set(torch.unique(item["mask"]).tolist()) == {0.0, 1.0}
    full = MVTecAD(tiny_mvtec_root, "widget", split="test", image_size=None)[0]["mask"][0]
    assert torch.equal(item["mask"][0], full[1::2, 1::2])  # nearest neighbour (PIL samples pixel centres)
    rectangular = MVTecAD(tiny_mvtec_root, "widget", split="test", image_size=(8, 24))[0]
    assert rectangular["image"].shape == (3, 8, 24) and rectangular["mask"].shape == (1, 8, 24)


def test_mvtec_listing_does_not_read_images(tiny_mvtec_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: object) -> None:
        raise AssertionError(f"read {path}")

    monkeypatch.setattr(mvtec, "read_image", refuse)
    test = MVTecAD(tiny_mvtec_root, "widget", split="test")
    assert test.labels == [1, 1, 0, 0, 1] and len(test.paths) == 5 and "widget" in repr(test)


def test_mvtec_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        MVTecAD(tmp_path / "nowhere", "widget")
    message = str(error.value)
    assert "nowhere" in message and "download_mvtec" in message and "builtin_dataset_root" in message


def test_mvtec_unknown_category_lists_found(tiny_mvtec_root: Path) -> None:
    with pytest.raises(ValueError, match=r"'gadget'.*widget"):
        MVTecAD(tiny_mvtec_root, "gadget")
    with pytest.raises(ValueError, match="split"):
        MVTecAD(tiny_mvtec_root, "widget", split="validation")
    with pytest.raises(TypeError, match="image_size"):
        MVTecAD(tiny_mvtec_root, "widget", image_size="big")  # type: ignore[arg-type]


@pytest.fixture
def tiny_copy(tiny_mvtec_root: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny data set that a test may break."""
    return Path(shutil.copytree(tiny_mvtec_root, tmp_path / "copy"))


def test_mvtec_empty_train_good(tiny_copy: Path) -> None:
    for path in (tiny_copy / "widget" / "train" / "good").iterdir():
        path.unlink()
    with pytest.raises(ValueError, match=r"no training images in .*train/good"):
        MVTecAD(tiny_copy, "widget", split="train")


def test_mvtec_mask_size_mismatch_names_both_files(tiny_copy: Path) -> None:
    mask_path = tiny_copy / "widget" / "ground_truth" / "dent" / "000_mask.png"
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(mask_path)
    test = MVTecAD(tiny_copy, "widget", split="test", image_size=16)
    with pytest.raises(ValueError) as error:
        test[0]
    message = str(error.value)
    assert str(mask_path) in message and "000.png" in message and "20x20" in message and "32x32" in message


def test_mvtec_unreadable_image_names_path(tiny_copy: Path) -> None:
    broken = tiny_copy / "widget" / "train" / "good" / "001.png"
    broken.write_bytes(b"this is not a PNG file")
    train = MVTecAD(tiny_copy, "widget", split="train")
    with pytest.raises(OSError, match="001.png"):
        train[1]


def test_mvtec_missing_mask_names_expected_path(tiny_copy: Path) -> None:
    (tiny_copy / "widget" / "ground_truth" / "scratch" / "000_mask.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"ground_truth/scratch/000_mask.png"):
        MVTecAD(tiny_copy, "widget", split="test")


def test_mvtec_accepts_own_data_variants(tmp_path: Path) -> None:
    """Users' own data: JPEG files, masks named like their image, 0/1 masks, 16-bit grey images."""
    root = tmp_path / "own"
    (root / "part" / "train" / "good").mkdir(parents=True)
    (root / "part" / "test" / "bent").mkdir(parents=True)
    (root / "part" / "ground_truth" / "bent").mkdir(parents=True)
    Image.fromarray(np.full((10, 12, 3), 128, np.uint8)).save(root / "part" / "train" / "good" / "a.jpg")
    Image.fromarray(np.full((10, 12), 65535, np.uint16)).save(root / "part" / "train" / "good" / "b.png")
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(root / "part" / "test" / "bent" / "x.png")
    mask = np.zeros((10, 12), np.uint8)
    mask[2:4, 3:6] = 1  # 0/1 values rather than 0/255
    Image.fromarray(mask).save(root / "part" / "ground_truth" / "bent" / "x.png")
    train = MVTecAD(root, "part", split="train", image_size=None)
    assert train[0]["image"].shape == (3, 10, 12)
    assert torch.allclose(train[1]["image"], torch.ones(3, 10, 12))  # 16-bit white stays white
    item = MVTecAD(root, "part", split="test", image_size=None)[0]
    assert item["label"] == 1 and item["defect_type"] == "bent" and item["mask"].sum() == 6


# --------------------------------------------------------------------------- download_mvtec (offline)


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _fake_mvtec_archive(path: Path, categories: tuple[str, ...]) -> bytes:
    """An archive laid out like MVTec AD's own: ``<category>/...`` plus licence files at the top."""
    image = _png_bytes(np.full((8, 8, 3), 90, np.uint8))
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 255
    with tarfile.open(path, "w:xz") as bundle:
        _add_bytes(bundle, "license.txt", b"CC BY-NC-SA 4.0")
        for category in categories:
            _add_bytes(bundle, f"{category}/train/good/000.png", image)
            _add_bytes(bundle, f"{category}/test/good/000.png", image)
            _add_bytes(bundle, f"{category}/test/broken/000.png", image)
            _add_bytes(bundle, f"{category}/ground_truth/broken/000_mask.png", _png_bytes(mask))
    return path.read_bytes()


def test_download_mvtec_full_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    archive = server_dir / "mvtec_anomaly_detection.tar.xz"
    payload = _fake_mvtec_archive(archive, ("bottle", "carpet"))
    monkeypatch.setattr(
        mvtec, "MVTEC_FULL_ARCHIVE", mvtec.ArchiveInfo(archive.as_uri(), _sha256(payload), archive.name)
    )
    root = tmp_path / "mvtec"
    assert download_mvtec(root, ["bottle"], progress=False) == root
    assert "CC BY-NC-SA 4.0" in capsys.readouterr().out
    assert (root / "bottle" / "train" / "good" / "000.png").is_file()
    assert not (root / "carpet").exists()  # only what was asked for
    assert not (root / archive.name).exists()  # the archive it downloaded itself is removed
    assert [entry.name for entry in root.iterdir()] == ["bottle"]  # no scratch folders left
    test = MVTecAD(root, "bottle", split="test", image_size=None)
    assert test.labels == [1, 0] and test[0]["mask"].sum() == 9

    # Present categories are not downloaded again.
    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("downloaded although the category is present")

    monkeypatch.setattr(mvtec, "download_file", no_download)
    download_mvtec(root, "bottle", progress=False)


def test_download_mvtec_bad_checksum_creates_no_category(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "mvtec_anomaly_detection.tar.xz"
    _fake_mvtec_archive(archive, ("bottle",))
    monkeypatch.setattr(mvtec, "MVTEC_FULL_ARCHIVE", mvtec.ArchiveInfo(archive.as_uri(), "ab" * 32, archive.name))
    root = tmp_path / "mvtec"
    with pytest.raises(ChecksumError, match="abab"):
        download_mvtec(root, ["bottle"], progress=False)
    assert not (root / "bottle").exists()
    assert (root / f"{archive.name}.sha256-mismatch").is_file()


def test_download_mvtec_per_category_and_damaged_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "carpet.tar.xz"
    _fake_mvtec_archive(good, ("carpet",))
    damaged = tmp_path / "grid_server.tar.xz"
    damaged.write_bytes(_fake_mvtec_archive(tmp_path / "grid_full.tar.xz", ("grid",))[:300])
    archives = dict(mvtec.MVTEC_CATEGORY_ARCHIVES)
    archives["carpet"] = mvtec.ArchiveInfo(good.as_uri(), None, "carpet.tar.xz")
    archives["grid"] = mvtec.ArchiveInfo(damaged.as_uri(), None, "grid.tar.xz")
    monkeypatch.setattr(mvtec, "MVTEC_CATEGORY_ARCHIVES", archives)
    root = tmp_path / "mvtec"
    download_mvtec(root, ["carpet"], per_category=True, keep_archive=True, progress=False)
    assert (root / "carpet" / "test" / "broken" / "000.png").is_file()
    assert (root / "carpet.tar.xz").is_file()  # keep_archive=True
    with pytest.raises(OSError, match="damaged"):
        download_mvtec(root, ["grid"], per_category=True, progress=False)
    assert (root / "grid.tar.xz.damaged").is_file() and not (root / "grid").exists()


def test_download_mvtec_leaves_incomplete_user_folder_alone(tmp_path: Path) -> None:
    (tmp_path / "bottle" / "train").mkdir(parents=True)
    (tmp_path / "bottle" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="bottle"):
        download_mvtec(tmp_path, ["bottle"], progress=False)
    assert (tmp_path / "bottle" / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="unknown MVTec AD categories"):
        download_mvtec(tmp_path, ["bottel"], progress=False)


def test_mvtec_archive_table_is_complete() -> None:
    assert set(mvtec.MVTEC_CATEGORY_ARCHIVES) == set(mvtec.MVTEC_CATEGORIES)
    assert len(mvtec.MVTEC_FULL_ARCHIVE.sha256) == 64
    assert all(info.url.startswith("https://www.mydrive.ch/") for info in mvtec.MVTEC_CATEGORY_ARCHIVES.values())


# --------------------------------------------------------------------------- the built-in data set


def test_builtin_layout_and_manifest(builtin_root: Path) -> None:
    manifest = builtin._read_manifest(builtin_root)
    assert manifest["version"] == builtin.BUILDER_VERSION
    assert manifest["categories"] == sorted(BUILTIN_CATEGORIES)
    assert len(BUILTIN_CATEGORIES) >= 4 and len(set(sum(BUILTIN_DEFECTS.values(), ()))) >= 4
    for category in BUILTIN_CATEGORIES:
        folder = builtin_root / category
        assert len(list((folder / "train" / "good").glob("*.png"))) == BUILTIN_TEST_SIZES["n_train"]
        assert len(list((folder / "test" / "good").glob("*.png"))) == BUILTIN_TEST_SIZES["n_test_good"]
        assert len(BUILTIN_DEFECTS[category]) >= 4
        for defect in BUILTIN_DEFECTS[category]:
            images = sorted((folder / "test" / defect).glob("*.png"))
            masks = sorted((folder / "ground_truth" / defect).glob("*_mask.png"))
            assert len(images) == len(masks) == BUILTIN_TEST_SIZES["n_test_per_defect"]
        with Image.open(folder / "train" / "good" / "000.png") as image:
            assert image.size == (256, 256) and image.mode == "RGB"


def test_builtin_masks_are_exactly_the_changed_pixels(builtin_root: Path) -> None:
    settings = BuiltinSettings(seed=0, **BUILTIN_TEST_SIZES)
    low, high = DEFECT_AREA_RANGE
    for category in BUILTIN_CATEGORIES:
        for defect in BUILTIN_DEFECTS[category]:
            for index in range(BUILTIN_TEST_SIZES["n_test_per_defect"]):
                clean, image, mask = render_item(category, defect, index, settings)
                changed = np.any(clean != image, axis=-1)
                assert np.array_equal(mask, changed)
                assert low <= mask.mean() <= high, (category, defect, index, mask.mean())
                # Outside the mask the image is the clean picture, byte for byte ...
                assert np.array_equal(image[~mask], clean[~mask])
                # ... and every mask pixel changed visibly: by VISIBLE_CHANGE levels or more on some channel.
                difference = np.abs(clean.astype(int) - image.astype(int)).max(axis=-1)
                assert difference[mask].min() >= VISIBLE_CHANGE == 8, (category, defect, index)
                # Visible: the changed pixels move by well over the threshold on average.
                assert difference[mask].mean() > 20, (category, defect, index)
                # What the builder wrote is what render_item returns.
                assert np.array_equal(_read_rgb(builtin_root / category / "test" / defect / f"{index:03d}.png"), image)
                with Image.open(builtin_root / category / "ground_truth" / defect / f"{index:03d}_mask.png") as stored:
                    stored_mask = np.asarray(stored)
                assert set(np.unique(stored_mask)) <= {0, 255}
                assert np.array_equal(stored_mask > 0, mask)
            good_clean, good_image, good_mask = render_item(category, "good", 0, settings)
            assert np.array_equal(good_clean, good_image) and not good_mask.any()


def test_builtin_through_the_mvtec_loader(builtin_root: Path) -> None:
    for category in BUILTIN_CATEGORIES:
        train = MVTecAD(builtin_root, category, split="train", image_size=64)
        test = MVTecAD(builtin_root, category, split="test", image_size=64)
        assert set(train.labels) == {0}
        assert test.defect_types == sorted(BUILTIN_DEFECTS[category] + ("good",))
        assert sum(test.labels) == len(BUILTIN_DEFECTS[category]) * BUILTIN_TEST_SIZES["n_test_per_defect"]
        item = test[test.labels.index(1)]
        assert item["image"].shape == (3, 64, 64) and item["mask"].shape == (1, 64, 64)
        assert item["mask"].sum() > 0 and set(torch.unique(item["mask"]).tolist()) == {0.0, 1.0}
    # Training images differ from each other (random views), and from the held-out test images.
    train = MVTecAD(builtin_root, "brick", split="train", image_size=None)
    assert not torch.equal(train[0]["image"], train[1]["image"])


def test_builtin_is_deterministic(tmp_path: Path) -> None:
    sizes = {"n_train": 2, "n_test_good": 1, "n_test_per_defect": 1}
    first = build_builtin_dataset(tmp_path / "a", ["gravel", "washer"], seed=3, verbose=False, **sizes)
    second = build_builtin_dataset(tmp_path / "b", ["washer", "gravel"], seed=3, verbose=False, **sizes)
    third = build_builtin_dataset(tmp_path / "c", ["gravel", "washer"], seed=4, verbose=False, **sizes)
    first_files, second_files = _tree_digest(first), _tree_digest(second)
    assert first_files == second_files  # the same bytes, whatever the category order
    third_files = _tree_digest(third)
    assert first_files.keys() == third_files.keys()
    assert first_files["gravel/train/good/000.png"] != third_files["gravel/train/good/000.png"]


def test_builtin_small_image_size(tmp_path: Path) -> None:
    root = build_builtin_dataset(
        tmp_path / "small", ["washer"], image_size=64, n_train=1, n_test_good=1, n_test_per_defect=2, verbose=False
    )
    with Image.open(root / "washer" / "test" / "missing" / "001.png") as image:
        assert image.size == (64, 64)
    settings = BuiltinSettings(image_size=64, n_train=1, n_test_good=1, n_test_per_defect=2)
    clean, image, mask = render_item("washer", "missing", 1, settings)
    assert mask.shape == (64, 64) and mask.any() and np.array_equal(mask, np.any(clean != image, axis=-1))
    assert np.abs(clean.astype(int) - image.astype(int)).max(axis=-1)[mask].min() >= VISIBLE_CHANGE


def test_builtin_masks_leave_out_invisible_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    # A hand-made change: one blob changed by 3, 7, 8 and 20 levels, one isolated 2x2 speck by 30.
    clean = np.full((64, 64, 3), 100, np.uint8)
    image = clean.copy()
    image[10:20, 10:20, 0] = 103      # faint: below the threshold on every channel
    image[10:20, 20:30, 1] = 93       # 7 levels darker on green: still invisible
    image[20:30, 10:30, 2] = 108      # exactly the threshold
    image[30:40, 10:30] = 120         # 20 levels on all channels
    image[50:52, 50:52] = 130         # visible, but an isolated speck of 4 pixels
    mask = builtin._visible_change(image, clean, 256)
    expected = np.zeros((64, 64), bool)
    expected[20:40, 10:30] = True     # the 8- and 20-level parts; the speck is dropped at 256x256
    assert np.array_equal(mask, expected)
    assert np.array_equal(np.any(image != clean, axis=-1), expected)  # the invisible parts were undone
    assert (image[10:20, 10:30] == 100).all() and (image[50:52, 50:52] == 100).all()
    assert (image[20:30, 10:30, 2] == 108).all() and (image[30:40, 10:30] == 120).all()
    # A real defect: the threshold removes the faint fringe (a crack's lighter lip) but keeps the crack.
    settings = BuiltinSettings(n_train=1, n_test_good=1, n_test_per_defect=1)
    clean, image, mask = render_item("grass", "crack", 0, settings)
    difference = np.abs(clean.astype(int) - image.astype(int)).max(axis=-1)
    assert difference[mask].min() >= VISIBLE_CHANGE and difference[~mask].max() == 0
    assert 0.004 <= mask.mean() and difference[mask].mean() > 40
    monkeypatch.setattr(builtin, "VISIBLE_CHANGE", 1)  # version 1: every changed pixel counted
    _, old_image, old_mask = render_item("grass", "crack", 0, settings)
    assert old_mask.sum() > 1.5 * mask.sum() and (old_mask & ~mask).any() and not (mask & ~old_mask).any()


def test_builtin_defaults_give_60_good_and_60_defective_test_images(tmp_path: Path) -> None:
    defaults = BuiltinSettings()
    assert (defaults.seed, defaults.image_size, defaults.n_train) == (0, 256, 80)
    assert (defaults.n_test_good, defaults.n_test_per_defect) == (60, 15)
    parameters = inspect.signature(build_builtin_dataset).parameters
    assert {name: parameters[name].default for name in ("n_train", "n_test_good", "n_test_per_defect")} == {
        "n_train": 80, "n_test_good": 60, "n_test_per_defect": 15,
    }
    for category in BUILTIN_CATEGORIES:
        assert len(BUILTIN_DEFECTS[category]) * defaults.n_test_per_defect == 60
    # The default test counts, built for real (small images, one training image, to be quick).
    root = build_builtin_dataset(tmp_path / "root", ["gravel"], image_size=64, n_train=1, verbose=False)
    test = MVTecAD(root, "gravel", split="test", image_size=None)
    assert len(test) == 120 and sum(test.labels) == 60 and test.labels.count(0) == 60
    for defect in BUILTIN_DEFECTS["gravel"]:
        assert len(list((root / "gravel" / "test" / defect).glob("*.png"))) == 15
        assert len(list((root / "gravel" / "ground_truth" / defect).glob("*_mask.png"))) == 15


def test_builtin_version_3_folder_and_no_reuse_of_older_versions(tmp_path: Path) -> None:
    assert builtin.BUILDER_VERSION == 3
    assert BuiltinSettings().folder_name() == "builtin_v3"
    assert BuiltinSettings(n_test_good=20, n_test_per_defect=10).folder_name().startswith("builtin_v3_")
    # every category says which version last changed its images, none later than this builder
    assert set(builtin.CATEGORY_CHANGED_IN) == set(BUILTIN_CATEGORIES)
    assert all(2 <= version <= builtin.BUILDER_VERSION for version in builtin.CATEGORY_CHANGED_IN.values())
    # A folder built by an older version (same settings) is not taken for this version's build.
    sizes = {"n_train": 1, "n_test_good": 1, "n_test_per_defect": 1}
    old = build_builtin_dataset(tmp_path / "old", ["brick"], verbose=False, **sizes)
    assert builtin.builtin_version(old) == 3 and builtin.builtin_version(tmp_path) is None  # what results record
    manifest = builtin._read_manifest(old)
    manifest["version"] = 1
    (old / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert builtin.builtin_version(old) == 1
    with pytest.raises(FileExistsError, match="version 1"):
        build_builtin_dataset(old, ["brick"], verbose=False, **sizes)


def test_builtin_reuse_and_adding_categories(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sizes = {"n_train": 2, "n_test_good": 1, "n_test_per_defect": 1}
    root = build_builtin_dataset(tmp_path / "root", ["brick"], **sizes)
    assert "Built the built-in data set" in capsys.readouterr().out
    brick_digest = _tree_digest(root / "brick")
    brick_time = (root / "brick" / "train" / "good" / "000.png").stat().st_mtime_ns
    started = time.perf_counter()
    assert build_builtin_dataset(root, ["brick"], **sizes) == root
    assert time.perf_counter() - started < 0.5 and capsys.readouterr().out == ""  # re-used, nothing printed
    build_builtin_dataset(root, ["brick", "grass"], **sizes)
    assert builtin._read_manifest(root)["categories"] == ["brick", "grass"]
    assert _tree_digest(root / "brick") == brick_digest
    assert (root / "brick" / "train" / "good" / "000.png").stat().st_mtime_ns == brick_time


def test_builtin_never_writes_into_foreign_folders(tmp_path: Path) -> None:
    sizes = {"n_train": 1, "n_test_good": 1, "n_test_per_defect": 1}
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="holiday.jpg"):
        build_builtin_dataset(foreign, ["brick"], **sizes)
    assert [path.name for path in foreign.iterdir()] == ["holiday.jpg"]  # not even a lock file

    ours = build_builtin_dataset(tmp_path / "ours", ["brick"], **sizes, verbose=False)
    with pytest.raises(FileExistsError, match="other settings"):
        build_builtin_dataset(ours, ["brick"], seed=1, **sizes)
    (ours / "grass").mkdir()
    (ours / "grass" / "mine.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not listed"):
        build_builtin_dataset(ours, ["grass"], **sizes)
    assert (ours / "grass" / "mine.txt").read_text() == "mine"


def test_builtin_recovers_from_interrupted_build(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / ".building-brick" / "train").mkdir(parents=True)  # left by a killed build
    build_builtin_dataset(root, ["brick"], n_train=1, n_test_good=1, n_test_per_defect=1, verbose=False)
    assert not (root / ".building-brick").exists()
    assert (root / MANIFEST_NAME).is_file() and (root / "brick" / "train" / "good" / "000.png").is_file()


def test_builtin_default_root_and_bad_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADLEARN_DATA", str(tmp_path))
    assert BuiltinSettings().folder_name() == f"builtin_v{builtin.BUILDER_VERSION}"
    root = builtin_dataset_root(categories="brick", n_train=1, n_test_good=1, n_test_per_defect=1, verbose=False)
    assert root.parent == tmp_path.resolve() and root.name.startswith(f"builtin_v{builtin.BUILDER_VERSION}_")
    with pytest.raises(ValueError, match="unknown built-in categories"):
        build_builtin_dataset(tmp_path / "x", ["marble"])
    with pytest.raises(ValueError, match="n_train"):
        build_builtin_dataset(tmp_path / "x", ["brick"], n_train=0)
    with pytest.raises(TypeError, match="seed"):
        build_builtin_dataset(tmp_path / "x", ["brick"], seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        render_item("brick", "missing", 0)  # missing pieces exist only for the washer
