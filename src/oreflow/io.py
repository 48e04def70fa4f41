"""Atomic writes: a result file is either whole or absent, never half-written."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once at import: changing it later from threads would race


def atomic_write(target: Path | str, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` on a temporary file beside `target`, then rename it over
    `target`. An interrupted run leaves at most a hidden .tmp file, never a partial target."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes the file private (0600); give it the usual mode for new files
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


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
