"""The one hook protocol: `chain` calls every hook at each point, in order,
and the `--fault` injector fires through it like any test's hook."""

from __future__ import annotations

import signal
from typing import Any, cast

from qmpctl.faults.injector import FaultInjector
from qmpctl.faults.spec import parse_fault
from qmpctl.qemu.machine import QemuMachine
from qmpctl.scenario.hooks import Hooks, chain, fault_hooks


class FakeSide:
    def __init__(self, name: str) -> None:
        self.name, self.signals = name, list[signal.Signals]()

    async def signal(self, sig: signal.Signals) -> str:
        self.signals.append(sig)
        return f"{self.name} got {sig.name}"


def sides() -> tuple[QemuMachine, QemuMachine]:
    return cast(QemuMachine, FakeSide("src")), cast(QemuMachine, FakeSide("dst"))


async def test_chain_calls_every_hook_at_each_point_in_order() -> None:
    calls: list[str] = []

    def recorder(tag: str) -> Any:
        async def hook(*args: Any) -> None:
            calls.append(f"{tag}{args[:1]}")
        return hook

    joined = chain(Hooks(on_pass=recorder("a")), Hooks(), Hooks(on_pass=recorder("b"),
                                                                 migration_ended=recorder("e")))
    src, dst = sides()
    assert joined.on_pass is not None and joined.migration_ended is not None
    await joined.on_pass(3, src, dst)
    await joined.migration_ended()
    assert calls == ["a(3,)", "b(3,)", "e()"]
    # a point nobody hooks stays None: the run skips it
    assert joined.before_verify is None and joined.at_migrate is None


async def test_a_fault_fires_through_the_hooks_at_its_pass_and_is_recorded() -> None:
    injector = FaultInjector([parse_fault("kill-dst@pass:2"),
                              parse_fault("stop-src@status:active")])
    hooks = fault_hooks(injector)
    src, dst = sides()
    assert hooks.at_migrate and hooks.on_pass and hooks.on_status and hooks.migration_ended
    await hooks.at_migrate(src, dst)
    await hooks.on_pass(1, src, dst)
    assert injector.records == []  # not yet: pass 2
    await hooks.on_pass(2, src, dst)
    await hooks.on_status("active", src, dst)
    await hooks.migration_ended()
    assert [(r.fault, r.pass_no, r.status) for r in injector.records] == [
        ("kill-dst@pass:2", 2, "none"), ("stop-src@status:active", 2, "active")]
    assert cast(FakeSide, dst).signals == [signal.SIGKILL]
    assert cast(FakeSide, src).signals == [signal.SIGSTOP]
