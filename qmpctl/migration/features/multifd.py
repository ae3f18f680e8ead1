"""`--multifd N`: pages sent by N threads over N channels, optionally compressed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from ..models import FeatureEvidence
from ..settings import MigrationSettings
from . import DocRow, Feature, FeatureOptions, Observed, RunFacts, outcome, trace_args

Compression = Literal["none", "zlib", "zstd"]

# Below this ratio of multifd bytes to the page bytes they carried, the pages
# were compressed. The wave's pages (one changed byte) compress a hundredfold.
COMPRESSED_RATIO = 0.9


def _channels(log: str, event: str) -> dict[int, int]:
    """`multifd_*_thread_end channel N packets M` lines: packets per channel."""
    out = {}
    for args in trace_args(log, event):
        if m := re.match(r"channel (\d+) packets (\d+)", args):
            out[int(m.group(1))] = int(m.group(2))
    return out


@dataclass(frozen=True)
class Multifd:
    """`multifd`: pages sent by N threads over N channels, optionally compressed."""

    channels: int
    compression: Compression | None = None
    # mapped-ram: the senders write pages straight into the file, no packets
    to_file: bool = False
    name: str = "multifd"

    def settings(self) -> MigrationSettings:
        params: dict[str, int | str] = {"multifd-channels": self.channels}
        if self.compression is not None:
            params["multifd-compression"] = self.compression
        return MigrationSettings(capabilities={"multifd": True}, parameters=params)

    def trace_events(self) -> tuple[str, ...]:
        return ("multifd_send_thread_end", "multifd_recv_thread_end")

    def evidence(self, seen: Observed) -> FeatureEvidence:
        s = seen.stats
        sent = _channels(seen.src_log, "multifd_send_thread_end")
        received = _channels(seen.dst_log, "multifd_recv_thread_end")
        busy = sorted(c for c, packets in sent.items() if packets or self.to_file)
        figures: dict[str, int | float] = {
            "multifd_bytes": s.multifd_bytes, "channels_used": len(busy),
            "packets_sent": sum(sent.values()), "packets_received": sum(received.values())}
        problems = []
        if not s.multifd_bytes:
            problems.append("ram.multifd-bytes is 0")
        if len(busy) != self.channels:
            problems.append(f"{len(busy)} of {self.channels} channels "
                            + ("ran" if self.to_file else "sent packets")
                            + " (multifd_send_thread_end)")
        words = [f"{s.multifd_bytes} bytes over {len(busy)} channels "
                 f"({figures['packets_sent']} packets sent, "
                 f"{figures['packets_received']} received)"]
        page_bytes = s.normal_pages * s.page_size
        if self.compression not in (None, "none"):
            ratio = s.multifd_bytes / page_bytes if page_bytes else 1.0
            figures["compression_ratio"] = round(ratio, 4)
            words.append(f"{self.compression}: {ratio:.3f} bytes sent per page byte")
            if ratio >= COMPRESSED_RATIO:
                problems.append(f"{self.compression} did not shrink the pages (ratio "
                                f"{ratio:.3f} of multifd bytes to page bytes)")
        return outcome(self.name, problems, "; ".join(words), figures)


class MultifdOptions(FeatureOptions):
    """multifd with N channels and a compression."""

    multifd: int | None = Field(None, description="multifd with N channels; the report shows "
                                "the channels that sent")
    multifd_compression: Compression | None = Field(None, description="--multifd: none, zlib "
                                                    "or zstd")

    order = 60
    matrix = {"multifd": {"multifd": 4},
              "multifd-zlib": {"multifd": 2, "multifd_compression": "zlib"},
              "multifd-zstd": {"multifd": 2, "multifd_compression": "zstd"},
              "multifd-zero-page": {"multifd": 2, "zero_page_detection": "multifd"}}
    doc = DocRow("`--multifd N` (`--multifd-compression zlib|zstd`)",
                 "`multifd`, `multifd-channels` (`multifd-compression`)",
                 "`ram.multifd-bytes` > 0 and all N channels sent packets "
                 "(`multifd_send_thread_end` trace, both sides' packet counts); compressed: "
                 f"multifd bytes / page bytes below {COMPRESSED_RATIO} (the wave compresses "
                 "to 0.005)")

    def problems(self, run: RunFacts) -> list[str]:
        problems = []
        if self.multifd is None and self.multifd_compression is not None:
            problems.append("--multifd-compression needs --multifd N")
        if self.multifd is not None and not 1 <= self.multifd <= 255:
            problems.append(f"--multifd {self.multifd}: channels must be 1..255")
        return problems

    def build(self, run: RunFacts) -> Feature | None:
        if self.multifd is None:
            return None
        return Multifd(self.multifd, self.multifd_compression, to_file=run.transport == "file")
