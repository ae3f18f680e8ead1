"""What a matrix is made of: axes, options for every cell, repeats.

The same shape comes from a preset (`presets.PRESETS`, plain data) or a TOML
file (`--axes FILE`), so a preset can be copied into a file and edited:

    repeat = 3
    [options]            # MigrateOptions for every cell
    ram = 64
    [axes]               # one cartesian product; [[axes]] tables: a union of several
    accel = ["tcg", "kvm"]
    tracking = ["bitmap", "ring"]
    ring = [1024, 4096]

Values are checked here (types, known names, ring sizes, an arch a lab host
cannot run); what this host can run is decided later (`plan`), so one file
serves every host.

The `host` axis says where a cell runs: `local` (this host, the default) or a
lab (`lab-aarch64`, `lab-x86_64`: `qmpctl lab`'s KVM host as a VM, which
runs that one architecture's QEMU and KVM), so a preset can put the same
cell on this host's KVM and on another side by side (`labs`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from ..core.errors import UsageError
from ..core.model import Model
from ..host.kvm import Arch
from ..host.qemu import is_version
from ..scenario.options import DEFAULT_RING, MAX_SMP
from .features import FEATURES
from .presets import PRESETS

AXES = ("arch", "accel", "tracking", "ring", "smp", "guest", "feature", "qemu", "host")
SYSTEM_QEMU = "system"  # the qemu axis value for `qmpctl migrate`'s default binary
# MigrateOptions keywords the axes decide: [options] may not set them.
AXIS_KEYWORDS = ("arch", "accel", "dirty_ring", "smp", "guest", "qemu", "qemu_src", "qemu_dst")

AccelAxis = Literal["tcg", "kvm"]
Tracking = Literal["ring", "bitmap"]
GuestAxis = Literal["baremetal", "linux"]
HostAxis = Literal["local", "lab-aarch64", "lab-x86_64"]
LOCAL: HostAxis = "local"
HOSTS: tuple[HostAxis, ...] = ("local", "lab-aarch64", "lab-x86_64")
LAB_ARCH: dict[str, Arch] = {"lab-aarch64": "aarch64", "lab-x86_64": "x86_64"}


def lab_arch(host: str) -> Arch | None:
    """The architecture of a lab host (its QEMU and KVM); None for `local`."""
    return LAB_ARCH.get(host)


def parse_qemu_pair(text: str) -> tuple[str | None, str | None]:
    """`SRC->DST` (versions qmpctl knows, e.g. `7.2->10.0`) or `system`:
    the qemu_src/qemu_dst keywords (None: the system QEMU) (pure)."""
    if text == SYSTEM_QEMU:
        return None, None
    src, sep, dst = (part.strip() for part in text.partition("->"))
    if not sep or not is_version(src) or not is_version(dst):
        raise ValueError(f"qemu {text!r}: expected SRC->DST with versions such as 7.2->10.0, "
                         f"or {SYSTEM_QEMU!r}")
    return src, dst


class Axes(Model):
    """One cartesian product. An axis left out takes its default (one value),
    so a file names only the axes it varies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: tuple[Arch, ...] = ("x86_64",)
    accel: tuple[AccelAxis, ...] = ("tcg",)
    tracking: tuple[Tracking, ...] | None = Field(
        None, description="KVM dirty tracking; ignored (collapsed) under TCG; None: ring")
    ring: tuple[int, ...] | None = Field(None, description="ring entries, tracking=ring only; "
                                                         f"None: {DEFAULT_RING}")
    smp: tuple[int | Literal["default"], ...] = Field(
        ("default",), description="vCPUs; default: the guest's own (x86 wave 1, arm64 ITS 2, "
                                  "Linux 2)")
    guest: tuple[GuestAxis, ...] = ("baremetal",)
    feature: tuple[str, ...] = ("precopy",)
    qemu: tuple[str, ...] = Field((SYSTEM_QEMU,), description="SRC->DST version pairs")
    host: tuple[HostAxis, ...] = Field((LOCAL,), description="where the cell runs: local "
                                                            "(this host) or a lab")

    @field_validator("*")
    @classmethod
    def _non_empty_unique(cls, values: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        if values is None:  # tracking, ring: not given
            return values
        if not values:
            raise ValueError("needs at least one value")
        if len(set(values)) != len(values):
            raise ValueError(f"repeats a value: {list(values)}")
        return values

    @field_validator("ring")
    @classmethod
    def _ring_sizes(cls, values: tuple[int, ...] | None) -> tuple[int, ...] | None:
        for n in values or ():
            if n < 1024 or n & (n - 1):
                raise ValueError(f"ring {n}: a power of two of at least 1024 entries")
        return values

    @field_validator("smp")
    @classmethod
    def _smp(cls, values: tuple[int | str, ...]) -> tuple[int | str, ...]:
        for n in values:
            if isinstance(n, int) and not 1 <= n <= MAX_SMP:
                raise ValueError(f"smp {n}: must be 1..{MAX_SMP} or 'default'")
        return values

    @field_validator("feature")
    @classmethod
    def _features(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for name in values:
            if name not in FEATURES:
                raise ValueError(f"feature {name!r}: choose {', '.join(FEATURES)}")
        return values

    @field_validator("qemu")
    @classmethod
    def _qemu(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for text in values:
            parse_qemu_pair(text)
        return values

    @model_validator(mode="after")
    def _ring_needs_ring_tracking(self) -> Axes:
        if self.ring is not None and "ring" not in self.trackings:
            raise ValueError("ring sizes apply only with tracking = \"ring\", which this "
                             f"product lacks (tracking = {list(self.trackings)})")
        return self

    @model_validator(mode="after")
    def _lab_runs_its_own_arch(self) -> Axes:
        for host in self.host:
            arch = lab_arch(host)
            for other in self.arch:
                if arch is not None and other != arch:
                    raise ValueError(
                        f"host {host} cannot run arch {other}: that lab runs {arch} guests "
                        f"only (its QEMU is qemu-system-{arch}, its KVM {arch}'s); put "
                        f"{other} cells on local or lab-{other}, in an [[axes]] of their own")
        return self

    @property
    def trackings(self) -> tuple[Tracking, ...]:
        """The tracking axis: as given, or ring."""
        return self.tracking if self.tracking is not None else ("ring",)

    @property
    def rings(self) -> tuple[int, ...]:
        """The ring sizes: as given, or the default ring."""
        return self.ring if self.ring is not None else (DEFAULT_RING,)

    @property
    def explicit_tracking(self) -> bool:
        """Whether the file set tracking or ring: only then are the TCG
        combinations they collapse listed as not run."""
        return self.tracking is not None or self.ring is not None


class MatrixSpec(Model):
    """A whole matrix: the union of its products, options for every cell, repeats."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    repeat: int = Field(5, ge=1, description="runs per cell, each a fresh migration")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="MigrateOptions keywords for every cell")
    axes: tuple[Axes, ...] = (Axes(),)

    @field_validator("axes", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, Mapping) else value

    @field_validator("axes")
    @classmethod
    def _some(cls, value: tuple[Axes, ...]) -> tuple[Axes, ...]:
        if not value:
            raise ValueError("needs at least one product")
        return value

    @model_validator(mode="after")
    def _options_are_not_axes(self) -> MatrixSpec:
        feature_keys = {k for a in self.axes for f in a.feature for k in FEATURES[f]}
        if taken := sorted(set(self.options) & (set(AXIS_KEYWORDS) | feature_keys)):
            raise ValueError(f"options {', '.join(taken)}: decided by the axes (arch, accel, "
                             "tracking/ring, smp, guest, feature, qemu, host), not [options]")
        return self


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_spec(data: Mapping[str, Any], source: str) -> MatrixSpec:
    """Validate preset or TOML data; a problem is a one-line UsageError naming
    where it is (`axes[0].accel[1]`)."""
    try:
        return MatrixSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            where = _where(tuple(p for p in e["loc"] if p not in ("int", "literal['default']")))
            msg = e["msg"].removeprefix("Value error, ")
            got = f" (got {e['input']!r})" if e["type"] not in ("value_error", "missing") \
                and not isinstance(e["input"], Mapping) else ""
            problems.append(f"{where + ': ' if where else ''}{msg}{got}")
        raise UsageError(f"{source}: " + "; ".join(problems)) from None


def load_preset(name: str) -> MatrixSpec:
    if name not in PRESETS:
        raise UsageError(f"--preset {name!r}: choose {', '.join(PRESETS)}")
    return parse_spec(PRESETS[name], f"preset {name}")


def load_toml(path: Path) -> MatrixSpec:
    """An axes file; unreadable or not TOML is a usage error naming the file."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"--axes {path}: cannot read it ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--axes {path}: not valid TOML ({exc})") from None
    return parse_spec(data, f"--axes {path}")


def load(source: str) -> MatrixSpec:
    """A preset name, or the path of a TOML file (for the pytest helper)."""
    if source in PRESETS:
        return load_preset(source)
    if source.endswith(".toml") or Path(source).is_file():
        return load_toml(Path(source))
    raise UsageError(f"{source!r}: neither a preset ({', '.join(PRESETS)}) nor a TOML file")
