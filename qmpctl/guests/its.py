"""The arm64 `virt` bare-metal guest (guestload/aarch64): GICv3 + ITS with
LPIs in flight, the wave on other vCPUs (`writers`: vCPUs 1..N, each over
its own slice, as the x86 wave's vCPUs: verify.wave.wave_slices), and kvm-unit-tests' ITS migration
checks; its ITS tables are compared source vs destination one by one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import Field, computed_field

from ..core.errors import UsageError
from ..core.model import Model
from ..core.units import PAGE_SIZE, MiB
from ..qemu.console import ConsoleView, Record, SerialConsole
from ..qemu.machine import QemuMachine
from ..verify.compare import ExplainedPages, MemoryVerdict
from ..verify.its import consumed_pending, lpi_targets
from ..verify.ramimage import Paged, RamCopy, RamImage, RamLayout, Region
from .base import RAM_BASE, GuestCheck
from .gic import ItsTable
from .wave import WaveGuest

ANNOUNCED = "announced by the guest (table record)"


def its_tables(view: ConsoleView) -> list[ItsTable]:
    """The ITS/LPI tables the guest announced (`table` records)."""
    return [ItsTable(r.fields["name"], r.int("base"), r.int("size"), ANNOUNCED)
            for r in view.find("table")]


def table_regions(tables: Sequence[ItsTable]) -> tuple[Region, ...]:
    return tuple(Region(f"ITS table {t.name}", t.base, t.base + t.size) for t in tables)


def its_check(record: Record, stage: str) -> GuestCheck:
    detail = " ".join(f"{k}={v}" for k, v in record.fields.items() if k not in ("name", "result"))
    return GuestCheck(name=f"its-{record.fields.get('name', '?')}", stage=stage,
                      ok=record.fields.get("result") == "PASS", detail=detail)


@dataclass(frozen=True)
class ItsGuest(WaveGuest):
    """arm64 `virt` bare-metal guest: GICv3 + ITS with LPIs in flight, the wave
    on another vCPU, and kvm-unit-tests' three ITS migration checks on `V`."""

    smp: int = 2
    writers: int = 1  # vCPUs 1..writers run the wave (a field here, a property above)
    name = "its"
    image = "its.elf"
    min_smp = 2
    needs_64bit_kvm = False  # KVM only for arm64 hosts, where 64-bit is native

    @property
    def writers_option(self) -> str:
        return f"--writers {self.writers}"

    def fw_cfg(self) -> tuple[tuple[str, str], ...]:
        writers = f" writers={self.writers}" if self.writers > 1 else ""
        return (("opt/qmpctl/params", self.wave.fw_cfg_string() + writers),)

    def validate(self) -> None:
        if self.min_smp <= self.smp <= self.writers:  # below min_smp the base names it
            raise UsageError(f"--writers {self.writers} with --smp {self.smp}: at most "
                             f"{self.smp - 1} (vCPU 0 issues LPIs and writes no wave); give "
                             f"--smp {self.writers + 1} or more")
        super().validate()

    def base_regions(self) -> tuple[Region, ...]:
        base = RAM_BASE["aarch64"]
        return (Region("device tree blob", base, base + 2 * MiB),)

    def layout(self, view: ConsoleView | None = None) -> RamLayout:
        layout = super().layout()
        if view is None:
            return layout
        if (head := view.last("its-guest")) is not None:
            lo, _, hi = head.fields.get("image", "").partition("-")
            if lo and hi:
                return layout.with_regions(Region("guest image", int(lo, 16), int(hi, 16)))
        return layout

    def announced_tables(self, view: ConsoleView) -> tuple[ItsTable, ...]:
        return tuple(its_tables(view))

    def ready(self, view: ConsoleView) -> bool | None:
        return True if view.find("ready") and view.passes >= 1 else None

    async def before_migration(self, console: SerialConsole, timeout: float) -> list[GuestCheck]:
        """LPIs must be flowing, all delivered on the right PE, before we migrate."""
        seen = len(console.view().find("lpi-status"))
        await console.send(b"S")
        status = await console.wait_for(
            lambda v: v.find("lpi-status")[seen] if len(v.find("lpi-status")) > seen else None,
            timeout, "the guest's LPI status")
        issued, delivered, wrong = (status.int(k) for k in ("issued", "delivered", "wrong-pe"))
        lpis = GuestCheck(
            name="lpis-flowing", stage="source, before migration",
            ok=issued > 0 and wrong == 0 and delivered <= issued,
            detail=f"issued={issued} delivered={delivered} wrong-pe={wrong}")
        return [lpis, *await super().before_migration(console, timeout)]

    async def after_resume(self, console: SerialConsole, timeout: float) -> list[GuestCheck]:
        """Send `V`: mapped, pending and unmapped-collection LPI checks."""
        seen = len(console.view().find("its-verify"))
        checks_before = len(console.view().find("its-check"))
        await console.send(b"V")
        await console.wait_for(
            lambda v: True if len(v.find("its-verify")) > seen else None,
            timeout, "the guest's ITS verdict (its-verify)")
        checks = console.view().find("its-check")[checks_before:]
        writers = await super().after_resume(console, timeout)
        if not checks:
            return [GuestCheck(name="its-verify", stage="destination, after resume", ok=False,
                               detail="the guest gave a verdict without any its-check record"),
                    *writers]
        return [*(its_check(r, "destination, after resume") for r in checks), *writers]


class ItsTableVerdict(Model):
    """One ITS/LPI table the guest announced, compared source vs destination.
    `identical` only when every page was compared and none differs."""

    name: str
    base: int
    size: int
    located_by: str = Field(ANNOUNCED, description="where qmpctl learnt the table's place: "
                                                   "the guest's announcement or a GIC register")
    pages: int
    pages_differing: int
    pages_excluded: int = 0
    pages_explained: int = Field(0, description="pages that differ as the platform explains "
                                                "(memory.explained), not lost")
    identical: bool

    @computed_field  # type: ignore[prop-decorator]
    @property
    def consistent(self) -> bool:
        """Nothing lost: every page compared, identical or differing only as the
        platform explains (KVM's consumed pending bits). Under KVM's in-kernel ITS
        this, not `identical`, is what a verified table means."""
        return self.pages_differing == 0 and self.pages_excluded == 0


def its_table_verdict(table: ItsTable, memory: MemoryVerdict, layout: RamLayout
                      ) -> ItsTableVerdict:
    end = table.base + table.size
    differing = memory.differing_in(layout, table.base, end)
    excluded = memory.excluded_in(layout, table.base, end)
    explained = memory.explained_in(layout, table.base, end)
    return ItsTableVerdict(name=table.name, base=table.base, size=table.size,
                           located_by=table.located_by, pages=-(-table.size // PAGE_SIZE),
                           pages_differing=differing, pages_excluded=excluded,
                           pages_explained=explained,
                           identical=differing == 0 and excluded == 0 and explained == 0)


def table_verdicts(tables: Sequence[ItsTable], memory: MemoryVerdict, layout: RamLayout
                   ) -> list[ItsTableVerdict]:
    """A verdict per ITS/LPI table located (none for guests without an ITS)."""
    return [its_table_verdict(t, memory, layout) for t in tables]


def consumed(pages: list[int], details: list[str]) -> ExplainedPages:
    """Pending-table pages whose differences KVM's ITS restore explains (a
    function, not a constant: building the model at import cost every start)."""
    return ExplainedPages(
        cause="lpi-pending-consumed", pages=pages, details=details,
        why="KVM's ITS restore on the destination (KVM_DEV_ARM_ITS_RESTORE_TABLES, "
            "vgic_v3_lpi_sync_pending_status) moves each mapped LPI's pending bit from guest "
            "RAM into the LPI's pending latch and clears the bit in RAM: these LPIs are "
            "pending in the destination's vGIC, not in its RAM",
        proof="every differing byte only clears bits (no bit set, nothing outside the LPI "
              "range or the table), and each cleared bit is an LPI that an ITE in the "
              "source's saved ITTs maps to a collection on that table's vCPU (KVM ITS ABI "
              "rev 0, read from the source's RAM): exactly the bits the restore consumes; the "
              "guest's own delivery check after resume (its-pending) must then see them arrive")


def read_table(image: Paged, layout: RamLayout, table: ItsTable) -> bytes:
    """A table's bytes from one side's RAM image."""
    first = layout.offset(table.base) // PAGE_SIZE
    last = layout.offset(table.base + table.size - 1) // PAGE_SIZE
    data = b"".join(image.page(p) for p in range(first, last + 1))
    start = layout.offset(table.base) - first * PAGE_SIZE
    return data[start:start + table.size]


def explain_consumed_pending(memory: MemoryVerdict, src: RamImage, dst: RamImage,
                             layout: RamLayout, tables: Sequence[ItsTable]) -> list[str]:
    """Under KVM's in-kernel ITS: move the pending-table pages whose only
    differences are the bits the destination's restore consumed into
    `memory.explained`, with the LPIs per page. Returns why each other
    differing pending-table page is not explained (it stays a loss)."""
    by_name = {t.name: t for t in tables}
    collections = by_name.get("its-collection")
    if collections is None:
        return ["no collection table located: pending-table differences cannot be explained"]
    itts = [read_table(src, layout, t) for t in tables if t.name.startswith("itt-")]
    targets = lpi_targets(read_table(src, layout, collections), itts)
    pending = [(t, int(t.name.removeprefix("lpi-pend-cpu"))) for t in tables
               if t.name.startswith("lpi-pend-cpu")]
    pages: list[int] = []
    details: list[str] = []
    problems: list[str] = []
    for page in memory.differing.tolist():
        gpa = layout.gpa(page * PAGE_SIZE)
        hit = next(((t, cpu) for t, cpu in pending
                    if t.base < gpa + PAGE_SIZE and gpa < t.base + t.size), None)
        if hit is None:
            continue
        table, cpu = hit
        found = consumed_pending(src.page(page), dst.page(page), gpa - table.base, table.size,
                                 cpu, targets)
        if found.problem is not None:
            problems.append(f"page {page} gpa 0x{gpa:x} (ITS table {table.name}): "
                            f"{found.problem}")
            continue
        pages.append(page)
        lpis = ", ".join(map(str, found.intids))
        details.append(f"page {page} gpa 0x{gpa:x} (ITS table {table.name}): pending bits of "
                       f"{len(found.intids)} LPIs consumed ({lpis})")
    if pages:
        memory.explain(consumed(pages, details))
    return problems


# Tables KVM itself writes at the stop (the rest, LPI properties and the
# command queue, only the guest writes).
SAVED_BY_KVM = ("its-device", "its-collection", "itt-", "lpi-pend-")


def saved_by_kvm(tables: Sequence[ItsTable]) -> tuple[ItsTable, ...]:
    return tuple(t for t in tables if t.name.startswith(SAVED_BY_KVM))


def table_pages(image: Paged, layout: RamLayout, tables: Sequence[ItsTable]
                ) -> dict[tuple[int, str], bytes]:
    """(page index, table) -> the table's bytes in that page, from one image."""
    out: dict[tuple[int, str], bytes] = {}
    for t in tables:
        starts = [t.base, *range(t.base - t.base % PAGE_SIZE + PAGE_SIZE, t.base + t.size,
                                 PAGE_SIZE)]
        for lo in starts:
            hi = min(lo - lo % PAGE_SIZE + PAGE_SIZE, t.base + t.size)
            page = layout.offset(lo) // PAGE_SIZE
            start = layout.offset(lo) - page * PAGE_SIZE
            out[page, t.name] = image.page(page)[start:start + (hi - lo)]
    return out


class ItsSaveEvidence(Model):
    """What the ITS save at the source's stop wrote into guest RAM (the
    KVM-written tables just before the stop against after it), and whether
    every page it changed arrived on the destination."""

    snapshot: str | None = Field(description="when the before-image was taken (source "
                                             "running); None: never")
    pages_changed: int
    by_table: dict[str, int] = Field(description="table -> pages the save changed")
    pages_arrived: int = Field(description="of those, identical on the destination or "
                                           "differing only as memory.explained says")
    pages_explained: int = 0
    unkept: str | None = Field(None, description="why no before-image was kept, if known")

    @property
    def proven(self) -> bool:
        """The save wrote something, and what it wrote could be followed."""
        return self.snapshot is not None and self.pages_changed > 0

    def describe(self) -> str:
        if self.snapshot is None and self.unkept:
            return f"{self.unkept}: what the save at the stop wrote cannot be shown " \
                   "(inconclusive for this check)"
        if self.snapshot is None:
            return ("no before-image of the tables was read while the source still ran: what "
                    "the save at the stop wrote cannot be shown (inconclusive for this check)")
        if not self.pages_changed:
            return (f"the save changed no table page since {self.snapshot}: nothing proves "
                    "the save's writes travel (inconclusive for this check)")
        tables = ", ".join(f"{k} {v}" for k, v in self.by_table.items())
        explained = f" ({self.pages_explained} as explained)" if self.pages_explained else ""
        return (f"the save at the stop changed {self.pages_changed} pages since "
                f"{self.snapshot} ({tables}); {self.pages_arrived} arrived on the "
                f"destination{explained}")


WHOLE_RAM_MAX = 1 << 30  # a whole-RAM before-image is kept up to this guest size


@dataclass
class ItsSaveWatch:
    """The before-image of the save at stop: the KVM-written ITS tables of the
    running source, kept from the last pass at which the source was still
    running after they were read. A guest that did not say where its tables
    are (`tables` None) has them located only after the migration: its whole
    RAM is kept instead (up to `WHOLE_RAM_MAX`), once, at the first pass: KVM
    writes these tables only when it saves them (at a stop), so any image
    taken while this source ran precedes the save, and copying the whole RAM
    at every pass would slow the run it watches (in a lab, enough to stall
    it)."""

    tables: tuple[ItsTable, ...] | None
    before: dict[tuple[int, str], bytes] | RamCopy | None = None
    snapshot: str = ""
    unkept: str | None = None

    async def observe(self, machine: QemuMachine, layout: RamLayout, label: str) -> None:
        if self.tables is None and self.before is not None:
            return

        def read() -> dict[tuple[int, str], bytes] | RamCopy | None:
            with RamImage(machine.spec.ram_path) as image:
                if self.tables is not None:
                    return table_pages(image, layout, self.tables)
                if image.size > WHOLE_RAM_MAX:
                    self.unkept = (f"the guest did not announce its tables and its RAM "
                                   f"({image.size >> 20} MiB) is above the "
                                   f"{WHOLE_RAM_MAX >> 20} MiB kept whole as a before-image")
                    return None
                return RamCopy(image.bytes.copy())

        data = await asyncio.to_thread(read)
        status = await machine.execute("query-status")
        if data is not None and status.get("running"):  # read before the stop
            self.before, self.snapshot = data, label

    def evidence(self, src: RamImage, layout: RamLayout, memory: MemoryVerdict,
                 located: Sequence[ItsTable]) -> ItsSaveEvidence:
        """`located`: the tables found after the migration (used when the
        guest did not announce them)."""
        tables = self.tables if self.tables is not None else saved_by_kvm(located)
        if self.before is None:
            return ItsSaveEvidence(snapshot=None, pages_changed=0, by_table={},
                                   pages_arrived=0, unkept=self.unkept)
        before = (self.before if isinstance(self.before, dict)
                  else table_pages(self.before, layout, tables))
        after = table_pages(src, layout, tables)
        changed_keys = [k for k, data in after.items() if before.get(k) != data]
        changed = sorted({page for page, _ in changed_keys})
        differing = set(memory.differing.tolist())
        explained = {p for e in memory.explained for p in e.pages}
        by_table: dict[str, int] = {}
        for _, name in changed_keys:
            by_table[name] = by_table.get(name, 0) + 1
        return ItsSaveEvidence(
            snapshot=self.snapshot, pages_changed=len(changed), by_table=by_table,
            pages_arrived=sum(1 for p in changed if p not in differing),
            pages_explained=sum(1 for p in changed if p in explained))
