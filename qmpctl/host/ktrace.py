"""A private tracefs instance for the kernel's KVM dirty-ring tracepoints.

Its own instance (`instances/qmpctl-<pid>-<n>`), so the global trace buffer
and anyone else's tracing are untouched; tracefs is mounted only if it was
not, and unmounted after. The instance goes whatever happens (`close`, also
on failure and interrupt); one left by a qmpctl that was killed is swept by
the next (`sweep_stale`). Root only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

TRACEFS = Path("/sys/kernel/tracing")
PREFIX = "qmpctl-"
BUFFER_KB = 65536  # per CPU: a 64 MiB run pushes about 1M entries of ~100 bytes
_counter = itertools.count()


def unavailable(events: tuple[str, ...], root: Path = TRACEFS,
                kallsyms: Path = Path("/proc/kallsyms")) -> str | None:
    """Why the kernel's `kvm:` events cannot be recorded here, or None.

    With tracefs unmounted, the kernel's symbol table answers (each tracepoint
    has a `__traceiter_` or `__tracepoint_` symbol): checking must not mount
    tracefs; the run mounts it when it records."""
    if os.geteuid() != 0:
        return "not root (tracefs needs it)"
    if not root.is_dir():
        return f"no {root}"
    if (root / "instances").is_dir():
        return _missing(events, lambda e: (root / "events" / "kvm" / e).is_dir())
    symbols = tracepoint_symbols(kallsyms.read_text(errors="replace"))
    return _missing(events, symbols.__contains__)


def tracepoint_symbols(kallsyms: str) -> set[str]:
    """The tracepoints a /proc/kallsyms text names (`kvm_dirty_ring_push` for
    `__traceiter_kvm_dirty_ring_push` or `__tracepoint_kvm_dirty_ring_push`)."""
    found = set()
    for line in kallsyms.splitlines():
        fields = line.split()  # address, type, name, and [module] for a module's
        name = fields[2] if len(fields) > 2 else ""
        for prefix in ("__traceiter_", "__tracepoint_"):
            if name.startswith(prefix):
                found.add(name.removeprefix(prefix))
    return found


def _missing(events: tuple[str, ...], present: Callable[[str], bool]) -> str | None:
    gone = [e for e in events if not present(e)]
    return f"the kernel has no kvm:{', kvm:'.join(gone)} tracepoint" if gone else None


def _mount(root: Path) -> str | None:
    run = subprocess.run(["mount", "-t", "tracefs", "nodev", str(root)],
                         capture_output=True, text=True, check=False)
    return None if run.returncode == 0 else f"cannot mount tracefs: {run.stderr.strip()}"


def _umount(root: Path) -> None:
    run = subprocess.run(["umount", str(root)], capture_output=True, text=True, check=False)
    if run.returncode:
        log.warning("could not unmount tracefs at %s: %s", root, run.stderr.strip())


def sweep_stale(root: Path = TRACEFS) -> list[Path]:
    """Remove instances of qmpctls that are no longer running."""
    removed = []
    for inst in sorted((root / "instances").glob(f"{PREFIX}*")):
        pid = re.match(rf"{PREFIX}(\d+)-", inst.name)
        if pid is not None and not Path(f"/proc/{pid[1]}").exists():
            with contextlib.suppress(OSError):
                inst.rmdir()
                removed.append(inst)
    return removed


class TraceInstance:
    """Record `events` of the `kvm` system in an instance of our own."""

    def __init__(self, events: tuple[str, ...], root: Path = TRACEFS) -> None:
        self.root, self.events = root, events
        self.path = root / "instances" / f"{PREFIX}{os.getpid()}-{next(_counter)}"
        self.mounted = False
        self._pipe: int | None = None  # trace_pipe, while `follow()` drains it
        self._follower: asyncio.Task[None] | None = None
        self._followed = False
        self._drained: list[bytes] = []

    def open(self) -> None:
        """Mount tracefs if needed, make the instance, enable the events."""
        if not (self.root / "instances").is_dir():
            if (problem := _mount(self.root)) is not None:
                raise OSError(problem)
            self.mounted = True
        try:
            for stale in sweep_stale(self.root):
                log.warning("removed tracefs instance %s, left by a qmpctl that died", stale)
            self.path.mkdir()
            (self.path / "tracing_on").write_text("0\n")
            (self.path / "buffer_size_kb").write_text(f"{BUFFER_KB}\n")
            (self.path / "options" / "record-tgid").write_text("1\n")
            for event in self.events:
                (self.path / "events" / "kvm" / event / "enable").write_text("1\n")
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        (self.path / "tracing_on").write_text("1\n")

    def stop(self) -> None:
        (self.path / "tracing_on").write_text("0\n")

    def follow(self, every_s: float = 0.25) -> None:
        """Consume the instance's `trace_pipe` while the run goes on, so the
        buffer holds only what came since the last drain and a long run's
        events are not overrun. Non-blocking reads on the event loop (data the
        kernel already has), every `every_s`: a bounded wake-up rate rather
        than one per event. `read()` then returns what was drained."""
        try:
            self._pipe = os.open(self.path / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:  # the buffer is still read whole at the end
            log.warning("--trace-kernel: cannot follow %s/trace_pipe (%s); reading its buffer "
                        "at the end instead", self.path, exc)
            return
        self._followed = True
        self._follower = asyncio.get_running_loop().create_task(self._drain_every(every_s))

    async def _drain_every(self, every_s: float) -> None:
        while True:
            self._drain()
            await asyncio.sleep(every_s)

    def _drain(self) -> None:
        if self._pipe is None:
            return
        while True:
            try:
                data = os.read(self._pipe, 1 << 20)
            except BlockingIOError:
                return
            if not data:
                return
            self._drained.append(data)

    def unfollow(self) -> None:
        """Stop tracing and take the pipe's last events; on the event loop,
        before `read()` runs in a worker thread."""
        self.stop()
        self._drain()
        self._unfollow()

    def _unfollow(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            self._follower = None
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None

    def read(self) -> tuple[list[str], int]:
        """The recorded lines (tracing stopped first) and how many events the
        buffer overran. Blocking: call it in a worker thread (after `follow()`,
        `unfollow()` first: the lines are those drained from the pipe)."""
        self.stop()
        if self._followed:
            text = b"".join(self._drained).decode(errors="replace")
        else:
            text = (self.path / "trace").read_text(errors="replace")
        lines = text.splitlines()
        lost = 0
        for stats in (self.path / "per_cpu").glob("cpu*/stats"):
            m = re.search(r"^overrun: (\d+)", stats.read_text(), re.M)
            lost += int(m[1]) if m else 0
        return lines, lost

    def close(self) -> None:
        """Remove the instance (its events go with it) and any mount of ours; never raises."""
        self._unfollow()
        try:
            if self.path.is_dir():
                with contextlib.suppress(OSError):
                    (self.path / "tracing_on").write_text("0\n")
                self.path.rmdir()
        except OSError as exc:
            log.warning("could not remove tracefs instance %s: %s", self.path, exc)
        if self.mounted:
            self.mounted = False
            _umount(self.root)

    def __enter__(self) -> TraceInstance:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
