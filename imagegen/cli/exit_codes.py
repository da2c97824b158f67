"""The ``imagegen`` command's exit codes, and the error every command raises to end with one.

One table (:data:`EXIT_CODES`) is the source of the ``--help`` epilog and of the table in
``docs/api.md`` (a test compares them). A command ends with a one-line message by raising
:class:`CliError` with the code; ``imagegen.cli.main`` prints it and exits with it, so nothing a
user can do ends in a Python traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """How an ``imagegen`` command ended."""

    OK = 0
    FAILED = 1
    USAGE = 2
    INVALID = 3
    PARTIAL = 4
    UNREACHABLE = 5
    TIMED_OUT = 6
    INTERRUPTED = 130


#: Each code and what it means, in the words of ``--help`` and docs/api.md.
EXIT_CODES: tuple[tuple[ExitCode, str], ...] = (
    (ExitCode.OK, "done: every image was made (or the command did what it was asked)"),
    (ExitCode.FAILED, "generation failed: no image was made, or the API refused for another reason"),
    (ExitCode.USAGE, "usage error: a wrong flag or value, a file that cannot be read or written"),
    (ExitCode.INVALID, "invalid request: the request was refused (change the fields it names)"),
    (ExitCode.PARTIAL, "partly failed: some images were made and written, others were not"),
    (ExitCode.UNREACHABLE, "cannot reach the API, or it refused the credentials"),
    (ExitCode.TIMED_OUT, "timed out waiting (--timeout): the job keeps running"),
    (ExitCode.INTERRUPTED, "interrupted (Ctrl-C): a job on an API keeps running"),
)


def exit_codes_epilog() -> str:
    """The exit-code table as the ``--help`` epilog prints it."""
    return "exit codes:\n" + "\n".join(f"  {int(code):>3}  {meaning}" for code, meaning in EXIT_CODES)


class CliError(Exception):
    """A command cannot go on: ``message`` says what to do, ``code`` is the exit code."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def usage_error(message: str) -> CliError:
    """A wrong option or value, or an input file that cannot be used (exit code 2)."""
    return CliError(ExitCode.USAGE, message)
