"""`qmpctl matrix` with real QEMU: the CLI over two TCG cells writing JSON,
JUnit and a plot; a smoke cell run through the pytest helper, as a suite
would write it; and the host axis: a cell here and a cell in the arm64 lab
(one lab boot), side by side in one matrix."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qmpctl.cli import app
from qmpctl.lab.suite import lab_available
from qmpctl.matrix.cells import Cell
from qmpctl.pytest_plugin import qmpctl_matrix_cells
from qmpctl.testing import MigrateFn, assert_verified
from tests.conftest import our_qemu_processes

pytestmark = pytest.mark.qemu

AXES = """
repeat = 1
[options]
ram = 64
wave_end = 18
timeout = 120.0
[axes]
accel = ["tcg"]
feature = ["precopy", "postcopy"]
"""
IDS = ["x86_64-tcg-smp1-baremetal-precopy-system", "x86_64-tcg-smp1-baremetal-postcopy-system"]


def test_matrix_cli_writes_json_junit_and_plot(tmp_path: Path) -> None:
    axes, out = tmp_path / "axes.toml", tmp_path / "out"
    axes.write_text(AXES)
    out.mkdir()
    files = {"--json": out / "m.json", "--junit": out / "m.xml", "--plot": out / "m.png"}
    result = CliRunner().invoke(app, ["matrix", "--axes", str(axes),
                                      *[a for k, p in files.items() for a in (k, str(p))]])
    assert our_qemu_processes() == []
    data = json.loads(files["--json"].read_text())
    assert [c["id"] for c in data["cells"]] == IDS
    runs = [(c["id"], r) for c in data["cells"] for r in c["runs"]]
    assert [(cid, r["repeat"]) for cid, r in runs] == [(IDS[0], 1), (IDS[1], 1)]
    assert data["command"][:4] == ["qmpctl", "matrix", "--axes", str(axes)]
    assert data["exit_code"] == result.exit_code, result.output
    assert files["--plot"].read_bytes()[:4] == b"\x89PNG"

    suite = ET.parse(files["--junit"]).getroot().find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == [f"{IDS[0]} #1", f"{IDS[1]} #1"]
    for cid, run in runs:  # JUnit says what each run's report says
        case = cases[f"{cid} #1"]
        outcome = [child for child in case if child.tag != "properties"]
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert props["verdict"] == run["verdict"]
        if run["verdict"] == "verified":
            assert outcome == [] and run["pages_differing"] == 0 and run["exit_code"] == 0
        else:
            assert len(outcome) == 1 and outcome[0].get("type") == run["verdict"]
            assert run["verdict"] in (outcome[0].get("message") or "")
    if all(r["verdict"] == "verified" for _, r in runs):
        assert result.exit_code == 0, result.output
        assert suite.get("failures") == "0" and suite.get("errors") == "0"
        for cell in data["cells"]:
            assert cell["stats"]["loss_rate"] == 0.0
            assert cell["stats"]["loss_ci95"] == pytest.approx([0.0, 0.7935], abs=1e-4)
        assert "exit 0: every run verified" in result.output
    for cell_id in IDS:
        assert cell_id in result.output  # the final table


@pytest.mark.parametrize(
    "cell", qmpctl_matrix_cells("smoke", cell=r"^x86_64-tcg-smp1-baremetal-precopy-10\.0->"),
    ids=str)
async def test_a_smoke_cell_through_the_plugin(qmpctl_migrate: MigrateFn, cell: Cell) -> None:
    report = await qmpctl_migrate(**cell.kwargs)
    assert_verified(report)
    assert report.config is not None and report.config.accel == "tcg"
    assert report.config.qemu_src_version.startswith("10.0.")


HOSTS_AXES = AXES.split("[axes]")[0] + """
[[axes]]
accel = ["tcg"]

[[axes]]
arch = ["aarch64"]
accel = ["kvm"]
host = ["lab-aarch64"]
"""
LOCAL_ID = IDS[0]
LAB_ID = "aarch64-kvm-ring4096-smp2-baremetal-precopy-system@lab-aarch64"


@pytest.mark.skipif((why := lab_available("aarch64")) is not None,
                    reason=f"no aarch64 lab here: {why}")
def test_matrix_runs_a_local_cell_and_a_lab_cell_in_one_lab_boot(tmp_path: Path) -> None:
    """A TCG cell on this host and an arm64 KVM cell in the arm64 lab: the lab
    boots once, its matrix's progress streams back, its JSON is merged."""
    axes, out = tmp_path / "axes.toml", tmp_path / "m.json"
    axes.write_text(HOSTS_AXES)
    proc = subprocess.run([sys.executable, "-m", "qmpctl", "matrix", "--axes", str(axes),
                           "--json", str(out), "--markdown", str(tmp_path / "m.md")],
                          capture_output=True, text=True, timeout=900)
    assert our_qemu_processes() == []
    assert "2 to run (1 in one boot of the lab-aarch64 lab)" in proc.stderr, proc.stderr
    assert proc.stderr.count("[lab-aarch64] qmpctl matrix: ") == 1  # one boot
    data = json.loads(out.read_text())
    assert data["exit_code"] == proc.returncode, proc.stderr
    cells = {c["id"]: c for c in data["cells"]}
    assert list(cells) == [LOCAL_ID, LAB_ID]
    assert cells[LAB_ID]["axes"]["host"] == "lab-aarch64"
    assert cells[LAB_ID]["options"]["arch"] == "aarch64"
    for cell in cells.values():
        assert cell["status"] == "run" and len(cell["runs"]) == 1, cell
    lab_run = cells[LAB_ID]["runs"][0]
    # the lab's console announced the run the merged JSON holds
    seen = re.search(rf"\[lab-aarch64\] {re.escape(LAB_ID)} #1: ([A-Z-]+)", proc.stderr)
    assert seen is not None and seen[1].lower() == lab_run["verdict"], proc.stderr
    hosts = {h["host"]: h for h in data["hosts"]}
    assert list(hosts) == ["local", "lab-aarch64"]
    lab = hosts["lab-aarch64"]["lab"]
    assert lab["error"] is None and lab["exit_code"] == lab_run["exit_code"]  # its one run
    assert lab["boot_s"] > 0 and lab["command_s"] > 0 and lab["wall_s"] > lab["command_s"]
    assert "cloud-arm64" in lab["machine"]["kernel"]  # the lab's own description
    assert hosts["lab-aarch64"]["stats"]["runs"] == 1
    assert "| local | 1/1 | 1 |" in (tmp_path / "m.md").read_text()
    if all(c["runs"][0]["verdict"] == "verified" for c in cells.values()):
        assert proc.returncode == 0 and lab_run["pages_differing"] == 0
        assert "per host (every run of its cells pooled):" in proc.stdout
