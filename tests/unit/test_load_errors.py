"""A corpus of broken site files, one mistake each: exit 2, file:line and field named, nothing written."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import LAB
from tests.helpers import run_cli

LAB_TEXT = (LAB / "site.yaml").read_text()


@dataclass(frozen=True)
class Case:
    id: str
    old: str
    new: str
    field: str  # the dotted field path the message must name ("" for file-level problems)
    message: str  # a fragment of the message
    line_offset: int = 0  # the mistake sits this many lines below the first line of `old`

    def text(self) -> str:
        assert self.old in LAB_TEXT, f"corpus case {self.id}: {self.old!r} is not in the lab site"
        return LAB_TEXT.replace(self.old, self.new, 1)

    def line(self) -> int:
        return LAB_TEXT[: LAB_TEXT.index(self.old)].count("\n") + 1 + self.line_offset


CASES = [
    Case("unknown-key", "  max_pods: 110", "  max_pod: 110", "address_plan.max_pod", "unknown key 'max_pod'"),
    Case("bad-address", "api_address: 198.19.201.1", "api_address: 198.19.201.300",
         "address_plan.api_address", "not an IPv4 address"),
    Case("bad-cidr", "cidr: 198.19.0.0/19", "cidr: 198.19.0.0/33", "pod pool pods: cidr",
         "not an IPv4 prefix"),
    Case("host-bits", "subnet: 198.18.11.0/24", "subnet: 198.18.11.5/24", "rack dc1-r1: subnet",
         "host bits set; did you mean 198.18.11.0/24"),
    Case("asn-too-big", "asn: 65101", "asn: 4294967295", "rack dc1-r1: asn", "out of range"),
    Case("asn-zero", "asn: 65002}", "asn: 0}", "spine dc2-spine1: asn", "out of range"),
    Case("hostname-uppercase", "hostname: dc1-r1-n2,", "hostname: DC1-r1-n2,", "node DC1-r1-n2: hostname",
         "not an RFC 1123 label"),
    Case("hostname-underscore", "hostname: dc2-r1-n1,", "hostname: dc2_r1_n1,", "node dc2_r1_n1: hostname",
         "not an RFC 1123 label"),
    Case("duplicate-name", "hostname: dc1-r2-n2,", "hostname: dc1-r2-n1,", "node dc1-r2-n1: hostname",
         "duplicate name 'dc1-r2-n1'"),
    Case("duplicate-address", "address: 198.18.12.2,", "address: 198.18.12.1,", "node dc1-r2-n2: address",
         "already used by node dc1-r2-n1 (line 45)"),
    Case("address-outside-rack", "address: 198.18.21.2,", "address: 198.18.22.9,",
         "node dc2-r1-n2: address", "outside the rack subnet 198.18.21.0/24"),
    Case("vm-unknown-dc", "dc: dc2, rack: dc2-r1, address: 198.18.21.201",
         "dc: dc9, rack: dc2-r1, address: 198.18.21.201",
         "control-plane VM cp2: dc", "data centre 'dc9' does not exist"),
    Case("vm-rack-in-other-dc", "rack: dc3-r2, address: 198.18.32.201", "rack: dc1-r2, address: 198.18.32.201",
         "etcd VM etcd3: rack", "rack 'dc1-r2' does not exist in dc3"),
    Case("overlapping-pools", "    - {name: pods, cidr: 198.19.0.0/19, node_prefix_len: 24}",
         "    - {name: pods, cidr: 198.19.0.0/19, node_prefix_len: 24}\n    - {name: more, cidr: 198.19.16.0/20}",
         "pod pool more: cidr", "overlaps pod pool pods 198.19.0.0/19 (line 12)", line_offset=1),
    Case("yaml-syntax", "  anycast: [198.19.200.0/24]", "  anycast: [198.19.200.0/24", "", "YAML syntax error",
         line_offset=1),
    Case("wrong-type", "max_pods: 110", 'max_pods: "110"', "address_plan.max_pods", "valid integer"),
    Case("bool-for-string", "site: lab", "site: yes", "site", "valid string"),
    Case("undefined-hardware", "hardware: amd-128c-512g,", "hardware: amd-64c,", "node dc1-r1-n1: hardware",
         "hardware profile 'amd-64c' is not defined"),
    Case("anycast-overlaps-service", "anycast: [198.19.200.0/24]", "anycast: [198.19.129.0/24]",
         "address_plan.anycast[0]", "overlaps service CIDR"),
    Case("duplicate-rack-asn", "asn: 65102", "asn: 65101", "rack dc1-r2: asn",
         "ASN 65101 is also used by rack dc1-r1 (line 34); one AS per rack"),
    Case("duplicate-yaml-key", "  hold_time: 9", "  hold_time: 9\n  hold_time: 10", "bgp.hold_time",
         "duplicate key 'hold_time'", line_offset=1),
    Case("missing-required", "  service_cidr: 198.19.128.0/20\n", "", "address_plan.service_cidr",
         "required key 'service_cidr' is missing", line_offset=-5),
    Case("etcd-heartbeat", "  inter_dc_rtt_ms: 100", "  inter_dc_rtt_ms: 100\n  heartbeat_interval_ms: 500",
         "etcd.heartbeat_interval_ms", "0.5-1.5x the inter-DC RTT", line_offset=1),
    Case("hostile-hostname", "hostname: dc3-r1-n1,", 'hostname: "dc3-r1-n1\\"; }\\nprotocol static evil {",',
         "hostname", "not an RFC 1123 label"),
    Case("hostile-label", "labels: {example.com/pool: general}",
         'labels: {example.com/pool: "dc3\\"\\nrm -rf /"}',
         "node dc1-r1-n1: labels.example.com/pool", "not a valid Kubernetes label value"),
    Case("tor-outside-subnet", "tor: {name: dc3-r2-tor, router_id: 198.18.32.254}",
         "tor: {name: dc3-r2-tor, address: 198.18.33.254, router_id: 198.18.32.254}",
         "rack dc3-r2: tor.address", "outside the rack subnet"),
    Case("node-prefix-larger-than-pool", "node_prefix_len: 24}", "node_prefix_len: 18}",
         "pod pool pods: node_prefix_len", "larger than the pool"),
    Case("pool-unknown-dc", "node_prefix_len: 24}", "node_prefix_len: 24, dcs: [dc7]}",
         "pod pool pods: dcs[0]", "data centre 'dc7' does not exist"),
    Case("secret-value-not-name", "  keepalive: 3", '  keepalive: 3\n  password: "s3cr3t pass"', "bgp.password",
         "not a valid secret reference", line_offset=1),
    Case("negative-max-pods", "max_pods: 110", "max_pods: -5", "address_plan.max_pods", "greater than or equal"),
]


def _hash_tree(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def rendered_lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab site, rendered once: lock file and output tree that bad input must not touch."""
    base = tmp_path_factory.mktemp("base")
    site = base / "inventories" / "lab"
    shutil.copytree(LAB, site)
    code, _, err = run_cli("render", str(site), "--out", str(base / "out"))
    assert code == 0, err
    return base


def test_corpus_is_large_enough():
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_broken_site_exits_2_names_line_and_field_and_writes_nothing(case: Case, rendered_lab: Path,
                                                                    tmp_path: Path):
    base = tmp_path / "b"
    shutil.copytree(rendered_lab, base)
    site = base / "inventories" / "lab"
    (site / "site.yaml").write_text(case.text())
    before = _hash_tree(site, base / "out")
    for command in (["validate", str(site)], ["plan", str(site), "--out", str(base / "out")],
                    ["render", str(site), "--out", str(base / "out")]):
        code, out, err = run_cli(*command)
        assert code == 2, f"{command[0]}: expected exit 2, got {code}: {out}{err}"
        assert f"site.yaml:{case.line()}:" in err, f"expected line {case.line()} in: {err}"
        if case.field:
            assert f" {case.field}:" in err, f"expected field {case.field} in: {err}"
        assert case.message in err
        assert "Traceback" not in err
    assert _hash_tree(site, base / "out") == before


def test_every_error_is_reported_at_once(tmp_path: Path):
    site = tmp_path / "lab"
    shutil.copytree(LAB, site)
    text = LAB_TEXT.replace("  max_pods: 110", "  max_pod: 110").replace("asn: 65002}", "asn: 0}")
    text = text.replace("hostname: dc1-r1-n2,", "hostname: DC1,")
    (site / "site.yaml").write_text(text)
    code, _, err = run_cli("validate", str(site))
    assert code == 2
    assert "3 problems found" in err
    for field in ("address_plan.max_pod", "spine dc2-spine1: asn", "node DC1: hostname"):
        assert field in err


def test_cross_object_errors_are_reported_together(tmp_path: Path):
    site = tmp_path / "lab"
    shutil.copytree(LAB, site)
    text = LAB_TEXT.replace("hostname: dc1-r2-n2,", "hostname: dc1-r2-n1,").replace("asn: 65102", "asn: 65101")
    text = text.replace("dc: dc2, rack: dc2-r1, address: 198.18.21.201",
                        "dc: dc9, rack: dc2-r1, address: 198.18.21.201")
    (site / "site.yaml").write_text(text)
    code, _, err = run_cli("validate", str(site))
    assert code == 2
    assert "duplicate name" in err and "one AS per rack" in err and "'dc9' does not exist" in err


def test_empty_file_and_non_mapping(tmp_path: Path):
    site = tmp_path / "lab"
    shutil.copytree(LAB, site)
    for text, message in (("", "file is empty"), ("# only a comment\n", "file is empty"),
                          ("- a\n- b\n", "top level must be a mapping")):
        (site / "site.yaml").write_text(text)
        code, _, err = run_cli("validate", str(site))
        assert code == 2 and message in err and "site.yaml:1" in err


def test_yaml_aliases_are_refused(tmp_path: Path):
    site = tmp_path / "lab"
    shutil.copytree(LAB, site)
    text = LAB_TEXT.replace("  vm-8c-32g: {", "  vm-8c-32g: &vm {").replace(
        "bgp:\n", "kubernetes: *vm\nbgp:\n")
    (site / "site.yaml").write_text(text)
    code, _, err = run_cli("validate", str(site))
    assert code == 2 and "aliases are not supported" in err


def test_missing_site_and_bad_usage_exit_2(tmp_path: Path):
    assert run_cli("validate", str(tmp_path / "nope"))[0] == 2
    assert run_cli("validate", str(tmp_path))[0] == 2  # a directory without site.yaml
    assert run_cli("render")[0] == 2  # missing argument
    assert run_cli("plan", str(LAB), "--format", "yaml")[0] == 2


def test_broken_lock_file_is_an_input_error(tmp_path: Path):
    site = tmp_path / "lab"
    shutil.copytree(LAB, site)
    lock = site / "allocations.yaml"
    text = lock.read_text().replace("dc1-r1-n2: 198.19.1.0/24", "dc1-r1-n2: 198.19.0.0/24")
    lock.write_text(text)
    code, _, err = run_cli("render", str(site), "--out", str(tmp_path / "out"))
    assert code == 2
    assert "allocations.yaml:" in err and "also allocated to dc1-r1-n1" in err
    assert lock.read_text() == text
    assert not (tmp_path / "out").exists()
