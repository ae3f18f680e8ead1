"""benchmarks/raw_migrate.py, the yardstick of `nox -s bench_verdict`, runs
what qmpctl's default TCG run runs: same guest, RAM, wave, throttle, minimum
passes and downtimes, same QEMU options for what they share (pure)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from qmpctl.core.units import MiB
from qmpctl.guests.wave import default_wave
from qmpctl.migration.policy import Converge, HoldBack
from qmpctl.qemu.cmdline import MachineSpec, build_argv
from qmpctl.scenario.options import DEFAULT_RAM, MigrateOptions, resolve

RAW = Path(__file__).resolve().parents[2] / "benchmarks" / "raw_migrate.py"


def raw() -> ModuleType:
    spec = importlib.util.spec_from_file_location("raw_migrate", RAW)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_raw_script_has_qmpctl_defaults() -> None:
    r, o = raw(), MigrateOptions(accel="tcg")
    throttle = resolve(o).throttle  # not given: resolved for the guest's size
    held = HoldBack(Converge(downtime_ms=o.downtime_limit)).settings().parameters
    theirs = (r.RAM_MIB, r.WAVE, r.THROTTLE, r.MIN_PASSES, r.HELD_DOWNTIME_MS, r.DOWNTIME_MS,
              r.CONVERGE_BANDWIDTH)
    ours = (DEFAULT_RAM["baremetal"],
            default_wave("x86_64", DEFAULT_RAM["baremetal"]).fw_cfg_string(),
            throttle * MiB, o.min_passes, held["downtime-limit"], o.downtime_limit,
            Converge().bandwidth)
    assert theirs == ours
    assert held["max-bandwidth"] == throttle * MiB


def test_the_raw_script_launches_qemu_as_qmpctl_does(tmp_path: Path) -> None:
    r = raw()
    kernel = tmp_path / "wave.elf"
    for side in ("src", "dst"):
        ours = build_argv(MachineSpec(
            arch="x86_64", binary=Path(r.QEMU), accel="tcg", ram_mib=r.RAM_MIB,
            ram_path=tmp_path / f"{side}.ram", qmp_socket=tmp_path / f"{side}.qmp",
            serial_socket=tmp_path / f"{side}.serial", serial_log=tmp_path / "log",
            kernel=kernel, fw_cfg=(("opt/qmpctl/params", r.WAVE),), incoming=side == "dst"))
        theirs = r.argv(r.QEMU, kernel, tmp_path, side)

        for key in ("-accel", "-object", "-machine", "-m", "-smp", "-kernel", "-fw_cfg",
                    "-incoming"):
            assert (key in theirs) == (key in ours), key
            if key in ours:
                assert theirs[theirs.index(key) + 1] == ours[ours.index(key) + 1], key
        assert ("-S" in theirs) == ("-S" in ours)
