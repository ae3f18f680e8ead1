"""`--switchover-ack`: the source switches over only once the destination
acknowledged it may (QEMU 8.1+).

With the capability on, the destination counts the devices that must
approve the switchover before it happens (`loadvm_state_switchover_ack_needed`;
VFIO devices do, once their initial data is loaded: `loadvm_approve_switchover`),
and sends the source an ACK over the return path when none is left; the
source completes a precopy migration only after that ACK
(`source_return_path_thread_switchover_acked`). "The capability was set"
proves none of it: the evidence is the ACK itself, in both QEMUs' traces."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from ..models import FeatureEvidence
from ..settings import MigrationSettings
from . import DocRow, Feature, FeatureOptions, Observed, RunFacts, outcome, trace_args

NEEDED = "loadvm_state_switchover_ack_needed"
APPROVED = "loadvm_approve_switchover"
ACKED = "source_return_path_thread_switchover_acked"


@dataclass(frozen=True)
class SwitchoverAck:
    """`switchover-ack` (with the `return-path` it needs): no switchover
    before the destination's ACK."""

    name: str = "switchover-ack"

    def settings(self) -> MigrationSettings:
        return MigrationSettings(capabilities={"return-path": True, "switchover-ack": True})

    def trace_events(self) -> tuple[str, ...]:
        return (NEEDED, APPROVED, ACKED)

    def evidence(self, seen: Observed) -> FeatureEvidence:
        needed = trace_args(seen.dst_log, NEEDED)
        approvals = len(trace_args(seen.dst_log, APPROVED))
        acks = len(trace_args(seen.src_log, ACKED))
        pending = [int(n) for a in needed for n in a.rsplit("=", 1)[-1].split() if n.isdigit()]
        figures = {"acks_received": acks, "devices_to_approve": sum(pending),
                   "approvals": approvals}
        detail = (f"the destination counted {sum(pending)} device(s) to approve the "
                  f"switchover ({NEEDED}), {approvals} approved ({APPROVED}); the source "
                  f"received {acks} ACK(s) ({ACKED})")
        problems = []
        if not needed:
            problems.append("the destination never checked for switchover approvals")
        if not acks:
            problems.append("the source never received the destination's switchover ACK")
        if approvals < sum(pending):
            problems.append("not every device that had to approve the switchover did")
        return outcome(self.name, problems, detail, figures)


class SwitchoverAckOptions(FeatureOptions):
    """switchover-ack: the destination's ACK gates the switchover."""

    switchover_ack: bool = Field(False, description="switchover-ack (with return-path): the "
                                 "source switches over only after the destination's ACK; the "
                                 "report shows the ACK in both QEMUs' traces (QEMU 8.1+)")

    order = 120
    matrix = {"switchover-ack": {"switchover_ack": True}}
    doc = DocRow("`--switchover-ack` (QEMU 8.1+)", "`return-path`, `switchover-ack`",
                 f"the destination checked for devices that must approve (`{NEEDED}`), each "
                 f"approved (`{APPROVED}`), and the source received the ACK (`{ACKED}`)")

    def problems(self, run: RunFacts) -> list[str]:
        if self.switchover_ack and run.transport == "file":
            return ["--switchover-ack with --transport file: the ACK comes back over the "
                    "return path, and a file has none"]
        return []

    def build(self, run: RunFacts) -> Feature | None:
        return SwitchoverAck() if self.switchover_ack else None
