"""Unpacking a user's ``.zip`` without letting it write anywhere else or fill the disk.

Every entry is checked before anything is written: no absolute paths or drive
letters, no ``..``, no symbolic links or other special files, no encrypted
entries, no name twice; at most :data:`MAX_FILES` files and
:data:`MAX_TOTAL_BYTES` uncompressed, and no file larger than
:data:`RATIO_FLOOR_BYTES` that expands more than :data:`MAX_RATIO` times (a zip
bomb). The sizes are counted again while unpacking, since headers can lie. On
any problem nothing is left behind: the destination folder is removed.
macOS's ``__MACOSX/`` metadata is skipped.
"""
from __future__ import annotations

import re
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import PlintError

MAX_FILES = 20_000
"""Most files one zip may hold."""
MAX_TOTAL_BYTES = 1 << 30
"""Most bytes (1 GiB) one zip may unpack to."""
MAX_RATIO = 200.0
"""Largest uncompressed / compressed size of one file above :data:`RATIO_FLOOR_BYTES`."""
RATIO_FLOOR_BYTES = 1 << 20
"""Files up to this size (1 MiB) are not ratio-checked: small files cannot do harm."""
_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ZipLimits:
    """Limits for :func:`extract_zip`; the defaults are the module's constants."""

    max_files: int = MAX_FILES
    max_total_bytes: int = MAX_TOTAL_BYTES
    max_ratio: float = MAX_RATIO


def extract_zip(zip_path: str | Path, dest: str | Path, limits: ZipLimits = ZipLimits()) -> Path:
    """Unpack ``zip_path`` into the new folder ``dest`` (which must not exist); returns ``dest``.

    Raises :class:`PlintError` with the offending entry's name and leaves no
    ``dest`` behind if the zip breaks a rule or a limit, is encrypted, corrupt
    or not a zip at all.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    if not zip_path.is_file():
        raise PlintError(f"zip file {str(zip_path)!r} does not exist")
    if dest.exists():
        raise PlintError(f"will not unpack into {str(dest)!r}: it exists already")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = _checked_members(zf, zip_path.name, limits)
            dest.mkdir(parents=True)
            try:
                _unpack(zf, members, dest, zip_path.name, limits)
            except BaseException:
                shutil.rmtree(dest, ignore_errors=True)
                raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise PlintError(f"{zip_path.name!r} is not a valid zip file or is damaged ({exc})") from exc
    except NotImplementedError as exc:
        raise PlintError(f"{zip_path.name!r} uses a compression method plint cannot read ({exc}): "
                         "re-create it with ordinary (deflate) compression") from exc
    except OSError as exc:  # e.g. two names that differ only in case, or a full disk
        raise PlintError(f"cannot unpack {zip_path.name!r}: {exc.strerror or exc}") from exc
    return dest


Member = tuple[zipfile.ZipInfo, PurePosixPath]


def _checked_members(zf: zipfile.ZipFile, zip_name: str, limits: ZipLimits) -> list[Member]:
    members: list[Member] = []
    seen: set[PurePosixPath] = set()
    total = 0
    for info in zf.infolist():
        target = _safe_relative(info.filename, zip_name)
        if target is None or target.parts[0] == "__MACOSX":
            continue
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip records no Unix file type
        if kind == stat.S_IFLNK:
            raise PlintError(f"{zip_name!r} contains the symbolic link {info.filename!r}: zips with links are refused")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise PlintError(f"{zip_name!r} contains the special file {info.filename!r}: "
                             "only files and folders are allowed")
        if info.flag_bits & 0x1:
            raise PlintError(f"{zip_name!r} is encrypted ({info.filename!r}): upload an unencrypted zip")
        if target in seen:
            raise PlintError(f"{zip_name!r} contains {info.filename!r} twice: entries must be unique")
        seen.add(target)
        if info.is_dir():
            continue
        members.append((info, target))
        total += info.file_size
        if len(members) > limits.max_files:
            raise PlintError(f"{zip_name!r} holds more than {limits.max_files} files, the limit: "
                             "split the data or pass a folder on the server")
        if total > limits.max_total_bytes:
            raise PlintError(f"{zip_name!r} unpacks to more than {_mib(limits.max_total_bytes)}, the limit: "
                             "use smaller images or fewer of them")
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise PlintError(f"{zip_name!r} entry {info.filename!r} expands {ratio:.0f} times (limit "
                             f"{limits.max_ratio:.0f}): it looks like a zip bomb and is refused")
    files = {t for _, t in members}
    for _, t in members:
        for parent in t.parents:
            if parent in files:
                raise PlintError(f"{zip_name!r} has {str(parent)!r} both as a file and as a folder")
    return members


def _safe_relative(name: str, zip_name: str) -> PurePosixPath | None:
    """The entry's path relative to the destination, or ``None`` for an entry naming no file ("./")."""
    unified = name.replace("\\", "/")  # zips made on Windows sometimes use backslashes
    if "\x00" in unified or any(ord(ch) < 32 for ch in unified):
        raise PlintError(f"{zip_name!r} contains an entry with control characters in its name: refused")
    if unified.startswith("/") or _DRIVE.match(unified):
        raise PlintError(f"{zip_name!r} contains the absolute path {name!r}: entries must be relative")
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PlintError(f"{zip_name!r} contains {name!r}, which points outside the folder ('..'): refused")
    return PurePosixPath(*parts) if parts else None


def _unpack(zf: zipfile.ZipFile, members: list[Member], dest: Path,
            zip_name: str, limits: ZipLimits) -> None:
    root = dest.resolve()
    written = 0
    for info, target in members:
        out = dest.joinpath(*target.parts)
        if not out.resolve().is_relative_to(root):  # unreachable after the checks above; kept as a guard
            raise PlintError(f"{zip_name!r} entry {info.filename!r} would be written outside the folder: refused")
        out.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        with zf.open(info) as src, open(out, "xb") as dst:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                written += len(chunk)
                if size > info.file_size or written > limits.max_total_bytes:
                    raise PlintError(f"{zip_name!r} entry {info.filename!r} unpacks to more than its header states "
                                     f"or past the {_mib(limits.max_total_bytes)} limit: refused")
                dst.write(chunk)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"
