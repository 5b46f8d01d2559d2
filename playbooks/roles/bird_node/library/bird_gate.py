#!/usr/bin/python
"""Health gate of a BIRD host: its ToR session is Established and it exports what it must."""

from __future__ import annotations

import re
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.provisioner_files import file_facts

DOCUMENTATION = r"""
module: bird_gate
short_description: Wait until a BIRD BGP session is Established and exports the expected prefixes
description:
  - Polls C(birdc show protocols all PROTOCOL) and C(birdc show route export PROTOCOL) until the session
    is Established, its neighbour is the expected address and every expected prefix is exported,
    or the timeout expires (then the module fails and reports what it saw). Read-only.
  - With O(wait=false) it is the play's probe, one round trip per host: it looks once and never fails, and
    also reports whether BIRD runs (C(running)), whether the gate would pass now (C(healthy)) and the sha1,
    owner, group and mode of each of O(files) (C(files)), so the play copies only what differs.
options:
  wait: {description: poll until the gate passes (else look once and report), type: bool, default: true}
  files: {description: files to report on (probe), type: list, elements: str, default: []}
  protocol: {description: BIRD protocol name of the ToR session, type: str, default: tor}
  neighbor: {description: address the session must be with (the ToR), type: str, required: true}
  exports: {description: prefixes that must be exported, type: list, elements: str, required: true}
  timeout: {description: seconds to wait, type: int, default: 60}
  interval: {description: seconds between polls, type: float, default: 1}
  birdc: {description: birdc command, type: str, default: birdc}
"""

PREFIX_LINE = re.compile(r"^(\d+\.\d+\.\d+\.\d+/\d+)\s")


def parse_protocol(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        for key, label in (("state", "BGP state:"), ("neighbor", "Neighbor address:"),
                           ("last_error", "Last error:")):
            if line.startswith(label):
                out[key] = line[len(label):].strip()
    return out


def parse_exports(text: str) -> list[str]:
    return sorted({m.group(1) for line in text.splitlines() if (m := PREFIX_LINE.match(line))})


def main() -> None:
    module = AnsibleModule(argument_spec={
        "wait": {"type": "bool", "default": True},
        "files": {"type": "list", "elements": "str", "default": []},
        "protocol": {"type": "str", "default": "tor"},
        "neighbor": {"type": "str", "required": True},
        "exports": {"type": "list", "elements": "str", "required": True},
        "timeout": {"type": "int", "default": 60},
        "interval": {"type": "float", "default": 1.0},
        "birdc": {"type": "str", "default": "birdc"},
    }, supports_check_mode=True)
    p = module.params
    birdc = p["birdc"].split()
    probe = {}
    if not p["wait"]:
        rc, _out, _err = module.run_command([*birdc, "-r", "show", "status"])
        probe = {"running": rc == 0, "files": {f: file_facts(f) for f in p["files"]}}
        if rc != 0:
            module.exit_json(changed=False, healthy=False, **probe)
    deadline = time.monotonic() + p["timeout"]
    seen: dict = {}
    while True:
        rc, out, err = module.run_command([*birdc, "-r", "show", "protocols", "all", p["protocol"]])
        proto = parse_protocol(out) if rc == 0 else {"error": (out + err).strip()[-200:]}
        rc2, out2, _ = module.run_command([*birdc, "-r", "show", "route", "export", p["protocol"]])
        exported = parse_exports(out2) if rc2 == 0 else []
        missing = sorted(set(p["exports"]) - set(exported))
        seen = {"protocol": p["protocol"], "session": proto, "exported": exported, "missing_exports": missing}
        ok = (proto.get("state") == "Established" and proto.get("neighbor") == p["neighbor"] and not missing)
        if ok or not p["wait"]:
            module.exit_json(changed=False, healthy=bool(ok), **probe, **seen)
        if time.monotonic() >= deadline:
            why = []
            if proto.get("neighbor") not in (None, p["neighbor"]):
                why.append(f"neighbour is {proto.get('neighbor')}, expected {p['neighbor']}")
            if proto.get("state") != "Established":
                why.append(f"session {p['protocol']} is {proto.get('state') or proto.get('error') or 'absent'}")
            if missing:
                why.append("not exported: " + ", ".join(missing))
            module.fail_json(msg=f"health gate failed after {p['timeout']}s: " + "; ".join(why), **seen)
        time.sleep(p["interval"])


if __name__ == "__main__":
    main()
