"""Which failures each etcd cluster survives, computed from where its members are.

A cluster of n members keeps working while a quorum of n // 2 + 1 of them is up. For every DC and every
pair of DCs this module removes their members and checks whether a quorum remains; nothing is
hard-coded, so a site that puts two members in one DC is told plainly that losing that DC is fatal.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations

from .plan import EtcdCluster, Plan


def quorum(members: int) -> int:
    return members // 2 + 1


def survives(cluster: EtcdCluster, lost_dcs: set[str] | frozenset[str]) -> bool:
    """True when the members outside ``lost_dcs`` still form a quorum."""
    remaining = sum(1 for m in cluster.members if m.dc not in lost_dcs)
    return remaining >= quorum(len(cluster.members))


def cluster_lines(cluster: EtcdCluster, dcs: tuple[str, ...]) -> list[str]:
    total = len(cluster.members)
    per_dc = Counter(m.dc for m in cluster.members)
    layout = ", ".join(f"{dc}: {per_dc.get(dc, 0)}" for dc in dcs)
    head = f"{cluster.name}: {total} members ({layout}), quorum {quorum(total)}"
    singles = [dc for dc in dcs if not survives(cluster, {dc})]
    pairs = list(combinations(dcs, 2))
    pair_ok = [p for p in pairs if survives(cluster, set(p))]
    lines = []
    if not singles:
        lines.append(f"{head}; survives the loss of any one DC")
    else:
        lines.append(f"{head}; does NOT survive the loss of {' or '.join(singles)} (quorum lost)")
    if pairs:
        if len(pair_ok) == len(pairs):
            lines.append(f"{cluster.name}: survives the loss of any two DCs")
        elif pair_ok:
            lines.append(f"{cluster.name}: survives the loss of two DCs only for "
                         + ", ".join("+".join(p) for p in pair_ok))
        else:
            lines.append(f"{cluster.name}: does not survive the loss of two DCs (quorum lost)")
    racks = Counter(m.rack for m in cluster.members)
    fatal_racks = sorted(r for r, n in racks.items() if total - n < quorum(total))
    if not fatal_racks:
        lines.append(f"{cluster.name}: survives the loss of any one rack or member")
    else:
        lines.append(f"{cluster.name}: does NOT survive the loss of rack {' or '.join(fatal_racks)} (quorum lost)")
    return lines


def tolerance_lines(plan: Plan) -> list[str]:
    """One statement per failure class for the main and the events cluster, for ``plan`` output."""
    lines: list[str] = []
    for cluster in plan.etcd_clusters:
        lines.extend(cluster_lines(cluster, plan.dcs))
    return lines
