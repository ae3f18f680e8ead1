"""`--fault WHAT@WHEN`, parsed and checked before anything starts (pure).

WHAT: kill-src, kill-dst, stop-src, stop-dst (SIGSTOP), drop-qmp-src (cut qmpctl's
monitor connection to the source), link-down, link-down-for=SECONDS,
rate=MBIT (the last three need `--topology netns`), corrupt-dst=GPA (one
byte, flipped after the migration completed, before verification).
WHEN: pass:N, status:NAME, postcopy (= status:postcopy-active),
after:SECONDS (since `migrate` was issued). corrupt-dst takes no WHEN.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import ConfigDict

from ..core.errors import UsageError
from ..core.model import Model

FaultKind = Literal["kill-src", "kill-dst", "stop-src", "stop-dst", "drop-qmp-src",
                    "link-down", "link-down-for", "rate", "corrupt-dst"]
TriggerKind = Literal["pass", "status", "after", "completed"]
_WITH_VALUE = {"link-down-for": "SECONDS", "rate": "MBIT", "corrupt-dst": "GPA"}
NEEDS_NETNS = ("link-down", "link-down-for", "rate")
KINDS: tuple[str, ...] = get_args(FaultKind)


class Trigger(Model):
    model_config = ConfigDict(frozen=True)

    kind: TriggerKind
    value: str  # pass number, status name, seconds ("" for completed)

    def __str__(self) -> str:
        return self.kind if self.kind == "completed" else f"{self.kind}:{self.value}"


class FaultSpec(Model):
    model_config = ConfigDict(frozen=True)

    text: str
    kind: FaultKind
    value: float | None = None  # seconds, Mbit/s or GPA
    when: Trigger


def parse_fault(text: str) -> FaultSpec:
    what, sep, when = text.partition("@")
    name, eq, raw = what.partition("=")
    if name not in KINDS:
        raise UsageError(f"--fault {text!r}: unknown fault {name!r}; choose one of "
                         f"{', '.join(KINDS)}")
    value: float | None = None
    if name in _WITH_VALUE:
        if not eq:
            raise UsageError(f"--fault {text!r}: {name} needs ={_WITH_VALUE[name]}")
        try:
            value = float(int(raw, 0)) if name == "corrupt-dst" else float(raw)
        except ValueError:
            raise UsageError(f"--fault {text!r}: {raw!r} is not a number") from None
        if value < 0 or (name != "corrupt-dst" and value == 0):
            raise UsageError(f"--fault {text!r}: {_WITH_VALUE[name]} must be positive")
    elif eq:
        raise UsageError(f"--fault {text!r}: {name} takes no value")
    if name == "corrupt-dst":
        if sep:
            raise UsageError(f"--fault {text!r}: corrupt-dst happens after the migration "
                             "completed; it takes no @WHEN")
        return FaultSpec(text=text, kind=name, value=value,
                         when=Trigger(kind="completed", value=""))
    if not sep:
        raise UsageError(f"--fault {text!r}: say when, e.g. {what}@pass:2, @status:active, "
                         "@postcopy or @after:1.5")
    return FaultSpec(text=text, kind=name, value=value, when=parse_trigger(text, when))


def parse_trigger(text: str, when: str) -> Trigger:
    if when == "postcopy":
        return Trigger(kind="status", value="postcopy-active")
    kind, _, value = when.partition(":")
    if kind == "pass" and value.isdigit() and int(value) >= 1:
        return Trigger(kind="pass", value=value)
    if kind == "status" and value:
        return Trigger(kind="status", value=value)
    if kind == "after":
        try:
            if float(value) >= 0:
                return Trigger(kind="after", value=value)
        except ValueError:
            pass
    raise UsageError(f"--fault {text!r}: WHEN {when!r}: expected pass:N, status:NAME, "
                     "postcopy or after:SECONDS")


def fault_problems(faults: list[FaultSpec], topology: str) -> list[str]:
    """Faults that cannot apply to this run (pure)."""
    return [f"--fault {f.text}: {f.kind} acts on the link between the hosts; it needs "
            "--topology netns" for f in faults if f.kind in NEEDS_NETNS and topology != "netns"]
