"""The held-out-style corpus of issue 14: fourteen classes of bad input and their neighbours.

Every case asserts the exit code, a message that names file:line (and the object or field), no
traceback, and that the site directory and the rendered tree are byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.cli import main
from provisioner.write import read_tree
from tests.conftest import LAB
from tests.helpers import run_cli

LAB_TEXT = (LAB / "site.yaml").read_text()
LOCK_TEXT = (LAB / "allocations.yaml").read_text()
IPV4 = re.compile(r"\b[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?:/[0-9]+)?")

# A rack inserted in the middle of dc1: its nodes are allocated after every existing one, so from then
# on the lock is no longer what first-fit in site order would produce (the 640-node case).
MID_RACK = """\
      - name: dc1-r3
        asn: 65103
        subnet: 198.18.13.0/24
        tor: {name: dc1-r3-tor, router_id: 198.18.13.254}
        node_groups:
          - {count: 2, name_pattern: 'dc1-r3-n{index}', hardware: amd-128c-512g}
"""


def with_mid_rack(text: str) -> str:
    marker = "      - name: dc1-r2\n"
    assert marker in text
    return text.replace(marker, MID_RACK + marker, 1)


def snapshot(*roots: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def line_of(text: str, fragment: str) -> int:
    assert fragment in text, fragment
    return text[: text.index(fragment)].count("\n") + 1


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab rendered once, after a rack was inserted mid-DC: a lock and a tree bad input must not touch."""
    base = tmp_path_factory.mktemp("corpus")
    site = base / "inventories" / "lab"
    shutil.copytree(LAB, site)
    (site / "site.yaml").write_text(with_mid_rack(LAB_TEXT))
    code, _, err = run_cli("render", str(site), "--out", str(base / "out"))
    assert code == 0, err
    return base


@pytest.fixture
def work(rendered: Path, tmp_path: Path) -> Path:
    base = tmp_path / "w"
    shutil.copytree(rendered, base)
    return base


def refused(base: Path, *commands: list[str], code: int = 2, where: str, message: str) -> str:
    """Run each command; every one exits ``code`` naming ``where`` and ``message``; nothing changes."""
    site, out = base / "inventories" / "lab", base / "out"
    before = snapshot(site, out)
    err = ""
    for command in commands:
        rc, stdout, err = run_cli(*[a.replace("SITE", str(site)).replace("OUT", str(out)) for a in command])
        assert rc == code, f"{command}: exit {rc}\n{stdout}{err}"
        assert where in err, f"{where!r} not in:\n{err}"
        assert message in err, f"{message!r} not in:\n{err}"
        assert "Traceback" not in err
    assert snapshot(site, out) == before
    return err


VALIDATE_PLAN_RENDER = (["validate", "SITE"], ["plan", "SITE", "--out", "OUT"], ["render", "SITE", "--out", "OUT"])


# --- 1. a lock section of the wrong type --------------------------------------------------------------

@pytest.mark.parametrize("section", ["pod_cidrs", "node_addresses", "fabric_links"])
@pytest.mark.parametrize("value", ["[]", "false", "0", "''", ""])
def test_1_lock_section_of_the_wrong_type(work: Path, section: str, value: str):
    lock = work / "inventories" / "lab" / "allocations.yaml"
    lines = lock.read_text().split("\n")
    start = lines.index(f"{section}:") if f"{section}:" in lines else lines.index(f"{section}: {{}}")
    end = start + 1
    while end < len(lines) and lines[end].startswith("  "):
        end += 1
    lines[start:end] = [f"{section}: {value}".rstrip()]
    lock.write_text("\n".join(lines))
    refused(work, *VALIDATE_PLAN_RENDER, ["check", "SITE"], where=f"allocations.yaml:{start + 1}: {section}:",
            message="must be a mapping")


# --- 2. a truncated lock -----------------------------------------------------------------------------

def test_2_lock_truncated_at_every_line_is_refused_or_moves_nothing(work: Path):
    """Cut at each line boundary: either exit 2 (nothing written) or a render that reproduces the lock."""
    site, out = work / "inventories" / "lab", work / "out"
    lock = site / "allocations.yaml"
    full = lock.read_text()
    lines = full.split("\n")
    outcomes = {"refused": 0, "same": 0}
    for n in range(len(lines)):
        lock.write_text("\n".join(lines[:n]) + ("\n" if n else ""))
        before = snapshot(site, out)
        rc, _, err = run_cli("render", str(site), "--out", str(out))
        assert "Traceback" not in err
        if rc == 2:
            assert snapshot(site, out) == before, f"cut at line {n}: exit 2 but something was written"
            outcomes["refused"] += 1
        else:
            assert rc == 0, err
            assert lock.read_text() == full, f"cut at line {n}: the lock came back different:\n{err}"
            outcomes["same"] += 1
    assert outcomes["refused"] > len(lines) // 2


def test_2_empty_lock_with_a_rendered_tree_names_what_would_move(work: Path):
    lock = work / "inventories" / "lab" / "allocations.yaml"
    lock.write_text("")
    err = refused(work, *VALIDATE_PLAN_RENDER[1:], where="allocations.yaml:",
                  message="locked allocations would move")
    assert "pod_cidrs.dc1-r2-n1: 198.19.2.0/24 would become 198.19.4.0/24" in err
    assert ".provisioner-allocations.yaml" in err and "--allow-moves" in err
    lock.unlink()
    refused(work, ["render", "SITE", "--out", "OUT"], where="allocations.yaml", message="would move")


def test_2_allow_moves_is_the_explicit_way_and_plan_shows_the_moves(work: Path):
    site, out = work / "inventories" / "lab", work / "out"
    (site / "allocations.yaml").unlink()
    rc, text, _ = run_cli("plan", str(site), "--out", str(out), "--allow-moves", "--exit-code")
    m = re.search(r"MOVES \(--allow-moves\): ([0-9]+) locked allocations get new values", text)
    assert rc == 1 and m and int(m.group(1)) > 10, text
    assert re.search(r"pod_cidrs +dc1-r2-n1 +198\.19\.2\.0/24 +198\.19\.4\.0/24", text)
    rc, text, err = run_cli("render", str(site), "--out", str(out), "--allow-moves")
    assert rc == 0, err
    assert f"moved (--allow-moves): {m.group(1)} locked allocations" in text
    # After the deliberate move the tree and the lock agree again: a plain render changes nothing.
    assert run_cli("plan", str(site), "--out", str(out), "--exit-code")[0] == 0


def test_2_git_history_is_a_record_too(work: Path, tmp_path: Path):
    """No rendered tree at hand (a fresh --out), but the lock is committed: git HEAD says what would move."""
    site = work / "inventories" / "lab"
    env_git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run([*env_git, "-C", str(work), "add", "inventories"], check=True)
    subprocess.run([*env_git, "-C", str(work), "commit", "-qm", "site"], check=True)
    (site / "allocations.yaml").write_text("")
    fresh = tmp_path / "fresh"
    rc, _, err = run_cli("render", str(site), "--out", str(fresh))
    assert rc == 2 and "git HEAD:allocations.yaml" in err and "pod_cidrs.dc1-r2-n1" in err
    assert not fresh.exists()


# --- 3. a reserved address handed to another object -------------------------------------------------

def test_3_a_removed_nodes_reserved_address_cannot_be_reused(work: Path):
    site = work / "inventories" / "lab"
    text = (site / "site.yaml").read_text()
    # dc1-r3-n2 (address 198.18.13.2 from the lock) leaves; a new explicit node takes its address.
    text = text.replace("{count: 2, name_pattern: 'dc1-r3-n{index}', hardware: amd-128c-512g}",
                        "{count: 1, name_pattern: 'dc1-r3-n{index}', hardware: amd-128c-512g}")
    text = text.replace("          - {count: 1, name_pattern: 'dc1-r3-n{index}'",
                        "          - {hostname: dc1-r3-x, address: 198.18.13.2, hardware: amd-128c-512g}\n"
                        "          - {count: 1, name_pattern: 'dc1-r3-n{index}'")
    text = text.replace("        node_groups:\n          - {hostname: dc1-r3-x",
                        "        nodes:\n          - {hostname: dc1-r3-x")
    text = text.replace("          - {count: 1, name_pattern: 'dc1-r3-n{index}'",
                        "        node_groups:\n          - {count: 1, name_pattern: 'dc1-r3-n{index}'")
    (site / "site.yaml").write_text(text)
    line = line_of(text, "{hostname: dc1-r3-x")
    refused(work, *VALIDATE_PLAN_RENDER, where=f"site.yaml:{line}: node dc1-r3-x: address:",
            message="198.18.13.2 is reserved for the removed node dc1-r3-n2 (")
    # Once released, the address is free for the new node.
    assert run_cli("release", str(site), "dc1-r3-n2")[0] == 0
    assert run_cli("render", str(site), "--out", str(work / "out"))[0] == 0


def test_3_a_vm_on_a_removed_nodes_address(work: Path):
    site = work / "inventories" / "lab"
    text = (site / "site.yaml").read_text().replace("{count: 2, name_pattern: 'dc1-r3-n{index}'",
                                                    "{count: 1, name_pattern: 'dc1-r3-n{index}'")
    text = text.replace("rack: dc1-r2, address: 198.18.12.201", "rack: dc1-r3, address: 198.18.13.2")
    (site / "site.yaml").write_text(text)
    line = line_of(text, "rack: dc1-r3, address: 198.18.13.2")
    refused(work, ["render", "SITE", "--out", "OUT"], where=f"site.yaml:{line}: etcd VM etcd1",
            message="reserved for the removed node dc1-r3-n2")


# --- 4. reordering dcs: --------------------------------------------------------------------------------

def test_4_reordering_dcs_renumbers_nothing(work: Path):
    site, out = work / "inventories" / "lab", work / "out"
    lock_before = (site / "allocations.yaml").read_bytes()
    tree_before = read_tree(out)
    text = (site / "site.yaml").read_text()
    i1, i2, i3, iv = (text.index(m) for m in ("  - name: dc1\n", "  - name: dc2\n", "  - name: dc3\n", "\nvms:"))
    (site / "site.yaml").write_text(text[:i1] + text[i3:iv] + "\n" + text[i2:i3] + text[i1:i2].rstrip("\n")
                                    + text[iv:])
    rc, _, err = run_cli("render", str(site), "--out", str(out))
    assert rc == 0, err
    assert (site / "allocations.yaml").read_bytes() == lock_before
    # Switch and node configs may list things in the new site order; no address or prefix in them changes.
    tree_after = read_tree(out)
    assert set(tree_after) == set(tree_before)
    for path, text in tree_before.items():
        if not path.startswith(("spines/", "tors/", "nodes/")):
            continue
        assert sorted(IPV4.findall(text)) == sorted(IPV4.findall(tree_after[path])), path


def test_4_a_lock_written_before_link_ids_were_sorted_is_adopted(work: Path):
    """dc2 listed before dc1 used to name the link dc2-spine1~dc1-spine1; that entry keeps its /31."""
    site, out = work / "inventories" / "lab", work / "out"
    lock = site / "allocations.yaml"
    entry = next(line for line in lock.read_text().splitlines() if line.startswith("  dc1-spine1~dc2-spine1: "))
    lock.write_text(lock.read_text().replace(entry, entry.replace("dc1-spine1~dc2-spine1", "dc2-spine1~dc1-spine1")))
    rc, plan, _ = run_cli("plan", str(site), "--out", str(out), "--exit-code")
    assert rc == 1 and "0 fabric links to add; 0 fabric links to free" in plan
    assert run_cli("render", str(site), "--out", str(out))[0] == 0
    assert entry + "\n" in lock.read_text()


# --- 5-7. cross-field rules for what reaches a daemon ------------------------------------------------

@dataclass(frozen=True)
class SiteCase:
    id: str
    old: str
    new: str
    where: str  # "site.yaml:<line of `anchor`>: <object/field>:"
    anchor: str
    message: str


SITE_CASES = [
    SiteCase("5-keepalive-above-hold", "  hold_time: 9\n  keepalive: 3", "  hold_time: 3\n  keepalive: 21845",
             "bgp.keepalive", "keepalive: 21845", "must be at most a third of hold_time 3s"),
    SiteCase("5-keepalive-half-hold", "  keepalive: 3", "  keepalive: 5", "bgp.keepalive", "keepalive: 5",
             "at most 3s"),
    SiteCase("6-peer-equals-client", "  inter_dc_rtt_ms: 100", "  inter_dc_rtt_ms: 100\n  peer_port: 2379",
             "etcd.peer_port", "peer_port: 2379", "also client_port"),
    SiteCase("6-events-ssh", "  inter_dc_rtt_ms: 100", "  inter_dc_rtt_ms: 100\n  events_client_port: 22",
             "etcd.events_client_port", "events_client_port: 22", "well-known port"),
    SiteCase("6-events-bgp", "  inter_dc_rtt_ms: 100", "  inter_dc_rtt_ms: 100\n  events_peer_port: 179",
             "etcd.events_peer_port", "events_peer_port: 179", "well-known port"),
    SiteCase("6-kubelet-port", "  inter_dc_rtt_ms: 100", "  inter_dc_rtt_ms: 100\n  client_port: 10250",
             "etcd.client_port", "client_port: 10250", "port of kubelet"),
    SiteCase("7-prefix-too-small", "node_prefix_len: 24}", "node_prefix_len: 28}",
             "pod pool pods: node_prefix_len", "node_prefix_len: 28}",
             "a /28 per node gives 13 pod addresses"),
    SiteCase("14-dc-named-like-a-host", "  - name: dc2\n", "  - name: cp2\n", "dc cp2: name", "  - name: cp2\n",
             "is also a host name (control-plane VM cp2"),
    SiteCase("14-host-named-like-a-group", "{name: etcd1, dc: dc1", "{name: nodes, dc: dc1", "etcd VM nodes: name",
             "{name: nodes, dc: dc1", "Ansible group"),
    SiteCase("15-did-you-mean-key", "        subnet: 198.18.12.0/24", "        subent: 198.18.12.0/24",
             "rack dc1-r2: subent", "subent:", "unknown key 'subent'; did you mean 'subnet'?"),
    SiteCase("15-did-you-mean-rack", "rack: dc1-r2, address: 198.18.12.201", "rack: dc1-r02, address: 198.18.12.201",
             "etcd VM etcd1: rack", "rack: dc1-r02", "did you mean 'dc1-r2'?"),
    SiteCase("15-named-duplicate-asn", "        asn: 65202", "        asn: 65201", "rack dc2-r2: asn",
             "asn: 65201\n        subnet: 198.18.22.0/24",
             "ASN 65201 is also used by rack dc2-r1 (line"),
    SiteCase("long-value-cut", "hostname: dc1-r1-n2,", "hostname: " + "x" * 20000 + ",", "hostname", "x" * 50,
             "more characters)"),
]


def _site_text(case: SiteCase) -> str:
    text = with_mid_rack(LAB_TEXT)
    assert case.old in text, case.id
    text = text.replace(case.old, case.new, 1)
    if case.id == "14-dc-named-like-a-host":
        text = text.replace("dc: dc2,", "dc: cp2,")
    return text


@pytest.mark.parametrize("case", SITE_CASES, ids=lambda c: c.id)
def test_cross_field_rules_and_named_errors(work: Path, case: SiteCase):
    text = _site_text(case)
    (work / "inventories" / "lab" / "site.yaml").write_text(text)
    line = line_of(text, case.anchor)
    err = refused(work, *VALIDATE_PLAN_RENDER, where=f"site.yaml:{line}:", message=case.message)
    assert f" {case.where}:" in err
    assert max(len(line) for line in err.splitlines()) < 2500


def test_7_max_pods_reaches_the_kubelet(rendered: Path):
    import yaml

    docs = list(yaml.safe_load_all((rendered / "out" / "control-plane" / "kubeadm-config.yaml").read_text()))
    kubelet = [d for d in docs if d and d["kind"] == "KubeletConfiguration"]
    assert kubelet == [{"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
                        "maxPods": 110}]
    boot = list(yaml.safe_load_all((rendered / "out" / "control-plane" / "cp1" / "kubeadm-bootstrap.yaml").read_text()))
    assert [d["kind"] for d in boot if d] == ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"]


def test_7_a_28_fits_max_pods_13(work: Path):
    site = work / "inventories" / "lab"
    (site / "site.yaml").write_text(with_mid_rack(LAB_TEXT).replace("max_pods: 110", "max_pods: 13").replace(
        "node_prefix_len: 24}", "node_prefix_len: 28}"))
    rc, _, err = run_cli("validate", str(site), "--allow-moves")
    assert rc == 0 or "node_prefix_len" not in err


# --- 8. YAML that the parser turns into other exceptions ---------------------------------------------

YAML_BOMBS = [
    ("complex-key", "? [a, b]\n: 1\n", 1, "a key must be a plain name"),
    ("bad-int", "site: !!int abc\n", 1, "'abc' is not a valid int"),
    ("bad-bool", "site: !!bool maybe\n", 1, "'maybe' is not a valid bool"),
    ("bad-date", "x:\n  expires: 2026-02-29\n", 2, "'2026-02-29' is not a valid date"),
    ("bad-timestamp", "x: !!timestamp nope\n", 1, "not a valid date"),
    ("deep", "x: " + "[" * 100 + "]" * 100 + "\n", 1, "nested deeper than"),
]


@pytest.mark.parametrize("target", ["site.yaml", "allocations.yaml", "check.yaml", "waivers.yaml"])
@pytest.mark.parametrize(("name", "text", "line", "message"), YAML_BOMBS, ids=[b[0] for b in YAML_BOMBS])
def test_8_parser_exceptions_are_input_errors(work: Path, target: str, name: str, text: str, line: int,
                                              message: str):
    (work / "inventories" / "lab" / target).write_text(text)
    commands = [["check", "SITE"]] if target in ("check.yaml", "waivers.yaml") else list(VALIDATE_PLAN_RENDER)
    refused(work, *commands, where=f"{target}:{line}:", message=message)


def test_8_a_waiver_expiring_on_a_date_that_does_not_exist(work: Path):
    (work / "inventories" / "lab" / "waivers.yaml").write_text(
        "waivers:\n  - {id: BGP001, object: x, reason: test,\n     expires: 2026-02-29}\n")
    refused(work, ["check", "SITE"], where="waivers.yaml:3:", message="'2026-02-29' is not a valid date")


# --- 10. plan --exit-code and render agree --------------------------------------------------------------

def _reorder_lock(text: str) -> str:
    lines = text.split("\n")
    start = lines.index("pod_cidrs:") + 1
    end = start
    while lines[end].startswith("  "):
        end += 1
    lines[start:end] = list(reversed(lines[start:end]))
    return "\n".join(lines)


@pytest.mark.parametrize("edit", [
    pytest.param(_reorder_lock, id="hand-reordered"),
    pytest.param(lambda t: t.replace("version: 1\n", ""), id="missing-version"),
    pytest.param(lambda t: t.replace("pod_cidrs:\n",
                                     "pod_cidrs:\n  zz-gone: 198.19.30.0/24\n  aa-gone: 198.19.31.0/24\n"),
                 id="out-of-order-orphans"),
    pytest.param(lambda t: t.replace("  dc1-r1-n1: ", '  "dc1-r1-n1": '), id="quoted-key"),
    pytest.param(lambda t: t.replace("\n", "\r\n"), id="crlf"),
])
def test_10_plan_says_changes_whenever_render_rewrites_the_lock(work: Path, edit: Callable[[str], str]):
    site, out = work / "inventories" / "lab", work / "out"
    lock = site / "allocations.yaml"
    lock.write_bytes(edit(lock.read_text()).encode())
    before = lock.read_bytes()
    rc, text, err = run_cli("plan", str(site), "--out", str(out), "--exit-code")
    assert rc == 1, text + err
    assert "changes pending" in text
    rc, data, _ = run_cli("plan", str(site), "--out", str(out), "--format", "json")
    assert '"lock_rewritten": true' in data
    assert lock.read_bytes() == before
    assert run_cli("render", str(site), "--out", str(out))[0] == 0
    assert lock.read_bytes() != before
    assert run_cli("plan", str(site), "--out", str(out), "--exit-code")[0] == 0


# --- 11. allocation errors carry file:line --------------------------------------------------------------

def test_11_pool_exhausted_names_the_pool_line(work: Path):
    site = work / "inventories" / "lab"
    text = with_mid_rack(LAB_TEXT).replace("count: 2, name_pattern: 'dc1-r3-n{index}'",
                                           "count: 30, name_pattern: 'dc1-r3-n{index}'")
    (site / "site.yaml").write_text(text)
    refused(work, *VALIDATE_PLAN_RENDER, where=f"site.yaml:{line_of(text, '- {name: pods,')}: pod pool pods:",
            message="pod pools exhausted: 10 more node prefixes are needed (dc1: 10); the first without one is "
                    "in rack dc1-r3 (line")


def test_11_rack_full_names_the_node_group_line(work: Path):
    site = work / "inventories" / "lab"
    text = with_mid_rack(LAB_TEXT).replace("subnet: 198.18.13.0/24", "subnet: 198.18.13.0/29").replace(
        "router_id: 198.18.13.254}", "router_id: 198.18.13.254, address: 198.18.13.6}").replace(
        "count: 2, name_pattern: 'dc1-r3-n{index}'", "count: 8, name_pattern: 'dc1-r3-n{index}'")
    (site / "site.yaml").write_text(text)
    line = line_of(text, "{count: 8, name_pattern: 'dc1-r3-n{index}'")
    refused(work, *VALIDATE_PLAN_RENDER, where=f"site.yaml:{line}: node group dc1-r3-n{{index}}:",
            message="rack subnet 198.18.13.0/29 has no free address left for dc1-r3-n6")


def test_11_a_locked_address_claimed_by_site_yaml_names_both_lines(work: Path):
    site = work / "inventories" / "lab"
    text = with_mid_rack(LAB_TEXT).replace("tor: {name: dc1-r3-tor, router_id: 198.18.13.254}",
                                           "tor: {name: dc1-r3-tor, router_id: 198.18.13.1}")
    (site / "site.yaml").write_text(text)
    lock_line = line_of(LOCK_TEXT if "dc1-r3-n1" in LOCK_TEXT else (site / "allocations.yaml").read_text(),
                        "  dc1-r3-n1: 198.18.13.1")
    refused(work, *VALIDATE_PLAN_RENDER, where=f"site.yaml:{line_of(text, 'router_id: 198.18.13.1}')}: rack dc1-r3:",
            message=f"198.18.13.1 is locked to dc1-r3-n1 ({site / 'allocations.yaml'}:{lock_line})")


# --- 12. temp trees of a killed run ------------------------------------------------------------------

def test_12_leftover_temp_trees_are_cleaned_by_the_next_run(work: Path):
    site, out = work / "inventories" / "lab", work / "out"
    dead = 2**22 + 12345  # above pid_max's default: no such process
    for name in (f".out.new-{dead}", f".out.old-{dead}"):
        (work / name / "nodes").mkdir(parents=True)
        (work / name / "nodes" / "x").write_text("junk")
    (out / f".provisioner-new-{dead}").mkdir()
    (site / f".allocations.yaml.tmp-{dead}").write_text("junk")
    live = work / f".out.new-{1}"  # pid 1 is alive: a concurrent run's tree is left alone
    live.mkdir()
    (site / "site.yaml").write_text(with_mid_rack(LAB_TEXT).replace("count: 2, name_pattern: 'dc1-r3",
                                                                    "count: 3, name_pattern: 'dc1-r3"))
    rc, _, err = run_cli("render", str(site), "--out", str(out))
    assert rc == 0, err
    leftovers = sorted(p.name for p in [*work.iterdir(), *out.iterdir(), *site.iterdir()] if ".new-" in p.name
                       or ".old-" in p.name or ".tmp-" in p.name or "provisioner-new" in p.name)
    assert leftovers == [".out.new-1"]


def test_12_a_tree_renamed_away_by_a_killed_run_is_put_back(work: Path):
    out = work / "out"
    before = snapshot(out)
    dead = 2**22 + 54321
    out.rename(work / f".out.old-{dead}")
    rc, _, err = run_cli("render", str(work / "inventories" / "lab"), "--out", str(out))
    assert rc == 0, err
    assert {k.replace(f".out.old-{dead}", "out"): v for k, v in before.items()} == snapshot(out)


# --- 13. capacity --lose-dc "" -------------------------------------------------------------------------

def test_13_capacity_lose_dc_empty_is_usage_error(work: Path):
    refused(work, ["capacity", "SITE", "--lose-dc", ""], where="--lose-dc", message="empty string")


# --- Ctrl-C ------------------------------------------------------------------------------------------

def test_ctrl_c_exits_130_without_a_traceback(monkeypatch, capsys):
    import provisioner.commands.core as core

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(core, "compile_site", interrupted)
    assert main(["validate", str(LAB)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def test_environment_errors_exit_3_without_a_traceback(monkeypatch, capsys):
    import provisioner.commands.core as core

    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device", "/somewhere")

    monkeypatch.setattr(core, "compile_site", full)
    assert main(["validate", str(LAB)]) == 3
    err = capsys.readouterr().err
    assert err == "error: No space left on device: /somewhere\n"


def test_renumbering_a_pool_is_refused_until_allow_moves(work: Path):
    """A new fabric pool would give every link a new /31: exit 2 naming the lock lines, or moves when asked."""
    site, out = work / "inventories" / "lab", work / "out"
    text = with_mid_rack(LAB_TEXT).replace("fabric_pool: 198.18.250.0/24", "fabric_pool: 198.18.251.0/24")
    (site / "site.yaml").write_text(text)
    lock_text = (site / "allocations.yaml").read_text()
    err = refused(work, *VALIDATE_PLAN_RENDER,
                  where=f"allocations.yaml:{line_of(lock_text, '  dc1-spine1~dc1-r1-tor:')}: fabric_links.dc1-spine1~",
                  message="outside the fabric pool 198.18.251.0/24")
    assert "--allow-moves" in err
    rc, text_out, err = run_cli("render", str(site), "--out", str(out), "--allow-moves")
    assert rc == 0, err
    assert "fabric_links.dc1-spine1~dc1-r1-tor: 198.18.250.0/31 -> 198.18.251." in text_out
    assert "198.18.250." not in (site / "allocations.yaml").read_text()
