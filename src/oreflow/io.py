"""Writing files safely: a result file is either whole or absent, never half-written.

- `atomic_write` writes to a hidden temporary file in the target's directory (same
  filesystem), flushes it to disk, then renames it over the target. The temporary file's name
  carries the writer's process id, so a later write to the same place removes temporary files
  left by a writer that was killed (`remove_stale_temp_files`).
- Any OSError while writing (a full disk, a read-only filesystem, a vanished directory)
  becomes a `WriteError` that names the file and the reason, after the temporary file is
  removed; the target is left as it was.
- `check_out_path` refuses, before any work is done, an output path that is not a regular
  file (a directory, a device such as /dev/null, a FIFO), a symbolic link (the rename would
  replace the link, not write through it), one of the command's input files, or a place that
  cannot be written.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once at import: changing it later from threads would race

_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


class WriteError(OSError):
    """A file could not be written; the message names it and says why. Nothing was written.
    `path` and `reason` are kept apart for messages that must not show a server's paths."""

    def __init__(self, path: Path, reason: str, errno_: int | None = None) -> None:
        super().__init__(f"{path}: could not write the file ({reason}); nothing was written")
        self.path, self.reason, self.errno = path, reason, errno_


class OutPathError(ValueError):
    """An output path refused before any work: says which and why, and what is allowed."""


def _reason(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "no space left on the device"
    if e.errno == errno.EDQUOT:
        return "disk quota exceeded"
    return e.strerror or type(e).__name__


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def remove_stale_temp_files(directory: Path | str, name: str | None = None) -> list[Path]:
    """Remove the hidden temporary files `atomic_write` left in `directory` (for the file
    `name`, or for any file) when its writer was killed: those whose process is gone."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if not m or (name is not None and m["name"] != name) or _pid_alive(int(m["pid"])):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(target: Path | str, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` on a temporary file beside `target`, flush it to disk and rename
    it over `target`. An interrupted write leaves at most a hidden .tmp file (removed by the
    next write to the same place), never a partial target; an OSError becomes WriteError."""
    target = Path(target)
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(target.parent, target.name)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.",
                                   suffix=".tmp")
        os.close(fd)
        write(Path(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp makes the file private (0600); give it the usual mode for new files
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
        tmp = None
        _fsync_dir(target.parent)
    except WriteError:
        raise
    except OSError as e:
        raise WriteError(target, _reason(e), e.errno) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return target


def write_file_bytes(path: Path, data: bytes | memoryview) -> None:
    """Write `data` to `path` (the plain-Python write every result goes through: an OSError
    such as ENOSPC surfaces here, where HDF5 writing to disk itself would crash)."""
    with open(path, "wb") as fh:
        fh.write(data)


def atomic_write_bytes(target: Path | str, data: bytes | memoryview) -> Path:
    return atomic_write(target, lambda p: write_file_bytes(p, data))


def atomic_write_text(target: Path | str, text: str) -> Path:
    def _write(p: Path) -> None:
        with open(p, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)

    return atomic_write(target, _write)


def json_records(df) -> list[dict]:
    """A DataFrame as JSON-ready records: NaN and infinite numbers become None (null), so the
    CLI and the web API write the same rows."""
    import math

    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in r.items()} for r in df.to_dict(orient="records")]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_out_path(path: Path | str, inputs: Iterable[Path | str] = (),
                   option: str = "--out") -> Path:
    """`path` if a file can be written there atomically; OutPathError otherwise.

    Allowed: a path to a regular file that exists (it is replaced) or not (it is created, with
    any missing folders). Refused: a directory, a device, FIFO or socket, a symbolic link, any
    of `inputs`, and a place where no file can be created."""
    p = Path(path)
    label = f"{option} {p}"
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise OutPathError(f"{label}: cannot use this path ({_reason(e)})") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise OutPathError(f"{label}: is a symbolic link; give the path of a regular file "
                               "(oreflow replaces files atomically and would replace the link)")
        if stat.S_ISDIR(st.st_mode):
            raise OutPathError(f"{label}: is a directory; give a file name")
        if not stat.S_ISREG(st.st_mode):
            raise OutPathError(f"{label}: is not a regular file (a device, FIFO or socket); "
                               "give the path of a regular file")
        for i in inputs:
            if _same_file(p, Path(i)):
                raise OutPathError(f"{label}: is the input file {i}; give another name")
    try:  # the folders are made now (the write would make them anyway), then probed
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.{os.getpid()}.",
                                     suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutPathError(f"{label}: cannot write a file in {p.parent} ({_reason(e)})"
                           ) from None
    return p
