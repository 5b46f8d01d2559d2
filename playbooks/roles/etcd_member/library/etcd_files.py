#!/usr/bin/python
"""An etcd member's state and files in one round trip: is it listening, its directories, certificates and keys."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.provisioner_files import file_facts

DOCUMENTATION = r"""
module: etcd_files
short_description: Probe an etcd member and install its directories, certificates and keys in one round trip
description:
  - Reports whether something listens on O(port) (before any change: C(listening)) and the sha1, owner, group
    and mode of each of O(probe) (C(files)).
  - Creates each of O(dirs) with its owner and mode, and writes each of O(files) whose content, owner, group or
    mode differs (atomically: a temporary file in the same directory, then rename). Reports C(written), the
    paths it wrote. Supports check mode. File contents are module arguments: use C(no_log) for keys.
options:
  port: {description: TCP port the member's clients use, type: int, required: true}
  dirs: {description: "directories: {path, owner, group, mode}", type: list, elements: dict, default: []}
  files: {description: "files: {dest, content, owner, group, mode}", type: list, elements: dict, default: []}
  probe: {description: files to only report on, type: list, elements: str, default: []}
  health: {description: "command whose success means the member is healthy, run when it listens (C(healthy))",
           type: str, default: ""}
"""


def _ids(owner: str, group: str) -> tuple[int, int]:
    return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid


def ensure_dir(path: str, owner: str, group: str, mode: int, check: bool) -> bool:
    uid, gid = _ids(owner, group)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not check:
            os.makedirs(path, mode=mode, exist_ok=True)
            os.chown(path, uid, gid)
            os.chmod(path, mode)
        return True
    if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, mode):
        return False
    if not check:
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    return True


def ensure_file(dest: str, content: str, owner: str, group: str, mode: int, check: bool) -> bool:
    data = content.encode("utf-8")
    now = file_facts(dest)
    want = {"exists": True, "checksum": hashlib.sha1(data).hexdigest(), "owner": owner, "group": group,
            "mode": f"{mode:04o}"}
    if now == want:
        return False
    if not check:
        uid, gid = _ids(owner, group)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".etcd_files.")
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, dest)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return True


def main() -> None:
    module = AnsibleModule(argument_spec={
        "port": {"type": "int", "required": True},
        "dirs": {"type": "list", "elements": "dict", "default": []},
        "files": {"type": "list", "elements": "dict", "default": []},
        "probe": {"type": "list", "elements": "str", "default": []},
        "health": {"type": "str", "default": ""},
    }, supports_check_mode=True)
    p = module.params
    rc, out, err = module.run_command(["ss", "-Hltn", f"sport = :{p['port']}"])
    if rc != 0:
        module.fail_json(msg=f"ss failed: {(out + err).strip()[-200:]}")
    listening = bool(out.strip())
    healthy = False
    if listening and p["health"]:
        hrc, _hout, _herr = module.run_command(p["health"], environ_update={"ETCDCTL_API": "3"})
        healthy = hrc == 0
    check = module.check_mode
    try:
        dirs = [d["path"] for d in p["dirs"]
                if ensure_dir(d["path"], d["owner"], d.get("group") or d["owner"], int(str(d["mode"]), 8), check)]
        written = [f["dest"] for f in p["files"]
                   if ensure_file(f["dest"], f["content"], f["owner"], f.get("group") or f["owner"],
                                  int(str(f["mode"]), 8), check)]
    except (KeyError, OSError) as exc:
        module.fail_json(msg=f"{type(exc).__name__}: {exc}")
    module.exit_json(changed=bool(dirs or written), listening=listening, healthy=healthy, dirs=dirs, written=written,
                     files={f: file_facts(f) for f in p["probe"]})


if __name__ == "__main__":
    main()
