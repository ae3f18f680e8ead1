"""A scenario's expected outcome is data with one rule (pure)."""

from __future__ import annotations

import pytest

from qmpctl.report.models import RunReport
from qmpctl.testing import (
    Expect,
    LostPages,
    NotVerified,
    UnexpectedVerdict,
    assert_expected,
)


def ended(verdict: str, exit_code: int, error: str | None = None) -> RunReport:
    return RunReport(qmpctl_version="t", started_at="t", verdict=verdict,  # type: ignore[arg-type]
                     exit_code=exit_code, error=error)


def test_a_known_loss_accepts_a_mismatch_and_nothing_else() -> None:
    known = Expect(known_loss="kvm_pvm ring overflow")
    assert [v for v in ("verified", "mismatch", "inconclusive", "migration-failed")
            if known.accepts(v)] == ["verified", "mismatch"]
    assert [v for v in ("verified", "mismatch") if Expect().accepts(v)] == ["verified"]
    assert known.describe() == "verified, or mismatch (known loss: kvm_pvm ring overflow)"
    assert Expect(verdict="migration-failed").describe() == "migration-failed"


def test_an_unmet_expectation_says_what_was_expected_and_what_came() -> None:
    failed = Expect(verdict="migration-failed")
    assert failed.problem(ended("migration-failed", 4)) is None
    assert failed.problem(ended("verified", 0)) == (
        "expected migration-failed, got verified (exit 0)")
    with pytest.raises(UnexpectedVerdict, match=r"^expected migration-failed, got verified"):
        assert_expected(ended("verified", 0), failed)
    with pytest.raises(UnexpectedVerdict, match=r"(?s)got guest-failed \(exit 5\): boom.*"
                                                r"GUEST-FAILED"):
        assert_expected(ended("guest-failed", 5, "boom"), failed)
    assert_expected(ended("migration-failed", 4), failed)


def test_expecting_verified_is_assert_verified() -> None:
    with pytest.raises(NotVerified) as err:
        assert_expected(ended("inconclusive", 6))
    assert not isinstance(err.value, LostPages) and "INCONCLUSIVE" in str(err.value)
    assert_expected(ended("verified", 0))
