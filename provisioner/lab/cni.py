"""Run a CNI network configuration list the way a container runtime does (CNI spec 1.0, section "Execution
of network configuration lists"): ADD calls each plugin in order, each given the previous plugin's result
as ``prevResult``; DEL calls them in reverse order, each given the final ADD result.

Used by the lab to wire pods with a node's rendered ``cni.conflist``, and by the daemons tier to prove every
rendered conflist with the real plugins (Debian's containernetworking-plugins).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

CNI_PATH = "/usr/lib/cni"


class CniError(RuntimeError):
    """A plugin failed: its CNI error (code, msg, details) is in the message."""


@dataclass(frozen=True)
class CniRuntime:
    """What the runtime supplies besides the conflist."""

    container_id: str
    netns: str  # a path: /var/run/netns/NAME or /proc/PID/ns/net
    ifname: str = "eth0"
    cni_path: str = CNI_PATH
    wrap: tuple[str, ...] = ()  # argv prefix that runs a plugin in the node's namespaces (nsenter ...)
    runtime_config: dict[str, Any] = field(default_factory=dict)  # e.g. {"portMappings": [...]}
    ipam_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"dataDir": tmp} for tests
    timeout: float = 30.0


def plugin_config(conflist: dict[str, Any], plugin: dict[str, Any], runtime: CniRuntime,
                  prev_result: dict[str, Any] | None) -> dict[str, Any]:
    conf = dict(plugin)
    conf["cniVersion"] = conflist["cniVersion"]
    conf["name"] = conflist["name"]
    if runtime.ipam_overrides and isinstance(conf.get("ipam"), dict):
        conf["ipam"] = {**conf["ipam"], **runtime.ipam_overrides}
    capabilities = plugin.get("capabilities") or {}
    wanted = {k: v for k, v in runtime.runtime_config.items() if capabilities.get(k)}
    if wanted:
        conf["runtimeConfig"] = wanted
    if prev_result is not None:
        conf["prevResult"] = prev_result
    return conf


def _exec(plugin_type: str, command: str, conf: dict[str, Any], runtime: CniRuntime) -> dict[str, Any]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": runtime.container_id,
        "CNI_NETNS": runtime.netns,
        "CNI_IFNAME": runtime.ifname,
        "CNI_PATH": runtime.cni_path,
    }
    argv = [*runtime.wrap, os.path.join(runtime.cni_path, plugin_type)]
    try:
        proc = subprocess.run(argv, input=json.dumps(conf), capture_output=True, text=True, env=env,
                              timeout=runtime.timeout)
    except FileNotFoundError:
        raise CniError(f"CNI plugin {plugin_type!r} is not installed in {runtime.cni_path}") from None
    except subprocess.TimeoutExpired:
        raise CniError(f"CNI plugin {plugin_type} {command} timed out after {runtime.timeout:.0f}s") from None
    if proc.returncode != 0:
        detail = (proc.stdout or proc.stderr).strip()
        try:
            err = json.loads(detail)
            extra = f" ({err['details']})" if err.get("details") else ""
            detail = f"code {err.get('code')}: {err.get('msg')}{extra}"
        except ValueError:
            pass
        raise CniError(f"CNI plugin {plugin_type} {command} failed: {detail}")
    out = proc.stdout.strip()
    return json.loads(out) if out else {}


def add(conflist: dict[str, Any], runtime: CniRuntime) -> dict[str, Any]:
    """ADD the network: every plugin in order; returns the final result (interfaces, ips, routes...)."""
    result: dict[str, Any] | None = None
    for plugin in conflist["plugins"]:
        result = _exec(plugin["type"], "ADD", plugin_config(conflist, plugin, runtime, result), runtime) or result
    return result or {}


def delete(conflist: dict[str, Any], runtime: CniRuntime, result: dict[str, Any] | None) -> None:
    """DEL the network: every plugin in reverse order, each given the ADD result (the spec's prevResult)."""
    errors = []
    for plugin in reversed(conflist["plugins"]):
        try:
            _exec(plugin["type"], "DEL", plugin_config(conflist, plugin, runtime, result), runtime)
        except CniError as exc:  # keep deleting: DEL must release what it can
            errors.append(str(exc))
    if errors:
        raise CniError("; ".join(errors))


def addresses(result: dict[str, Any]) -> list[str]:
    """The CIDR addresses an ADD result gives the container."""
    return [ip["address"] for ip in result.get("ips", [])]
