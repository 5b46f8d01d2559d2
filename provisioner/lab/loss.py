"""Traffic lost during a drill, measured in packets: pings at 20 per second from a pod to each target, kept
running across the event; every unanswered probe is a lost packet, and the longest run of them is the outage.

Used by the fail-safe lab tests (their budgets) and by `lab drill`-style measurements in docs/network.md.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

INTERVAL = 0.05  # 20 packets per second


@dataclass(frozen=True)
class Loss:
    target: str
    sent: int
    lost: int
    longest_outage_s: float

    def row(self) -> str:
        return f"{self.target}: {self.lost}/{self.sent} lost, longest outage {self.longest_outage_s:.2f}s"


class Pinger:
    """``ping -O`` in the pod's namespace for ``seconds``; :meth:`result` waits for it and counts."""

    def __init__(self, netns: str, target: str, seconds: float):
        self.target = target
        self.count = int(seconds / INTERVAL)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "ping", "-n", "-O", "-i", str(INTERVAL), "-W", "1",
             "-c", str(self.count), target], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def result(self) -> Loss:
        out, _ = self.proc.communicate(timeout=self.count * INTERVAL + 30)
        answered = {int(m) for m in re.findall(r"icmp_seq=(\d+) ttl=", out)}
        seqs = range(1, self.count + 1)
        lost = [s for s in seqs if s not in answered]
        longest = run = 0
        for s in seqs:
            run = run + 1 if s not in answered else 0
            longest = max(longest, run)
        return Loss(self.target, self.count, len(lost), round(longest * INTERVAL, 2))
