"""The ``provisioner`` command line: parse arguments, call one function, print, exit.

Commands live in ``provisioner/commands/`` and are imported only when invoked, so ``validate``,
``render`` and ``plan`` never pay for ansible_runner or paramiko.

Exit codes: 0 ok; 1 the command ran and found problems; 2 bad input or usage; 3 the machine refused
a read or write (read-only or full file system, permissions, a busy mount point); 130 interrupted
(Ctrl-C). None of them prints a traceback; only a bug does.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys

import click

from .errors import EnvironmentFailure, InputError, os_error_text

# command name -> "module:attribute" under provisioner.commands
COMMANDS = {
    "validate": "core:validate",
    "render": "core:render",
    "plan": "core:plan",
    "release": "core:release",
    "check": "check:check",
    "capacity": "capacity:capacity",
    "pki": "pki:pki",
    "lab": "lab:lab",
    "apply": "apply:apply",
    "rollback": "apply:rollback",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, target in COMMANDS.items() if _exists(target))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None or not _exists(target):
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(f"provisioner.commands.{module}"), attr)


def _exists(target: str) -> bool:
    return importlib.util.find_spec(f"provisioner.commands.{target.split(':')[0]}") is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="provisioner")
def cli() -> None:
    """Site model -> validated, allocated, rendered and proven configs for L3 Kubernetes racks.

    SITE is a site directory such as inventories/example (or its site.yaml).
    """


EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a process killed by Ctrl-C


def main(argv: list[str] | None = None) -> int:
    try:
        rv = cli.main(args=argv, prog_name="provisioner", standalone_mode=False)
    except InputError as exc:
        click.echo(exc.render(), err=True)
        return 2
    except EnvironmentFailure as exc:
        click.echo(exc.render(), err=True)
        return EXIT_ENVIRONMENT
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        exc.show()
        return 2
    except click.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):
            return _interrupted(argv)
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted(argv)
    except BrokenPipeError:
        return 1
    except OSError as exc:
        # Reads and writes of the commands that know better raise EnvironmentFailure with what is intact;
        # anything else the machine refused still gets one line, not a traceback.
        click.echo(f"error: {os_error_text(exc)}", err=True)
        return EXIT_ENVIRONMENT
    return rv if isinstance(rv, int) else 0


def _interrupted(argv: list[str] | None) -> int:
    with contextlib.suppress(OSError, KeyboardInterrupt):
        click.echo("interrupted", err=True)
    if argv is None:  # the real command line, not a caller in this process
        # CPython turns exit(130) into death by SIGINT when the interrupt landed inside an exec() (as
        # dataclasses and jinja2 use): leave with exactly 130, every time. Everything is already cleaned up.
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
