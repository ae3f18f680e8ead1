"""host.netns: the iproute2 command lists (pure, no root needed)."""

from __future__ import annotations

import pytest

from qmpctl.core.errors import UsageError
from qmpctl.host.netns import NetnsPair, host_problem, stale_namespaces, tbf_burst

PAIR = NetnsPair("qmpctl-ab12cd_e")


def test_names_and_addresses_follow_the_run_directory() -> None:
    assert (PAIR.src_ns, PAIR.dst_ns) == ("qmpctl-ab12cd_e-src", "qmpctl-ab12cd_e-dst")
    assert (PAIR.src_addr, PAIR.dst_addr, PAIR.prefix_len) == ("192.0.2.1", "192.0.2.2", 30)
    with pytest.raises(ValueError, match="must start with 'qmpctl-'"):
        NetnsPair("other")


def test_create_makes_the_veth_inside_the_namespaces() -> None:
    cmds = [" ".join(c) for c in PAIR.create_commands()]
    assert cmds[:3] == [
        "ip netns add qmpctl-ab12cd_e-src",
        "ip netns add qmpctl-ab12cd_e-dst",
        "ip link add veth-src netns qmpctl-ab12cd_e-src type veth peer name veth-dst "
        "netns qmpctl-ab12cd_e-dst",
    ]
    assert "ip -n qmpctl-ab12cd_e-src addr add 192.0.2.1/30 dev veth-src" in cmds
    assert "ip -n qmpctl-ab12cd_e-dst addr add 192.0.2.2/30 dev veth-dst" in cmds
    assert "ip -n qmpctl-ab12cd_e-dst link set dev lo up" in cmds
    assert "ip -n qmpctl-ab12cd_e-dst link set dev veth-dst up" in cmds
    # the management veth, which faults leave alone
    assert ("ip link add mgmt-src netns qmpctl-ab12cd_e-src type veth peer name mgmt-dst "
            "netns qmpctl-ab12cd_e-dst") in cmds
    assert "ip -n qmpctl-ab12cd_e-dst addr add 192.0.2.6/30 dev mgmt-dst" in cmds
    # Everything but the links themselves happens inside a namespace, never the host's own.
    assert all(c.startswith("ip -n qmpctl-ab12cd_e-") for c in cmds[2:]
               if not c.startswith("ip link add"))


def test_delete_only_what_exists() -> None:
    assert PAIR.delete_commands([]) == []
    assert PAIR.delete_commands(["qmpctl-ab12cd_e-dst", "other"]) == [
        ["ip", "netns", "delete", "qmpctl-ab12cd_e-dst"]]


def test_link_down_on_the_destination_or_both() -> None:
    assert PAIR.link_commands(False) == [
        ["ip", "-n", "qmpctl-ab12cd_e-dst", "link", "set", "dev", "veth-dst", "down"]]
    both = PAIR.link_commands(True, "both")
    assert [c[2] for c in both] == ["qmpctl-ab12cd_e-src", "qmpctl-ab12cd_e-dst"]
    assert all(c[-1] == "up" for c in both)


def test_rate_is_tbf_on_both_ends() -> None:
    assert PAIR.rate_commands(100) == [
        ["tc", "-n", f"qmpctl-ab12cd_e-{s}", "qdisc", "replace", "dev", f"veth-{s}", "root",
         "tbf", "rate", "100mbit", "burst", "125000", "latency", "100ms"] for s in ("src", "dst")]
    assert PAIR.rate_commands(None)[1] == [
        "tc", "-n", "qmpctl-ab12cd_e-dst", "qdisc", "del", "dev", "veth-dst", "root"]
    assert tbf_burst(1) == 32 * 1024
    with pytest.raises(UsageError, match="link rate 0 Mbit/s: must be at least 1"):
        PAIR.rate_commands(0)


def test_host_problems_are_named() -> None:
    assert host_problem(euid=0, which=lambda _: "/usr/sbin/ip") is None
    assert "need root" in str(host_problem(euid=1000, which=lambda _: "/usr/sbin/ip"))
    assert host_problem(euid=0, which=lambda _: None) == (
        "`ip` (iproute2) not found in PATH; install iproute2")


def test_stale_namespaces_are_ours_without_a_run_directory() -> None:
    names = ["qmpctl-live-src", "qmpctl-live-dst", "qmpctl-dead-src", "qmpctl-dead-dst",
             "qmpctl-dead", "someone-else-src"]
    assert stale_namespaces(names, lambda base: base == "qmpctl-live") == [
        "qmpctl-dead-src", "qmpctl-dead-dst"]
