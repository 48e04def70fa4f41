"""The 2010-11 calibration and the backtest: the quota replay, the 2010 network, the fit
(in-sample) and the validation report."""

import numpy as np
import pytest

from oreflow.network import Network
from oreflow.scenario import ScenarioError, parse_scenario
from oreflow.simulate import run_stress, summary
from oreflow.simulate.observers import _Base
from oreflow.validate import run_validation, simulate, table


@pytest.fixture(scope="module")
def net():
    return Network.from_dataset()


class Exports(_Base):
    def __init__(self):
        self.by_month = []

    def on_month(self, v):
        c = v.base.controller_index
        E = len(v.base.elements)
        self.by_month.append(v.exports_t[:, c, :2 * E].sum(-1))  # oxide and metal, [P]


def _quota(share: float, expected: str = "") -> str:
    return f"""
name: q
start: "2024-01"
months: 6
shocks:
  - type: export_control
    elements: all
    stages: [separation, metal]
    approval_basis: base_year
    approval: [[0, 1.0], [2, {share}]]
    {expected}
"""


def test_quota_caps_the_controller_exports_at_its_share_of_base_year_flows(net):
    base = Exports()
    run_stress(parse_scenario(_quota(1.0), network=net), paths=4, seed=1, network=net,
               observers=[base])
    capped = Exports()
    run_stress(parse_scenario(_quota(0.4), network=net), paths=4, seed=1, network=net,
               observers=[capped])
    flow0 = base.by_month[0]  # month 0: quota 1.0 of base flows, not binding
    for t in range(2, 6):
        assert np.all(capped.by_month[t] <= 0.4 * flow0 * 1.02 + 1e-6)
    assert np.all(capped.by_month[3] > 0.2 * flow0)  # what the quota allows still ships


def test_quota_shares_above_one_need_the_base_year_basis(net):
    text = _quota(1.3).replace("approval_basis: base_year", "")
    with pytest.raises(ScenarioError, match=r"approval shares must lie in \[0, 1\]"):
        parse_scenario(text, network=net)
    parse_scenario(_quota(1.3), network=net)  # a quota may exceed the base flow


def test_an_announced_quota_tighter_than_shipments_raises_the_price_first(net):
    """Buyers price the quota as announced (expected_approval) before shipments fall."""
    plain = run_stress(parse_scenario(_quota(1.0), network=net), paths=20, seed=2,
                       network=net)
    feared = run_stress(parse_scenario(_quota(1.0, "expected_approval: [[0, 0.3]]"),
                                       network=net), paths=20, seed=2, network=net)
    p0 = summary(plain)["price_peak_ratio"]["Dy"]["ROW"]
    p1 = summary(feared)["price_peak_ratio"]["Dy"]["ROW"]
    assert p1 > p0 * 1.1


def test_2010_network_is_the_2010_chain(net):
    n = net.at_year(2010)
    assert n.year == 2010
    n.check_balance()
    checks = n.consistency_checks().set_index("check")
    share = checks.loc["China share of separation (REO)"]
    assert share["network"] == pytest.approx(share["published"], abs=0.02)
    blanks = checks.loc["World sintered NdFeB blanks, kt"]
    assert blanks["network"] == pytest.approx(98.2, rel=0.01)
    made = n.magnet_grade_t.sel(grade="ndfeb_dy_mid")
    assert float(made.sel(region="JPN") / made.sum()) == pytest.approx(0.193, abs=1e-6)
    assert float(n.mine_t.sum()) == pytest.approx(101_000, rel=1e-6)  # USGS DS140 world


@pytest.mark.insample
def test_fit_targets_in_sample(net):
    """IN-SAMPLE: scripts/calibrate.py fitted the price parameters to these two figures
    (2010-11 outside peaks of Dy and Nd over Q1 2010); the fit stays within a factor 2.5."""
    targets = net.dataset["validation_targets"].query("role == 'fit'")
    tab = table(targets, simulate(targets, seeds=(1, 2), paths=150, network=net))
    ratio = tab["simulated_median"] / tab["observed"]
    assert ratio.between(1 / 2.5, 2.5).all(), tab[["target", "observed", "simulated_median"]]


@pytest.mark.insample
def test_quota_2010_shape(net):
    """IN-SAMPLE (shape the fit targets): the outside Dy peak is several times its pre-shock
    level and the export price of a light element rises far more than inside China."""
    s = summary(run_stress("quota-2010", paths=300, seed=1, network=net))
    pr = s["price_peak_ratio"]
    assert pr["Dy"]["ROW"] >= 5
    assert max(pr[e]["ROW"] / pr[e]["CHN"] for e in ("La", "Sm")) >= 3


def test_validation_report_has_every_target_in_and_out_of_sample(net, tmp_path):
    out = tmp_path / "validation.md"
    tab = run_validation(out, seeds=(1,), paths=30, network=net)
    text = out.read_text()
    targets = net.dataset["validation_targets"]
    assert set(tab["target"]) == set(targets["target"])
    assert "in-sample" in text and "out-of-sample" in text
    for t in targets["target"]:
        assert f"| {t} |" in text
    assert set(tab["result"]) <= {"pass", "miss"}
