"""`--fault WHAT@WHEN` parsing and checks (pure)."""

from __future__ import annotations

import pytest

from qmpctl.core.errors import UsageError
from qmpctl.faults.spec import fault_problems, parse_fault


@pytest.mark.parametrize(("text", "kind", "value", "when"), [
    ("kill-dst@pass:2", "kill-dst", None, "pass:2"),
    ("kill-src@status:active", "kill-src", None, "status:active"),
    ("stop-dst@postcopy", "stop-dst", None, "status:postcopy-active"),
    ("stop-src@pass:2", "stop-src", None, "pass:2"),
    ("drop-qmp-src@after:1.5", "drop-qmp-src", None, "after:1.5"),
    ("link-down-for=3@pass:2", "link-down-for", 3.0, "pass:2"),
    ("rate=100@after:0", "rate", 100.0, "after:0"),
    ("corrupt-dst=0x500123", "corrupt-dst", float(0x500123), "completed"),
])
def test_parse_fault(text: str, kind: str, value: float | None, when: str) -> None:
    f = parse_fault(text)
    assert (f.kind, f.value, str(f.when)) == (kind, value, when)


@pytest.mark.parametrize(("text", "message"), [
    ("explode@pass:1", "unknown fault 'explode'"),
    ("kill-dst", "say when, e.g. kill-dst@pass:2"),
    ("kill-dst@pass:0", "WHEN 'pass:0': expected pass:N"),
    ("kill-dst@soon", "WHEN 'soon': expected pass:N"),
    ("rate@pass:1", "rate needs =MBIT"),
    ("rate=0@pass:1", "MBIT must be positive"),
    ("kill-dst=3@pass:1", "kill-dst takes no value"),
    ("corrupt-dst=0x1000@pass:2", "corrupt-dst happens after the migration completed"),
    ("corrupt-dst=zzz", "'zzz' is not a number"),
])
def test_bad_faults_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_fault(text)


def test_link_faults_need_the_netns_topology() -> None:
    faults = [parse_fault("link-down@pass:2"), parse_fault("kill-dst@pass:2")]
    assert fault_problems(faults, "local") == [
        "--fault link-down@pass:2: link-down acts on the link between the hosts; it needs "
        "--topology netns"]
    assert fault_problems(faults, "netns") == []
