"""Shared by provisioner's Ansible modules (install_files, bird_gate, frr_gate, etcd_files): how a file on the host
compares with the one a rollout wants. Ansible ships it with each module (module_utils next to the playbooks,
and ``module_utils`` in provisioner/ansible.cfg)."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat


def file_facts(path: str) -> dict:
    """sha1, owner, group and mode of a regular file, as ``copy`` compares them; ``exists: false`` if absent."""
    try:
        st = os.stat(path)
    except OSError:
        return {"exists": False}
    if not stat.S_ISREG(st.st_mode):
        return {"exists": False}
    h = hashlib.sha1()  # the checksum copy uses
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(65536), b""):
            h.update(chunk)
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return {"exists": True, "checksum": h.hexdigest(), "owner": owner, "group": group,
            "mode": f"{stat.S_IMODE(st.st_mode):04o}"}
