"""The lab's stand-in for an upstream (border) router: FRR that sends the DC's spines a default route and
takes whatever they announce. It is not part of the rendered tree (an upstream is not the site's to
configure); its side of each session comes from the same Plan session as the spine's side.

Its router id sits on ``lo`` and is the *probe address* of the lab's egress checks: nothing else in the lab
holds it, so a packet to it has left the fabric through an upstream. The default route it originates leads
nowhere beyond it: a packet to any other address dies here with "unreachable".
"""

from __future__ import annotations

from ..plan import Plan, PlanUpstream


def frr_conf(plan: Plan, up: PlanUpstream) -> str:
    lines = [
        f"! Lab upstream {up.name} ({up.dc}, AS {up.asn}): sends 0.0.0.0/0 to the spines of {up.dc}.",
        "frr version 8.4.4",
        "frr defaults datacenter",
        f"hostname {up.name}",
        "log syslog informational",
        "service integrated-vtysh-config",
        "no zebra nexthop kernel enable",
        "!",
        "route-map ALL permit 10",
        "exit",
        "!",
        f"router bgp {up.asn}",
        f" bgp router-id {up.router_id}",
        " bgp ebgp-requires-policy",
    ]
    # No graceful restart here: a restarting FRR defers its first updates (the default included) until every
    # GR peer sent End-of-RIB or select-defer-time passes, which held a restored upstream's default back for
    # over 30 s in the lab. An upstream is not the site's to tune; the site's own switches keep GR.
    if (plan.bgp.keepalive, plan.bgp.hold_time) != (3, 9):
        lines.append(f" timers bgp {plan.bgp.keepalive} {plan.bgp.hold_time}")
    for s in up.sessions:
        lines += [f" neighbor {s.a.address} remote-as {s.a.asn}", f" neighbor {s.a.address} description {s.a.host}",
                  f" neighbor {s.a.address} ttl-security hops 1"]
    lines += [" !", " address-family ipv4 unicast"]
    for s in up.sessions:
        lines += [f"  neighbor {s.a.address} default-originate", f"  neighbor {s.a.address} route-map ALL in",
                  f"  neighbor {s.a.address} route-map ALL out"]
    lines += [f"  maximum-paths {max(1, len(up.sessions))}", " exit-address-family", "exit", "!", "end", ""]
    return "\n".join(lines)
