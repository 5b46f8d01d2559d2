"""Run directories and one ansible-runner run per batch.

Every apply (and rollback, and ``--check``) gets ``runs/<site>/<run_id>/``:

    run.json        what ran: mode, source, batches, per-host stats, status (ok | failed | refused | ...)
    tree/           the exact rendered tree pushed (placeholders only, never a secret value)
    ansible/        ansible-runner's private_data_dir: env/, artifacts/<NN-batch>/ (events, stdout, command)

Secrets: the values of ``@secret:NAME@`` placeholders come from Ansible Vault (``--secrets-file``, read by
ansible-playbook itself) or from the controller's environment. ansible-runner records the whole process
environment in ``artifacts/*/command``, so environment secrets are taken *out* of the environment for the
run and handed to ansible-playbook in a 0600 variables file in a private temporary directory outside the run
directory, deleted afterwards. As a last line of defence every file of the run directory is scanned for the
values after each batch and any occurrence is redacted (and reported).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import secrets as pysecrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..paths import ansible_cfg, playbooks_dir
from ..write import read_tree, write_file_atomic
from .rollout import Batch, BatchOutcome

PLAYBOOKS = playbooks_dir()
ANSIBLE_CFG = ansible_cfg()
PLACEHOLDER = re.compile(r"@secret:([A-Za-z_][A-Za-z0-9_]{0,63})@")
REDACTED = "********"


def secret_refs(tree: dict[str, str]) -> list[str]:
    return sorted({m for text in tree.values() for m in PLACEHOLDER.findall(text)})


@dataclass
class RunDir:
    root: Path
    run_id: str

    @property
    def path(self) -> Path:
        return self.root / self.run_id

    @property
    def tree_dir(self) -> Path:
        return self.path / "tree"

    @property
    def data_dir(self) -> Path:
        return self.path / "ansible"

    def meta(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "run.json").read_text())
        except (OSError, ValueError):
            return {}

    def save(self, meta: dict[str, Any]) -> None:
        write_file_atomic(self.path / "run.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")

    def tree(self) -> dict[str, str]:
        return read_tree(self.tree_dir)


def new_run_id() -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{pysecrets.token_hex(2)}"


def create_run(root: Path, tree: dict[str, str], meta: dict[str, Any]) -> RunDir:
    root.mkdir(parents=True, exist_ok=True)
    run = RunDir(root, new_run_id())
    run.path.mkdir(mode=0o700)
    run.data_dir.mkdir(mode=0o700)
    for rel, text in tree.items():
        dest = run.tree_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
    meta["run_id"] = run.run_id
    run.save(meta)
    return run


def list_runs(root: Path) -> list[RunDir]:
    if not root.is_dir():
        return []
    return [RunDir(root, p.name) for p in sorted(root.iterdir()) if (p / "run.json").is_file()]


def last_successful(root: Path, exclude: str | None = None) -> RunDir | None:
    """The newest run that changed hosts and passed every gate (check-mode runs do not count)."""
    for run in reversed(list_runs(root)):
        meta = run.meta()
        if run.run_id != exclude and meta.get("status") == "ok" and not meta.get("check"):
            return run
    return None


def find_run(root: Path, run_id: str) -> RunDir | None:
    run = RunDir(root, run_id)
    return run if (run.path / "run.json").is_file() and run.tree_dir.is_dir() else None


@contextlib.contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """One apply per site at a time."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another apply of this site is running (lock {root / '.lock'})") from None
        yield
    finally:
        os.close(fd)


# --- secrets ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def secrets_from_environment(names: list[str]) -> Iterator[tuple[str | None, list[str]]]:
    """Move the named secrets out of os.environ into a private 0600 vars file for the duration.

    Yields (path of the vars file or None, the secret values) and restores the environment afterwards.
    """
    values = {n: os.environ[n] for n in names if os.environ.get(n)}
    tmpdir = None
    path = None
    try:
        if values:
            base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
            tmpdir = tempfile.mkdtemp(prefix="provisioner-secrets-", dir=base)
            path = os.path.join(tmpdir, "secrets.json")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({"bgp_secrets_env": values}, fh)
            for n in values:
                del os.environ[n]
        yield path, list(values.values())
    finally:
        os.environ.update(values)
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def redact(directory: Path, values: list[str]) -> list[str]:
    """Replace any secret value found in files under ``directory``; returns the files that held one."""
    needles = [v.encode() for v in values if len(v) >= 4]
    hits: list[str] = []
    if not needles or not directory.exists():
        return hits
    for dirpath, _dirs, files in os.walk(directory):
        for f in files:
            p = Path(dirpath) / f
            try:
                data = p.read_bytes()
            except OSError:
                continue
            new = data
            for n in needles:
                new = new.replace(n, REDACTED.encode())
            if new != data:
                p.write_bytes(new)
                hits.append(str(p))
    return hits


# --- one batch ----------------------------------------------------------------------------------------


@dataclass
class Options:
    inventories: list[Path]
    extravars: dict[str, Any]
    check: bool = False
    secrets_file: Path | None = None
    vault_password_file: Path | None = None
    verbosity: int = 0


def run_batch(run: RunDir, index: int, batch: Batch, opts: Options, secret_names: list[str],
              event_handler: Callable[[dict[str, Any]], Any] | None = None) -> BatchOutcome:
    """Run playbooks/site.yml limited to the batch's hosts through ansible-runner's Python API."""
    import ansible_runner

    ident = f"{index + 1:02d}-{re.sub(r'[^A-Za-z0-9.-]+', '-', batch.name).strip('-')}"
    outcome = BatchOutcome(batch, "failed")
    started = time.monotonic()
    with secrets_from_environment(secret_names) as (env_file, values):
        cmd = []
        if env_file:
            cmd += ["-e", f"@{env_file}"]
        if opts.secrets_file:
            cmd += ["-e", f"@{opts.secrets_file}"]
        if opts.vault_password_file:
            cmd += ["--vault-password-file", str(opts.vault_password_file)]
        if opts.check:
            cmd += ["--check", "--diff"]
        extravars = dict(opts.extravars)
        if batch.kind in ("canary", "racks"):
            extravars["node_serial"] = "100%"  # the batch is the unit: the whole rack at once

        def handler(event: dict[str, Any]) -> bool:
            _collect(outcome, event)
            if event_handler is not None:
                event_handler(event)
            return True

        env = {"ANSIBLE_CONFIG": str(ANSIBLE_CFG), "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True", "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
               # ansible-runner turns host key checking off unless told otherwise; pre-flight checked the keys
               # against known_hosts, and ssh must keep holding every connection to the same keys
               "ANSIBLE_HOST_KEY_CHECKING": "True",
               "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
        r = ansible_runner.run(
            private_data_dir=str(run.data_dir), project_dir=str(PLAYBOOKS), playbook="site.yml",
            inventory=[str(p) for p in opts.inventories], limit=",".join(batch.hosts), ident=ident,
            extravars=extravars, cmdline=" ".join(_quote(c) for c in cmd) or None, envvars=env,
            event_handler=handler, quiet=True, verbosity=opts.verbosity or None, rotate_artifacts=0,
        )
        leaked = redact(run.path, values)
    outcome.seconds = round(time.monotonic() - started, 2)
    for host in batch.hosts:
        outcome.hosts.setdefault(host, {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "skipped": 0})
    bad = [h for h, s in outcome.hosts.items() if s["failed"] or s["unreachable"]]
    for h in [h for h in outcome.messages if h in outcome.hosts and h not in bad]:
        del outcome.messages[h]  # a failure that a rescue handled
    not_run = [h for h in batch.hosts if not any(outcome.hosts[h].values())]
    for h in not_run:
        outcome.messages.setdefault(h, "not run (the batch stopped before this host)")
    outcome.status = "ok" if r.rc == 0 and r.status == "successful" and not bad and not not_run else "failed"
    if leaked:
        outcome.messages["(secrets)"] = f"secret values were found in {len(leaked)} run files and redacted"
    if outcome.status == "failed" and not outcome.messages:
        outcome.messages["(ansible)"] = f"ansible-runner {r.status}, rc {r.rc}; see {run.data_dir}/artifacts/{ident}"
    return outcome


def _quote(word: str) -> str:
    import shlex

    return shlex.quote(word)


def _collect(outcome: BatchOutcome, event: dict[str, Any]) -> None:
    """Per-host counters, failure messages and (check mode) diffs from one ansible-runner event."""
    kind = event.get("event", "")
    data = event.get("event_data") or {}
    if kind == "playbook_on_stats":  # the final per-host counts (rescued failures are not failures)
        for key, name in (("ok", "ok"), ("changed", "changed"), ("failures", "failed"), ("dark", "unreachable"),
                          ("skipped", "skipped")):
            for h, n in (data.get(key) or {}).items():
                outcome.hosts.setdefault(h, {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "skipped": 0})
                outcome.hosts[h][name] = n
        outcome.stats_seen = True
        return
    host = data.get("host")
    if not host or not kind.startswith("runner_on_") or kind in ("runner_on_start",):
        return
    stats = outcome.hosts.setdefault(host, {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "skipped": 0})
    res = data.get("res") or {}
    if outcome.stats_seen:
        return
    if kind == "runner_on_ok":
        stats["ok"] += 1
        if res.get("changed"):
            stats["changed"] += 1
            diff = res.get("diff")
            if diff:
                for d in diff if isinstance(diff, list) else [diff]:
                    if isinstance(d, dict) and (d.get("before") != d.get("after") or d.get("prepared")):
                        outcome.diffs.setdefault(host, []).append({
                            "task": data.get("task", ""), "path": d.get("after_header") or d.get("before_header"),
                            "before": d.get("before", ""), "after": d.get("after", ""),
                        })
            elif "censored" in res:
                outcome.diffs.setdefault(host, []).append({"task": data.get("task", ""), "path": None,
                                                            "hidden": True})
    elif kind == "runner_on_failed" and not data.get("ignore_errors"):
        stats["failed"] += 1
        outcome.messages[host] = _message(res, data)
    elif kind == "runner_on_unreachable":
        stats["unreachable"] += 1
        outcome.messages[host] = "unreachable: " + _message(res, data)
    elif kind == "runner_on_skipped":
        stats["skipped"] += 1


def _message(res: dict[str, Any], data: dict[str, Any]) -> str:
    msg = res.get("msg") or res.get("stderr") or res.get("stdout") or "failed"
    if "censored" in res:
        msg = "output hidden (no_log)"
    return f"{data.get('task', '')}: {str(msg).strip()[:500]}"
