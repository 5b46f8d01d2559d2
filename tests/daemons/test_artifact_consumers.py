"""Daemons tier: the artifacts no routing daemon reads, consumed by what consumes them in production.

- every ``nodes/<host>/cni.conflist`` of both shipped sites is executed by the real CNI plugins (Debian's
  containernetworking-plugins), ADD then DEL, the way a container runtime runs a conflist (CNI spec 1.0:
  plugins in order with ``prevResult``, DEL in reverse), in a throwaway node and pod namespace, host-local's
  dataDir in a temporary directory and a real port mapping so portmap programs the packet filter;
- every YAML artifact is loaded with a loader that rejects duplicate keys (what ruamel.yaml and yamllint do);
- ``node-podcidrs.yaml`` is validated against the Kubernetes JSON schemas (strict: no unknown fields) of the
  site's Kubernetes minor version, shipped by the maintained PyPI package kubernetes-validate (schemas for
  v1.25 to v1.37, generated from the upstream OpenAPI); kubeadm's own kinds are not Kubernetes API objects
  and have no published JSON schema, so they are checked field by field against kubeadm v1beta4's documented
  shapes (tests/kubeadm_v1beta4.py).
- every anycast-healthchecker configuration is loaded and sanity-checked by anycast-healthchecker itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

import pytest
import yaml

from provisioner.lab.cni import CniError, CniRuntime, add, addresses, delete
from tests.conftest import EXAMPLE, LAB, require, require_binary, require_root
from tests.helpers import run_cli
from tests.kubeadm_v1beta4 import shape_problems
from tests.strict_yaml import DuplicateKeyError, load_all_strict

SITES = {"example": EXAMPLE, "lab": LAB}
WORKERS = 4  # each ADD/DEL mostly waits on the kernel (netlink, nftables)
PORT_MAPPING = {"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for name, site in SITES.items():
        dest = tmp_path_factory.mktemp("consumers") / name
        code, stdout, stderr = run_cli("render", str(site), "--out", str(dest))
        assert code == 0, f"render {name} failed ({code}):\n{stdout}\n{stderr}"
        out[name] = dest
    return out


def _ip(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=30)


def add_then_delete(conflist_path: Path, port_mapping: bool = True) -> str | None:
    """ADD then DEL one conflist in fresh namespaces; a message on any broken promise, else None. With
    ``port_mapping`` the runtime asks for a host port, so portmap programs (and on DEL removes) NAT rules."""
    conflist = json.loads(conflist_path.read_text())
    host = conflist_path.parent.name
    subnet = IPv4Network(conflist["plugins"][0]["ipam"]["ranges"][0][0]["subnet"])
    gateway = subnet.broadcast_address - 1
    tag = uuid.uuid4().hex[:8]
    node_ns, pod_ns = f"cnitest-{tag}-node", f"cnitest-{tag}-pod"
    _ip("netns", "add", node_ns)
    _ip("netns", "add", pod_ns)
    try:
        with tempfile.TemporaryDirectory(prefix="cni-ipam-") as data_dir:
            runtime = CniRuntime(container_id=f"test-{tag}", netns=f"/var/run/netns/{pod_ns}",
                                 wrap=("ip", "netns", "exec", node_ns),
                                 runtime_config={"portMappings": [PORT_MAPPING] if port_mapping else []},
                                 ipam_overrides={"dataDir": data_dir})
            try:
                result = add(conflist, runtime)
            except CniError as exc:
                return f"{host}: ADD: {exc}"
            ips = [IPv4Interface(a) for a in addresses(result)]
            if len(ips) != 1 or ips[0].ip not in subnet or ips[0].ip == gateway:
                return f"{host}: ADD gave {ips}, expected one pod address in {subnet} other than {gateway}"
            routes = _ip("-n", pod_ns, "-4", "route", "show", "default").stdout
            if f"via {gateway} dev eth0" not in routes:
                return f"{host}: pod default route is {routes.strip()!r}, expected via {gateway}"
            br0 = _ip("-n", node_ns, "-4", "-o", "addr", "show", "dev", "br0").stdout
            if f"{gateway}/{subnet.prefixlen}" not in br0:
                return f"{host}: br0 does not hold the gateway {gateway}: {br0.strip()!r}"
            forwarding = subprocess.run(["ip", "netns", "exec", node_ns, "sysctl", "-n", "net.ipv4.ip_forward"],
                                        capture_output=True, text=True).stdout.strip()
            if forwarding != "1":
                return f"{host}: the bridge plugin left net.ipv4.ip_forward={forwarding}"
            nat = subprocess.run(["ip", "netns", "exec", node_ns, "iptables-save", "-t", "nat"],
                                 capture_output=True, text=True).stdout
            if port_mapping and f"--dport {PORT_MAPPING['hostPort']}" not in nat:
                return f"{host}: portmap programmed no DNAT rule for the port mapping"
            try:
                delete(conflist, runtime, result)
            except CniError as exc:
                return f"{host}: DEL: {exc}"
            if "eth0" in _ip("-n", pod_ns, "link", "show").stdout:
                return f"{host}: DEL left eth0 in the pod namespace"
            leases = [p.name for p in Path(data_dir).rglob("*") if p.is_file() and p.name[0].isdigit()]
            if leases:
                return f"{host}: DEL left host-local leases {leases}"
    finally:
        _ip("netns", "del", pod_ns)
        _ip("netns", "del", node_ns)
    return None


@pytest.mark.parametrize("site", sorted(SITES))
def test_every_cni_conflist_adds_and_deletes_a_pod_with_the_real_plugins(rendered, site):
    require_root()
    for plugin in ("bridge", "host-local", "portmap"):
        require(Path(f"/usr/lib/cni/{plugin}").exists(),
                f"CNI plugin {plugin} is not installed (containernetworking-plugins; scripts/setup --system)")
    require_binary("iptables-save")
    files = sorted(rendered[site].glob("nodes/*/cni.conflist"))
    assert len(files) == {"example": 720, "lab": 12}[site]
    # Every conflist runs its whole chain. Like most pods, most ask for no host port; the first node of every
    # rack does, so portmap's packet-filter path runs once per rack (it is 3/4 of the time of one ADD/DEL).
    first_of_rack = {min(p for p in files if p.parent.name.rsplit("-", 1)[0] == rack)
                     for rack in {p.parent.name.rsplit("-", 1)[0] for p in files}}

    def one(path: Path) -> str | None:
        return add_then_delete(path, port_mapping=path in first_of_rack)

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        failures = [m for m in pool.map(one, files) if m]
    assert not failures, f"{len(failures)} of {len(files)} conflists failed:\n" + "\n".join(failures[:10])


def test_a_conflist_that_adds_the_default_route_twice_is_refused_by_the_bridge_plugin(rendered, tmp_path):
    """The bug this tier exists for: IPAM routes 0.0.0.0/0 next to isDefaultGateway fails every pod."""
    require_root()
    require(Path("/usr/lib/cni/bridge").exists(), "CNI plugins are not installed")
    src = sorted(rendered["lab"].glob("nodes/*/cni.conflist"))[0]
    broken = json.loads(src.read_text())
    broken["plugins"][0]["ipam"]["routes"] = [{"dst": "0.0.0.0/0"}]
    path = tmp_path / src.parent.name / "cni.conflist"
    path.parent.mkdir()
    path.write_text(json.dumps(broken))
    message = add_then_delete(path)
    assert message is not None and "ADD" in message and "file exists" in message.lower(), message


# --- YAML -------------------------------------------------------------------------------------------------

def yaml_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


@pytest.mark.parametrize("site", sorted(SITES))
def test_every_yaml_artifact_loads_without_duplicate_keys(rendered, site):
    files = yaml_files(rendered[site])
    assert any(p.name == "node-podcidrs.yaml" for p in files)
    problems = []
    for path in files:
        try:
            load_all_strict(path.read_text())
        except (DuplicateKeyError, yaml.YAMLError) as exc:
            problems.append(f"{path.relative_to(rendered[site])}: {exc}")
    assert not problems, "\n".join(problems[:10])


def test_the_strict_loader_rejects_a_repeated_key():
    with pytest.raises(DuplicateKeyError, match="zone"):
        load_all_strict("metadata:\n  labels:\n    zone: a\n    rack: b\n    zone: c\n")


def _k8s_version(site_dir: Path) -> str:
    version = (yaml.safe_load((site_dir / "site.yaml").read_text()).get("kubernetes") or {}).get("version", "v1.31.4")
    major, minor = version.lstrip("v").split(".")[:2]
    return f"{major}.{minor}.0"


@pytest.mark.parametrize("site", sorted(SITES))
def test_node_podcidrs_match_the_kubernetes_schema_of_the_sites_version(rendered, site):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = _k8s_version(SITES[site])
    docs = [d for d in load_all_strict((rendered[site] / "control-plane/node-podcidrs.yaml").read_text()) if d]
    assert len(docs) == {"example": 720, "lab": 12}[site]
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors[:10])


def test_the_kubernetes_schema_rejects_an_unknown_node_field():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    doc = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "spec": {"podCIDRz": "10.0.0.0/24"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, "1.31.0", strict=True)


@pytest.mark.parametrize("site", sorted(SITES))
def test_kubeadm_documents_have_only_documented_v1beta4_fields(rendered, site):
    files = [rendered[site] / "control-plane/kubeadm-config.yaml",
             *sorted(rendered[site].glob("control-plane/*/kubeadm-bootstrap.yaml"))]
    problems = []
    kinds = set()
    for path in files:
        for doc in load_all_strict(path.read_text()):
            if doc:
                kinds.add(doc.get("kind"))
                problems += [f"{path.name}: {p}" for p in shape_problems(doc)]
    assert {"ClusterConfiguration", "InitConfiguration", "JoinConfiguration"} <= kinds
    assert not problems, "\n".join(problems[:10])


# --- anycast-healthchecker --------------------------------------------------------------------------------

@pytest.mark.parametrize("site", sorted(SITES))
def test_every_health_checker_config_passes_anycast_healthcheckers_own_check(rendered, site, tmp_path):
    """``anycast-healthchecker --check`` loads the daemon and service files exactly as the daemon does; the
    BIRD include it will rewrite is pointed into tmp (the check creates it)."""
    binary = Path(sys.executable).with_name("anycast-healthchecker")
    require(binary.exists(), "anycast-healthchecker is not installed in this environment (scripts/setup)")
    hosts = [*rendered[site].glob("nodes/*"), *rendered[site].glob("control-plane/cp*")]
    hosts = sorted(hosts)[:: max(1, len(hosts) // 40)]  # the files differ only in the host name: a sample
    failures = []
    for host in hosts:
        conf = (host / "anycast-healthchecker.conf").read_text()
        work = tmp_path / host.name
        work.mkdir()
        main = work / "main.conf"
        main.write_text(conf.replace("/etc/bird/", f"{work}/").replace("/var/lib/anycast-healthchecker/", f"{work}/"))
        p = subprocess.run([str(binary), "--check", "-f", str(main), "-d", str(host / "anycast-healthchecker.d")],
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            failures.append(f"{host.name}: {(p.stdout + p.stderr).strip()[-400:]}")
    assert not failures, "\n".join(failures)
