"""End-to-end: `qmpctl repro` on real runs, and the reproducer run on its own
by a Python that cannot import qmpctl (`-I -S`: no site-packages, only a
directory holding qemu.qmp), against real QEMUs.

In CI: the isolation check and TCG, where the mismatch is a `--fault
corrupt-dst` the reproducer replays (~10 s). Not in CI (QMPCTL_LONG_TESTS=1),
on this host's kvm_pvm ring overflow: qmpctl runs until one loses (at most
QMPCTL_RUNS; skipped, saying so, if none does), then the reproducer until one
loses (at most REPRO_RUNS), both rates compared by Fisher's exact test; and a
10 + 10 rate comparison. Each KVM run takes ~10 s (5.6 s of it the guest's
boot) and the host lost pages in 1 of 10, 0 of 6 and 1 of 2 qmpctl runs on
2026-12-02: a test that needs a loss on both sides takes minutes, and within
any CI-sized bound it would fail without a regression."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import qemu.qmp

from qmpctl.matrix.stats import cell_stats, fisher_exact, rate_text
from qmpctl.repro.inputs import load_runs

pytestmark = pytest.mark.qemu

ROOT = Path(__file__).resolve().parents[2]
RING_LOSS = ["--accel", "kvm", "--dirty-ring", "4096", "--wave-end", "34"]  # README's
QMPCTL_RUNS, REPRO_RUNS = 10, 10
# Runs the script given as the first argument with only the stdlib and SITE.
BOOT = ("import runpy, sys; sys.path.insert(0, sys.argv[1]); del sys.argv[:2]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')")


def qmpctl(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "qmpctl", *args], capture_output=True,
                          text=True, env=env, timeout=900)


def qmp_only_site(tmp_path: Path) -> Path:
    """A directory on whose own qemu.qmp is importable, and nothing else of ours."""
    site = tmp_path / "site"
    (site / "qemu").mkdir(parents=True)
    (site / "qemu" / "qmp").symlink_to(Path(qemu.qmp.__file__).parent)
    return site


def isolated(site: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -I -S`: no site-packages, no PYTHONPATH, no script directory."""
    return subprocess.run([sys.executable, "-I", "-S", "-c", BOOT, str(site), *argv],
                          capture_output=True, text=True, cwd=cwd, timeout=900,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})


def test_qmpctl_is_not_importable_where_the_reproducer_runs(tmp_path: Path) -> None:
    site = qmp_only_site(tmp_path)
    probe = tmp_path / "probe.py"
    probe.write_text("import qemu.qmp\ntry:\n    import qmpctl\nexcept ImportError:\n"
                     "    print('no qmpctl')\nelse:\n    print('qmpctl', qmpctl.__file__)\n")
    res = isolated(site, str(probe), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "no qmpctl"


def reproduce(site: Path, repro: Path, runs: int, cwd: Path) -> tuple[int, int]:
    """Run the reproducer `runs` times (one process each, stopping at the first
    loss); (lost, compared)."""
    lost = compared = 0
    for _ in range(runs):
        res = isolated(site, str(repro / "repro.py"), "--runs", "1", cwd=cwd)
        found = re.search(r"^RESULT lost=(\d+) compared=(\d+) runs=1$", res.stdout, re.M)
        assert found, f"exit {res.returncode}: {res.stdout[-2000:]} {res.stderr[-2000:]}"
        assert "ModuleNotFoundError" not in res.stderr, res.stderr
        assert res.returncode == (1 if found[1] == "1" else 0 if found[2] == "1" else 3)
        lost, compared = lost + int(found[1]), compared + int(found[2])
        if lost:
            break
    return lost, compared


def test_a_tcg_fault_reproduces_without_qmpctl(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    res = qmpctl("migrate", "--accel", "tcg", "--ram", "64", "--wave-end", "18",
                 "--fault", "corrupt-dst=0x500000", "--artifacts", str(runs))
    assert res.returncode == 1, res.stderr
    assert (runs / "report.json").is_file()
    out = tmp_path / "repro"
    res = qmpctl("repro", str(runs), "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert "(1 pages lost)" in res.stdout
    bug = (out / "BUG.md").read_text()
    assert "corrupt-dst=0x500000" in bug and "TCG's own dirty tracking" in bug
    site = qmp_only_site(tmp_path)
    res = isolated(site, str(out / "repro.py"), cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "page gpa 0x500000 (file offset 0x500000): byte +0x0" in res.stdout
    assert "RESULT lost=1 compared=1 runs=1" in res.stdout
    # The same RAM comparison as qmpctl's: one page, the one corrupted.
    assert "\n1 pages differ\n" in res.stdout
    # A verified run's report is refused, exit 2, before anything is written.
    ok = tmp_path / "ok"
    res = qmpctl("migrate", "--accel", "tcg", "--ram", "64", "--wave-end", "18",
                 "--artifacts", str(ok))
    assert res.returncode == 0, res.stderr
    res = qmpctl("repro", str(ok), "-o", str(tmp_path / "none"))
    assert res.returncode == 2
    assert "the run verified: no page was lost, there is nothing to reproduce" in res.stderr
    assert not (tmp_path / "none").exists()


def loss_runs(runs: Path, bound: int) -> None:
    """qmpctl's ring-loss command, one run directory each, until one loses."""
    for i in range(1, bound + 1):
        res = qmpctl("migrate", *RING_LOSS, "--artifacts", str(runs / f"run-{i}"))
        assert (runs / f"run-{i}" / "report.json").is_file(), res.stderr
        if res.returncode == 1:
            return


# KVM ring-loss runs until both sides lose: minutes here
LONG = pytest.mark.long


@LONG
@pytest.mark.qmpctl_kvm(ring=True)
def test_a_kvm_ring_loss_reproduces_without_qmpctl(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    loss_runs(runs, QMPCTL_RUNS)
    ours = cell_stats(r.report.verdict for r in load_runs([runs]))
    if not ours.lost:
        pytest.skip(f"no qmpctl run lost pages here: {rate_text(ours)}; nothing to reproduce")
    out = tmp_path / "repro"
    res = qmpctl("repro", str(runs), "-o", str(out))
    assert res.returncode == 0, res.stderr
    bug = (out / "BUG.md").read_text()
    assert "the KVM dirty ring (4096 entries)" in bug and "(KVM: pvm)" in bug
    assert f"loss rate **{rate_text(ours)}**" in bug
    lost, compared = reproduce(qmp_only_site(tmp_path), out, REPRO_RUNS, tmp_path)
    assert lost >= 1, f"the reproducer lost no page in {compared} compared runs"
    p = fisher_exact(ours.lost, ours.n, lost, compared)
    print(f"qmpctl {rate_text(ours)}; reproducer {lost}/{compared}; Fisher p = {p:.3g}")
    assert p > 0.01, (f"qmpctl {ours.lost}/{ours.n} against the reproducer {lost}/{compared}: "
                      f"Fisher p = {p:.3g}")


@LONG
@pytest.mark.qmpctl_kvm(ring=True)
def test_the_reproducers_loss_rate_matches_qmpctls(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    res = qmpctl("migrate", *RING_LOSS, "--repeat", "10", "--artifacts", str(runs))
    ours = cell_stats(r.report.verdict for r in load_runs([runs]))
    if not ours.lost:
        pytest.skip(f"no qmpctl run lost pages here: {rate_text(ours)}")
    out = tmp_path / "repro"
    assert qmpctl("repro", str(runs), "-o", str(out)).returncode == 0
    res = isolated(qmp_only_site(tmp_path), str(out / "repro.py"), "--runs", "10",
                   cwd=tmp_path)
    found = re.search(r"^RESULT lost=(\d+) compared=(\d+) runs=10$", res.stdout, re.M)
    assert found, res.stdout[-2000:] + res.stderr[-2000:]
    lost, compared = int(found[1]), int(found[2])
    p = fisher_exact(ours.lost, ours.n, lost, compared)
    print(f"qmpctl {rate_text(ours)}; reproducer "
          f"{rate_text(cell_stats(['mismatch'] * lost + ['verified'] * (compared - lost)))}; "
          f"Fisher p = {p:.3g}")
    assert lost >= 1 and p > 0.05
