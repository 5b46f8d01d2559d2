"""What a change means for the network, computed from two Plans (base and new), before any file diff.

``semantic_diff(base, new)`` returns plain data (JSON-ready): nodes and racks added or removed, pod
prefixes allocated or released, BGP sessions added, removed or changed, the announcers of every anycast
range per DC before and after, etcd membership changes of both clusters, VMs and spines, the files a
render would touch, and the set of touched objects the PR diagram highlights.

``base_site(site, ref)`` materialises the base: a directory holding another copy of the site, or a git
ref (the site directory, lock file included, is taken from ``git archive REF``).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .diff import diff_trees
from .errors import InputError
from .load import SITE_FILE, locate
from .paramdiff import Touch, parameter_diff
from .plan import Plan, Session


@contextmanager
def base_site(site: Path, ref: str) -> Iterator[tuple[Path, str]]:
    """Yield (base site directory, description) for ``--against REF``; temporary copies are removed after."""
    source = locate(site)
    directory = source.directory.resolve()
    if not ref.strip():
        raise InputError("--against needs a git ref or a directory, got an empty string")
    candidate = Path(ref)
    if candidate.is_dir():
        for d in (candidate, candidate / "inventories" / directory.name, candidate / directory.name):
            if (d / SITE_FILE).is_file():
                if d.resolve() == directory:
                    raise InputError(f"--against {ref}: that is the site itself; name a git ref or another copy")
                yield d, f"directory {ref}"
                return
        raise InputError(f"--against {ref}: no {SITE_FILE} in that directory (nor in inventories/{directory.name}/)")
    top = _git(directory, "rev-parse", "--show-toplevel", what=f"--against {ref}: {directory} is not in a git "
               "repository, and no such directory").decode().strip()
    rel = directory.relative_to(Path(top).resolve()).as_posix()
    commit = _git(directory, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}",
                  what=f"--against {ref}: neither a directory nor a git ref").decode().strip()
    data = _git(Path(top), "archive", "--format=tar", commit, "--", rel,
                what=f"--against {ref}: the site {rel} does not exist at {ref}")
    with tempfile.TemporaryDirectory(prefix="provisioner-base-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(tmp, filter="data")
        base = Path(tmp) / rel
        if not (base / SITE_FILE).is_file():
            raise InputError(f"--against {ref}: the site {rel} has no {SITE_FILE} at {ref}")
        yield base, f"{ref} ({commit[:12]})"


def _git(cwd: Path, *args: str, what: str) -> bytes:
    try:
        proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, check=False)
    except FileNotFoundError:
        raise InputError(f"{what} (git is not installed)") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise InputError(what + (f" ({detail[-1]})" if detail else ""))
    return proc.stdout


# --- the diff -------------------------------------------------------------------------------


def session_key(s: Session) -> str:
    return f"{s.kind} {s.a.host}~{s.b.host}"


# Site-wide BGP parameters each kind of session is configured with (templates/): a timer change is a
# change of every session that carries it, not only a change of files.
SESSION_PARAMETERS: dict[str, tuple[str, ...]] = {
    "node-tor": ("hold_time", "keepalive", "graceful_restart", "bfd", "node_import_limit", "tor_max_prefix_per_node"),
    "vm-tor": ("hold_time", "keepalive", "graceful_restart", "bfd", "tor_max_prefix_per_node"),
    "tor-spine": ("hold_time", "keepalive", "graceful_restart"),
    "spine-spine": ("hold_time", "keepalive", "graceful_restart"),
}


def _session_fields(s: Session, bgp: Any = None) -> dict[str, str]:
    out = {
        "a.address": str(s.a.address), "a.asn": str(s.a.asn), "a.router_id": str(s.a.router_id),
        "b.address": str(s.b.address), "b.asn": str(s.b.asn), "b.router_id": str(s.b.router_id),
        "subnet": str(s.subnet), "password_ref": str(s.password_ref),
        "a_announces": ", ".join(map(str, s.a_announces)),
    }
    if bgp is not None:
        for name in SESSION_PARAMETERS.get(s.kind, ()):
            value = getattr(bgp, name)
            out[f"bgp.{name}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _node_view(plan: Plan) -> dict[str, dict[str, str]]:
    return {n.hostname: {"dc": n.dc, "rack": n.rack, "address": str(n.address), "pod_cidr": str(n.pod_cidr),
                         "role": n.role, "hardware": n.hardware_profile, "asn": str(n.asn)} for n in plan.nodes}


def _vm_view(plan: Plan) -> dict[str, dict[str, str]]:
    return {v.name: {"role": v.role, "dc": v.dc, "rack": v.rack, "address": str(v.address)} for v in plan.vms}


def _rack_view(plan: Plan) -> dict[str, dict[str, str]]:
    return {t.rack: {"dc": t.dc, "tor": t.name, "asn": str(t.asn), "subnet": str(t.subnet),
                     "router_id": str(t.router_id)} for t in plan.tors}


def _changes(old: dict[str, str], new: dict[str, str]) -> dict[str, list[str]]:
    return {k: [old.get(k, ""), new.get(k, "")] for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)}


def _compare(old: dict[str, dict[str, str]], new: dict[str, dict[str, str]]) -> dict[str, Any]:
    return {
        "added": {k: new[k] for k in sorted(new.keys() - old.keys())},
        "removed": {k: old[k] for k in sorted(old.keys() - new.keys())},
        "changed": {k: _changes(old[k], new[k]) for k in sorted(old.keys() & new.keys()) if old[k] != new[k]},
    }


def announcers(plan: Plan) -> dict[str, dict[str, set[str]]]:
    """anycast range -> DC -> the nodes announcing it (as each node's export says)."""
    out: dict[str, dict[str, set[str]]] = {str(r): {dc: set() for dc in plan.dcs} for r in plan.anycast}
    for n in plan.nodes:
        for p in n.session.a_announces:
            if str(p) in out:
                out[str(p)].setdefault(n.dc, set()).add(n.hostname)
    return out


def _etcd(base: Plan, new: Plan) -> dict[str, Any]:
    out = {}
    old_c = {c.name: c for c in base.etcd_clusters}
    for c in new.etcd_clusters:
        o = old_c.get(c.name)
        before = {m.name: {"dc": m.dc, "rack": m.rack, "address": str(m.address)} for m in (o.members if o else ())}
        after = {m.name: {"dc": m.dc, "rack": m.rack, "address": str(m.address)} for m in c.members}
        entry = _compare(before, after)
        entry["before"] = [f"{m.name} ({m.dc}/{m.rack})" for m in (o.members if o else ())]
        entry["after"] = [f"{m.name} ({m.dc}/{m.rack})" for m in c.members]
        entry["settings_changed"] = [] if o is None else [
            k for k in ("client_port", "peer_port", "timing", "snapshot_count", "quota_backend_bytes",
                        "auto_compaction_retention") if getattr(o, k) != getattr(c, k)]
        out[c.name] = entry
    return out


def semantic_diff(base: Plan, new: Plan, base_files: dict[str, str], new_files: dict[str, str]) -> dict[str, Any]:
    nodes = _compare(_node_view(base), _node_view(new))
    racks = _compare(_rack_view(base), _rack_view(new))
    vms = _compare(_vm_view(base), _vm_view(new))
    spines = _compare({s.name: {"dc": s.dc, "asn": str(s.asn), "router_id": str(s.router_id)} for s in base.spines},
                      {s.name: {"dc": s.dc, "asn": str(s.asn), "router_id": str(s.router_id)} for s in new.spines})
    old_pods, new_pods = base.allocations.pod_cidrs, new.allocations.pod_cidrs
    allocated = {h: str(n) for h, n in sorted(new_pods.items()) if old_pods.get(h) != n}
    released = {h: str(n) for h, n in sorted(old_pods.items()) if new_pods.get(h) != n}
    old_s = {session_key(s): s for s in base.sessions}
    new_s = {session_key(s): s for s in new.sessions}
    sessions: dict[str, Any] = {
        "added": sorted(new_s.keys() - old_s.keys()),
        "removed": sorted(old_s.keys() - new_s.keys()),
        "changed": {},
    }
    for k in sorted(old_s.keys() & new_s.keys()):
        ch = _changes(_session_fields(old_s[k], base.bgp), _session_fields(new_s[k], new.bgp))
        if ch:
            sessions["changed"][k] = ch
    a_old, a_new = announcers(base), announcers(new)
    anycast = []
    for rng in sorted(a_old.keys() | a_new.keys()):
        for dc in sorted(set(a_old.get(rng, {})) | set(a_new.get(rng, {}))):
            before = a_old.get(rng, {}).get(dc, set())
            after = a_new.get(rng, {}).get(dc, set())
            anycast.append({"range": rng, "dc": dc, "before": len(before), "after": len(after),
                            "added": sorted(after - before), "removed": sorted(before - after)})
    tree = diff_trees(base_files, new_files)
    files = {"added": list(tree.added), "removed": list(tree.removed), "changed": list(tree.changed)}
    etcd = _etcd(base, new)
    data: dict[str, Any] = {
        "nodes": nodes, "racks": racks, "vms": vms, "spines": spines,
        "pods": {"allocated": allocated, "released": released},
        "sessions": sessions, "anycast": anycast, "etcd": etcd, "files": files,
    }
    data["parameters"] = parameter_diff(base.site, new.site, Touch(base, new, sessions, files))
    data["touched"] = touched(base, new, data)
    data["empty"] = not (any(nodes.values()) or any(racks.values()) or any(vms.values()) or any(spines.values())
                         or allocated or released or any(sessions.values()) or not tree.empty
                         or bool(data["parameters"])
                         or any(e["added"] or e["removed"] or e["changed"] or e["settings_changed"]
                                for e in etcd.values()))
    return data


def touched(base: Plan, new: Plan, data: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Racks, spines and VMs the change touches, each with its status: added, removed or changed."""
    rack_of = {**{t.name: t.rack for t in base.tors}, **{t.name: t.rack for t in new.tors}}
    node_rack = {**{n.hostname: n.rack for n in base.nodes}, **{n.hostname: n.rack for n in new.nodes}}
    spine_names = {s.name for s in base.spines} | {s.name for s in new.spines}
    vm_names = {v.name for v in base.vms} | {v.name for v in new.vms}
    racks: dict[str, str] = {r: "added" for r in data["racks"]["added"]}
    racks.update({r: "removed" for r in data["racks"]["removed"]})
    spines: dict[str, str] = {s: "added" for s in data["spines"]["added"]}
    spines.update({s: "removed" for s in data["spines"]["removed"]})
    vms: dict[str, str] = {v: "added" for v in data["vms"]["added"]}
    vms.update({v: "removed" for v in data["vms"]["removed"]})

    def mark(table: dict[str, str], name: str | None) -> None:
        if name is not None and name not in table:
            table[name] = "changed"

    for section in ("added", "removed", "changed"):
        for h in data["nodes"][section]:
            mark(racks, node_rack.get(h))
        for v in data["vms"][section]:
            mark(vms, v)
    for r in data["racks"]["changed"]:
        mark(racks, r)
    for s in data["spines"]["changed"]:
        mark(spines, s)
    keys = [*data["sessions"]["added"], *data["sessions"]["removed"], *data["sessions"]["changed"]]
    for key in keys:
        for host in key.split(" ", 1)[1].split("~"):
            if host in spine_names:
                mark(spines, host)
            elif host in rack_of:
                mark(racks, rack_of[host])
    for path in (*data["files"]["added"], *data["files"]["removed"], *data["files"]["changed"]):
        top, _, rest = path.partition("/")
        name = rest.split("/", 1)[0]
        if top == "nodes":
            mark(racks, node_rack.get(name))
        elif top == "tors":
            mark(racks, rack_of.get(name))
        elif top == "spines" and name in spine_names:
            mark(spines, name)
        elif name in vm_names:
            mark(vms, name)
    return {"racks": dict(sorted(racks.items())), "spines": dict(sorted(spines.items())),
            "vms": dict(sorted(vms.items()))}
