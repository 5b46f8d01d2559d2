"""Run a docs/howto page as its reader would, and check that it says what the tool does.

A page is a sequence of fenced blocks, taken in order:

* ```diff: an edit of the site, applied with ``git apply`` (exact context, as a reviewer reads it);
* ```sh: commands run one line at a time from the root of a git repository holding a copy of
  inventories/example on branch ``main`` (``provisioner`` in-process through the real CLI entry point, ``git``
  as a process, and ``for V in WORDS; do CMD; done`` with bash's expansion of WORDS). Every command must exit
  0 unless its line ends with ``# exits N``;
* ```text / ```markdown right after a ```sh block: an excerpt of what the block's last command printed. Each
  non-blank line must appear, in order, as a whole line of that output; ``…`` stands for any text.

Blocks in other languages (``console``: steps against real hosts) are shown to the reader and not run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import EXAMPLE
from tests.helpers import run_cli

HOWTO = Path(__file__).resolve().parent.parent / "docs" / "howto"
GIT_ENV = {"GIT_AUTHOR_NAME": "SRE", "GIT_AUTHOR_EMAIL": "sre@example.org", "GIT_COMMITTER_NAME": "SRE",
           "GIT_COMMITTER_EMAIL": "sre@example.org", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
RUN = ("sh", "diff")
EXCERPT = ("text", "markdown")


def blocks(page: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block of a markdown page, in order."""
    return [(lang, body) for lang, body in re.findall(r"^```(\w*)\n(.*?)^```$", page, flags=re.S | re.M)]


@dataclass
class Ran:
    command: str
    code: int
    out: str


@dataclass
class Project:
    """A git repository with inventories/example on main, as the how-tos assume."""

    root: Path
    ran: list[Ran] = field(default_factory=list)

    @classmethod
    def create(cls, tmp: Path) -> Project:
        root = tmp / "repo"
        shutil.copytree(EXAMPLE, root / "inventories" / "example")
        (root / ".gitignore").write_text("rendered/\n")
        project = cls(root)
        project.git("init", "-q", "-b", "main")
        project.git("add", ".")
        project.git("commit", "-q", "-m", "the example site")
        return project

    def git(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True,
                              env={**os.environ, **GIT_ENV})

    def lock(self) -> str:
        return (self.root / "inventories" / "example" / "allocations.yaml").read_text()

    def last(self, prefix: str) -> Ran:
        """The last command run that starts with ``prefix``."""
        return next(r for r in reversed(self.ran) if r.command.startswith(prefix))

    def run_line(self, line: str) -> Ran:
        expect = int(m.group(1)) if (m := re.search(r"#\s*exits (\d+)\s*$", line)) else 0
        loop = re.fullmatch(r"for (\w+) in (.+?); do (.+?); done(?:\s*#.*)?", line.strip())
        if loop:
            var, words, body = loop.groups()
            expanded = subprocess.run(["bash", "-c", f"printf '%s\\n' {words}"], capture_output=True, text=True,
                                      check=True).stdout.split()
            outs = [self.run_line(re.sub(rf'"?\${var}"?', value, body)).out for value in expanded]
            ran = Ran(line, 0, "".join(outs))
        else:
            ran = self._run(shlex.split(line, comments=True), line)
        assert ran.code == expect, f"{line!r} exited {ran.code}, the page says {expect}:\n{ran.out}"
        self.ran.append(ran)
        return ran

    def _run(self, argv: list[str], line: str) -> Ran:
        target = None
        if ">" in argv:
            i = argv.index(">")
            argv, target = argv[:i], argv[i + 1]
        if argv[0] == "provisioner":
            cwd = Path.cwd()
            os.chdir(self.root)
            try:
                code, out, err = run_cli(*argv[1:])
            finally:
                os.chdir(cwd)
        elif argv[0] == "git":
            proc = self.git(*argv[1:])
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        else:
            raise AssertionError(f"a how-to may only run provisioner and git: {line!r}")
        if target is not None:
            (self.root / target).write_text(out)
        return Ran(line, code, out + err)

    def apply_diff(self, diff: str) -> None:
        proc = subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], cwd=self.root, input=diff,
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"the page's edit does not apply to the example:\n{proc.stderr}\n{diff}"


def matches(excerpt: str, output: str) -> str | None:
    """None when every excerpt line is a whole line of ``output``, in order (``…`` = any text); else the first
    line that is not."""
    lines = output.splitlines()
    at = 0
    for want in (w.rstrip() for w in excerpt.splitlines()):
        if not want.strip():
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in want.split("…")))
        while at < len(lines) and not pattern.fullmatch(lines[at].rstrip()):
            at += 1
        if at == len(lines):
            return want
        at += 1
    return None


def run_page(name: str, tmp: Path) -> Project:
    """Run every block of docs/howto/NAME in a fresh project; fail on a command or an excerpt that is wrong."""
    page = (HOWTO / name).read_text()
    project = Project.create(tmp)
    last: Ran | None = None
    for lang, body in blocks(page):
        if lang == "diff":
            project.apply_diff(body)
        elif lang == "sh":
            for line in body.splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    last = project.run_line(line)
        elif lang in EXCERPT and last is not None:
            missing = matches(body, last.out)
            assert missing is None, (f"{name}: after `{last.command}` the page shows {missing!r}; "
                                     f"it printed (first 3000 characters):\n{last.out[:3000]}")
            last = None  # one excerpt per command
    return project
