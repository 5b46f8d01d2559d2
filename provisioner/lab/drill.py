"""`lab drill`: a failure drill measured in packets. Pings at 20 per second run from a pod to a pod of another rack,
a pod of another DC, the anycast service address and the API address while the failure is applied (`lab fail`);
each target's lost packets and longest outage are reported and recorded in state.json (``drills``), which
`lab verify --format json` carries as the table of event -> what withdraws -> measured loss.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..pipeline import compile_site
from . import state as st
from .fail import fail
from .loss import Loss, Pinger
from .netns import LabError, LabUsageError

# What each kind of event withdraws (docs/network.md, "Failure drills").
WITHDRAWS = {
    "service": "the host's anycast ranges (or API /32), by its health check",
    "host": "the host's prefixes and sessions (BFD on the ToR side)",
    "dc": "every prefix of the DC; anycast and egress fail over to the other DCs",
    "link": "the sessions over the link",
    "crash": "nothing while the daemon restarts within its graceful-restart time (node) / the ToR's routes",
    "restart": "as crash, after a clean stop",
}


def _victims(state: dict[str, Any], kind: str, names: list[str]) -> set[str]:
    hosts = state["hosts"]
    if kind == "dc":
        return {h for h, v in hosts.items() if v["dc"] == names[0]}
    if kind == "service" and names[0] not in hosts:
        return {h for h, v in hosts.items() if v["dc"] == names[0] and v["role"] == "node"}
    return set(names) & set(hosts)


def targets(state: dict[str, Any], source: str, victims: frozenset[str] | set[str] = frozenset()) -> dict[str, str]:
    """label -> address: a pod in another rack of the source's DC and one in another DC (neither on a failed
    host: what must stay unaffected), the anycast service address, the API address."""
    plan = compile_site(state["site_dir"]).plan
    pods = state["pods"]
    src = pods[source]
    out: dict[str, str] = {}
    for label, fits in (("pod, other rack", lambda p: p["dc"] == src["dc"] and p["rack"] != src["rack"]),
                        ("pod, other DC", lambda p: p["dc"] != src["dc"])):
        pick = next((p for _n, p in sorted(pods.items()) if fits(p) and p["node"] not in victims), None)
        if pick is not None:
            out[label] = pick["address"]
    out["anycast"] = str(next(plan.anycast[0].hosts()))
    out["API"] = str(plan.api_address)
    return out


def drill(site: str | Path, kind: str, names: list[str], *, source: str | None = None, seconds: float = 8.0,
          prefix: str | None = None) -> dict[str, Any]:
    """Apply ``lab fail KIND NAMES`` while pinging; returns (and records) the measured row."""
    state = st.load(site, prefix)
    pods = state.get("pods", {})
    if not pods:
        raise LabError("the lab has no pods to measure from (lab up --pods 1)")
    victims = _victims(state, kind, names)
    if source is None:
        candidates = [n for n, p in sorted(pods.items())
                      if p["node"] not in victims and state["hosts"][p["node"]]["dc"] not in
                      ({state["hosts"][v]["dc"] for v in victims} if kind == "dc" else set())]
        if not candidates:
            raise LabError("no pod outside the failure to measure from")
        source = candidates[0]
    elif source not in pods:
        raise LabUsageError(f"no pod {source!r} (pods: {', '.join(sorted(pods))})")
    wanted = targets(state, source, victims)
    pingers = {label: Pinger(pods[source]["netns"], addr, seconds) for label, addr in wanted.items()}
    time.sleep(1.0)
    t0 = time.monotonic()
    entry = fail(site, kind, names, prefix=prefix)
    event_s = time.monotonic() - t0
    losses: dict[str, Loss] = {label: p.result() for label, p in pingers.items()}
    row = {"event": f"{kind} {' '.join(names)}", "withdraws": WITHDRAWS.get(kind, ""), "from": source,
           "seconds": seconds, "event_took_s": round(event_s, 2),
           "loss": {label: {"target": x.target, "sent": x.sent, "lost": x.lost,
                            "longest_outage_s": x.longest_outage_s} for label, x in losses.items()},
           "failure": entry.get("kind")}
    state = st.load(site, prefix)
    state.setdefault("drills", []).append(row)
    st.save(state)
    return row


def describe(row: dict[str, Any]) -> str:
    lines = [f"{row['event']} (from pod {row['from']}, {row['seconds']:.0f}s of probes at 20/s): "
             f"withdraws {row['withdraws']}"]
    for label, x in row["loss"].items():
        lines.append(f"  {label:<16} {x['target']:<16} {x['lost']:>4}/{x['sent']} lost, longest outage "
                     f"{x['longest_outage_s']:.2f}s")
    return "\n".join(lines)
