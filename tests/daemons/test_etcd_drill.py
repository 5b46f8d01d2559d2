"""DC-loss drill: the main and events etcd clusters of inventories/lab as real etcd processes.

Each of the six etcd VMs (and cp3, the client) gets its own network namespace named ``pvetcd-<pid>-<vm>``
with the VM's address from the lab site on ``eth0``; all of them hang off one bridge in a ``pvetcd-<pid>-fab``
namespace. The addresses sit in different rack subnets, so each takes a /15 mask (the lab's whole
198.18.0.0/15) and they share one L2 segment: no router, no default route, nothing leaves the namespaces.

The members run the rendered ``etcd.conf.yml`` with only file paths rewritten (data-dir and the PKI under
/etc/<cluster>/pki/ -> the PKI ``provisioner pki`` made in a temporary directory); addresses, ports, tokens,
timing and TLS settings stay as rendered. The client is kube-apiserver's identity: the apiserver-etcd-client
certificate, which both clusters must accept.

Drill: both clusters healthy with three members over TLS; kill dc1's members -> both still accept writes;
kill dc2's members -> both refuse writes. Every process, namespace and file is removed afterwards, also
after a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from provisioner.pipeline import compile_site
from provisioner.plan import EtcdCluster, EtcdMember
from provisioner.render import render
from tests.conftest import LAB, require_binary, require_root
from tests.helpers import run_cli

PREFIX = "pvetcd-"
MASK = 15  # 198.18.0.0/15: every lab address, one L2 segment
CLIENT_VM = "cp3"  # the API server that survives both DC losses
CMD_TIMEOUT = "3s"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=15)


def _remove_stale_namespaces() -> None:
    """Namespaces of earlier drills whose pytest process is gone (a SIGKILLed run leaves them)."""
    listing = _ip("-j", "netns", "list", check=False).stdout or "[]"
    for entry in json.loads(listing):
        name = entry.get("name", "")
        parts = name.split("-")
        if not name.startswith(PREFIX) or len(parts) < 3 or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            _ip("netns", "del", name, check=False)


@dataclass
class Drill:
    root: Path
    secrets: Path
    tag: str
    namespaces: list[str] = field(default_factory=list)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def ns(self, vm: str) -> str:
        return f"{PREFIX}{self.tag}-{vm}"

    def add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def attach(self, vm: str, address: str, index: int) -> None:
        name, fab = self.ns(vm), self.ns("fab")
        self.add_namespace(name)
        _ip("-n", fab, "link", "add", f"v{index}", "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("-n", fab, "link", "set", f"v{index}", "master", "br0", "up")
        _ip("-n", name, "addr", "add", f"{address}/{MASK}", "dev", "eth0")
        _ip("-n", name, "link", "set", "eth0", "up")

    def start(self, cluster: EtcdCluster, member: EtcdMember, rendered: str) -> None:
        conf = yaml.safe_load(rendered)
        pki = f"/etc/{cluster.name}/pki/"
        local = self.secrets / cluster.name / member.name
        for section in ("client-transport-security", "peer-transport-security"):
            for key in ("cert-file", "key-file", "trusted-ca-file"):
                path = conf[section][key]
                assert path.startswith(pki), f"{cluster.name}/{member.name}: {section}.{key} = {path}"
                conf[section][key] = str(local / path[len(pki):])
        assert conf["data-dir"] == cluster.data_dir
        conf["data-dir"] = str(self.root / "data" / cluster.name / member.name)
        conf["logger"] = "zap"
        (self.root / "data" / cluster.name).mkdir(parents=True, exist_ok=True)
        path = self.root / f"{cluster.name}-{member.name}.yml"
        path.write_text(yaml.safe_dump(conf))
        log = self.root / f"{cluster.name}-{member.name}.log"
        self.logs[member.name] = log
        with log.open("wb") as out:
            self.procs[member.name] = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(member.name), "etcd", "--config-file", str(path)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def kill(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)  # a DC outage: no graceful leader hand-over
            proc.wait(timeout=10)

    def etcdctl(self, endpoints: list[str], *args: str, timeout: str = CMD_TIMEOUT) -> subprocess.CompletedProcess:
        cp = self.secrets / "control-plane"
        cmd = ["ip", "netns", "exec", self.ns(CLIENT_VM), "etcdctl", f"--endpoints={','.join(endpoints)}",
               f"--cacert={cp / 'etcd' / 'ca.crt'}", f"--cert={cp / 'apiserver-etcd-client.crt'}",
               f"--key={cp / 'apiserver-etcd-client.key'}", "--dial-timeout=2s", f"--command-timeout={timeout}",
               *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                              env={**os.environ, "ETCDCTL_API": "3"})

    def log_tails(self) -> str:
        out = []
        for name, log in sorted(self.logs.items()):
            lines = log.read_text(errors="replace").splitlines()[-8:] if log.exists() else []
            out.append(f"--- {name} (rc={self.procs[name].poll()})\n" + "\n".join(lines))
        return "\n".join(out)

    def teardown(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for name in reversed(self.namespaces):
            _ip("netns", "del", name, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def drill():
    require_root()
    for binary in ("etcd", "etcdctl", "ip"):
        require_binary(binary)
    _remove_stale_namespaces()
    root = Path(tempfile.mkdtemp(prefix="pvetcd-"))
    d = Drill(root=root, secrets=root / "secrets", tag=str(os.getpid()))
    try:
        yield d
    finally:
        d.teardown()
        leftovers = [n for n in d.namespaces if Path(f"/run/netns/{n}").exists()]
        assert not leftovers, f"namespaces left behind: {leftovers}"
        assert not root.exists()


def _wait(predicate, seconds: float, what: str, drill: Drill):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last.returncode == 0:
            return last
        time.sleep(0.3)
    pytest.fail(f"{what} within {seconds}s: {last.stdout}{last.stderr}\n{drill.log_tails()}")


def test_dc_loss_drill(drill: Drill):
    started = time.monotonic()
    plan = compile_site(LAB).plan
    artifacts = render(plan)
    rc, out, err = run_cli("pki", str(LAB), "--out", str(drill.secrets))
    assert rc == 0, out + err

    drill.add_namespace(drill.ns("fab"))
    _ip("-n", drill.ns("fab"), "link", "add", "br0", "type", "bridge")
    _ip("-n", drill.ns("fab"), "link", "set", "br0", "up")
    client = next(v for v in plan.control_plane if v.name == CLIENT_VM)
    vms = [(m.name, str(m.address)) for c in plan.etcd_clusters for m in c.members]
    for index, (name, address) in enumerate([*vms, (client.name, str(client.address))]):
        drill.attach(name, address, index)

    for cluster in plan.etcd_clusters:
        for member in cluster.members:
            drill.start(cluster, member, artifacts[f"{cluster.name}/{member.name}/etcd.conf.yml"])

    # Both clusters healthy, three members each, over TLS with the apiserver's client certificate.
    for cluster in plan.etcd_clusters:
        endpoints = list(cluster.client_urls)
        _wait(lambda endpoints=endpoints: drill.etcdctl(endpoints, "endpoint", "health"), 30,
              f"{cluster.name} healthy", drill)
        listing = drill.etcdctl(endpoints[:1], "member", "list", "-w", "json")
        assert listing.returncode == 0, listing.stderr
        members = json.loads(listing.stdout)["members"]
        assert sorted((m["name"], m["peerURLs"][0]) for m in members) == sorted(
            (m.name, cluster.peer_url(m)) for m in cluster.members)
        assert sorted(m["clientURLs"][0] for m in members) == sorted(endpoints)
        assert drill.etcdctl(endpoints, "put", "/drill/start", cluster.name).returncode == 0
    healthy_at = time.monotonic() - started

    # Lose dc1: both clusters keep a quorum (2 of 3) and accept writes.
    lost: set[str] = set()
    for dc, expect_writes in ((plan.dcs[0], True), (plan.dcs[1], False)):
        lost.add(dc)
        for cluster in plan.etcd_clusters:
            for member in cluster.members:
                if member.dc == dc:
                    drill.kill(member.name)
        t0 = time.monotonic()
        for cluster in plan.etcd_clusters:
            alive = [cluster.client_url(m) for m in cluster.members if m.dc not in lost]
            key = f"/drill/after-{'-'.join(sorted(lost))}"
            if expect_writes:
                _wait(lambda alive=alive, key=key, c=cluster: drill.etcdctl(alive, "put", key, c.name), 20,
                      f"{cluster.name} accepts writes without {sorted(lost)}", drill)
                got = drill.etcdctl(alive, "get", key, "--print-value-only")
                assert got.returncode == 0 and got.stdout.strip() == cluster.name, got.stderr
            else:
                refused = drill.etcdctl(alive, "put", key, cluster.name, timeout="2s")
                assert refused.returncode != 0, f"{cluster.name} accepted a write with only {alive} left"
                assert refused.stderr.strip(), "etcdctl refused the write without saying why"
        print(f"after losing {sorted(lost)}: writes {'accepted' if expect_writes else 'refused'} "
              f"in {time.monotonic() - t0:.1f}s")
    print(f"drill: clusters healthy after {healthy_at:.1f}s, total {time.monotonic() - started:.1f}s")
