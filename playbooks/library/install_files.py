#!/usr/bin/python
"""Install several files in one round trip: validated, backed up, atomically replaced; check mode and diff."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shlex
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.provisioner_files import file_facts

DOCUMENTATION = r"""
module: install_files
short_description: Install files whose content, owner, group or mode differ, in one round trip
description:
  - For each entry of O(files) whose installed content, owner, group or mode differs from the wanted ones,
    writes the content to a temporary file next to the destination, runs its O(files[].validate) command on it
    (C(%s) is the temporary file; a failure leaves the installed file untouched and fails the module), keeps a
    backup of the installed file when O(files[].backup) and renames the new file into place.
  - The same decisions as C(ansible.builtin.copy) with C(content), C(validate) and C(backup), for several files
    at once: a play that installs two files on every host pays one module run instead of two stats, two
    transfers and two module runs. Supports check mode and diff mode. Contents are module arguments: tasks whose
    files hold secrets must set C(no_log).
options:
  files:
    description: "entries {dest, content, owner, group, mode, validate (optional), backup (default false),
      create_only (default false: write only when dest does not exist yet)}"
    type: list
    elements: dict
    required: true
"""


def install(module: AnsibleModule, entry: dict) -> dict:
    dest = entry["dest"]
    data = str(entry["content"]).encode("utf-8")
    mode = int(str(entry["mode"]), 8)
    owner, group = str(entry["owner"]), str(entry.get("group") or entry["owner"])
    now = file_facts(dest)
    want = {"exists": True, "checksum": hashlib.sha1(data).hexdigest(), "owner": owner, "group": group,
            "mode": f"{mode:04o}"}
    if entry.get("create_only") and now.get("exists"):
        # a file another program owns once it exists (anycast-healthchecker's BIRD set): only ever created
        return {"dest": dest, "changed": False, "content_changed": False}
    result: dict = {"dest": dest, "changed": now != want, "content_changed": now.get("checksum") != want["checksum"]}
    if module._diff and result["content_changed"]:
        before = ""
        if now.get("exists"):
            with open(dest, encoding="utf-8", errors="replace") as fh:
                before = fh.read()
        result["diff"] = {"before_header": dest, "after_header": dest, "before": before,
                          "after": data.decode("utf-8", errors="replace")}
    if not result["changed"] or module.check_mode:
        return result
    uid, gid = pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
    os.makedirs(os.path.dirname(dest) or ".", mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest) or ".", prefix=f".{os.path.basename(dest)}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
        if entry.get("validate"):
            cmd = str(entry["validate"])
            argv = shlex.split(cmd.replace("%s", shlex.quote(tmp))) if "%s" in cmd else [*shlex.split(cmd), tmp]
            rc, out, err = module.run_command(argv)
            if rc != 0:
                module.fail_json(msg=f"{dest}: validation failed ({' '.join(argv[:1])} exit {rc}): "
                                     f"{(err or out).strip()[-500:]}", rc=rc)
        if entry.get("backup") and now.get("exists"):
            backup = f"{dest}.{os.getpid()}.{time.strftime('%Y-%m-%d@%H:%M:%S')}~"
            shutil.copy2(dest, backup)
            result["backup_file"] = backup
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return result


def main() -> None:
    module = AnsibleModule(argument_spec={"files": {"type": "list", "elements": "dict", "required": True}},
                           supports_check_mode=True)
    results = []
    try:
        for entry in module.params["files"]:
            results.append(install(module, entry))
    except (KeyError, OSError) as exc:
        module.fail_json(msg=f"{type(exc).__name__}: {exc}", files=results)
    diff = [r.pop("diff") for r in results if "diff" in r]
    extra = {"diff": diff} if diff else {}  # a diff (and Ansible's file-diff event) only when content changes
    module.exit_json(changed=any(r["changed"] for r in results), files={r["dest"]: r for r in results}, **extra)


if __name__ == "__main__":
    main()
