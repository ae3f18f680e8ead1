"""WHAT KIND of mismatch each differing page is, read from the workload's own
encoding of what it wrote.

Every differing page falls in one class:

* `stale`: the destination holds a value the source held earlier, i.e. a page
  the guest dirtied that was not sent again (a lost dirty page). How far
  behind is recorded: wave passes, or guestload sequence numbers.
* `ahead`: the destination holds a value the source has not reached yet.
* `foreign`: a value the source never held at that place: bytes the workload
  never writes differ, or the page is not a valid workload page on the
  destination while it is on the source (corruption on the destination).
* `unexplained`: the classifier knows nothing about this page (outside the
  workload's memory, or not a workload page on the source either).

A classifier sees a batch of differing pages as two (n, PAGE_SIZE) uint8
arrays plus their guest-physical addresses and returns one class code and one
step count per page, vectorised over the batch. `classify_mismatches` feeds
it every differing page (in batches, so hundreds of thousands of pages need
bounded memory) and summarises: pages per class, a histogram of how far
behind (or ahead), and the first few addresses of each class.

The two workloads:

* wave (guestload/x86/wave.c, guestload/aarch64/wave.c): adds `delta` (mod
  256) to the byte at `offset` of every `stride` block of [start, end), pass
  after pass, and writes nothing else there. A counter byte with
  dst == src - k*delta is k passes behind; dst == src + k*delta is k ahead
  (1 <= k <= max_steps; stale wins where both fit).
* guestload (guestload/linux/guestload.c): every page it wrote holds
  word 0 = sequence number of its last write, word 1 = its buffer page index
  ^ MAGIC_IDX, last word = tail_of(index, seq); nothing else in the page is
  written. A page is a guestload page when its tail matches. Stale = lower
  sequence on the destination than on the source.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, Protocol

from pydantic import Field

from ..core.model import Model
from ..core.units import PAGE_SIZE
from .ramimage import RamImage, RamLayout
from .wave import WaveParams

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
else:
    from ..core.lazy import numpy as np

EXAMPLES = 5
BATCH_PAGES = 2048  # pages gathered per side at once: 8 MiB each
EXACT_STEPS = 16  # histogram buckets are exact up to here, then powers of two


class MismatchKind(StrEnum):
    STALE = "stale"
    AHEAD = "ahead"
    FOREIGN = "foreign"
    UNEXPLAINED = "unexplained"


KIND_CODES: tuple[MismatchKind, ...] = tuple(MismatchKind)  # code = index here
STALE, AHEAD, FOREIGN, UNEXPLAINED = range(4)


@dataclass(frozen=True)
class PageVerdicts:
    """A classifier's answer for a batch: a code (index into KIND_CODES) and
    a step count (behind for stale, ahead for ahead, else 0) per page."""

    kind: npt.NDArray[np.int8]
    steps: npt.NDArray[np.int64]


class PageClassifier(Protocol):
    """Classifies a batch of differing pages from the workload's encoding."""

    @property
    def name(self) -> str:
        """Short name for reports: "wave", "guestload"."""
        ...

    @property
    def unit(self) -> str:
        """What a step counts, singular: "pass", "write"."""
        ...

    def classify(self, src: npt.NDArray[np.uint8], dst: npt.NDArray[np.uint8],
                 gpa: npt.NDArray[np.int64]) -> PageVerdicts:
        """src, dst: (n, PAGE_SIZE) page contents; gpa: (n,) page addresses."""
        ...


class KindSummary(Model):
    """The differing pages of one class."""

    pages: int = 0
    steps: dict[str, int] = Field(
        default_factory=dict,
        description="stale: steps behind -> pages; ahead: steps ahead -> pages. Keys are "
                    f"exact up to {EXACT_STEPS}, then ranges such as '17-32'")
    examples: list[int] = Field(default_factory=list,
                                description="guest-physical addresses of the first pages")


class MismatchClasses(Model):
    """Every differing page classified by the workload's own encoding."""

    classifier: str
    unit: str = Field(description="what a step counts: 'pass' (wave), 'write' (guestload)")
    pages: int
    stale: KindSummary
    ahead: KindSummary
    foreign: KindSummary
    unexplained: KindSummary

    def of(self, kind: MismatchKind) -> KindSummary:
        summary: KindSummary = getattr(self, kind.value)
        return summary

    def headline(self) -> str:
        """e.g. '1218 stale (1 pass behind), 2 foreign'."""
        parts = []
        for kind in MismatchKind:
            s = self.of(kind)
            if not s.pages:
                continue
            text = f"{s.pages} {kind.value}"
            if kind in (MismatchKind.STALE, MismatchKind.AHEAD) and s.steps:
                text += f" ({steps_phrase(s.steps, self.unit, kind)})"
            parts.append(text)
        return ", ".join(parts) if parts else "no differing pages"


def plural(n: int, unit: str) -> str:
    if n == 1:
        return unit
    return unit + ("es" if unit.endswith("s") else "s")


def steps_phrase(steps: dict[str, int], unit: str, kind: MismatchKind) -> str:
    """'1 pass behind', '1-3 passes behind, mostly 1', '17-32 writes ahead'."""
    way = "behind" if kind is MismatchKind.STALE else "ahead"
    labels = list(steps)
    if len(labels) == 1:
        lo, hi = _label_bounds(labels[0])
        return f"{labels[0]} {plural(hi if lo == hi else 2, unit)} {way}"
    lo = _label_bounds(labels[0])[0]
    hi = _label_bounds(labels[-1])[1]
    mode = max(labels, key=lambda k: steps[k])
    return f"{lo}-{hi} {plural(2, unit)} {way}, mostly {mode}"


def _label_bounds(label: str) -> tuple[int, int]:
    lo, _, hi = label.partition("-")
    return int(lo), int(hi or lo)


def step_histogram(steps: npt.NDArray[np.int64]) -> dict[str, int]:
    """Pages per step count, exact up to EXACT_STEPS, then power-of-two ranges."""
    if steps.size == 0:
        return {}
    s = steps.astype(np.float64)
    hi = np.where(steps <= EXACT_STEPS, steps,
                  np.exp2(np.ceil(np.log2(np.maximum(s, 1.0)))).astype(np.int64))
    values, counts = np.unique(hi, return_counts=True)
    out = {}
    for v, n in zip(values.tolist(), counts.tolist(), strict=True):
        out[str(v) if v <= EXACT_STEPS else f"{v // 2 + 1}-{v}"] = n
    return out


# ---- wave ------------------------------------------------------------------


def _step_table(delta: int, max_steps: int) -> npt.NDArray[np.uint8]:
    """table[d] = smallest k in 1..max_steps with k*delta == d (mod 256), else 0."""
    table = np.zeros(256, dtype=np.uint8)
    for k in range(max_steps, 0, -1):
        table[(k * delta) % 256] = k
    table[0] = 0  # a counter that went all the way round reads as equal
    return table


@dataclass(frozen=True)
class WaveClassifier:
    """The bare-metal wave guest: only the counter bytes may differ."""

    params: WaveParams
    max_steps: int = 16
    name: ClassVar[str] = "wave"
    unit: ClassVar[str] = "pass"

    def counter_mask(self, gpa: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """(n, PAGE_SIZE): which bytes of each page are wave counters."""
        p = self.params
        first = p.start + p.offset  # address of the first counter
        last = p.block_gpa(p.blocks - 1) + p.offset  # of the last one
        j = np.arange(PAGE_SIZE, dtype=np.int64)
        phase = (first - gpa) % p.stride  # offset of the page's first counter
        phases, which = np.unique(phase, return_inverse=True)
        rows = ((j[None, :] - phases[:, None]) % p.stride) == 0
        mask: npt.NDArray[np.bool_] = rows[which.reshape(-1)]
        # Pages cut by the first or last counter: clear what lies outside.
        edge = np.flatnonzero((gpa < first) | (gpa + PAGE_SIZE > last))
        for i in edge.tolist():
            addr = int(gpa[i]) + j
            mask[i] &= (addr >= first) & (addr <= last)
        return mask

    def classify(self, src: npt.NDArray[np.uint8], dst: npt.NDArray[np.uint8],
                 gpa: npt.NDArray[np.int64]) -> PageVerdicts:
        p = self.params
        n = len(gpa)
        kind = np.full(n, UNEXPLAINED, dtype=np.int8)
        steps = np.zeros(n, dtype=np.int64)
        overlaps = np.zeros(n, dtype=bool)
        for start, end in p.parts:  # pages in the wave's hole are not the wave's
            overlaps |= (gpa + PAGE_SIZE > start) & (gpa < end)
        inside = np.flatnonzero(overlaps)
        if inside.size == 0:
            return PageVerdicts(kind, steps)
        s, d = src[inside], dst[inside]
        counter = self.counter_mask(gpa[inside])
        diff = s != d
        other = (diff & ~counter).any(axis=1)
        cdiff = diff & counter
        table = _step_table(p.delta, self.max_steps)
        behind = np.where(cdiff, table[s - d], 0)  # uint8 arithmetic wraps mod 256
        ahead = np.where(cdiff, table[d - s], 0)
        all_behind = ~(cdiff & (behind == 0)).any(axis=1)
        all_ahead = ~(cdiff & (ahead == 0)).any(axis=1)
        sub = np.full(inside.size, FOREIGN, dtype=np.int8)
        sub_steps = np.zeros(inside.size, dtype=np.int64)
        is_ahead = ~other & all_ahead
        is_stale = ~other & all_behind
        sub[is_ahead] = AHEAD
        sub_steps[is_ahead] = ahead.max(axis=1)[is_ahead]
        sub[is_stale] = STALE
        sub_steps[is_stale] = behind.max(axis=1)[is_stale]
        kind[inside] = sub
        steps[inside] = sub_steps
        return PageVerdicts(kind, steps)


# ---- guestload (Linux) -------------------------------------------------------

MAGIC_IDX = 0x51A9C7E1D00DFEED
MAGIC_TAIL = 0x7A11C0FFEE15BEEF
_SEQ_MUL = 0x9E3779B97F4A7C15
_IDX_MUL = 0xC2B2AE3D27D4EB4F
WORDS = PAGE_SIZE // 8


@functools.cache
def guestload_fields() -> npt.NDArray[np.bool_]:
    """The bytes guestload writes in a page (a function: numpy loads on first use)."""
    fields = np.zeros(PAGE_SIZE, dtype=bool)
    fields[:16] = True  # word 0: sequence, word 1: index ^ MAGIC_IDX
    fields[-8:] = True  # last word: tail_of(index, seq)
    return fields


def guestload_tail(index: npt.NDArray[np.uint64], seq: npt.NDArray[np.uint64]
                   ) -> npt.NDArray[np.uint64]:
    """guestload.c's tail_of(page, seq), with the same 64-bit wrap-around."""
    u64 = np.uint64
    tail: npt.NDArray[np.uint64] = (seq * u64(_SEQ_MUL)) ^ (index * u64(_IDX_MUL)) \
        ^ u64(MAGIC_TAIL)
    return tail


def guestload_page(index: int, seq: int) -> npt.NDArray[np.uint8]:
    """One page as guestload writes it (for tests and fault injection)."""
    w = np.zeros(WORDS, dtype="<u8")
    w[0] = seq
    w[1] = np.uint64(index) ^ np.uint64(MAGIC_IDX)
    w[-1] = guestload_tail(np.array([index], np.uint64), np.array([seq], np.uint64))[0]
    page: npt.NDArray[np.uint8] = w.view(np.uint8)
    return page


@dataclass(frozen=True)
class GuestloadClassifier:
    """Linux guests running guestload: pages carry (sequence, index, tail).

    Assumes 4 KiB guest pages (x86_64, and Debian's arm64 cloud kernel).
    """

    name: ClassVar[str] = "guestload"
    unit: ClassVar[str] = "write"

    def classify(self, src: npt.NDArray[np.uint8], dst: npt.NDArray[np.uint8],
                 gpa: npt.NDArray[np.int64]) -> PageVerdicts:
        n = len(gpa)
        ws = np.ascontiguousarray(src).view("<u8").reshape(n, WORDS)
        wd = np.ascontiguousarray(dst).view("<u8").reshape(n, WORDS)
        seq_s, seq_d = ws[:, 0], wd[:, 0]
        magic = np.uint64(MAGIC_IDX)
        idx_s, idx_d = ws[:, 1] ^ magic, wd[:, 1] ^ magic
        valid_s = ws[:, -1] == guestload_tail(idx_s, seq_s)
        valid_d = wd[:, -1] == guestload_tail(idx_d, seq_d)
        other = ((src != dst) & ~guestload_fields()).any(axis=1)
        kind = np.full(n, UNEXPLAINED, dtype=np.int8)
        steps = np.zeros(n, dtype=np.int64)
        both = valid_s & valid_d & ~other & (idx_s == idx_d)
        older = both & (seq_d < seq_s)
        newer = both & (seq_d > seq_s)
        kind[valid_s & ~(older | newer)] = FOREIGN
        kind[older] = STALE
        kind[newer] = AHEAD
        steps[older] = (seq_s[older] - seq_d[older]).astype(np.int64)
        steps[newer] = (seq_d[newer] - seq_s[newer]).astype(np.int64)
        return PageVerdicts(kind, steps)


# ---- driving a classifier over every differing page -------------------------


def classify_pages(src: npt.NDArray[np.uint8], dst: npt.NDArray[np.uint8],
                   pages: npt.ArrayLike, layout: RamLayout, classifier: PageClassifier,
                   examples: int = EXAMPLES, batch_pages: int = BATCH_PAGES
                   ) -> MismatchClasses:
    """Classify every page index in `pages` of two whole-RAM byte arrays (pure).

    `src` and `dst` are the flat RAM files (e.g. `RamImage.bytes`); page i is
    bytes [i*PAGE_SIZE, (i+1)*PAGE_SIZE) at guest-physical layout.gpa(i*PAGE_SIZE).
    """
    if src.shape != dst.shape or src.size % PAGE_SIZE:
        raise ValueError(f"RAM images differ in size or are not whole pages: "
                         f"{src.size} vs {dst.size} bytes")
    idx = np.unique(np.asarray(pages, dtype=np.int64))
    src_pages = src.reshape(-1, PAGE_SIZE)
    dst_pages = dst.reshape(-1, PAGE_SIZE)
    if idx.size and (idx[0] < 0 or idx[-1] >= len(src_pages)):
        raise ValueError(f"page index out of range 0..{len(src_pages) - 1}")
    kinds: list[npt.NDArray[np.int8]] = []
    steps: list[npt.NDArray[np.int64]] = []
    for lo in range(0, idx.size, batch_pages):
        chunk = idx[lo:lo + batch_pages]
        gpa = layout.gpas(chunk * PAGE_SIZE)
        verdicts = classifier.classify(src_pages[chunk], dst_pages[chunk], gpa)
        kinds.append(verdicts.kind)
        steps.append(verdicts.steps)
    kind = np.concatenate(kinds) if kinds else np.empty(0, np.int8)
    step = np.concatenate(steps) if steps else np.empty(0, np.int64)
    gpas = layout.gpas(idx * PAGE_SIZE)
    summaries = {}
    for code, k in enumerate(KIND_CODES):
        sel = kind == code
        summaries[k.value] = KindSummary(
            pages=int(sel.sum()),
            steps=step_histogram(step[sel]) if k in (MismatchKind.STALE,
                                                     MismatchKind.AHEAD) else {},
            examples=gpas[sel][:examples].tolist(),
        )
    return MismatchClasses(classifier=classifier.name, unit=classifier.unit,
                           pages=int(idx.size), **summaries)


def classify_mismatches(src: RamImage, dst: RamImage, pages: npt.ArrayLike,
                        layout: RamLayout, classifier: PageClassifier,
                        examples: int = EXAMPLES) -> MismatchClasses:
    """Classify every differing page of two RAM images (see classify_pages)."""
    return classify_pages(src.bytes, dst.bytes, pages, layout, classifier, examples)
