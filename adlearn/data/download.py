"""Downloading and unpacking archives: resumable, checksummed, and careful with the user's files.

:func:`download_file` streams a URL into ``<destination>.part`` and renames it
only once it is complete and its SHA-256 digest matches, so an interrupted
download is resumed (HTTP ``Range``) instead of started over, and a half file
never looks like a finished one. A file already at the destination is never
overwritten. :func:`extract_archive` unpacks ``.tar.xz``/``.tar.gz``/``.tar``
and ``.zip`` archives and refuses any member that would land outside the
destination folder.

Both functions work on ``file://`` URLs and local files too, which is how the
tests exercise them without a network.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

_CHUNK_BYTES = 1 << 20
_USER_AGENT = "adlearn (https://github.com/adlearn-book/adlearn)"


class ChecksumError(ValueError):
    """A downloaded or existing file does not have the expected SHA-256 digest."""


def sha256_of(path: str | Path) -> str:
    """The hexadecimal SHA-256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _free_name(path: Path) -> Path:
    """``path`` itself if nothing is there, else ``path.1``, ``path.2``, ... (first free one)."""
    if not path.exists():
        return path
    index = 1
    while path.with_name(f"{path.name}.{index}").exists():
        index += 1
    return path.with_name(f"{path.name}.{index}")


def _check_digest(path: Path, expected: str, url: str, keep_as: Path | None) -> None:
    """Raise :class:`ChecksumError` when ``path`` does not hash to ``expected``.

    When ``keep_as`` is given the bad file is renamed there (never deleted) so
    the user can inspect it.
    """
    actual = sha256_of(path)
    if actual == expected.lower():
        return
    where = f"{path}"
    if keep_as is not None:
        keep_as = _free_name(keep_as)
        os.replace(path, keep_as)
        where = f"{keep_as} (renamed from {path.name}; delete it once you no longer need it)"
    raise ChecksumError(
        f"SHA-256 mismatch for {where}, downloaded from {url}: expected {expected.lower()}, "
        f"got {actual}. The download was corrupted or the file on the server changed; "
        "run the download again."
    )


def _open(url: str, start: int, timeout: float):
    """Open ``url``; ask for the bytes from ``start`` on when ``start > 0``."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    if start > 0:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (URLs come from adlearn's tables or the caller)


def download_file(
    url: str,
    destination: str | Path,
    *,
    sha256: str | None = None,
    resume: bool = True,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``destination``, resuming a partial download and checking its digest.

    Bytes go to ``<destination>.part`` first. With ``resume=True`` an existing
    ``.part`` file is continued with an HTTP ``Range`` request (a server that
    ignores the range sends the whole file, which then replaces the ``.part``
    contents). The finished file is checked against ``sha256`` and only then
    renamed to ``destination``; a file that fails the check is kept, renamed to
    ``<destination>.sha256-mismatch``, and an error names it.

    A file already at ``destination`` is never overwritten: with ``sha256`` it is
    checked (and an error raised if it differs), without it is returned as is.

    Args:
        url: ``http(s)://``, ``ftp://`` or ``file://`` address.
        destination: the file to create; its folder is created if missing.
        sha256: expected hexadecimal SHA-256 digest, or ``None`` to skip the check.
        resume: continue an existing ``.part`` file instead of starting over.
        timeout: seconds to wait for the server before giving up.
        progress: show a ``tqdm`` progress bar.

    Returns:
        ``destination`` as a :class:`~pathlib.Path`.

    Raises:
        ChecksumError: the file (new or existing) has another digest than ``sha256``.
        ConnectionError: the server could not be reached, answered with an error,
            or the connection broke off; the partial data stays in the ``.part`` file.
    """
    destination = Path(destination).expanduser()
    if destination.is_dir():
        raise IsADirectoryError(
            f"download destination {destination} is a folder; expected the path of a file to create."
        )
    if destination.exists():
        # Something complete is already there (downloaded earlier, or put there by the user).
        if sha256 is not None:
            _check_digest(destination, sha256, url, keep_as=None)
        return destination

    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    start = partial.stat().st_size if (resume and partial.exists()) else 0

    try:
        response = _open(url, start, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start > 0:
            # "Range not satisfiable": the .part file already holds every byte.
            response = None
        else:
            raise ConnectionError(
                f"could not download {url} to {destination}: HTTP {error.code} {error.reason}."
            ) from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ConnectionError(
            f"could not download {url} to {destination}: {reason}. Check the network connection "
            "(or download the file yourself and put it at that path)."
        ) from error

    if response is not None:
        with response:
            status = getattr(response, "status", None) or response.getcode()
            resumed = start > 0 and status == 206
            if not resumed:
                start = 0  # the server sent the whole file (file:// URLs always do)
            length = response.headers.get("Content-Length")
            total = start + int(length) if length is not None and length.isdigit() else None
            received = start
            with open(partial, "ab" if resumed else "wb") as handle, _ProgressBar(
                progress, total, start, destination.name
            ) as bar:
                try:
                    for chunk in iter(lambda: response.read(_CHUNK_BYTES), b""):
                        handle.write(chunk)
                        received += len(chunk)
                        bar(len(chunk))
                except (OSError, http.client.HTTPException) as error:  # e.g. IncompleteRead, reset
                    raise ConnectionError(
                        f"the download of {url} broke off after {received} bytes: {error}. "
                        f"The partial data is kept in {partial}; run the download again to resume."
                    ) from error
            if total is not None and received < total:
                raise ConnectionError(
                    f"the download of {url} ended after {received} of {total} bytes. The partial "
                    f"data is kept in {partial}; run the download again to resume."
                )

    if sha256 is not None:
        _check_digest(partial, sha256, url, keep_as=destination.with_name(destination.name + ".sha256-mismatch"))
    os.replace(partial, destination)
    return destination


class _ProgressBar:
    """A tiny context manager around ``tqdm`` that is a no-op when progress is off."""

    def __init__(self, enabled: bool, total: int | None, initial: int, name: str) -> None:
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=name, leave=False)

    def __enter__(self) -> Callable[[int], None]:
        return (lambda n: self._bar.update(n)) if self._bar is not None else (lambda n: None)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def _archive_kind(archive: Path) -> str:
    name = archive.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar")):
        return "tar"
    raise ValueError(
        f"cannot tell the archive type of {archive}; expected a name ending in .tar.xz, .tar.gz, "
        ".tgz, .tar.bz2, .tar or .zip."
    )


def _safe_target(destination: Path, member_name: str, archive: Path) -> Path:
    """Where ``member_name`` lands under ``destination``; raise if that is outside it."""
    pure = PurePosixPath(member_name.replace("\\", "/"))
    target = (destination / pure).resolve()
    if pure.is_absolute() or ".." in pure.parts or not target.is_relative_to(destination):
        raise ValueError(
            f"archive {archive} contains the member {member_name!r}, which would be written outside "
            f"{destination}; refusing to extract it."
        )
    return target


def extract_archive(
    archive: str | Path,
    destination: str | Path,
    *,
    members: Callable[[str], bool] | None = None,
    overwrite: bool = False,
) -> list[str]:
    """Unpack a ``.tar.*`` or ``.zip`` archive into ``destination``, refusing unsafe members.

    Each member is checked before it is written: absolute paths, ``..``
    components, links pointing outside ``destination`` and device files are
    refused with an error naming the member (tar archives are read in one
    streaming pass, so members before a refused one may already be unpacked;
    unpack into a fresh folder when that matters).

    Args:
        archive: the archive file.
        destination: the folder to unpack into (created if missing).
        members: optional filter on the member name (``"bottle/train/good/000.png"``);
            only members for which it returns ``True`` are unpacked.
        overwrite: allow replacing files that already exist under ``destination``
            (off by default, so nothing already there is touched).

    Returns:
        The unpacked member names (files and folders), in archive order.

    Raises:
        ValueError: an unsafe member, or an unknown archive type.
        FileExistsError: a member would replace an existing file and ``overwrite`` is off.
    """
    archive = Path(archive)
    destination = Path(destination).expanduser()
    destination.mkdir(parents=True, exist_ok=True)
    destination = destination.resolve()
    keep = members if members is not None else (lambda name: True)

    if _archive_kind(archive) == "zip":
        with zipfile.ZipFile(archive) as bundle:
            chosen = [info for info in bundle.infolist() if keep(info.filename)]
            _check_targets(destination, [(info.filename, info.is_dir()) for info in chosen], archive, overwrite)
            for info in chosen:
                bundle.extract(info, destination)
            return [info.filename for info in chosen]

    extract_options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    extracted = []
    # Stream mode ("r|*") reads the archive once, front to back: a multi-gigabyte
    # .tar.xz is decompressed a single time. Each member is checked before it is written.
    with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as bundle:
        for member in bundle:
            if not keep(member.name):
                continue
            if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                raise ValueError(
                    f"archive {archive} contains {member.name!r}, which is a device or special file; "
                    "refusing to extract it."
                )
            if member.issym() or member.islnk():
                link_base = (destination / member.name).parent if member.issym() else destination
                link_target = (link_base / member.linkname).resolve()
                if not link_target.is_relative_to(destination):
                    raise ValueError(
                        f"archive {archive} contains the link {member.name!r} -> {member.linkname!r}, "
                        f"which points outside {destination}; refusing to extract it."
                    )
            _check_targets(destination, [(member.name, member.isdir())], archive, overwrite)
            bundle.extract(member, destination, **extract_options)
            extracted.append(member.name)
    return extracted


def _check_targets(
    destination: Path, entries: Iterable[tuple[str, bool]], archive: Path, overwrite: bool
) -> None:
    for name, is_dir in entries:
        target = _safe_target(destination, name, archive)
        if not overwrite and not is_dir and target.exists():
            raise FileExistsError(
                f"extracting {archive} would replace the existing file {target}; move it away "
                "or pass overwrite=True."
            )
