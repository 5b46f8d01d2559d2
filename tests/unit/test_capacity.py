"""provisioner capacity: the example's numbers against arithmetic done here from the raw YAML, the what-ifs,
exit codes, and that nothing on disk changes.

Expected values are computed in this file from site.yaml and allocations.yaml read with plain PyYAML
(not through the model or the capacity module), so a wrong formula in the code cannot agree with itself.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLE
from tests.helpers import run_cli


def raw_site(site_dir: Path = EXAMPLE) -> dict:
    return yaml.safe_load((site_dir / "site.yaml").read_text())


def raw_lock(site_dir: Path = EXAMPLE) -> dict:
    return yaml.safe_load((site_dir / "allocations.yaml").read_text())


def capacity_json(*args: str, site: Path = EXAMPLE, code: int = 0) -> dict:
    rc, out, err = run_cli("capacity", str(site), "--format", "json", *args)
    assert rc == code, err + out
    return json.loads(out)


def rack_nodes(rack: dict) -> int:
    return sum(g["count"] for g in rack.get("node_groups", [])) + len(rack.get("nodes", []))


def node_hardware(site: dict, rack: dict) -> list[str]:
    return [g["hardware"] for g in rack.get("node_groups", []) for _ in range(g["count"])] + \
        [n["hardware"] for n in rack.get("nodes", [])]


def model_numbers(site: dict, extra: dict[str, list[int]] | None = None) -> dict:
    """Per-DC nodes/cores/memory, optionally with extra racks (node counts) appended to a DC."""
    extra = extra or {}
    out = {}
    for dc in site["dcs"]:
        hw = [h for r in dc["racks"] for h in node_hardware(site, r)]
        common = max(sorted(set(hw)), key=hw.count)
        hw += [common] * sum(extra.get(dc["name"], []))
        out[dc["name"]] = {"nodes": len(hw), "cores": sum(site["hardware"][h]["cores"] for h in hw),
                           "memory_gib": sum(site["hardware"][h]["memory_gib"] for h in hw)}
    return out


def pool_expectations(site: dict, lock: dict, added: int = 0) -> dict:
    (pool,) = site["address_plan"]["pod_pools"]
    cidr = ipaddress.ip_network(pool["cidr"])
    plen = pool["node_prefix_len"]
    size = 2 ** (plen - cidr.prefixlen)
    locked = sum(1 for v in lock["pod_cidrs"].values() if ipaddress.ip_network(v).subnet_of(cidr))
    allocated = locked + added
    return {"size": size, "locked_now": locked, "allocated": allocated, "free": size - allocated,
            "utilisation_pct": round(100 * allocated / size, 1)}


# --- the plain report ------------------------------------------------------------------------------


def test_plain_report_matches_the_model():
    site, lock = raw_site(), raw_lock()
    data = capacity_json()
    assert data["fits"] is True and data["reasons"] == []

    # Pod address space: every live node is already locked in the example, and nothing is orphaned.
    exp = pool_expectations(site, lock)
    (pool,) = data["pools"]["pools"]
    for key, value in exp.items():
        assert pool[key] == value, key
    live = {h for dc in site["dcs"] for r in dc["racks"] for g in r.get("node_groups", [])
            for h in (g["name_pattern"].format(index=i) for i in range(g.get("first_index", 1),
                                                                        g.get("first_index", 1) + g["count"]))}
    assert pool["orphaned"] == len(set(lock["pod_cidrs"]) - live)
    # The example allocates first-fit from the start of the pool, so the free slots are one run at the end.
    used = sorted(int(ipaddress.ip_network(v).network_address) for v in lock["pod_cidrs"].values())
    step = 2 ** (32 - 24)
    assert used == list(range(used[0], used[0] + step * len(used), step))
    assert pool["largest_free_block"] == exp["free"]
    assert pool["largest_free_block_start"] == f"{ipaddress.ip_address(used[-1] + step)}/24"
    assert data["pools"]["more_nodes_fit"] == {dc["name"]: exp["free"] for dc in site["dcs"]}

    # Pods: a /24 has 256 - network - broadcast - br0 = 253 usable addresses; kubelet's max_pods caps it.
    max_pods = site["address_plan"]["max_pods"]
    per_node = min(2 ** (32 - 24) - 3, max_pods)
    assert data["pods"]["per_pool"][0]["usable_addresses"] == 253
    assert data["pods"]["per_pool"][0]["pods_per_node"] == per_node
    numbers = model_numbers(site)
    assert data["pods"]["per_dc"] == {dc: n["nodes"] * per_node for dc, n in numbers.items()}
    assert data["pods"]["total"] == sum(n["nodes"] for n in numbers.values()) * per_node

    # Compute: nodes only (VMs are not pod capacity); N-1 for every DC against the declared demand.
    c = data["compute"]
    assert c["per_dc"] == numbers
    total_cores = sum(n["cores"] for n in numbers.values())
    total_mem = sum(n["memory_gib"] for n in numbers.values())
    assert (c["total"]["cores"], c["total"]["memory_gib"]) == (total_cores, total_mem)
    demand = site["demand"]
    for dc, n in numbers.items():
        w = c["without_dc"][dc]
        assert w["cores"] == total_cores - n["cores"]
        assert w["carries_demand"] == (total_cores - n["cores"] >= demand["cores"]
                                       and total_mem - n["memory_gib"] >= demand["memory_gib"])

    # Fabric, by the documented definitions.
    spines = {dc["name"]: len(dc["spines"]) for dc in site["dcs"]}
    cp_racks = [vm["rack"] for vm in site["vms"]["control_plane"]]
    racks = [(dc["name"], r) for dc in site["dcs"] for r in dc["racks"]]
    all_pods = sum(rack_nodes(r) for _, r in racks)
    anycast = len(site["address_plan"]["anycast"])
    tors = {t["tor"]: t for t in data["fabric"]["tors"]}
    # Prefixes a switch holds (LPM entries, one per prefix however many ECMP paths): every pod /24 (no rack
    # aggregates here), every rack subnet, each anycast range, the API /32, and its own fabric /31s.
    carried = all_pods + len(racks) + anycast + 1
    for dc, r in racks:
        n, cp = rack_nodes(r), cp_racks.count(r["name"])
        t = tors[r["tor"]["name"]]
        assert t["sessions"] == n + cp and t["uplinks"] == spines[dc]  # iBGP from its servers; eBGP uplinks
        assert t["routes"] == carried + spines[dc]
    for s in data["fabric"]["spines"]:
        dc = next(d for d in site["dcs"] if d["name"] == s["dc"])
        tors_in_dc = len(dc["racks"])
        peers = sum(spines.values()) - spines[s["dc"]]
        assert s["routes"] == carried + tors_in_dc + peers
    for e in data["fabric"]["ecmp"]:
        dc = next(d for d in site["dcs"] if d["name"] == e["dc"])
        assert e["announcers"] == sum(rack_nodes(r) for r in dc["racks"])
        assert e["tor_width"] == max(rack_nodes(r) for r in dc["racks"])
        assert e["spine_width"] == len(dc["racks"])
    assert all(c["ok"] for c in data["fabric"]["checks"])

    # Control plane: quorum is a strict majority; every cluster here has one member per DC.
    for cluster, key in (("etcd", "etcd"), ("etcd-events", "etcd_events")):
        vms = site["vms"][key]
        got = next(c for c in data["control_plane"]["clusters"] if c["name"] == cluster)
        assert got["quorum"] == len(vms) // 2 + 1
        for dc in site["dcs"]:
            left = len(vms) - sum(1 for vm in vms if vm["dc"] == dc["name"])
            assert got["survives"][dc["name"]] == (left >= len(vms) // 2 + 1)

    # Rack space: hosts minus ToR, nodes and VMs in the rack.
    vm_racks = [vm["rack"] for role in site["vms"].values() for vm in role]
    rows = {r["rack"]: r for r in data["racks"]["racks"]}
    for _dc, r in racks:
        hosts = ipaddress.ip_network(r["subnet"]).num_addresses - 2
        assert rows[r["name"]]["free"] == hosts - 1 - rack_nodes(r) - vm_racks.count(r["name"])


# --- what-ifs --------------------------------------------------------------------------------------


def test_add_racks_dc2(tmp_path: Path):
    site, lock = raw_site(), raw_lock()
    data = capacity_json("--add-racks", "dc2=10")
    dc2 = next(dc for dc in site["dcs"] if dc["name"] == "dc2")
    counts = sorted(rack_nodes(r) for r in dc2["racks"])
    median = counts[(len(counts) - 1) // 2]
    added = 10 * median
    assert data["fits"] is True
    assert data["whatif"]["nodes_added"] == added
    new = data["whatif"]["synthetic_racks"]
    assert len(new) == 10 and all(r["dc"] == "dc2" and r["nodes"] == median for r in new)

    # Fresh, unique names, ASNs and subnets that collide with nothing in the site.
    existing_asns = {r["asn"] for dc in site["dcs"] for r in dc["racks"]} | \
        {s["asn"] for dc in site["dcs"] for s in dc["spines"]}
    assert len({r["asn"] for r in new}) == 10 and not {r["asn"] for r in new} & existing_asns
    ap = site["address_plan"]
    taken = [ipaddress.ip_network(p["cidr"]) for p in ap["pod_pools"]] + \
        [ipaddress.ip_network(a) for a in ap["anycast"]] + \
        [ipaddress.ip_network(ap["service_cidr"]), ipaddress.ip_network(ap["fabric_pool"])] + \
        [ipaddress.ip_network(r["subnet"]) for dc in site["dcs"] for r in dc["racks"]]
    subnets = [ipaddress.ip_network(r["subnet"]) for r in new]
    for a, b in itertools.combinations(subnets + taken, 2):
        if a in subnets or b in subnets:
            assert not a.overlaps(b), (a, b)
    names = {r["name"] for dc in site["dcs"] for r in dc["racks"]}
    assert len({r["rack"] for r in new}) == 10 and not {r["rack"] for r in new} & names

    exp = pool_expectations(site, lock, added=added)
    (pool,) = data["pools"]["pools"]
    for key, value in exp.items():
        assert pool[key] == value, key
    assert data["pools"]["more_nodes_fit"]["dc2"] == exp["free"]

    numbers = model_numbers(site, {"dc2": [median] * 10})
    assert data["compute"]["per_dc"] == numbers
    assert data["compute"]["total"]["cores"] == sum(n["cores"] for n in numbers.values())
    per_node = min(253, ap["max_pods"])
    assert data["pods"]["total"] == sum(n["nodes"] for n in numbers.values()) * per_node
    spine_w = next(e for e in data["fabric"]["ecmp"] if e["dc"] == "dc2")["spine_width"]
    assert spine_w == len(dc2["racks"]) + 10
    assert next(r for r in data["racks"]["racks"] if r["rack"] == new[0]["rack"])["free"] == \
        ipaddress.ip_network(new[0]["subnet"]).num_addresses - 2 - 1 - median


def test_add_racks_is_what_a_render_allocates(site_copy):
    """The what-if's pool numbers equal a real render of the same racks written into a copy of the site."""
    site_dir = site_copy()
    data = capacity_json("--add-racks", "dc2=3", "--nodes-per-rack", "7", site=site_dir)
    text = (site_dir / "site.yaml").read_text()
    block = "".join(
        f"      - name: {r['rack']}\n        asn: {r['asn']}\n        subnet: {r['subnet']}\n"
        f"        tor: {{name: {r['tor']}, router_id: {ipaddress.ip_network(r['subnet'])[254]}}}\n"
        f"        node_groups:\n          - {{count: {r['nodes']}, name_pattern: '{r['rack']}-n{{index:02d}}', "
        f"hardware: {r['hardware']}}}\n"
        for r in data["whatif"]["synthetic_racks"])
    marker = "  - name: dc3\n"
    (site_dir / "site.yaml").write_text(text.replace(marker, block + marker))
    rc, out, err = run_cli("render", str(site_dir), "--out", str(site_dir.parent / "out"))
    assert rc == 0, err + out
    after = capacity_json(site=site_dir)
    for key in ("allocated", "free", "utilisation_pct", "largest_free_block", "largest_free_block_start"):
        assert after["pools"]["pools"][0][key] == data["pools"]["pools"][0][key], key
    assert after["compute"] == data["compute"]


def test_lose_dc1():
    site = raw_site()
    data = capacity_json("--lose-dc", "dc1")
    numbers = model_numbers(site)
    left = {k: sum(n[k] for dc, n in numbers.items() if dc != "dc1") for k in ("nodes", "cores", "memory_gib")}
    lost = data["compute"]["lose_dc"]
    assert (lost["nodes"], lost["cores"], lost["memory_gib"]) == (left["nodes"], left["cores"], left["memory_gib"])
    demand = site["demand"]
    assert lost["headroom_cores"] == left["cores"] - demand["cores"]
    assert lost["headroom_memory_gib"] == left["memory_gib"] - demand["memory_gib"]
    carries = left["cores"] >= demand["cores"] and left["memory_gib"] >= demand["memory_gib"]
    assert lost["carries_demand"] is carries and data["fits"] is carries
    assert data["pods"]["after_losing"]["total"] == left["nodes"] * min(253, site["address_plan"]["max_pods"])
    for c in data["control_plane"]["clusters"]:
        assert c["survives"]["dc1"] is (c["remaining"]["dc1"] >= c["quorum"])


def test_lost_dc_that_leaves_demand_uncarried_exits_1(site_copy):
    site_dir = site_copy()
    site = raw_site(site_dir)
    numbers = model_numbers(site)
    left = sum(n["cores"] for dc, n in numbers.items() if dc != "dc1")
    text = (site_dir / "site.yaml").read_text()
    (site_dir / "site.yaml").write_text(text.replace(f"cores: {site['demand']['cores']}\n", f"cores: {left + 1}\n"))
    rc, out, _ = run_cli("capacity", str(site_dir), "--lose-dc", "dc1")
    assert rc == 1
    lines = out.splitlines()
    assert lines[0] == "DOES NOT FIT"
    assert "losing dc1" in lines[1] and "short by 1 cores" in lines[1]
    assert run_cli("capacity", str(site_dir))[0] == 0  # the full site still carries it


def test_exhausting_the_pools_exits_1_and_names_pool_and_shortfall():
    site, lock = raw_site(), raw_lock()
    exp = pool_expectations(site, lock)
    dc1 = next(dc for dc in site["dcs"] if dc["name"] == "dc1")
    counts = sorted(rack_nodes(r) for r in dc1["racks"])
    needed = 40 * counts[(len(counts) - 1) // 2]
    short = needed - exp["free"]
    assert short > 0
    rc, out, _ = run_cli("capacity", str(EXAMPLE), "--add-racks", "dc1=40")
    assert rc == 1
    first, reason = out.splitlines()[:2]
    assert first == "DOES NOT FIT"
    pool = site["address_plan"]["pod_pools"][0]["name"]
    assert f"pool {pool} runs out first" in reason and f"{short} more /24 node prefixes" in reason
    data = capacity_json("--add-racks", "dc1=40", code=1)
    assert data["fits"] is False and data["pods"]["nodes_without_prefix"] == short


def test_limit_exceeded_exits_1():
    rc, out, _ = run_cli("capacity", str(EXAMPLE), "--ecmp-max-width", "8")
    assert rc == 1
    assert out.splitlines()[0] == "DOES NOT FIT" and out.splitlines()[1].startswith("  - LIM003 ")
    assert "ECMP width 8" in out.splitlines()[1]


def test_markdown_has_mermaid_charts():
    rc, out, _ = run_cli("capacity", str(EXAMPLE), "--lose-dc", "dc2", "--format", "markdown")
    assert rc == 0
    assert out.startswith("### ")
    blocks = out.split("```mermaid\n")[1:]
    assert len(blocks) == 2
    for block in blocks:
        body = block.split("```")[0].splitlines()
        assert body[0].startswith("%%{init: ") and body[1] == "xychart-beta"
        assert any(line.strip().startswith("x-axis [") and line.strip().endswith("]") for line in body)
        assert any(line.strip().startswith("bar [") for line in body)
        assert any(line.strip().startswith("line [") for line in body)  # headroom; demand
    assert '"without dc2 (what-if)"' in out


@pytest.mark.parametrize("args", [
    ("--add-racks", "dc9=1"), ("--add-racks", "dc1=0"), ("--add-racks", "dc1=-2"), ("--add-racks", "dc1"),
    ("--add-racks", "dc1=x"), ("--add-racks", "dc1=1,dc1=2"), ("--add-racks", "=3"), ("--lose-dc", "dc9"),
    ("--add-racks", "dc1=1", "--nodes-per-rack", "0"), ("--nodes-per-rack", "abc"), ("--nodes-per-rack", "5"),
    ("--ecmp-max-width", "0"), ("--format", "yaml"),
])
def test_bad_arguments_exit_2(args):
    rc, _out, _err = run_cli("capacity", str(EXAMPLE), *args)
    assert rc == 2


def tree_hashes(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                out[str(path)] = "dir"
    return out


def test_capacity_changes_nothing_on_disk(site_copy):
    site_dir = site_copy()
    project = site_dir.parent.parent
    rc, out, err = run_cli("render", str(site_dir))
    assert rc == 0, err + out
    rendered = project / "rendered"
    assert any(rendered.rglob("*"))
    before = tree_hashes(project / "inventories", rendered)
    whatifs = [(), ("--add-racks", "dc2=10"), ("--add-racks", "dc1=40,dc3=1", "--nodes-per-rack", "5")]
    for whatif, lose, fmt in itertools.product(whatifs, ((), ("--lose-dc", "dc1")), ("text", "json", "markdown")):
        rc, _, err = run_cli("capacity", str(site_dir), *whatif, *lose, "--format", fmt)
        assert rc in (0, 1), err
        assert tree_hashes(project / "inventories", rendered) == before, (whatif, lose, fmt)
    assert sorted(p.name for p in project.iterdir()) == ["inventories", "rendered"]


def test_10000_node_whatif_allocates_everything_in_memory(tmp_path: Path):
    """500 racks x 20 nodes with an empty lock: the allocator places 10 000 prefixes and the report follows.

    Speed is measured in benchmarks/, not asserted here."""
    racks = []
    for i in range(500):
        dc, r = i % 3 + 1, i // 3 + 1
        racks.append((dc, {"name": f"dc{dc}-r{r:03d}", "asn": 4_200_000_000 + i,
                           "subnet": f"10.{dc}.{r}.0/24", "tor": {"name": f"dc{dc}-r{r:03d}-tor",
                                                                  "router_id": f"10.254.{dc}.{r}"},
                           "node_groups": [{"count": 20, "name_pattern": f"dc{dc}-r{r:03d}-n{{index:02d}}",
                                            "hardware": "amd"}]}))
    site = {
        "site": "big", "hardware": {"amd": {"cores": 128, "memory_gib": 512}},
        "address_plan": {"pod_pools": [{"name": "pods", "cidr": "10.64.0.0/10"}], "anycast": ["10.200.1.0/24"],
                         "api_address": "10.201.0.1", "service_cidr": "10.192.0.0/16",
                         "fabric_pool": "10.255.0.0/20"},
        "dcs": [{"name": f"dc{d}", "spines": [{"name": f"dc{d}-spine1", "router_id": f"10.254.{d}.255",
                                                "asn": 65000 + d}],
                 "racks": [r for dc, r in racks if dc == d]} for d in (1, 2, 3)],
        "vms": {role: [{"name": f"{role.replace('_', '-')}{d}", "dc": f"dc{d}", "rack": f"dc{d}-r001",
                        "address": f"10.{d}.1.{200 + k}"} for d in (1, 2, 3)]
                for k, role in enumerate(("control_plane", "etcd", "etcd_events"))},
    }
    site_dir = tmp_path / "big"
    site_dir.mkdir()
    (site_dir / "site.yaml").write_text(yaml.safe_dump(site))
    data = capacity_json("--add-racks", "dc1=10", "--lose-dc", "dc2", site=site_dir, code=1)
    assert data["compute"]["total"]["nodes"] == 10_000 + 10 * 20
    assert data["pools"]["pools"][0]["allocated"] == 10_200
    assert not (site_dir / "allocations.yaml").exists()
    # ECMP at the spine: 167 ToRs in dc1 > 64 (the only failing limit).
    assert [c["check"] for c in data["fabric"]["checks"] if not c["ok"]] == ["LIM003"]
