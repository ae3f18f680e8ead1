"""Migration features a run can ask for: the registry, one module per feature.

A QEMU accepts a capability it then never uses (xbzrle with a cache too small
to hit, auto-converge on a migration that converges by itself, a compression
that sees incompressible pages): "the capability was set" proves nothing.
Each feature therefore names the figure QEMU itself reports when the feature
acts, and a feature without that figure makes the run inconclusive (the
report verdict), never verified.

Each module of this package (found with pkgutil: a new module needs no line
anywhere else) holds one feature, as one `FeatureOptions` subclass that owns
everything about it: its options (pydantic fields, whose descriptions are
the `qmpctl migrate` help; `MigrateOptions` composes them in, so they are CLI
options and `qmpctl_migrate` keywords), its checks against the resolved run
(`problems`), the `Feature` it builds (`build`: the settings both sides get,
the trace events it reads and the evidence that it engaged), its values of
the matrix's `feature` axis (`matrix`) and its row of the feature table
(`doc`). Modules whose names start with `_` are not features.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar, Literal, Protocol

from pydantic import ConfigDict
from pydantic.fields import FieldInfo

from ...core.errors import UsageError
from ...core.model import Model
from ..models import FeatureEvidence, MigrationStats
from ..settings import MigrationSettings

Accel = Literal["kvm", "tcg"]
PANEL = "Migration features"


@dataclass(frozen=True)
class Observed:
    """What evidence is read from: the source's migration statistics and both
    QEMUs' logs (trace events, one per line)."""

    stats: MigrationStats
    src_log: str = ""
    dst_log: str = ""


def trace_args(log: str, event: str) -> list[str]:
    """The argument text of every `event` line in a QEMU log (pure).

    Both timestamp forms of the log trace backend (`pid@sec.usec:event args`
    and `ISO-time event args`) are read, as in `verify.timeline`."""
    pattern = re.compile(rf"(?:^|[:\s]){re.escape(event)}(?: (.*))?$")
    return [m.group(1) or "" for line in log.splitlines()
            if event in line and (m := pattern.search(line)) is not None]


class Feature(Protocol):
    """A feature a run uses: what it sets on both sides, the trace events it
    reads, and the evidence that it engaged."""

    @property
    def name(self) -> str: ...

    def settings(self) -> MigrationSettings: ...
    def trace_events(self) -> tuple[str, ...]: ...
    def evidence(self, seen: Observed) -> FeatureEvidence: ...


@dataclass(frozen=True)
class RunFacts:
    """What a feature's checks and build read besides its own options: the
    resolved run, and every migrate option by name (`values`: the run-wide
    ones such as `transport` or `postcopy`, and other features' own, for the
    rules between two features)."""

    accel: Accel
    ring: int
    ram_bytes: int = 0
    values: Mapping[str, Any] = field(default_factory=dict)

    def given(self, name: str) -> bool:
        """Whether option `name` is on (a flag set, a value given)."""
        return self.values.get(name) not in (None, False, (), "")

    @property
    def transport(self) -> str:
        return str(self.values.get("transport") or "unix")

    @property
    def postcopy(self) -> bool:
        return self.given("postcopy")


@dataclass(frozen=True)
class DocRow:
    """The feature's row of the feature table (Markdown, one line each)."""

    option: str
    settings: str
    evidence: str


def option_name(field_name: str) -> str:
    """`xbzrle_cache` -> `--xbzrle-cache`."""
    return "--" + field_name.replace("_", "-")


class FeatureOptions(Model):
    """One migration feature: its fields are its options (None or False: not
    asked for); the class says what they mean for a run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Sorts the registry: the matrix axis, the feature table and the report.
    order: ClassVar[int]
    # Its values of the matrix's `feature` axis: name -> migrate keywords.
    matrix: ClassVar[dict[str, dict[str, object]]] = {}
    # The matrix runs these values only where KVM's dirty ring is used.
    matrix_needs_ring: ClassVar[bool] = False
    doc: ClassVar[DocRow]

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> FeatureOptions:
        return cls.model_validate({k: values[k] for k in cls.model_fields if k in values})

    def problems(self, run: RunFacts) -> list[str]:
        """Why these options cannot work on this run, or together (pure)."""
        return []

    def build(self, run: RunFacts) -> Feature | None:
        """The feature the run uses, or None when not asked for (or when the
        scenario drives it itself, as a cancel)."""
        return None


@cache
def registry() -> tuple[type[FeatureOptions], ...]:
    """Every feature class of this package's modules, in `order`."""
    found: list[type[FeatureOptions]] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found += [c for c in vars(module).values()
                  if isinstance(c, type) and issubclass(c, FeatureOptions)
                  and c is not FeatureOptions and c.__module__ == module.__name__]
    return tuple(sorted(found, key=lambda c: c.order))


def option_fields() -> dict[str, FieldInfo]:
    """The options every feature owns, by field name (a name two features
    claim is an error here, at import)."""
    out: dict[str, FieldInfo] = {}
    for cls in registry():
        for name, info in cls.model_fields.items():
            if name in out:
                raise TypeError(f"{cls.__name__}.{name}: another feature owns that option")
            out[name] = info
    return out


def matrix_values() -> dict[str, dict[str, object]]:
    """The matrix's `feature` axis: `precopy` (nothing set), then each
    feature's values in registry order."""
    out: dict[str, dict[str, object]] = {"precopy": {}}
    for cls in registry():
        for name, kwargs in cls.matrix.items():
            if name in out:
                raise TypeError(f"{cls.__name__}: matrix value {name!r} is taken")
            out[name] = kwargs
    return out


def build_features(run: RunFacts) -> tuple[Feature, ...]:
    """The features the options in `run.values` ask for, or a UsageError
    naming every problem."""
    chosen = [cls.from_values(run.values) for cls in registry()]
    if problems := [p for o in chosen for p in o.problems(run)]:
        raise UsageError("; ".join(problems))
    return tuple(f for o in chosen if (f := o.build(run)) is not None)


def evidence(features: Iterable[Feature], seen: Observed) -> list[FeatureEvidence]:
    return [f.evidence(seen) for f in features]


def feature_settings(features: Iterable[Feature]) -> MigrationSettings:
    out = MigrationSettings()
    for f in features:
        out = out.merged(f.settings())
    return out


def feature_trace_events(features: Iterable[Feature]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(e for f in features for e in f.trace_events()))


def outcome(name: str, problems: list[str], detail: str,
            figures: Mapping[str, int | float]) -> FeatureEvidence:
    """Evidence that engaged when there is no problem; else the problems,
    with the detail in brackets."""
    return FeatureEvidence(feature=name, engaged=not problems, figures=dict(figures),
                           detail="; ".join(problems) + f" ({detail})" if problems else detail)
