"""Postcopy recovery's retry logic against scripted monitors (the real
recovery runs in tests/e2e/test_features.py and test_faults.py)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from qmpctl.core.errors import MigrationFailed, QmpReplyError
from qmpctl.migration import recovery
from qmpctl.migration.recovery import Recovery


class Side:
    """Answers query-migrate with `statuses` in turn; records commands;
    `refuse` maps a command to how many times it fails before it succeeds."""

    def __init__(self, name: str, statuses: list[str], refuse: dict[str, int] | None = None):
        self.name, self.statuses, self.refuse = name, statuses, dict(refuse or {})
        self.commands: list[tuple[str, dict[str, Any]]] = []

    async def execute(self, command: str, arguments: dict[str, Any] | None = None,
                      timeout: float | None = None) -> dict[str, Any]:
        if command == "query-migrate":
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return {"status": status}
        self.commands.append((command, dict(arguments or {})))
        if self.refuse.get(command, 0):
            self.refuse[command] -= 1
            raise QmpReplyError(self.name, command, "GenericError", "no route to host")
        return {}


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recovery, "RETRY_S", 0.0)
    monkeypatch.setattr(recovery, "NOTICE_S", 0.1)


def uris() -> Any:
    n = itertools.count(1)
    return lambda: f"tcp:192.0.2.2:{4444 + next(n)}"


async def test_a_destination_that_did_not_notice_is_paused_too(tmp_path: Path) -> None:
    src = Side("src", ["postcopy-paused"])
    dst = Side("dst", ["postcopy-active"] * 50 + ["postcopy-paused"])
    rec = Recovery(dst, uris(), tmp_path)  # type: ignore[arg-type]
    await rec.recover(src, 1.0)  # type: ignore[arg-type]
    assert dst.commands[0] == ("migrate-pause", {})
    assert dst.commands[1] == ("migrate-recover", {"uri": "tcp:192.0.2.2:4445"})
    assert src.commands == [("migrate", {"uri": "tcp:192.0.2.2:4445", "resume": True}),
                            ("migrate-set-parameters", {"max-postcopy-bandwidth": 0})]
    assert rec.attempts[0].paused_destination


async def test_a_destination_that_pauses_as_qmpctl_pauses_it_is_left_paused(
        tmp_path: Path) -> None:
    """A link back up just as qmpctl stops waiting: the destination pauses
    itself, and QEMU refuses qmpctl's migrate-pause; recovery goes on."""
    class NoticesLate(Side):
        async def execute(self, command: str, arguments: dict[str, Any] | None = None,
                          timeout: float | None = None) -> dict[str, Any]:
            if command == "migrate-pause":  # refused: it paused itself just now
                self.statuses = ["postcopy-paused"]
            return await super().execute(command, arguments, timeout)

    src = Side("src", ["postcopy-paused"])
    dst = NoticesLate("dst", ["postcopy-active"], {"migrate-pause": 1})
    rec = Recovery(dst, uris(), tmp_path)  # type: ignore[arg-type]
    await rec.recover(src, 1.0)  # type: ignore[arg-type]
    assert [c for c, _ in dst.commands] == ["migrate-pause", "migrate-recover"]
    assert not rec.attempts[0].paused_destination
    assert src.commands[0] == ("migrate", {"uri": "tcp:192.0.2.2:4445", "resume": True})


async def test_a_refused_pause_of_a_destination_still_running_is_an_error(
        tmp_path: Path) -> None:
    src = Side("src", ["postcopy-paused"])
    dst = Side("dst", ["active"], {"migrate-pause": 1})
    rec = Recovery(dst, uris(), tmp_path)  # type: ignore[arg-type]
    with pytest.raises(QmpReplyError):
        await rec.recover(src, 1.0)  # type: ignore[arg-type]


async def test_resumes_refused_while_the_link_is_down_are_retried(tmp_path: Path) -> None:
    src = Side("src", ["postcopy-paused"], refuse={"migrate": 2})
    dst = Side("dst", ["postcopy-paused"])
    rec = Recovery(dst, uris(), tmp_path)  # type: ignore[arg-type]
    await rec.recover(src, 1.0)  # type: ignore[arg-type]
    assert [a.error for a in rec.attempts] == ["no route to host", "no route to host", None]
    assert not rec.attempts[0].paused_destination


async def test_a_pending_listener_is_reused(tmp_path: Path) -> None:
    src = Side("src", ["postcopy-paused"], refuse={"migrate": 1})
    dst = Side("dst", ["postcopy-paused"])
    rec = Recovery(dst, uris(), tmp_path)  # type: ignore[arg-type]
    original = dst.execute
    calls = {"n": 0}

    async def once(command: str, arguments: dict[str, Any] | None = None,
                   timeout: float | None = None) -> dict[str, Any]:
        if command == "migrate-recover":
            calls["n"] += 1
            if calls["n"] > 1:
                raise QmpReplyError("dst", command, "GenericError", "already triggered")
        return await original(command, arguments, timeout)

    dst.execute = once  # type: ignore[method-assign]
    await rec.recover(src, 1.0)  # type: ignore[arg-type]
    assert [a.uri for a in rec.attempts] == ["tcp:192.0.2.2:4445"] * 2


async def test_recovery_gives_up_after_its_timeout(tmp_path: Path) -> None:
    src = Side("src", ["postcopy-paused"], refuse={"migrate": 10**6})
    dst = Side("dst", ["postcopy-paused"])
    rec = Recovery(dst, uris(), tmp_path, timeout=0.05)  # type: ignore[arg-type]
    with pytest.raises(MigrationFailed, match=r"did not succeed within 0\.05s"):
        await rec.recover(src, 1.0)  # type: ignore[arg-type]
