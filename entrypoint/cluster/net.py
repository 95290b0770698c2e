"""Which interface carries the cluster, and which RDMA devices go with it.

Reading the host (:func:`read_interfaces`) is separate from choosing
(:func:`choose_interface`, :func:`twin_devices`), which is pure and takes the
facts as arguments.

A DGX Spark has a 10 GbE port, WiFi and two ConnectX-7 ports; each CX-7 port
shows as two ~100G PCIe functions in two PCI domains ("twins", e.g. RDMA
devices ``rocep1s0f1`` and ``roceP2p1s0f1``), and NCCL needs both for the
port's full bandwidth.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ClusterInterfaceError

FABRIC_MBPS = 100_000  # a CX-7 function runs at 100 or 200 Gb/s; the Spark's RJ45 port at 10
_DOMAIN = re.compile(r"P\d+(?=p)")  # the PCI domain in a predictable name: roceP2p1s0f1 → p1s0f1


@dataclass(frozen=True)
class Interface:
    name: str
    up: bool
    addresses: tuple[str, ...]  # IPv4 with prefix, e.g. "10.0.0.1/24"
    speed_mbps: int  # 0 when unknown
    wireless: bool
    rdma: tuple[str, ...]  # RDMA devices bound to it

    @property
    def fabric(self) -> bool:
        return bool(self.rdma) or self.speed_mbps >= FABRIC_MBPS

    def describe(self) -> str:
        kind = "WiFi" if self.wireless else ("RDMA " + "+".join(self.rdma) if self.rdma else "no RDMA")
        speed = f"{self.speed_mbps // 1000} Gb/s" if self.speed_mbps else "speed unknown"
        addrs = ",".join(self.addresses) or "no IPv4"
        return f"{self.name} ({addrs}, {speed}, {kind}{'' if self.up else ', down'})"


def read_interfaces(sys_net: Path = Path("/sys/class/net")) -> list[Interface]:
    """This host's interfaces, from psutil and sysfs."""
    import psutil

    stats = psutil.net_if_stats()
    found: list[Interface] = []
    for name, addrs in sorted(psutil.net_if_addrs().items()):
        if name == "lo":
            continue
        v4 = tuple(
            f"{a.address}/{ipaddress.IPv4Network(f'0.0.0.0/{a.netmask}').prefixlen}"
            for a in addrs
            if a.family == socket.AF_INET and a.netmask
        )
        stat = stats.get(name)
        rdma_dir = sys_net / name / "device" / "infiniband"
        rdma = tuple(sorted(p.name for p in rdma_dir.iterdir())) if rdma_dir.is_dir() else ()
        found.append(
            Interface(
                name=name,
                up=bool(stat and stat.isup),
                addresses=v4,
                speed_mbps=max(int(stat.speed), 0) if stat else 0,
                wireless=(sys_net / name / "wireless").exists(),
                rdma=rdma,
            )
        )
    return found


def read_rdma_devices(sys_ib: Path = Path("/sys/class/infiniband")) -> list[str]:
    return sorted(p.name for p in sys_ib.iterdir()) if sys_ib.is_dir() else []


def twin_devices(own: Sequence[str], every: Iterable[str]) -> list[str]:
    """``own`` and the devices of the same port in the other PCI domain."""
    keys = {_DOMAIN.sub("", name) for name in own}
    return sorted({d for d in every if _DOMAIN.sub("", d) in keys} | set(own))


def _address(iface: Interface) -> str | None:
    return iface.addresses[0].split("/")[0] if iface.addresses else None


def _in(address: str, head: ipaddress.IPv4Address) -> bool:
    return head in ipaddress.IPv4Interface(address).network


def _carries(iface: Interface, head: ipaddress.IPv4Address) -> bool:
    return any(_in(a, head) for a in iface.addresses)


def choose_interface(
    interfaces: Sequence[Interface], head: str, explicit: str | None
) -> tuple[Interface, str, str]:
    """(interface, this node's IP on it, why) for a cluster whose head is ``head``.

    ``explicit`` (CLUSTER_INTERFACE) is taken if it exists, is up and has an
    IPv4 address. Otherwise: the interfaces that are up and carry the head's
    subnet, minus WiFi; exactly one fabric port among them is taken; a 10G port
    or several fabric ports are refused, listing the candidates.
    """
    if explicit:
        match = next((i for i in interfaces if i.name == explicit), None)
        if match is None:
            raise ClusterInterfaceError(
                f"CLUSTER_INTERFACE={explicit} is not an interface of this host",
                "use one of: " + "; ".join(i.describe() for i in interfaces if i.addresses),
            )
        address = _address(match)
        if not match.up or address is None:
            raise ClusterInterfaceError(
                f"CLUSTER_INTERFACE={explicit} is {'down' if not match.up else 'without an IPv4 address'}",
                f"bring it up with an address on the head's subnet (`ip addr add ... dev {explicit}`)",
            )
        return match, address, "CLUSTER_INTERFACE"
    try:
        head_ip = ipaddress.IPv4Address(head)
    except ValueError as err:
        raise ClusterInterfaceError(
            f"CLUSTER_HEAD={head} is not an IPv4 address, so no interface can be matched to it",
            "set CLUSTER_HEAD to the head's fabric address (e.g. 192.168.100.10), or set CLUSTER_INTERFACE",
        ) from err
    on_subnet = [i for i in interfaces if i.up and _carries(i, head_ip)]
    wired = [i for i in on_subnet if not i.wireless]
    fabric = [i for i in wired if i.fabric]
    if len(fabric) == 1:
        chosen = fabric[0]
        address = next(a.split("/")[0] for a in chosen.addresses if _in(a, head_ip))
        return chosen, address, f"the only fabric interface on {head}'s subnet"
    listed = "; ".join(i.describe() for i in (on_subnet or [i for i in interfaces if i.addresses]))
    if len(fabric) > 1:
        detail = f"{len(fabric)} fabric interfaces carry CLUSTER_HEAD={head}'s subnet: {listed}"
    elif wired:
        detail = f"CLUSTER_HEAD={head} is reached only through a port that is not a fabric port: {listed}"
    elif on_subnet:
        detail = f"CLUSTER_HEAD={head} is reached only over WiFi: {listed}"
    else:
        detail = (
            f"no interface that is up carries CLUSTER_HEAD={head}'s subnet; interfaces: {listed or 'none'}"
        )
    raise ClusterInterfaceError(
        detail,
        "cable the ConnectX-7 ports, give them addresses on one subnet and set CLUSTER_HEAD to the head's; "
        "or name the interface with CLUSTER_INTERFACE",
    )
