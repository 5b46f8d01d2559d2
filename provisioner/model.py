"""The site model: the pydantic schema of ``site.yaml``.

Every value that can reach a generated config is validated here, with a narrow type: addresses are
``ipaddress`` objects, names are RFC 1123 labels, free-form text (labels, secret references) has a
strict pattern. That is what makes it impossible for a hostile string in site.yaml to inject a
statement into a BIRD, FRR, YAML or JSON file: no value with a quote, brace, semicolon or newline
survives loading.

The model is strict (no silent coercion of ``"65001"`` into an int), forbids unknown keys and is
frozen. Cross-object rules (duplicates, references, overlaps) live in ``validate.py`` so that they
can all be reported at once, each with the field path of the offending value.
"""

from __future__ import annotations

import ipaddress
import re
import weakref
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from .util import Loc

# Checked with fullmatch: `$` in a Python regex also matches before a trailing newline, and "name\n"
# must never pass.
HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Kubernetes label key (optional DNS prefix) and value syntax.
LABEL_KEY_RE = re.compile(r"^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")
SECRET_REF_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
NAME_PATTERN_RE = re.compile(r"^[a-z0-9-]*\{index(:0?[1-9]d)?\}[a-z0-9-]*$")
SERIAL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
ASN_MAX = 4_294_967_294  # 4-byte ASN; 0 and 4294967295 are reserved (RFC 7607, RFC 7300)
# Node labels provisioner sets from a node's place (plan.NodePlan.labels); a site may repeat them, not
# contradict them (validate._owned_labels).
ZONE_LABEL = "topology.kubernetes.io/zone"
RACK_LABEL = "provisioner/rack"


def _hostname(value: str) -> str:
    if not HOSTNAME_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an RFC 1123 label (lowercase letters, digits and '-', 1-63 chars, "
            "no leading or trailing '-')"
        )
    return value


def _ipv4_address(value: object) -> object:
    if isinstance(value, str):
        try:
            return IPv4Address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 address") from None
    return value


def _ipv4_network(value: object) -> object:
    if isinstance(value, str):
        try:
            return IPv4Network(value, strict=True)
        except ValueError as exc:
            if "has host bits set" in str(exc):
                net = ipaddress.ip_network(value, strict=False)
                raise ValueError(f"{value!r} has host bits set; did you mean {net}?") from None
            raise ValueError(f"{value!r} is not an IPv4 prefix in CIDR notation") from None
    return value


def _asn(value: int) -> int:
    if not 1 <= value <= ASN_MAX:
        raise ValueError(f"ASN {value} is out of range (1-{ASN_MAX})")
    return value


def _pattern(regex: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid {what}")
        return value

    return check


Hostname = Annotated[str, AfterValidator(_hostname)]
Address = Annotated[IPv4Address, BeforeValidator(_ipv4_address)]
Prefix = Annotated[IPv4Network, BeforeValidator(_ipv4_network)]
ASN = Annotated[int, AfterValidator(_asn)]
SecretRef = Annotated[str, AfterValidator(_pattern(SECRET_REF_RE, "secret reference (a variable name)"))]
LabelKey = Annotated[str, AfterValidator(_pattern(LABEL_KEY_RE, "Kubernetes label key"))]
LabelValue = Annotated[str, AfterValidator(_pattern(LABEL_VALUE_RE, "Kubernetes label value"))]
NamePattern = Annotated[
    str, AfterValidator(_pattern(NAME_PATTERN_RE, "name pattern (like 'dc1-r01-n{index:02d}')"))
]
Serial = Annotated[str, AfterValidator(_pattern(SERIAL_RE, "serial number"))]
Mac = Annotated[str, AfterValidator(_pattern(MAC_RE, "MAC address (lowercase, colon separated)"))]
Role = Literal["worker", "ingress", "storage"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Hardware(Strict):
    """A hardware profile: what pre-flight checks on the box and capacity counts."""

    cpu_vendor: Literal["AuthenticAMD", "GenuineIntel"] = "AuthenticAMD"
    sockets: int = Field(default=2, ge=1, le=8)
    cores: int = Field(description="physical cores in total", ge=1, le=4096)
    memory_gib: int = Field(ge=1, le=65536)


class Node(Strict):
    hostname: Hostname
    address: Address | None = None  # None: assigned from the rack subnet, then locked
    hardware: Hostname
    role: Role = "worker"
    labels: dict[LabelKey, LabelValue] = {}
    serial: Serial | None = None
    mac: Mac | None = None


class NodeGroup(Strict):
    """N identical nodes named by a pattern, e.g. ``dc1-r01-n{index:02d}`` for index 1..count."""

    count: int = Field(ge=1, le=512)
    name_pattern: NamePattern
    first_index: int = Field(default=1, ge=0, le=9999)
    hardware: Hostname
    role: Role = "worker"
    labels: dict[LabelKey, LabelValue] = {}

    def hostnames(self) -> list[str]:
        return [self.name_pattern.format(index=i) for i in range(self.first_index, self.first_index + self.count)]


class Tor(Strict):
    name: Hostname
    address: Address | None = None  # default: .254 of the rack subnet
    router_id: Address


class Rack(Strict):
    name: Hostname
    asn: ASN
    subnet: Prefix
    tor: Tor
    nodes: list[Node] = []
    node_groups: list[NodeGroup] = []
    bgp_password: SecretRef | None = None  # overrides the site-wide one for this rack's sessions
    aggregate_pods: bool = False  # ToR announces one aggregate per pod pool instead of each /24

    def expanded_nodes(self) -> list[tuple[Node, Loc]]:
        """Explicit nodes, then each group's generated ones, with the field path that declared them."""
        out: list[tuple[Node, Loc]] = [(n, ("nodes", i)) for i, n in enumerate(self.nodes)]
        for g, group in enumerate(self.node_groups):
            for hostname in group.hostnames():
                node = Node.model_construct(hostname=hostname, address=None, hardware=group.hardware,
                                            role=group.role, labels=group.labels, serial=None, mac=None)
                out.append((node, ("node_groups", g)))
        return out

    def tor_address(self) -> IPv4Address:
        return self.tor.address if self.tor.address is not None else self.subnet.network_address + 254


_EXPANDED: dict[int, tuple[tuple[Node, Loc], ...]] = {}


def expanded_nodes(rack: Rack) -> tuple[tuple[Node, Loc], ...]:
    """``rack.expanded_nodes()``, built once per Rack object: validate, allocate and plan all walk them."""
    key = id(rack)
    nodes = _EXPANDED.get(key)
    if nodes is None:
        nodes = _EXPANDED[key] = tuple(rack.expanded_nodes())
        weakref.finalize(rack, _EXPANDED.pop, key, None)
    return nodes


class Spine(Strict):
    name: Hostname
    router_id: Address
    asn: ASN


UpstreamAnnounce = Literal["pod_pools", "anycast", "api_address", "rack_subnets"]


class Upstream(Strict):
    """A border/core router outside the site that the DC's spines peer with over eBGP: the way out.

    It sends a default route (and optionally the exact prefixes in ``accept``); the spines send it the
    classes of site prefixes named in ``announce``. Every spine of the DC peers with every upstream of the
    DC over a /31 from the fabric pool (allocated and locked like the other fabric links).
    """

    name: Hostname
    asn: ASN
    router_id: Address
    announce: list[UpstreamAnnounce] = Field(
        default=["pod_pools", "anycast", "api_address", "rack_subnets"], min_length=1)
    accept: list[Prefix] = []  # prefixes taken from the upstream besides 0.0.0.0/0 (exact lengths)
    password: SecretRef | None = None  # the name of the session secret; default: bgp.password


class DataCentre(Strict):
    name: Hostname
    spines: list[Spine] = Field(min_length=1)
    racks: list[Rack] = Field(min_length=1)
    upstreams: list[Upstream] = []  # none: the DC reaches the outside only through other DCs' spines


class VM(Strict):
    name: Hostname
    dc: Hostname
    rack: Hostname
    address: Address
    hardware: Hostname | None = None


class VMs(Strict):
    control_plane: list[VM] = Field(min_length=1)
    etcd: list[VM] = Field(min_length=1)
    etcd_events: list[VM] = Field(min_length=1)


class PodPool(Strict):
    name: Hostname
    cidr: Prefix
    node_prefix_len: int = Field(default=24, ge=8, le=28)
    dcs: list[Hostname] = []  # empty: any DC may draw from it


class AddressPlan(Strict):
    pod_pools: list[PodPool] = Field(min_length=1)
    anycast: list[Prefix] = Field(min_length=1)
    api_address: Address
    service_cidr: Prefix
    fabric_pool: Prefix  # /31 point-to-point links ToR-spine and spine-spine are drawn from it
    max_pods: int = Field(default=110, ge=1, le=65536)


class BGP(Strict):
    password: SecretRef | None = None  # name of a secret injected at apply time; never a value
    hold_time: int = Field(default=9, ge=3, le=65535)
    keepalive: int = Field(default=3, ge=1, le=21845)
    node_import_limit: int = Field(default=64, ge=1, le=100000)
    tor_max_prefix_per_node: int = Field(default=16, ge=1, le=100000)
    bfd: bool = True
    graceful_restart: bool = True


class Etcd(Strict):
    """etcd tuning. Timings derive from the inter-DC round-trip time unless given explicitly."""

    inter_dc_rtt_ms: int = Field(default=2, ge=1, le=5000)
    heartbeat_interval_ms: int | None = Field(default=None, ge=1)
    election_timeout_ms: int | None = Field(default=None, ge=1)
    snapshot_count: int = Field(default=10000, ge=100)
    quota_backend_bytes: int = Field(default=8 * 1024**3, ge=1024**2)
    auto_compaction_retention: str = Field(default="1h", pattern=r"^[0-9]{1,4}[hm]?$")
    client_port: int = Field(default=2379, ge=1, le=65535)
    peer_port: int = Field(default=2380, ge=1, le=65535)
    events_client_port: int = Field(default=2379, ge=1, le=65535)
    events_peer_port: int = Field(default=2380, ge=1, le=65535)


class Kubernetes(Strict):
    version: str = Field(default="v1.31.4", pattern=r"^v[0-9]+\.[0-9]+\.[0-9]+$")
    cluster_name: Hostname = "kubernetes"
    dns_domain: str = Field(default="cluster.local", pattern=r"^[a-z0-9]([a-z0-9.-]{0,200}[a-z0-9])?$")


class Demand(Strict):
    """Declared peak demand, for capacity what-ifs (e.g. must survive losing a DC)."""

    cores: int = Field(ge=0)
    memory_gib: int = Field(ge=0)


class Site(Strict):
    site: Hostname
    hardware: dict[Hostname, Hardware] = Field(min_length=1)
    dcs: list[DataCentre] = Field(min_length=1)
    vms: VMs
    address_plan: AddressPlan
    bgp: BGP = BGP()
    etcd: Etcd = Etcd()
    kubernetes: Kubernetes = Kubernetes()
    demand: Demand | None = None
