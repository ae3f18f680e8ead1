"""End-to-end: `--switchover-ack` under TCG, verified page by page, with the
destination's ACK seen in both QEMUs' traces."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from qmpctl.cli import app
from qmpctl.testing import ExitCode, MigrateFn
from tests.e2e.test_features import engaged
from tests.e2e.test_migrate_x86 import assert_sound, migrate

pytestmark = pytest.mark.qemu


async def test_switchover_waits_for_the_destinations_ack(qmpctl_migrate: MigrateFn) -> None:
    rep = await migrate(qmpctl_migrate, accel="tcg", switchover_ack=True)
    assert_sound(rep)
    ack = engaged(rep)["switchover-ack"]
    assert ack.figures["acks_received"] == 1
    assert rep.config is not None
    caps = rep.config.migration_settings.capabilities
    assert caps["return-path"] is True and caps["switchover-ack"] is True



def test_a_qemu_without_it_is_refused_before_the_guest_starts() -> None:
    """Checked against each QEMU's QMP schema: 7.2 has no switchover-ack."""
    result = CliRunner().invoke(app, ["migrate", "--accel", "tcg", "--qemu", "7.2",
                                      "--switchover-ack"])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "unknown migration capability 'switchover-ack' for QEMU 7.2" in result.output
