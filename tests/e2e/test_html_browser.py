"""The HTML report in a real browser: a real small matrix (two TCG cells, and
one the product names that TCG folds away, listed as not run) and a real
`migrate --repeat 2`, each written with --html and --json once per session,
then opened in Debian's headless chromium through its chromedriver
(Selenium). The pages must render without a JavaScript error, show the
numbers the JSON holds, and open a cell's runs when its tile is clicked.
Screenshots are kept in reports/ (a CI artifact). About 20 s here."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from qmpctl.cli import app
from tests.conftest import our_qemu_processes

pytestmark = pytest.mark.qemu

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / "reports"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# What works on a closed network: nothing that phones home, a fresh profile.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000"]
AXES = """
repeat = 1
[options]
ram = 64
wave_end = 18
timeout = 120.0
[axes]
accel = ["tcg"]
tracking = ["ring"]
feature = ["precopy", "postcopy"]
"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    """A matrix's and a repeat's page and JSON, made once by real runs."""
    out = tmp_path_factory.mktemp("html")
    before = our_qemu_processes()  # another suite's on a shared host are not ours to judge
    (out / "axes.toml").write_text(AXES)
    runner = CliRunner()
    m = runner.invoke(app, ["matrix", "--axes", str(out / "axes.toml"), "--json",
                            str(out / "m.json"), "--html", str(out / "m.html")])
    assert m.exit_code == 0, m.output
    r = runner.invoke(app, ["migrate", "--accel", "tcg", "--ram", "64", "--wave-end", "18",
                            "--repeat", "2", "--report", str(out / "r.json"),
                            "--html", str(out / "r.html")])
    assert r.exit_code == 0, r.output
    assert [p for p in our_qemu_processes() if p not in before] == []
    return {"matrix": (out / "m.html", json.loads((out / "m.json").read_text())),
            "repeat": (out / "r.html", json.loads((out / "r.json").read_text()))}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: the HTML report's browser test needs "
                    "Debian's chromium and chromium-driver (tools/install-host.sh installs "
                    "them; `apt-get install chromium chromium-driver`)", pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        pytest.fail(f"selenium missing ({exc}): pip install -e '.[dev]'", pytrace=False)
    profile = tempfile.mkdtemp(prefix="qmpctl-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver: Any, page: Path) -> None:
    driver.get(page.as_uri())
    assert driver.execute_script("return document.readyState") == "complete"


def js_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


TILES_JS = """
return Array.from(document.querySelectorAll("#heatmap a.tile")).map(t => ({
  cell: t.getAttribute("data-cell"),
  lines: Array.from(t.querySelectorAll(".line")).map(e => e.innerText),
  badges: Array.from(t.querySelectorAll(".badge")).map(e => e.innerText),
  shown: t.getBoundingClientRect().width > 0 && t.getBoundingClientRect().height > 0}));
"""
SUMMARIES_JS = """
return Object.fromEntries(Array.from(document.querySelectorAll("details.cell")).map(
  d => [d.getAttribute("data-cell-id"), d.querySelector("summary .verdicts").innerText]));
"""


def tile_lines(cell: dict[str, Any]) -> list[str]:
    """What a tile must say, from the JSON alone."""
    s = cell["stats"]
    if cell["status"] == "not-run":
        return ["not run"]
    if not s["runs"]:
        return ["interrupted", "no run"]
    if s["n"] == 0:  # no run compared: what they ended in, most first
        rest = sorted(s["verdicts"].items(), key=lambda vk: (-vk[1], vk[0]))
        return ["no verdict", *(f"{k} {v}" for v, k in rest)][:2]
    lo, hi = s["loss_ci95"]
    return [f"{s['lost']}/{s['n']} lost", f"{s['loss_rate']:.0%} [{lo:.0%}, {hi:.0%}]"]


def check_page(driver: Any, page: Path, cells: list[dict[str, Any]], shot: str,
               timelines: bool = True) -> None:
    from selenium.webdriver.common.by import By

    open_page(driver, page)
    assert js_errors(driver) == []
    REPORTS.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(REPORTS / f"{shot}.png"))
    # One round trip for every tile and summary (99 of each in `full`).
    tiles = {t["cell"]: t for t in driver.execute_script(TILES_JS)}
    summaries = driver.execute_script(SUMMARIES_JS)
    assert sorted(tiles) == sorted(c["id"] for c in cells)
    for cell in cells:
        tile = tiles[cell["id"]]
        assert tile["shown"], cell["id"]
        assert tile["lines"][:2] == tile_lines(cell), cell["id"]
        assert tile["badges"] == (["K"] if cell["known_loss"] else []), cell["id"]
        assert summaries[cell["id"]] == (
            ", ".join(f"{k} {v}" for v, k in cell["stats"]["verdicts"].items()) or "no run")
    totals = {e.get_attribute("data-verdict"): int(e.text.split()[0]) for e in
              driver.find_elements(By.CSS_SELECTOR, "#totals [data-verdict]")}
    want: dict[str, int] = {}
    for cell in cells:
        for run in cell["runs"]:
            want[run["verdict"]] = want.get(run["verdict"], 0) + 1
    assert totals == want

    ran = next(c for c in cells if c["runs"])
    details = driver.find_element(By.CSS_SELECTOR, f'details[data-cell-id="{ran["id"]}"]')
    assert details.get_property("open") is False
    rows = details.find_elements(By.CSS_SELECTOR, "tr.run")
    assert rows and not any(r.is_displayed() for r in rows)
    driver.find_element(By.CSS_SELECTOR, f'#heatmap a.tile[data-cell="{ran["id"]}"]').click()
    assert details.get_property("open") is True
    rows = details.find_elements(By.CSS_SELECTOR, "tr.run")
    assert [r.get_attribute("data-verdict") for r in rows if r.is_displayed()] == [
        run["verdict"] for run in ran["runs"]]
    assert [r.find_element(By.CSS_SELECTOR, ".verdict").text for r in rows] == [
        run["verdict"] for run in ran["runs"]]
    svgs = details.find_elements(By.CSS_SELECTOR, "svg.timeline")
    assert len(svgs) == (len(ran["runs"]) if timelines else 0)  # each run migrated
    assert all(len(s.find_elements(By.CSS_SELECTOR, "circle")) >= 1 for s in svgs)
    assert js_errors(driver) == []
    assert driver.save_screenshot(str(REPORTS / f"{shot}-cell.png"))


def test_matrix_page_in_chromium(browser: Any, pages: dict[str, tuple[Path, Any]]) -> None:
    page, data = pages["matrix"]
    cells = data["cells"]
    assert [c["status"] for c in cells] == ["run", "not-run", "run", "not-run"]
    check_page(browser, page, cells, "html-report-matrix")


def test_repeat_page_in_chromium(browser: Any, pages: dict[str, tuple[Path, Any]]) -> None:
    page, reports = pages["repeat"]
    assert [r["verdict"] for r in reports] == ["verified", "verified"]
    from qmpctl.matrix.repeat import load_results

    matrix, _ = load_results(pages["repeat"][0].with_name("r.json"))
    cells = [json.loads(c.model_dump_json()) for c in matrix.cells]
    assert cells[0]["stats"]["runs"] == 2
    check_page(browser, page, cells, "html-report-repeat")
    command = browser.find_element("css selector", "p.meta code").text
    assert "--repeat 2" in command and "--accel tcg" in command


def test_full_preset_page_in_chromium(browser: Any) -> None:
    """docs/results/full-report.html, the page of the schema-1 full.json (which kept
    no timelines): 99 tiles with the JSON's figures, no JavaScript error."""
    data = json.loads((ROOT / "docs" / "results" / "full.json").read_text())
    assert len(data["cells"]) == 99
    check_page(browser, ROOT / "docs" / "results" / "full-report.html", data["cells"],
               "html-report-full", timelines=False)
