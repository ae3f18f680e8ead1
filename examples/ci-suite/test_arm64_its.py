"""arm64 `virt` with GICv3 and the ITS, LPIs flowing while memory is dirtied.

Under TCG here (any host); on an arm64 KVM host (or in a `qmpctl lab`) use
accel="kvm" and mark the test qmpctl_kvm(ring=True, arch="aarch64",
ring_with_bitmap=True). Check `consistent`, not `identical`: under KVM the
destination's restore consumes pending bits, which qmpctl names, not loses.
"""

from qmpctl.testing import assert_verified


async def test_its_tables_and_lpis_survive_migration(qmpctl_migrate):
    report = await qmpctl_migrate(arch="aarch64", accel="tcg", ram=64, wave_end=32)
    assert_verified(report)
    assert report.its_tables, "the guest announced no ITS tables"
    assert all(table.consistent for table in report.its_tables)
