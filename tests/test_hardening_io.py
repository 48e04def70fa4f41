"""Files, memory and non-finite results (issue 11): `--out` checked before the run, atomic
writes that fail cleanly on a full disk, temp files of killed writers removed, the memory
estimate and budget, and NaN outputs failing the run instead of reading as zeros."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from oreflow import io as oio
from oreflow import limits
from oreflow.cli import app as cli
from oreflow.finite import NonFiniteResultError, check_result_finite
from oreflow.simulate import run_stress, save_result

runner = CliRunner()


def flat(r) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(r.output.split())


def stress(*args, env=None):
    return runner.invoke(cli, ["stress", "licensing-2025-04", "--paths", "10", "--months", "3",
                               "--format", "json", *args], env=env)


@pytest.fixture(scope="module")
def small_result(network):
    return run_stress("licensing-2025-04", paths=10, months=3, network=network)


# ---- --out is checked before the run ----------------------------------------------------------
def test_out_refuses_devices_directories_and_links(tmp_path):
    target = tmp_path / "real.nc"
    target.write_bytes(b"keep me")
    link = tmp_path / "link.nc"
    link.symlink_to(target)
    fifo = tmp_path / "fifo.nc"
    os.mkfifo(fifo)
    for out, words in (("/dev/null", "not a regular file"), (str(tmp_path), "is a directory"),
                       (str(link), "symbolic link"), (str(fifo), "not a regular file")):
        r = stress("--out", out)
        assert r.exit_code == 2 and words in flat(r), (out, r.output)
        assert "Traceback" not in r.output
    assert target.read_bytes() == b"keep me" and link.is_symlink()
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_out_unwritable_refused_before_the_run(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    ran = []
    monkeypatch.setattr("oreflow.simulate.run_stress", lambda *a, **k: ran.append(1))
    try:
        if os.access(ro, os.W_OK) and os.geteuid() == 0:
            # root writes anywhere: a path under a regular file cannot be created by anyone
            (tmp_path / "file").write_text("x")
            out = tmp_path / "file" / "r.nc"
        else:
            out = ro / "r.nc"
        r = stress("--out", str(out))
    finally:
        ro.chmod(0o700)
    assert r.exit_code == 2 and "--out" in flat(r) and "cannot" in flat(r)
    assert ran == [] and "Traceback" not in r.output and len(flat(r)) < 300


def test_out_never_the_input_scenario(tmp_path):
    sc = tmp_path / "s.yaml"
    sc.write_text('name: s\nstart: "2025-04"\nmonths: 3\nshocks: []\n')
    r = runner.invoke(cli, ["stress", str(sc), "--paths", "5", "--out", str(sc)])
    assert r.exit_code == 2 and "is the input file" in flat(r)
    assert sc.read_text().startswith("name: s")


def test_report_refuses_to_overwrite_its_input(tmp_path, small_result):
    nc = save_result(small_result, tmp_path / "x.nc")
    before = nc.read_bytes()
    r = runner.invoke(cli, ["report", str(nc), "--out", str(nc)])
    assert r.exit_code == 2 and "is the input file" in flat(r)
    assert nc.read_bytes() == before


def test_full_disk_during_cli_write_is_one_clean_error(tmp_path, monkeypatch):
    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(oio, "write_file_bytes", full)
    out = tmp_path / "r.nc"
    r = stress("--out", str(out))
    assert r.exit_code == 2
    assert "no space left on the device" in flat(r) and "Traceback" not in r.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "r.nc"
    target.write_bytes(b"old")

    def half(path, data):
        path.write_bytes(bytes(data)[:3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(oio, "write_file_bytes", half)
    with pytest.raises(oio.WriteError) as exc:
        oio.atomic_write_bytes(target, b"new content")
    assert exc.value.reason == "no space left on the device" and exc.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["r.nc"]


def test_result_written_through_memory_not_hdf5_on_disk(tmp_path, small_result, monkeypatch):
    """HDF5 crashes on ENOSPC, so it must never write to the result path itself."""
    seen = []
    real = oio.write_file_bytes
    monkeypatch.setattr(oio, "write_file_bytes", lambda p, d: (seen.append(len(d)), real(p, d)))
    save_result(small_result, tmp_path / "r.nc")
    assert seen and seen[0] == (tmp_path / "r.nc").stat().st_size


def test_stale_temp_files_of_dead_writers_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".r.nc.{dead}.abcd1234.tmp"
    mine = tmp_path / f".r.nc.{os.getpid()}.abcd1234.tmp"
    other = tmp_path / ".notes.tmp"
    for f in (stale, mine, other):
        f.write_text("x")
    oio.atomic_write_text(tmp_path / "r.nc", "ok")
    assert not stale.exists() and mine.exists() and other.exists()


# ---- memory estimate and budget -----------------------------------------------------------------
def test_estimate_grows_with_paths_and_months():
    e = limits.estimate_run_bytes
    assert e(2_000, 36) < e(20_000, 36) < e(200_000, 36)
    assert e(10_000, 12) < e(10_000, 120)
    assert e(1_000, 1, shocks=100) > e(1_000, 1)
    # the case: 12 million paths, one month: ~10 kB of per-path results a path
    assert 100e9 < e(12_000_000, 1) < 160e9


def test_estimate_matches_a_measured_run(tmp_path):
    """Peak RSS of a real `oreflow stress` (its own process) lies under the estimate, and not
    far under it when the run saves its result with monthly bands (`--out`, how the estimate
    was fitted: oreflow.limits); without `--out` the month's outputs stay in the kernel's
    scratch and the run needs less, still under the estimate."""
    est = limits.estimate_run_bytes(12_000, 12, shocks=1)

    def peak(*extra: str) -> int:
        # VmHWM (peak RSS of this process image), not ru_maxrss: that one is carried over
        # from the forking parent, here a large pytest process
        argv = ["oreflow", "stress", "licensing-2025-04", "--paths", "12000", "--months",
                "12", "--format", "json", *extra]
        code = (f"import re, sys; from oreflow.cli import app; sys.argv={argv!r};\n"
                "try: app()\nexcept SystemExit: pass\n"
                "print('RSS', int(re.search(r'VmHWM:\\s+(\\d+)', "
                "open('/proc/self/status').read())[1]) * 1024)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout
        return int(out.rsplit("RSS", 1)[1])

    saved = peak("--out", str(tmp_path / "r.nc"))
    assert 0.6 * est < saved < est, (saved, est)
    assert peak() < est


@pytest.mark.parametrize(("text", "value"), [("8G", 8 * 2**30), ("512M", 512 * 2**20),
                                             ("2.5GB", int(2.5 * 2**30)), ("1000", 1000),
                                             ("64k", 65536), ("1TiB", 2**40)])
def test_parse_bytes(text, value):
    assert limits.parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "abc", "-1G", "8X", "nan", "inf", "0"])
def test_parse_bytes_refuses(text):
    with pytest.raises(ValueError, match="OREFLOW_MEMORY_BUDGET"):
        limits.parse_bytes(text)


def test_default_budget_fits_the_machine(monkeypatch):
    monkeypatch.delenv(limits.ENV_BUDGET, raising=False)
    phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < limits.memory_budget() <= phys * limits.DEFAULT_FRACTION
    monkeypatch.setenv(limits.ENV_BUDGET, "3G")
    assert limits.memory_budget() == 3 * 2**30
    assert limits.memory_budget("1G") == 2**30  # the CLI option wins


def test_cli_refuses_an_over_budget_run_with_estimate_and_limit():
    r = runner.invoke(cli, ["stress", "baseline", "--paths", "10000000", "--months", "1"])
    assert r.exit_code == 2
    text = " ".join(r.output.split())
    assert "GB of memory (estimate)" in text and "above the budget of" in text
    assert "--max-memory" in text
    r = stress("--max-memory", "50M")
    assert r.exit_code == 2 and "budget of 50.0 MB" in " ".join(r.output.split())
    r = stress(env={limits.ENV_BUDGET: "lots"})
    assert r.exit_code == 2 and "OREFLOW_MEMORY_BUDGET" in flat(r)


# ---- non-finite outputs fail the run ------------------------------------------------------------
def test_nan_in_a_result_fails_with_variable_named(small_result):
    ds = small_result.copy(deep=True)
    ds["price_usd_per_kg"][1, 2, 1, 0] = np.nan
    with pytest.raises(NonFiniteResultError, match=r"price_usd_per_kg has 1 NaN value\(s\)"):
        check_result_finite(ds)
    ds = small_result.copy(deep=True)
    ds["unmet_physical_t"][3, 0, 0] = np.inf
    with pytest.raises(NonFiniteResultError, match=r"unmet_physical_t .* on 1 of 10 paths"):
        check_result_finite(ds)
    ds = small_result.copy(deep=True)
    ds.attrs["max_rel_balance_residual"] = float("nan")
    with pytest.raises(NonFiniteResultError, match="max_rel_balance_residual"):
        check_result_finite(ds)


def test_meaningful_non_finite_values_allowed(small_result):
    ds = small_result.copy(deep=True)
    ds["first_stoppage_week"][:] = np.inf  # never short
    check_result_finite(ds)
    unpriced = small_result["base_price_usd_per_kg"].values <= 0
    if unpriced.any():  # a ratio to a zero base price is NaN by design
        z, e = np.argwhere(unpriced)[0]
        ds["price_peak_ratio"][:, z, e] = np.nan
        check_result_finite(ds)


def test_nan_behaviour_fails_the_run_loudly(network):
    """A NaN reaching the engine (here past validation, straight into Behaviour) ends the
    run with an error instead of a result of zeros."""
    from oreflow.simulate.engine import Behaviour

    beh = Behaviour.from_dataset(network.dataset, price_rationing_elasticity=float("nan"))
    with pytest.raises(NonFiniteResultError, match="non-finite"):
        run_stress("licensing-2025-04", paths=5, months=4, network=network, behaviour=beh)


def test_band_paths_agree_with_the_engine():
    from oreflow.simulate.observers import BAND_PATHS

    assert limits.BAND_PATHS == BAND_PATHS


@pytest.mark.parametrize(("given", "advice"), [(None, "False"), ("1", "True")])
def test_the_command_turns_numpys_huge_page_advice_off_unless_asked(given, advice):
    """oreflow's commands import numpy without its huge-page advice (first touches of fresh
    memory waited for compaction on the project's machine); an explicit
    NUMPY_MADVISE_HUGEPAGE wins. A library user's numpy is left as numpy sets it."""
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if given is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = given

    def advice_after(imports: str) -> str:
        code = f"import {imports}\nprint(numpy._core.multiarray._get_madvise_hugepage())"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, env=env).stdout.split()[-1]

    assert advice_after("oreflow.cli, numpy") == advice
    assert advice_after("oreflow, numpy") == advice_after("numpy")
