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


def ns_id(path: str) -> tuple[int, int] | None:
    """The identity (device, inode) of a namespace file (``/proc/PID/ns/net``, ``/var/run/netns/NAME``), or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def in_netns(pid: int, ns: str) -> bool:
    """``pid`` lives in the named network namespace (a pid file's pid may have been reused elsewhere)."""
    here = ns_id(f"/proc/{pid}/ns/net")
    return here is not None and here == ns_id(f"/var/run/netns/{ns}")


def pids_by_netns(namespaces: Iterable[str]) -> dict[str, list[int]]:
    """The processes of many named network namespaces from one scan of /proc (``ip netns pids`` scans it once per
    namespace: a DC of 259 hosts took 24 s to power off that way)."""
    wanted: dict[tuple[int, int] | None, str] = {
        ident: ns for ns in namespaces if (ident := ns_id(f"/var/run/netns/{ns}")) is not None}
    out: dict[str, list[int]] = {ns: [] for ns in wanted.values()}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (owner := wanted.get(ns_id(f"/proc/{entry.name}/ns/net"))) is not None:
            out[owner].append(int(entry.name))
    return out


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


NEIGH_THRESH = Path("/proc/sys/net/ipv4/neigh/default")
NEIGH_SAVED = Path("/run/provisioner-lab-neigh.json")  # the machine's own limits, while a lab has raised them


def raise_neighbour_limits(hosts: int) -> dict[str, int]:
    """Make room in the kernel's ARP table for a lab of ``hosts`` hosts.

    The IPv4 neighbour table is one table for every network namespace, with gc_thresh3 = 1024 entries by default.
    Each end of every lab link learns its peer (management bridge, rack bridges, fabric), about 4 entries per host;
    the 777-host twin needs ~3000, and past the limit new neighbours fail ("No buffer space available", BIRD's
    "No route to host"): sessions never come up. Raises gc_thresh1/2/3 to 4/8/16 entries per host where lower, and
    keeps the machine's values in ``NEIGH_SAVED`` (once) for :func:`restore_neighbour_limits`. Returns what was set.
    """
    wanted = {"gc_thresh1": 4 * hosts, "gc_thresh2": 8 * hosts, "gc_thresh3": 16 * hosts}
    current = {k: int((NEIGH_THRESH / k).read_text()) for k in wanted}
    changes = {k: v for k, v in wanted.items() if v > current[k]}
    if changes and not NEIGH_SAVED.exists():
        NEIGH_SAVED.write_text(json.dumps(current))
    for key in ("gc_thresh3", "gc_thresh2", "gc_thresh1"):  # thresh1 <= thresh2 <= thresh3 at every step
        if key in changes:
            (NEIGH_THRESH / key).write_text(str(changes[key]))
    return changes


def restore_neighbour_limits() -> bool:
    """Put the machine's ARP table limits back once no lab is left (no lab management bridge)."""
    if not NEIGH_SAVED.exists() or any(link.endswith("-mgmt") for link in root_links()):
        return False
    saved = json.loads(NEIGH_SAVED.read_text())
    for key in ("gc_thresh1", "gc_thresh2", "gc_thresh3"):
        if key in saved:
            (NEIGH_THRESH / key).write_text(str(saved[key]))
    NEIGH_SAVED.unlink()
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
