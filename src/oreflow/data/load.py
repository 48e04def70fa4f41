"""Load the embedded dataset (or a copy of it) and validate it against the schema."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from oreflow.data.chain import Chain, build_chain, chain_ids
from oreflow.data.schema import (
    TABLES,
    DatasetError,
    Problem,
    base_year_of,
    check_chain_references,
    check_contents,
    check_values,
    coerce,
)

TABLES_DIR = Path(__file__).parent / "tables"
BASE_YEAR_VARIANTS = {2010: "base_2010"}
"""Past base years the dataset also describes: tables/<folder> holds the tables that differ
from today's (built from curated/<folder> by `oreflow data build`)."""


@dataclass(frozen=True)
class Dataset:
    """Validated tables of the dataset, keyed by table name, and the dataset's version."""

    tables: Mapping[str, pd.DataFrame]
    path: Path
    version: str

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self.tables:
            raise KeyError(f"no table {name!r}; tables: {', '.join(sorted(self.tables))}")
        return self.tables[name]

    @property
    def base_year(self) -> int:
        p = self["market_parameters"].set_index("parameter")["value"]
        return int(p["base_year"])

    @property
    def chain_ids(self) -> list[str]:
        """Commodity ids of chains.csv (REE first, then the other chains as declared)."""
        return chain_ids(self)

    def chain(self, name: str) -> Chain:
        """The declared chain of a commodity (`Ga`, `ga`, `REE`, ...); an unknown id raises
        UnknownChainError listing the allowed ones."""
        return build_chain(self, name)

    def parameter(self, table: str, name: str) -> float:
        p = self[table].set_index("parameter")["value"]
        if name not in p.index:
            raise KeyError(f"{table}.csv has no parameter {name!r}")
        return float(p[name])

    def parameters(self, table: str) -> dict[str, float]:
        """Every parameter of a parameter table by name, as floats (validated on load: the
        schema's declared parameters are all there, by exact name, in range)."""
        spec = TABLES[table]
        df = self[table]
        return {str(k): float(v) for k, v in zip(df[spec.param_column], df[spec.value_column],
                                                 strict=True)}


def _version(path: Path) -> str:
    h = hashlib.sha256()
    for name in sorted(TABLES):
        f = path / TABLES[name].file
        if f.exists():
            h.update(name.encode())
            h.update(f.read_bytes())
    return f"oreflow-data-{h.hexdigest()[:12]}"


def read_raw_tables(path: Path) -> tuple[dict[str, pd.DataFrame], list[Problem]]:
    """Read every table file as text (no type guessing: the schema converts)."""
    frames: dict[str, pd.DataFrame] = {}
    problems: list[Problem] = []
    for name, table in TABLES.items():
        f = path / table.file
        if not f.exists():
            problems.append(Problem(table.file, None, None, f"file missing from {path}"))
            continue
        try:
            frames[name] = pd.read_csv(f, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            problems.append(Problem(table.file, None, None, f"cannot be parsed as CSV: {e}"))
    return frames, problems


def validate_tables(
    frames: dict[str, pd.DataFrame],
) -> tuple[dict[str, pd.DataFrame], list[Problem]]:
    """Coerce and check every table; references are checked against the coerced tables."""
    problems: list[Problem] = []
    coerced: dict[str, pd.DataFrame] = {}
    for name, df in frames.items():
        out, p = coerce(TABLES[name], df)
        coerced[name] = out
        problems += p
    for name, df in coerced.items():
        problems += check_values(TABLES[name], df, coerced)
    problems += check_chain_references(coerced)
    base_year = base_year_of(coerced)
    for name, df in coerced.items():  # what the model reads by name or looks up is there
        problems += check_contents(TABLES[name], df, coerced, base_year)
    return coerced, problems


def check_dataset(path: Path | str | None = None) -> tuple[dict[str, pd.DataFrame], list[Problem]]:
    """Every problem in the dataset at `path` (default: the embedded one), and its tables."""
    path = Path(path) if path is not None else TABLES_DIR
    if not path.is_dir():
        return {}, [Problem(str(path), None, None, "dataset folder does not exist")]
    frames, problems = read_raw_tables(path)
    coerced, more = validate_tables(frames)
    return coerced, problems + more


def load_dataset(path: Path | str | None = None, base_year: int | None = None) -> Dataset:
    """The validated dataset; raises DatasetError listing every problem (file, line, column).
    `base_year` picks a past base year the dataset also describes (BASE_YEAR_VARIANTS)."""
    path = Path(path) if path is not None else TABLES_DIR
    if base_year is not None and base_year not in BASE_YEAR_VARIANTS:
        allowed = ", ".join(map(str, BASE_YEAR_VARIANTS))
        raise DatasetError([Problem(str(path), None, "base_year",
                                    f"no tables for base year {base_year}; the dataset "
                                    f"describes today's base year and {allowed}")])
    if path == TABLES_DIR:
        return _load_embedded(base_year)
    return _load(path, base_year)


def _load(path: Path, base_year: int | None = None) -> Dataset:
    if base_year is None:
        tables, problems = check_dataset(path)
        version = _version(path)
    else:  # today's tables with the past year's replacements laid over them
        over = path / BASE_YEAR_VARIANTS[base_year]
        frames, problems = read_raw_tables(path)
        for name, table in TABLES.items():
            f = over / table.file
            if f.exists():
                frames[name] = pd.read_csv(f, dtype=str, keep_default_na=False)
        tables, more = validate_tables(frames)
        problems += more
        version = f"{_version(path)}-{base_year}-{_version(over)[-12:]}"
    if problems:
        raise DatasetError(problems)
    return Dataset(tables=tables, path=path, version=version)


VALIDATED_CACHE_DIR = Path(__file__).parent / "__pycache__"
"""Where the embedded dataset's validated tables are kept between processes."""


def _validated_key(base_year: int | None) -> str:
    """What the validated tables depend on: the table files (the base year's replacements
    too), the code that reads and checks them (every module of oreflow.data) and pandas."""
    h = hashlib.sha256(f"{base_year}|{pd.__version__}".encode())
    folders = [TABLES_DIR] + ([TABLES_DIR / BASE_YEAR_VARIANTS[base_year]] if base_year else [])
    for folder in folders:
        h.update(_version(folder).encode())
    for module in sorted(Path(__file__).parent.glob("*.py")):
        h.update(module.name.encode())
        h.update(module.read_bytes())
    return h.hexdigest()[:20]


@lru_cache(maxsize=2)
def _load_embedded(base_year: int | None = None) -> Dataset:
    """The embedded dataset, validated once for its files and this code: a command is one
    process, and validating took ~0.6 s of each. The validated tables are pickled next to
    the package's bytecode (written atomically, by this process only); a cache that cannot
    be read or written is ignored and the tables are validated again. Writing one removes
    the same base year's caches for other files or code: they would never be read again."""
    prefix = f"dataset-{base_year or 'now'}-"
    cache = VALIDATED_CACHE_DIR / f"{prefix}{_validated_key(base_year)}.pickle"
    try:
        tables, version = pickle.loads(cache.read_bytes())
        if isinstance(tables, dict) and isinstance(version, str):
            return Dataset(tables=tables, path=TABLES_DIR, version=version)
    except Exception:  # noqa: BLE001 - a cache: missing, truncated or foreign, validate again
        pass
    ds = _load(TABLES_DIR, base_year)  # raises DatasetError: nothing is cached
    try:
        from oreflow.io import atomic_write_bytes

        cache.parent.mkdir(exist_ok=True)
        atomic_write_bytes(cache, pickle.dumps((dict(ds.tables), ds.version), protocol=5))
        for stale in VALIDATED_CACHE_DIR.glob("dataset-*.pickle"):
            # this base year's for other keys, and the older names without a base year
            if stale != cache and (stale.name.startswith(prefix) or stale.stem.count("-") == 1):
                stale.unlink(missing_ok=True)
    except OSError:
        pass
    return ds
