"""Synthetic sites for the benchmarks: 3 DCs, 20-40 nodes per rack, any number of nodes.

Every third rack declares its nodes one by one (``nodes:``, half of them with an explicit
address, some with labels, serial and MAC); the others use ``node_groups`` (sometimes two groups per
rack). Addresses, ASNs and names are unique and valid; the pod pool (10.64.0.0/10, a /24 per node)
holds 16 384 nodes.

    .venv/bin/python benchmarks/gensite.py 3000 /tmp/site3k          # writes /tmp/site3k/site.yaml
    .venv/bin/python benchmarks/gensite.py 720 /tmp/ex                # copies inventories/example
    .venv/bin/python benchmarks/gensite.py 3000 /tmp/site3k+1 --add-rack   # the same site plus one rack

``add_rack`` works on any site (also the example): it appends one rack of 30 nodes to the first DC,
with the next free ASN, subnet and router id, so a plan shows exactly that rack as new.
"""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "inventories" / "example"
DCS = 3
MIN_RACK, MAX_RACK = 20, 40
HARDWARE = "amd-128c-512g"

try:
    _Dumper: type = yaml.CSafeDumper
except AttributeError:  # pragma: no cover
    _Dumper = yaml.SafeDumper


def rack_sizes(nodes: int) -> list[int]:
    """Rack sizes between 20 and 40 (varied, deterministic) that add up to ``nodes``."""
    if nodes < DCS * MIN_RACK:
        raise ValueError(f"at least {DCS * MIN_RACK} nodes (one rack of {MIN_RACK} per DC)")
    racks = max(DCS, round(nodes / 30))
    sizes = [MIN_RACK + (i * 7) % (MAX_RACK - MIN_RACK + 1) for i in range(racks)]
    diff = nodes - sum(sizes)
    i = 0
    while diff:
        step = 1 if diff > 0 else -1
        if MIN_RACK <= sizes[i % racks] + step <= MAX_RACK:
            sizes[i % racks] += step
            diff -= step
        i += 1
    return sizes


def generate(nodes: int, name: str | None = None) -> dict[str, Any]:
    """The site.yaml document of a synthetic site with exactly ``nodes`` nodes."""
    dcs: list[dict[str, Any]] = [
        {
            "name": f"dc{d}",
            "spines": [{"name": f"dc{d}-spine{s}", "router_id": f"10.254.{d}.{200 + s}", "asn": 65000 + d}
                       for s in (1, 2)],
            "racks": [],
        }
        for d in range(1, DCS + 1)
    ]
    for i, size in enumerate(rack_sizes(nodes)):
        d, j = i % DCS + 1, i // DCS + 1
        if j > 200:
            raise ValueError("too many racks per DC for this address plan (max 200)")
        rack_name = f"dc{d}-r{j:03d}"
        rack: dict[str, Any] = {
            "name": rack_name,
            "asn": 4_200_000_000 + d * 10_000 + j,
            "subnet": f"10.{d}.{j}.0/24",
            "tor": {"name": f"{rack_name}-tor", "router_id": f"10.254.{d}.{j}"},
        }
        kind = (i + i // DCS) % 3  # each DC gets all three kinds of rack
        if kind == 2:  # explicit node list
            explicit = []
            for k in range(1, size + 1):
                node: dict[str, Any] = {"hostname": f"{rack_name}-n{k:02d}", "hardware": HARDWARE}
                if k % 2:
                    node["address"] = f"10.{d}.{j}.{k}"
                if k % 5 == 0:
                    node["role"] = "ingress"
                    node["labels"] = {"node.example.com/edge": "true", "zone": f"dc{d}"}
                if k % 4 == 0:
                    node["serial"] = f"SN{d}{j:03d}{k:02d}"
                    node["mac"] = f"02:00:{d:02x}:{j:02x}:00:{k:02x}"
                explicit.append(node)
            rack["nodes"] = explicit
        elif kind == 1 and size > 24:  # two groups: workers, then storage nodes
            rack["node_groups"] = [
                {"count": size - 4, "name_pattern": f"{rack_name}-n{{index:02d}}", "hardware": HARDWARE},
                {"count": 4, "name_pattern": f"{rack_name}-s{{index:02d}}", "hardware": HARDWARE,
                 "role": "storage", "labels": {"storage": "local-nvme"}},
            ]
        else:
            rack["node_groups"] = [{"count": size, "name_pattern": f"{rack_name}-n{{index:02d}}", "hardware": HARDWARE}]
        dcs[d - 1]["racks"].append(rack)

    def vms(prefix: str, rack: int, host: int) -> list[dict[str, Any]]:
        return [{"name": f"{prefix}{d}", "dc": f"dc{d}", "rack": f"dc{d}-r{rack:03d}",
                 "address": f"10.{d}.{rack}.{host}", "hardware": "vm-8c-32g"} for d in range(1, DCS + 1)]

    return {
        "site": name or f"bench{nodes}",
        "hardware": {
            HARDWARE: {"cpu_vendor": "AuthenticAMD", "sockets": 2, "cores": 128, "memory_gib": 512},
            "vm-8c-32g": {"cpu_vendor": "AuthenticAMD", "sockets": 1, "cores": 8, "memory_gib": 32},
        },
        "address_plan": {
            "pod_pools": [{"name": "pods", "cidr": "10.64.0.0/10", "node_prefix_len": 24}],
            "anycast": ["10.200.1.0/24", "10.200.2.0/24"],
            "api_address": "10.201.0.1",
            "service_cidr": "10.192.0.0/16",
            "fabric_pool": "10.255.0.0/20",
            "max_pods": 110,
        },
        "bgp": {"password": "BGP_FABRIC_PASSWORD"},
        "etcd": {"inter_dc_rtt_ms": 10},
        "dcs": dcs,
        "vms": {
            "control_plane": vms("cp", 1, 201),
            "etcd": vms("etcd", 1, 202),
            "etcd_events": vms("events", 1, 203),
        },
    }


def add_rack(doc: dict[str, Any], nodes: int = 30) -> dict[str, Any]:
    """The same site plus one rack of ``nodes`` nodes in the first DC (next free ASN, subnet, router id)."""
    racks = [r for dc in doc["dcs"] for r in dc["racks"]]
    names = {r["name"] for r in racks}
    index = 1
    while f"bench-r{index:03d}" in names:
        index += 1
    name = f"bench-r{index:03d}"
    asns = {r["asn"] for r in racks} | {s["asn"] for dc in doc["dcs"] for s in dc["spines"]}
    asn = max(asns) + 1
    used: list[ipaddress.IPv4Network] = [ipaddress.IPv4Network(r["subnet"]) for r in racks]
    plan = doc["address_plan"]
    used += [ipaddress.IPv4Network(p["cidr"]) for p in plan["pod_pools"]]
    used += [ipaddress.IPv4Network(a) for a in plan["anycast"]]
    used += [ipaddress.IPv4Network(plan[k]) for k in ("service_cidr", "fabric_pool")]
    used.append(ipaddress.IPv4Network(plan["api_address"]))
    subnet = max(ipaddress.IPv4Network(r["subnet"]) for r in racks)
    while any(subnet.overlaps(u) for u in used):
        subnet = ipaddress.IPv4Network((int(subnet.network_address) + 256, 24))
    ids = {ipaddress.IPv4Address(r["tor"]["router_id"]) for r in racks}
    ids |= {ipaddress.IPv4Address(s["router_id"]) for dc in doc["dcs"] for s in dc["spines"]}
    router_id = max(ids) + 1
    while router_id in ids or any(router_id in u for u in used):
        router_id += 1
    hardware = next(iter(doc["hardware"]))
    for r in racks:  # the hardware profile the nodes use
        for g in r.get("node_groups", []):
            hardware = g["hardware"]
    new = {
        "name": name, "asn": asn, "subnet": str(subnet),
        "tor": {"name": f"{name}-tor", "router_id": str(router_id)},
        "node_groups": [{"count": nodes, "name_pattern": f"{name}-n{{index:02d}}", "hardware": hardware}],
    }
    out = dict(doc)
    out["dcs"] = [dict(dc) for dc in doc["dcs"]]
    out["dcs"][0]["racks"] = [*doc["dcs"][0]["racks"], new]
    return out


def dump(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=200)


def write_site(nodes: int, directory: Path, plus_rack: bool = False) -> Path:
    """Write ``directory/site.yaml`` for a site of ``nodes`` nodes (720: the example, with its lock)."""
    directory.mkdir(parents=True, exist_ok=True)
    if nodes == 720:
        if plus_rack:
            doc = yaml.load((EXAMPLE / "site.yaml").read_text(), Loader=yaml.CSafeLoader)
            (directory / "site.yaml").write_text(dump(add_rack(doc)))
        else:
            shutil.copyfile(EXAMPLE / "site.yaml", directory / "site.yaml")
        if (EXAMPLE / "allocations.yaml").exists():
            shutil.copyfile(EXAMPLE / "allocations.yaml", directory / "allocations.yaml")
    else:
        doc = generate(nodes)
        (directory / "site.yaml").write_text(dump(add_rack(doc) if plus_rack else doc))
    return directory


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("nodes", type=int, help="number of nodes (720: a copy of inventories/example)")
    ap.add_argument("directory", type=Path, help="site directory to write (site.yaml)")
    ap.add_argument("--add-rack", action="store_true", help="the same site plus one rack of 30 nodes")
    args = ap.parse_args(argv)
    try:
        write_site(args.nodes, args.directory, args.add_rack)
    except ValueError as exc:
        print(f"gensite: {exc}", file=sys.stderr)
        return 2
    print(args.directory / "site.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
