"""The fleet with real processes: a `qmpctl scheduler` and three `qmpctl
worker`s, each in its own network namespace acting as a host (one LAN,
192.0.2.0/24, host.netns.NetnsStar), declaring different resources, and
`qmpctl matrix --scheduler` as the controller in the scheduler's namespace.
The cells are the cheapest TCG ones (the smoke preset's small guest).

Bounds stated here: the scheduler removes a worker it has not heard from for
--worker-ttl 5 s; a matrix whose worker's link is cut finishes within
LINK_CUT_BOUND_S of the cut (5 s to notice, the re-run, margin for a shared
2-core machine)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from qmpctl.host.netns import NetnsStar, host_problem, list_namespaces
from qmpctl.qemu.rundir import RunDir

pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(host_problem() is not None,
                                 reason=f"netns: {host_problem()}")]

PORT = 8786
WORKER_TTL_S = 5
LINK_CUT_BOUND_S = 60.0
START_S = 60.0  # a server's start (importing dask on a busy machine)
MATRIX_S = 240.0
SMALL = 'repeat = 1\n[options]\nram = 64\nwave_end = 18\ntimeout = 120.0\n'
TCG = SMALL + '[[axes]]\naccel = ["tcg"]\n'
# What each host withholds: h2 has no QEMU 7.2, h3 no QEMU 10.0 (the system
# one), so the 7.2->10.0 cells can run on h1 only.
WITHOUT = {1: [], 2: ["qemu-x86_64-7.2", "qemu-x86_64-7.2.22"],
           3: ["qemu-x86_64-10.0", "qemu-x86_64-10.0.2"]}
NEEDS_72_AND_10 = {1}


def qmpctl(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-m", "qmpctl", *args]


def server(argv: list[str], log: Path) -> subprocess.Popen[str]:
    """A server whose output goes to `log` (a pipe nobody reads would fill)."""
    with log.open("w") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True)


def started(proc: subprocess.Popen[str], log: Path, what: str) -> None:
    """Wait for a server's `listening at` line."""
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline and proc.poll() is None:
        if "listening at" in log.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not start: {log.read_text()[-2000:]}")


def qemus_under(pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True)
                if p.name().startswith("qemu-system")]
    except psutil.NoSuchProcess:
        return []


@dataclass
class Fleet:
    star: NetnsStar
    tmp: Path
    scheduler: subprocess.Popen[str] | None = None
    workers: dict[int, subprocess.Popen[str]] = field(default_factory=dict)
    allowed_failures: int = 3

    @property
    def address(self) -> str:
        return f"tcp://{self.star.hub_addr}:{PORT}"

    def start(self) -> None:
        self.scheduler = server(
            qmpctl(self.star.hub, "scheduler", "--listen", f"{self.star.hub_addr}:{PORT}",
                   "--worker-ttl", str(WORKER_TTL_S), "--allowed-failures",
                   str(self.allowed_failures)), self.tmp / "scheduler.log")
        for i in range(1, self.star.hosts + 1):  # they retry until the scheduler listens
            without = WITHOUT[i]
            self.workers[i] = server(
                qmpctl(self.star.host(i), "worker", "--scheduler", self.address,
                       "--listen", self.star.address(i), "--name", f"h{i}",
                       "--death-timeout", "15", *[a for w in without for a in ("--without", w)]),
                self.tmp / f"h{i}.log")
        started(self.scheduler, self.tmp / "scheduler.log", "qmpctl scheduler")
        for i, proc in self.workers.items():
            started(proc, self.tmp / f"h{i}.log", f"qmpctl worker h{i}")

    def matrix(self, axes: str, *args: str, json_name: str = "m.json",
               ) -> subprocess.Popen[str]:
        spec = self.tmp / "axes.toml"
        spec.write_text(axes)
        return subprocess.Popen(
            qmpctl(self.star.hub, "matrix", "--scheduler", self.address, "--axes", str(spec),
                   "--json", str(self.tmp / json_name), "--workers", str(self.star.hosts),
                   "--workers-timeout", "30", *args),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def result(self, json_name: str = "m.json") -> dict[str, object]:
        return json.loads((self.tmp / json_name).read_text())  # type: ignore[no-any-return]

    def worker_with_qemu(self, timeout: float = 60.0) -> tuple[int, list[psutil.Process]]:
        """The first worker seen running a migration, and its QEMUs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, proc in self.workers.items():
                if proc.poll() is None and len(found := qemus_under(proc.pid)) >= 2:
                    return i, found
            time.sleep(0.05)
        raise AssertionError(f"no worker ran QEMU within {timeout} s")

    def stop(self) -> None:
        procs = [*self.workers.values(), *([self.scheduler] if self.scheduler else [])]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    # Named after a real run directory, so a concurrent qmpctl does not sweep it.
    with RunDir.create() as run_dir:
        allowed_failures, hosts = getattr(request, "param", (3, 3))
        star = NetnsStar(run_dir.path.name, hosts=hosts)
        fl = Fleet(star, tmp_path, allowed_failures=allowed_failures)
        try:
            star.create()
            fl.start()
            yield fl
        finally:
            pids = [p.pid for p in fl.workers.values()]
            fl.stop()
            star.delete()
        # no QEMU of any worker outlives the fleet, no namespace is left
        for pid in pids:
            assert not qemus_under(pid)
        assert not set(star.names) & set(list_namespaces())


def finish(proc: subprocess.Popen[str], timeout: float = MATRIX_S) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def cells_of(result: dict[str, object]) -> dict[str, dict[str, object]]:
    return {c["id"]: c for c in result["cells"]}  # type: ignore[attr-defined,index]


def test_a_matrix_spreads_and_each_cell_runs_where_its_resources_are(fleet: Fleet) -> None:
    """And a cell nobody can run is unschedulable at once, naming what it needs."""
    axes = (TCG + 'feature = ["precopy", "xbzrle"]\nqemu = ["10.0->10.0", "7.2->10.0"]\n'
            + '[[axes]]\narch = ["aarch64"]\naccel = ["kvm"]\ntracking = ["bitmap"]\n')
    t0 = time.monotonic()
    code, out = finish(fleet.matrix(axes))
    assert code == 0, out
    result = fleet.result()
    cells = cells_of(result)
    ran = {cid: c for cid, c in cells.items() if c["status"] == "run"}
    assert len(ran) == 4, out
    workers_used = set()
    for cid, cell in ran.items():
        runs = cell["runs"]
        assert len(runs) == 1 and runs[0]["verdict"] == "verified", (cid, runs)
        worker = runs[0]["worker"]
        workers_used.add(worker)
        if "7.2->10.0" in cid:
            assert int(worker[1:]) in NEEDS_72_AND_10, (cid, worker)
        else:
            assert worker in {"h1", "h2"}, (cid, worker)  # h3 withholds QEMU 10.0
    assert len(workers_used) >= 2, f"all four runs on {workers_used}"
    # nobody has aarch64 KVM: unschedulable at once, naming what it needs
    arm = cells["aarch64-kvm-bitmap-smp2-baremetal-precopy-system"]
    assert arm["status"] == "not-run" and "unschedulable" in arm["not_run"]
    assert "aarch64-kvm" in arm["not_run"], arm["not_run"]
    # each run says which host ran it, with the host's facts; per-host rates
    fleet_part = result["fleet"]
    names = {w["name"] for w in fleet_part["workers"]}
    assert {"h1", "h2", "h3"} <= names
    machine = fleet_part["workers"][0]["machine"]
    assert machine["kernel"] and machine["kvm"]["flavour"] and machine["qemu"]["x86_64"]
    assert sum(h["stats"]["runs"] for h in fleet_part["hosts"]) == 4
    assert time.monotonic() - t0 < MATRIX_S
    # the pytest plugin on the same fleet (--qmpctl-scheduler)
    plugin_on_the_fleet(fleet)
    # a matrix of nothing but that cell: exit 3 at once, no hang
    t0 = time.monotonic()
    only = SMALL + '[[axes]]\narch = ["aarch64"]\naccel = ["kvm"]\ntracking = ["bitmap"]\n'
    code, out = finish(fleet.matrix(only, json_name="only.json"), timeout=60)
    assert code == 3, out
    assert "unschedulable: no worker has all of aarch64-kvm" in out
    assert time.monotonic() - t0 < 60


INNER_TESTS = """
import pytest
from qmpctl.scenario.hooks import Hooks

async def test_on_a_worker(qmpctl_migrate):
    report = await qmpctl_migrate(accel="tcg", ram=64, wave_end=18, timeout=120.0,
                                  qemu_src="7.2", qemu_dst="10.0")
    assert report.verdict == "verified"
    assert False, "failed on purpose: its artifacts come back"

async def test_hooks_stay_here(qmpctl_migrate):
    await qmpctl_migrate(accel="tcg", hooks=Hooks())

@pytest.mark.qmpctl_kvm(arch="aarch64")
async def test_nobody_has_it(qmpctl_migrate):
    await qmpctl_migrate(arch="aarch64", accel="kvm")
"""


def plugin_on_the_fleet(fleet: Fleet) -> None:
    """`--qmpctl-scheduler`: each qmpctl_migrate call on a worker that has what
    it needs (QEMU 7.2 and 10.0: h1 only), a failed test's artifacts back here,
    hooks and a run nobody can take refused by name."""
    inner = fleet.tmp / "inner"
    inner.mkdir()
    (inner / "test_inner.py").write_text(INNER_TESTS)
    junit, art = inner / "junit.xml", inner / "artifacts"
    done = subprocess.run(
        ["ip", "netns", "exec", fleet.star.hub, sys.executable, "-m", "pytest",
         "test_inner.py", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
         "--qmpctl-scheduler", fleet.address, "--qmpctl-artifacts", str(art),
         f"--junitxml={junit}", "-o", "junit_family=xunit1"],
        cwd=inner, capture_output=True, text=True, timeout=MATRIX_S)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "failed on purpose: its artifacts come back" in out
    assert "hooks= run in the test's process" in out
    assert "unschedulable: no worker has all of aarch64-kvm" in out
    assert 'name="qmpctl_worker" value="h1"' in junit.read_text()
    assert 'name="qmpctl_verdict" value="verified"' in junit.read_text()
    run1 = next(art.glob("*test_on_a_worker*")) / "run-1"
    kept = {p.name for p in run1.iterdir()}
    assert "report.json" in kept and len(kept) > 1, kept  # the worker's logs came back


def test_a_killed_worker_s_cell_reruns_elsewhere_counted_once(fleet: Fleet) -> None:
    proc = fleet.matrix(TCG + 'feature = ["precopy"]\n', "--repeat", "2")
    victim, qemus = fleet.worker_with_qemu()
    fleet.workers[victim].send_signal(signal.SIGKILL)
    fleet.workers[victim].wait()
    # its QEMUs die with it (PR_SET_PDEATHSIG), at once
    _, alive = psutil.wait_procs(qemus, timeout=10)
    assert not alive, f"QEMU outlived its killed worker: {alive}"
    code, out = finish(proc)
    assert code == 0, out
    cell = cells_of(fleet.result())["x86_64-tcg-smp1-baremetal-precopy-system"]
    assert [r["repeat"] for r in cell["runs"]] == [1, 2], cell["runs"]
    assert all(r["verdict"] == "verified" for r in cell["runs"])
    events = fleet.result()["fleet"]["events"]
    assert any(e["kind"] == "worker-left" and e["worker"] == f"h{victim}" for e in events)
    lost = [e for e in events if e["kind"] == "attempt-lost" and e["worker"] == f"h{victim}"]
    assert len(lost) == 1, events
    # the lost repeat ran again on another worker, and its run is the only one counted
    rerun = cell["runs"][lost[0]["repeat"] - 1]
    assert rerun["worker"] != f"h{victim}", (rerun, events)


# the scheduler allows no failure; one host is enough
@pytest.mark.parametrize("fleet", [(0, 1)], indirect=True)
def test_a_repeat_whose_attempts_all_die_is_reported_as_such(fleet: Fleet) -> None:
    proc = fleet.matrix(TCG + 'feature = ["precopy"]\n')
    victim, qemus = fleet.worker_with_qemu()
    fleet.workers[victim].send_signal(signal.SIGKILL)
    fleet.workers[victim].wait()
    code, out = finish(proc)
    assert code == 3, out  # an environment error, never a verdict
    cell = cells_of(fleet.result())["x86_64-tcg-smp1-baremetal-precopy-system"]
    assert cell["status"] == "infrastructure" and cell["runs"] == [], cell
    assert "every attempt died with its worker" in cell["infrastructure"]
    events = fleet.result()["fleet"]["events"]
    assert [e["repeat"] for e in events if e["kind"] == "gave-up"] == [1], events
    _, alive = psutil.wait_procs(qemus, timeout=10)
    assert not alive


def test_a_cut_link_finishes_on_the_others_within_the_bound(fleet: Fleet) -> None:
    proc = fleet.matrix(TCG + 'feature = ["precopy"]\n', "--repeat", "2")
    victim, _ = fleet.worker_with_qemu()
    fleet.star.link(victim, up=False)
    cut = time.monotonic()
    code, out = finish(proc, timeout=LINK_CUT_BOUND_S)
    took = time.monotonic() - cut
    assert code == 0, out
    assert took < LINK_CUT_BOUND_S
    result = fleet.result()
    cell = cells_of(result)["x86_64-tcg-smp1-baremetal-precopy-system"]
    assert [r["repeat"] for r in cell["runs"]] == [1, 2]
    events = result["fleet"]["events"]
    assert any(e["kind"] == "worker-left" and e["worker"] == f"h{victim}" for e in events), \
        events
    print(f"link cut: the matrix finished {took:.1f} s after the cut")


def test_resume_after_killing_the_controller_runs_only_unfinished_tasks(fleet: Fleet) -> None:
    axes = TCG + 'feature = ["precopy"]\n'
    journal = fleet.tmp / "m.json.journal"
    proc = fleet.matrix(axes, "--repeat", "3")
    deadline = time.monotonic() + MATRIX_S
    while time.monotonic() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.kill()  # SIGKILL: the controller writes nothing more
    proc.communicate()
    before = journal.read_text().splitlines()
    finished = len(before) - 1
    assert 1 <= finished < 3, before
    code, out = finish(fleet.matrix(axes, "--repeat", "3", "--resume"))
    assert code == 0, out
    after = journal.read_text().splitlines()
    assert after[:len(before)] == before
    done = [json.loads(line)["outcome"] for line in after[1:]]
    assert sorted(d["repeat"] for d in done) == [1, 2, 3]  # none twice: only the rest ran
    cell = cells_of(fleet.result())["x86_64-tcg-smp1-baremetal-precopy-system"]
    assert [r["repeat"] for r in cell["runs"]] == [1, 2, 3]
    # resuming a finished matrix runs nothing and reports the same
    code, out = finish(fleet.matrix(axes, "--repeat", "3", "--resume"), timeout=60)
    assert code == 0, out
    assert journal.read_text().splitlines() == after
    assert [r["repeat"] for r in cells_of(fleet.result())[
        "x86_64-tcg-smp1-baremetal-precopy-system"]["runs"]] == [1, 2, 3]
    # a different matrix cannot resume this journal
    code, out = finish(fleet.matrix(axes, "--repeat", "2", "--resume"), timeout=60)
    assert code == 2 and "journal of another matrix" in out, out


def test_cluster_local_gives_the_same_table_as_a_local_run(tmp_path: Path) -> None:
    spec = tmp_path / "axes.toml"
    spec.write_text(TCG + 'feature = ["precopy", "postcopy"]\n'
                    + '[[axes]]\narch = ["aarch64"]\naccel = ["kvm"]\n')
    runs = {}
    for name, extra in (("local", []), ("cluster", ["--cluster", "local"])):
        out = tmp_path / f"{name}.json"
        done = subprocess.run([sys.executable, "-m", "qmpctl", "matrix", "--axes", str(spec),
                               "--json", str(out), *extra], capture_output=True, text=True,
                              timeout=MATRIX_S, env=os.environ)
        assert done.returncode == 0, done.stderr
        runs[name] = json.loads(out.read_text())
    def table(result: dict[str, object]) -> list[tuple[object, ...]]:
        return [(c["id"], c["status"], c["stats"]["runs"], c["stats"]["verified"],
                 c["stats"]["lost"], c["stats"]["failed"], c["not_run"] is not None)
                for c in result["cells"]]  # type: ignore[attr-defined]
    assert table(runs["local"]) == table(runs["cluster"])
    with contextlib.suppress(KeyError):
        assert runs["local"]["fleet"] is None
    assert runs["cluster"]["fleet"]["hosts"][0]["stats"]["runs"] == 2


GUARD_CLIENT = """
import asyncio, json, os, sys
from distributed import Client
from distributed.security import Security
from qmpctl.fleet.task import CellTask, run_cell

async def main(address, ca, cert, key):
    sec = Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key,
                   require_encryption=True)
    async with Client(address, asynchronous=True, security=sec, timeout=30) as c:
        await c.wait_for_workers(1, timeout=30)
        out = json.loads(await c.submit(run_cell, CellTask(
            cell="c", repeat=1, options={"ram": 1}).model_dump_json(), pure=False))
        print("cell", out["worker"], out["record"]["verdict"])
        for what, call in (("task", lambda: c.submit(os.getpid, pure=False)),
                           ("run", lambda: c.run(os.getpid)),
                           ("run_on_scheduler", lambda: c.run_on_scheduler(os.getpid))):
            try:
                print(what, "ran", await call())
            except Exception as exc:
                print(what, "refused", type(exc).__name__, str(exc)[:120])

asyncio.run(main(*sys.argv[1:]))
"""


def test_tls_and_the_guard(tmp_path: Path) -> None:
    """Mutual TLS with the user's certificates; a client without one is not
    let in; a certified client's other code is refused by worker and scheduler."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=fleet", "-keyout",
            "fleet.key", "-out", "fleet.csr")
    openssl("x509", "-req", "-in", "fleet.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-out", "fleet.pem")
    tls = ["--tls-ca", str(tmp_path / "ca.pem"), "--tls-cert", str(tmp_path / "fleet.pem"),
           "--tls-key", str(tmp_path / "fleet.key")]
    with RunDir.create() as run_dir:
        star = NetnsStar(run_dir.path.name, hosts=1)
        fl = Fleet(star, tmp_path)
        address = f"tls://{star.hub_addr}:{PORT}"
        try:
            star.create()
            fl.scheduler = server(
                qmpctl(star.hub, "scheduler", "--listen", f"{star.hub_addr}:{PORT}", *tls),
                tmp_path / "scheduler.log")
            fl.workers[1] = server(
                qmpctl(star.host(1), "worker", "--scheduler", address, "--listen",
                       star.address(1), "--name", "h1", *tls), tmp_path / "h1.log")
            started(fl.scheduler, tmp_path / "scheduler.log", "qmpctl scheduler")
            started(fl.workers[1], tmp_path / "h1.log", "qmpctl worker")
            done = subprocess.run(
                ["ip", "netns", "exec", star.hub, sys.executable, "-c", GUARD_CLIENT, address,
                 *tls[1::2]], capture_output=True, text=True, timeout=120)
            lines = done.stdout.splitlines()
            assert "cell h1 usage-error" in lines, done.stdout + done.stderr
            assert any(line.startswith("task refused Refused") and "run_migration, not" in line
                       for line in lines), lines
            assert any(line.startswith("run refused") for line in lines), lines
            assert any(line.startswith("run_on_scheduler refused") for line in lines), lines
            # no certificate: no connection (matrix: exit 3, naming the scheduler)
            plain = subprocess.run(
                qmpctl(star.hub, "matrix", "--preset", "smoke", "--cell", "tcg.*precopy-10",
                       "--scheduler", f"tcp://{star.hub_addr}:{PORT}", "--workers-timeout",
                       "5"), capture_output=True, text=True, timeout=120)
            assert plain.returncode == 3, plain.stderr
            assert f"tcp://{star.hub_addr}:{PORT}" in plain.stderr
        finally:
            fl.stop()
            star.delete()
