"""How announcements follow health, and how fast sessions recover: one policy for every template and test.

Anycast ranges (nodes) and the API address (control-plane VMs) are announced only while a local health check
passes. The checks are run by anycast-healthchecker (PyPI), which writes the BIRD set ``ACAST_PS_ADVERTISE``
into :attr:`HealthPolicy.bird_include` and runs ``birdc configure``. anycast-healthchecker only takes /32
service prefixes, so each range is represented by a /32 *token* (its first host address): the range is
announced while its token is in the set. The API address is a /32 and is its own token.

Every announced prefix is also installed in the kernel as ``unreachable`` at a high metric, so an address
inside it that nothing local serves is answered with ICMP unreachable instead of looping (docs/network.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network


@dataclass(frozen=True)
class HealthPolicy:
    bird_include: str = "/etc/bird/anycast-prefixes.conf"
    bird_variable: str = "ACAST_PS_ADVERTISE"
    # Always in the set (anycast-healthchecker needs a non-empty set); never a route anywhere.
    placeholder: str = "0.0.0.0/32"
    unreachable_metric: int = 4242
    # anycast-healthchecker: a check every second, three failures withdraw (a stopped service fails at once: about
    # 3 s), two passes announce again. A check may take 2 s: a loaded box answering slowly is not a dead service
    # (1 s timeouts flapped the API address on the loaded 2-core lab).
    check_interval_s: int = 1
    check_timeout_s: int = 2
    check_fail: int = 3
    check_rise: int = 2
    node_check: str = "/usr/bin/curl -fsS -m 2 -o /dev/null http://127.0.0.1:10256/healthz"  # kube-proxy
    api_check: str = "/usr/bin/curl -fsSk -m 2 -o /dev/null https://127.0.0.1:6443/readyz"  # kube-apiserver
    # BGP/BFD recovery (docs/network.md, "Recovery timers").
    bfd_interval_ms: int = 300
    bfd_multiplier: int = 3
    connect_retry_s: int = 3
    error_wait_max_s: int = 10
    graceful_restart_s: int = 20

    @staticmethod
    def token(prefix: IPv4Network) -> IPv4Network:
        """The /32 that stands for ``prefix`` in the health set: the prefix itself if it is a /32, otherwise
        its first host address."""
        if prefix.prefixlen == 32:
            return prefix
        return IPv4Network(f"{prefix.network_address + 1}/32")


HEALTH = HealthPolicy()
