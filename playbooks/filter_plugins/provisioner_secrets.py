"""Secret injection for rendered files: ``@secret:NAME@`` placeholders -> values, on the controller only.

The reviewed rendered tree carries stable placeholders (see docs/network.md); the values come from the
``bgp_secrets`` variable (Ansible Vault, e.g. ``-e @secrets.vault.yml``), then from a variables file that
``provisioner apply`` writes outside the run directory, then from the controller's environment (a variable
named exactly NAME). Errors name the secret, never its value. Tasks that use ``inject_secrets`` set
``no_log`` whenever the file holds a placeholder.
"""

from __future__ import annotations

import hashlib
import os
import re

from ansible.errors import AnsibleFilterError

PLACEHOLDER = re.compile(r"@secret:([A-Za-z_][A-Za-z0-9_]{0,63})@")
# a value with whitespace, a quote, a backslash or '!' would break FRR's WORD or BIRD's string (docs/network.md)
UNSAFE = re.compile(r'[\s"\\!]')


def secret_refs(text):
    """Names of the secrets a rendered file refers to, sorted and unique."""
    return sorted(set(PLACEHOLDER.findall(str(text))))


def inject_secrets(text, *sources):
    """Replace every placeholder with its value from the first source (dict) that has it, else the env."""
    missing = []
    unsafe = []

    def value(match):
        name = match.group(1)
        found = None
        for source in sources:
            if isinstance(source, dict) and source.get(name) not in (None, ""):
                found = str(source[name])
                break
        if found is None and os.environ.get(name):
            found = os.environ[name]
        if found is None:
            missing.append(name)
            return match.group(0)
        if UNSAFE.search(found):
            unsafe.append(name)
        return found

    out = PLACEHOLDER.sub(value, str(text))
    if missing:
        raise AnsibleFilterError(
            "secret(s) not provided: " + ", ".join(sorted(set(missing)))
            + " (set bgp_secrets in Ansible Vault or export an environment variable of that name)")
    if unsafe:
        raise AnsibleFilterError(
            "secret(s) " + ", ".join(sorted(set(unsafe)))
            + " contain whitespace, '\"', '\\' or '!', which FRR and BIRD cannot take as a password")
    return out


def file_differs(installed, content, owner, group, mode, *secret_sources):
    """Does an installed file (as a probe module reported it) differ from what ``copy`` would write?

    Lets a play skip ``copy`` (a stat, a transfer and a module run) when the file is already right, after one
    probe per host reported each file's sha1, owner, group and mode. Placeholders are injected first, as the
    ``copy`` task does; if that fails (a missing or unsafe secret) the answer is "differs", so ``copy`` runs and
    fails with its own message, which names the secret, never a value.
    """
    if not isinstance(installed, dict) or not installed.get("exists"):
        return True
    if secret_sources:
        try:
            content = inject_secrets(content, *secret_sources)
        except AnsibleFilterError:
            return True
    digest = hashlib.sha1(str(content).encode("utf-8")).hexdigest()  # the checksum copy uses
    return (installed.get("checksum") != digest or installed.get("owner") != str(owner)
            or installed.get("group") != str(group) or installed.get("mode") != str(mode).zfill(4))


def pki_files(names, src_dir, dest_dir, owner):
    """Certificates and keys read on the controller, as ``etcd_files`` entries (keys 0600, the rest 0644)."""
    out = []
    for name in names:
        path = os.path.join(src_dir, name)
        try:
            with open(path, encoding="utf-8") as fh:
                content = fh.read()
        except OSError as exc:
            raise AnsibleFilterError(f"{path}: {exc.strerror} (run `provisioner pki SITE`)") from None
        out.append({"dest": f"{dest_dir}/{name}", "content": content, "owner": owner,
                    "mode": "0600" if name.endswith(".key") else "0644"})
    return out


class FilterModule:
    def filters(self):
        return {"secret_refs": secret_refs, "inject_secrets": inject_secrets, "file_differs": file_differs,
                "pki_files": pki_files}
