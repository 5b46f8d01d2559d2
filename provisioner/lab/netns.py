"""iproute2 and process helpers. Every command the lab runs goes through :func:`run`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path


class LabError(RuntimeError):
    """An expected lab failure: reported without a traceback."""


class LabUsageError(LabError):
    """A lab command asked for something the lab does not have (a host, a DC, a drill it cannot run): exit 2."""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 60, input: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input,
                              env=env, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        if check:
            raise LabError(f"timed out after {timeout}s: {' '.join(argv)}") from None
        # TimeoutExpired carries bytes even with text=True: decode, or this path raises TypeError.
        return subprocess.CompletedProcess(list(argv), 124, _text(exc.stdout), _text(exc.stderr) + "timeout")
    if check and proc.returncode != 0:
        raise LabError(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr.strip()}")
    return proc


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def ip_batch(lines: Iterable[str], *, netns: str | None = None) -> None:
    text = "\n".join(lines) + "\n"
    if not text.strip():
        return
    run(["ip", *(["-n", netns] if netns else []), "-batch", "-"], input=text)


def netns_list() -> list[str]:
    out = run(["ip", "-j", "netns", "list"], check=False).stdout.strip()
    try:
        return sorted(entry["name"] for entry in json.loads(out or "[]"))
    except (ValueError, KeyError, TypeError):
        return sorted(line.split()[0] for line in out.splitlines() if line.strip())


def netns_pids(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def root_links() -> list[str]:
    out = run(["ip", "-j", "link", "show"], check=False).stdout
    try:
        return [entry["ifname"] for entry in json.loads(out or "[]")]
    except ValueError:
        return []


def comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


def kill_pids(pids: Iterable[int], *, grace: float = 5.0) -> None:
    """TERM, wait up to ``grace`` seconds, then KILL what is left."""
    pids = [p for p in set(pids) if p > 1 and p != os.getpid()]
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    for p in pids:
        if alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)


# A safety net in the root namespace: while any lab is up, 198.18.0.0/15 is unreachable from the
# machine itself except through a lab management bridge (its /20 or /24 is more specific). A mistake
# that makes the controller dial a lab address directly (say, an inventory overlay not applied) then
# fails at once instead of sending packets out of the machine's own interfaces.
GUARD_PREFIX = "198.18.0.0/15"
GUARD_PROTO = "198"  # route protocol number that marks the route as the lab's


def add_guard_route() -> None:
    existing = run(["ip", "-j", "route", "show", "exact", GUARD_PREFIX], check=False).stdout.strip()
    if existing in ("", "[]"):
        run(["ip", "route", "add", "unreachable", GUARD_PREFIX, "proto", GUARD_PROTO])


def remove_guard_route_if_unused() -> bool:
    """Remove the guard when no lab management bridge is left; never touch a route we did not add."""
    if any(link.endswith("-mgmt") for link in root_links()):
        return False
    ours = run(["ip", "route", "show", "exact", GUARD_PREFIX, "proto", GUARD_PROTO], check=False).stdout.strip()
    if not ours:
        return False
    run(["ip", "route", "del", "unreachable", GUARD_PREFIX, "proto", GUARD_PROTO], check=False)
    return True


def wait_pidfile(pidfile: Path, timeout: float) -> int | None:
    """The pid written to ``pidfile`` once that process is alive, or None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = int(pidfile.read_text().split()[0])
            if alive(pid):
                return pid
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.05)
    return None
