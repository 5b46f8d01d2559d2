"""Secret injection for rendered files: ``@secret:NAME@`` placeholders -> values, on the controller only.

The reviewed rendered tree carries stable placeholders (see docs/network.md); the values come from the
``bgp_secrets`` variable (Ansible Vault, e.g. ``-e @secrets.vault.yml``), then from a variables file that
``provisioner apply`` writes outside the run directory, then from the controller's environment (a variable
named exactly NAME). Errors name the secret, never its value. Tasks that use ``inject_secrets`` set
``no_log`` whenever the file holds a placeholder.
"""

from __future__ import annotations

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


class FilterModule:
    def filters(self):
        return {"secret_refs": secret_refs, "inject_secrets": inject_secrets}
