"""A hostile string in site.yaml can never inject a statement into a generated config.

Every field whose value reaches a BIRD, FRR, YAML or JSON template is fed payloads that would close
a string or a block and start a new statement (``"; }`` + newline + ``protocol ...``, an FRR
``neighbor`` line, a Jinja expression). Each must fail at load: exit 2, the offending field named,
nothing rendered.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import LAB
from tests.helpers import field_in_object, run_cli

LAB_TEXT = (LAB / "site.yaml").read_text()

PAYLOADS = {
    "bird-close-and-protocol": 'x"; }\nprotocol static evil { ipv4; route 0.0.0.0/0 blackhole; }\n#',
    "frr-newline-neighbor": "x\n neighbor 192.0.2.66 remote-as 64666",
    "bird-close-filter": "x; } filter evil { accept; }",
    "jinja": "{{ lookup('env', 'HOME') }}",
    "space-word": "x password hunter2",
}

# (id, text in the lab site, replacement with {v} for the hostile value, field path the error must name)
FIELDS = [
    ("site-name", "site: lab\n", "site: {v}\n", "site"),
    ("dc-name", "  - name: dc1\n", "  - name: {v}\n", "dcs[0].name"),
    ("rack-name", "      - name: dc1-r1\n", "      - name: {v}\n", "dcs[0].racks[0].name"),
    ("node-hostname", "hostname: dc1-r1-n1,", "hostname: {v},", "dcs[0].racks[0].nodes[0].hostname"),
    ("node-address", "address: 198.18.11.1,", "address: {v},", "dcs[0].racks[0].nodes[0].address"),
    ("node-serial", "hardware: amd-128c-512g, labels: {example.com/pool: general}}",
     "hardware: amd-128c-512g, serial: {v}, labels: {{example.com/pool: general}}}}",
     "dcs[0].racks[0].nodes[0].serial"),
    ("label-key", "{example.com/pool: general}", "{{{v}: general}}", "dcs[0].racks[0].nodes[0].labels"),
    ("label-value", "{example.com/pool: general}", "{{example.com/pool: {v}}}",
     "dcs[0].racks[0].nodes[0].labels"),
    ("tor-name", "tor: {name: dc1-r1-tor,", "tor: {{name: {v},", "dcs[0].racks[0].tor.name"),
    ("tor-router-id", "router_id: 198.18.11.254}", "router_id: {v}}}", "dcs[0].racks[0].tor.router_id"),
    ("spine-name", "{name: dc1-spine1,", "{{name: {v},", "dcs[0].spines[0].name"),
    ("vm-name", "{name: cp1,", "{{name: {v},", "vms.control_plane[0].name"),
    ("pool-name", "{name: pods,", "{{name: {v},", "address_plan.pod_pools[0].name"),
    ("anycast", "anycast: [198.19.200.0/24]", "anycast: [{v}]", "address_plan.anycast[0]"),
    ("site-password", "bgp:\n  hold_time: 9", "bgp:\n  password: {v}\n  hold_time: 9", "bgp.password"),
    ("rack-password", "        asn: 65101\n", "        asn: 65101\n        bgp_password: {v}\n",
     "dcs[0].racks[0].bgp_password"),
    ("cluster-name", "bgp:\n", "kubernetes:\n  cluster_name: {v}\nbgp:\n", "kubernetes.cluster_name"),
    ("dns-domain", "bgp:\n", "kubernetes:\n  dns_domain: {v}\nbgp:\n", "kubernetes.dns_domain"),
    ("k8s-version", "bgp:\n", "kubernetes:\n  version: {v}\nbgp:\n", "kubernetes.version"),
    ("etcd-retention", "etcd:\n", "etcd:\n  auto_compaction_retention: {v}\n", "etcd.auto_compaction_retention"),
]


def hostile_site(old: str, new: str, value: str) -> str:
    assert old in LAB_TEXT, f"{old!r} is not in the lab site"
    return LAB_TEXT.replace(old, new.format(v=json.dumps(value)), 1)  # a JSON string is a YAML string


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
@pytest.mark.parametrize(("old", "new", "field"), [f[1:] for f in FIELDS], ids=[f[0] for f in FIELDS])
def test_hostile_value_is_rejected_and_nothing_rendered(site_copy, tmp_path, old, new, field, payload):
    site = site_copy("lab")
    (site / "site.yaml").write_text(hostile_site(old, new, payload))
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("render", str(site), "--out", str(out))
    assert code == 2, f"exit {code}\n{stdout}\n{stderr}"
    assert f" {field_in_object(field)}" in stderr and "site.yaml:" in stderr, (
        f"the error does not name {field}:\n{stderr}")
    assert "Traceback" not in stderr
    assert not out.exists() or not any(out.rglob("*")), "something was rendered"


@pytest.mark.parametrize(("old", "new", "field"), [f[1:] for f in FIELDS], ids=[f[0] for f in FIELDS])
def test_the_same_edit_with_a_benign_value_renders(site_copy, tmp_path, old, new, field):
    """Control: the edit itself is well-formed, so the rejection above is about the value."""
    benign = {"node-address": "198.18.11.9", "tor-router-id": "198.18.11.250", "anycast": "198.19.202.0/24",
              "k8s-version": "v1.31.5", "etcd-retention": "2h", "dns-domain": "cluster.example",
              "label-key": "example.com/ok", "label-value": "ok", "site-password": "BGP_PW",
              "rack-password": "BGP_RACK_PW", "node-serial": "SN123"}
    name = next(f[0] for f in FIELDS if f[1] == old and f[2] == new)
    site = site_copy("lab")
    text = hostile_site(old, new, benign.get(name, f"ok-{name}"))
    if name == "dc-name":  # VMs refer to the DC by name
        text = text.replace("dc: dc1,", 'dc: "ok-dc-name",')
    if name == "rack-name":
        text = text.replace("rack: dc1-r1,", 'rack: "ok-rack-name",')
    (site / "site.yaml").write_text(text)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("render", str(site), "--out", str(out))
    assert code == 0, f"exit {code}\n{stdout}\n{stderr}"


# A valid value plus only a trailing newline: Python's `$` matches before a final "\n", so this is the
# payload a `re.match(r"^...$")` check lets through. Every one must still be refused.
TRAILING_NEWLINE = [
    ("site: lab\n", "site: {v}\n", "lab", "site"),
    ("  - name: dc1\n", "  - name: {v}\n", "dc1", "dcs[0].name"),
    ("hostname: dc1-r1-n1,", "hostname: {v},", "dc1-r1-n1", "dcs[0].racks[0].nodes[0].hostname"),
    ("tor: {name: dc1-r1-tor,", "tor: {{name: {v},", "dc1-r1-tor", "dcs[0].racks[0].tor.name"),
    ("{name: cp1,", "{{name: {v},", "cp1", "vms.control_plane[0].name"),
    ("{example.com/pool: general}", "{{example.com/pool: {v}}}", "general",
     "dcs[0].racks[0].nodes[0].labels"),
    ("bgp:\n  hold_time: 9", "bgp:\n  password: {v}\n  hold_time: 9", "BGP_PW", "bgp.password"),
    ("bgp:\n", "kubernetes:\n  version: {v}\nbgp:\n", "v1.31.4", "kubernetes.version"),
    ("bgp:\n", "kubernetes:\n  dns_domain: {v}\nbgp:\n", "cluster.local", "kubernetes.dns_domain"),
    ("etcd:\n", "etcd:\n  auto_compaction_retention: {v}\n", "1h", "etcd.auto_compaction_retention"),
]


@pytest.mark.parametrize(("old", "new", "valid", "field"), TRAILING_NEWLINE, ids=[t[3] for t in TRAILING_NEWLINE])
def test_valid_value_with_a_trailing_newline_is_refused(site_copy, tmp_path, old, new, valid, field):
    site = site_copy("lab")
    lock_before = (site / "allocations.yaml").read_text()
    (site / "site.yaml").write_text(hostile_site(old, new, valid))
    assert run_cli("validate", str(site))[0] == 0, "the same edit without the newline must load"
    (site / "site.yaml").write_text(hostile_site(old, new, valid + "\n"))
    code, _, err = run_cli("render", str(site), "--out", str(tmp_path / "out"))
    assert code == 2 and f" {field_in_object(field)}" in err and "site.yaml:" in err, err
    assert not (tmp_path / "out").exists()
    assert (site / "allocations.yaml").read_text() == lock_before
