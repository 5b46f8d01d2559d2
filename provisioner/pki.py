"""etcd PKI for both clusters, made with ``cryptography``: one CA, per-member server and peer certificates,
and the kube-apiserver's etcd client certificate.

One CA signs everything, so the single ``apiserver-etcd-client`` certificate is accepted by the main and the
events cluster alike (``--etcd-servers-overrides`` reuses the apiserver's one etcd client identity). The
clusters stay apart through their own ``initial-cluster-token`` and cluster ID: a member of one cannot join
the other.

Layout under the secrets directory (default ``secrets/<site>/`` at the project root, git-ignored), chosen so
each directory is copied as it is onto one host directory:

    etcd-ca/ca.crt, ca.key                        the CA; ca.key never leaves the operator's machine
    <cluster>/<member>/ca.crt                     -> /etc/<cluster>/pki/ca.crt   on the member's VM
    <cluster>/<member>/server.crt, server.key     -> /etc/<cluster>/pki/server.*
    <cluster>/<member>/peer.crt, peer.key         -> /etc/<cluster>/pki/peer.*
    control-plane/etcd/ca.crt                     -> /etc/kubernetes/pki/etcd/ca.crt on every CP VM
    control-plane/apiserver-etcd-client.crt, .key -> /etc/kubernetes/pki/apiserver-etcd-client.*

``<cluster>`` is ``etcd`` (main) or ``etcd-events``. Keys are written 0600, certificates 0644, directories
0700. Nothing is overwritten unless asked (``rotate``); every file is written to a temporary name and
renamed into place.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:  # cryptography is imported lazily: only `provisioner pki` pays for it
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

    from .plan import EtcdMember, Plan

CA_DAYS = 3650
LEAF_DAYS = 825
CLIENT_NAME = "apiserver-etcd-client"
CA_DIR = "etcd-ca"
CP_DIR = "control-plane"


@dataclass(frozen=True, slots=True)
class PkiFile:
    path: str  # relative to the secrets directory
    data: bytes
    secret: bool  # a private key: mode 0600


def member_dir(cluster: str, member: str) -> str:
    return f"{cluster}/{member}"


def expected_paths(plan: Plan) -> list[str]:
    """Every file ``issue`` writes for ``plan``, relative to the secrets directory."""
    paths = [f"{CA_DIR}/ca.crt", f"{CA_DIR}/ca.key"]
    for cluster in plan.etcd_clusters:
        for m in cluster.members:
            d = member_dir(cluster.name, m.name)
            paths += [f"{d}/ca.crt", f"{d}/server.crt", f"{d}/server.key", f"{d}/peer.crt", f"{d}/peer.key"]
    paths += [f"{CP_DIR}/etcd/ca.crt", f"{CP_DIR}/{CLIENT_NAME}.crt", f"{CP_DIR}/{CLIENT_NAME}.key"]
    return sorted(paths)


def existing(out: Path, plan: Plan) -> list[str]:
    return [p for p in expected_paths(plan) if (out / p).exists()]


def _new_key() -> EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str, org: str | None = None):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def make_ca(site: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key = _new_key()
    name = _name(f"{site}-etcd-ca")
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(ca_key, ca_cert, cn: str, *, server: bool, client: bool, org: str | None = None,
              dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = _new_key()
    now = _now()
    usages = [oid for oid, wanted in ((ExtendedKeyUsageOID.SERVER_AUTH, server),
                                      (ExtendedKeyUsageOID.CLIENT_AUTH, client)) if wanted]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org)).issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                     crl_sign=False, content_commitment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if dns or ips:
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def member_sans(member: EtcdMember) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(DNS names, IP addresses) of a member's server and peer certificates."""
    return (member.name,), (str(member.address), "127.0.0.1")


def load_ca(out: Path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate((out / CA_DIR / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((out / CA_DIR / "ca.key").read_bytes(), password=None)
    return key, cert


def issue(plan: Plan, out: Path, *, rotate: bool = False, new_ca: bool = False) -> tuple[list[PkiFile], bool]:
    """Build the PKI of ``plan`` for ``out``. Returns the files and whether the CA is new.

    Refuses (InputError, exit 2) when any file already exists and ``rotate`` is false. With ``rotate`` the
    existing CA is kept (members trust the new leaves at once, so a rolling restart suffices) unless
    ``new_ca`` is given or there is none.
    """
    present = existing(out, plan)
    if present and not rotate:
        raise InputError(f"{out} already holds etcd PKI ({len(present)} files, e.g. {present[0]}); refusing to "
                         "overwrite. Re-issue with --rotate (keeps the CA; add --new-ca to replace it too)")
    files: list[PkiFile] = []
    ca_present = (out / CA_DIR / "ca.crt").exists() and (out / CA_DIR / "ca.key").exists()
    fresh_ca = new_ca or not ca_present
    if fresh_ca:
        ca_key, ca_cert = make_ca(plan.name)
        files += [PkiFile(f"{CA_DIR}/ca.crt", _cert_pem(ca_cert), False),
                  PkiFile(f"{CA_DIR}/ca.key", _key_pem(ca_key), True)]
    else:
        ca_key, ca_cert = load_ca(out)
    ca_pem = _cert_pem(ca_cert)
    for cluster in plan.etcd_clusters:
        for m in cluster.members:
            d = member_dir(cluster.name, m.name)
            dns, ips = member_sans(m)
            files.append(PkiFile(f"{d}/ca.crt", ca_pem, False))
            for kind in ("server", "peer"):
                key, cert = make_leaf(ca_key, ca_cert, m.name, server=True, client=True, dns=dns, ips=ips)
                files += [PkiFile(f"{d}/{kind}.crt", _cert_pem(cert), False),
                          PkiFile(f"{d}/{kind}.key", _key_pem(key), True)]
    key, cert = make_leaf(ca_key, ca_cert, "kube-apiserver-etcd-client", server=False, client=True,
                          org="system:masters")
    files += [PkiFile(f"{CP_DIR}/etcd/ca.crt", ca_pem, False),
              PkiFile(f"{CP_DIR}/{CLIENT_NAME}.crt", _cert_pem(cert), False),
              PkiFile(f"{CP_DIR}/{CLIENT_NAME}.key", _key_pem(key), True)]
    return files, fresh_ca


def write(out: Path, files: list[PkiFile]) -> None:
    """Write each file atomically: a private temporary file in the same directory, then rename."""
    for f in files:
        target = out / f.path
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(f.data)
            os.chmod(tmp, 0o600 if f.secret else 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    dirs = {out}
    for f in files:
        dirs.update(p for p in (out / f.path).parents if p.is_relative_to(out))
    for d in sorted(dirs):
        os.chmod(d, 0o700)
