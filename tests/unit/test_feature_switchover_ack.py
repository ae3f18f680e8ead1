"""switchover-ack (qmpctl/migration/features/switchover_ack.py), pure: its
option, its rule, its settings and the ACK it must find in both logs."""

from __future__ import annotations

import pytest

from qmpctl.core.errors import UsageError
from qmpctl.matrix.features import FEATURES
from qmpctl.migration.features import Observed
from qmpctl.migration.features.switchover_ack import SwitchoverAck
from qmpctl.migration.models import MigrationStats
from qmpctl.scenario.options import MigrateOptions, build_features

STATS = MigrationStats(status="completed")
# as QEMU 10.0 logs them
DST = "10@1.0:loadvm_state_switchover_ack_needed Switchover ack pending num=0\n"
SRC = "11@2.0:source_return_path_thread_switchover_acked \n"


def test_the_option_builds_the_feature_with_the_return_path_it_needs() -> None:
    [feature] = build_features(MigrateOptions.from_kwargs(switchover_ack=True), "tcg", 0)
    assert feature.name == "switchover-ack"
    assert feature.settings().capabilities == {"return-path": True, "switchover-ack": True}
    assert "source_return_path_thread_switchover_acked" in feature.trace_events()
    assert not build_features(MigrateOptions.from_kwargs(), "tcg", 0)
    assert FEATURES["switchover-ack"] == {"switchover_ack": True}


def test_a_file_has_no_return_path() -> None:
    with pytest.raises(UsageError, match="--switchover-ack with --transport file"):
        build_features(MigrateOptions.from_kwargs(switchover_ack=True, transport="file"),
                       "tcg", 0)


def test_engaged_only_when_the_source_received_the_ack() -> None:
    ev = SwitchoverAck().evidence(Observed(STATS, SRC, DST))
    assert ev.engaged, ev.detail
    assert ev.figures == {"acks_received": 1, "devices_to_approve": 0, "approvals": 0}
    assert not SwitchoverAck().evidence(Observed(STATS, "", DST)).engaged  # no ACK
    assert not SwitchoverAck().evidence(Observed(STATS, SRC, "")).engaged  # never counted


def test_every_device_that_must_approve_did() -> None:
    two = DST.replace("=0", "=2")
    one = "10@1.5:loadvm_approve_switchover Switchover ack pending num=1\n"
    assert not SwitchoverAck().evidence(Observed(STATS, SRC, two + one)).engaged
    both = two + one + one.replace("=1", "=0")
    assert SwitchoverAck().evidence(Observed(STATS, SRC, both)).engaged
