"""What a scenario expects of its run, as data (pure).

QEMU's migration-test keeps the expected result in its scenario
(`MigrateCommon.result`); qmpctl's scenarios do too: an e2e test, a matrix
cell (verified, unless `--known-loss` covers it) or an example states the
verdict it expects, and one rule says whether a report meets it.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from ..core.errors import Verdict
from ..core.model import Model
from .models import RunReport


class Expect(Model):
    """The verdict a run must end in; `known_loss` also accepts lost pages
    (verdict mismatch) for that reason, a documented host bug, without
    hiding them: they are still counted and shown."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verdict: Verdict = "verified"
    known_loss: str | None = Field(None, description="why a mismatch is accepted too")

    def accepts(self, verdict: str) -> bool:
        return verdict == self.verdict or (self.known_loss is not None
                                           and verdict == "mismatch")

    def describe(self) -> str:
        if self.known_loss is None or self.verdict == "mismatch":
            return self.verdict
        return f"{self.verdict}, or mismatch (known loss: {self.known_loss})"

    def problem(self, report: RunReport) -> str | None:
        """None when the report meets the expectation, else one line saying how not."""
        if self.accepts(report.verdict):
            return None
        why = f": {report.error}" if report.error else ""
        return (f"expected {self.describe()}, got {report.verdict} "
                f"(exit {report.exit_code}){why}")


VERIFIED = Expect()
