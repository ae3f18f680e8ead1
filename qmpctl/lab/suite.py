"""Work this host cannot do, done in a lab that can, one lab boot for all of
it: pytest tests (each test's outcome read back from the lab's JUnit XML),
and any other command (`run_command`: `qmpctl matrix` runs a lab host's
cells this way)."""

from __future__ import annotations

import asyncio
import io
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..core.errors import QmpctlError
from ..guests.images import checkout_root, images_dir
from ..host.kvm import LAB_ENV, Arch, host_arch, probe_kvm
from .image import find_image
from .job import plan_job
from .machine import LabResult, LabSpec, choose_accel, nested_enabled, run_lab

IN_LAB = LAB_ENV  # set inside a lab: never delegate again from there


@dataclass(frozen=True)
class LabOutcome:
    outcome: Literal["passed", "failed", "skipped", "xfailed"]
    message: str = ""


def junit_address(nodeid: str) -> tuple[str, str]:
    """(classname, name) pytest's junitxml gives a node id (pure)."""
    path, *names = nodeid.split("::")
    module = path.removesuffix(".py").replace("/", ".")
    return ".".join([module, *names[:-1]]), names[-1] if names else module


def parse_outcomes(xml: str) -> dict[tuple[str, str], LabOutcome]:
    """Each testcase's outcome from a JUnit XML file (pure)."""
    out = {}
    for case in ET.parse(io.StringIO(xml)).getroot().iter("testcase"):
        key = (case.get("classname", ""), case.get("name", ""))
        failed = case.find("failure")
        if failed is None:
            failed = case.find("error")
        skipped = case.find("skipped")
        if failed is not None:
            out[key] = LabOutcome("failed", f"{failed.get('message', '')}\n{failed.text or ''}")
        elif skipped is not None:
            xfail = skipped.get("type") == "pytest.xfail"
            out[key] = LabOutcome("xfailed" if xfail else "skipped", skipped.get("message", ""))
        else:
            out[key] = LabOutcome("passed")
    return out


def lab_available(arch: Arch) -> str | None:
    """Why no lab of `arch` can run here (None: one can)."""
    if os.environ.get(IN_LAB):
        return f"already inside a {os.environ[IN_LAB]} lab"
    if checkout_root() is None:  # a lab packs the checkout qmpctl runs from
        return "a lab runs a source checkout of qmpctl; this qmpctl is an installed package"
    try:
        find_image(images_dir("lab", arch, "manifest.txt"), arch)
    except QmpctlError as exc:
        return exc.message
    return None


async def run_command(arch: Arch, argv: Sequence[str], cwd: Path, checkout: Path,
                      write: Callable[[str], object], timeout: float = 3600.0) -> LabResult:
    """Boot a lab of `arch` with this host's accelerator choice, run `argv` in
    `cwd` against `checkout`, stream its console to `write`, and bring back
    what it wrote (`machine.run_lab`)."""
    image = find_image(images_dir("lab", arch, "manifest.txt"), arch)
    accel = choose_accel(arch, "auto", probe_kvm(), host_arch(), nested_enabled())
    plan = plan_job(argv, cwd, checkout)
    return await run_lab(LabSpec(arch, timeout=timeout), image, accel, plan, write=write)


def run_in_lab(arch: Arch, nodeids: Sequence[str], rootdir: Path, checkout: Path,
               scratch: Path, extra: Sequence[str] = ()) -> tuple[LabResult, dict[str, LabOutcome],
                                                               str]:
    """Run `nodeids` with pytest inside one lab; each one's outcome, the lab's
    figures and its console output."""
    junit = scratch / f"lab-{arch}-junit.xml"
    argv = ["python3", "-m", "pytest", "-p", "no:cacheprovider", "-q", "--qmpctl-lab=off",
            f"--junitxml={junit}", "-o", "junit_family=xunit1", *extra, *nodeids]
    console: list[str] = []
    result = asyncio.run(run_command(arch, argv, rootdir, checkout, console.append))
    outcomes = parse_outcomes(junit.read_text()) if junit.is_file() else {}
    by_id = {n: outcomes.get(junit_address(n), LabOutcome(
        "failed", f"the lab's pytest reported nothing for {n} (exit {result.exit_code})"))
        for n in nodeids}
    return result, by_id, "".join(console)
