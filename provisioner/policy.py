"""Batfish-style route-policy evaluation over the rendered configs (the text that ships).

The evaluator reads the BIRD and FRR artifacts, not the Plan, so it checks what the daemons will
actually run: a template bug that widens a filter shows up here even though the Plan is right.

It understands only the small policy language the templates emit and refuses anything else with
:class:`PolicyParseError` (an unknown statement is never silently treated as "accept"):

BIRD 2
    ``define NAME = [ prefix patterns ];`` (``a.b.c.d/n``, ``/n+``, ``/n-``, ``/n{lo,hi}``),
    ``filter NAME { ... }`` with statements ``accept;``, ``reject;``,
    ``if net ~ SET then accept|reject;``, ``if net = PREFIX then accept|reject;``,
    ``if source = RTS_X then accept|reject;``; a channel's ``import``/``export`` of
    ``all``, ``none`` or ``filter NAME``. A filter that ends without a decision rejects (as BIRD does).

FRR
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


# ----------------------------------------------------------------------------------------------- BIRD

@dataclass(frozen=True, slots=True)
class BirdPattern:
    """One BIRD prefix pattern: ``base{lo,hi}`` (plain ``base`` is ``base{len,len}``)."""

    base: IPv4Network
    lo: int
    hi: int

    @classmethod
    def parse(cls, text: str) -> BirdPattern:
        m = re.fullmatch(r"([0-9.]+/\d+)(?:(\+)|(-)|\{\s*(\d+)\s*,\s*(\d+)\s*\})?", text.strip())
        if not m:
            raise PolicyParseError(f"unsupported BIRD prefix pattern {text!r}")
        base = _net(m.group(1))
        n = base.prefixlen
        if m.group(2):
            return cls(base, n, 32)
        if m.group(3):
            return cls(base, 0, n)
        if m.group(4) is not None:
            lo, hi = int(m.group(4)), int(m.group(5))
            if not 0 <= lo <= hi <= 32:
                raise PolicyParseError(f"bad length range in {text!r}")
            return cls(base, lo, hi)
        return cls(base, n, n)

    def matches(self, net: IPv4Network) -> bool:
        return self.lo <= net.prefixlen <= self.hi and _within(net, self.base, min(net.prefixlen, self.base.prefixlen))


@dataclass(frozen=True, slots=True)
class BirdStatement:
    """``if <attr> <op> <operand> then <action>``; attr None is an unconditional action."""

    attr: Literal["net", "source"] | None
    op: Literal["~", "="] | None
    operand: tuple[BirdPattern, ...] | IPv4Network | str | None
    action: Literal["accept", "reject"]

    def matches(self, net: IPv4Network, source: str) -> bool:
        if self.attr is None:
            return True
        if self.attr == "source":
            return source == self.operand
        if self.op == "=":
            return net == self.operand
        return any(p.matches(net) for p in self.operand)  # type: ignore[union-attr]


@dataclass
class BirdConfig:
    defines: dict[str, tuple[BirdPattern, ...] | IPv4Network] = field(default_factory=dict)
    filters: dict[str, tuple[BirdStatement, ...]] = field(default_factory=dict)
    # protocol name -> {"import": "all" | "none" | filter name, "export": ...}
    channels: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> BirdConfig:
        cfg = cls()
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        text = re.sub(r"#[^\n]*", "", text)
        for m in re.finditer(r"\bdefine\s+(\w+)\s*=\s*([^;]+);", text):
            cfg.defines[m.group(1)] = cfg._operand(m.group(2))
        for kind, name, body in _bird_blocks(text):
            if kind == "filter":
                cfg.filters[name] = tuple(cfg._statement(s) for s in _split_statements(body))
            elif kind == "protocol":
                cfg.channels[name] = _bird_channel(body)
        return cfg

    def _operand(self, text: str) -> tuple[BirdPattern, ...] | IPv4Network:
        text = text.strip()
        if text.startswith("["):
            if not text.endswith("]"):
                raise PolicyParseError(f"unterminated prefix set {text!r}")
            inner = text[1:-1].strip()
            return tuple(BirdPattern.parse(p) for p in re.split(r",(?![^{]*\})", inner)) if inner else ()
        if re.fullmatch(r"[0-9.]+/\d+", text):
            return _net(text)
        if text in self.defines:
            return self.defines[text]
        raise PolicyParseError(f"unknown BIRD operand {text!r}")

    def _statement(self, text: str) -> BirdStatement:
        text = " ".join(text.split())
        if text in ("accept", "reject"):
            return BirdStatement(None, None, None, text)  # type: ignore[arg-type]
        m = re.fullmatch(r"if (net|source) (~|=) (.+?) then (accept|reject)", text)
        if not m:
            raise PolicyParseError(f"unsupported BIRD filter statement {text!r}")
        attr, op, operand, action = m.groups()
        if attr == "source":
            if op != "=" or not re.fullmatch(r"RTS_[A-Z_]+", operand):
                raise PolicyParseError(f"unsupported source test {text!r}")
            return BirdStatement("source", "=", operand, action)  # type: ignore[arg-type]
        value = self._operand(operand)
        if op == "~" and isinstance(value, IPv4Network):
            value = (BirdPattern(value, value.prefixlen, value.prefixlen),)
        if op == "=" and not isinstance(value, IPv4Network):
            raise PolicyParseError(f"'net =' needs a prefix: {text!r}")
        return BirdStatement("net", op, value, action)  # type: ignore[arg-type]

    def evaluate_filter(self, name: str, net: IPv4Network | str, source: str = "RTS_STATIC") -> Decision:
        net = IPv4Network(net)
        if name not in self.filters:
            raise PolicyParseError(f"no filter {name!r}")
        for i, st in enumerate(self.filters[name]):
            if st.matches(net, source):
                return Decision(st.action == "accept", f"filter {name} statement {i + 1}: {st.action}")
        return Decision(False, f"filter {name} ended without a decision (BIRD rejects)")

    def evaluate(self, protocol: str, direction: Literal["import", "export"], net: IPv4Network | str,
                 source: str = "RTS_STATIC") -> Decision:
        """What ``protocol``'s ipv4 channel does with ``net`` on import or export."""
        try:
            policy = self.channels[protocol][direction]
        except KeyError:
            raise PolicyParseError(f"protocol {protocol!r} has no ipv4 {direction} policy") from None
        if policy == "all":
            return Decision(True, f"{protocol} {direction} all")
        if policy == "none":
            return Decision(False, f"{protocol} {direction} none")
        return self.evaluate_filter(policy, net, source)


def _bird_blocks(text: str) -> list[tuple[str, str, str]]:
    """Top-level ``filter NAME { }`` and ``protocol TYPE [NAME] { }`` blocks with their bodies."""
    out = []
    for m in re.finditer(r"^(filter|protocol)\s+(\w+)(?:\s+(\w+))?\s*\{", text, flags=re.M):
        body = _balanced(text, m.end() - 1)
        kind = m.group(1)
        name = m.group(2) if kind == "filter" else (m.group(3) or m.group(2))
        out.append((kind, name, body))
    return out


def _balanced(text: str, open_at: int) -> str:
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1: i]
    raise PolicyParseError("unbalanced braces")


def _split_statements(body: str) -> list[str]:
    if "{" in body:
        raise PolicyParseError("nested blocks in a filter are not supported")
    return [s.strip() for s in body.split(";") if s.strip()]


def _bird_channel(body: str) -> dict[str, str]:
    m = re.search(r"\bipv4\s*\{", body)
    if not m:
        return {}
    channel = _balanced(body, m.end() - 1)
    out: dict[str, str] = {}
    for d in ("import", "export"):
        found = re.findall(rf"\b{d}\s+(all|none|filter\s+\w+|filter\s*\{{|where\b)", channel)
        if len(found) > 1:
            raise PolicyParseError(f"more than one {d} policy in a channel")
        if found:
            value = found[0]
            if value.startswith("where") or value.endswith("{"):
                raise PolicyParseError(f"inline {d} filters are not supported")
            out[d] = value.split()[-1]
    return out


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
