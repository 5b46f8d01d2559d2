"""The stretched control plane as rendered: etcd member configs (main + events), kubeadm configs, etcd
placement rules, timing rejections and the fault-tolerance statement."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
import yaml

from provisioner.etcd_rules import etcd_problems
from provisioner.etcd_timing import Timing
from provisioner.fault_tolerance import cluster_lines, tolerance_lines
from provisioner.model import Site
from provisioner.pipeline import compile_site
from provisioner.plan import EtcdCluster, EtcdMember, Plan
from provisioner.render import render
from tests.conftest import EXAMPLE, LAB
from tests.helpers import run_cli

SITES = {"lab": LAB, "example": EXAMPLE}


@pytest.fixture(scope="module", params=sorted(SITES))
def rendered(request) -> tuple[Plan, dict[str, str]]:
    plan = compile_site(SITES[request.param]).plan
    return plan, render(plan)


def etcd_conf(artifacts: dict[str, str], cluster: EtcdCluster, member: EtcdMember) -> dict:
    return yaml.safe_load(artifacts[f"{cluster.name}/{member.name}/etcd.conf.yml"])


def cluster_config(text: str) -> dict:
    docs = [d for d in yaml.safe_load_all(text) if d]
    return next(d for d in docs if d["kind"] == "ClusterConfiguration")


def extra_args(section: dict) -> dict[str, str]:
    pairs = section["extraArgs"]
    assert all(set(p) == {"name", "value"} and isinstance(p["value"], str) for p in pairs)  # v1beta4 list form
    return {p["name"]: p["value"] for p in pairs}


# --- etcd member configs --------------------------------------------------------------------------------


def test_every_member_of_both_clusters_gets_a_config(rendered):
    plan, artifacts = rendered
    assert plan.etcd.name == "etcd" and plan.etcd_events.name == "etcd-events"
    for cluster in plan.etcd_clusters:
        assert len(cluster.members) == 3
        for m in cluster.members:
            assert f"{cluster.name}/{m.name}/etcd.conf.yml" in artifacts
    main_names = {m.name for m in plan.etcd.members}
    assert main_names.isdisjoint(m.name for m in plan.etcd_events.members)  # separate VMs


def test_member_identity_urls_and_initial_cluster(rendered):
    plan, artifacts = rendered
    for cluster in plan.etcd_clusters:
        confs = {m.name: etcd_conf(artifacts, cluster, m) for m in cluster.members}
        advertised = {name: c["initial-advertise-peer-urls"] for name, c in confs.items()}
        for m in cluster.members:
            c = confs[m.name]
            peer = f"https://{m.address}:{cluster.peer_port}"
            client = f"https://{m.address}:{cluster.client_port}"
            assert c["name"] == m.name
            assert c["listen-peer-urls"] == peer == c["initial-advertise-peer-urls"]
            assert c["advertise-client-urls"] == client
            assert c["listen-client-urls"].split(",") == [client, f"https://127.0.0.1:{cluster.client_port}"]
            assert c["initial-cluster-state"] == "new"
            # initial-cluster names every member with exactly the peer URL that member advertises
            entries = dict(e.split("=", 1) for e in c["initial-cluster"].split(","))
            assert entries == advertised
            assert all(u.startswith("https://") for u in c["listen-client-urls"].split(","))


def test_clusters_are_separate(rendered):
    plan, artifacts = rendered
    main, events = ([etcd_conf(artifacts, c, m) for m in c.members] for c in plan.etcd_clusters)
    assert len({c["initial-cluster-token"] for c in main}) == 1
    assert len({c["initial-cluster-token"] for c in events}) == 1
    assert main[0]["initial-cluster-token"] != events[0]["initial-cluster-token"]
    assert main[0]["initial-cluster-token"] == f"{plan.name}-etcd"
    assert {c["data-dir"] for c in main} == {"/var/lib/etcd"}
    assert {c["data-dir"] for c in events} == {"/var/lib/etcd-events"}
    # the same ports on separate VMs: documented in docs/control-plane.md
    assert {c["advertise-client-urls"].rsplit(":", 1)[1] for c in main + events} == {"2379"}
    assert {c["initial-advertise-peer-urls"].rsplit(":", 1)[1] for c in main + events} == {"2380"}


def test_timing_storage_and_compaction(rendered):
    plan, artifacts = rendered
    rtt = plan.site.etcd.inter_dc_rtt_ms
    for cluster in plan.etcd_clusters:
        for m in cluster.members:
            c = etcd_conf(artifacts, cluster, m)
            hb, el = c["heartbeat-interval"], c["election-timeout"]
            assert isinstance(hb, int) and isinstance(el, int)
            assert 0.5 * rtt <= hb <= 1.5 * rtt
            assert el >= 10 * rtt and el >= 5 * hb and el <= 50_000
            assert (hb, el) == (cluster.timing.heartbeat_ms, cluster.timing.election_ms)
            assert c["snapshot-count"] == plan.site.etcd.snapshot_count
            assert 0 < c["quota-backend-bytes"] <= 8 * 1024**3
            assert c["auto-compaction-mode"] == "periodic"
            assert c["auto-compaction-retention"] == plan.site.etcd.auto_compaction_retention


def test_tls_with_client_certificate_auth(rendered):
    plan, artifacts = rendered
    for cluster in plan.etcd_clusters:
        pki = f"/etc/{cluster.name}/pki"
        for m in cluster.members:
            c = etcd_conf(artifacts, cluster, m)
            for section, kind in (("client-transport-security", "server"), ("peer-transport-security", "peer")):
                s = c[section]
                assert s["client-cert-auth"] is True
                assert s["auto-tls"] is False
                assert s["cert-file"] == f"{pki}/{kind}.crt"
                assert s["key-file"] == f"{pki}/{kind}.key"
                assert s["trusted-ca-file"] == f"{pki}/ca.crt"


def test_lab_rendered_values_exact():
    plan = compile_site(LAB).plan
    c = yaml.safe_load(render(plan)["etcd/etcd2/etcd.conf.yml"])
    assert c["initial-cluster"] == ("etcd1=https://198.18.12.201:2380,etcd2=https://198.18.22.201:2380,"
                                    "etcd3=https://198.18.32.201:2380")
    assert (c["heartbeat-interval"], c["election-timeout"]) == (100, 1000)


# --- kubeadm --------------------------------------------------------------------------------------------


def test_kubeadm_cluster_configuration(rendered):
    plan, artifacts = rendered
    cfg = cluster_config(artifacts["control-plane/kubeadm-config.yaml"])
    assert cfg["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert cfg["controlPlaneEndpoint"] == f"{plan.api_address}:6443"
    assert cfg["kubernetesVersion"] == plan.site.kubernetes.version
    assert cfg["clusterName"] == plan.site.kubernetes.cluster_name
    assert cfg["networking"]["podSubnet"] == ",".join(str(p) for p in plan.pod_pools)
    assert cfg["networking"]["serviceSubnet"] == str(plan.service_cidr)
    assert cfg["networking"]["dnsDomain"] == plan.site.kubernetes.dns_domain
    ext = cfg["etcd"]["external"]
    assert "local" not in cfg["etcd"]
    assert ext["endpoints"] == [f"https://{m.address}:{plan.etcd.client_port}" for m in plan.etcd.members]
    assert ext["caFile"] == "/etc/kubernetes/pki/etcd/ca.crt"
    assert ext["certFile"] == "/etc/kubernetes/pki/apiserver-etcd-client.crt"
    assert ext["keyFile"] == "/etc/kubernetes/pki/apiserver-etcd-client.key"


def test_events_override_and_controller_manager(rendered):
    plan, artifacts = rendered
    cfg = cluster_config(artifacts["control-plane/kubeadm-config.yaml"])
    override = extra_args(cfg["apiServer"])["etcd-servers-overrides"]
    servers = ";".join(f"https://{m.address}:{plan.etcd_events.client_port}" for m in plan.etcd_events.members)
    assert override == f"/events#{servers}"
    group, urls = override.split("#")
    assert group == "/events" and len(urls.split(";")) == 3 and "," not in urls
    assert extra_args(cfg["controllerManager"]) == {"allocate-node-cidrs": "false"}


def test_cert_sans_cover_api_address_and_control_plane(rendered):
    plan, artifacts = rendered
    sans = cluster_config(artifacts["control-plane/kubeadm-config.yaml"])["apiServer"]["certSANs"]
    assert str(plan.api_address) in sans
    for vm in plan.control_plane:
        assert str(vm.address) in sans and vm.name in sans
    assert len(sans) == len(set(sans))


def test_bootstrap_pieces_per_control_plane_vm(rendered):
    plan, artifacts = rendered
    site_cfg = cluster_config(artifacts["control-plane/kubeadm-config.yaml"])
    first, *others = plan.control_plane
    docs = [d for d in yaml.safe_load_all(artifacts[f"control-plane/{first.name}/kubeadm-bootstrap.yaml"]) if d]
    assert [d["kind"] for d in docs] == ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"]
    init, cluster, _kubelet = docs
    assert cluster == site_cfg  # the same document, not a second copy to drift
    assert init["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert init["localAPIEndpoint"] == {"advertiseAddress": str(first.address), "bindPort": 6443}
    assert init["nodeRegistration"]["name"] == first.name
    assert {"name": "node-ip", "value": str(first.address)} in init["nodeRegistration"]["kubeletExtraArgs"]
    assert others
    for vm in others:
        docs = [d for d in yaml.safe_load_all(artifacts[f"control-plane/{vm.name}/kubeadm-bootstrap.yaml"]) if d]
        assert [d["kind"] for d in docs] == ["JoinConfiguration"]
        join = docs[0]
        assert join["apiVersion"] == "kubeadm.k8s.io/v1beta4"
        assert join["controlPlane"]["localAPIEndpoint"] == {"advertiseAddress": str(vm.address), "bindPort": 6443}
        assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == f"{first.address}:6443"
        assert join["nodeRegistration"]["name"] == vm.name


def test_no_secret_values_in_rendered_control_plane(rendered):
    _plan, artifacts = rendered
    for path, text in artifacts.items():
        if path.startswith(("control-plane/", "etcd/", "etcd-events/")):
            assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text
            if "kubeadm" not in path:
                continue
            for line in text.splitlines():
                if line.strip().startswith(("token:", "- token:", "certificateKey:", "caCertHashes:")):
                    assert "__KUBEADM_" in line, line


# --- placement rules and timing rejections ---------------------------------------------------------------


def _edit_site(site_dir: Path, edit) -> Path:
    path = site_dir / "site.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return site_dir


def _problems(site_dir: Path) -> list[tuple[tuple, str]]:
    """The etcd rules alone, on a schema-valid site (load_site would stop at the first rule that fires)."""
    site = Site.model_validate(yaml.safe_load((site_dir / "site.yaml").read_text()))
    return list(etcd_problems(site))


def test_good_sites_have_no_etcd_problems():
    for path in SITES.values():
        assert _problems(path) == []


def test_dc_majority_rejected(site_copy):
    def edit(data):
        data["vms"]["etcd"][1].update(dc="dc1", rack="dc1-r1", address="198.18.11.210")

    problems = _problems(_edit_site(site_copy("lab"), edit))
    assert len(problems) == 1
    loc, message = problems[0]
    assert loc == ("vms", "etcd", 1, "dc")
    assert "dc1 holds 2 of 3 main etcd members (etcd1, etcd2), a majority" in message


def test_shared_rack_rejected(site_copy):
    def edit(data):
        events = data["vms"]["etcd_events"]
        events.append({"name": "events4", "dc": "dc1", "rack": "dc1-r1", "address": "198.18.11.203"})
        events.append({"name": "events5", "dc": "dc2", "rack": "dc2-r2", "address": "198.18.22.203"})

    problems = _problems(_edit_site(site_copy("lab"), edit))
    assert problems == [(("vms", "etcd_events", 3, "rack"),
                         "events etcd members events1 and events4 share rack dc1-r1; "
                         "put each member of a cluster in its own rack")]


def test_etcd_rules_reach_the_cli(site_copy):
    """Wired into validate.site_problems: exit 2, file:line and field, nothing written."""
    def edit(data):
        data["vms"]["etcd_events"][2].update(dc="dc2", rack="dc2-r2", address="198.18.22.202")

    site_dir = _edit_site(site_copy("lab"), edit)
    rc, _out, err = run_cli("render", str(site_dir), "--out", str(site_dir.parent / "out"))
    assert rc == 2
    assert "site.yaml:" in err and "events etcd VM events3: dc:" in err and "a majority" in err
    assert not (site_dir.parent / "out").exists()


@pytest.mark.parametrize(("etcd", "expected"), [
    ({"inter_dc_rtt_ms": 100, "heartbeat_interval_ms": 10}, "heartbeat 10 ms must be 0.5-1.5x the inter-DC RTT"),
    ({"inter_dc_rtt_ms": 100, "heartbeat_interval_ms": 150, "election_timeout_ms": 700},
     "election timeout 700 ms must be at least 10x the RTT (1000 ms)"),
    ({"inter_dc_rtt_ms": 100, "heartbeat_interval_ms": 150, "election_timeout_ms": 700},
     "must be at least 5x the heartbeat (750 ms)"),
    ({"inter_dc_rtt_ms": 5000, "election_timeout_ms": 60000}, "above etcd's maximum of 50000 ms"),
    ({"inter_dc_rtt_ms": 100, "quota_backend_bytes": 16 * 1024**3}, "above etcd's suggested maximum of 8 GiB"),
])
def test_bad_timing_rejected_with_exit_2(site_copy, etcd, expected):
    site_dir = _edit_site(site_copy("lab"), lambda data: data.update(etcd=etcd))
    rc, _out, err = run_cli("render", str(site_dir), "--out", str(site_dir.parent / "out"))
    assert rc == 2
    assert expected in err
    assert "site.yaml:" in err and "etcd." in err
    assert not (site_dir.parent / "out").exists()


# --- fault tolerance ------------------------------------------------------------------------------------


def _cluster(layout: list[tuple[str, str]]) -> EtcdCluster:
    members = tuple(EtcdMember(f"m{i}", dc, rack, IPv4Address(f"198.18.0.{i + 1}"))
                    for i, (dc, rack) in enumerate(layout))
    return EtcdCluster(name="etcd", token="t", members=members, client_port=2379, peer_port=2380,
                       timing=Timing(100, 1000), snapshot_count=10000, quota_backend_bytes=1,
                       auto_compaction_retention="1h", data_dir="/var/lib/etcd")


def test_tolerance_of_the_lab():
    lines = tolerance_lines(compile_site(LAB).plan)
    assert lines[0] == "etcd: 3 members (dc1: 1, dc2: 1, dc3: 1), quorum 2; survives the loss of any one DC"
    assert "etcd: does not survive the loss of two DCs (quorum lost)" in lines
    assert any(line.startswith("etcd-events: 3 members") and line.endswith("any one DC") for line in lines)


def test_tolerance_is_computed_not_assumed():
    dcs = ("dc1", "dc2", "dc3")
    bad = cluster_lines(_cluster([("dc1", "a"), ("dc1", "b"), ("dc2", "c")]), dcs)
    assert "does NOT survive the loss of dc1" in bad[0]
    five = cluster_lines(_cluster([(f"dc{i}", f"r{i}") for i in range(1, 6)]),
                         ("dc1", "dc2", "dc3", "dc4", "dc5"))
    assert "survives the loss of any one DC" in five[0]
    assert "etcd: survives the loss of any two DCs" in five
    shared = cluster_lines(_cluster([("dc1", "a"), ("dc1", "a"), ("dc2", "c")]), dcs)
    assert "does NOT survive the loss of rack a" in shared[-1]
