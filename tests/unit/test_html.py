"""The heat map and the HTML page without QEMU: the grid a report lays out,
the colours (nothing that proved nothing looks like 0 % loss), escaping of
every string a report puts into the page, the timeline's coordinates, a
`migrate --repeat` as a one-cell matrix, `qmpctl html`'s bad input, and the
old schema-1 results in docs/results. (tests/e2e/test_html_browser.py
renders a real matrix's page in chromium.)"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from qmpctl.cli import app
from qmpctl.matrix.cells import expand
from qmpctl.matrix.execute import MatrixState
from qmpctl.matrix.heat import HIGH, LOW, ZERO, grid, ink_for, loss_colour, shade
from qmpctl.matrix.html import render_html, timeline_figure
from qmpctl.matrix.knownloss import parse_known_loss
from qmpctl.matrix.plot import plot_matrix
from qmpctl.matrix.repeat import load_results, repeat_report, report_host
from qmpctl.matrix.results import CellResult, MatrixReport, RunTimeline, cell_result, record
from qmpctl.matrix.spec import parse_spec
from qmpctl.migration.models import PassSample
from tests.unit.test_matrix import (
    ENVIRONMENT,
    FAILED,
    FIVE_IDS,
    HOST,
    INCONCLUSIVE,
    LOST,
    VERIFIED,
    five,
    memory,
    report,
)

ROOT = Path(__file__).resolve().parents[2]
EVIL = "<img src=x onerror=alert(1)>\"'&</script><script>alert(2)</script>"


def five_report() -> MatrixReport:
    cells = expand(five())
    cells[4] = cells[4].refused("qmpctl refuses it on this host: no QEMU 7.2 for x86_64")
    state = MatrixState(cells, 2, (parse_known_loss("tracking=ring"),))
    state.runs = {FIVE_IDS[0]: [record(VERIFIED, 1), record(LOST, 2)],
                  FIVE_IDS[1]: [record(FAILED, 1), record(INCONCLUSIVE, 2)],
                  FIVE_IDS[2]: [record(ENVIRONMENT, 1), record(VERIFIED, 2)],
                  FIVE_IDS[3]: [record(LOST, 1, "tracking=ring"), record(VERIFIED, 2)]}
    return state.report(["qmpctl", "matrix", "--preset", "five"], "preset five", HOST)


def cell(verdicts: list[str], status: str = "run", known: str | None = None) -> CellResult:
    reports = {"verified": VERIFIED, "mismatch": LOST, "inconclusive": INCONCLUSIVE,
               "migration-failed": FAILED, "environment-error": ENVIRONMENT}
    runs = [record(reports[v], i) for i, v in enumerate(verdicts, 1)]
    return cell_result("c", {"feature": "precopy"}, {}, runs, len(verdicts) or 1,
                       not_run="not here" if status == "not-run" else None, known_loss=known)


# --- the grid ------------------------------------------------------------------------------


def test_grid_pivots_features_against_configurations() -> None:
    g = grid(five_report())
    assert (g.row_axis, g.column_axis) == ("feature", "configuration")
    assert g.rows == ["precopy", "postcopy"]
    assert g.columns == ["tcg 10.0->10.0", "kvm bitmap 10.0->10.0", "kvm ring 4096 10.0->10.0",
                         "tcg 7.2->10.0"]
    ids = [[None if c is None else c.id for c in row] for row in g.cells]
    assert ids == [[FIVE_IDS[0], FIVE_IDS[2], FIVE_IDS[3], FIVE_IDS[4]],
                   [FIVE_IDS[1], None, None, None]]


def test_grid_of_one_feature_has_a_row_per_configuration() -> None:
    cells = expand(parse_spec({"axes": {"accel": ["kvm"], "tracking": ["ring"],
                                        "smp": [1, 2]}}, "t"))
    state = MatrixState(cells, 1, ())
    state.runs = {cells[0].id: [record(VERIFIED, 1)], cells[1].id: [record(LOST, 1)]}
    g = grid(state.report(["qmpctl"], "t", HOST))
    assert (g.rows, g.columns) == (["1 vCPU", "2 vCPUs"], ["precopy"])
    assert [[c.id if c else None for c in row] for row in g.cells] == [[cells[0].id],
                                                                      [cells[1].id]]


# --- colours -------------------------------------------------------------------------------


def luminance(colour: str) -> float:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_loss_colour_green_only_at_zero_then_darker_with_more_loss() -> None:
    assert loss_colour(0.0) == ZERO
    assert loss_colour(1e-9) == LOW and loss_colour(1.0) == HIGH
    steps = [loss_colour(k / 10) for k in range(1, 11)]
    assert ZERO not in steps
    assert all(luminance(a) > luminance(b) for a, b in pairwise(steps))
    with pytest.raises(ValueError, match="must lie in"):
        loss_colour(1.5)


@pytest.mark.parametrize(("fill", "ink"), [("#ffffff", "#000000"), ("#a50026", "#ffffff"),
                                           ("#fee08b", "#000000"), ("#1a9850", "#000000")])
def test_ink_reads_on_its_fill(fill: str, ink: str) -> None:
    assert ink_for(fill) == ink


@pytest.mark.parametrize(("verdicts", "status", "kind", "striped", "lines"), [
    (["verified", "verified"], "run", "loss", False, ["0/2 lost", "0% [0%, 66%]"]),
    (["verified", "mismatch", "inconclusive"], "run", "loss", False,
     ["1/2 lost", "50% [9%, 91%]", "+ 1 inconclusive"]),
    (["inconclusive", "inconclusive"], "run", "inconclusive", True,
     ["no verdict", "2 inconclusive"]),
    (["inconclusive", "migration-failed"], "run", "failed", True,
     ["no verdict", "1 inconclusive", "1 migration-failed"]),
    ([], "not-run", "not-run", False, ["not run"]),
    ([], "run", "interrupted", False, ["interrupted", "no run"]),
])
def test_shade_tells_what_the_runs_proved(verdicts: list[str], status: str, kind: str,
                                          striped: bool, lines: list[str]) -> None:
    s = shade(cell(verdicts, status))
    assert (s.kind, s.striped, s.lines, s.known) == (kind, striped, lines, False)
    assert (s.fill == ZERO) == (kind == "loss" and "mismatch" not in verdicts)


def test_a_known_loss_keeps_its_colour_and_is_marked() -> None:
    s = shade(cell(["mismatch"], known="tracking=ring"))
    assert (s.kind, s.fill, s.known) == ("loss", HIGH, True)
    assert s.lines[-1] == "known loss"


# --- the page ------------------------------------------------------------------------------


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of each <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def evil_report() -> MatrixReport:
    """Every string the page shows, set to markup that must stay text."""
    lost = report("mismatch", 1, error=EVIL, inconclusive=[EVIL], memory=memory(3),
                  migration={"status": EVIL, "samples": [], "features": []})
    assert lost.memory is not None
    lost.memory.explanation = EVIL
    for p in lost.memory.mismatches:
        p.region, p.src_hex, p.dst_hex = EVIL, EVIL, EVIL
    run = record(lost, 1, known=EVIL)
    run.mismatch = EVIL
    axes = {a: EVIL for a in ("arch", "accel", "tracking", "smp", "guest", "qemu", "host")}
    cells = [cell_result(EVIL, axes | {"feature": EVIL}, {EVIL: EVIL}, [run], 1,
                         known_loss=EVIL),
             cell_result(EVIL + "2", axes | {"feature": "precopy"}, {}, [], 1, not_run=EVIL)]
    host = HOST.model_copy(update={"hostname": EVIL, "kernel": EVIL, "machine": EVIL})
    return MatrixReport(command=[EVIL], source=EVIL, started_at=EVIL, wall_s=1.0, host=host,
                        repeat=1, known_loss=[EVIL], exit_code=1, exit_reason=EVIL,
                        loss_rate_definition=EVIL, cells=cells)


def test_every_report_string_stays_text() -> None:
    page = render_html(evil_report(), EVIL)
    parsed = Tags()
    parsed.feed(page)
    assert [t for t, _ in parsed.tags if t in ("img", "script")] == ["script"]  # our own
    assert "alert" not in "".join(parsed.scripts)
    assert not [(t, a) for t, attrs in parsed.tags for a in attrs if a.startswith("on")]
    assert EVIL not in page
    assert page.count("&lt;img src=x onerror=alert(1)&gt;&#34;&#39;&amp;") >= 15


def test_page_is_self_contained_and_names_every_cell() -> None:
    r = five_report()
    page = render_html(r, "t")
    parsed = Tags()
    parsed.feed(page)
    urls = [v for _, attrs in parsed.tags for k, v in attrs.items()
            if k in ("src", "href") and v is not None]
    assert urls and all(u.startswith("#cell-") for u in urls)  # nothing to fetch
    assert [a["data-cell-id"] for t, a in parsed.tags if t == "details"] == [c.id for c in
                                                                             r.cells]
    tiles = {a["data-cell"]: a for t, a in parsed.tags if t == "a"}
    assert set(tiles) == {c.id for c in r.cells}
    for c in r.cells:
        assert (tiles[c.id]["data-lost"], tiles[c.id]["data-n"]) == (str(c.stats.lost),
                                                                    str(c.stats.n))
        assert f"kind-{shade(c).kind}" in (tiles[c.id]["class"] or "")


def test_timeline_figure_fits_its_box_and_places_the_moments() -> None:
    passes = [PassSample(pass_no=i, elapsed_s=0.5 * i, status="active", transferred=0,
                         remaining=(40 - 10 * i) << 20, total=64 << 20, dirty_pages_rate=0,
                         mbps=0.0, dirty_sync_count=i, pages_sent=0) for i in range(1, 4)]
    ring = {"reaps": 2, "pages_reaped": 9, "reaps_before": 0, "pages_reaped_before": 0,
            "last_reap_s": 0.7, "last_reap_pages": 4, "ring_full_exits": 0,
            "ring_full_after_last_reap": 0,
            "ring_full_by_vcpu": {}, "bitmap_syncs": 3, "final_flush_s": 1.6,
            "final_flush_pages": 0, "pages_reaped_after_final_flush": 0, "vm_stop_s": 1.55,
            "completed_s": 2.0, "final_state": "completed"}
    f = timeline_figure(RunTimeline.model_validate(
        {"passes": [p.model_dump() for p in passes], "postcopy_at_pass": 2, "ring": ring}))
    assert f is not None
    assert f.t_max == 2.0 and f.mib_max == 30.0
    xs = [x for x, _ in f.points] + [m.x for m in f.markers]
    ys = [y for _, y in f.points]
    assert all(f.pad <= x <= f.width - f.pad for x in xs)
    assert all(f.pad <= y <= f.height - f.pad for y in ys)
    assert ys == sorted(ys)  # less left each pass: lower on the page is larger y
    assert [m.label for m in f.markers] == ["postcopy (pass 2)", "last reap", "final flush",
                                            "VM stop", "completed"]
    assert [m.t_s for m in f.markers] == [1.0, 0.7, 1.6, 1.55, 2.0]
    assert timeline_figure(RunTimeline(passes=[])) is None


def test_record_keeps_the_first_pages_and_the_timeline() -> None:
    lost = report("mismatch", 1, memory=memory(844), migration={
        "status": "completed", "samples": [], "postcopy_at_pass": 3, "downtime_ms": 12})
    run = record(lost, 1)
    assert [hex(p.gpa) for p in run.first_pages] == ["0x3a0000", "0x3a1000", "0x3a2000"]
    assert run.timeline is not None
    assert (run.timeline.postcopy_at_pass, run.timeline.downtime_ms) == (3, 12)
    assert record(FAILED, 1).timeline is None and record(FAILED, 1).first_pages == []


# --- a migrate --repeat, and results read back ---------------------------------------------


def test_a_repeat_is_a_one_cell_matrix() -> None:
    reports = [VERIFIED, LOST, INCONCLUSIVE]
    r = repeat_report(reports, ["qmpctl", "migrate", "--repeat", "3"], HOST, 9.0, 3)
    (only,) = r.cells
    assert [run.verdict for run in only.runs] == ["verified", "mismatch", "inconclusive"]
    assert (only.stats.lost, only.stats.n, only.status) == (1, 2, "run")
    assert (r.exit_code, r.exit_reason) == (1, "3 of 3 run(s): 1 verified, 1 mismatch, "
                                               "1 inconclusive; exit from run 2")
    assert report_host(reports).hostname == "not recorded in a run report"


def test_load_results_reads_both_kinds(tmp_path: Path) -> None:
    matrix = tmp_path / "m.json"
    matrix.write_text(five_report().model_dump_json())
    got, title = load_results(matrix)
    assert title == "qmpctl matrix: preset five" and len(got.cells) == 5
    runs = tmp_path / "r.json"
    runs.write_text(json.dumps([json.loads(r.model_dump_json()) for r in (VERIFIED, LOST)]))
    got, title = load_results(runs)
    assert title == "qmpctl migrate: 2 run(s)" and got.cells[0].stats.lost == 1
    one = tmp_path / "one.json"
    one.write_text(LOST.model_dump_json())
    assert load_results(one)[0].cells[0].stats.lost == 1


@pytest.mark.parametrize(("content", "problem"), [
    (None, "cannot read it (No such file or directory)"),
    ("not json", "not JSON"),
    ('{"cells": [1]}', "not a qmpctl result: command: Field required"),
    ("[]", "neither a `qmpctl matrix --json` result"),
    ('{"verdict": "nonsense"}', "not a qmpctl result: 0.qmpctl_version: Field required"),
])
def test_qmpctl_html_bad_input_is_one_line_exit_2(tmp_path: Path, content: str | None,
                                                   problem: str) -> None:
    src, out = tmp_path / "in.json", tmp_path / "out.html"
    if content is not None:
        src.write_text(content)
    result = CliRunner().invoke(app, ["html", str(src), str(out)])
    assert result.exit_code == 2, result.output
    assert f"qmpctl: {src}: {problem}" in result.output
    assert not out.exists()


@pytest.mark.parametrize("command", [["matrix", "--preset", "smoke"],
                                     ["migrate", "--accel", "tcg"]])
def test_html_paths_that_cannot_be_written_stop_before_anything_runs(
        tmp_path: Path, command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--html", str(tmp_path / "no" / "x.html")])
    assert result.exit_code == 2, result.output
    assert f"--html {tmp_path / 'no' / 'x.html'}: directory" in result.output
    assert "verdict" not in result.output


def test_the_old_full_results_render_page_and_heat_map(tmp_path: Path) -> None:
    """docs/results/full.json is schema 1 (no host axis, no first pages or
    timelines): it still renders, cell for cell."""
    r, _ = load_results(ROOT / "docs" / "results" / "full.json")
    assert r.schema_version == 1
    page = render_html(r, "full")
    parsed = Tags()
    parsed.feed(page)
    assert len([t for t, _ in parsed.tags if t == "details"]) == len(r.cells) == 99
    kinds: dict[str, Any] = {}
    for t, attrs in parsed.tags:
        if t == "a" and attrs.get("data-kind"):
            kinds[attrs["data-kind"] or ""] = kinds.get(attrs["data-kind"] or "", 0) + 1
    assert kinds == {k: sum(1 for c in r.cells if shade(c).kind == k) for k in kinds}
    assert kinds["not-run"] == 6 and sum(kinds.values()) == 99
    png = tmp_path / "full.png"
    plot_matrix(r, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tcg_beside_its_folded_ring_cells_is_named() -> None:
    """accel constant (tcg): TCG's own tracking is the column's name, not blank."""
    cells = expand(parse_spec({"axes": {"accel": ["tcg"], "tracking": ["ring"],
                                        "feature": ["precopy", "postcopy"]}}, "t"))
    g = grid(MatrixState(cells, 1, ()).report(["qmpctl"], "t", HOST))
    assert g.columns == ["tcg", "ring 4096"]


def test_docs_full_html_is_the_page_of_full_json() -> None:
    """docs/results/full-report.html is rendered from full.json by this renderer;
    regenerate with `qmpctl html docs/results/full.json docs/results/full-report.html`."""
    r, title = load_results(ROOT / "docs" / "results" / "full.json")
    assert (ROOT / "docs" / "results" / "full-report.html").read_text() == render_html(r, title)
