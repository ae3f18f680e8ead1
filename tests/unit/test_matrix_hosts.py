"""The matrix's host axis without QEMU or a lab: ids and order, what a lab
host refuses before anything starts, the lab job (its spec expands to the
same cells inside), merging a lab's results, the run loop with a scripted
lab, per-host loss rates in every output. (tests/e2e/test_matrix.py boots a
real lab.)"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from qmpctl.cli import app
from qmpctl.core.errors import UsageError
from qmpctl.matrix.cells import Cell, expand
from qmpctl.matrix.execute import LocalExecutor, MatrixState, run_matrix
from qmpctl.matrix.junit import junit_tree
from qmpctl.matrix.knownloss import parse_known_loss
from qmpctl.matrix.labs import (
    LabBatch,
    LabJob,
    job_cells,
    lab_argv,
    lab_check,
    lab_timeout,
    load_lab_job,
    manifest_qemu,
    merge_lab,
    progress,
    qemu_problem,
)
from qmpctl.matrix.markdown import feature_table
from qmpctl.matrix.plan import plan
from qmpctl.matrix.plot import plot_matrix
from qmpctl.matrix.presets import PRESETS
from qmpctl.matrix.results import LabRun, MatrixReport, exit_code, host_results, record
from qmpctl.matrix.spec import MatrixSpec, load_preset, parse_spec
from qmpctl.matrix.table import matrix_table
from qmpctl.report.models import RunReport
from qmpctl.scenario.options import MigrateOptions
from tests.unit.test_matrix import HOST, LOST, VERIFIED

RING = "x86_64-kvm-ring4096-smp1-baremetal-precopy-10.0->10.0"
BITMAP = "x86_64-kvm-bitmap-smp1-baremetal-precopy-10.0->10.0"
ARM = "aarch64-kvm-ring4096-smp2-baremetal-precopy-10.0->10.0@lab-aarch64"


def side_by_side() -> MatrixSpec:
    """x86 KVM ring and bitmap here and in the x86 lab; arm64 KVM in the arm64 lab."""
    return parse_spec({"repeat": 2, "options": {"ram": 64},
                       "axes": [{"accel": ["kvm"], "tracking": ["ring", "bitmap"],
                                 "qemu": ["10.0->10.0"], "host": ["local", "lab-x86_64"]},
                                {"arch": ["aarch64"], "accel": ["kvm"],
                                 "qemu": ["10.0->10.0"], "host": ["lab-aarch64"]}]}, "t")


IDS = [RING, f"{RING}@lab-x86_64", BITMAP, f"{BITMAP}@lab-x86_64", ARM]


# --- axis, ids, presets ----------------------------------------------------------------------


def test_host_defaults_to_local_and_leaves_every_id_as_it_was() -> None:
    for name in PRESETS:
        cells = expand(load_preset(name))
        if name != "kvm-control":
            assert {c.host for c in cells} == {"local"}
            assert not any("@" in c.id for c in cells)
    cell = expand(parse_spec({}, "t"))[0]
    assert cell.id == "x86_64-tcg-smp1-baremetal-precopy-system"
    assert cell.axes["host"] == "local" and "host" not in cell.kwargs


def test_the_same_cell_on_each_host_sits_side_by_side() -> None:
    cells = expand(side_by_side())
    assert [c.id for c in cells] == IDS
    by_id = {c.id: c for c in cells}
    assert by_id[RING].kwargs == by_id[f"{RING}@lab-x86_64"].kwargs  # only where differs
    assert by_id[f"{RING}@lab-x86_64"].axes == {**by_id[RING].axes, "host": "lab-x86_64"}
    assert by_id[ARM].host == "lab-aarch64" and by_id[ARM].options.arch == "aarch64"


def test_kvm_control_preset_puts_x86_cells_here_and_in_the_lab_and_arm64_in_its_lab() -> None:
    spec = load_preset("kvm-control")
    cells = expand(spec)
    assert spec.repeat == 3 and all(c.not_run is None for c in cells)
    x86 = [f"x86_64-kvm-{t}-smp{n}-baremetal-precopy-10.0->10.0"
           for t in ("ring1024", "ring4096") for n in (1, 2)] + [
        f"x86_64-kvm-bitmap-smp{n}-baremetal-precopy-10.0->10.0" for n in (1, 2)] + [
        f"x86_64-kvm-ring4096-smp1-baremetal-{f}-10.0->10.0"
        for f in ("dirty-limit", "vcpu-dirty-limit")]
    arm = [f"aarch64-kvm-{t}-smp{n}-baremetal-precopy-10.0->10.0@lab-aarch64"
           for t in ("ring1024", "ring4096", "bitmap") for n in (1, 2)]
    assert [c.id for c in cells] == [i for x in x86 for i in (x, f"{x}@lab-x86_64")] + arm
    assert {c.options.timeout for c in cells} == {300.0}


@pytest.mark.parametrize(("axes", "problem"), [
    ({"arch": ["aarch64"], "host": ["lab-x86_64"]},
     "axes[0]: host lab-x86_64 cannot run arch aarch64: that lab runs x86_64 guests only "
     "(its QEMU is qemu-system-x86_64, its KVM x86_64's); put aarch64 cells on local or "
     "lab-aarch64, in an [[axes]] of their own"),
    ({"host": ["local", "lab-aarch64"]}, "host lab-aarch64 cannot run arch x86_64"),
    ({"host": ["lab-riscv"]}, "axes[0].host[0]: Input should be 'local', 'lab-aarch64' or "
                              "'lab-x86_64' (got 'lab-riscv')"),
    ({"host": []}, "host: needs at least one value"),
])
def test_a_host_that_cannot_run_an_arch_is_bad_input(axes: dict[str, Any],
                                                     problem: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_spec({"axes": axes}, "--axes m.toml")
    assert problem in exc.value.message and "\n" not in exc.value.message


def test_known_loss_can_name_a_host() -> None:
    cells = {c.id: c for c in expand(side_by_side())}
    here = parse_known_loss("host=local,tracking=ring")
    assert here.covers(cells[RING].axes)
    assert not here.covers(cells[f"{RING}@lab-x86_64"].axes)
    with pytest.raises(UsageError, match="host='lab': choose local, lab-aarch64, lab-x86_64"):
        parse_known_loss("host=lab")


# --- before anything starts: what a lab host refuses -----------------------------------------


def test_plan_asks_this_host_about_its_cells_and_the_labs_about_theirs() -> None:
    cells = expand(side_by_side())
    asked: list[str] = []

    def check(opts: MigrateOptions) -> str | None:
        asked.append(f"here {opts.dirty_ring}")
        return None

    def labs(cell: Cell) -> str | None:
        asked.append(cell.id)
        return "no x86 lab" if cell.host == "lab-x86_64" else None

    planned = {c.id: c.not_run for c in plan(cells, check, labs)}
    assert asked == ["here 4096", f"{RING}@lab-x86_64", "here 0", f"{BITMAP}@lab-x86_64", ARM]
    assert planned == {RING: None, f"{RING}@lab-x86_64": "no x86 lab", BITMAP: None,
                       f"{BITMAP}@lab-x86_64": "no x86 lab", ARM: None}
    # inside the x86 lab its cells are that host's own; without a lab runner, elsewhere
    inside = {c.id: c.not_run for c in plan(cells, lambda o: None, here="lab-x86_64")}
    assert inside[f"{RING}@lab-x86_64"] is None
    assert "run under `qmpctl matrix`, which boots the lab" in (inside[RING] or "")


def test_lab_check_names_a_missing_image_and_a_qemu_the_lab_lacks() -> None:
    spec = parse_spec({"axes": [{"accel": ["kvm"], "host": ["lab-x86_64"],
                                 "qemu": ["10.0->10.0", "7.2->10.0", "system"]},
                                {"arch": ["aarch64"], "host": ["lab-aarch64"]}]}, "t")
    cells = expand(spec)
    asked: list[str] = []

    def available(arch: str) -> str | None:
        asked.append(arch)
        return ("the aarch64 lab image is not built (...): build it with `make -C images lab`"
                if arch == "aarch64" else None)

    check = lab_check(available, lab_qemu=lambda arch: "10.0.2")
    reasons = [check(c) for c in cells]
    assert reasons[0] is None and reasons[2] is None
    assert reasons[1] == ("host lab-x86_64: the lab has only its own QEMU 10.0.2 (its image's "
                          "manifest), not 7.2")
    assert reasons[3] == ("host lab-aarch64: the aarch64 lab image is not built (...): build "
                          "it with `make -C images lab`")
    assert asked == ["x86_64", "aarch64"]  # once per lab host


def test_manifest_qemu_and_version_matching() -> None:
    assert manifest_qemu({"qemu": "1:10.0.2+ds-2+deb13u1~bpo12+1"}) == "10.0.2"
    assert manifest_qemu({"qemu": "7.2.22"}) == "7.2.22"
    assert manifest_qemu({}) is None
    cell = expand(parse_spec({"axes": {"host": ["lab-x86_64"], "qemu": ["10.0->10.0"]}},
                             "t"))[0]
    assert qemu_problem(cell, "10.0.2") is None and qemu_problem(cell, None) is None
    assert "not 10.0" in (qemu_problem(cell, "10.1.0") or "")


def test_lab_timeout_bounds_every_run_of_the_boot() -> None:
    cells = expand(side_by_side())
    one = cells[0].options
    per_run = one.timeout + one.boot_timeout + one.hold_timeout + 120.0
    assert lab_timeout(cells[:1], 1) == 600.0 + per_run
    assert lab_timeout(cells[:2], 3) == 600.0 + 6 * per_run


# --- the lab job: the same spec, the same cells inside ---------------------------------------


def job_for(spec: MatrixSpec, host: str, tmp_path: Path) -> Path:
    cells = [c for c in expand(spec) if c.host == host]
    job = LabJob.model_validate({"host": host, "source": "preset t", "repeat": 2,
                                 "cells": [c.id for c in cells],
                                 "spec": spec.model_dump(mode="json", exclude_unset=True)})
    path = tmp_path / "job.json"
    path.write_text(job.model_dump_json())
    return path


def test_a_lab_job_expands_to_the_same_cells_inside(tmp_path: Path) -> None:
    spec = parse_spec({"options": {"ram": 64}, "axes": [
        {"accel": ["tcg", "kvm"], "host": ["local", "lab-x86_64"]},
        {"accel": ["tcg"], "tracking": ["bitmap"], "host": ["lab-x86_64"]}]}, "t")
    path = job_for(spec, "lab-x86_64", tmp_path)
    job, inner = load_lab_job(path, {"QMPCTL_LAB": "x86_64"})
    assert expand(inner) == expand(spec)  # unset fields stay unset: no TCG cell appears
    chosen = job_cells(job, expand(inner))
    assert [c.id for c in chosen] == [
        "x86_64-tcg-smp1-baremetal-precopy-system@lab-x86_64",
        "x86_64-kvm-ring4096-smp1-baremetal-precopy-system@lab-x86_64",
        "x86_64-tcg-bitmap-smp1-baremetal-precopy-system@lab-x86_64"]
    assert chosen[2].not_run is not None  # the collapsed TCG combination, as outside
    assert (job.repeat, job.source) == (2, "preset t")
    assert lab_argv(path, tmp_path / "r.json") == [
        "python3", "-m", "qmpctl", "matrix", "--lab-job", str(path), "--json",
        str(tmp_path / "r.json")]


def test_a_lab_job_runs_only_inside_its_lab(tmp_path: Path) -> None:
    path = job_for(side_by_side(), "lab-aarch64", tmp_path)
    for environ in ({}, {"QMPCTL_LAB": "x86_64"}):
        with pytest.raises(UsageError, match="runs host lab-aarch64's cells inside the "
                                             "aarch64 lab that `qmpctl matrix` boots"):
            load_lab_job(path, environ)
    job, spec = load_lab_job(path, {"QMPCTL_LAB": "aarch64"})
    with pytest.raises(UsageError, match="its spec has no cell nope"):
        job_cells(job.model_copy(update={"cells": ["nope"]}), expand(spec))
    with pytest.raises(UsageError, match=f"cell {RING} is not on host lab-aarch64"):
        job_cells(job.model_copy(update={"cells": [RING]}), expand(spec))
    local = job.model_copy(update={"host": "local"}).model_dump_json()
    (tmp_path / "local.json").write_text(local)
    with pytest.raises(UsageError, match="host local is not a lab"):
        load_lab_job(tmp_path / "local.json", {})
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UsageError, match="not a lab job"):
        load_lab_job(tmp_path / "bad.json", {})


def test_cli_lab_job_outside_a_lab_is_one_line_of_bad_input(tmp_path: Path) -> None:
    path = job_for(side_by_side(), "lab-x86_64", tmp_path)
    for args in (["--lab-job", str(path)], ["--lab-job", str(path), "--preset", "smoke"]):
        result = CliRunner().invoke(app, ["matrix", *args], env={"QMPCTL_LAB": ""})
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("qmpctl: --lab-job")


# --- back from the lab: progress lines and merging -------------------------------------------


def test_progress_lines_are_the_lab_matrix_per_run_lines() -> None:
    ids = {f"{RING}@lab-x86_64"}
    assert progress(f"{RING}@lab-x86_64 #2: MISMATCH (844 of 16384 pages differ)", ids) == (
        f"{RING}@lab-x86_64", 2, "mismatch")
    assert progress(f"{RING}@lab-x86_64 #1: MIGRATION-FAILED (QEMU: ...)", ids) == (
        f"{RING}@lab-x86_64", 1, "migration-failed")
    assert progress(f"{RING} #1: VERIFIED", ids) is None  # not one of the lab's cells
    assert progress("qmpctl matrix: t: 2 cells, 2 to run", ids) is None


def inner_report(cells: list[Cell], runs: dict[str, list[RunReport]],
                 refused: dict[str, str] | None = None) -> MatrixReport:
    """What a lab's qmpctl matrix writes for `cells`."""
    reasons = refused or {}
    state = MatrixState([c.refused(reasons[c.id]) if c.id in reasons else c for c in cells], 2,
                        here=cells[0].host)
    state.runs = {cid: [record(r, i) for i, r in enumerate(rs, 1)] for cid, rs in runs.items()}
    return state.report(["qmpctl", "matrix", "--lab-job", "j"], "t", HOST)


def test_merge_lab_takes_runs_and_the_labs_own_reasons() -> None:
    cells = [c for c in expand(side_by_side()) if c.host == "lab-x86_64"]
    inner = inner_report(cells[:1], {cells[0].id: [LOST, VERIFIED]})
    inner.cells.append(inner_report(cells[1:], {}, {
        cells[1].id: "qmpctl refuses it on this host: ring 4096 above this KVM's"}).cells[0])
    runs, refused = merge_lab(cells, inner, known=lambda cell: "tracking=ring")
    assert [(r.verdict, r.known_loss) for r in runs[cells[0].id]] == [
        ("mismatch", "tracking=ring"), ("verified", None)]
    assert refused == {cells[1].id: "in the lab-x86_64 lab: qmpctl refuses it on this host: "
                                    "ring 4096 above this KVM's"}
    _, missing = merge_lab(cells, inner_report(cells[:1], {}))
    assert missing[cells[1].id] == ("in the lab-x86_64 lab: its qmpctl matrix did not list "
                                    "this cell")


# --- the run loop with a scripted lab --------------------------------------------------------


def scripted_lab(answers: dict[str, tuple[list[str], MatrixReport | None]],
                 calls: list[tuple[str, list[str], int]],
                 during: Callable[[], None] = lambda: None) -> Any:
    """A LabFn: prints each host's console lines, then returns its report."""
    async def lab_fn(host: str, cells: list[Cell], repeat: int, write: Any) -> LabBatch:
        calls.append((host, [c.id for c in cells], repeat))
        lines, rep = answers[host]
        for line in lines:
            write(line + "\n")
        during()
        lab = LabRun(image=f"{host} image", accel="tcg", boot_s=8.0, command_s=60.0,
                     wall_s=75.0, exit_code=0 if rep is not None else None,
                     error=None if rep is not None else f"the {host} lab failed: no boot")
        return LabBatch(lab, rep)
    return lab_fn


async def run_side_by_side(lab_fails: bool = False) -> tuple[MatrixState, list[Any], list[Any]]:
    cells = expand(side_by_side())
    x86 = [c for c in cells if c.host == "lab-x86_64"]
    arm = [c for c in cells if c.host == "lab-aarch64"]
    x86_report = inner_report(x86, {x86[0].id: [LOST, VERIFIED], x86[1].id: [VERIFIED] * 2})
    arm_report = inner_report(arm, {arm[0].id: [VERIFIED] * 2})
    state = MatrixState(cells, 2, (parse_known_loss("host=local,tracking=ring"),))
    order: list[str] = []
    calls: list[tuple[str, list[str], int]] = []
    console: list[tuple[str, str]] = []
    live: list[list[str]] = []

    async def run_fn(opts: MigrateOptions, prog: Any) -> RunReport:
        order.append(f"local {opts.dirty_ring}")
        return LOST if opts.dirty_ring == 4096 else VERIFIED

    def during() -> None:  # the live table, before the lab's results are back
        live.append([f"{r.id}:{r.stats.runs}" for r in state.results()])

    lab_fn = scripted_lab({
        "lab-x86_64": ([f"{x86[0].id} #1: MISMATCH (844 pages)", f"{x86[0].id} #2: VERIFIED",
                        "some other console line"], None if lab_fails else x86_report),
        "lab-aarch64": ([f"{ARM} #1: VERIFIED", f"{ARM} #2: VERIFIED"], arm_report)},
        calls, during)
    await run_matrix(state, run_fn, lab_fn=lab_fn,
                     console=lambda host, line: console.append((host, line)))
    order += [f"lab {host}" for host, _, _ in calls]
    return state, [order, calls, live], console


async def test_each_lab_boots_once_for_all_its_cells_after_this_hosts() -> None:
    state, (order, calls, live), console = await run_side_by_side()
    assert order == ["local 4096", "local 4096", "local 0", "local 0",
                     "lab lab-x86_64", "lab lab-aarch64"]
    assert calls == [("lab-x86_64", [f"{RING}@lab-x86_64", f"{BITMAP}@lab-x86_64"], 2),
                     ("lab-aarch64", [ARM], 2)]
    assert ("lab-x86_64", "some other console line") in console
    # while the x86 lab ran, its console's verdicts showed as runs
    assert live[0] == [f"{RING}:2", f"{RING}@lab-x86_64:2", f"{BITMAP}:2",
                       f"{BITMAP}@lab-x86_64:0", f"{ARM}:0"]
    assert state.lab_seen == {} and state.current is None
    results = {r.id: r for r in state.results()}
    assert [r.verdict for r in results[f"{RING}@lab-x86_64"].runs] == ["mismatch", "verified"]
    # --known-loss host=local,tracking=ring: this host's ring only, not the lab's
    assert results[RING].runs[0].known_loss == "host=local,tracking=ring"
    assert results[f"{RING}@lab-x86_64"].runs[0].known_loss is None
    rep = state.report(["qmpctl"], "t", HOST)
    assert (rep.exit_code, rep.exit_reason) == (
        1, f"1 run(s) lost pages (not covered by --known-loss): {RING}@lab-x86_64 #1")
    hosts = {h.host: h for h in rep.hosts}
    assert list(hosts) == ["local", "lab-aarch64", "lab-x86_64"]
    assert (hosts["local"].stats.lost, hosts["local"].stats.n) == (2, 4)
    assert (hosts["lab-x86_64"].stats.lost, hosts["lab-x86_64"].stats.n) == (1, 4)
    assert hosts["lab-aarch64"].stats.loss_rate == 0.0 and hosts["local"].lab is None
    lab = hosts["lab-x86_64"].lab
    assert lab is not None and lab.image == "lab-x86_64 image" and lab.error is None


async def test_a_lab_that_fails_leaves_its_cells_without_runs_and_exits_3() -> None:
    state, _, _ = await run_side_by_side(lab_fails=True)
    rep = state.report(["qmpctl"], "t", HOST)
    x86 = [c for c in rep.cells if c.axes["host"] == "lab-x86_64"]
    assert all(not c.runs and c.status == "interrupted" for c in x86)
    assert rep.exit_code == 3
    assert rep.exit_reason.startswith("the lab-x86_64 lab failed")
    assert exit_code(rep.cells, True, ["lab-x86_64"])[0] == 130  # an interrupt still wins
    assert exit_code([], False, ["lab-x86_64"]) == (3, "the lab-x86_64 lab failed")
    cells = {c.id: c for c in rep.cells}
    assert cells[ARM].stats.verified == 2  # the other lab ran


async def test_lab_cells_need_a_lab_runner() -> None:
    with pytest.raises(ValueError, match="cells on lab-x86_64, lab-aarch64 need a lab_fn"):
        await run_matrix(MatrixState(expand(side_by_side()), 1))


# --- outputs ---------------------------------------------------------------------------------


@pytest.fixture
async def side_report() -> MatrixReport:
    state, _, _ = await run_side_by_side()
    return state.report(["qmpctl", "matrix"], "t", HOST)


def test_table_has_a_host_column_and_a_line_per_host(side_report: MatrixReport) -> None:
    console = Console(record=True, width=300)
    console.print(matrix_table(side_report.cells, side_report.repeat,
                               labs={h.host: h.lab for h in side_report.hosts if h.lab}))
    text = console.export_text()
    assert "┃ host " in text.splitlines()[2]
    assert re.search(f"{re.escape(RING)}@lab-x86_64 +│ lab-x86_64 +│  2/2 │", text)
    assert "per host (every run of its cells pooled):" in text
    assert ("  lab-x86_64: 2 of 2 cells run, 4 runs, 3 verified, 1 lost, 0 failed; loss rate "
            "1/4 25.0% [4.6%, 69.9%]; one lab boot: tcg, boot 8.0 s, its matrix 60 s, wall "
            "75 s") in text
    plain = Console(record=True, width=300)
    plain.print(matrix_table(side_report.cells[:1], 2))
    assert "per host" not in plain.export_text()  # local only: the table as before


def test_markdown_puts_each_host_beside_the_other(side_report: MatrixReport) -> None:
    lines = feature_table(side_report).splitlines()
    assert lines[:2] == ["| configuration | precopy |", "| --- | --- |"]
    assert lines[2:7] == [
        "| x86_64 ring 4096 1 vCPU local | 0/2, **2 lost** |",
        "| x86_64 ring 4096 1 vCPU lab-x86_64 | 1/2, **1 lost** |",
        "| x86_64 bitmap 1 vCPU local | 2/2 |",
        "| x86_64 bitmap 1 vCPU lab-x86_64 | 2/2 |",
        "| aarch64 ring 4096 2 vCPUs lab-aarch64 | 2/2 |"]
    assert lines[8:10] == ["| host | cells run | runs | verified | lost | loss rate [95% CI] "
                           "| lab |", "| --- | --- | --- | --- | --- | --- | --- |"]
    assert lines[10].startswith("| local | 2/2 | 4 | 2 | 2 | 2/4 50.0% [15.0%, 85.0%] |  |")
    assert lines[12].startswith("| lab-x86_64 | 2/2 | 4 | 3 | 1 | 1/4 25.0%")


def test_junit_groups_lab_runs_and_names_a_failed_lab(side_report: MatrixReport) -> None:
    suite = junit_tree(side_report).getroot().find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert props["host lab-x86_64"] == "4 runs, 3 verified, 1 lost; loss rate 1/4 25.0% " \
                                       "[4.6%, 69.9%]"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases[f"{RING} #1"].get("classname") == "qmpctl.matrix"
    assert cases[f"{RING}@lab-x86_64 #1"].get("classname") == "qmpctl.matrix.lab-x86_64"
    host = {p.get("name"): p.get("value")
            for p in cases[f"{RING}@lab-x86_64 #1"].iter("property")}
    assert host["axis_host"] == "lab-x86_64"
    failed = side_report.model_copy(update={"hosts": [
        h if h.host != "lab-aarch64" else h.model_copy(update={"lab": LabRun(
            error="the lab-aarch64 lab failed: did not boot\n  console")})
        for h in side_report.hosts]})
    suite = junit_tree(failed).getroot().find("testsuite")
    assert suite is not None
    lab = next(c for c in suite.iter("testcase") if c.get("name") == "lab-aarch64 lab")
    error = lab.find("error")
    assert error is not None and error.get("message") == ("the lab-aarch64 lab failed: did not "
                                                          "boot")
    assert suite.get("errors") == "1"


def test_json_and_plot_carry_the_hosts(side_report: MatrixReport, tmp_path: Path) -> None:
    data = json.loads(side_report.model_dump_json())
    assert data["schema_version"] == 3
    assert [h["host"] for h in data["hosts"]] == ["local", "lab-aarch64", "lab-x86_64"]
    assert data["hosts"][2]["lab"]["boot_s"] == 8.0
    assert data["cells"][1]["axes"]["host"] == "lab-x86_64"
    assert MatrixReport.model_validate(data) == side_report
    old = {k: v for k, v in data.items() if k != "hosts"} | {"schema_version": 1}
    assert [h.host for h in host_results(MatrixReport.model_validate(old).cells)] == [
        "local", "lab-aarch64", "lab-x86_64"]  # a file from before still reads
    png = tmp_path / "m.png"
    plot_matrix(side_report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("live", [True, False])
async def test_cli_shows_a_lab_hosts_progress(monkeypatch: pytest.MonkeyPatch,
                                              live: bool) -> None:
    """Under a live table (a terminal) and as one line per run (a CI log)."""
    import io

    from qmpctl import cli

    stream = io.StringIO()
    monkeypatch.setattr(cli, "err", Console(file=stream, force_terminal=live, width=250))
    cells = expand(side_by_side())
    state = MatrixState(cells, 2)
    x86 = [c for c in cells if c.host == "lab-x86_64"]
    arm = [c for c in cells if c.host == "lab-aarch64"]
    calls: list[tuple[str, list[str], int]] = []
    lab_fn = scripted_lab({
        "lab-x86_64": ([f"{x86[0].id} #1: VERIFIED"],
                       inner_report(x86, {c.id: [VERIFIED] * 2 for c in x86})),
        "lab-aarch64": ([f"{ARM} #1: VERIFIED"], inner_report(arm, {ARM: [VERIFIED] * 2}))},
        calls)

    async def run_fn(opts: MigrateOptions, prog: Any) -> RunReport:
        return VERIFIED

    await cli._matrix(state, live=live, executor=LocalExecutor(lab_fn, run_fn))
    text = stream.getvalue()
    assert [h for h, _, _ in calls] == ["lab-x86_64", "lab-aarch64"]
    assert all(len(state.runs[c.id]) == 2 for c in cells)
    if live:
        assert "per host (every run of its cells pooled):" in text  # the live table's lines
    else:
        assert f"[lab-x86_64] {x86[0].id} #1: VERIFIED" in text
        assert f"{RING} #2: VERIFIED" in text and f"{RING}@lab-x86_64 #2" not in text
