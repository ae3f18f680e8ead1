"""`qmpctl compare`: two sets of loss rates, per cell, with an exact test
(pure, and the CLI on the results kept in docs/results)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qmpctl.cli import app
from qmpctl.core.errors import UsageError
from qmpctl.matrix.stats import CellStats, cell_stats, fisher_exact, interval_within, rate_text
from qmpctl.matrix.versus import compare_rates, holm, load_matrix, pairs_by_host

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"
CONTROL = RESULTS / "kvm-control-x86.json"  # kvm_pvm against the x86_64 lab, 10 runs a cell


@pytest.mark.parametrize(("a", "b", "p"), [
    ((3, 4), (1, 4), 0.4857142857),  # Fisher's tea-tasting table, two-sided
    ((12, 34), (0, 40), 2.4988715e-05),  # docs/kvm-control.md's pooled ring cells
    ((0, 10), (0, 10), 1.0),
    ((1, 10), (0, 10), 1.0),
    ((10, 10), (0, 10), 1.0825088e-05),
])
def test_fisher_exact_two_sided(a: tuple[int, int], b: tuple[int, int], p: float) -> None:
    assert fisher_exact(*a, *b) == pytest.approx(p, rel=1e-6)
    assert fisher_exact(*b, *a) == pytest.approx(p, rel=1e-6)  # symmetric


def test_fisher_exact_refuses_an_empty_side() -> None:
    with pytest.raises(ValueError, match="n > 0 on both sides"):
        fisher_exact(0, 0, 1, 3)


def test_holm_steps_down_and_stops_at_the_first_kept() -> None:
    # m = 3: 0.01 <= 0.05/3, 0.02 <= 0.05/2, 0.06 > 0.05/1
    assert holm([0.02, 0.06, 0.01], 0.05) == [True, False, True]
    # 0.02 > 0.05/3 stops the procedure: nothing after it is rejected either
    assert holm([0.02, 0.021, 0.022], 0.05) == [False, False, False]
    assert holm([], 0.05) == []


def stats(lost: int, verified: int, other: int = 0) -> CellStats:
    return cell_stats(["mismatch"] * lost + ["verified"] * verified + ["inconclusive"] * other)


def test_cells_are_tested_corrected_and_pooled() -> None:
    pairs = [("broken", stats(10, 0), stats(0, 10)), ("alike", stats(1, 9), stats(1, 9)),
             ("one-sided", stats(0, 0, 3), stats(0, 10)), ("missing", stats(0, 5), None)]
    c = compare_rates(pairs, "old", "new")
    by = {r.cell: r for r in c.cells}
    assert by["broken"].differs is True and by["broken"].note == "the loss rates differ"
    assert by["alike"].differs is False and by["alike"].p_value == pytest.approx(1.0)
    assert by["one-sided"].p_value is None and by["one-sided"].note == (
        "not compared: side A compared no run to a verdict (3 runs)")
    assert by["missing"].note == "not compared: side B has no such cell"
    assert c.pooled.a is not None and (c.pooled.a.lost, c.pooled.a.n) == (11, 20)
    assert c.pooled.b is not None and (c.pooled.b.lost, c.pooled.b.n) == (1, 20)
    assert c.exit_code == 1
    assert compare_rates([("alike", stats(1, 9), stats(1, 9))], "a", "b").exit_code == 0
    with pytest.raises(UsageError, match="--alpha 1: must be between 0 and 1"):
        compare_rates(pairs, "a", "b", alpha=1.0)


def test_a_files_hosts_are_paired_by_the_cell_without_its_host() -> None:
    m = load_matrix(CONTROL)
    pairs = pairs_by_host(m, "local", "lab-x86_64")
    ids = [cell for cell, _, _ in pairs]
    assert "x86_64-kvm-ring1024-smp1-baremetal-precopy-10.0->10.0" in ids
    assert all("@" not in i for i in ids) and all(a and b for _, a, b in pairs)
    with pytest.raises(UsageError, match="'lab-aarch64' ran no cell in this file"):
        pairs_by_host(m, "local", "lab-aarch64")


def test_cli_on_the_kept_kvm_control_results(tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    result = CliRunner().invoke(app, ["compare", str(CONTROL), "--json", str(out)])
    assert result.exit_code == 1, result.output  # the pool differs: kvm_pvm loses pages
    pooled = json.loads(out.read_text())["pooled"]
    assert (pooled["a"]["lost"], pooled["b"]["lost"], pooled["differs"]) == (12, 0, True)
    assert pooled["p_value"] < 1e-4
    assert "| pooled (cells compared on both sides) | 12/54 22.2%" in result.output
    same = CliRunner().invoke(app, ["compare", str(CONTROL), str(CONTROL)])
    assert same.exit_code == 0, same.output
    assert "**the loss rates differ**" not in same.output


@pytest.mark.parametrize(("args", "message"), [
    (["nowhere.json"], "nowhere.json: cannot read it"),
    ([str(RESULTS / "full.md")], "full.md: not a `qmpctl matrix --json` result"),
    ([str(RESULTS / "full.json")], "give a second file, or --hosts A,B naming two of its hosts"),
    ([str(CONTROL), str(CONTROL), "--hosts", "local,lab-x86_64"],
     "--hosts compares the hosts of one file"),
])
def test_cli_bad_input_is_named(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["compare", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_an_interval_is_narrow_enough_only_with_runs_compared() -> None:
    assert not interval_within(stats(0, 3), 0.5)  # [0, 56.2 %]
    assert interval_within(stats(0, 4), 0.5)  # [0, 49.0 %]
    assert not interval_within(stats(0, 0, 50), 0.5)  # 50 inconclusive runs prove nothing
    assert rate_text(stats(0, 4)) == "0/4 0.0% [0.0%, 49.0%]"
    assert rate_text(stats(0, 0, 2)) == "none (no run of 2 compared to a verdict)"
