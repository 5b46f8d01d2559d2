"""Shared fixtures of the lab tier (needs root; CI runs it, locally it skips without root).

``lab`` (module scope) is the full lab of inventories/lab: FRR, BIRD, sshd and etcd, verified. ``bare_lab``
(module scope) is ``lab up --bare``: namespaces, links, sshd and FRR only, for the apply tests. Both are
torn down (``lab down``) when the module finishes, also when a test fails. Use :class:`Lab` helpers rather than
shelling out: ``lab.exec(host, argv)``, ``lab.cli("verify")``, ``lab.state``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LAB, require, require_binary, require_root
from tests.helpers import run_cli

BINARIES = ("ip", "nsenter", "unshare", "setsid", "bird", "birdc", "vtysh", "etcd", "etcdctl", "sshd", "ssh",
            "ssh-keygen", "socat")


def require_lab_prerequisites() -> None:
    require_root()
    for name in BINARIES:
        require_binary(name)
    require(os.path.exists("/usr/lib/frr/zebra") and os.path.exists("/usr/lib/frr/bgpd"), "FRR is not installed")


@dataclass
class Lab:
    site: Path
    prefix: str
    up_seconds: float
    namespaces_before: list[str]
    net_inodes: set[int]
    ps_before: set[tuple[int, str]]

    @property
    def state(self) -> dict[str, Any]:
        from provisioner.lab import state as st

        return st.load(self.site, self.prefix)

    @property
    def state_dir(self) -> Path:
        return Path(self.state["state_dir"])

    def exec(self, host: str, argv: list[str], **kw):
        from provisioner.lab.hosts import host_exec

        return host_exec(self.site, host, argv, prefix=self.prefix, **kw)

    def root(self, host: str) -> Path:
        from provisioner.lab.hosts import host_root

        return host_root(self.site, host, self.prefix)

    def cli(self, *args: str) -> tuple[int, str, str]:
        """``provisioner lab ARGS[0] SITE ARGS[1:]``."""
        return run_cli("lab", args[0], str(self.site), *args[1:])

    def verify(self, timeout: float = 90):
        from provisioner.lab.verify import verify

        return verify(self.site, timeout=timeout, prefix=self.prefix)


LAB_COMMS = frozenset({"bird", "bgpd", "zebra", "bfdd", "etcd", "sshd", "sleep"})


def ps_snapshot() -> set[tuple[int, str]]:
    """``ps -eo pid,comm`` as a set."""
    out = subprocess.run(["ps", "-eo", "pid=,comm="], capture_output=True, text=True, check=True).stdout
    return {(int(pid), comm) for pid, comm in (line.split(None, 1) for line in out.splitlines() if line.strip())}


def _net_inodes(prefix: str) -> set[int]:
    return {os.stat(f"/run/netns/{n}").st_ino for n in os.listdir("/run/netns") if n.startswith(f"{prefix}-")} \
        if os.path.isdir("/run/netns") else set()


def processes_in(inodes: set[int]) -> list[str]:
    """Processes whose network namespace is one of ``inodes`` (a lab's namespaces, even once unlinked)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            link = os.readlink(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if link.startswith("net:[") and int(link[5:-1]) in inodes:
            with suppress(OSError):
                found.append(f"{pid} {Path(f'/proc/{pid}/comm').read_text().strip()}")
    return found


@contextmanager
def running_lab(*, bare: bool = False, prefix: str | None = None, site: Path = LAB) -> Iterator[Lab]:
    """Bring the lab up (after clearing leftovers of a crashed run), yield it, always take it down."""
    require_lab_prerequisites()
    from provisioner.lab.netns import netns_list
    from provisioner.lab.teardown import down
    from provisioner.lab.topology import lab_prefix
    from provisioner.lab.up import up

    prefix = lab_prefix(prefix)
    down(site, prefix=prefix)
    before, ps_before = netns_list(), ps_snapshot()
    try:
        state = up(site, bare=bare, prefix=prefix)
        yield Lab(site, prefix, state["up_seconds"], before, _net_inodes(prefix), ps_before)
    finally:
        down(site, prefix=prefix)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab() as running:
        yield running


@pytest.fixture(scope="module")
def bare_lab() -> Iterator[Lab]:
    with running_lab(bare=True) as running:
        yield running


def ssh_argv(lab: Lab, host: str, *command: str) -> list[str]:
    state = lab.state
    sdir = Path(state["state_dir"])
    return [shutil.which("ssh") or "ssh", "-i", str(sdir / "id_ed25519"), "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={sdir / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
            "-o", "ConnectTimeout=10", f"root@{state['hosts'][host]['mgmt_address']}", *command]
