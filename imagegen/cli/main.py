"""The ``imagegen`` command: one parser, its sub-commands added by each command module.

``imagegen generate "a red porsche" --count 4 --out out/`` runs the workflow offline and writes the
images and ``manifest.json`` under ``out/``; the other commands call an API (``submit``, ``status``,
``wait``, ``images``, ``models``, ``jobs list|cancel|retry``), serve it offline (``serve``), run a batch (``batch``) or check an AWS
account and Region before and after deploying (``doctor``, read-only), or manage a deployment's API keys
(``keys create|list|revoke``, with the operator's credentials).
"""

from __future__ import annotations

import argparse
import sys

from imagegen.cli import api_commands, batch_commands, doctor, generate, job_commands, keys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagegen",
        description="Parallel image generation on Amazon Bedrock with AWS Step Functions; runs offline too.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (generate, api_commands, job_commands, batch_commands, doctor, keys):
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
