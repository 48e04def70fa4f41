"""The embedded dataset: published numbers, sourcing, and clear errors on corrupted copies."""

from __future__ import annotations

import pandas as pd
import pytest

from oreflow.data import DatasetError, check_dataset, load_dataset
from oreflow.data.schema import TABLES


def test_embedded_dataset_validates(dataset):
    tables, problems = check_dataset()
    assert problems == []
    assert set(tables) == set(TABLES)


def test_validated_tables_are_kept_for_the_next_process_and_only_for_these_files(
        tmp_path, monkeypatch):
    """The embedded dataset is validated once for its files and code: a later process reads
    the same tables back; a cache that cannot be read is validated again and rewritten; a
    changed table file gives another key (its tables are validated anew, and their cache
    replaces the old key's: the same base year's only)."""
    import shutil

    from oreflow.data import load

    monkeypatch.setattr(load, "VALIDATED_CACHE_DIR", tmp_path / "cache")
    fresh = load._load(load.TABLES_DIR)
    first = load._load_embedded.__wrapped__()  # validates, writes the cache
    (written,) = (tmp_path / "cache").glob("dataset-*.pickle")

    def no_validation(*args):
        raise AssertionError("validated again although the cache is good")

    with monkeypatch.context() as m:
        m.setattr(load, "_load", no_validation)
        again = load._load_embedded.__wrapped__()  # reads it
    for ds in (first, again):
        assert ds.version == fresh.version and set(ds.tables) == set(fresh.tables)
        for name in fresh.tables:
            pd.testing.assert_frame_equal(ds[name], fresh[name], check_exact=True)
    written.write_bytes(b"not a pickle")
    assert load._load_embedded.__wrapped__().version == fresh.version
    assert written.read_bytes() != b"not a pickle"  # rewritten
    key = load._validated_key(None)
    copy = tmp_path / "tables"
    shutil.copytree(load.TABLES_DIR, copy)
    monkeypatch.setattr(load, "TABLES_DIR", copy)
    assert load._validated_key(None) == key
    f = copy / TABLES["sources"].file
    f.write_text(f.read_text() + "\n")
    assert load._validated_key(None) != key
    # the new key's cache replaces the old one; another base year's is kept
    other_year = tmp_path / "cache" / "dataset-2010-0123456789abcdef0123.pickle"
    other_year.write_bytes(b"x")
    (tmp_path / "cache" / "dataset-0123456789abcdef0123.pickle").write_bytes(b"x")  # older name
    load._load_embedded.__wrapped__()
    kept = sorted(p.name for p in (tmp_path / "cache").glob("dataset-*.pickle"))
    assert kept == [other_year.name, f"dataset-now-{load._validated_key(None)}.pickle"]


def test_every_row_is_sourced(dataset):
    known = set(dataset["sources"]["source_id"])
    for name, table in TABLES.items():
        if not table.sourced:
            continue
        df = dataset[name]
        assert len(df) > 0, name
        assert df["source_id"].isin(known).all(), name
        assert df["status"].isin(["reported", "estimate", "assumption"]).all(), name
        assert (df["vintage"] >= 1900).all(), name


@pytest.mark.parametrize(
    ("region", "year", "t_reo"),
    [
        ("CHN", 2024, 270_000), ("USA", 2024, 45_500), ("MMR", 2024, 27_000),
        ("AUS", 2024, 29_000), ("WLD", 2024, 380_000), ("CHN", 2025, 270_000),
        ("USA", 2025, 51_000), ("MMR", 2025, 22_000), ("AUS", 2025, 29_000),
        ("WLD", 2025, 390_000),
    ],
)
def test_mine_production_equals_usgs_mcs2026(dataset, region, year, t_reo):
    mp = dataset["mine_production"].set_index(["region", "year"])
    assert mp.loc[(region, year), "t_reo"] == t_reo
    assert mp.loc[(region, year), "source_id"] == "usgs_mcs2026"


def test_mine_production_matches_every_usgs_row(dataset):
    """Every MCS 2026 country row, not just the headline ones, is carried over unchanged."""
    from oreflow.data import raw

    raw_dir = raw.default_raw_dir()
    if not raw_dir.is_dir():
        pytest.skip("raw data folder not present")
    usgs = raw.read_mcs2026_rare_earths(raw_dir)["mine_production"]
    ours = dataset["mine_production"].query("source_id == 'usgs_mcs2026'")
    merged = usgs.merge(ours, on=["region", "year"], suffixes=("_usgs", ""))
    assert len(merged) == len(usgs) == len(ours)
    assert (merged["t_reo"] == merged["t_reo_usgs"]).all()


def test_history_comes_from_the_minerals_yearbook(dataset):
    mp = dataset["mine_production"]
    hist = mp[mp["year"] < 2021]
    assert set(hist["year"]) == {2018, 2019, 2020}
    assert (hist["source_id"] == "usgs_myb2022").all()


def test_reserves_carry_the_v13_errata(dataset):
    res = dataset["reserves"].set_index("region")
    assert res.loc["BRA", "t_reo"] == 11_000_000
    assert res.loc["WLD", "t_reo"] == 75_000_000
    assert res.loc["WLD", "qualifier"] == ">"


def test_elements_and_oxide_factors(dataset):
    el = dataset["elements"].set_index("element")
    assert len(el) == 17
    assert not el.loc["Pm", "produced"]
    # Nd2O3: 2*144.24 / (2*144.24 + 3*15.999) = 0.8573
    assert el.loc["Nd", "metal_per_oxide"] == pytest.approx(0.8573, abs=1e-4)
    assert el.loc["Dy", "class"] == "heavy" and el.loc["La", "class"] == "light"


def test_build_is_reproducible(tmp_path):
    """Rebuilding from the raw files gives the committed tables byte for byte."""
    from oreflow.data import build, raw
    from oreflow.data.load import TABLES_DIR

    raw_dir = raw.default_raw_dir()
    if not raw_dir.is_dir():
        pytest.skip("raw data folder not present")
    build.write_tables(build.build_tables(raw_dir), tmp_path)
    for name, table in TABLES.items():
        assert (tmp_path / table.file).read_bytes() == (TABLES_DIR / table.file).read_bytes(), name


# ---- corrupted copies: each gives a message naming file, line and column ----------------

def _edit(path, table, fn):
    f = path / TABLES[table].file
    df = pd.read_csv(f, dtype=str, keep_default_na=False)
    fn(df)
    df.to_csv(f, index=False)


def _problems(path) -> str:
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    return str(exc.value)


def test_missing_column(dataset_copy):
    _edit(dataset_copy, "mine_production", lambda df: df.pop("t_reo"))
    msg = _problems(dataset_copy)
    assert "mine_production.csv" in msg and "'t_reo'" in msg and "missing column" in msg


def test_unknown_id(dataset_copy):
    def corrupt(df):
        df.loc[0, "region"] = "ATL"
    _edit(dataset_copy, "mine_production", corrupt)
    msg = _problems(dataset_copy)
    assert "mine_production.csv, line 2, column 'region'" in msg and "'ATL'" in msg
    assert "not in regions.csv" in msg


def test_negative_quantity(dataset_copy):
    def corrupt(df):
        df.loc[3, "t_reo"] = "-5"
    _edit(dataset_copy, "mine_production", corrupt)
    msg = _problems(dataset_copy)
    assert "mine_production.csv, line 5, column 't_reo'" in msg and "below the minimum 0" in msg


def test_nan_quantity(dataset_copy):
    def corrupt(df):
        df.loc[1, "share"] = "NaN"
    _edit(dataset_copy, "deposit_composition", corrupt)
    msg = _problems(dataset_copy)
    assert "deposit_composition.csv, line 3, column 'share'" in msg
    assert "'NaN' is not a finite number" in msg


def test_shares_not_summing_to_one(dataset_copy):
    def corrupt(df):
        i = df.index[df["region"] == "CHN"][0]
        df.loc[i, "share"] = str(float(df.loc[i, "share"]) + 0.2)
    _edit(dataset_copy, "mine_source_split", corrupt)
    msg = _problems(dataset_copy)
    assert "mine_source_split.csv" in msg and "region='CHN'" in msg and "sum to 1.2" in msg


def test_row_without_source(dataset_copy):
    def corrupt(df):
        df.loc[0, "source_id"] = ""
    _edit(dataset_copy, "enduse_demand", corrupt)
    msg = _problems(dataset_copy)
    assert "enduse_demand.csv, line 2, column 'source_id'" in msg
    assert "empty value where one is required" in msg


def test_bad_status(dataset_copy):
    def corrupt(df):
        df.loc[0, "status"] = "guess"
    _edit(dataset_copy, "sector_regions", corrupt)
    msg = _problems(dataset_copy)
    assert "sector_regions.csv, line 2, column 'status'" in msg and "'guess' is not allowed" in msg


def test_missing_file(dataset_copy):
    (dataset_copy / "elements.csv").unlink()
    assert "elements.csv: file missing" in _problems(dataset_copy)


def test_the_2010_base_year_is_reproducible(tmp_path):
    """The 2010 tables (tables/base_2010) are what the build writes from curated/base_2010."""
    from oreflow.data import build, raw
    from oreflow.data.load import BASE_YEAR_VARIANTS, TABLES_DIR

    raw_dir = raw.default_raw_dir()
    if not raw_dir.is_dir():
        pytest.skip("raw data folder not present")
    folder = BASE_YEAR_VARIANTS[2010]
    written = build.write_tables(build.build_variant(raw_dir, 2010), tmp_path)
    assert {p.name for p in written} == {p.name for p in (TABLES_DIR / folder).glob("*.csv")}
    for p in written:
        assert p.read_bytes() == (TABLES_DIR / folder / p.name).read_bytes(), p.name
