"""Writing the reproducer directory: everything checked first (the run can
be reproduced, its guest image and QEMUs exist, OUT is free), then written."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from ..core.errors import UsageError
from ..host.proc import send_buffer_max
from ..report.write import write_report
from .bug import GuestImage, bug_report, command_text
from .inputs import LoadedRun, choose, load_runs
from .plan import ReproPlan, guest_kernel, make_plan, stuck_bound

SCRIPTS = ("repro.py", "compare.py")  # qmpctl/repro/files/, copied as they are
LOGS = (".log", ".serial")


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"-o {out}: exists and is not an empty directory")
    if not out.parent.is_dir():
        raise UsageError(f"-o {out}: its parent directory does not exist")


def _check_files(plan: ReproPlan, chosen: LoadedRun) -> Path:
    """The run's guest image (returned) and QEMU binaries must still exist."""
    c = chosen.report.config
    assert c is not None
    kernel = Path(guest_kernel(c.qemu_argv_src))
    if not kernel.is_file():
        raise UsageError(f"{chosen.source}: the run's guest image {kernel} is missing")
    for side, binary in (("source", c.qemu_src), ("destination", c.qemu_dst)):
        if not Path(binary).is_file():
            raise UsageError(f"{chosen.source}: the {side} QEMU {binary} is missing")
    return kernel


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def default_out(started_at: str) -> Path:
    """./repro-<the run's start, UTC, to the second> (pure)."""
    return Path("repro-" + dt.datetime.fromisoformat(started_at).strftime("%Y%m%dT%H%M%S"))


def make_repro(paths: Sequence[Path], out: Path | None
               ) -> tuple[LoadedRun, Path, list[Path]]:
    """Write the reproducer of the first lost run in `paths` to `out`
    (None: `default_out`); return that run, `out` and the files written."""
    runs = load_runs(paths)
    chosen = choose(runs)
    plan = make_plan(chosen.report, stuck_bound(chosen.report, send_buffer_max()))
    kernel = _check_files(plan, chosen)
    out = out if out is not None else default_out(chosen.report.started_at)
    _check_out(out)
    out.mkdir(exist_ok=True)
    (out / "guest").mkdir()
    written = [Path(shutil.copy2(kernel, out / plan.guest_image))]
    image = GuestImage(path=plan.guest_image, source=str(kernel),
                       size=kernel.stat().st_size, sha256=_sha256(kernel))
    for name in SCRIPTS:
        target = out / name
        target.write_bytes(resources.files(__package__).joinpath("files", name).read_bytes())
        target.chmod(0o755)
        written.append(target)
    texts = {
        "plan.json": plan.model_dump_json(indent=2) + "\n",
        "BUG.md": bug_report(chosen.report, [r.report for r in runs],
                             [r.source for r in runs], plan, image),
        "qemu-src.cmdline": "# The source QEMU as qmpctl launched it ({run}, {repro}: BUG.md).\n"
                       + command_text(plan.argv["src"]) + "\n",
        "qemu-dst.cmdline": "# The destination QEMU, as qmpctl launched it.\n"
                       + command_text(plan.argv["dst"]) + "\n",
        "report.json": chosen.report.model_dump_json(indent=2) + "\n",
    }
    for name, text in texts.items():
        write_report(out / name, text, f"qmpctl repro: {name}")
        written.append(out / name)
    if chosen.logs is not None:  # the run's own QEMU logs and serial transcripts
        logs = out / "qmpctl-logs"
        logs.mkdir()
        for f in sorted(Path(chosen.logs).iterdir()):
            if f.suffix in LOGS and f.is_file() and not f.name.startswith("schema"):
                written.append(Path(shutil.copy2(f, logs / f.name)))
    return chosen, out, written
