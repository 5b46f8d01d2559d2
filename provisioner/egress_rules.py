"""Cross-object rules of the egress part of a site: upstream routers per DC (see model.Upstream)."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Network

from .model import Site
from .util import Loc, Violation


def egress_problems(site: Site) -> Iterator[Violation]:
    """An upstream is outside the site: its ASN is none of the site's, what it may send does not overlap the
    site's own prefixes, and each DC lists an upstream once."""
    site_asns: dict[int, str] = {}
    for dc in site.dcs:
        for spine in dc.spines:
            site_asns.setdefault(spine.asn, f"spine {spine.name}")
        for rack in dc.racks:
            site_asns.setdefault(rack.asn, f"rack {rack.name}")
    ap = site.address_plan
    own: list[tuple[IPv4Network, str]] = [(p.cidr, f"pod pool {p.name}") for p in ap.pod_pools]
    own += [(a, "anycast range") for a in ap.anycast]
    own += [(IPv4Network(ap.api_address), "the API address"), (ap.service_cidr, "the service CIDR"),
            (ap.fabric_pool, "the fabric pool")]
    own += [(r.subnet, f"rack subnet of {r.name}") for dc in site.dcs for r in dc.racks]
    for d, dc in enumerate(site.dcs):
        for u, up in enumerate(dc.upstreams):
            loc: Loc = ("dcs", d, "upstreams", u)
            if up.asn in site_asns:
                yield (*loc, "asn"), (f"upstream {up.name}: ASN {up.asn} is the ASN of {site_asns[up.asn]}; an "
                                      "upstream is outside the site and needs an ASN of its own")
            if len(set(up.announce)) != len(up.announce):
                yield (*loc, "announce"), f"upstream {up.name}: announce lists a class twice"
            for a, prefix in enumerate(up.accept):
                if prefix.prefixlen == 0:
                    yield (*loc, "accept", a), (f"upstream {up.name}: the default route is always accepted; "
                                                "list only more specific prefixes under accept")
                    continue
                for net, what in own:
                    if prefix.overlaps(net):
                        yield (*loc, "accept", a), (f"upstream {up.name}: accepting {prefix} would let it "
                                                    f"override {what} {net}")
                        break
