"""What `qmpctl migrate` imports before its guest starts (docs/testing.md,
"Time per run"): the modules other commands need, and numpy, load later."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qmpctl.core.lazy import LazyModule

ROOT = Path(__file__).resolve().parents[2]

# Each is imported by the command or the phase that needs it; a top-level
# import of one of them puts it back on every run's start-up.
LATER = ("numpy", "qmpctl.lab.machine", "qmpctl.lab.job", "qmpctl.lab.image",
         "qmpctl.host.tether", "qmpctl.matrix.execute", "qmpctl.matrix.bisect",
         "qmpctl.fleet", "qmpctl.repro", "qmpctl.report.schema", "qmpctl.doctor",
         "rich.live", "tarfile", "tomllib")


def test_the_cli_starts_without_other_commands_modules_or_numpy() -> None:
    code = "import json, sys; import qmpctl.cli; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    loaded = set(json.loads(out))
    assert "qmpctl.scenario.runner" in loaded  # the probe imported what `migrate` runs
    assert sorted(m for m in LATER if m in loaded) == []


def test_a_lazy_module_imports_on_first_read(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "qmpctl_lazy_probe.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "qmpctl_lazy_probe", raising=False)
    lazy = LazyModule("qmpctl_lazy_probe")
    assert "qmpctl_lazy_probe" not in sys.modules
    assert lazy.VALUE == 42
    assert sys.modules["qmpctl_lazy_probe"].VALUE == 42
    assert lazy.__dict__["VALUE"] == 42  # later reads are the module's own attributes
    monkeypatch.delitem(sys.modules, "qmpctl_lazy_probe")


def test_a_lazy_module_that_cannot_import_fails_on_first_read() -> None:
    lazy = LazyModule("qmpctl_no_such_module")
    with pytest.raises(ModuleNotFoundError, match="qmpctl_no_such_module"):
        _ = lazy.anything
