"""QEMU's log and the kernel's trace pipe are read while the run goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path

from qmpctl.host.ktrace import TraceInstance
from qmpctl.qemu.logfollow import LogFollower


async def test_the_follower_reads_the_log_as_it_grows_and_after_it_stops(tmp_path: Path) -> None:
    log = tmp_path / "src.log"
    log.write_bytes(b"")
    follower = LogFollower(log, poll_s=0.01)
    follower.start()
    with log.open("ab") as f:
        f.write(b"kvm_dirty_ring_page vcpu 0 fetch 1 offset 0x1\npartial \xc3")
        f.flush()
        for _ in range(200):  # followed in the background, not at text()
            if follower.bytes_read:
                break
            await asyncio.sleep(0.01)
        assert follower.bytes_read == log.stat().st_size
        f.write(b"\xa9 line\n")  # a character split between two reads stays whole
    await follower.stop()
    with log.open("ab") as f:
        f.write(b"written after the stop\n")
    assert await follower.text() == ("kvm_dirty_ring_page vcpu 0 fetch 1 offset 0x1\n"
                                     "partial \u00e9 line\nwritten after the stop\n")
    assert await follower.text() == await follower.text()  # nothing is read twice


async def test_a_log_that_does_not_exist_yet_reads_empty(tmp_path: Path) -> None:
    assert await LogFollower(tmp_path / "none.log").text() == ""


async def test_a_followed_trace_pipe_is_what_read_returns(tmp_path: Path) -> None:
    """A stand-in instance directory (a regular file as trace_pipe): follow()
    drains it, unfollow() takes the rest, read() returns the drained lines,
    not the `trace` buffer (which a real pipe consumes)."""
    root = tmp_path / "tracing"
    inst = TraceInstance(("kvm_dirty_ring_push",), root)
    inst.path.mkdir(parents=True)
    (inst.path / "tracing_on").write_text("1\n")
    (inst.path / "trace").write_text("stale buffer line\n")
    (inst.path / "trace_pipe").write_text("push 1\npush 2\n")
    inst.follow(every_s=0.01)
    await asyncio.sleep(0.05)
    inst.unfollow()
    assert (inst.path / "tracing_on").read_text() == "0\n"
    assert inst.read() == (["push 1", "push 2"], 0)
    unfollowed = TraceInstance(("kvm_dirty_ring_push",), root)
    unfollowed.path.mkdir(parents=True)
    (unfollowed.path / "tracing_on").write_text("1\n")
    (unfollowed.path / "trace").write_text("buffer line\n")
    assert unfollowed.read() == (["buffer line"], 0)
