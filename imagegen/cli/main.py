"""The ``imagegen`` command: one parser, its sub-commands added by each command module.

``imagegen generate "a red porsche" --count 4 --out out/`` runs the workflow offline and writes the
images and ``manifest.json`` under ``out/``; the other commands call an API (``submit``, ``status``,
``wait``, ``images``, ``models``, ``jobs list|cancel|retry``), serve it offline (``serve``), run a batch (``batch``) or check an AWS
account and Region before and after deploying (``doctor``, read-only), or manage a deployment's API keys
(``keys create|list|revoke``, with the operator's credentials); ``configure`` keeps the API's URL and
credentials in the user's config directory.

Every command ends with an exit code of :mod:`imagegen.cli.exit_codes`: a command raises
:class:`~imagegen.cli.exit_codes.CliError` (or lets the API client's errors through) and :func:`main`
prints one line saying what to do. ``IMAGEGEN_DEBUG=1`` shows the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata
from typing import Any

from imagegen.cli import (
    api_commands,
    batch_commands,
    configure,
    doctor,
    generate,
    job_commands,
    keys,
    refine,
)
from imagegen.cli.exit_codes import CliError, ExitCode, exit_codes_epilog
from imagegen.cli.options import HelpFormatter


class CommandParser(argparse.ArgumentParser):
    """A parser (the top level's and each sub-command's) that shows defaults in its help and records
    itself in the namespace, so a wrong flag is reported with the usage of the command it was given to."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.set_defaults(command_parser=self)


def _version() -> str:
    try:
        return metadata.version("imagegen")
    except metadata.PackageNotFoundError:  # run from a checkout that was not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="imagegen",
        description="Parallel image generation on Amazon Bedrock with AWS Step Functions; runs offline too.",
        epilog=exit_codes_epilog(),
    )
    parser.add_argument("--version", action="version", version=f"imagegen {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser, metavar="COMMAND")
    for module in (generate, refine, api_commands, job_commands, batch_commands, doctor, keys, configure):
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    command: argparse.ArgumentParser = getattr(args, "command_parser", parser)
    if extras:
        command.error(f"unrecognized arguments: {' '.join(extras)}")  # exits 2 with its usage
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"\n{command.prog}: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:  # the reader went away (imagegen jobs list | head -1): nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(ExitCode.OK)
    except Exception as exc:
        error = exc if isinstance(exc, CliError) else api_commands.cli_error_of(exc)
        if error is None:
            if os.environ.get("IMAGEGEN_DEBUG"):
                raise
            error = CliError(
                ExitCode.FAILED,
                f"unexpected error: {type(exc).__name__}: {exc} "
                "(IMAGEGEN_DEBUG=1 shows where; please report it)",
            )
        print(f"{command.prog}: {error.message}", file=sys.stderr)
        return int(error.code)


if __name__ == "__main__":
    sys.exit(main())
