"""Pre-flight: before anything changes, check every targeted host over SSH (paramiko, in parallel).

1. The host key must match known_hosts (``RejectPolicy``). ``accept_new`` (``--accept-new-host-keys``, for a
   first bootstrap only) records keys of hosts that are not in known_hosts yet; a *changed* key is always
   refused.
2. CPU vendor (``vendor_id`` in /proc/cpuinfo) is the model's.
3. Physical cores equal the model's: unique (physical id, core id) pairs in /proc/cpuinfo (SMT siblings
   share a pair, so hyper-threads do not count).
4. Memory is at least the model's, less ``MEMORY_TOLERANCE``: ``MemTotal`` in /proc/meminfo is the RAM the
   kernel manages, i.e. installed RAM minus firmware-reserved ranges, the kernel image and early
   reservations (crashkernel, memmap). That is typically 1-3 % below the DIMM total on large servers, so a
   box passes with ``MemTotal >= memory_gib * (1 - 0.04)``; a missing DIMM (1/16 of 512 GiB = 6 %) fails.
5. The underlay address(es) of the host are configured on an interface (``ip -o -4 addr``).
6. The daemon the host needs is installed: BIRD (nodes, control-plane VMs), FRR (switches), etcd (etcd VMs).

Connection parameters (address, port, user, key, known_hosts file) come from the same Ansible inventories
the playbooks use, so pre-flight checks exactly the hosts Ansible will talk to.
"""

from __future__ import annotations

import getpass
import os
import shlex
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..plan import Plan

MEMORY_TOLERANCE = 0.04
SEPARATOR = "@@provisioner-preflight@@"
BINARIES = ("bird", "birdc", "vtysh", "etcd", "etcdctl")
PROBE = "; ".join([
    "cat /proc/cpuinfo", f"echo {SEPARATOR}", "cat /proc/meminfo", f"echo {SEPARATOR}",
    "ip -o -4 addr show", f"echo {SEPARATOR}",
    "for b in " + " ".join(BINARIES) + "; do { command -v $b || test -x /usr/sbin/$b; } >/dev/null 2>&1 "
    "&& echo $b; done",
])


@dataclass(frozen=True)
class Expect:
    """What the model says about a host."""

    kind: str  # node | control_plane | etcd | etcd_events | tor | spine
    cpu_vendor: str | None = None
    cores: int | None = None
    memory_gib: int | None = None
    underlay: tuple[str, ...] = ()  # address/prefixlen
    binaries: tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    host: str
    address: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    expect: Expect = Expect("node")


@dataclass(frozen=True)
class Facts:
    cpu_vendor: str | None
    cores: int
    threads: int
    mem_kib: int
    addresses: frozenset[str]
    binaries: frozenset[str]


@dataclass
class HostResult:
    host: str
    facts: Facts | None = None
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (check, expected, actual)
    new_host_key: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


# --- parsing ------------------------------------------------------------------------------------------


def _fields(block: str) -> dict[str, str]:
    out = {}
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def parse_cpuinfo(text: str) -> tuple[str | None, int, int]:
    """(vendor, physical cores, logical CPUs) from /proc/cpuinfo."""
    vendor = None
    cores: set[tuple[str, str]] = set()
    threads = 0
    for block in text.split("\n\n"):
        f = _fields(block)
        if "processor" not in f:
            continue
        threads += 1
        vendor = vendor or f.get("vendor_id")
        if "core id" in f:
            cores.add((f.get("physical id", "0"), f["core id"]))
        else:  # no topology (some hypervisors): every logical CPU is a core
            cores.add((f.get("physical id", "0"), f"cpu{f['processor']}"))
    return vendor, len(cores), threads


def parse_meminfo(text: str) -> int:
    """MemTotal in KiB."""
    value = _fields(text).get("MemTotal", "0 kB").split()
    return int(value[0]) if value and value[0].isdigit() else 0


def parse_addresses(text: str) -> frozenset[str]:
    """``address/prefixlen`` of every IPv4 address in ``ip -o -4 addr show``."""
    out = set()
    for line in text.splitlines():
        parts = line.split()
        if "inet" in parts:
            i = parts.index("inet")
            if i + 1 < len(parts):
                out.add(parts[i + 1])
    return frozenset(out)


def parse_probe(text: str) -> Facts:
    parts = [*text.split(SEPARATOR), "", "", "", ""][:4]
    vendor, cores, threads = parse_cpuinfo(parts[0])
    return Facts(cpu_vendor=vendor, cores=cores, threads=threads, mem_kib=parse_meminfo(parts[1]),
                 addresses=parse_addresses(parts[2]), binaries=frozenset(parts[3].split()))


def evaluate(expect: Expect, facts: Facts) -> list[tuple[str, str, str]]:
    """Mismatches between the model and a host: (check, expected, actual)."""
    problems = []
    if expect.cpu_vendor and facts.cpu_vendor != expect.cpu_vendor:
        problems.append(("cpu vendor", expect.cpu_vendor, str(facts.cpu_vendor)))
    if expect.cores is not None and facts.cores != expect.cores:
        problems.append(("physical cores", str(expect.cores), f"{facts.cores} ({facts.threads} threads)"))
    if expect.memory_gib is not None:
        need_kib = expect.memory_gib * 1024 * 1024 * (1 - MEMORY_TOLERANCE)
        if facts.mem_kib < need_kib:
            problems.append(("memory", f">= {expect.memory_gib} GiB (-{MEMORY_TOLERANCE:.0%})",
                             f"{facts.mem_kib / 1024 / 1024:.1f} GiB"))
    for addr in expect.underlay:
        if addr not in facts.addresses:
            have = ", ".join(sorted(facts.addresses)) or "none"
            problems.append(("underlay address", addr, f"not configured (have {have})"))
    for b in expect.binaries:
        if b not in facts.binaries:
            problems.append(("software", f"{b} installed", "missing"))
    return problems


# --- what the model expects ---------------------------------------------------------------------------


def expectations(plan: Plan) -> dict[str, Expect]:
    out: dict[str, Expect] = {}
    for n in plan.nodes:
        hw = n.hardware
        out[n.hostname] = Expect("node", hw.cpu_vendor, hw.cores, hw.memory_gib,
                                 (f"{n.address}/{n.prefixlen}",), ("bird", "birdc"))
    vm_hw = {vm.name: vm.hardware for role in ("control_plane", "etcd", "etcd_events")
             for vm in getattr(plan.site.vms, role)}
    for v in plan.vms:
        vhw = plan.site.hardware.get(vm_hw.get(v.name) or "")
        binaries = ("bird", "birdc") if v.role == "control_plane" else ("etcd", "etcdctl")
        out[v.name] = Expect(v.role, vhw.cpu_vendor if vhw else None, vhw.cores if vhw else None,
                             vhw.memory_gib if vhw else None, (f"{v.address}/{v.prefixlen}",), binaries)
    for t in plan.tors:
        underlay = [f"{t.address}/{t.subnet.prefixlen}"]
        underlay += [f"{s.a.address}/{s.subnet.prefixlen}" for s in t.uplinks]
        out[t.name] = Expect("tor", underlay=tuple(underlay), binaries=("vtysh",))
    for s in plan.spines:
        underlay = [f"{x.b.address}/{x.subnet.prefixlen}" for x in s.downlinks]
        underlay += [f"{x.local(s.name).address}/{x.subnet.prefixlen}" for x in s.peers]
        out[s.name] = Expect("spine", underlay=tuple(underlay), binaries=("vtysh",))
    return out


def ssh_option(args: str, name: str) -> str | None:
    """The value of ``-o Name=value`` (or ``-oName=value``, ``-o Name value``) in an ssh argument string."""
    words = shlex.split(args or "")
    found = None
    for i, w in enumerate(words):
        opt = None
        if w == "-o" and i + 1 < len(words):
            opt = words[i + 1]
        elif w.startswith("-o") and len(w) > 2:
            opt = w[2:]
        if opt is None:
            continue
        key, _, value = opt.replace("=", " ", 1).partition(" ")
        if key.lower() == name.lower():
            found = value.strip()
    return found


def targets(inventories: list[Path], hosts: Iterable[str], plan: Plan) -> list[Target]:
    """Connection parameters of ``hosts`` from the Ansible inventories (the rendered one plus overlays)."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=[str(p) for p in inventories])
    vm = VariableManager(loader=loader, inventory=inv)
    expect = expectations(plan)
    out = []
    for name in hosts:
        host = inv.get_host(name)
        hv: dict[str, Any] = vm.get_vars(host=host) if host is not None else {}

        def var(key: str, default: Any = None, hv: dict[str, Any] = hv) -> Any:
            value = hv.get(key, default)
            if isinstance(value, str) and "{{" in value:
                value = Templar(loader=loader, variables=hv).template(value)
            return value

        args = " ".join(str(var(k, "") or "") for k in ("ansible_ssh_common_args", "ansible_ssh_extra_args",
                                                          "ansible_ssh_args"))
        known = ssh_option(args, "UserKnownHostsFile") or "~/.ssh/known_hosts"
        key = var("ansible_ssh_private_key_file") or var("ansible_private_key_file")
        out.append(Target(
            host=name, address=str(var("ansible_host", name)), port=int(var("ansible_port", 22) or 22),
            user=str(var("ansible_user", getpass.getuser())), key_file=str(key) if key else None,
            known_hosts=str(known).split()[0], expect=expect.get(name, Expect("unknown")),
        ))
    return out


# --- probing ------------------------------------------------------------------------------------------


class KnownHosts:
    """The known_hosts files of one pre-flight, parsed once and shared by every probe thread.

    Parsing per connection is quadratic (paramiko merges each line with a lookup), about 27 ms at 150 hosts and
    ten times that at 720, all of it under the GIL. Keys accepted with ``accept_new`` are collected here and
    written once by ``save()``: one write per file, so concurrent probes cannot overwrite each other's keys.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parsed: dict[str, Any] = {}
        self._new: dict[str, list[tuple[str, Any]]] = {}

    def _keys(self, path: str) -> Any:
        import paramiko

        with self._lock:
            if path not in self._parsed:
                keys = paramiko.HostKeys()
                if os.path.exists(path):
                    keys.load(path)
                self._parsed[path] = keys
            return self._parsed[path]

    def client(self, target: Target, accept_new: bool) -> Any:
        """An SSHClient that knows only this host's recorded keys (so it negotiates their key type)."""
        import paramiko

        path = os.path.expanduser(target.known_hosts)
        name = target.address if target.port == 22 else f"[{target.address}]:{target.port}"
        client = paramiko.SSHClient()
        for key_type, key in (self._keys(path).lookup(name) or {}).items():
            client.get_host_keys().add(name, key_type, key)
        if not accept_new:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            return client
        store = self

        class AcceptNew(paramiko.MissingHostKeyPolicy):
            """Record the key of a host not in known_hosts (a changed key never gets here)."""

            def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
                with store._lock:
                    store._new.setdefault(path, []).append((hostname, key))

        client.set_missing_host_key_policy(AcceptNew())
        return client

    def save(self) -> None:
        """Append the accepted keys to their files (re-read first: another tool may have written since)."""
        import paramiko

        for path, entries in self._new.items():
            keys = paramiko.HostKeys()
            if os.path.exists(path):
                keys.load(path)
            for hostname, key in entries:
                keys.add(hostname, key.get_name(), key)
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            keys.save(path)
        self._new.clear()


def probe(target: Target, accept_new: bool = False, timeout: float = 15.0,
          known: KnownHosts | None = None, attempts: int = 2) -> HostResult:
    """Probe one host. A timeout is retried (``attempts`` in all): one slow answer from a loaded host must
    not refuse a rollout, while a dead host still does, after ``attempts * timeout`` seconds."""
    import paramiko

    known = known or KnownHosts()
    result = HostResult(target.host)
    where = f"{target.user}@{target.address}:{target.port}"
    for attempt in range(1, attempts + 1):
        result.problems = []
        client = known.client(target, accept_new)
        try:
            client.connect(target.address, port=target.port, username=target.user, key_filename=target.key_file,
                           timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                           allow_agent=target.key_file is None, look_for_keys=target.key_file is None)
            _stdin, stdout, _stderr = client.exec_command(PROBE, timeout=timeout)
            text = stdout.read().decode("utf-8", "replace")
            result.facts = parse_probe(text)
            result.problems = evaluate(target.expect, result.facts)
        except paramiko.BadHostKeyException as exc:
            result.problems.append(("host key", f"{exc.expected_key.get_name()} {exc.expected_key.fingerprint}",
                                    f"CHANGED: {exc.key.get_name()} {exc.key.fingerprint}"))
        except paramiko.SSHException as exc:
            msg = str(exc)
            if "not found in known_hosts" in msg:
                result.problems.append(("host key", f"in {target.known_hosts}",
                                        "unknown host (first bootstrap: --accept-new-host-keys)"))
            else:
                result.problems.append(("ssh", where, msg))
        except TimeoutError:
            result.problems.append(("ssh", where, f"unreachable: no answer within {timeout:g} s "
                                                  f"({attempt} attempt{'s' if attempt > 1 else ''})"))
            continue
        except OSError as exc:
            result.problems.append(("ssh", where, f"unreachable: {str(exc) or type(exc).__name__}"))
        finally:
            client.close()
        break
    return result


def run(targets_: list[Target], accept_new: bool = False, workers: int = 32) -> list[HostResult]:
    """Probe every target in parallel; results in the order of ``targets_``."""
    if not targets_:
        return []
    known = KnownHosts()
    with ThreadPoolExecutor(max_workers=min(workers, len(targets_))) as pool:
        results = list(pool.map(lambda t: probe(t, accept_new, known=known), targets_))
    known.save()
    return results


def mismatch_rows(results: list[HostResult]) -> list[tuple[str, str, str, str]]:
    return [(r.host, check, expected, actual) for r in results for check, expected, actual in r.problems]
