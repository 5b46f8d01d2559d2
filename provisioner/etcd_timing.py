"""etcd heartbeat and election timeout, derived from the declared inter-DC round-trip time.

The rules follow etcd's tuning guide: the heartbeat is about one RTT (0.5-1.5x), the election timeout
at least 10x the RTT and at least 5x the heartbeat, and etcd refuses anything above 50 000 ms.
Declare the p99 RTT between DCs under load, not the median: the heartbeat must cover the slow case.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .model import Etcd
from .util import Violation

ELECTION_MAX_MS = 50_000
QUOTA_MAX_BYTES = 8 * 1024**3


@dataclass(frozen=True, slots=True)
class Timing:
    heartbeat_ms: int
    election_ms: int


def derive(etcd: Etcd) -> Timing:
    rtt = etcd.inter_dc_rtt_ms
    heartbeat = etcd.heartbeat_interval_ms if etcd.heartbeat_interval_ms is not None else rtt
    election = etcd.election_timeout_ms
    if election is None:
        election = max(10 * rtt, 5 * heartbeat)
    return Timing(heartbeat_ms=heartbeat, election_ms=election)


def timing_problems(etcd: Etcd) -> Iterator[Violation]:
    rtt = etcd.inter_dc_rtt_ms
    t = derive(etcd)
    if not 0.5 * rtt <= t.heartbeat_ms <= 1.5 * rtt:
        yield (("etcd", "heartbeat_interval_ms"),
               f"heartbeat {t.heartbeat_ms} ms must be 0.5-1.5x the inter-DC RTT of {rtt} ms "
               f"({rtt / 2:g}-{rtt * 1.5:g} ms)")
    if t.election_ms < 10 * rtt:
        yield (("etcd", "election_timeout_ms"),
               f"election timeout {t.election_ms} ms must be at least 10x the RTT ({10 * rtt} ms)")
    if t.election_ms < 5 * t.heartbeat_ms:
        yield (("etcd", "election_timeout_ms"),
               f"election timeout {t.election_ms} ms must be at least 5x the heartbeat ({5 * t.heartbeat_ms} ms)")
    if t.election_ms > ELECTION_MAX_MS:
        loc = "election_timeout_ms" if etcd.election_timeout_ms is not None else "inter_dc_rtt_ms"
        yield ("etcd", loc), f"election timeout {t.election_ms} ms is above etcd's maximum of {ELECTION_MAX_MS} ms"
    if etcd.quota_backend_bytes > QUOTA_MAX_BYTES:
        yield (("etcd", "quota_backend_bytes"),
               f"quota {etcd.quota_backend_bytes} bytes is above etcd's suggested maximum of 8 GiB")
