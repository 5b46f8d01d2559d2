"""The one set of fabric and pool limits, shared by ``check`` and ``capacity``.

This module owns each limit's name (the ``check.yaml`` key and the ``--flag``), its default, its minimum,
the check ID that enforces it, and the way the Plan is measured against it. ``check`` turns a measurement
over its limit into a finding; ``capacity`` runs those same checks on the what-if site and shows the same
measurements, so the two can never disagree about a number or a default.

Defaults are conservative figures for a 48-port merchant-silicon ToR (Trident3-class) and a spine
(Trident4/Jericho-class), both running FRR:

* ``max_sessions_per_tor`` 48: iBGP sessions from the rack's servers (nodes and VMs) to its ToR; one per
  server port. The ToR's eBGP uplinks are not counted: they are fixed by the spine count.
* ``max_routes_per_tor`` 16,384 and ``max_routes_per_spine`` 131,072: distinct IPv4 prefixes the device
  holds (LPM entries; an ECMP route is one entry however many paths it has): every ToR's announcements
  (rack subnets, pod /24s or their aggregates, anycast, the API /32) plus its own fabric /31s.
* ``ecmp_max_width`` 64: ``maximum-paths`` of the switches; every announcer of an anycast range must fit in
  one ECMP group on its ToR (the rack's nodes) and on its spines (the DC's ToRs with announcers).
* ``anycast_min_announcers`` 2 per range and DC; ``min_free_per_pool`` (None: the node count of the
  largest rack drawing from the pool) free node prefixes of headroom in every pod pool.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, create_model

from .errors import InputError
from .load import parse_yaml, read_input, validate_file
from .plan import Plan

CHECK_FILE = "check.yaml"


@dataclass(frozen=True)
class LimitSpec:
    key: str  # check.yaml key and keyword argument
    default: int | None
    minimum: int
    check_id: str
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


SPECS: tuple[LimitSpec, ...] = (
    LimitSpec("anycast_min_announcers", 2, 0, "ANY001", "minimum announcers of each anycast range in each DC"),
    LimitSpec("min_free_per_pool", None, 0, "CAP001",
              "warn below this many free node prefixes in a pod pool [default: the node count of the largest "
              "rack drawing from the pool]"),
    LimitSpec("max_sessions_per_tor", 48, 1, "LIM001", "maximum iBGP sessions (nodes + VMs) on one ToR"),
    LimitSpec("max_routes_per_tor", 16_384, 1, "LIM002", "maximum IPv4 prefixes one ToR is expected to hold"),
    LimitSpec("max_routes_per_spine", 131_072, 1, "LIM005", "maximum IPv4 prefixes one spine is expected to hold"),
    LimitSpec("ecmp_max_width", 64, 1, "LIM003",
              "maximum-paths of the switches; must cover every anycast announcer"),
)
SPEC = {s.key: s for s in SPECS}


@dataclass(frozen=True)
class Limits:
    """Values of every limit; build with :func:`load_limits` to honour check.yaml and flags."""

    anycast_min_announcers: int = 2
    min_free_per_pool: int | None = None
    max_sessions_per_tor: int = 48
    max_routes_per_tor: int = 16_384
    max_routes_per_spine: int = 131_072
    ecmp_max_width: int = 64

    def as_dict(self) -> dict[str, int | None]:
        return {s.key: getattr(self, s.key) for s in SPECS}


L = TypeVar("L", bound=Limits)


def spec_defaults_match() -> bool:
    """The dataclass defaults and SPECS are one table (a test keeps them equal)."""
    return {f.name: f.default for f in fields(Limits)} == {s.key: s.default for s in SPECS}


# check.yaml as a model: one optional strict integer per limit (a missing key keeps the default; `null`
# is an error, not "the default": write nothing for that).
CheckFile: type[BaseModel] = create_model(
    "CheckFile",
    __config__=ConfigDict(extra="forbid", strict=True, frozen=True),
    **{s.key: (int, Field(default=None, ge=s.minimum)) for s in SPECS},  # type: ignore[call-overload]
)


def read_check_file(directory: Path) -> dict[str, int | None]:
    """``<site>/check.yaml`` (optional): a mapping of limit key to value; every bad key and value is reported
    at once with its line, the way site.yaml's are."""
    path = directory / CHECK_FILE
    if not path.is_file():
        return {}
    text = read_input(path)
    if not text.strip():
        return {}
    parsed = validate_file(parse_yaml(text, str(path)), CheckFile)
    return dict(parsed.model_dump(exclude_unset=True))


@overload
def load_limits(directory: Path, overrides: dict[str, int | None] | None = None) -> Limits: ...


@overload
def load_limits(directory: Path, overrides: dict[str, int | None] | None, base: L) -> L: ...


def load_limits(directory: Path, overrides: dict[str, int | None] | None = None, base: Limits | None = None) -> Limits:
    """Defaults, then ``<site>/check.yaml``, then overrides that are not None (command-line flags).

    ``base`` is the dataclass instance to start from (``Limits()`` or a subclass such as CheckOptions).
    """
    values: dict[str, Any] = read_check_file(directory)
    for key, value in (overrides or {}).items():
        if value is not None:
            if key not in SPEC:
                raise InputError(f"unknown limit {key!r}")
            if value < SPEC[key].minimum:
                raise InputError(f"{SPEC[key].flag} must be at least {SPEC[key].minimum}")
            values[key] = value
    return replace(base if base is not None else Limits(), **values)


# --- measurements -----------------------------------------------------------------------------------


def expected_prefixes(plan: Plan) -> set[IPv4Network]:
    """Every prefix the fabric carries: each ToR's announcements, anycast and the API /32."""
    everything: set[IPv4Network] = set()
    for t in plan.tors:
        everything.update(t.announces_up)
    everything.update(plan.anycast)
    everything.add(IPv4Network(plan.api_address))
    return everything


def tor_usage(plan: Plan) -> list[dict[str, Any]]:
    """Per ToR: iBGP sessions, expected prefixes, and announcers of each anycast range (its ECMP width)."""
    everything = expected_prefixes(plan)
    anycast = set(plan.anycast)
    rows = []
    for t in plan.tors:
        own = {p for s in t.clients for p in s.a_announces} | {s.subnet for s in t.uplinks}
        per_range = Counter(p for s in t.clients for p in set(s.a_announces) if p in anycast)
        rows.append({"tor": t.name, "dc": t.dc, "rack": t.rack, "sessions": len(t.clients),
                     "uplinks": len(t.uplinks), "routes": len(everything | own),
                     "ecmp": {str(r): k for r, k in sorted(per_range.items())}})
    return rows


def spine_usage(plan: Plan, tors: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Per spine: expected prefixes and, per anycast range, the ToRs of its DC with announcers (ECMP width)."""
    everything = expected_prefixes(plan)
    tors = tors if tors is not None else tor_usage(plan)
    with_announcers: Counter[tuple[str, str]] = Counter()
    for t in tors:
        for rng in t["ecmp"]:
            with_announcers[(t["dc"], rng)] += 1
    rows = []
    for sp in plan.spines:
        links = {s.subnet for s in sp.downlinks} | {s.subnet for s in sp.peers}
        rows.append({"spine": sp.name, "dc": sp.dc, "sessions": len(sp.downlinks) + len(sp.peers),
                     "routes": len(everything | links),
                     "ecmp": {str(r): with_announcers.get((sp.dc, str(r)), 0) for r in plan.anycast}})
    return rows


def headroom_threshold(dcs: Iterable[str], rack_sizes: dict[str, Counter[str]], limits: Limits) -> tuple[int, str]:
    """Free node prefixes a pool serving ``dcs`` should keep (CAP001), and why: the limit if set, else the
    node count of the largest rack of those DCs (``rack_sizes``: DC -> rack -> nodes)."""
    if limits.min_free_per_pool is not None:
        return limits.min_free_per_pool, "--min-free-per-pool"
    return max([k for dc in dcs for k in rack_sizes.get(dc, Counter()).values()] or [1]), "the largest rack it serves"


def pool_headroom(plan: Plan, limits: Limits) -> list[dict[str, Any]]:
    """Per pod pool: size, used and free node prefixes, and the headroom threshold that applies."""
    rack_sizes: dict[str, Counter[str]] = {dc: Counter() for dc in plan.dcs}
    for n in plan.nodes:
        rack_sizes.setdefault(n.dc, Counter())[n.rack] += 1
    allocated = set(plan.allocations.pod_cidrs.values()) | {n.pod_cidr for n in plan.nodes}
    rows = []
    for pool in plan.site.address_plan.pod_pools:
        size = 1 << (pool.node_prefix_len - pool.cidr.prefixlen)
        used = sum(1 for net in allocated if net.prefixlen == pool.node_prefix_len and net.subnet_of(pool.cidr))
        threshold, basis = headroom_threshold(pool.dcs or plan.dcs, rack_sizes, limits)
        rows.append({"pool": pool.name, "cidr": str(pool.cidr), "node_prefix_len": pool.node_prefix_len,
                     "size": size, "used": used, "free": size - used, "threshold": threshold, "basis": basis})
    return rows


def worst(plan: Plan, limits: Limits) -> list[dict[str, Any]]:
    """The worst measurement of each fabric limit and where it is: the table ``capacity`` shows."""
    tors = tor_usage(plan)
    spines = spine_usage(plan, tors)

    def row(what: str, key: str, items: list[tuple[int, str]]) -> dict[str, Any]:
        value, at = max(items, default=(0, "-"), key=lambda x: (x[0], x[1]))
        limit = getattr(limits, key)
        return {"what": what, "limit_key": key, "flag": SPEC[key].flag, "check": SPEC[key].check_id,
                "value": value, "at": at, "limit": limit, "ok": value <= limit}

    ecmp = [(k, f"{t['tor']} ({r})") for t in tors for r, k in t["ecmp"].items()]
    ecmp += [(k, f"{s['spine']} ({r})") for s in spines for r, k in s["ecmp"].items()]
    return [
        row("iBGP sessions per ToR", "max_sessions_per_tor", [(t["sessions"], t["tor"]) for t in tors]),
        row("prefixes per ToR", "max_routes_per_tor", [(t["routes"], t["tor"]) for t in tors]),
        row("prefixes per spine", "max_routes_per_spine", [(s["routes"], s["spine"]) for s in spines]),
        row("ECMP width (anycast announcers)", "ecmp_max_width", ecmp),
    ]
