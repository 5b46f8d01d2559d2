"""`lab down`: remove every namespace, link, process and file of one lab prefix. Safe twice and after a
crash: leftovers are found by prefix (``ip netns list``, ``ip link``), by ``ip netns pids`` and by the pid
files under the state directory, not only from state.json."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from . import state as st
from .daemons import DAEMON_COMMS
from .netns import (
    comm,
    kill_pids,
    netns_list,
    ns_id,
    pids_by_netns,
    remove_guard_route_if_unused,
    restore_neighbour_limits,
    root_links,
    run,
)
from .topology import lab_prefix

OUR_COMMS = DAEMON_COMMS | {"sleep", "sshd", "sh", "nsenter", "unshare", "ip"}


def _mounted_anywhere(path: str) -> bool:
    """Is ``path`` a mount point in any mount namespace on this machine (another lab's host)?"""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            text = (proc / "mountinfo").read_text()
        except OSError:
            continue
        if any(line.split()[4] == path for line in text.splitlines() if len(line.split()) > 4):
            return True
    return False


def down(site: str | Path, *, prefix: str | None = None) -> dict[str, Any]:
    prefix = lab_prefix(prefix)
    sdir = st.state_dir(site, prefix)
    state = st.load(site, prefix, required=False)
    report: dict[str, Any] = {"prefix": prefix, "namespaces": [], "links": [], "processes": 0, "files": []}

    all_namespaces = netns_list()
    namespaces = [n for n in all_namespaces if n.startswith(f"{prefix}-")]
    pids: set[int] = {p for found in pids_by_netns(namespaces).values() for p in found}
    # pid files of a half-made lab (a process whose namespace file is already gone). Pids wrap, so a stale pid file
    # may name a process of the machine or of another lab: only one in an unnamed namespace other than the
    # machine's own is taken.
    elsewhere = {ns_id(f"/var/run/netns/{n}") for n in all_namespaces if n not in namespaces}
    elsewhere.add(ns_id("/proc/1/ns/net"))

    def ours(pid: int, comms: frozenset[str] | set[str]) -> bool:
        return comm(pid) in comms and ns_id(f"/proc/{pid}/ns/net") not in elsewhere

    pidfiles = [*sdir.glob("hosts/*/*.pid"), *sdir.glob("hosts/*/pods/*.pid")] if sdir.exists() else []
    for pidfile in pidfiles:
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if ours(pid, OUR_COMMS):
            pids.add(pid)
    for h in state.get("hosts", {}).values():
        pid = int(h.get("anchor_pid") or 0)
        if pid and ours(pid, {"sleep"}):
            pids.add(pid)
    kill_pids(pids, grace=5)
    report["processes"] = len(pids)
    for ns in namespaces:
        run(["ip", "netns", "del", ns], check=False)
        report["namespaces"].append(ns)

    pattern = re.compile(rf"^{re.escape(prefix)}(m\d+|-mgmt)$")
    for link in root_links():
        if pattern.match(link):
            run(["ip", "link", "del", link], check=False)
            report["links"].append(link)
    report["guard_route_removed"] = remove_guard_route_if_unused()
    report["neighbour_limits_restored"] = restore_neighbour_limits()

    for m in state.get("created_mountpoints", []):
        path = Path(m)
        if m == "/run/sshd":
            busy = any(comm(int(p.name)) == "sshd" for p in Path("/proc").iterdir() if p.name.isdigit())
        else:
            busy = _mounted_anywhere(m)
        if not busy and path.is_dir() and not any(path.iterdir()):
            path.rmdir()
            report["files"].append(m)
    if sdir.exists():
        shutil.rmtree(sdir)
        report["files"].append(str(sdir))
    parent = sdir.parent
    if parent.exists() and parent.name == ".lab" and not any(parent.iterdir()):
        parent.rmdir()
    return report


def leftovers(prefix: str | None = None) -> dict[str, Any]:
    prefix = lab_prefix(prefix)
    pattern = re.compile(rf"^{re.escape(prefix)}(m\d+|-mgmt)$")
    return {"namespaces": [n for n in netns_list() if n.startswith(f"{prefix}-")],
            "links": [link for link in root_links() if pattern.match(link)]}


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(leftovers(), indent=2))
