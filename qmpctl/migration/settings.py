"""Migration capabilities and parameters, applied the same way to both sides.

`MigrationSettings` is plain data; `problems()` checks it against a QEMU's
own schema (pure), so an unknown capability or parameter is a usage error
naming it and the QEMU version before any guest starts.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from ..core.errors import UsageError
from ..core.model import Model
from ..qemu.machine import QemuMachine
from ..qemu.schema import QemuSchema

Scalar = int | float | bool | str


class MigrationSettings(Model):
    """`migrate-set-capabilities` and `migrate-set-parameters` for one run."""

    model_config = ConfigDict(frozen=True)

    capabilities: dict[str, bool] = Field(default_factory=dict)
    parameters: dict[str, Scalar] = Field(default_factory=dict)

    def merged(self, other: MigrationSettings) -> MigrationSettings:
        """`other` on top of these (the user's explicit settings win)."""
        return MigrationSettings(capabilities={**self.capabilities, **other.capabilities},
                                 parameters={**self.parameters, **other.parameters})

    def problems(self, schema: QemuSchema) -> list[str]:
        """What `schema`'s QEMU does not know (pure)."""
        qemu = f"QEMU {schema.version} ({schema.binary})"
        out = [f"unknown migration capability {name!r} for {qemu}"
               for name in self.capabilities if name not in schema.migration_capabilities]
        for name, value in self.parameters.items():
            kind = schema.migration_parameters.get(name)
            if kind is None:
                out.append(f"unknown migration parameter {name!r} for {qemu}")
            elif (problem := _type_problem(kind, value) or _range_problem(name, value)):
                out.append(f"migration parameter {name}={value!r}: {problem} for {qemu}")
        return out

    def check(self, *schemas: QemuSchema) -> None:
        problems = [p for s in schemas for p in self.problems(s)]
        if problems:
            raise UsageError("; ".join(dict.fromkeys(problems)))

    async def apply(self, *machines: QemuMachine) -> None:
        caps = [{"capability": n, "state": v} for n, v in self.capabilities.items()]
        for machine in machines:
            if caps:
                await machine.execute("migrate-set-capabilities", {"capabilities": caps})
            if self.parameters:
                await machine.execute("migrate-set-parameters", dict(self.parameters))


# The schema reports every integer type as "int", but QEMU's migration
# parameters are all unsigned, and migrate_params_check (migration/options.c,
# QEMU 7.2-10.0) bounds these further; out of range, QEMU refuses them only
# once both guests run.
KNOWN_RANGES: dict[str, tuple[int, int]] = {
    "downtime-limit": (0, 2_000_000),  # ms: MAX_MIGRATE_DOWNTIME
    "cpu-throttle-initial": (1, 99),
    "cpu-throttle-increment": (1, 99),
    "max-cpu-throttle": (1, 99),
    "throttle-trigger-threshold": (1, 100),
    "multifd-channels": (1, 255),
    "multifd-zlib-level": (0, 9),
    "multifd-zstd-level": (0, 20),
    "x-vcpu-dirty-limit-period": (1, 1000),
    "vcpu-dirty-limit": (1, 2**64 - 1),
}


def _range_problem(name: str, value: Scalar) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    lo, hi = KNOWN_RANGES.get(name, (0, 2**64 - 1))
    if lo <= value <= hi:
        return None
    return f"must be {lo}..{hi}" if name in KNOWN_RANGES else "must be >= 0 (unsigned)"


def _type_problem(kind: str, value: Scalar) -> str | None:
    if kind.startswith("enum:"):
        choices = kind.removeprefix("enum:").split("|")
        return None if value in choices else f"choose one of {', '.join(choices)}"
    expected: dict[str, type | tuple[type, ...]] = {
        "int": int, "number": (int, float), "boolean": bool, "bool": bool, "string": str,
        "str": str}
    want = expected.get(kind)
    if want is None:
        return None  # alternates and objects: QEMU checks them itself
    if isinstance(value, bool) and want is int:
        return "expected an integer"
    return None if isinstance(value, want) else f"expected {kind}"


def parse_setting(text: str) -> tuple[str, Scalar]:
    """`NAME=VALUE` from the command line: VALUE as int, float, on/off/true/false or str."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise UsageError(f"{text!r}: expected NAME=VALUE")
    low = raw.lower()
    if low in ("on", "true", "yes"):
        return name, True
    if low in ("off", "false", "no"):
        return name, False
    try:
        return name, int(raw, 0)
    except ValueError:
        pass
    try:
        return name, float(raw)
    except ValueError:
        return name, raw


def parse_capability(text: str) -> tuple[str, bool]:
    """`NAME` or `NAME=on|off` from the command line."""
    name, value = parse_setting(text) if "=" in text else (text, True)
    if not isinstance(value, bool):
        raise UsageError(f"--capability {text!r}: expected NAME or NAME=on|off")
    return name, value

