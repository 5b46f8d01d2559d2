"""Pods in the lab, made the way a container runtime makes them: a network namespace per pod with a process
in it (the pod's stand-in, answering on port 8080), then the node's rendered ``cni.conflist`` run by the
real CNI plugins inside the node's namespaces (so br0, its gateway address, host-local IPAM, the pod's
default route and the node's IP forwarding all come from the plugins, not from the lab).

Pod namespaces are named ``<prefix>-<node>-pod<N>``, so `lab down` removes them with the hosts.
"""

from __future__ import annotations

import json
import time
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

from .cni import CniError, CniRuntime, add, addresses
from .daemons import standin_command
from .hosts import nsenter_argv
from .netns import LabError, alive, in_netns, run, wait_pidfile

CONFLIST = "/etc/cni/net.d/10-pods.conflist"


def _entered(pid: int, ns: str, timeout: float) -> bool:
    """The pid file is written before `ip netns exec` enters the namespace: CNI must not run until the process
    is in it, or CNI_NETNS would name the machine's own namespace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        if in_netns(pid, ns):
            return True
        time.sleep(0.02)
    return False


def pod_names(node: str, count: int) -> list[str]:
    return [f"{node}-pod{i}" for i in range(1, count + 1)]


def create(state: dict[str, Any], node: str, pod: str) -> dict[str, Any]:
    """One pod on ``node``: namespace, process, CNI ADD. Returns its state.json entry."""
    h = state["hosts"][node]
    ns = f"{state['prefix']}-{pod}"
    pdir = Path(h["dir"]) / "pods"
    pdir.mkdir(parents=True, exist_ok=True)
    pidfile = pdir / f"{pod}.pid"
    pidfile.unlink(missing_ok=True)
    run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    python, standin = standin_command()
    run(["setsid", "-f", "sh", "-c", 'echo $$ > "$1"; shift; exec "$@" >/dev/null 2>&1 </dev/null', "sh",
         str(pidfile), "ip", "netns", "exec", ns, python, standin, "pod", pod])
    pid = wait_pidfile(pidfile, 15)
    if pid is None or not _entered(pid, ns, 15):
        raise LabError(f"{pod}: the pod process did not start in its namespace")
    conflist = json.loads((Path(h["dir"]) / "root" / CONFLIST.lstrip("/")).read_text())
    runtime = CniRuntime(container_id=f"{state['prefix']}-{pod}", netns=f"/proc/{pid}/ns/net",
                         wrap=tuple(nsenter_argv(state, node, [])))
    try:
        result = add(conflist, runtime)
    except CniError as exc:
        raise LabError(f"{pod} on {node}: {exc}") from None
    ips = addresses(result)
    if not ips:
        raise LabError(f"{pod} on {node}: CNI ADD gave the pod no address: {result}")
    return {"node": node, "netns": ns, "address": str(IPv4Interface(ips[0]).ip), "pid": pid,
            "container_id": runtime.container_id, "dc": h["dc"], "rack": h["rack"]}
