"""The playbooks' own file modules, run for real by ``ansible`` against localhost (no root, no daemons).

install_files replaces ``copy`` (content, validate, backup) for a host's files; etcd_files writes an etcd
member's directories, certificates and keys. Both decide on the host, in one module run, and must keep copy's
guarantees: a file that fails validation never replaces the installed one, a backup of the old file, nothing
written in check mode (but a diff), owner and mode enforced, a second run changes nothing.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

BIN = Path(sys.executable).parent
USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def run_module(module: str, args: dict, tmp: Path, *flags: str) -> dict:
    """``ansible localhost -m MODULE`` with the project's ansible.cfg; the module's JSON result."""
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LIBRARY": f"{ROOT / 'playbooks/library'}:{ROOT / 'playbooks/roles/etcd_member/library'}"}
    proc = subprocess.run([str(BIN / "ansible"), "localhost", "-c", "local", "-e",
                           f"ansible_python_interpreter={sys.executable}", "-m", module, "-a", json.dumps(args),
                           *flags], capture_output=True, text=True, env=env, cwd=tmp, timeout=120, check=False)
    at = proc.stdout.rfind("localhost | ")  # "localhost | CHANGED => {...}" (after any [ERROR] preamble)
    assert at >= 0, proc.stdout + proc.stderr
    status, _, body = proc.stdout[at:].partition(" => ")
    return json.loads(body) | {"_stdout": proc.stdout, "_failed": "FAILED" in status, "_rc": proc.returncode}


def entry(dest: Path, content: str, mode: str = "0640", **kw) -> dict:
    return {"dest": str(dest), "content": content, "owner": USER, "group": GROUP, "mode": mode, **kw}


def test_install_files_writes_validates_backs_up_and_is_idempotent(tmp_path: Path):
    a, b = tmp_path / "a.conf", tmp_path / "b.conf"
    b.write_text("old b\n")
    os.chmod(b, 0o600)
    res = run_module("install_files", {"files": [entry(a, "new a\n", "0644"),
                                                 entry(b, "new b\n", validate="grep -q new %s", backup=True)]},
                     tmp_path)
    assert res["changed"] is True, res
    assert a.read_text() == "new a\n" and oct(a.stat().st_mode & 0o777) == "0o644"
    assert b.read_text() == "new b\n" and oct(b.stat().st_mode & 0o640) == "0o640"
    backup = Path(res["files"][str(b)]["backup_file"])
    assert backup.read_text() == "old b\n"
    assert "backup_file" not in res["files"][str(a)]  # nothing to back up for a new file
    # the same again: nothing to do
    again = run_module("install_files", {"files": [entry(a, "new a\n", "0644"), entry(b, "new b\n")]}, tmp_path)
    assert again["changed"] is False, again
    # only the mode differs: changed, but the content is not (so no daemon reload is needed)
    os.chmod(a, 0o600)
    mode_only = run_module("install_files", {"files": [entry(a, "new a\n", "0644")]}, tmp_path)
    assert mode_only["changed"] is True and mode_only["files"][str(a)]["content_changed"] is False
    assert oct(a.stat().st_mode & 0o777) == "0o644"


def test_install_files_never_installs_a_file_that_fails_validation(tmp_path: Path):
    conf = tmp_path / "bird.conf"
    conf.write_text("good\n")
    res = run_module("install_files", {"files": [entry(conf, "broken\n", validate="grep -q good %s",
                                                       backup=True)]}, tmp_path)
    assert res["_failed"] and res["_rc"] != 0 and "validation failed" in res["msg"], res
    assert conf.read_text() == "good\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".bird", "bird"))) == ["bird.conf"]


def test_install_files_check_mode_writes_nothing_and_shows_the_diff(tmp_path: Path):
    conf = tmp_path / "frr.conf"
    conf.write_text("router bgp 65101\n")
    res = run_module("install_files", {"files": [entry(conf, "router bgp 65102\n")]}, tmp_path, "--check",
                     "--diff")
    assert res["changed"] is True
    assert conf.read_text() == "router bgp 65101\n"
    assert "-router bgp 65101" in res["_stdout"] and "+router bgp 65102" in res["_stdout"]  # Ansible's diff display


def test_etcd_files_directories_keys_and_probe(tmp_path: Path):
    pki = tmp_path / "etc" / "pki"
    args = {"port": 1, "dirs": [{"path": str(tmp_path / "etc"), "owner": USER, "group": GROUP, "mode": "0700"},
                                {"path": str(pki), "owner": USER, "group": GROUP, "mode": "0700"}],
            "files": [entry(pki / "server.key", "KEY\n", "0600"), entry(pki / "ca.crt", "CA\n", "0644")],
            "probe": [str(tmp_path / "etc" / "etcd.conf.yml")], "health": "/bin/true"}
    check = run_module("etcd_files", args, tmp_path, "--check")
    assert check["changed"] is True and not pki.exists()  # check mode creates nothing
    res = run_module("etcd_files", args, tmp_path)
    assert res["changed"] is True and res["listening"] is False and res["healthy"] is False  # nothing on port 1
    assert (pki / "server.key").read_text() == "KEY\n" and oct((pki / "server.key").stat().st_mode & 0o777) == "0o600"
    assert oct(pki.stat().st_mode & 0o777) == "0o700"
    assert res["files"] == {str(tmp_path / "etc" / "etcd.conf.yml"): {"exists": False}}
    assert run_module("etcd_files", args, tmp_path)["changed"] is False
