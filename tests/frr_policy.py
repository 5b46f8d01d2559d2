"""Test support: Batfish-style evaluation of the FRR route policy in the rendered configs (the text that ships).

The evaluator reads the rendered ``frr.conf`` of ToRs and spines, not the Plan, so it checks what the
daemons will actually run: a template bug that widens a prefix-list shows up here even though the Plan is
right. tests/unit/test_policy.py uses it; it is not part of the package (no command needs it). The BIRD
side (nodes and control-plane VMs, written with functions and an include) is not modelled: the daemons
tier parses it with ``bird -p`` and the lab tier runs it (``lab verify`` compares what each ToR learns
from each server with the Plan).

It understands only the small policy language the templates emit and refuses anything else with
:class:`PolicyParseError` (an unknown statement is never silently treated as "accept"):
``ip prefix-list NAME seq N permit|deny PREFIX [ge X] [le Y]``, ``route-map NAME permit|deny SEQ``
with ``match ip address prefix-list NAME`` and ``set local-preference N``, and in ``router bgp``:
peer-groups, ``neighbor X peer-group G``, ``neighbor X remote-as``, ``neighbor X prefix-list|route-map
NAME in|out``. A referenced list or map that does not exist denies (as FRR does); an eBGP neighbour
without an inbound/outbound policy denies when ``bgp ebgp-requires-policy`` is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Literal

Direction = Literal["in", "out"]


# Route-map statements that reset attributes; they never decide whether a route is accepted.
HYGIENE = (["set", "community", "none"], ["set", "large-community", "none"], ["set", "ip", "next-hop", "peer-address"])

class PolicyParseError(ValueError):
    """The config uses a construct this evaluator does not model."""


@dataclass(frozen=True, slots=True)
class Decision:
    accepted: bool
    reason: str
    local_pref: int | None = None

    def __bool__(self) -> bool:
        return self.accepted


def _net(text: str) -> IPv4Network:
    try:
        return IPv4Network(text, strict=True)
    except ValueError as exc:
        raise PolicyParseError(f"not a prefix: {text!r}") from exc


def _within(candidate: IPv4Network, base: IPv4Network, bits: int) -> bool:
    """Do the first ``bits`` bits of ``candidate`` and ``base`` agree?"""
    mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF if bits else 0
    return int(candidate.network_address) & mask == int(base.network_address) & mask


# ------------------------------------------------------------------------------------------------ FRR

@dataclass(frozen=True, slots=True)
class PrefixListEntry:
    seq: int
    permit: bool
    prefix: IPv4Network
    ge: int | None
    le: int | None

    def matches(self, net: IPv4Network) -> bool:
        n = self.prefix.prefixlen
        if self.ge is None and self.le is None:
            return net == self.prefix
        lo = self.ge if self.ge is not None else n
        hi = self.le if self.le is not None else 32
        return lo <= net.prefixlen <= hi and net.prefixlen >= n and _within(net, self.prefix, n)


@dataclass
class RouteMapEntry:
    seq: int
    permit: bool
    match_prefix_lists: list[str] = field(default_factory=list)
    local_pref: int | None = None


@dataclass
class Neighbor:
    name: str
    peer_group: str | None = None
    remote_as: str | None = None
    prefix_list: dict[str, str] = field(default_factory=dict)  # direction -> name
    route_map: dict[str, str] = field(default_factory=dict)


@dataclass
class FrrConfig:
    prefix_lists: dict[str, list[PrefixListEntry]] = field(default_factory=dict)
    route_maps: dict[str, list[RouteMapEntry]] = field(default_factory=dict)
    neighbors: dict[str, Neighbor] = field(default_factory=dict)  # addresses and peer-groups
    asn: str | None = None
    ebgp_requires_policy: bool = True  # FRR's default

    @classmethod
    def parse(cls, text: str) -> FrrConfig:
        cfg = cls()
        rmap: RouteMapEntry | None = None
        in_bgp = False
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("!"):
                continue
            words = line.split()
            try:
                if words[:2] == ["ip", "prefix-list"]:
                    cfg._prefix_list(words)
                    rmap = None
                elif words[0] == "route-map":
                    if len(words) != 4 or words[2] not in ("permit", "deny"):
                        raise PolicyParseError(f"bad route-map header {line!r}")
                    rmap = RouteMapEntry(int(words[3]), words[2] == "permit")
                    cfg.route_maps.setdefault(words[1], []).append(rmap)
                    cfg.route_maps[words[1]].sort(key=lambda e: e.seq)
                elif rmap is not None and raw.startswith(" "):
                    cfg._route_map_line(rmap, words, line)
                elif words[:2] == ["router", "bgp"]:
                    in_bgp, rmap, cfg.asn = True, None, words[2]
                elif in_bgp and raw.startswith(" "):
                    cfg._bgp_line(words)
                else:
                    rmap = None
                    in_bgp = False  # any other top-level line ('exit', 'end', ...) closes the blocks
            except (IndexError, ValueError) as exc:
                if isinstance(exc, PolicyParseError):
                    raise PolicyParseError(f"line {lineno}: {exc}") from None
                raise PolicyParseError(f"line {lineno}: cannot parse {line!r}") from None
        return cfg

    def _prefix_list(self, words: list[str]) -> None:
        m = re.fullmatch(r"ip prefix-list (\S+) seq (\d+) (permit|deny) (\S+)(?: ge (\d+))?(?: le (\d+))?",
                         " ".join(words))
        if not m:
            raise PolicyParseError(f"unsupported prefix-list line {' '.join(words)!r}")
        name, seq, action, prefix, ge, le = m.groups()
        entries = self.prefix_lists.setdefault(name, [])
        entries.append(PrefixListEntry(int(seq), action == "permit", _net(prefix),
                                       int(ge) if ge else None, int(le) if le else None))
        entries.sort(key=lambda e: e.seq)

    @staticmethod
    def _route_map_line(entry: RouteMapEntry, words: list[str], line: str) -> None:
        if words[:4] == ["match", "ip", "address", "prefix-list"] and len(words) == 5:
            entry.match_prefix_lists.append(words[4])
        elif words[:2] == ["set", "local-preference"] and len(words) == 3:
            entry.local_pref = int(words[2])
        elif words in HYGIENE or (words[:2] == ["set", "metric"] and len(words) == 3):
            pass  # attribute hygiene: changes what is accepted, never whether
        else:
            raise PolicyParseError(f"unsupported route-map statement {line!r}")

    def _bgp_line(self, words: list[str]) -> None:
        if words == ["no", "bgp", "ebgp-requires-policy"]:
            self.ebgp_requires_policy = False
        elif words == ["bgp", "ebgp-requires-policy"]:
            self.ebgp_requires_policy = True
        if words[0] != "neighbor" or len(words) < 3:
            return
        name, rest = words[1], words[2:]
        nb = self.neighbors.setdefault(name, Neighbor(name))
        if rest[0] == "peer-group" and len(rest) == 2:
            nb.peer_group = rest[1]
            self.neighbors.setdefault(rest[1], Neighbor(rest[1]))
        elif rest[0] == "remote-as":
            nb.remote_as = rest[1]
        elif rest[0] in ("prefix-list", "route-map"):
            if len(rest) != 3 or rest[2] not in ("in", "out"):
                raise PolicyParseError(f"bad neighbor {rest[0]} line {' '.join(words)!r}")
            getattr(nb, rest[0].replace("-", "_"))[rest[2]] = rest[1]
        elif rest[0] in ("distribute-list", "filter-list", "unsuppress-map", "attribute-unchanged"):
            raise PolicyParseError(f"unsupported neighbor policy {' '.join(words)!r}")

    # -- evaluation

    def _resolved(self, neighbor: str, attr: str, direction: Direction) -> str | None:
        nb = self.neighbors.get(neighbor)
        if nb is None:
            raise PolicyParseError(f"no neighbor {neighbor!r}")
        own = getattr(nb, attr).get(direction)
        if own is not None or nb.peer_group is None:
            return own
        return getattr(self.neighbors[nb.peer_group], attr).get(direction)

    def _remote_as(self, neighbor: str) -> str | None:
        nb = self.neighbors[neighbor]
        if nb.remote_as is None and nb.peer_group is not None:
            return self.neighbors[nb.peer_group].remote_as
        return nb.remote_as

    def prefix_list_permits(self, name: str, net: IPv4Network) -> Decision:
        entries = self.prefix_lists.get(name)
        if entries is None:
            return Decision(False, f"prefix-list {name} does not exist (FRR denies)")
        for e in entries:
            if e.matches(net):
                return Decision(e.permit, f"prefix-list {name} seq {e.seq} {'permit' if e.permit else 'deny'}")
        return Decision(False, f"prefix-list {name}: no entry matches (implicit deny)")

    def route_map_applies(self, name: str, net: IPv4Network) -> Decision:
        entries = self.route_maps.get(name)
        if entries is None:
            return Decision(False, f"route-map {name} does not exist (FRR denies)")
        for e in entries:
            if all(self.prefix_list_permits(pl, net).accepted for pl in e.match_prefix_lists):
                verdict = "permit" if e.permit else "deny"
                return Decision(e.permit, f"route-map {name} seq {e.seq} {verdict}", e.local_pref if e.permit else None)
        return Decision(False, f"route-map {name}: no entry matches (implicit deny)")

    def evaluate(self, neighbor: str, direction: Direction, net: IPv4Network | str) -> Decision:
        """Would a route for ``net`` pass ``neighbor``'s policy in ``direction``? (prefix-list, then route-map)"""
        net = IPv4Network(net)
        pl = self._resolved(neighbor, "prefix_list", direction)
        rm = self._resolved(neighbor, "route_map", direction)
        remote = self._remote_as(neighbor)
        ebgp = remote == "external" or (remote not in (None, "internal") and remote != self.asn)
        if self.ebgp_requires_policy and ebgp and pl is None and rm is None:
            return Decision(False, f"{neighbor}: eBGP without {direction} policy (ebgp-requires-policy)")
        reasons = []
        if pl is not None:
            d = self.prefix_list_permits(pl, net)
            if not d.accepted:
                return d
            reasons.append(d.reason)
        local_pref = None
        if rm is not None:
            d = self.route_map_applies(rm, net)
            if not d.accepted:
                return d
            reasons.append(d.reason)
            local_pref = d.local_pref
        return Decision(True, "; ".join(reasons) or f"{neighbor}: no {direction} policy", local_pref)
