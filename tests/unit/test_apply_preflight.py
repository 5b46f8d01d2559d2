"""Pre-flight parsing and evaluation: /proc/cpuinfo, /proc/meminfo, ip addr, ssh options, the model."""

from __future__ import annotations

from provisioner.apply import preflight as pf
from provisioner.pipeline import compile_site
from tests.conftest import LAB


def cpuinfo(sockets: int, cores: int, smt: int = 2, vendor: str = "AuthenticAMD", topology: bool = True) -> str:
    blocks = []
    n = 0
    for s in range(sockets):
        for t in range(smt):
            for c in range(cores):
                lines = [f"processor\t: {n}", f"vendor_id\t: {vendor}", "model name\t: AMD EPYC 9554 64-Core"]
                if topology:
                    lines += [f"physical id\t: {s}", f"siblings\t: {cores * smt}", f"core id\t\t: {c + 0 * t}",
                              f"cpu cores\t: {cores}"]
                blocks.append("\n".join(lines))
                n += 1
    return "\n\n".join(blocks) + "\n\n"


MEMINFO = "MemTotal:       528012345 kB\nMemFree:        500000000 kB\nMemAvailable:   510000000 kB\n"
IP_ADDR = """1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: eth0    inet 198.18.11.1/24 brd 198.18.11.255 scope global eth0\\       valid_lft forever preferred_lft forever
3: mgmt0    inet 198.19.240.11/20 scope global mgmt0\\       valid_lft forever preferred_lft forever
"""


def test_cpuinfo_counts_physical_cores_not_threads():
    assert pf.parse_cpuinfo(cpuinfo(2, 64)) == ("AuthenticAMD", 128, 256)
    assert pf.parse_cpuinfo(cpuinfo(1, 8, smt=1)) == ("AuthenticAMD", 8, 8)
    assert pf.parse_cpuinfo(cpuinfo(2, 24, vendor="GenuineIntel")) == ("GenuineIntel", 48, 96)
    # no topology lines (some hypervisors): every logical CPU counts as a core
    assert pf.parse_cpuinfo(cpuinfo(1, 4, smt=1, topology=False)) == ("AuthenticAMD", 4, 4)


def test_meminfo_and_addresses():
    assert pf.parse_meminfo(MEMINFO) == 528012345
    assert pf.parse_meminfo("") == 0
    assert pf.parse_addresses(IP_ADDR) == {"127.0.0.1/8", "198.18.11.1/24", "198.19.240.11/20"}


def test_parse_probe_and_evaluate():
    text = pf.SEPARATOR.join([cpuinfo(2, 64), MEMINFO, IP_ADDR, "bird\nbirdc\n"])
    facts = pf.parse_probe(text)
    good = pf.Expect("node", "AuthenticAMD", 128, 512, ("198.18.11.1/24",), ("bird", "birdc"))
    assert pf.evaluate(good, facts) == []
    bad = pf.Expect("node", "GenuineIntel", 96, 1024, ("198.18.11.2/24",), ("bird", "vtysh"))
    checks = [p[0] for p in pf.evaluate(bad, facts)]
    assert checks == ["cpu vendor", "physical cores", "memory", "underlay address", "software"]


def test_memory_tolerance():
    expect = pf.Expect("node", memory_gib=512)
    gib = 1024 * 1024

    def facts(kib: int) -> pf.Facts:
        return pf.Facts("AuthenticAMD", 1, 1, kib, frozenset(), frozenset())

    assert pf.evaluate(expect, facts(int(512 * gib * 0.97))) == []  # kernel and firmware reservations
    assert pf.evaluate(expect, facts(int(512 * gib * 15 / 16)))[0][0] == "memory"  # a missing DIMM


def test_ssh_option():
    args = "-o UserKnownHostsFile=/x/known_hosts -o StrictHostKeyChecking=yes -oIdentitiesOnly=yes"
    assert pf.ssh_option(args, "UserKnownHostsFile") == "/x/known_hosts"
    assert pf.ssh_option(args, "identitiesonly") == "yes"
    assert pf.ssh_option("-o 'UserKnownHostsFile /y'", "UserKnownHostsFile") == "/y"
    assert pf.ssh_option("", "UserKnownHostsFile") is None


def test_expectations_from_the_model():
    plan = compile_site(LAB).plan
    e = pf.expectations(plan)
    assert e["dc1-r1-n1"] == pf.Expect("node", "AuthenticAMD", 128, 512, ("198.18.11.1/24",), ("bird", "birdc"))
    assert e["cp1"].cores == 8 and e["cp1"].binaries == ("bird", "birdc")
    assert e["etcd1"].binaries == ("etcd", "etcdctl")
    assert e["dc1-r1-tor"].underlay[0] == "198.18.11.254/24" and e["dc1-r1-tor"].binaries == ("vtysh",)
    assert len(e["dc1-spine1"].underlay) == 4  # 2 ToRs + 2 other spines
    assert len(e) == len(plan.nodes) + len(plan.vms) + len(plan.tors) + len(plan.spines)


def test_targets_read_connection_parameters_from_the_overlay(tmp_path):
    from provisioner.render import render

    plan = compile_site(LAB).plan
    (tmp_path / "hosts.yml").write_text(render(plan)["ansible/hosts.yml"])
    (tmp_path / "overlay.yml").write_text(
        "all:\n  hosts:\n    dc1-r1-n1:\n      ansible_host: 198.19.240.11\n      ansible_user: root\n"
        "      ansible_ssh_private_key_file: /k/id\n"
        "      ansible_ssh_common_args: -o UserKnownHostsFile=/k/known_hosts -o StrictHostKeyChecking=yes\n")
    t1, t2 = pf.targets([tmp_path / "hosts.yml", tmp_path / "overlay.yml"], ["dc1-r1-n1", "dc1-r1-n2"], plan)
    assert (t1.address, t1.user, t1.key_file, t1.known_hosts) == ("198.19.240.11", "root", "/k/id", "/k/known_hosts")
    assert t2.address == "198.18.11.2" and t2.known_hosts == "~/.ssh/known_hosts"


def test_keys_accepted_by_parallel_probes_are_all_saved(tmp_path):
    """--accept-new-host-keys on a first bootstrap: 40 probes accept keys at once; every key reaches known_hosts
    (one write at the end), and a key recorded before is kept and offered to the host's client."""
    import threading

    import paramiko

    known_file = tmp_path / "known_hosts"
    old = paramiko.Ed25519Key.from_private_key_file(str(_ed25519_key(tmp_path / "old")))
    known_file.write_text(f"198.18.9.9 ssh-ed25519 {old.get_base64()}\n")
    key = paramiko.Ed25519Key.from_private_key_file(str(_ed25519_key(tmp_path / "new")))
    known = pf.KnownHosts()
    targets = [pf.Target(f"h{i}", f"198.18.1.{i}", known_hosts=str(known_file)) for i in range(40)]

    def accept(target: pf.Target) -> None:
        client = known.client(target, accept_new=True)
        client._policy.missing_host_key(client, target.address, key)

    threads = [threading.Thread(target=accept, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert known_file.read_text().count("\n") == 1, "nothing is written before save()"
    known.save()
    saved = paramiko.HostKeys(str(known_file))
    assert all(saved.lookup(t.address) for t in targets)
    assert saved.lookup("198.18.9.9")["ssh-ed25519"] == old
    fresh = pf.KnownHosts().client(pf.Target("x", "198.18.9.9", known_hosts=str(known_file)), accept_new=False)
    assert fresh.get_host_keys().lookup("198.18.9.9")["ssh-ed25519"] == old
    assert isinstance(fresh._policy, paramiko.RejectPolicy)


def _ed25519_key(path):
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path
