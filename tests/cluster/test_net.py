"""Choosing the fabric interface and its RDMA twins (pure), and reading a real host's interfaces."""

from __future__ import annotations

import pytest

from entrypoint.cluster.net import Interface, choose_interface, read_interfaces, twin_devices
from entrypoint.errors import ClusterInterfaceError, ExitCode

# A DGX Spark as it looks on the host: RJ45 10 GbE, WiFi, and one cabled CX-7 port
# whose two PCIe functions both have netdevs (only one carries the address).
TEN_G = Interface("enP7s7", True, ("192.168.1.20/24",), 10_000, False, ())
WIFI = Interface("wlP9s9", True, ("192.168.1.21/24",), 0, True, ())
CX7 = Interface("enp1s0f1np1", True, ("192.168.100.10/24",), 200_000, False, ("rocep1s0f1",))
CX7_TWIN = Interface("enP2p1s0f1np1", True, (), 200_000, False, ("roceP2p1s0f1",))
SPARK = [TEN_G, WIFI, CX7, CX7_TWIN]
RDMA = ["rocep1s0f0", "rocep1s0f1", "roceP2p1s0f0", "roceP2p1s0f1"]


def test_the_cx7_port_on_the_heads_subnet_is_chosen_with_both_twins() -> None:
    chosen, ip, why = choose_interface(SPARK, "192.168.100.11", None)
    assert (chosen.name, ip) == ("enp1s0f1np1", "192.168.100.10")
    assert "only fabric interface" in why
    assert twin_devices(chosen.rdma, RDMA) == ["roceP2p1s0f1", "rocep1s0f1"]


def test_twins_pair_across_pci_domains_only_for_the_same_function() -> None:
    assert twin_devices(("rocep1s0f0",), RDMA) == ["roceP2p1s0f0", "rocep1s0f0"]
    assert twin_devices((), RDMA) == []


def test_a_head_reached_only_over_the_10g_port_is_refused_with_the_candidates() -> None:
    with pytest.raises(ClusterInterfaceError) as err:
        choose_interface(SPARK, "192.168.1.30", None)
    text = str(err.value)
    assert "not a fabric port" in text and "enP7s7" in text and "10 Gb/s" in text
    assert "CLUSTER_INTERFACE" in text
    assert err.value.exit_code == ExitCode.CLUSTER_INTERFACE


def test_wifi_is_never_chosen() -> None:
    with pytest.raises(ClusterInterfaceError, match="only over WiFi"):
        choose_interface([WIFI], "192.168.1.30", None)


def test_two_fabric_ports_on_the_subnet_are_ambiguous() -> None:
    other = Interface("enp1s0f0np0", True, ("192.168.100.12/24",), 200_000, False, ("rocep1s0f0",))
    with pytest.raises(ClusterInterfaceError, match="2 fabric interfaces") as err:
        choose_interface([*SPARK, other], "192.168.100.11", None)
    assert "enp1s0f0np0" in str(err.value) and "enp1s0f1np1" in str(err.value)


def test_a_down_port_and_no_subnet_are_named() -> None:
    down = Interface(CX7.name, False, CX7.addresses, CX7.speed_mbps, False, CX7.rdma)
    with pytest.raises(ClusterInterfaceError, match="no interface that is up carries"):
        choose_interface([TEN_G, down], "192.168.100.11", None)


def test_an_explicit_interface_wins_and_must_exist_be_up_and_addressed() -> None:
    chosen, ip, why = choose_interface(SPARK, "192.168.1.30", "enP7s7")
    assert (chosen.name, ip, why) == ("enP7s7", "192.168.1.20", "CLUSTER_INTERFACE")
    with pytest.raises(ClusterInterfaceError, match="not an interface of this host"):
        choose_interface(SPARK, "192.168.100.11", "eth9")
    with pytest.raises(ClusterInterfaceError, match="without an IPv4 address"):
        choose_interface(SPARK, "192.168.100.11", "enP2p1s0f1np1")


def test_a_head_that_is_not_an_address_is_refused() -> None:
    with pytest.raises(ClusterInterfaceError, match="not an IPv4 address"):
        choose_interface(SPARK, "spark-a.local", None)


def test_this_hosts_interfaces_are_read_without_loopback() -> None:
    found = read_interfaces()
    assert all(i.name != "lo" for i in found)
    assert all("/" in a for i in found for a in i.addresses)
