"""A destination byte flipped after the migration: the run must name that page.

This is how to check that the suite can fail: if it ever passed, nothing above
could be trusted.
"""

import pytest

from qmpctl.testing import ExitCode, Expect, assert_verified, corrupt_destination

GPA = 0x00D0_0123  # 13 MiB: inside the wave (2..18 MiB), a byte the guest never writes


async def test_corrupted_destination_is_caught(qmpctl_migrate):
    # the scenario states what it expects: a mismatch (checked by the fixture)
    report = await qmpctl_migrate(hooks=corrupt_destination(GPA), accel="tcg",
                                  ram=64, wave_end=18, expect=Expect(verdict="mismatch"))
    assert report.exit_code == ExitCode.MISMATCH
    with pytest.raises(AssertionError, match=f"gpa 0x{GPA & ~0xFFF:x} "):
        assert_verified(report)
