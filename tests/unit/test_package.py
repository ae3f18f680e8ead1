"""The installable package: its version in one place (`qmpctl.__version__`,
where an installed qmpctl finds its images, and `qmpctl images build`'s
plan and messages. (`nox -s package` builds, installs and runs the wheel.)"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

import qmpctl
from qmpctl.cli import app
from qmpctl.core.errors import HostError, UsageError
from qmpctl.doctor import image_statuses
from qmpctl.guests import build, images
from qmpctl.guests.needs import BAREMETAL_NEEDS
from qmpctl.lab import suite as lab_suite
from qmpctl.report.text import summary_lines
from qmpctl.scenario.runner import new_report

ROOT = Path(__file__).resolve().parents[2]


def test_the_version_is_written_once() -> None:
    """pyproject.toml takes the version from `qmpctl.__version__`, a literal
    (a lab's checkout on PYTHONPATH, with no metadata, reads it as well)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]
    assert "version" not in project["project"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "qmpctl.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", qmpctl.__version__)


def test_version_is_the_package_metadatas_everywhere() -> None:
    installed = metadata.version("qmpctl")
    assert qmpctl.__version__ == installed
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"qmpctl {installed}\n"
    report = new_report()
    assert report.qmpctl_version == installed
    assert summary_lines(report)[0].endswith(f"qmpctl {installed}")


def test_version_flag_needs_no_command_and_runs_nothing() -> None:
    proc = subprocess.run([sys.executable, "-m", "qmpctl", "--version"], capture_output=True,
                          text=True, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["qmpctl", metadata.version("qmpctl")]


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """qmpctl as a wheel installs it: no checkout around it, package data in
    tmp_path/pkg, the cache in tmp_path/cache."""
    monkeypatch.delenv("QMPCTL_IMAGES", raising=False)
    monkeypatch.delenv("QMPCTL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(images, "checkout_root", lambda: None)
    monkeypatch.setattr(images, "DATA", tmp_path / "pkg")
    monkeypatch.setattr(build, "checkout_root", lambda: None)
    monkeypatch.setattr(build, "DATA", tmp_path / "pkg")
    return tmp_path


def _put(root: Path, *parts: str) -> Path:
    path = root.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF")
    return path


def test_installed_lookup_order_is_cache_then_package_data(installed: Path) -> None:
    cache = installed / "xdg" / "qmpctl" / "images" / qmpctl.__version__
    package = installed / "pkg" / "images" / "out"
    assert [(r.source, r.path) for r in images.image_roots()] == [
        ("cache", cache), ("package", package)]
    shipped = _put(package, "x86_64", "wave.elf")
    assert images.image_path("x86_64", "wave.elf") == shipped
    built = _put(cache, "x86_64", "wave.elf")
    assert images.image_path("x86_64", "wave.elf") == built  # the cache comes first


def test_another_versions_cache_is_not_used(installed: Path) -> None:
    _put(installed / "xdg" / "qmpctl" / "images" / "0.0.1", "x86_64", "linux", "vmlinuz")
    with pytest.raises(HostError, match=r"qmpctl images build --linux`"):
        images.image_path("x86_64", "linux", "vmlinuz")


def test_missing_image_names_where_it_looked_and_the_command(installed: Path) -> None:
    with pytest.raises(HostError) as exc:
        images.image_path("lab", "aarch64", "manifest.txt")
    assert "qmpctl images build --lab aarch64" in exc.value.message
    assert str(installed / "pkg" / "images" / "out") in exc.value.message
    assert "make -C" not in exc.value.message  # no checkout to run make in


def test_qmpctl_images_overrides_everything(installed: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _put(installed / "pkg" / "images" / "out", "x86_64", "wave.elf")
    monkeypatch.setenv("QMPCTL_IMAGES", str(installed / "mine"))
    assert [r.source for r in images.image_roots()] == ["QMPCTL_IMAGES"]
    with pytest.raises(HostError):
        images.image_path("x86_64", "wave.elf")


def test_cache_is_overridable(installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QMPCTL_CACHE", str(installed / "elsewhere"))
    assert images.cache_images() == installed / "elsewhere" / "images" / qmpctl.__version__


def test_a_checkout_prefers_its_own_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test runs from the checkout: its images/out come before the cache."""
    monkeypatch.delenv("QMPCTL_IMAGES", raising=False)
    assert images.checkout_root() == ROOT
    roots = images.image_roots()
    assert [r.source for r in roots] == ["checkout", "cache", "package"]
    assert roots[0].path == ROOT / "images" / "out"
    assert "make -C images linux" in images.build_hint("x86_64", "linux", "vmlinuz")


def test_build_plan_installed(installed: Path) -> None:
    recipes = installed / "pkg" / "images"
    recipes.mkdir(parents=True)
    (recipes / "Makefile").write_text("all:\n")
    plan = build.plan_build(linux=True, labs=["aarch64", "aarch64"])
    assert plan.recipes == recipes
    assert plan.out == images.cache_images()
    assert plan.goals == ("baremetal", "linux", "lab-aarch64")
    assert plan.variables == (f"LINUX_CACHE={installed / 'xdg' / 'qmpctl' / 'linux'}",)
    assert {"mmdebstrap", "cpio", "aarch64-linux-gnu-gcc"} <= set(plan.needs)
    assert build.plan_build(False, []).goals == ("baremetal",)


def test_build_without_recipes_says_so(installed: Path) -> None:
    with pytest.raises(HostError, match="no image recipes"):
        build.plan_build(False, [])


def test_bad_lab_is_a_usage_error_from_the_cli() -> None:
    with pytest.raises(UsageError, match="--lab riscv: no such lab"):
        build.plan_build(False, ["riscv"])
    result = CliRunner().invoke(app, ["images", "build", "--lab", "riscv"])
    assert result.exit_code == 2
    assert "--lab riscv: no such lab; one of x86_64, aarch64" in result.output


def test_missing_tools_are_named_with_their_debian_packages(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    (tmp_path / "make").write_text("#!/bin/sh\n")
    (tmp_path / "make").chmod(0o755)
    missing = build.missing_tools(BAREMETAL_NEEDS)
    assert missing == ["gcc", "ld", "aarch64-linux-gnu-gcc"]
    text = build.missing_message(BAREMETAL_NEEDS, missing)
    assert text.endswith("`apt-get install binutils gcc gcc-aarch64-linux-gnu` (as root)")
    plan = build.BuildPlan(tmp_path, tmp_path / "out", ("baremetal",), BAREMETAL_NEEDS)
    with pytest.raises(HostError, match="missing gcc, ld, aarch64-linux-gnu-gcc"):
        build.run_build(plan)
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_lab_requirements_are_runtime_and_pytest_extra() -> None:
    requires = ['numpy>=1.26', 'pytest>=8; extra == "pytest"', "ruff>=0.5; extra == 'dev'",
                'pytest-asyncio>=0.23 ; extra == "pytest"']
    assert build.lab_requirements(requires) == ["numpy>=1.26", "pytest>=8",
                                                "pytest-asyncio>=0.23"]
    declared = build.lab_requirements(metadata.requires("qmpctl") or [])
    assert any(r.startswith("pydantic") for r in declared)
    assert any(r.startswith("pytest-asyncio") for r in declared)
    assert not any(r.startswith("ruff") for r in declared)


def test_sdist_manifest_carries_what_the_wheel_build_needs() -> None:
    """setup.py builds the bare-metal guests from guestload/ and images/: the
    sdist (MANIFEST.in) must hold them."""
    manifest = (ROOT / "MANIFEST.in").read_text()
    assert "graft guestload" in manifest
    for name in ("images/Makefile", "images/*.mk", "images/lab/*.sh", "images/linux/*.sh"):
        assert name in manifest


def test_doctor_says_where_each_image_comes_from(installed: Path) -> None:
    _put(installed / "pkg" / "images" / "out", "x86_64", "wave.elf")
    _put(images.cache_images(), "aarch64", "its.elf")
    status = {s.name: s for s in image_statuses()}
    assert status["x86_64/wave.elf"].source == "package"
    assert status["aarch64/its.elf"].source == "cache"
    linux = status["x86_64/linux/vmlinuz"]
    assert linux.path is None and linux.build == "`qmpctl images build --linux`"
    assert status["lab/x86_64/manifest.txt"].build == "`qmpctl images build --lab x86_64`"


def test_an_installed_qmpctl_skips_lab_tests_saying_why(installed: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(lab_suite.IN_LAB, raising=False)
    monkeypatch.setattr(lab_suite, "checkout_root", lambda: None)
    assert "installed package" in (lab_suite.lab_available("aarch64") or "")
