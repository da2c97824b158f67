"""``imagegen configure``: where the client commands find the API and how they sign in, kept once.

The settings are the API's base URL (with its stage), how to authenticate (``api-key``: the
``x-api-key`` header; ``iam``: SigV4 with the user's AWS credentials, for a deployment with
``imagegen:apiAuth=iam``), the key, and for ``iam`` the Region. They live in ``config.json`` in the
user's config directory (platformdirs' ``user_config_dir("imagegen")`` when platformdirs is installed,
else ``$XDG_CONFIG_HOME/imagegen`` or ``~/.config/imagegen``; ``IMAGEGEN_CONFIG_DIR`` overrides both),
readable by the user only (0600, in a 0700 directory), as the AWS CLI keeps ``~/.aws/credentials``.

Each command reads, first to last: its own flag (``--api``, ``--api-key``, ``--auth``), the
environment (``IMAGEGEN_API_URL``, ``IMAGEGEN_API_KEY``, ``IMAGEGEN_AUTH``, ``AWS_REGION``), the file,
then the default (the local server ``imagegen serve`` starts, no key).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from imagegen.cli.exit_codes import usage_error
from imagegen.cli.options import EXIT_OK, examples

DEFAULT_API_URL = "http://127.0.0.1:8000"
CONFIG_FILE = "config.json"
AUTH_MODES = ("api-key", "iam")
AuthMode = Literal["api-key", "iam"]


@dataclass(frozen=True)
class ApiSettings:
    """How a client command reaches the API."""

    api_url: str = DEFAULT_API_URL
    auth: AuthMode = "api-key"
    api_key: str | None = None
    region: str | None = None


def config_dir() -> Path:
    """The user's config directory for imagegen (see the module's docstring)."""
    if os.environ.get("IMAGEGEN_CONFIG_DIR"):
        return Path(os.environ["IMAGEGEN_CONFIG_DIR"])
    try:
        import platformdirs
    except ImportError:
        base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(base) / "imagegen"
    return Path(platformdirs.user_config_dir("imagegen"))


def config_path() -> Path:
    return config_dir() / CONFIG_FILE


def read_config() -> dict[str, Any]:
    """The saved settings (empty when there are none); a usage error when the file is unreadable."""
    path = config_path()
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise usage_error(f"{path} cannot be read ({exc}): run imagegen configure again") from None
    if not isinstance(loaded, dict):
        raise usage_error(f"{path} is not a JSON object: run imagegen configure again")
    return loaded


def write_config(values: dict[str, Any]) -> Path:
    """Save ``values`` as the settings, readable and writable by the user only. Returns the path."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a file made before with wider permissions is narrowed too
    with os.fdopen(descriptor, "w") as f:
        f.write(json.dumps(values, indent=2) + "\n")
    return path


def _auth_mode(value: str, where: str) -> AuthMode:
    if value not in AUTH_MODES:
        raise usage_error(f"{where} is {value!r}: use api-key or iam")
    return "iam" if value == "iam" else "api-key"


def resolve_settings(
    *, api_url: str | None = None, api_key: str | None = None, auth: str | None = None
) -> ApiSettings:
    """The settings a client command uses: flags, then the environment, then the file, then defaults."""
    saved = read_config()
    env = os.environ
    auth_value = auth or env.get("IMAGEGEN_AUTH") or saved.get("auth") or "api-key"
    return ApiSettings(
        api_url=api_url or env.get("IMAGEGEN_API_URL") or saved.get("api_url") or DEFAULT_API_URL,
        auth=_auth_mode(str(auth_value), "--auth" if auth else "IMAGEGEN_AUTH or the config file's auth"),
        api_key=api_key or env.get("IMAGEGEN_API_KEY") or saved.get("api_key") or None,
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or saved.get("region") or None,
    )


def add_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "configure",
        help="keep the API URL and key (or IAM auth) in your config directory",
        description="Saves how the client commands (submit, wait, status, models, jobs) reach the API, in "
        "config.json in your config directory, readable by you only (0600). Without options it asks; "
        "an empty answer keeps the saved value. The environment (IMAGEGEN_API_URL, IMAGEGEN_API_KEY, "
        "IMAGEGEN_AUTH) and each command's flags override it.",
        epilog=examples(
            "imagegen configure                     # asks for the URL, the auth mode and the key",
            "imagegen configure --api-url https://abc123.execute-api.us-west-2.amazonaws.com/prod "
            "--auth iam --region us-west-2",
            "imagegen configure --show              # what is saved (the key masked) and where",
        ),
    )
    parser.add_argument("--api-url", help="the API's base URL with its stage (the stack's ApiUrl output)")
    parser.add_argument(
        "--auth", choices=AUTH_MODES, help="api-key (x-api-key) or iam (SigV4, your AWS credentials)"
    )
    parser.add_argument(
        "--api-key-stdin",
        action="store_true",
        help="read the API key from stdin (not from a flag: it would stay in your shell history)",
    )
    parser.add_argument("--region", help="the deployment's Region, for --auth iam (default: from the URL)")
    parser.add_argument(
        "--show", action="store_true", help="print the saved settings (the key masked) and exit"
    )
    parser.set_defaults(func=cmd_configure)


def _masked(values: dict[str, Any]) -> dict[str, Any]:
    key = values.get("api_key")
    return values | (
        {"api_key": f"...{key[-4:]}" if len(key) > 8 else "****"} if isinstance(key, str) else {}
    )


def _ask(question: str, current: Any, *, secret: bool = False) -> str | None:
    shown = ("(saved)" if current else "") if secret else (current or "")
    prompt = f"{question} [{shown}]: " if shown else f"{question}: "
    try:
        answer = getpass.getpass(prompt) if secret else input(prompt)
    except EOFError:
        answer = ""
    return answer.strip() or None


def cmd_configure(args: argparse.Namespace) -> int:
    saved = read_config()
    if args.show:
        print(json.dumps({"file": str(config_path()), **_masked(saved)}, indent=2))
        return EXIT_OK
    values = dict(saved)
    flags_given = args.api_url or args.auth or args.region or args.api_key_stdin
    if args.api_key_stdin:
        values["api_key"] = sys.stdin.readline().strip()
    if flags_given:
        values.update(
            {
                k: v
                for k, v in {"api_url": args.api_url, "auth": args.auth, "region": args.region}.items()
                if v
            }
        )
    elif sys.stdin.isatty():
        values["api_url"] = _ask("API URL (the stack's ApiUrl output)", saved.get("api_url")) or saved.get(
            "api_url"
        )
        auth = _ask("Auth: api-key or iam", saved.get("auth") or "api-key") or saved.get("auth") or "api-key"
        values["auth"] = _auth_mode(auth, "the auth")
        if values["auth"] == "api-key":
            values["api_key"] = _ask("API key", saved.get("api_key"), secret=True) or saved.get("api_key")
        else:
            values["region"] = _ask("Region (empty: from the URL)", saved.get("region")) or saved.get(
                "region"
            )
    else:
        raise usage_error("stdin is not a terminal: give --api-url, --auth, --region or --api-key-stdin")
    if values.get("auth"):
        _auth_mode(str(values["auth"]), "--auth")
    path = write_config({k: v for k, v in values.items() if v})
    mode = stat.S_IMODE(path.stat().st_mode)
    print(f"saved to {path} (permissions {mode:o})", file=sys.stderr)
    return EXIT_OK
