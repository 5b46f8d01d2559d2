"""Parameter-level diff of two site models: every changed field as ``path: old -> new``, with what it touches.

The walk is generic over the pydantic models: any field of any part of the model (BGP, etcd, Kubernetes,
pools, anycast, hardware, racks, VMs, and parts added later) is compared without a hand-written list.
List items that are objects are matched by their name (``name``, ``hostname`` or ``name_pattern``), so
reordering is no change and a path reads ``dcs[dc1].racks[dc1-r01].asn``; lists of plain values (anycast
ranges, a pool's DCs) are compared as a whole.

Identical changes on many objects (``aggregate_pods: false -> true`` on 36 racks) are one group with a
count; the group pattern replaces names with ``*``. Each group says what it touches: the BGP sessions
that changed with an end on an affected host, and the changed files of those hosts plus the site-wide
files. The affected hosts come from the path: the named node, rack, spine, VM, DC or hardware profile
(and their BGP neighbours); ``etcd`` the etcd members, ``kubernetes`` the control plane, ``demand``
nothing; any other top-level part the whole site.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from pydantic import BaseModel

from .plan import Plan

KEY_FIELDS = ("name", "hostname", "name_pattern")
KIND_NAMES = {"dcs": "DC", "racks": "rack", "spines": "spine", "nodes": "node", "node_groups": "node group",
              "control_plane": "control-plane VM", "etcd": "etcd VM", "etcd_events": "events etcd VM",
              "pod_pools": "pod pool", "hardware": "hardware profile"}
Segment = str | tuple[str, str]  # a field, or (list field, item key)


@dataclass(frozen=True)
class Change:
    path: tuple[Segment, ...]
    old: Any
    new: Any
    kind: str  # "changed", "added" or "removed"


def model_changes(old: Any, new: Any, path: tuple[Segment, ...] = ()) -> list[Change]:
    """Every difference between two values of the site model, as leaf changes in model order."""
    if isinstance(old, BaseModel) and isinstance(new, BaseModel) and type(old) is type(new):
        out: list[Change] = []
        for name in type(old).model_fields:
            out += model_changes(getattr(old, name), getattr(new, name), (*path, name))
        return out
    if isinstance(old, list) and isinstance(new, list) and _keyed(old + new):
        return _list_changes(old, new, path)
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in [*old, *(k for k in new if k not in old)]:
            if key not in new:
                out.append(Change((*path[:-1], (str(path[-1]) if path else "", str(key))), old[key], None,
                                  "removed"))
            elif key not in old:
                out.append(Change((*path[:-1], (str(path[-1]) if path else "", str(key))), None, new[key], "added"))
            else:
                out += model_changes(old[key], new[key], (*path[:-1], (str(path[-1]) if path else "", str(key))))
        return out
    return [] if old == new else [Change(path, old, new, "changed")]


def _keyed(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, BaseModel) and _key(i) is not None for i in items)


def _key(item: BaseModel) -> str | None:
    for f in KEY_FIELDS:
        if f in type(item).model_fields:
            return str(getattr(item, f))
    return None


def _list_changes(old: list[Any], new: list[Any], path: tuple[Segment, ...]) -> list[Change]:
    field = str(path[-1]) if path else ""
    before = {_key(i): i for i in old}
    after = {_key(i): i for i in new}
    out: list[Change] = []
    for key, item in before.items():
        seg = (*path[:-1], (field, str(key)))
        if key not in after:
            out.append(Change(seg, item, None, "removed"))
        else:
            out += model_changes(item, after[key], seg)
    for key, item in after.items():
        if key not in before:
            out.append(Change((*path[:-1], (field, str(key))), None, item, "added"))
    return out


# --- naming and values -----------------------------------------------------------------------------


def path_text(path: Iterable[Segment], star: bool = False) -> str:
    parts = []
    for seg in path:
        if isinstance(seg, tuple):
            field, key = seg
            parts.append(f"{field}[{'*' if star else key}]" if field else f"[{'*' if star else key}]")
        else:
            parts.append(seg)
    return ".".join(parts).replace(".[", "[")


def value_text(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, IPv4Address | IPv4Network | int | str):
        return str(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(value_text(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {value_text(x)}" for k, x in v.items()) + "}"
    if isinstance(v, BaseModel):
        return "{" + ", ".join(f"{k}: {value_text(getattr(v, k))}" for k in type(v).model_fields
                               if k in v.model_fields_set) + "}"
    return str(v)


def _kind_of(path: tuple[Segment, ...]) -> str:
    for seg in reversed(path):
        if isinstance(seg, tuple):
            return KIND_NAMES.get(seg[0], seg[0].rstrip("s") or "item")
    return "site"


def _plural(word: str, n: int) -> str:
    return word if n == 1 else (word + "es" if word.endswith("s") else word + "s")


# --- what a change touches -------------------------------------------------------------------------


class Touch:
    """Maps a model path to the hosts it affects, and counts their changed sessions and files."""

    def __init__(self, base: Plan, new: Plan, sessions: dict[str, Any], files: dict[str, list[str]]):
        self.plans = (base, new)
        self.all_hosts: set[str] = set()
        self.neighbours: dict[str, set[str]] = defaultdict(set)
        self.rack_hosts: dict[str, set[str]] = defaultdict(set)
        self.dc_hosts: dict[str, set[str]] = defaultdict(set)
        self.hardware_hosts: dict[str, set[str]] = defaultdict(set)
        self.role_hosts: dict[str, set[str]] = defaultdict(set)
        for p in self.plans:
            for n in p.nodes:
                self._host(n.hostname, n.dc, n.rack)
                self.hardware_hosts[n.hardware_profile].add(n.hostname)
            for t in p.tors:
                self._host(t.name, t.dc, t.rack)
            for s in p.spines:
                self._host(s.name, s.dc, None)
            for v in p.vms:
                self._host(v.name, v.dc, v.rack)
                self.role_hosts[v.role].add(v.name)
                hw = next((vm.hardware for vm in getattr(p.site.vms, v.role) if vm.name == v.name), None)
                if hw:
                    self.hardware_hosts[hw].add(v.name)
            for session in p.sessions:
                self.neighbours[session.a.host].add(session.b.host)
                self.neighbours[session.b.host].add(session.a.host)
        # Changed sessions and files, indexed by host.
        self.session_hosts: list[tuple[str, set[str]]] = []
        for section in ("added", "removed", "changed"):
            for key in sessions[section]:
                self.session_hosts.append((key, set(key.split(" ", 1)[1].split("~"))))
        self.host_files: dict[str, set[str]] = defaultdict(set)
        self.site_files: set[str] = set()
        for section in ("added", "removed", "changed"):
            for path in files[section]:
                parts = path.split("/")
                if len(parts) >= 3 and parts[1] in self.all_hosts:
                    self.host_files[parts[1]].add(path)
                else:
                    self.site_files.add(path)

    def _host(self, name: str, dc: str, rack: str | None) -> None:
        self.all_hosts.add(name)
        self.dc_hosts[dc].add(name)
        if rack is not None:
            self.rack_hosts[rack].add(name)

    def hosts(self, path: tuple[Segment, ...]) -> set[str]:
        keyed = {seg[0]: seg[1] for seg in path if isinstance(seg, tuple)}
        top = path[0] if path and isinstance(path[0], str) else (path[0][0] if path else "")
        if "nodes" in keyed:
            found = {keyed["nodes"]}
        elif "racks" in keyed:
            found = set(self.rack_hosts.get(keyed["racks"], ()))
        elif "spines" in keyed:
            found = {keyed["spines"]}
        elif top == "vms" and keyed:
            found = {next(iter(keyed.values()))}
        elif "dcs" in keyed:
            found = set(self.dc_hosts.get(keyed["dcs"], ()))
        elif top == "hardware" and "hardware" in keyed:
            found = set(self.hardware_hosts.get(keyed["hardware"], ()))
        elif top == "etcd":
            found = self.role_hosts["etcd"] | self.role_hosts["etcd_events"]
        elif top == "kubernetes":
            found = set(self.role_hosts["control_plane"])
        elif top == "demand":
            return set()
        else:
            return set(self.all_hosts)
        return found | {n for h in found for n in self.neighbours.get(h, ())}

    def counts(self, paths: Iterable[tuple[Segment, ...]]) -> tuple[int, int]:
        """(changed sessions, changed files) touched by any of ``paths``."""
        hosts: set[str] = set()
        site_wide = False
        for p in paths:
            h = self.hosts(p)
            hosts |= h
            site_wide = site_wide or bool(h)
        sessions = sum(1 for _, ends in self.session_hosts if ends & hosts)
        files = sum(len(self.host_files.get(h, ())) for h in hosts)
        return sessions, files + (len(self.site_files) if site_wide else 0)


# --- grouping --------------------------------------------------------------------------------------


def parameter_diff(old_site: BaseModel, new_site: BaseModel, touch: Touch, limit: int = 4) -> list[dict[str, Any]]:
    """Changes grouped by (pattern, kind, old, new); each group with its objects, counts and a summary line."""
    groups: dict[tuple[str, str, str, str], list[Change]] = {}
    for c in model_changes(old_site, new_site):
        if c.kind == "changed":
            key = (path_text(c.path, star=True), c.kind, value_text(c.old), value_text(c.new))
        else:  # an added or removed object: grouped by the list it belongs to
            key = (path_text((*c.path[:-1], c.path[-1][0]), star=True) if isinstance(c.path[-1], tuple)
                   else path_text(c.path, star=True), c.kind, "", "")
        groups.setdefault(key, []).append(c)
    out = []
    for (pattern, kind, old, new), changes in groups.items():
        sessions, files = touch.counts(c.path for c in changes)
        objects = [_object_name(c.path) for c in changes]
        what = _kind_of(changes[0].path)
        n = len(changes)
        if kind == "changed":
            field = path_text(changes[0].path) if n == 1 else pattern
            line = f"{field}: {old} -> {new}"
            if n > 1:
                line += f" on {n} {_plural(what, n)} ({_names(objects, limit)})"
        else:
            sign = "+" if kind == "added" else "-"
            listed = path_text((*changes[0].path[:-1], changes[0].path[-1][0])) if n == 1 else pattern
            line = f"{listed}: {sign}{n} {_plural(what, n)} {kind} ({_names(objects, limit)})"
        effect = [f"{sessions:,} {_plural('session', sessions)}" if sessions else "",
                  f"{files:,} {_plural('file', files)}" if files else ""]
        effect = [e for e in effect if e]
        line += f" ({', '.join(effect)})" if effect else " (no rendered change)"
        out.append({"pattern": pattern, "kind": kind, "old": old, "new": new, "count": n, "object": what,
                    "paths": [path_text(c.path) for c in changes], "objects": objects,
                    "sessions": sessions, "files": files, "line": line})
    return out


def _object_name(path: tuple[Segment, ...]) -> str:
    keyed = [seg[1] for seg in path if isinstance(seg, tuple)]
    return keyed[-1] if keyed else path_text(path)


def _names(items: list[str], limit: int) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
