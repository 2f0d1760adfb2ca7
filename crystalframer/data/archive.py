"""Unpacking zip archives of structure files safely (uploads and ``data.path: set.zip``).

Nothing outside the destination folder is ever written: members with absolute paths, ``..`` components, links or
device files are refused. Zip bombs are stopped by limits on the member count, the total unpacked size and the
compression ratio, checked against the archive's directory before anything is extracted and again while
extracting (the directory can lie about sizes).
"""

from __future__ import annotations

import io
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from crystalframer.data.errors import DataError


@dataclass(frozen=True)
class ZipLimits:
    """max_members: files in the archive; max_total_bytes: unpacked size; max_ratio: unpacked / packed size."""

    max_members: int = 20_000
    max_total_bytes: int = 400 * 1024 * 1024
    max_ratio: float = 200.0


def _safe_member_path(name: str, source: str) -> PurePosixPath | None:
    """The relative path a member may be written to, ``None`` for entries to ignore (folders, macOS forks)."""
    if name.endswith("/") or "__MACOSX" in name.split("/"):
        return None
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise DataError(f"{source}: refusing archive member {name!r}: its path leaves the archive folder")
    return path


def extract_zip(source: str | Path | bytes, dest: str | Path, name: str | None = None,
                limits: ZipLimits = ZipLimits()) -> Path:
    """Unpack the zip at ``source`` (a path, or the archive's bytes) into ``dest``; returns ``dest``.

    Raises :class:`DataError` naming the archive for a corrupt file, a path that would escape ``dest``, a link, or
    an archive over ``limits``; nothing is left half-written outside ``dest``.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "archive")
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    packed = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
    dest = Path(dest)
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{label}: not a valid zip archive ({exc})") from None
    with archive:
        members = archive.infolist()
        if len(members) > limits.max_members:
            raise DataError(f"{label}: {len(members)} files in the archive, more than the limit of "
                            f"{limits.max_members}")
        declared = sum(m.file_size for m in members)
        _check_size(declared, packed, label, limits)
        written = 0
        for member in members:
            relative = _safe_member_path(member.filename, label)
            if relative is None:
                continue
            mode = member.external_attr >> 16
            if mode and not (stat.S_ISREG(mode) or mode & 0o170000 == 0):
                raise DataError(f"{label}: refusing archive member {member.filename!r}: not a regular file "
                                "(links and devices are not unpacked)")
            target = dest.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(member) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        _check_size(written, packed, label, limits)
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise DataError(f"{label}: archive member {member.filename!r} is corrupt ({exc})") from None
    return dest


def _check_size(unpacked: int, packed: int, label: str, limits: ZipLimits) -> None:
    if unpacked > limits.max_total_bytes:
        raise DataError(f"{label}: unpacks to more than {limits.max_total_bytes / 1e6:.0f} MB (limit); split it "
                        "or unpack it yourself and pass the folder")
    if packed > 0 and unpacked > 1024 * 1024 and unpacked / packed > limits.max_ratio:
        raise DataError(f"{label}: compression ratio over {limits.max_ratio:.0f}:1 (a zip bomb?); refusing to "
                        "unpack it")
