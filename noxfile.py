"""Developer sessions. `./bootstrap test` runs lint, typecheck, docs, tests,
examples, smoke and package in the project's .venv (`nox --no-venv`); `nox -s bench` prints the
verification engine's throughput against the machine's plain memory-compare
speed.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "docs", "tests", "examples", "smoke", "package"]
SOURCES = ["qmpctl", "tests", "noxfile.py", "benchmarks", "examples", "docs"]
ROOT = Path(__file__).resolve().parent


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff, and the import-layering contract in pyproject.toml (lint-imports)."""
    session.run(sys.executable, "-m", "ruff", "check", *SOURCES)
    session.run(str(Path(sys.executable).with_name("lint-imports")))


@nox.session(venv_backend="none")
def typecheck(session: nox.Session) -> None:
    session.run(sys.executable, "-m", "mypy")


@nox.session(venv_backend="none")
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs.yml, docs/) built with `mkdocs build
    --strict` into site/: a broken link or anchor, a page missing from the
    navigation, or a reference page the code no longer generates fails it.
    The reference pages are generated from the code at every build
    (docs/gen_reference.py), so they cannot be stale."""
    # mkdocs-material 9.7+ prints a notice about MkDocs 2 on every build: noise in CI logs.
    quiet = {"NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    session.run(sys.executable, "-m", "mkdocs", "build", "--strict", "--clean",
                "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(ROOT / "site"),
                env=quiet)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The suite; JUnit XML (per-test times) in reports/, the 25 slowest
    tests in the log (CI must stay well under 30 minutes), and every failed
    test's runs (QEMU logs, serial output, reports, QMP transcript) in
    reports/artifacts/, so that a failure seen once can be read afterwards."""
    session.run(sys.executable, "-m", "pytest", "--durations=25",
                "--junitxml=reports/tests-junit.xml", "--qmpctl-artifacts=reports/artifacts",
                *session.posargs)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    session.run(sys.executable, "benchmarks/bench_compare.py", *session.posargs)


@nox.session(venv_backend="none")
def bench_scale(session: nox.Session) -> None:
    """Time to verdict and qmpctl's peak memory by guest size (table + PNG)."""
    session.run(sys.executable, "benchmarks/bench_scale.py", *session.posargs)


@nox.session(venv_backend="none")
def bench_fleet(session: nox.Session) -> None:
    """The fleet: scheduling overhead per task against a local run of the same
    cells, and the tasks per second the scheduler sustains (ratios, one run).
    It starts QEMU: run it as `flock /tmp/qmpctl-cpu.lock nox -s bench_fleet`."""
    session.run(sys.executable, "benchmarks/bench_fleet.py", *session.posargs)


@nox.session(venv_backend="none")
def bench_verdict(session: nox.Session) -> None:
    """Time per cell: `qmpctl migrate --accel tcg` against a raw QMP script of
    the same migration (benchmarks/raw_migrate.py), N interleaved pairs
    (`-- --pairs N`, default 5), the medians, their ratio and qmpctl's phases.
    It starts QEMU: run it as `flock /tmp/qmpctl-cpu.lock nox -s bench_verdict`."""
    session.run(sys.executable, "benchmarks/bench_verdict.py", *session.posargs)


@nox.session(venv_backend="none")
def bench_linux(session: nox.Session) -> None:
    """Linux guests: boot-to-workload, throughput around migration, ring vs bitmap."""
    session.run(sys.executable, "benchmarks/bench_linux.py", *session.posargs)


@nox.session(venv_backend="none")
def its(session: nox.Session) -> None:
    """The arm64 GICv3 ITS regression suite, with JUnit XML for CI."""
    session.run(sys.executable, "-m", "pytest", "-m", "its",
                "--junitxml=reports/its-junit.xml", *session.posargs)


@nox.session(venv_backend="none")
def mutation(session: nox.Session) -> None:
    """Mutation testing of the verdict logic ([tool.mutmut] in pyproject.toml:
    report/verdict.py and the verify/ modules that classify, locate and judge
    differences) against the unit tests; prints the killed and surviving
    mutants. Minutes of CPU: not in CI."""
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    # mutants/ holds the sources, not the built guest images: point it at ours
    images = os.environ.get("QMPCTL_IMAGES", str(ROOT / "images" / "out"))
    session.run(mutmut, "run", "--max-children", str(os.cpu_count() or 1),
                env={"QMPCTL_IMAGES": images})
    session.run(mutmut, "results")


@nox.session(venv_backend="none")
def lab(session: nox.Session) -> None:
    """The arm64 KVM ITS tests, the lab's own tests and the matrix's lab host,
    run in the aarch64 lab, then `lab_x86` (qmpctl lab; both labs built by
    set-up). `--long`: the ring sizes CI leaves out run here. JUnit XML in
    reports/."""
    session.run(sys.executable, "-m", "pytest", "--qmpctl-lab=aarch64",
                "tests/e2e/test_lab.py", "tests/e2e/test_its_aarch64.py",
                "tests/e2e/test_matrix.py", "-k", "kvm or lab", "--long",
                "--junitxml=reports/lab-junit.xml", *session.posargs)
    lab_x86(session)


@nox.session(venv_backend="none")
def lab_x86(session: nox.Session) -> None:
    """The x86 KVM tests (ring, bitmap, dirty limits, two writers) against the
    x86_64 lab's working KVM: this host's kvm_pvm loses ring pages, so here
    they can only show a loss is located; there they must verify. One lab
    boot, about 90 s; JUnit XML in reports/lab-x86_64-junit.xml. Not in CI
    yet: in 1 of its 4 runs so far the first guest of the lab boot printed
    nothing in 60 s (docs/testing.md). It takes no pytest arguments."""
    session.run(str(Path(sys.executable).with_name("qmpctl")), "lab", "run", "--arch", "x86_64",
                "--", "python3", "-m", "pytest", "-m", "qmpctl_kvm and not its",
                "tests/e2e/test_migrate_x86.py", "tests/e2e/test_smp.py",
                "tests/e2e/test_features.py", "--junitxml=reports/lab-x86_64-junit.xml")


@nox.session(venv_backend="none")
def examples(session: nox.Session) -> None:
    """examples/ci-suite as a user runs it: copied outside the repository, run
    against the installed qmpctl (plugin from its entry point), JUnit XML in
    reports/. This host is kvm_pvm, whose dirty ring is known to lose pages:
    hence --qmpctl-xfail-known-losses (lost pages only; anything else fails)."""
    junit = ROOT / "reports" / "examples-junit.xml"
    with tempfile.TemporaryDirectory(prefix="qmpctl-examples-") as tmp:
        suite = Path(tmp) / "ci-suite"
        shutil.copytree(ROOT / "examples" / "ci-suite", suite)
        with session.chdir(suite):
            session.run(sys.executable, "-m", "pytest", "--qmpctl-xfail-known-losses",
                        f"--junitxml={junit}")


@nox.session(venv_backend="none")
def smoke(session: nox.Session) -> None:
    """`qmpctl matrix --preset smoke` for CI, JUnit and JSON in reports/. This
    host is kvm_pvm, whose dirty ring is known to lose pages: those losses are
    counted and reported as JUnit failures but do not fail the session
    (--known-loss tracking=ring); anything else does."""
    (ROOT / "reports").mkdir(exist_ok=True)
    session.run(str(Path(sys.executable).with_name("qmpctl")), "matrix", "--preset", "smoke",
                "--junit", "reports/smoke-junit.xml", "--json", "reports/smoke.json",
                "--known-loss", "tracking=ring")  # posargs are pytest's (./bootstrap test)


def _stdout(session: nox.Session, argv: list[str], env: dict[str, str]) -> str:
    """A command's stdout alone (session.run mixes in stderr), logged; failing fails."""
    session.log(" ".join(argv))
    proc = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        session.error(f"exit {proc.returncode}: {proc.stderr}")
    return proc.stdout


# Blank in the installed package's runs: nothing may lead back to the checkout.
OUTSIDE_ENV = {"PYTHONPATH": "", "QMPCTL_IMAGES": "", "QMPCTL_CACHE": "", "VIRTUAL_ENV": ""}


@nox.session(venv_backend="none")
def package(session: nox.Session) -> None:
    """The package as a user gets it: sdist and wheel built with `python -m
    build` (the wheel from the sdist) and checked with `twine check`; the wheel
    installed into a fresh venv outside the repository and there, with the
    checkout on no path: --version against the metadata, doctor, a small TCG
    migration on the shipped images, `qmpctl images build` into a fresh cache,
    and examples/ci-suite (copied) against the installed package."""
    with tempfile.TemporaryDirectory(prefix="qmpctl-package-") as tmp_name:
        tmp = Path(tmp_name)
        dist = tmp / "dist"
        session.run(sys.executable, "-m", "build", "--quiet", "--outdir", str(dist), str(ROOT))
        built = sorted(str(f) for f in dist.iterdir())
        session.run(sys.executable, "-m", "twine", "check", "--strict", *built)
        wheel = next(dist.glob("*.whl"))
        session.log(f"{wheel.name}: {wheel.stat().st_size // 1024} KiB")
        venv = tmp / "venv"
        session.run(sys.executable, "-m", "venv", str(venv))
        python, qmpctl = str(venv / "bin" / "python"), str(venv / "bin" / "qmpctl")
        env = {**OUTSIDE_ENV, "XDG_CACHE_HOME": str(tmp / "cache")}
        session.run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    f"{wheel}[pytest]", env=env)
        work = tmp / "work"
        work.mkdir()
        with session.chdir(work):
            where = _stdout(session, [python, "-c", "import qmpctl, sys; print(qmpctl.__file__); "
                                      "print(*sys.path, sep='\\n')"], env)
            if str(ROOT) in where or not where.startswith(str(venv)):
                session.error(f"the installed qmpctl is not the venv's alone:\n{where}")
            wanted = _stdout(session, [python, "-c", "import importlib.metadata as m; "
                                       "print(m.version('qmpctl'))"], env).strip()
            said = _stdout(session, [qmpctl, "--version"], env)
            if said.split() != ["qmpctl", wanted]:
                session.error(f"qmpctl --version said {said!r}, the metadata {wanted!r}")
            doctor = json.loads(_stdout(session, [qmpctl, "doctor", "--json"], env))
            sources = {i["name"]: i["source"] for i in doctor["images"]}
            if sources["x86_64/wave.elf"] != "package":
                session.error(f"doctor: the wave guest is not the package's: {sources}")
            session.run(qmpctl, "migrate", "--accel", "tcg", "--ram", "64", "--wave-end", "18",
                        "--report", str(work / "report.json"), "--html",
                        str(work / "report.html"), env=env)
            report = json.loads((work / "report.json").read_text())
            if report["qmpctl_version"] != wanted:
                session.error(f"the report says qmpctl {report['qmpctl_version']}")
            page = (work / "report.html").read_text()  # the wheel ships the page's template
            if f'data-verdict="{report["verdict"]}"' not in page:
                session.error("the --html page does not show the run's verdict")
            session.run(qmpctl, "images", "build", env=env)
            suite = work / "ci-suite"
            shutil.copytree(ROOT / "examples" / "ci-suite", suite)
        junit = ROOT / "reports" / "package-junit.xml"
        with session.chdir(suite):
            session.run(python, "-m", "pytest", "--qmpctl-xfail-known-losses",
                        f"--junitxml={junit}", env=env)
        said_junit = {p.get("value") for p in ET.parse(junit).iter("property")
                      if p.get("name") == "qmpctl_version"}
        if said_junit != {wanted}:
            session.error(f"the JUnit file says qmpctl {said_junit}, the metadata {wanted}")
