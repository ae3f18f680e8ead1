"""qmpctl.fleet's pure parts: resources from facts and what cells need,
unschedulable reasons, addresses and TLS options, the task guard, the
journal, and the option checks (no Dask processes here: tests/e2e/test_fleet.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmpctl.core.errors import UsageError
from qmpctl.fleet.guard import refusal
from qmpctl.fleet.journal import Journal, JournalEntry, JournalHeader, load
from qmpctl.fleet.options import FleetOptions, check
from qmpctl.fleet.resources import cell_needs, host_resources, ring_sizes, unschedulable
from qmpctl.fleet.security import address, tls_of
from qmpctl.fleet.task import CellTask, TaskOutcome, options_of, run_cell, run_migration
from qmpctl.host.kvm import KvmInfo
from qmpctl.host.netns import NetnsStar, stale_namespaces
from qmpctl.matrix.cells import expand
from qmpctl.matrix.plan import MatrixHost
from qmpctl.matrix.results import RunRecord
from qmpctl.matrix.spec import parse_spec


def machine(flavour: str = "vmx", ring_bytes: int = 65536 * 16, bitmap: int = 0) -> MatrixHost:
    kvm = KvmInfo(device="/dev/kvm", accessible=True, flavour=flavour,  # type: ignore[arg-type]
                  caps={"dirty-log-ring": ring_bytes, "dirty-log-ring-with-bitmap": bitmap})
    return MatrixHost(hostname="h", kernel="6.1", machine="x86_64", cpus=2, kvm=kvm,
                      qemu={"x86_64": ["10.0.2 /usr/bin/q", "7.2.22 /opt/q"], "aarch64": []})


def cells(*axes: dict[str, list[object]]) -> dict[str, object]:
    spec = parse_spec({"repeat": 1, "axes": list(axes)}, "test")
    return {c.id: c for c in expand(spec)}


def test_resources_come_from_the_facts_each_with_the_slots() -> None:
    res = host_resources(machine(), "x86_64", ["x86_64"], 2)
    assert res["slot"] == 2 and set(res.values()) == {2.0}
    assert {"x86_64-tcg", "x86_64-kvm", "x86_64-kvm-bitmap", "x86_64-kvm-ring65536",
            "x86_64-kvm-64bit", "qemu-x86_64-7.2", "qemu-x86_64-10.0.2", "lab-x86_64"} <= set(res)
    assert "aarch64-tcg" not in res and "x86_64-kvm-ring131072" not in res
    pvm = host_resources(machine("pvm"), "x86_64", [], 1, withheld=["x86_64-kvm-ring4096"])
    assert "x86_64-kvm-64bit" not in pvm and "x86_64-kvm-ring4096" not in pvm
    assert ring_sizes(1024) == [64, 128, 256, 512, 1024] and ring_sizes(0) == []


def test_a_cell_needs_what_its_axes_name() -> None:
    found = cells({"accel": ["kvm"], "tracking": ["ring"], "ring": [4096], "guest": ["linux"]},
                  {"arch": ["aarch64"], "accel": ["kvm"], "tracking": ["ring"], "ring": [1024]},
                  {"accel": ["tcg"], "qemu": ["7.2->10.0"]})
    linux, arm, tcg = found.values()
    assert set(cell_needs(linux)) == {"slot", "x86_64-kvm", "x86_64-kvm-ring4096",  # type: ignore[arg-type]
                                      "x86_64-kvm-64bit"}
    assert "aarch64-kvm-ring-with-bitmap" in cell_needs(arm)  # type: ignore[arg-type]
    assert set(cell_needs(tcg)) == {"slot", "x86_64-tcg", "qemu-x86_64-7.2",  # type: ignore[arg-type]
                                    "qemu-x86_64-10.0"}


def test_unschedulable_names_what_is_needed_and_the_closest_worker() -> None:
    needs = {"slot": 1.0, "x86_64-kvm": 1.0, "x86_64-kvm-ring65536": 1.0}
    workers = {"a": {"slot": 1.0, "x86_64-tcg": 1.0}, "b": {"slot": 1.0, "x86_64-kvm": 1.0}}
    why = unschedulable(needs, workers)
    assert why is not None and "x86_64-kvm, x86_64-kvm-ring65536" in why
    assert "the closest, b, lacks x86_64-kvm-ring65536" in why
    assert unschedulable(needs, {"c": {**needs}}) is None
    assert "no worker is connected" in (unschedulable(needs, {}) or "")


@pytest.mark.parametrize("text", ["0.0.0.0:8786", "[::]:1", "*:9", ":8786", "tcp://0.0.0.0"])
def test_a_wildcard_address_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="not a wildcard"):
        address(text, "--listen", None, 8786)


def test_addresses_take_the_scheme_tls_calls_for(tmp_path: Path) -> None:
    assert address("192.0.2.1", "--listen", None, 8786) == "tcp://192.0.2.1:8786"
    assert address("tcp://h-1.example:9", "--scheduler", None, 8786) == "tcp://h-1.example:9"
    for f in ("ca", "cert", "key"):
        (tmp_path / f).write_text("x")
    tls = tls_of(tmp_path / "ca", tmp_path / "cert", tmp_path / "key")
    assert address("192.0.2.1:1", "--listen", tls, None) == "tls://192.0.2.1:1"
    with pytest.raises(UsageError, match="with --tls-\\* given; use tls://"):
        address("tcp://192.0.2.1:1", "--listen", tls, None)
    with pytest.raises(UsageError, match="needs --tls-ca"):
        address("tls://192.0.2.1:1", "--listen", None, None)
    with pytest.raises(UsageError, match="port 'x'"):
        address("192.0.2.1:x", "--listen", None, None)
    with pytest.raises(UsageError, match="--tls-key missing"):
        tls_of(tmp_path / "ca", tmp_path / "cert", None)
    with pytest.raises(UsageError, match="not a readable file"):
        tls_of(tmp_path / "ca", tmp_path / "nope", tmp_path / "key")


def test_the_guard_lets_only_run_cell_with_one_string_through() -> None:
    class Spec:
        def __init__(self, func: object, *args: object, **kwargs: object) -> None:
            self.func, self.args, self.kwargs = func, args, kwargs

    assert refusal(Spec(run_cell, "{}")) is None
    assert "not builtins.print" in (refusal(Spec(print, "x")) or "")
    assert refusal(Spec(run_migration, "{}")) is None
    assert "one JSON string" in (refusal(Spec(run_cell, b"x")) or "")
    assert "one JSON string" in (refusal(Spec(run_cell, "x", "y")) or "")
    assert "one JSON string" in (refusal(Spec(run_cell, "x", evil=1)) or "")
    assert refusal(object()) is not None


def test_a_task_s_options_are_validated_as_the_cli_does() -> None:
    assert options_of(CellTask(cell="c", repeat=1, options={"ram": 64})).ram == 64
    with pytest.raises(UsageError):
        options_of(CellTask(cell="c", repeat=1, options={"no_such_option": 1}))
    out = TaskOutcome.model_validate_json(run_cell(CellTask(
        cell="c", repeat=2, options={"ram": 1}).model_dump_json()))
    assert out.record.verdict == "usage-error" and out.repeat == 2 and out.record.worker


def test_the_journal_resumes_only_its_own_matrix(tmp_path: Path) -> None:
    header = JournalHeader(source="s", repeat=2, cells=["a"])
    path = tmp_path / "j"
    j = Journal(path, header, resume=False)
    rec = RunRecord(repeat=1, verdict="verified", exit_code=0)
    j.add(JournalEntry(outcome=TaskOutcome(cell="a", repeat=1, worker="w", machine=machine(),
                                           record=rec, wall_s=1.0)))
    j.close()
    with path.open("a") as f:
        f.write('{"outc')  # the controller died writing it
    assert [e.outcome.repeat for e in load(path, header) if e.outcome] == [1]
    with pytest.raises(UsageError, match="journal of another matrix"):
        load(path, header.model_copy(update={"repeat": 3}))
    with pytest.raises(UsageError, match="cannot read"):
        load(tmp_path / "none", header)


def test_fleet_options_that_do_not_go_together() -> None:
    for opts, json_path, match in (
            (FleetOptions(scheduler="a", cluster="local"), None, "not both"),
            (FleetOptions(cluster="k8s"), None, "only `local`"),
            (FleetOptions(tls_ca=Path("x")), None, "apply only with --scheduler"),
            (FleetOptions(resume=True), Path("j"), "--resume applies only"),
            (FleetOptions(scheduler="a", resume=True), None, "--resume needs --json"),
            (FleetOptions(cluster="local", workers=2), None, "one worker")):
        with pytest.raises(UsageError, match=match):
            check(opts, json_path, False)
    check(FleetOptions(scheduler="a", resume=True), Path("j"), False)
    check(FleetOptions(), None, True)


def test_the_star_is_one_lan_of_test_net_addresses() -> None:
    star = NetnsStar("qmpctl-abc", hosts=3)
    cmds = [" ".join(c) for c in star.create_commands()]
    assert "ip -n qmpctl-abc-hub addr add 192.0.2.1/24 dev br0" in cmds
    assert "ip -n qmpctl-abc-h3 addr add 192.0.2.13/24 dev eth0" in cmds
    assert star.link_commands(2, False) == [["ip", "-n", "qmpctl-abc-hub", "link", "set", "dev",
                                             "to-h2", "down"]]
    assert stale_namespaces(star.names, lambda base: False) == star.names
    with pytest.raises(ValueError):
        NetnsStar("mine", hosts=1)


def test_a_repeat_without_a_result_is_never_a_silent_pass() -> None:
    """A cluster that loses tasks (its scheduler gone) leaves repeats without
    runs: they are given up, the cell says so, and the exit code is 3."""
    from qmpctl.fleet.clusters import RemoteCluster
    from qmpctl.fleet.executor import FleetExecutor
    from qmpctl.matrix.execute import MatrixState

    found = cells({"accel": ["tcg"], "feature": ["precopy", "postcopy"]})
    state = MatrixState(list(found.values()), 2)  # type: ignore[arg-type]
    first = next(iter(found))
    state.runs[first] = [RunRecord(repeat=1, verdict="verified", exit_code=0, worker="w"),
                         RunRecord(repeat=2, verdict="verified", exit_code=0, worker="w")]
    second = list(found)[1]
    state.runs[second] = [RunRecord(repeat=1, verdict="verified", exit_code=0, worker="w")]
    executor = FleetExecutor(RemoteCluster("tcp://192.0.2.1:8786"))
    executor._unaccounted(state, lambda host, line: None)
    assert list(state.gave_up) == [second] and "#2: no result came back" in state.gave_up[second]
    report = state.report([], "test", machine())
    assert report.exit_code == 3 and second in report.exit_reason
    assert [c.status for c in report.cells] == ["run", "infrastructure"]
    assert report.fleet is not None and report.fleet.events[-1].kind == "gave-up"
    assert report.fleet.hosts[0].host == "w" and report.fleet.hosts[0].stats.runs == 3


def test_a_test_s_migration_needs_what_its_options_and_marker_name() -> None:
    from qmpctl.fleet.resources import options_needs
    from qmpctl.scenario.options import MigrateOptions

    tcg = MigrateOptions.from_kwargs(accel="tcg", qemu_src="7.2", qemu_dst="10.0")
    assert set(options_needs(tcg)) == {"slot", "x86_64-tcg", "qemu-x86_64-7.2",
                                       "qemu-x86_64-10.0"}
    ring = MigrateOptions.from_kwargs(accel="kvm", dirty_ring=4096, guest="linux")
    assert set(options_needs(ring)) == {"slot", "x86_64-kvm", "x86_64-kvm-ring4096",
                                        "x86_64-kvm-64bit"}
    auto = MigrateOptions.from_kwargs(arch="aarch64", dirty_ring=0)
    assert set(options_needs(auto, "aarch64", ring_with_bitmap=True)) == {
        "slot", "aarch64-kvm", "aarch64-kvm-bitmap", "aarch64-kvm-ring-with-bitmap"}
    assert set(options_needs(auto)) == {"slot", "aarch64-tcg"}  # auto: the worker decides
