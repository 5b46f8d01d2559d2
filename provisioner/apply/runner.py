"""Run directories and one ansible-runner run per rollout.

Every apply (and rollback, and ``--check``) gets ``runs/<site>/<run_id>/``:

    run.json        what ran: mode, source, batches, per-host stats, status (ok | failed | refused | ...)
    tree/           the exact rendered tree pushed (placeholders only, never a secret value)
    ansible/        ansible-runner's private_data_dir: rollout.yml (the generated playbook), gates/, env/,
                    artifacts/rollout/ (events, stdout, command)

Secrets: the values of ``@secret:NAME@`` placeholders come from Ansible Vault (``--secrets-file``, read by
ansible-playbook itself) or from the controller's environment. ansible-runner records the whole process
environment in ``artifacts/*/command``, so environment secrets are taken *out* of the environment for the
run and handed to ansible-playbook in a 0600 variables file in a private temporary directory outside the run
directory, deleted afterwards. As a last line of defence every file of the run directory is scanned for the
values after the run and any occurrence is redacted (and reported).
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..paths import ansible_cfg, playbooks_dir
from ..write import read_tree, write_file_atomic
from .rollout import Batch, BatchOutcome, Sequencer

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


# --- one rollout: one ansible-playbook run for every batch ---------------------------------------------

PLAYBOOK_OF = {"switches": "switches.yml", "etcd": "etcd.yml", "canary": "nodes.yml", "racks": "nodes.yml"}
GUARD_PLAY = re.compile(r"^provisioner batch (\d+)/(\d+): ")
# Seconds a guard waits for the controller's word before it stops the rollout by itself. The controller answers
# within milliseconds of seeing the guard start (nobody is asked anything during the run), so this only matters
# when the controller died: the orphaned ansible-playbook then stops at its next guard instead of going on.
GUARD_WAIT = 300


@dataclass
class Options:
    inventories: list[Path]
    extravars: dict[str, Any]
    check: bool = False
    secrets_file: Path | None = None
    vault_password_file: Path | None = None
    verbosity: int = 0


def gate_file(gates: Path, index: int) -> Path:
    return gates / f"{index + 1:02d}"


def rollout_playbook(plan_batches: list[Batch], gates: Path, playbooks: Path = PLAYBOOKS) -> str:
    """The playbook of one rollout: per batch, a guard play on the controller, then the batch's play.

    Each batch imports the ordinary playbook of its kind (switches.yml, etcd.yml, nodes.yml) with ``hosts``
    set to exactly the batch's hosts and the whole batch at once (``serial: 100%``). The guard waits until the
    controller writes ``go`` or ``stop`` into the batch's gate file: the controller has then seen every event
    of the previous batch and lets the next start only if every host of it passed. A play whose host fails
    stops the playbook by itself (``max_fail_percentage: 0``); the guard also catches unreachable hosts, which
    Ansible does not count as failed.
    """
    import shlex

    import yaml

    plays: list[dict[str, Any]] = []
    total = len(plan_batches)
    for i, b in enumerate(plan_batches):
        path = shlex.quote(str(gate_file(gates, i)))
        wait = f"until [ -s {path} ]; do sleep 0.05; done; cat {path}"
        plays.append({
            "name": f"provisioner batch {i + 1}/{total}: {b.name}",
            "hosts": "localhost", "connection": "local", "gather_facts": False,
            "vars": {"provisioner_gate_cmd": f"timeout {GUARD_WAIT} sh -c {shlex.quote(wait)}"},
            "tasks": [{
                "name": "Wait for the controller (it stops the rollout after a failed batch)",
                "ansible.builtin.assert": {
                    "that": "lookup('ansible.builtin.pipe', provisioner_gate_cmd) == 'go'",
                    "fail_msg": "stopped: an earlier batch did not pass", "quiet": True},
            }],
        })
        play_vars: dict[str, Any] = {"provisioner_hosts": ":".join(b.hosts)}
        play_vars["switch_serial" if b.kind == "switches" else "node_serial"] = "100%"
        plays.append({"name": f"{b.name}: {len(b.hosts)} hosts",
                      "ansible.builtin.import_playbook": str(playbooks / PLAYBOOK_OF[b.kind]), "vars": play_vars})
    header = "# One rollout of provisioner apply, generated for this run: a guard play, then the batch's play.\n"
    return header + yaml.safe_dump(plays, sort_keys=False, width=1000)


def run_rollout(run: RunDir, plan_batches: list[Batch], opts: Options, secret_names: list[str], *,
                progress: Any = None, on_batch_start: Callable[[int, Batch], None] | None = None) -> list[BatchOutcome]:
    """Run every batch in one ansible-runner run (one ansible-playbook start, one SSH connection per host).

    Returns one outcome per batch; batches after the first that did not pass are ``skipped`` (never contacted).
    """
    import ansible_runner

    gates = run.data_dir / "gates"
    gates.mkdir(mode=0o700, exist_ok=True)
    playbook = run.data_dir / "rollout.yml"
    playbook.write_text(rollout_playbook(plan_batches, gates))

    def started(i: int, b: Batch) -> None:
        if on_batch_start is not None:
            on_batch_start(i, b)
        if progress is not None:
            progress.start_batch(i, len(plan_batches), b)

    seq = Sequencer(plan_batches, on_start=started, on_end=progress.end_batch if progress is not None else None)

    def handler(event: dict[str, Any]) -> bool:
        if event.get("event") == "playbook_on_play_start":
            m = GUARD_PLAY.match((event.get("event_data") or {}).get("play", ""))
            if m:
                i = int(m.group(1)) - 1
                go = False
                try:
                    go = seq.begin(i)
                finally:  # whatever happens here, the guard gets an answer (stop unless all is well)
                    write_file_atomic(gate_file(gates, i), "go\n" if go else "stop\n")
                return True
        seq.event(event)
        if progress is not None:
            progress.event(event)
        return True

    hosts = [h for b in plan_batches for h in b.hosts]
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
        env = {"ANSIBLE_CONFIG": str(ANSIBLE_CFG), "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True", "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
               # ansible-runner turns host key checking off unless told otherwise; pre-flight checked the keys
               # against known_hosts, and ssh must keep holding every connection to the same keys
               "ANSIBLE_HOST_KEY_CHECKING": "True",
               "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
        try:
            r = ansible_runner.run(
                private_data_dir=str(run.data_dir), project_dir=str(PLAYBOOKS), playbook=str(playbook),
                inventory=[str(p) for p in opts.inventories], limit=",".join([*hosts, "localhost"]),
                ident="rollout", extravars=dict(opts.extravars), cmdline=" ".join(_quote(c) for c in cmd) or None,
                envvars=env, event_handler=handler, quiet=True, verbosity=opts.verbosity or None,
                rotate_artifacts=0,
            )
        finally:  # interrupted or crashed: a playbook that is still running stops at its next guard
            for i in range(len(plan_batches)):
                if not gate_file(gates, i).exists():
                    write_file_atomic(gate_file(gates, i), "stop\n")
        leaked = redact(run.path, values)
    outcomes = seq.finish(r.rc == 0 and r.status == "successful",
                          f"ansible-runner {r.status}, rc {r.rc}; see {run.data_dir}/artifacts/rollout")
    if leaked:
        outcomes[0].messages["(secrets)"] = f"secret values were found in {len(leaked)} run files and redacted"
    return outcomes


def _quote(word: str) -> str:
    import shlex

    return shlex.quote(word)
