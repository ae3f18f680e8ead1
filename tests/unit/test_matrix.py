"""`qmpctl matrix` without QEMU: expansion of axes into cells, not-run
reasons, --known-loss, Wilson intervals, the run loop and the JSON/JUnit/plot
outputs from synthetic reports, bad input (TOML, options, CLI), and the
pytest helper. (tests/e2e/test_matrix.py runs real cells.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from qmpctl.cli import app
from qmpctl.core.errors import UsageError
from qmpctl.host.kvm import KvmInfo
from qmpctl.matrix.cells import Cell, expand, select
from qmpctl.matrix.execute import MatrixState, run_matrix
from qmpctl.matrix.features import FEATURES
from qmpctl.matrix.junit import junit_tree
from qmpctl.matrix.knownloss import covering, parse_known_loss
from qmpctl.matrix.markdown import feature_table
from qmpctl.matrix.plan import MatrixHost, check_options, plan
from qmpctl.matrix.plot import plot_matrix
from qmpctl.matrix.results import MatrixReport, exit_code, loss_summary, record
from qmpctl.matrix.spec import MatrixSpec, load_preset, load_toml, parse_spec
from qmpctl.matrix.stats import cell_stats, wilson
from qmpctl.matrix.table import matrix_table
from qmpctl.report.models import RunReport
from qmpctl.scenario.options import MigrateOptions

FIVE_IDS = [
    "x86_64-tcg-smp1-baremetal-precopy-10.0->10.0",
    "x86_64-tcg-smp1-baremetal-postcopy-10.0->10.0",
    "x86_64-kvm-bitmap-smp1-baremetal-precopy-10.0->10.0",
    "x86_64-kvm-ring4096-smp1-baremetal-precopy-10.0->10.0",
    "x86_64-tcg-smp1-baremetal-precopy-7.2->10.0",
]
TCG_FEATURES = ["precopy", "postcopy", "postcopy-recover", "auto-converge", "xbzrle",
                "multifd-zstd", "cancel-active", "file"]
SMOKE_IDS = [f"x86_64-tcg-smp1-baremetal-{f}-10.0->10.0" for f in TCG_FEATURES] + FIVE_IDS[2:]


def five() -> MatrixSpec:
    """The run-loop tests' own matrix (what `smoke` was before it grew features)."""
    return parse_spec({"repeat": 1, "options": {"ram": 64, "wave_end": 18, "timeout": 120.0},
                       "axes": [
                           {"accel": ["tcg"], "feature": ["precopy", "postcopy"],
                            "qemu": ["10.0->10.0"]},
                           {"accel": ["kvm"], "tracking": ["bitmap"], "qemu": ["10.0->10.0"]},
                           {"accel": ["kvm"], "tracking": ["ring"], "ring": [4096],
                            "qemu": ["10.0->10.0"]},
                           {"accel": ["tcg"], "qemu": ["7.2->10.0"]}]}, "five")


def report(verdict: str = "verified", exit_code: int = 0, **kw: Any) -> RunReport:
    return RunReport.model_validate({"qmpctl_version": "0.1.0",
                                     "started_at": "2026-01-01T00:00:00+00:00",
                                     "verdict": verdict, "exit_code": exit_code, **kw})


def memory(differing: int = 0) -> dict[str, Any]:
    return {"bytes_compared": 64 << 20, "pages_total": 16384, "pages_compared": 16384,
            "pages_excluded": 0, "pages_differing": differing, "exclusions": [],
            "seconds": 0.01, "gib_per_s": 6.0,
            "mismatches": [{"page": 0x3a0 + i, "offset": (0x3a0 + i) << 12,
                            "gpa": (0x3a0 + i) << 12, "region": "wave workload",
                            "differing_bytes": 1, "first_diff": 0x123,
                            "src_hex": "07", "dst_hex": "06"} for i in range(min(differing, 4))]}


LOST = report("mismatch", 1, memory=memory(844), timings_s={"total": 12.5})
VERIFIED = report(memory=memory(0), timings_s={"total": 10.0})
FAILED = report("migration-failed", 4, error="QEMU: migration failed: Unable to write")
INCONCLUSIVE = report("inconclusive", 6, memory=memory(0),
                      inconclusive=["no page was sent twice: no dirty page was ever re-sent"])
ENVIRONMENT = report("environment-error", 3, error="no dirty-ring trace events")


# --- Wilson and per-cell statistics -------------------------------------------------------


@pytest.mark.parametrize(("k", "n", "lo", "hi"), [
    (0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0),
    (1, 10, 0.0179, 0.4042), (0, 1, 0.0, 0.7935), (1, 1, 0.2065, 1.0),
    (3, 100, 0.0103, 0.0845)])
def test_wilson_matches_known_values(k: int, n: int, lo: float, hi: float) -> None:
    got = wilson(k, n)
    assert got == pytest.approx((lo, hi), abs=5e-5)


@pytest.mark.parametrize(("k", "n"), [(k, n) for n in range(1, 60) for k in (0, 1, n - 1, n)])
def test_wilson_interval_holds_the_rate_itself(k: int, n: int) -> None:
    """The plot draws p - lo and hi - p as error bars: neither may be negative."""
    lo, hi = wilson(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_refuses_no_trials() -> None:
    with pytest.raises(ValueError, match="n > 0"):
        wilson(0, 0)
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_cell_stats_counts_only_compared_runs_in_the_rate() -> None:
    s = cell_stats(["verified", "mismatch", "migration-failed", "inconclusive", "verified"])
    assert (s.runs, s.verified, s.lost, s.failed, s.inconclusive, s.n) == (5, 2, 1, 2, 1, 3)
    assert s.verdicts == {"verified": 2, "mismatch": 1, "migration-failed": 1,
                          "inconclusive": 1}
    assert s.loss_rate == pytest.approx(1 / 3)
    assert s.loss_ci95 == pytest.approx(wilson(1, 3))
    none = cell_stats(["environment-error"])
    assert (none.n, none.loss_rate, none.loss_ci95, none.failed) == (0, None, None, 1)


# --- axes, presets and cells ---------------------------------------------------------------


def test_smoke_preset_cells_and_their_options() -> None:
    spec = load_preset("smoke")
    cells = expand(spec)
    assert [c.id for c in cells] == SMOKE_IDS
    assert spec.repeat == 1
    by_id = {c.id: c for c in cells}
    small = {"ram": 64, "wave_end": 18, "timeout": 120.0}
    assert by_id[SMOKE_IDS[0]].kwargs == {"arch": "x86_64", "accel": "tcg",
                                          "guest": "baremetal", "qemu_src": "10.0",
                                          "qemu_dst": "10.0", **small}
    assert by_id[SMOKE_IDS[1]].options.postcopy
    assert by_id[SMOKE_IDS[2]].options.postcopy_recover
    assert by_id[SMOKE_IDS[7]].options.transport == "file"
    assert by_id[SMOKE_IDS[8]].options.dirty_ring == 0
    assert by_id[SMOKE_IDS[9]].options.dirty_ring == 4096
    assert by_id[SMOKE_IDS[10]].options.qemu_src == "7.2"
    assert all(c.not_run is None and isinstance(c.options, MigrateOptions) for c in cells)
    assert str(cells[0]) == SMOKE_IDS[0]


def test_full_preset_is_every_feature_on_both_bare_metal_guests() -> None:
    spec = load_preset("full")
    assert spec.repeat == 3
    cells = expand(spec)
    ids = {c.id for c in cells}
    assert all(c.not_run is None for c in cells)
    tcg = [f for f in FEATURES if "dirty-limit" not in f]
    for arch in ("x86_64-tcg-smp1", "aarch64-tcg-smp2"):
        assert {f"{arch}-baremetal-{f}-10.0->10.0" for f in tcg} <= ids
    for kvm in ("bitmap", "ring1024", "ring4096"):
        assert {f"x86_64-kvm-{kvm}-smp1-baremetal-{f}-10.0->10.0" for f in FEATURES} <= ids
    assert "aarch64-tcg-smp2-baremetal-postcopy-10.0->7.2" in ids
    assert len(cells) == 2 * len(tcg) + 3 * len(FEATURES) + 2 * 2 * 2


def test_storm_preset_puts_a_writer_on_each_of_up_to_eight_vcpus() -> None:
    cells = expand(load_preset("storm"))
    assert [c.id for c in cells] == [
        f"x86_64-kvm-ring{ring}-smp{n}-baremetal-precopy-10.0->10.0"
        for ring in (1024, 4096) for n in (1, 2, 4, 8)] + [
        f"x86_64-kvm-bitmap-smp{n}-baremetal-precopy-10.0->10.0" for n in (1, 4, 8)]
    assert {c.options.smp for c in cells if isinstance(c.options, MigrateOptions)} == {1, 2, 4, 8}


def test_exhaustive_preset_expands_every_axis_and_lists_collapsed_tcg_cells() -> None:
    spec = load_preset("exhaustive")
    assert spec.repeat == 5
    cells = expand(spec)
    # per (arch, guest, feature, qemu): 1 TCG cell + 4 collapsed into it, 4 KVM cells
    groups = 2 * 2 * len(FEATURES) * 3
    assert len(cells) == groups * 9
    collapsed = [c for c in cells if c.not_run is not None]
    assert len(collapsed) == groups * 4
    c = next(c for c in collapsed if c.id == "x86_64-tcg-ring65536-smp1-baremetal-postcopy-"
                                             "7.2->10.0")
    assert "TCG tracks dirty pages itself" in (c.not_run or "")
    assert "(x86_64-tcg-smp1-baremetal-postcopy-7.2->10.0)" in (c.not_run or "")
    ids = {c.id for c in cells}
    assert "aarch64-kvm-ring1024-smp2-linux-precopy-10.0->7.2" in ids
    assert "x86_64-kvm-ring4096-smp2-linux-precopy-10.0->10.0" in ids  # Linux's own 2 vCPUs


def test_tcg_collapse_is_silent_only_when_tracking_was_not_asked_for() -> None:
    implicit = expand(parse_spec({"axes": {"accel": ["tcg", "kvm"]}}, "t"))
    assert [(c.id, c.not_run) for c in implicit] == [
        ("x86_64-tcg-smp1-baremetal-precopy-system", None),
        ("x86_64-kvm-ring4096-smp1-baremetal-precopy-system", None)]
    assert "dirty_ring" not in implicit[0].kwargs and "qemu_src" not in implicit[0].kwargs
    explicit = expand(parse_spec({"axes": {"accel": ["tcg"], "tracking": ["bitmap"]}}, "t"))
    assert [c.id for c in explicit] == ["x86_64-tcg-smp1-baremetal-precopy-system",
                                        "x86_64-tcg-bitmap-smp1-baremetal-precopy-system"]
    assert explicit[1].not_run is not None and "apply to KVM only" in explicit[1].not_run


def test_a_union_of_products_names_each_cell_once(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('repeat = 2\n[options]\nram = 64\n'
                    '[[axes]]\naccel = ["tcg"]\nfeature = ["precopy", "postcopy"]\n'
                    '[[axes]]\naccel = ["tcg", "kvm"]\ntracking = ["bitmap"]\nsmp = [1]\n')
    spec = load_toml(path)
    assert spec.repeat == 2
    cells = expand(spec)
    assert [c.id for c in cells] == [
        "x86_64-tcg-smp1-baremetal-precopy-system", "x86_64-tcg-smp1-baremetal-postcopy-system",
        "x86_64-tcg-bitmap-smp1-baremetal-precopy-system",
        "x86_64-kvm-bitmap-smp1-baremetal-precopy-system"]
    assert cells[3].kwargs == {"arch": "x86_64", "accel": "kvm", "guest": "baremetal",
                               "dirty_ring": 0, "smp": 1, "ram": 64}


@pytest.mark.parametrize(("data", "problem"), [
    ({"axes": {"accel": ["kvmm"]}}, "axes[0].accel[0]: Input should be 'tcg' or 'kvm' "
                                    "(got 'kvmm')"),
    ({"axes": {"feature": ["xbzrl"]}}, "feature 'xbzrl': choose precopy, postcopy"),
    ({"axes": {"qemu": ["7.2-10.0"]}}, "qemu '7.2-10.0': expected SRC->DST"),
    ({"axes": {"ring": [1000]}}, "ring 1000: a power of two of at least 1024"),
    ({"axes": {"smp": [9]}}, "smp 9: must be 1..8 or 'default'"),
    ({"axes": {"arch": []}}, "arch: needs at least one value"),
    ({"axes": {"guest": ["linux", "linux"]}}, "repeats a value"),
    ({"axes": {"tracking": ["bitmap"], "ring": [1024]}}, "ring sizes apply only with "
                                                        "tracking = \"ring\""),
    ({"axes": {"colour": ["red"]}}, "axes[0].colour: Extra inputs are not permitted"),
    ({"repeat": 0}, "repeat: Input should be greater than or equal to 1"),
    ({"options": {"accel": "kvm"}}, "options accel: decided by the axes"),
    ({"options": {"postcopy": True}, "axes": {"feature": ["postcopy"]}},
     "options postcopy: decided by the axes"),
])
def test_bad_axes_are_one_line_usage_errors(data: dict[str, Any], problem: str) -> None:
    with pytest.raises(UsageError) as exc:
        expand(parse_spec(data, "--axes m.toml"))
    assert exc.value.message.startswith("--axes m.toml: ")
    assert problem in exc.value.message
    assert "\n" not in exc.value.message


@pytest.mark.parametrize(("options", "problem"), [
    ({"bogus": 1}, "cell x86_64-tcg-smp1-baremetal-precopy-system: unknown migrate option "
                   "'bogus'"),
    ({"ram": "lots"}, "--ram 'lots': Input should be a valid integer"),
    ({"workload": "random"}, "--workload applies only to --guest linux"),
])
def test_options_every_cell_cannot_take_are_usage_errors(options: dict[str, Any],
                                                         problem: str) -> None:
    with pytest.raises(UsageError) as exc:
        expand(parse_spec({"options": options}, "t"))
    assert problem in exc.value.message


def test_options_resolve_refuses_are_bad_input_not_cells_that_cannot_run() -> None:
    spec = parse_spec({"options": {"ram": 5}}, "t")
    with pytest.raises(UsageError, match=r"\[options\] \(x86_64 baremetal\): --ram 5 MiB"):
        check_options(expand(spec), spec.options, KvmInfo(device="/dev/kvm", accessible=False,
                                                           flavour="none"))


@pytest.mark.parametrize(("text", "problem"), [
    ('repeat = \n', "not valid TOML"),
    ('[axes]\naccel = "tcg"\n', "axes[0].accel: Input should be a valid tuple (got 'tcg')"),
])
def test_bad_toml(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as exc:
        load_toml(path)
    assert problem in exc.value.message and str(path) in exc.value.message
    with pytest.raises(UsageError, match="cannot read it"):
        load_toml(tmp_path / "missing.toml")


def test_cell_regex_selects_and_refuses_nothing_matched() -> None:
    cells = expand(five())
    assert [c.id for c in select(cells, "kvm-ring")] == [FIVE_IDS[3]]
    assert select(cells, None) == cells
    with pytest.raises(UsageError, match=r"--cell 'arm' matches none of the 5 cells"):
        select(cells, "arm")
    with pytest.raises(UsageError, match="not a regular expression"):
        select(cells, "(")


def test_plan_asks_the_host_only_about_cells_not_already_refused() -> None:
    cells = expand(parse_spec({"axes": {"accel": ["tcg", "kvm"], "tracking": ["ring"],
                                        "ring": [1024, 65536]}}, "t"))
    asked: list[int | None] = []

    def check(opts: MigrateOptions) -> str | None:
        asked.append(opts.dirty_ring)
        return "above this host's maximum" if opts.dirty_ring == 65536 else None

    planned = plan(cells, check)
    assert asked == [None, 1024, 65536]  # the collapsed TCG cells are not asked about
    reasons = {c.id: c.not_run for c in planned}
    assert reasons["x86_64-tcg-smp1-baremetal-precopy-system"] is None
    assert reasons["x86_64-kvm-ring1024-smp1-baremetal-precopy-system"] is None
    assert reasons["x86_64-kvm-ring65536-smp1-baremetal-precopy-system"] == \
        "above this host's maximum"
    assert "TCG tracks" in (reasons["x86_64-tcg-ring1024-smp1-baremetal-precopy-system"] or "")


# --- --known-loss ---------------------------------------------------------------------------


def test_known_loss_matches_axis_values() -> None:
    cells = {c.id: c for c in expand(five())}
    ring = parse_known_loss("tracking=ring")
    narrow = parse_known_loss("accel=kvm, tracking=ring,ring=1024")
    assert ring.covers(cells[FIVE_IDS[3]].axes)
    assert not ring.covers(cells[FIVE_IDS[2]].axes) and not ring.covers(cells[FIVE_IDS[0]].axes)
    assert not narrow.covers(cells[FIVE_IDS[3]].axes)
    assert parse_known_loss("qemu=7.2->10.0,feature=precopy").covers(cells[FIVE_IDS[4]].axes)
    assert parse_known_loss("tracking=tcg,smp=1").covers(cells[FIVE_IDS[0]].axes)
    assert covering([narrow, ring], cells[FIVE_IDS[3]].axes) is ring
    assert covering([narrow], cells[FIVE_IDS[3]].axes) is None


@pytest.mark.parametrize(("text", "problem"), [
    ("ring", "expected AXIS=VALUE"), ("tracking=", "expected AXIS=VALUE"),
    ("colour=red", "unknown axis 'colour'"), ("tracking=rng", "choose ring, bitmap, tcg"),
    ("ring=big", "a number"), ("qemu=7.2", "expected SRC->DST"),
    ("feature=teleport", "choose precopy, postcopy, postcopy-preempt"),
])
def test_bad_known_loss(text: str, problem: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_known_loss(text)
    assert problem in exc.value.message and f"--known-loss {text!r}" in exc.value.message


# --- the run loop, with synthetic reports --------------------------------------------------


def scripted(reports: dict[str, list[RunReport]]) -> Any:
    """A run function answering each cell's runs from `reports` (by dirty_ring/postcopy)."""
    queues = {k: iter(v) for k, v in reports.items()}

    async def run_fn(opts: MigrateOptions, progress: Any) -> RunReport:
        key = f"{opts.accel}-{opts.dirty_ring}-{opts.postcopy}-{opts.qemu_src}"
        if progress is not None:
            progress({"status": "active", "ram": {"dirty-sync-count": 2}}, 2)
        return next(queues[key])
    return run_fn


SMOKE_KEYS = ["tcg-None-False-10.0", "tcg-None-True-10.0", "kvm-0-False-10.0",
              "kvm-4096-False-10.0", "tcg-None-False-7.2"]


async def run_smoke(answers: dict[str, list[RunReport]], repeat: int = 2,
                    known: tuple[str, ...] = ()) -> MatrixState:
    state = MatrixState(expand(five()), repeat,
                        tuple(parse_known_loss(k) for k in known))
    seen: list[str] = []
    await run_matrix(state, scripted(answers), changed=lambda: seen.append(state.activity))
    assert "active, pass 2" in seen
    return state


async def test_every_repeat_is_recorded_and_known_losses_do_not_fail() -> None:
    answers = {k: [VERIFIED, VERIFIED] for k in SMOKE_KEYS}
    answers["kvm-4096-False-10.0"] = [LOST, VERIFIED]
    state = await run_smoke(answers, known=("tracking=ring",))
    results = {r.id: r for r in state.results()}
    ring = results[FIVE_IDS[3]]
    assert ring.status == "run" and ring.known_loss == "tracking=ring"
    assert [r.verdict for r in ring.runs] == ["mismatch", "verified"]
    assert ring.runs[0].known_loss == "tracking=ring" and ring.runs[1].known_loss is None
    assert ring.runs[0].pages_differing == 844 and ring.runs[0].seconds == 12.5
    assert (ring.stats.lost, ring.stats.n) == (1, 2)
    assert exit_code(results.values(), state.interrupted) == (
        0, "every run verified except 1 known loss(es) (--known-loss)")
    unknown = await run_smoke(answers)
    assert exit_code(unknown.results(), False) == (
        1, f"1 run(s) lost pages (not covered by --known-loss): {FIVE_IDS[3]} #1")


async def test_a_cell_refused_before_starting_is_not_run_and_an_interrupt_stops() -> None:
    refused = report("usage-error", 2, error="cannot migrate QEMU 7.2 -> 10.0: ...")
    interrupted = report("interrupted", 130, error="interrupted; migration cancelled")
    answers = {k: [VERIFIED, VERIFIED] for k in SMOKE_KEYS}
    answers["tcg-None-True-10.0"] = [refused]
    answers["kvm-0-False-10.0"] = [VERIFIED, interrupted]
    state = await run_smoke(answers)
    results = {r.id: r for r in state.results()}
    assert results[FIVE_IDS[1]].status == "not-run"
    assert results[FIVE_IDS[1]].not_run == "qmpctl refused it: cannot migrate QEMU 7.2 -> " \
                                            "10.0: ..."
    assert [r.verdict for r in results[FIVE_IDS[2]].runs] == ["verified", "interrupted"]
    assert results[FIVE_IDS[3]].status == "interrupted" and not results[FIVE_IDS[3]].runs
    assert state.interrupted
    assert exit_code(state.results(), state.interrupted)[0] == 130


@pytest.mark.parametrize(("verdicts", "code"), [
    ([VERIFIED], 0), ([VERIFIED, LOST], 1), ([FAILED, LOST, ENVIRONMENT], 1),
    ([INCONCLUSIVE, FAILED], 4), ([INCONCLUSIVE, ENVIRONMENT], 3), ([INCONCLUSIVE], 6),
    ([report("error", 7, error="bug"), FAILED], 7),
])
def test_exit_code_takes_the_highest_priority(verdicts: list[RunReport], code: int) -> None:
    state = MatrixState(expand(five())[:1], len(verdicts))
    state.runs[FIVE_IDS[0]] = [record(r, i) for i, r in enumerate(verdicts, 1)]
    assert exit_code(state.results(), False)[0] == code


def test_nothing_run_is_an_environment_exit() -> None:
    cells = [c.refused("KVM cannot run aarch64 guests") for c in expand(five())]
    assert exit_code(MatrixState(cells, 1).results(), False) == (
        3, "no cell can run on this host")


# --- outputs from synthetic reports --------------------------------------------------------


HOST = MatrixHost(hostname="h", kernel="6.1", machine="x86_64", cpus=2,
                  kvm=KvmInfo(device="/dev/kvm", accessible=True, flavour="pvm"),
                  qemu={"x86_64": ["10.0.2 /usr/bin/qemu-system-x86_64"]})


@pytest.fixture
def matrix_report() -> Iterator[MatrixReport]:
    cells = expand(five())
    cells[4] = cells[4].refused("qmpctl refuses it on this host: no QEMU 7.2 for x86_64")
    state = MatrixState(cells, 2, (parse_known_loss("tracking=ring"),))
    state.runs = {FIVE_IDS[0]: [record(VERIFIED, 1), record(LOST, 2)],
                  FIVE_IDS[1]: [record(FAILED, 1), record(INCONCLUSIVE, 2)],
                  FIVE_IDS[2]: [record(ENVIRONMENT, 1), record(VERIFIED, 2)],
                  FIVE_IDS[3]: [record(LOST, 1, "tracking=ring")]}
    state.interrupted = True
    yield state.report(["qmpctl", "matrix", "--preset", "smoke"], "preset smoke", HOST)


def test_junit_has_a_testcase_per_run_and_says_why(matrix_report: MatrixReport) -> None:
    root = junit_tree(matrix_report).getroot()
    suite = root.find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == [f"{FIVE_IDS[0]} #1", f"{FIVE_IDS[0]} #2", f"{FIVE_IDS[1]} #1",
                           f"{FIVE_IDS[1]} #2", f"{FIVE_IDS[2]} #1", f"{FIVE_IDS[2]} #2",
                           f"{FIVE_IDS[3]} #1", f"{FIVE_IDS[3]} #2", FIVE_IDS[4]]
    assert {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "9", "failures": "4", "errors": "1", "skipped": "2"}
    suite_props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert suite_props == {"qmpctl_version": metadata.version("qmpctl")}
    assert list(cases[f"{FIVE_IDS[0]} #1"]) == [cases[f"{FIVE_IDS[0]} #1"][0]]  # properties
    lost = cases[f"{FIVE_IDS[0]} #2"].find("failure")
    assert lost is not None and lost.get("type") == "mismatch"
    assert lost.get("message") == ("mismatch: 844 of 16384 pages of guest RAM differ, first at "
                                   "gpa 0x3a0000 (wave workload), gpa 0x3a1000 (wave workload), "
                                   "gpa 0x3a2000 (wave workload)")
    known = cases[f"{FIVE_IDS[3]} #1"].find("failure")
    assert known is not None
    assert (known.get("message") or "").startswith(
        "mismatch: known loss (--known-loss tracking=ring): 844 of 16384 pages of guest RAM "
        "differ")
    failed = cases[f"{FIVE_IDS[1]} #1"].find("failure")
    assert failed is not None and failed.get("message") == (
        "migration-failed: QEMU: migration failed: Unable to write")
    inconclusive = cases[f"{FIVE_IDS[1]} #2"].find("failure")
    assert inconclusive is not None and "no dirty page was ever re-sent" in (
        inconclusive.get("message") or "")
    env = cases[f"{FIVE_IDS[2]} #1"].find("error")
    assert env is not None and env.get("message") == (
        "environment-error: no dirty-ring trace events")
    skipped = cases[FIVE_IDS[4]].find("skipped")
    assert skipped is not None and "no QEMU 7.2 for x86_64" in (skipped.get("message") or "")
    interrupted = cases[f"{FIVE_IDS[3]} #2"].find("skipped")
    assert interrupted is not None and "interrupted" in (interrupted.get("message") or "")
    props = {p.get("name"): p.get("value") for p in cases[f"{FIVE_IDS[3]} #1"].iter("property")}
    assert props["axis_tracking"] == "ring" and props["pages_differing"] == "844"


def test_json_round_trips_with_runs_intervals_and_context(matrix_report: MatrixReport,
                                                          tmp_path: Path) -> None:
    data = json.loads(matrix_report.model_dump_json())
    assert MatrixReport.model_validate(data) == matrix_report
    assert data["command"] == ["qmpctl", "matrix", "--preset", "smoke"]
    assert data["qmpctl_version"] and data["host"]["kvm"]["flavour"] == "pvm"
    assert data["exit_code"] == 130 and data["interrupted"]
    assert "n = runs whose memory was compared" in data["loss_rate_definition"]
    first = data["cells"][0]
    assert [(r["verdict"], r["exit_code"], r["pages_differing"]) for r in first["runs"]] == [
        ("verified", 0, 0), ("mismatch", 1, 844)]
    assert first["stats"]["loss_ci95"] == pytest.approx(list(wilson(1, 2)))
    assert first["options"] == {"arch": "x86_64", "accel": "tcg", "guest": "baremetal",
                                "ram": 64, "wave_end": 18,
                                "timeout": 120.0, "qemu_src": "10.0", "qemu_dst": "10.0"}
    assert data["cells"][1]["runs"][0]["error"] == "QEMU: migration failed: Unable to write"
    assert data["cells"][4]["status"] == "not-run"


def test_plot_and_table(matrix_report: MatrixReport, tmp_path: Path) -> None:
    png = tmp_path / "m.png"
    plot_matrix(matrix_report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    console = Console(record=True, width=250)
    console.print(matrix_table(matrix_report.cells, matrix_report.repeat))
    text = console.export_text()
    assert "1/2 50.0% [9.5%, 90.5%]" in text
    assert "not run here: 1 cells" in text and "no QEMU 7.2 for x86_64" in text
    assert "1 environment-error" in text and "1 known" in text


def test_markdown_table_pivots_features_against_configurations(
        matrix_report: MatrixReport) -> None:
    assert feature_table(matrix_report).splitlines() == [
        "| feature | tcg 10.0->10.0 | kvm bitmap 10.0->10.0 | kvm ring 4096 10.0->10.0 "
        "| tcg 7.2->10.0 |",
        "| --- | --- | --- | --- | --- |",
        "| precopy | 1/2, **1 lost** | 1/2, 1 environment-error | 0/1, **1 lost** | not run |",
        "| postcopy | 0/2, 1 inconclusive, 1 migration-failed |  |  |  |"]


def test_markdown_table_of_one_feature_has_a_row_per_configuration() -> None:
    cells = expand(parse_spec({"axes": {"accel": ["kvm"], "tracking": ["ring"],
                                        "smp": [1, 2]}}, "t"))
    state = MatrixState(cells, 1, ())
    state.runs = {cells[0].id: [record(VERIFIED, 1)], cells[1].id: [record(LOST, 1)]}
    assert feature_table(state.report(["qmpctl"], "t", HOST)).splitlines() == [
        "| configuration | precopy |", "| --- | --- |",
        "| 1 vCPU | 1/1 |", "| 2 vCPUs | 0/1, **1 lost** |"]


def test_loss_summary_names_blocks_and_checks_too() -> None:
    rep = report("mismatch", 1, memory=memory(0), guest_checks=[
        {"name": "wave-invariant", "stage": "dst", "ok": False, "detail": "2 breaks"}])
    assert loss_summary(rep) == "guest check wave-invariant failed: 2 breaks"


# --- the CLI's bad input: exit 2, one line, nothing started ---------------------------------


@pytest.mark.parametrize(("args", "problem"), [
    ([], "give one of --preset NAME (smoke, full, storm, kvm-control, exhaustive) or --axes "
         "FILE.toml"),
    (["--preset", "smoke", "--axes", "m.toml"], "give one of --preset"),
    (["--preset", "huge"], "--preset 'huge': choose smoke, full"),
    (["--preset", "smoke", "--repeat", "0"], "--repeat 0: must be at least 1"),
    (["--preset", "smoke", "--known-loss", "tracking=rng"], "tracking='rng': choose"),
    (["--preset", "smoke", "--cell", "arm"], "--cell 'arm' matches none of the 11 cells"),
    (["--preset", "smoke", "--json", "/nonexistent/m.json"],
     "--json /nonexistent/m.json: directory /nonexistent does not exist"),
    (["--preset", "smoke", "--junit", "/proc/m.xml"], "--junit /proc/m.xml: not writable"),
    (["--axes", "/nonexistent.toml"], "--axes /nonexistent.toml: cannot read it"),
])
def test_cli_bad_input(args: list[str], problem: str) -> None:
    result = CliRunner().invoke(app, ["matrix", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qmpctl: ") and problem in lines[0]


# --- the pytest helper ---------------------------------------------------------------------


INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = ignore::pytest.PytestAssertRewriteWarning
"""


def test_pytest_helper_parametrizes_over_cells(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    (pytester.path / "m.toml").write_text(
        '[options]\nram = 64\n[axes]\naccel = ["tcg"]\ntracking = ["bitmap"]\n')
    pytester.makepyfile(test_cells="""
        import pytest
        from qmpctl.pytest_plugin import qmpctl_matrix_cells

        @pytest.mark.parametrize("cell", qmpctl_matrix_cells("smoke"), ids=str)
        def test_smoke(cell):
            assert cell.kwargs["arch"] == "x86_64" and cell.kwargs["ram"] == 64
            assert cell.options.accel == cell.kwargs["accel"]

        @pytest.mark.parametrize("cell", qmpctl_matrix_cells("m.toml", cell="tcg"), ids=str)
        def test_file(cell):
            assert cell.kwargs == {"arch": "x86_64", "accel": "tcg", "guest": "baremetal",
                                   "ram": 64}
    """)
    collected = pytester.runpytest("--collect-only", "-q")
    collected.stdout.fnmatch_lines([f"test_cells.py::test_smoke[[]{i}[]]" for i in SMOKE_IDS]
                                   + ["test_cells.py::test_file[[]x86_64-tcg-smp1-baremetal-"
                                      "precopy-system[]]",
                                      "test_cells.py::test_file[[]x86_64-tcg-bitmap-smp1-"
                                      "baremetal-precopy-system[]]"])
    result = pytester.runpytest("-rs")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("skipped", 0) == len(SMOKE_IDS) + 2
    assert outcomes.get("failed", 0) == 0
    result.stdout.fnmatch_lines(["SKIPPED * not run here: TCG tracks dirty pages itself*"])


def test_cell_is_its_id() -> None:
    cell = expand(five())[0]
    assert isinstance(cell, Cell) and f"{cell}" == FIVE_IDS[0]
