"""provisioner pki: layout, key modes, SANs, one CA both clusters trust, no overwrite without --rotate."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioner.pipeline import compile_site
from provisioner.pki import expected_paths
from provisioner.plan import Plan
from tests.conftest import LAB
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def plan() -> Plan:
    return compile_site(LAB).plan


@pytest.fixture(scope="module")
def secrets(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pki") / "secrets"
    rc, stdout, stderr = run_cli("pki", str(LAB), "--out", str(out))
    assert rc == 0, stdout + stderr
    assert "created etcd PKI of site lab" in stdout
    return out


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_is_exactly_the_documented_one(secrets, plan):
    files = sorted(str(p.relative_to(secrets)) for p in secrets.rglob("*") if p.is_file())
    assert files == expected_paths(plan)
    assert "etcd/etcd1/server.crt" in files and "etcd-events/events3/peer.key" in files
    assert "control-plane/apiserver-etcd-client.key" in files and "control-plane/etcd/ca.crt" in files


def test_key_and_directory_modes(secrets):
    for p in secrets.rglob("*"):
        mode = stat.S_IMODE(p.stat().st_mode)
        if p.is_dir():
            assert mode == 0o700, p
        elif p.suffix == ".key":
            assert mode == 0o600, p
            assert b"PRIVATE KEY" in p.read_bytes()
        else:
            assert mode == 0o644, p
            assert b"PRIVATE KEY" not in p.read_bytes()


def test_member_sans_and_usages(secrets, plan):
    for cluster in plan.etcd_clusters:
        for m in cluster.members:
            for kind in ("server", "peer"):
                c = cert(secrets / cluster.name / m.name / f"{kind}.crt")
                san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                assert san.get_values_for_type(x509.DNSName) == [m.name]
                assert set(san.get_values_for_type(x509.IPAddress)) == {
                    m.address, ipaddress.ip_address("127.0.0.1")}
                eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
                assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
                assert c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == m.name


def test_client_cert_is_accepted_by_both_clusters(secrets, plan):
    client = cert(secrets / "control-plane" / "apiserver-etcd-client.crt")
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert client.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    for cluster in plan.etcd_clusters:
        for m in cluster.members:
            trusted = cert(secrets / cluster.name / m.name / "ca.crt")  # the member's trusted-ca-file
            client.verify_directly_issued_by(trusted)
            cert(secrets / cluster.name / m.name / "server.crt").verify_directly_issued_by(
                cert(secrets / "control-plane" / "etcd" / "ca.crt"))  # what kube-apiserver trusts


def test_no_overwrite_without_rotate(secrets):
    before = snapshot(secrets)
    rc, _out, err = run_cli("pki", str(LAB), "--out", str(secrets))
    assert rc == 2
    assert "already holds etcd PKI" in err and "--rotate" in err
    assert snapshot(secrets) == before


def test_partial_pki_is_not_overwritten_either(tmp_path):
    out = tmp_path / "s"
    (out / "etcd" / "etcd1").mkdir(parents=True)
    (out / "etcd" / "etcd1" / "server.key").write_text("keep me")
    rc, _out, err = run_cli("pki", str(LAB), "--out", str(out))
    assert rc == 2 and "etcd/etcd1/server.key" in err
    assert (out / "etcd" / "etcd1" / "server.key").read_text() == "keep me"


def test_rotate_reissues_leaves_and_keeps_the_ca(tmp_path):
    out = tmp_path / "s"
    assert run_cli("pki", str(LAB), "--out", str(out))[0] == 0
    before = snapshot(out)
    rc, stdout, _ = run_cli("pki", str(LAB), "--out", str(out), "--rotate")
    assert rc == 0 and "existing CA kept" in stdout
    after = snapshot(out)
    assert after.keys() == before.keys()
    assert after["etcd-ca/ca.crt"] == before["etcd-ca/ca.crt"]
    assert after["etcd-ca/ca.key"] == before["etcd-ca/ca.key"]
    for path in before:
        if not path.endswith("ca.crt") and not path.startswith("etcd-ca/"):
            assert after[path] != before[path], path
    ca = cert(out / "etcd-ca" / "ca.crt")
    cert(out / "control-plane" / "apiserver-etcd-client.crt").verify_directly_issued_by(ca)
    assert stat.S_IMODE((out / "etcd" / "etcd2" / "peer.key").stat().st_mode) == 0o600

    rc, stdout, _ = run_cli("pki", str(LAB), "--out", str(out), "--rotate", "--new-ca")
    assert rc == 0 and "new CA" in stdout
    newer = snapshot(out)
    assert newer["etcd-ca/ca.crt"] != after["etcd-ca/ca.crt"]
    assert newer["etcd/etcd1/ca.crt"] == newer["etcd-ca/ca.crt"] == newer["control-plane/etcd/ca.crt"]
    cert(out / "etcd-events" / "events1" / "server.crt").verify_directly_issued_by(cert(out / "etcd-ca" / "ca.crt"))


def test_new_ca_needs_rotate(tmp_path):
    rc, _out, _err = run_cli("pki", str(LAB), "--out", str(tmp_path / "s"), "--new-ca")
    assert rc == 2
    assert not (tmp_path / "s").exists()


def test_default_directory_is_secrets_site_outside_the_rendered_tree(site_copy):
    site_dir = site_copy("lab")
    rc, stdout, _ = run_cli("pki", str(site_dir))
    assert rc == 0
    target = site_dir.parent.parent / "secrets" / "lab"
    assert str(target) in stdout
    assert (target / "etcd-ca" / "ca.key").is_file()
    assert not (site_dir.parent.parent / "rendered").exists()
