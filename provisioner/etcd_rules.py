"""Placement rules of the two etcd clusters: a DC outage must never take quorum with it.

- No DC may hold a majority of either cluster (otherwise losing that one DC loses quorum).
- No two members of one cluster may share a rack (a rack's ToR or power is a single failure domain).

Each rule yields ``(field path, message)`` like the rules in ``validate.py``; ``load.py`` turns the path
into ``file:line``.
"""

from __future__ import annotations

from collections.abc import Iterator

from .model import Site
from .util import Violation

ROLES = (("etcd", "main etcd"), ("etcd_events", "events etcd"))


def etcd_problems(site: Site) -> Iterator[Violation]:
    for role, what in ROLES:
        members = getattr(site.vms, role)
        total = len(members)
        per_dc: dict[str, list[int]] = {}
        per_rack: dict[tuple[str, str], int] = {}
        for i, vm in enumerate(members):
            per_dc.setdefault(vm.dc, []).append(i)
            key = (vm.dc, vm.rack)
            if key in per_rack:
                first = members[per_rack[key]]
                yield (("vms", role, i, "rack"),
                       f"{what} members {first.name} and {vm.name} share rack {vm.rack}; "
                       "put each member of a cluster in its own rack")
            else:
                per_rack[key] = i
        quorum = total // 2 + 1
        for dc, indices in per_dc.items():
            if len(indices) >= quorum:
                # Point at the member that tips the DC into a majority.
                i = indices[quorum - 1]
                names = ", ".join(members[j].name for j in indices)
                yield (("vms", role, i, "dc"),
                       f"{dc} holds {len(indices)} of {total} {what} members ({names}), a majority: losing {dc} "
                       f"would lose quorum ({quorum} of {total}); spread the members so no DC holds {quorum}")
