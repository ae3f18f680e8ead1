"""`--known-loss EXPR`: cells whose lost pages are a documented host bug.

EXPR is `axis=value[,axis=value...]`, every term must match the cell's axis
value (`tracking=ring`, `accel=kvm,tracking=ring,ring=4096`,
`host=local,tracking=ring`: this host's ring only, not a lab's). A covered cell's
losses are still counted, shown and written as JUnit failures; they only stop
failing the exit code, so CI on a host with a known kernel bug can keep
running the matrix without ever hiding a loss. Values are checked against
each axis's vocabulary, so a typo is a usage error rather than a pattern that
silently never matches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..core.errors import UsageError
from ..host.kvm import ARCHES
from .features import FEATURES
from .spec import AXES, HOSTS, parse_qemu_pair

# Values an axis can take in a cell (`tcg`: the tracking of every TCG cell).
VOCABULARY: dict[str, tuple[str, ...]] = {
    "arch": ARCHES, "accel": ("tcg", "kvm"), "tracking": ("ring", "bitmap", "tcg"),
    "guest": ("baremetal", "linux"), "host": HOSTS,
}


@dataclass(frozen=True)
class KnownLoss:
    text: str
    terms: tuple[tuple[str, str], ...]

    def covers(self, axes: Mapping[str, str]) -> bool:
        return all(axes.get(axis) == value for axis, value in self.terms)


def _check_value(text: str, axis: str, value: str) -> None:
    choices = FEATURES if axis == "feature" else VOCABULARY.get(axis)
    if choices is not None and value not in choices:
        raise UsageError(f"--known-loss {text!r}: {axis}={value!r}: choose "
                         f"{', '.join(choices)}")
    if axis in ("ring", "smp") and not value.isdigit():
        raise UsageError(f"--known-loss {text!r}: {axis}={value!r}: a number")
    if axis == "qemu":
        try:
            parse_qemu_pair(value)
        except ValueError as exc:
            raise UsageError(f"--known-loss {text!r}: {exc}") from None


def parse_known_loss(text: str) -> KnownLoss:
    terms = []
    for term in text.split(","):
        axis, sep, value = (p.strip() for p in term.partition("="))
        if not sep or not axis or not value:
            raise UsageError(f"--known-loss {text!r}: expected AXIS=VALUE[,AXIS=VALUE...], "
                             "e.g. tracking=ring or accel=kvm,tracking=ring")
        if axis not in AXES:
            raise UsageError(f"--known-loss {text!r}: unknown axis {axis!r}; choose "
                             f"{', '.join(AXES)}")
        _check_value(text, axis, value)
        terms.append((axis, value))
    return KnownLoss(text, tuple(terms))


def covering(known: Iterable[KnownLoss], axes: Mapping[str, str]) -> KnownLoss | None:
    """The first expression that covers a cell with these axis values."""
    return next((k for k in known if k.covers(axes)), None)
