"""Allocation stability: sequences of site edits, the lock compared after every render.

After each render: no locked entry changed value; an entry disappeared only when its owner was
released (nodes) or its switch was removed (fabric links); no value is held twice; every live node
and link has an entry; a second plan shows no change. Fixed seeds: the same sequences every run.
"""

from __future__ import annotations

import copy
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import LAB
from tests.helpers import run_cli


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:
        return True


class World:
    """The lab site as data, edited step by step, rendered after every edit."""

    def __init__(self, base: Path, seed: int):
        self.site_dir = base / "inventories" / "lab"
        shutil.copytree(LAB, self.site_dir)
        self.out = base / "out"
        self.data = yaml.safe_load((self.site_dir / "site.yaml").read_text())
        self.rng = random.Random(seed)
        self.serial = 0
        self.released: set[str] = set()
        self.lock = self.render()

    # --- helpers
    def save(self) -> None:
        (self.site_dir / "site.yaml").write_text(yaml.dump(self.data, Dumper=_Dumper, sort_keys=False))

    def render(self) -> dict:
        self.save()
        code, _, err = run_cli("render", str(self.site_dir), "--out", str(self.out))
        assert code == 0, err
        code, text, err = run_cli("plan", str(self.site_dir), "--out", str(self.out), "--exit-code")
        assert code == 0, f"render then plan is not a no-op:\n{text}{err}"
        return yaml.safe_load((self.site_dir / "allocations.yaml").read_text())

    def racks(self) -> list[tuple[dict, dict]]:
        return [(dc, rack) for dc in self.data["dcs"] for rack in dc["racks"]]

    def live_nodes(self) -> set[str]:
        out = set()
        for _dc, rack in self.racks():
            out.update(n["hostname"] for n in rack.get("nodes", []))
            for g in rack.get("node_groups", []):
                first = g.get("first_index", 1)
                out.update(g["name_pattern"].format(index=i) for i in range(first, first + g["count"]))
        return out

    def switches(self) -> set[str]:
        spines = {s["name"] for dc in self.data["dcs"] for s in dc["spines"]}
        return spines | {r["tor"]["name"] for _, r in self.racks()}

    def used_octets(self) -> set[int]:
        return {int(r["subnet"].split(".")[2]) for _, r in self.racks()}

    # --- edits
    def insert_rack(self) -> str:
        dc = self.rng.choice(self.data["dcs"])
        self.serial += 1
        octet = next(o for o in range(100, 250) if o not in self.used_octets())
        name = f"{dc['name']}-x{self.serial}"
        rack = {"name": name, "asn": 65500 + self.serial, "subnet": f"198.18.{octet}.0/24",
                "tor": {"name": f"{name}-tor", "router_id": f"198.18.{octet}.254"},
                "node_groups": [{"count": self.rng.randint(1, 2), "name_pattern": f"{name}-n{{index}}",
                                 "hardware": "amd-128c-512g"}]}
        dc["racks"].insert(self.rng.randint(0, len(dc["racks"])), rack)
        return f"insert rack {name}"

    def remove_node(self) -> str:
        candidates = [(r, n) for _, r in self.racks() for n in r.get("nodes", []) if len(r.get("nodes", [])) > 1]
        if not candidates:
            return self.insert_rack()
        rack, node = self.rng.choice(candidates)
        rack["nodes"].remove(node)
        return f"remove node {node['hostname']}"

    def add_node(self) -> str:
        grown = [r for _, r in self.racks() if r.get("node_groups")]
        if not grown:
            return self.insert_rack()
        rack = self.rng.choice(grown)
        rack["node_groups"][0]["count"] += 1
        return f"grow {rack['name']}"

    def release(self) -> str:
        orphans = sorted(set(self.lock["pod_cidrs"]) - self.live_nodes())
        if not orphans:
            return self.remove_node()
        victim = self.rng.choice(orphans)
        code, _, err = run_cli("release", str(self.site_dir), victim)
        assert code == 0, err
        self.released.add(victim)
        return f"release {victim}"

    def reorder_racks(self) -> str:
        dc = self.rng.choice(self.data["dcs"])
        self.rng.shuffle(dc["racks"])
        return f"shuffle racks of {dc['name']}"

    def reorder_dcs(self) -> str:
        self.rng.shuffle(self.data["dcs"])
        return "shuffle dcs"

    def rename_dc(self) -> str:
        dc = self.rng.choice(self.data["dcs"])
        old = dc["name"]
        self.serial += 1
        new = f"site{self.serial}"
        dc["name"] = new
        for role in ("control_plane", "etcd", "etcd_events"):
            for vm in self.data["vms"][role]:
                if vm["dc"] == old:
                    vm["dc"] = new
        return f"rename dc {old} -> {new}"

    def remove_empty_inserted_rack(self) -> str:
        inserted = [(dc, r) for dc, r in self.racks() if "-x" in r["name"]]
        if not inserted:
            return self.insert_rack()
        dc, rack = self.rng.choice(inserted)
        dc["racks"].remove(rack)
        return f"remove rack {rack['name']}"


STEPS: list[Callable[[World], str]] = [World.insert_rack, World.remove_node, World.add_node, World.release,
                                       World.reorder_racks, World.reorder_dcs, World.rename_dc,
                                       World.remove_empty_inserted_rack]


def check_step(world: World, before: dict, after: dict, what: str) -> None:
    live, switches = world.live_nodes(), world.switches()
    for section in ("pod_cidrs", "node_addresses", "fabric_links"):
        old, new = before[section] or {}, after[section] or {}
        for key, value in old.items():
            if key in new:
                assert new[key] == value, f"after {what}: {section}.{key} moved {value} -> {new[key]}"
            elif section == "fabric_links":
                a, b = key.split("~")
                assert a not in switches or b not in switches, f"after {what}: live link {key} lost its /31"
            else:
                assert key in world.released, f"after {what}: {section}.{key} dropped without a release"
        assert len(set(new.values())) == len(new), f"after {what}: a value is held twice in {section}"
    assert live <= set(after["pod_cidrs"]), f"after {what}: a live node has no pod prefix"


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_edit_sequences_never_move_an_allocation(tmp_path: Path, seed: int):
    world = World(tmp_path, seed)
    history = []
    steps = list(STEPS)  # every kind of edit at least once, in a seeded order, then seeded extras
    world.rng.shuffle(steps)
    steps += [world.rng.choice(STEPS) for _ in range(4)]
    for step in steps:
        what = step(world)
        history.append(what)
        before = copy.deepcopy(world.lock)
        world.lock = world.render()
        check_step(world, before, world.lock, " / ".join(history))


def test_the_issue_sequence_insert_mid_dc_then_lose_the_lock(tmp_path: Path):
    """Insert a rack mid-DC, render, lose the lock: refused; restored: nothing moved."""
    world = World(tmp_path, 0)
    dc1 = world.data["dcs"][0]
    dc1["racks"].insert(1, {"name": "dc1-mid", "asn": 65150, "subnet": "198.18.150.0/24",
                            "tor": {"name": "dc1-mid-tor", "router_id": "198.18.150.254"},
                            "node_groups": [{"count": 2, "name_pattern": "dc1-mid-n{index}",
                                             "hardware": "amd-128c-512g"}]})
    world.lock = world.render()
    saved = (world.site_dir / "allocations.yaml").read_bytes()
    (world.site_dir / "allocations.yaml").unlink()
    code, _, err = run_cli("render", str(world.site_dir), "--out", str(world.out))
    assert code == 2 and "would move" in err
    assert not (world.site_dir / "allocations.yaml").exists()
    (world.site_dir / "allocations.yaml").write_bytes(saved)
    before = copy.deepcopy(world.lock)
    world.lock = world.render()
    check_step(world, before, world.lock, "restore")
    assert (world.site_dir / "allocations.yaml").read_bytes() == saved
