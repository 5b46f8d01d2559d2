"""`lab up`: namespaces, links, addresses, anchors, sshd, then FRR (and unless bare BIRD and etcd)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, ip_network
from pathlib import Path
from typing import Any

import yaml

from ..health import HEALTH
from ..pipeline import compile_site
from ..plan import Plan
from ..render import render
from . import state as st
from . import upstream
from .daemons import FRR_DAEMONS_FILE, VTYSH_CONF, svc, svc_path, write_svc
from .hosts import MOUNTS, keygen, setup_script, sshd_config, start_sshd, write_hardware, write_known_hosts
from .netns import (
    LabError,
    LabUsageError,
    add_guard_route,
    ip_batch,
    netns_list,
    raise_neighbour_limits,
    run,
    wait_pidfile,
)
from .pods import create as create_pod
from .pods import pod_names
from .topology import MGMT_IF, LabHost, Topology, derive, mgmt_network, sample

WORKERS = 8
# What runs in a bare lab: the switches' FRR, and the stand-ins for what provisioner does not manage (kube-proxy,
# kube-apiserver). BIRD, the health checker and etcd are left to `provisioner apply`.
BARE_SERVICES = ("frr", "proxy", "proxy-lite", "apiserver")
ANCHOR_TIMEOUT = 30.0


def parallel(fn: Callable[[Any], Any], items: list[Any], workers: int = WORKERS) -> list[Any]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def _check_mgmt_free(topo: Topology, state_hosts: dict[str, Any]) -> None:
    """Refuse when something else on this machine already uses our management addresses."""
    ours = [topo.mgmt_gateway.ip, *(IPv4Address(h["mgmt_address"]) for h in state_hosts.values())]
    net = mgmt_network(topo.prefix)
    out = run(["ip", "-j", "-4", "route", "show", "table", "all"], check=False).stdout
    for route in json.loads(out or "[]"):
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("dev") == topo.mgmt_bridge:
            continue
        try:
            dnet = ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
        except ValueError:
            continue
        if dnet == net or (dnet.prefixlen >= net.prefixlen and any(a in dnet for a in ours)):
            raise LabError(f"management network {net} of lab prefix {topo.prefix} is in use on this machine "
                           f"(route {dst} dev {route.get('dev')}); set PROVISIONER_LAB_PREFIX to another prefix")


def _ensure_mountpoints() -> list[str]:
    created = []
    for m in (*MOUNTS, "/run/sshd"):
        p = Path(m)
        if not p.exists():
            p.mkdir(parents=True, mode=0o755)
            created.append(m)
    return created


def _prepare_host(state: dict[str, Any], plan: Plan, topo: Topology, artifacts: dict[str, str], host: str,
                  bare: bool) -> None:
    h = topo.host(host)
    sdir = Path(state["state_dir"])
    hdir = sdir / "hosts" / host
    root = hdir / "root"
    for m in MOUNTS:
        (root / m.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (hdir / "logs").mkdir(parents=True, exist_ok=True)
    for m in ("var/lib/etcd", "var/lib/etcd-events"):
        (root / m).chmod(0o700)
    if h.anycast:
        (hdir / "anycast").write_text("".join(f"{a.ip}\n" for a in h.anycast))
    if h.kind in ("tor", "spine", "upstream"):
        _frr_files(plan, h, root)
    for rel, target in h.configs:
        is_frr = target.startswith("/etc/frr/")
        if rel not in artifacts:
            raise LabError(f"{host}: the rendered tree has no {rel} (is its template missing?)")
        if bare and not is_frr:
            continue
        dest = root / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(artifacts[rel])
        if is_frr:
            shutil.chown(dest, "frr", "frr")
    if h.kind == "node" and "health" not in h.daemons and not bare:
        (root / HEALTH.bird_include.lstrip("/")).write_text(static_health_set(plan, host))
    if not bare:
        _install_pki(state, h, root)
    write_hardware(hdir, h.hw)
    (hdir / "setup.sh").write_text(setup_script(topo, h, hdir))
    (hdir / "sshd_config").write_text(sshd_config(sdir, h))
    keygen(hdir / "ssh_host_ed25519_key", f"root@{host}")


def static_health_set(plan: Plan, host: str) -> str:
    """The health set of a node without health checks (--health sample|none): every anycast range, as
    anycast-healthchecker writes it while all checks pass."""
    entries = [HEALTH.placeholder, *(str(HEALTH.token(r)) for r in plan.anycast)]
    return (f"# Health set of {host} in a lab without its health checks (lab up --health): every range announced.\n"
            f"define {HEALTH.bird_variable} =\n    [\n" + ",\n".join(f"        {e}" for e in entries) + "\n    ];\n")


def _frr_files(plan: Plan, h: LabHost, root: Path) -> None:
    """FRR's daemons and vtysh files (the lab starts FRR itself); an upstream's frr.conf is the lab's own."""
    if h.kind == "upstream":
        (root / "etc/frr/frr.conf").write_text(upstream.frr_conf(plan, next(u for u in plan.upstreams
                                                                           if u.name == h.name)))
    (root / "etc/frr/daemons").write_text(FRR_DAEMONS_FILE)
    (root / "etc/frr/vtysh.conf").write_text(VTYSH_CONF)
    for d in (root / "etc/frr", root / "var/run/frr"):
        shutil.chown(d, "frr", "frr")
        for f in d.iterdir():
            shutil.chown(f, "frr", "frr")


def _install_pki(state: dict[str, Any], h, root: Path) -> None:
    """As docs/control-plane.md says: <cluster>/<member>/ -> /etc/<cluster>/pki/ on the member;
    control-plane/ -> /etc/kubernetes/pki/ on the control-plane VMs."""
    pki = Path(state["pki"])
    if h.role in ("etcd", "etcd_events"):
        cluster = "etcd" if h.role == "etcd" else "etcd-events"
        pairs = [(pki / cluster / h.name, root / "etc" / cluster / "pki")]
    elif h.role == "control_plane":
        pairs = [(pki / "control-plane", root / "etc/kubernetes/pki")]
    else:
        return
    for src, dst in pairs:
        shutil.copytree(src, dst, dirs_exist_ok=True)
        dst.chmod(0o700)


def _make_pki(plan, target: Path) -> None:
    from .. import pki as pki_lib

    if all((target / p).exists() for p in pki_lib.expected_paths(plan)):
        return
    files, _ = pki_lib.issue(plan, target, rotate=target.exists() and any(target.iterdir()))
    pki_lib.write(target, files)


def _start_anchor(state: dict[str, Any], host: str) -> None:
    h = state["hosts"][host]
    hdir = Path(h["dir"])
    (hdir / "anchor.pid").unlink(missing_ok=True)
    run(["setsid", "-f", "ip", "netns", "exec", h["ns"], "unshare", "--mount", "--uts", "--propagation", "private",
         "/bin/sh", str(hdir / "setup.sh")])


def _wait_anchor(state: dict[str, Any], host: str) -> int:
    h = state["hosts"][host]
    pid = wait_pidfile(Path(h["dir"]) / "anchor.pid", ANCHOR_TIMEOUT)
    if pid is not None:
        return pid
    log = Path(h["dir"]) / "logs" / "anchor.log"
    tail = log.read_text()[-2000:] if log.exists() else ""
    raise LabError(f"{host}: anchor did not come up in {ANCHOR_TIMEOUT:.0f}s:\n{tail}")


def inventory_overlay(state: dict[str, Any]) -> str:
    sdir = Path(state["state_dir"])
    svc_cmd = svc_path(state)
    common = {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(sdir / "id_ed25519"),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={sdir / 'known_hosts'} -o StrictHostKeyChecking=yes "
                                   "-o IdentitiesOnly=yes",
        "ansible_python_interpreter": "/usr/bin/python3",
        "lab_prefix": state["prefix"],
        "lab_state_dir": str(sdir),
    }
    hosts: dict[str, Any] = {}
    for name, h in sorted(state["hosts"].items()):
        v = {"ansible_host": h["mgmt_address"], **common, "lab_namespace": h["ns"]}
        for service in h["daemons"]:
            key = "etcd" if service.startswith("etcd") else service
            for action in ("start", "stop", "restart", "reload"):
                v[f"{key}_{action}_cmd"] = f"{svc_cmd} {service} {action}"
            v[f"{key}_status_cmd"] = f"{svc_cmd} {service} status"
        hosts[name] = v
    header = (f"# Lab overlay inventory of site {state['site']} (lab prefix {state['prefix']}), written by "
              "`provisioner lab up`.\n# Only what differs in the lab: use it AFTER rendered/<site>/ansible/hosts.yml "
              "(-i hosts.yml -i this file).\n")
    return header + yaml.safe_dump({"all": {"hosts": hosts}}, sort_keys=True, width=200)


def _initial_state(plan: Plan, topo: Topology, sdir: Path, site_dir: str, bare: bool,
                   timings: dict[str, float], options: dict[str, str], with_ssh: set[str]) -> dict[str, Any]:
    """state.json as `lab up` starts it: everything `lab down` needs to clean up after a crash."""
    return {
        "site": plan.name, "site_dir": site_dir, "prefix": topo.prefix,
        "state_dir": str(sdir), "bare": bare, "status": "starting", "pki": str(sdir / "pki"),
        "mgmt": {"bridge": topo.mgmt_bridge, "network": str(mgmt_network(topo.prefix)),
                 "gateway": str(topo.mgmt_gateway)},
        "hosts": {h.name: {"kind": h.kind, "role": h.role, "dc": h.dc, "rack": h.rack, "ns": h.ns,
                           "mgmt_address": str(h.mgmt.ip), "mgmt_peer": h.mgmt_peer, "anchor_pid": None,
                           "dir": str(sdir / "hosts" / h.name), "daemons": list(h.daemons), "hardware": h.hw,
                           "ssh": h.name in with_ssh}
                  for h in topo.hosts},
        "options": options,
        "links": [{"kind": li.kind, "session": li.session,
                   "a": {"host": li.a.host, "ifname": li.a.ifname, "address": str(li.a.address or "")},
                   "b": {"host": li.b.host, "ifname": li.b.ifname, "address": str(li.b.address or "")}}
                  for li in topo.links],
        "failures": [], "created_mountpoints": [], "timings": timings, "pods": {},
        "upstreams": {u.name: {"dc": u.dc, "asn": u.asn, "probe": str(u.router_id)} for u in plan.upstreams},
    }


def _start_services(state: dict[str, Any], topo: Topology, bare: bool, pods_per_node: str,
                    mark: Callable[[str], None]) -> None:
    """Every host's daemons (only FRR when bare), then the pods."""
    def start(h) -> None:
        for service in h.daemons:
            if bare and service not in BARE_SERVICES:
                continue
            out = svc(state, h.name, service, "start", timeout=90)
            if out.returncode != 0:
                raise LabError(f"{h.name}: `svc {service} start` failed: {(out.stderr or out.stdout).strip()}")

    parallel(start, list(topo.hosts))
    mark("daemons started (FRR" + ("" if bare else ", BIRD, etcd, health checks, stand-ins") + ")")
    if not bare and pods_per_node != "0":
        state["pods"] = _make_pods(state, topo, pods_per_node)
        st.save(state)
        mark(f"{len(state['pods'])} pods wired by the CNI plugins")


def _make_pods(state: dict[str, Any], topo: Topology, pods_per_node: str) -> dict[str, Any]:
    """``sample``: one pod on the first node of each rack; a number: that many on every node."""
    nodes = sorted(sample(((h.name, h.rack) for h in topo.hosts if h.kind == "node"),
                          "sample" if pods_per_node == "sample" else "all"))
    wanted = [(n, p) for n in nodes for p in pod_names(n, 1 if pods_per_node == "sample" else int(pods_per_node))]
    return dict(sorted(parallel(lambda np: (np[1], create_pod(state, *np)), wanted)))


def ssh_hosts(topo: Topology, mode: str) -> set[str]:
    """Hosts that run sshd: every host, or (``sample``) every switch, VM and upstream and the first node of each
    rack, or (``none``) no host (the lab itself enters hosts with nsenter; apply needs sshd everywhere)."""
    if mode == "none":
        return set()
    nodes = [(h.name, h.rack) for h in topo.hosts if h.kind == "node"]
    return {h.name for h in topo.hosts if h.kind != "node"} | sample(nodes, mode)


def up(site: str | Path, *, bare: bool = False, prefix: str | None = None, pods_per_node: str = "1",
       health: str = "all", ssh: str = "all", log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Bring the lab up. ``pods_per_node``: a number of pods on every node, ``sample`` (one pod on the first
    node of each rack) or ``0``/``none``. ``health`` and ``ssh`` (``all``, ``sample``, ``none``): which nodes run
    the kube-proxy stand-in with anycast-healthchecker, and sshd (see :func:`ssh_hosts`)."""
    pods_per_node = "0" if pods_per_node == "none" else pods_per_node
    if bare and (health, ssh) != ("all", "all"):
        raise LabUsageError("--bare is the lab apply pushes to, and apply needs sshd and the health checker on "
                            "every host: use --health all --ssh all with --bare")
    t0 = time.monotonic()
    timings: dict[str, float] = {}

    def mark(step: str) -> None:
        timings[step] = round(time.monotonic() - t0, 2)
        log(f"  {timings[step]:6.2f}s  {step}")

    compiled = compile_site(site)
    plan = compiled.plan
    topo = derive(plan, prefix, health=health)
    sdir = st.state_dir(site, topo.prefix)  # the site path: its project root holds .lab/
    leftovers = [n for n in netns_list() if n.startswith(f"{topo.prefix}-")]
    if leftovers or (sdir / "state.json").exists():
        raise LabUsageError(f"a lab with prefix {topo.prefix} is already up ({len(leftovers)} namespaces, state in "
                            f"{sdir}); run `provisioner lab down {site}` first")
    artifacts = render(plan)
    options = {"health": health, "ssh": ssh, "pods": pods_per_node}
    state = _initial_state(plan, topo, sdir, str(compiled.source.directory.resolve()), bare, timings, options,
                           ssh_hosts(topo, ssh))
    _check_mgmt_free(topo, state["hosts"])
    sdir.mkdir(parents=True, exist_ok=True)
    st.save(state)  # from here on, `lab down` can clean up whatever a crash leaves
    mark("compiled, rendered and checked")

    write_svc(sdir)
    keygen(sdir / "id_ed25519", f"provisioner-lab-{topo.prefix}")
    (sdir / "authorized_keys").write_text((sdir / "id_ed25519.pub").read_text())
    if not bare:
        _make_pki(plan, Path(state["pki"]))
    parallel(lambda h: _prepare_host(state, plan, topo, artifacts, h.name, bare), list(topo.hosts))
    write_known_hosts(state)
    state["created_mountpoints"] = _ensure_mountpoints()
    st.save(state)
    mark("host roots, keys, known_hosts")

    ip_batch([f"netns add {h.ns}" for h in topo.hosts])
    root = [f"link add {topo.mgmt_bridge} type bridge", f"addr add {topo.mgmt_gateway} dev {topo.mgmt_bridge}",
            f"link set {topo.mgmt_bridge} up"]
    for h in topo.hosts:
        root += [f"link add {h.mgmt_peer} type veth peer name {MGMT_IF} netns {h.ns}",
                 f"link set {h.mgmt_peer} master {topo.mgmt_bridge}",
                 f"link set dev {h.mgmt_peer} type bridge_slave isolated on",
                 f"link set {h.mgmt_peer} up"]
    for li in topo.links:
        a, b = topo.host(li.a.host), topo.host(li.b.host)
        root.append(f"link add {li.a.ifname} netns {a.ns} type veth peer name {li.b.ifname} netns {b.ns}")
    ip_batch(root)
    add_guard_route()
    raise_neighbour_limits(len(topo.hosts))
    mark("namespaces and links")

    for h in topo.hosts:
        _start_anchor(state, h.name)
    pids = parallel(lambda h: _wait_anchor(state, h.name), list(topo.hosts), workers=16)
    for h, pid in zip(topo.hosts, pids, strict=True):
        state["hosts"][h.name]["anchor_pid"] = pid
    st.save(state)
    mark("anchors (mount namespaces, addresses)")

    with_ssh = [h.name for h in topo.hosts if state["hosts"][h.name]["ssh"]]
    parallel(lambda name: start_sshd(state, name), with_ssh)
    mark(f"sshd on {len(with_ssh)} hosts")
    (sdir / "inventory.yml").write_text(inventory_overlay(state))

    _start_services(state, topo, bare, pods_per_node, mark)
    state["status"] = "up"
    state["up_seconds"] = round(time.monotonic() - t0, 2)
    st.save(state)
    return state
