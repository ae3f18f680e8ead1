"""What a QEMU binary offers over QMP, read from `query-qmp-schema`.

The schema names types by opaque ids, so enums and argument types are found
through the commands that use them. `probe_schema` asks a short-lived,
paused QEMU; `schema_features` is the pure part.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import Field

from ..core.cache import JsonCache, file_key
from ..core.errors import QmpctlError
from ..core.model import Model
from ..host.kvm import Arch
from ..host.qemu import QemuBinary
from .cmdline import MachineSpec
from .machine import QemuMachine
from .rundir import RunDir

log = logging.getLogger(__name__)

WATCHED_COMMANDS = ("calc-dirty-rate", "set-vcpu-dirty-limit", "migrate-incoming",
                    "query-dirty-rate", "migrate-pause", "migrate-recover")


class QemuSchema(Model):
    """The migration-relevant part of one QEMU binary's QMP schema."""

    arch: str
    binary: str | None
    version: str | None
    error: str | None = None
    data_dir: str | None = Field(None, description="its own data directory (-L)")
    environment: dict[str, str] = Field(
        default_factory=dict, description="what it is started with on top of qmpctl's "
                                          "environment (libraries of a private prefix)")
    default: bool = Field(False, description="the binary used when none is named")
    default_machine: str | None = Field(
        None, description="the versioned machine type its pc/virt is an alias of: what a "
                          "migration to or from a newer QEMU pins")
    dirty_rate_modes: list[str] = Field(default_factory=list)
    migration_capabilities: list[str] = Field(default_factory=list)
    migration_parameters: dict[str, str] = Field(
        default_factory=dict,
        description="migrate-set-parameters member -> type: int, number, bool, str, "
                    "enum:a|b|..., or another schema meta-type")
    commands: dict[str, bool] = Field(default_factory=dict)


def _type_kind(by_name: dict[str, dict[str, Any]], type_name: str) -> str:
    entry = by_name.get(type_name)
    if entry is None:
        return type_name
    if entry.get("meta-type") == "builtin":
        return str(entry.get("json-type", type_name)).replace("integer", "int")
    if entry.get("meta-type") == "enum":
        values = [v["name"] if isinstance(v, dict) else v
                  for v in entry.get("members", [])] or list(entry.get("values", []))
        return "enum:" + "|".join(values)
    return str(entry.get("meta-type", type_name))


def schema_features(schema: list[dict[str, Any]]) -> dict[str, Any]:
    """Dirty-rate modes, migration capabilities and parameters, watched commands (pure)."""
    by_name = {e["name"]: e for e in schema}
    commands = {e["name"] for e in schema if e.get("meta-type") == "command"}

    def members(command: str) -> list[dict[str, Any]]:
        cmd = by_name.get(command)
        return list(by_name.get(cmd["arg-type"], {}).get("members", [])) if cmd else []

    def enum_values(type_name: str) -> list[str]:
        kind = _type_kind(by_name, type_name)
        return kind.removeprefix("enum:").split("|") if kind.startswith("enum:") else []

    modes = next((enum_values(m["type"]) for m in members("calc-dirty-rate")
                  if m["name"] == "mode"), [])
    caps: list[str] = []
    cap_args = members("migrate-set-capabilities")
    if cap_args:
        element = by_name.get(cap_args[0]["type"], {}).get("element-type", "")
        caps = next((enum_values(m["type"]) for m in by_name.get(element, {}).get("members", [])
                     if m["name"] == "capability"), [])
    params = {m["name"]: _type_kind(by_name, m["type"])
              for m in members("migrate-set-parameters")}
    return {"dirty_rate_modes": modes, "migration_capabilities": caps,
            "migration_parameters": params,
            "commands": {c: c in commands for c in WATCHED_COMMANDS}}


async def probe_schema(arch: Arch, binary: QemuBinary, run: RunDir,
                       tag: str = "schema") -> QemuSchema:
    """Launch `binary` paused, read its schema, shut it down. Never raises."""
    tag = f"{tag}-{arch}"
    spec = MachineSpec(
        arch=arch, binary=binary.path, data_dir=binary.data_dir, env=binary.env,
        accel="tcg", ram_mib=32,
        ram_path=run.side(tag, "ram"), qmp_socket=run.side(tag, "qmp.sock"),
        serial_socket=run.side(tag, "serial.sock"), serial_log=run.side(tag, "serial"),
        incoming=True, name=f"qmpctl-probe-{arch}",
    )
    result = QemuSchema(arch=arch, binary=str(binary.path), version=binary.version_str,
                        data_dir=None if binary.data_dir is None else str(binary.data_dir),
                        environment=dict(binary.env))
    try:
        async with QemuMachine(spec, run.side(tag, "log")) as machine:
            features = schema_features(await machine.execute("query-qmp-schema"))
    except QmpctlError as exc:
        log.warning("cannot read the QMP schema of %s: %s", binary.path, exc.message)
        result.error = exc.message
        return result
    return result.model_copy(update=features)


SCHEMA_CACHE_VERSION = 1  # bump when `schema_features` reads more: old entries then miss
SCHEMA_CACHE = JsonCache("qmp-schema.json", QemuSchema)


def binary_key(binary: QemuBinary) -> str:
    """What a schema holds for: this very file, its version, the environment
    it runs with, qmpctl's reading of it."""
    env = " ".join(f"{k}={v}" for k, v in binary.env)
    return (f"v{SCHEMA_CACHE_VERSION} {file_key(binary.path)} version={binary.version_str} "
            f"env={env}")


async def cached_schema(arch: Arch, binary: QemuBinary, run: RunDir,
                        tag: str = "schema", cache: Path | None = None) -> QemuSchema:
    """`probe_schema`, once per binary file: a schema read before is taken
    from the cache (`binary_key`: a rebuilt or replaced binary misses). A
    probe that failed is not cached."""
    store = SCHEMA_CACHE.at(cache)
    key = binary_key(binary)
    if (hit := store.get(key)) is not None and hit.error is None:
        return hit
    schema = await probe_schema(arch, binary, run, tag)
    if schema.error is None:  # in place of this path's older one; gone binaries' go too
        store.store(key, schema, lambda _key, old: old.binary not in (None, schema.binary)
                    and Path(old.binary).exists())
    return schema
