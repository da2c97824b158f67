"""``imagegen configure``: the API's URL and key kept in the user's config directory, readable by the user
only, and read by every client command after its flags and the environment."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from imagegen.cli import configure
from imagegen.cli.configure import ApiSettings, config_dir, resolve_settings, write_config
from imagegen.cli.exit_codes import CliError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("IMAGEGEN_API_URL", "IMAGEGEN_API_KEY", "IMAGEGEN_AUTH", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IMAGEGEN_CONFIG_DIR", str(tmp_path / "imagegen"))
    return tmp_path / "imagegen"


def configure_cli(*args: str, stdin: str = "", config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMAGEGEN_CONFIG_DIR": str(config)}
    return subprocess.run(
        [sys.executable, "-m", "imagegen", "configure", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_configure_keeps_the_url_and_key_readable_by_the_user_only(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    url = "https://abc123.execute-api.us-west-2.amazonaws.com/v1/"
    done = configure_cli("--api-url", url, "--api-key-stdin", stdin="SECRET-KEY-123\n", config=config)
    assert done.returncode == 0, done.stderr
    path = config / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {"api_url": url, "api_key": "SECRET-KEY-123"}
    assert "SECRET-KEY-123" not in done.stdout + done.stderr
    shown = configure_cli("--show", config=config)
    assert json.loads(shown.stdout)["api_key"] == "...-123" and "SECRET" not in shown.stdout
    switched = configure_cli("--auth", "iam", "--region", "us-west-2", config=config)
    assert switched.returncode == 0
    assert json.loads(path.read_text())["auth"] == "iam" and json.loads(path.read_text())["api_url"] == url


def test_a_file_made_with_wider_permissions_is_narrowed(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "config.json").write_text("{}")
    os.chmod(home / "config.json", 0o644)
    write_config({"api_key": "k"})
    assert stat.S_IMODE((home / "config.json").stat().st_mode) == 0o600


def test_flags_then_environment_then_file_then_default(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_settings() == ApiSettings()  # nothing saved: the local server, no key
    write_config(
        {"api_url": "https://saved/v1/", "api_key": "saved-key", "auth": "api-key", "region": "eu-west-1"}
    )
    assert resolve_settings() == ApiSettings("https://saved/v1/", "api-key", "saved-key", "eu-west-1")
    monkeypatch.setenv("IMAGEGEN_API_URL", "https://env/v1/")
    monkeypatch.setenv("IMAGEGEN_API_KEY", "env-key")
    assert resolve_settings().api_url == "https://env/v1/" and resolve_settings().api_key == "env-key"
    chosen = resolve_settings(api_url="https://flag/v1/", api_key="flag-key", auth="iam")
    assert (chosen.api_url, chosen.api_key, chosen.auth) == ("https://flag/v1/", "flag-key", "iam")


def test_a_broken_file_or_auth_mode_is_a_usage_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home.mkdir(parents=True)
    (home / "config.json").write_text("{not json")
    with pytest.raises(CliError, match="run imagegen configure again") as broken:
        resolve_settings()
    assert broken.value.code == 2
    write_config({})
    monkeypatch.setenv("IMAGEGEN_AUTH", "kerberos")
    with pytest.raises(CliError, match="use api-key or iam"):
        resolve_settings()


def test_the_config_dir_is_platformdirs_or_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("IMAGEGEN_CONFIG_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setitem(sys.modules, "platformdirs", None)  # not installed: XDG
    assert config_dir() == tmp_path / "xdg" / "imagegen"
    assert configure.CONFIG_FILE == "config.json"
