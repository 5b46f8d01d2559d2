"""iproute2 and process helpers. Every command the lab runs goes through :func:`run`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence


class LabError(RuntimeError):
    """An expected lab failure: reported without a traceback."""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 60, input: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input,
                              env=env, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        if check:
            raise LabError(f"timed out after {timeout}s: {' '.join(argv)}") from None
        return subprocess.CompletedProcess(list(argv), 124, exc.stdout or "", (exc.stderr or "") + "timeout")
    if check and proc.returncode != 0:
        raise LabError(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr.strip()}")
    return proc


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
