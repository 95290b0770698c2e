"""Two "hosts" on this machine: network namespaces joined by a veth link (iproute2).

Nothing in them reaches outside: each namespace has only its loopback and its
end of the link. Every process a test starts in a host is killed and the
namespaces are deleted when the context ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "10.77.{}.{}"
BIN = str(Path(sys.executable).parent)  # the test interpreter's scripts: spark-serve, ray


@dataclass
class Host:
    ns: str
    iface: str
    ip: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    root: Path = Path("/tmp")

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` in this host. ``ip netns exec`` gives each command a private mount
        namespace: Ray's /tmp/ray is bound there to this host's own folder, as two
        machines would each have theirs (one shared /tmp/ray breaks Ray). Each command
        also gets its own PID namespace with its own /proc, as a machine has: the
        launcher's ``ray stop`` finds Ray's processes by name, and would otherwise end
        every Ray on this machine (another test's, in a container, among them). The
        command's exit status comes back through ``unshare``; when ``unshare`` is
        killed, so is everything in the namespace."""
        own = self.root / f"{self.ns}-ray"
        own.mkdir(parents=True, exist_ok=True)
        setup = f'mkdir -p /tmp/ray && mount --bind {own} /tmp/ray && exec "$@"'
        isolate = ["unshare", "--pid", "--kill-child", "--mount-proc"]
        return ["ip", "netns", "exec", self.ns, *isolate, "sh", "-c", setup, "sh", *argv]

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 120) -> str:
        done = subprocess.run(
            self.argv(argv), env=dict(env or os.environ), capture_output=True, text=True, timeout=timeout
        )
        return done.stdout + done.stderr

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
        """A process in this host, in its own session (killed as a group at the end)."""
        with log.open("ab") as sink:
            proc = subprocess.Popen(
                self.argv(argv), env=dict(env), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        """SIGKILL every process in this host's network namespace (Ray's daemons among
        them)."""
        done = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True)
        for pid in done.stdout.split():
            with suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)

    def unplug(self) -> None:
        """Take this host's link down, as a pulled cable."""
        _ip("-n", self.ns, "link", "set", self.iface, "down")


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"ssprobe{uuid.uuid4().hex[:6]}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return f"`ip netns add` is not permitted here: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextmanager
def two_hosts(subnet: int = 0) -> Iterator[tuple[Host, Host]]:
    """Hosts a (10.77.<subnet>.1) and b (.2) on one /24 over a veth pair."""
    tag = uuid.uuid4().hex[:6]
    a = Host(f"ssa{tag}", f"fa{tag}", SUBNET.format(subnet, 1))
    b = Host(f"ssb{tag}", f"fb{tag}", SUBNET.format(subnet, 2))
    try:
        for host in (a, b):
            _ip("netns", "add", host.ns)
            _ip("-n", host.ns, "link", "set", "lo", "up")
        _ip("link", "add", a.iface, "type", "veth", "peer", "name", b.iface)
        for host in (a, b):
            _ip("link", "set", host.iface, "netns", host.ns)
            _ip("-n", host.ns, "addr", "add", f"{host.ip}/24", "dev", host.iface)
            _ip("-n", host.ns, "link", "set", host.iface, "up")
        yield a, b
    finally:
        for host in (a, b):
            for proc in host.procs:
                if proc.poll() is None:
                    with suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                with suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
            host.kill_all()
            subprocess.run(["ip", "netns", "del", host.ns], capture_output=True)
            shutil.rmtree(host.root / f"{host.ns}-ray", ignore_errors=True)
