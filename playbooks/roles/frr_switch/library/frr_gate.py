#!/usr/bin/python
"""Health gate of an FRR switch: its BGP sessions are Established."""

from __future__ import annotations

import json
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.provisioner_files import file_facts

DOCUMENTATION = r"""
module: frr_gate
short_description: Report or wait for the BGP sessions of an FRR switch
description:
  - Reads C(vtysh -c 'show bgp neighbors json'). With O(wait=false) it only reports the peers and which of them
    are Established (a snapshot taken before a change), whether FRR runs (C(running)) and the sha1, owner,
    group and mode of each of O(files) (C(files)): the play's one probe round trip. With O(wait=true) it
    waits until every eBGP peer (the fabric) and every peer listed in O(required) is Established, or fails at
    the timeout. Read-only.
options:
  wait: {description: wait for the sessions instead of only reporting them, type: bool, default: true}
  required: {description: peers that must be Established (e.g. those that were before), type: list,
             elements: str, default: []}
  timeout: {description: seconds to wait, type: int, default: 60}
  interval: {description: seconds between polls, type: float, default: 1}
  vtysh: {description: vtysh command, type: str, default: vtysh}
  files: {description: files to report on (with wait=false), type: list, elements: str, default: []}
"""


def parse_neighbors(text: str) -> dict[str, dict]:
    """peer -> {state, remote_as, ebgp} from ``show bgp neighbors json``.

    A peer of a ``remote-as internal|external`` group shows remoteAs 0 until it is up, so eBGP is read from
    nbrExternalLink / nbrInternalLink, falling back to comparing the AS numbers.
    """
    data = json.loads(text or "{}")
    peers: dict[str, dict] = {}
    for addr, peer in data.items():
        if not isinstance(peer, dict) or "bgpState" not in peer:
            continue
        remote, local = peer.get("remoteAs"), peer.get("localAs")
        if peer.get("nbrExternalLink"):
            ebgp = True
        elif peer.get("nbrInternalLink"):
            ebgp = False
        else:
            ebgp = remote not in (0, None, local)
        peers[addr] = {"state": peer.get("bgpState"), "remote_as": remote, "ebgp": ebgp,
                       "description": peer.get("nbrDesc")}
    return peers


def main() -> None:
    module = AnsibleModule(argument_spec={
        "wait": {"type": "bool", "default": True},
        "required": {"type": "list", "elements": "str", "default": []},
        "timeout": {"type": "int", "default": 60},
        "interval": {"type": "float", "default": 1.0},
        "vtysh": {"type": "str", "default": "vtysh"},
        "files": {"type": "list", "elements": "str", "default": []},
    }, supports_check_mode=True)
    p = module.params
    probe = {}
    if not p["wait"]:
        rc, _out, _err = module.run_command([*p["vtysh"].split(), "-c", "show version"])
        probe = {"running": rc == 0, "files": {f: file_facts(f) for f in p["files"]}}
        if rc != 0:
            module.exit_json(changed=False, peers={}, established=[], **probe)
    deadline = time.monotonic() + p["timeout"]
    while True:
        rc, out, err = module.run_command([*p["vtysh"].split(), "-c", "show bgp neighbors json"])
        try:
            peers = parse_neighbors(out) if rc == 0 else {}
        except ValueError:
            peers = {}
        established = sorted(a for a, s in peers.items() if s["state"] == "Established")
        if not p["wait"]:
            module.exit_json(changed=False, peers=peers, established=established, **probe)
        down = sorted(a for a, s in peers.items() if s["ebgp"] and s["state"] != "Established")
        down += sorted(a for a in p["required"] if a not in established and a not in down)
        if rc == 0 and not down and peers:
            module.exit_json(changed=False, peers=peers, established=established)
        if time.monotonic() >= deadline:
            what = ", ".join(f"{a} ({peers.get(a, {}).get('state', 'absent')})" for a in down)
            msg = f"health gate failed after {p['timeout']}s: not Established: {what}" if peers else \
                f"health gate failed after {p['timeout']}s: no BGP peers ({(out + err).strip()[-200:]})"
            module.fail_json(msg=msg, peers=peers, established=established)
        time.sleep(p["interval"])


if __name__ == "__main__":
    main()
