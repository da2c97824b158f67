"""What a user can do wrong with ``imagegen``, run as they run it (a process of its own): every mistake
ends with one line saying what to do and an exit code of the documented table, never a traceback;
inputs are checked before any work starts; Ctrl-C and ``--timeout`` say which job keeps running and how
to resume it; a request that makes no image writes its manifest under ``--out``."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from imagegen.cli.exit_codes import EXIT_CODES, ExitCode
from imagegen.cli.main import main
from imagegen.standin.bedrock_server import FaultPlan
from tests.support import LocalServer

ROOT = Path(__file__).resolve().parents[2]


def imagegen(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "imagegen", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})}, cwd=cwd
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_the_exit_code_table_of_the_docs_and_of_help_is_the_codes_table() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    table = text.split("<!-- exit codes:", 1)[1].split("<!-- end of exit codes -->", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", table, flags=re.M)
    assert [(int(c), m) for c, m in rows] == [(int(c), m) for c, m in EXIT_CODES]
    assert len({int(c) for c, _ in EXIT_CODES}) == len(EXIT_CODES)  # distinct
    done = imagegen("--help")
    assert done.returncode == 0
    for code, meaning in EXIT_CODES:
        assert re.search(rf"^\s+{int(code)}\s+{re.escape(meaning)}$", done.stdout, flags=re.M), meaning


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (
            ["generate", "--request-file", "no-such.json"],
            ExitCode.USAGE,
            ["--request-file no-such.json: no such file"],
        ),
        (["generate", "--request-file", "{dir}/not-json.json"], ExitCode.INVALID, ["is not JSON"]),
        (["generate", "--request-file", "{dir}/list.json"], ExitCode.INVALID, ["must be a JSON object"]),
        (["generate", "a cat", "--out", "{dir}/a-file"], ExitCode.USAGE, ["is a file, not a directory"]),
        (["generate"], ExitCode.USAGE, ["give a prompt"]),
        (["generate", "a cat", "--count", "0"], ExitCode.INVALID, ["InvalidRequest: count"]),
        (["generate", "a cat", "--quota", "stable-image-core=0"], ExitCode.USAGE, ["--quota"]),
        (["serve", "--web-dir", "{dir}/no-such-dir"], ExitCode.USAGE, ["--web-dir", "no index.html"]),
        (["serve", "--port", "70000"], ExitCode.USAGE, ["--port 70000"]),
        (["batch", "{dir}/no-such.jsonl"], ExitCode.USAGE, ["no such file"]),
        (["submit", "a cat", "--out", "{dir}/o"], ExitCode.USAGE, ["add --wait"]),
        (["models", "--api", "http://127.0.0.1:9"], ExitCode.UNREACHABLE, ["cannot reach the API"]),
        (["status", "job-1", "--api", "ftp://example.com"], ExitCode.USAGE, ["not http(s)"]),
        (["models", "--api", "http://127.0.0.1:9", "--auth", "iam"], ExitCode.USAGE, ["Region"]),
        (["configure"], ExitCode.USAGE, ["stdin is not a terminal"]),
    ],
)
def test_a_mistake_is_one_line_and_its_exit_code(
    tmp_path: Path, args: list[str], code: ExitCode, words: list[str]
) -> None:
    (tmp_path / "not-json.json").write_text("{prompt: cat}")
    (tmp_path / "list.json").write_text('[{"prompt": "cat"}]')
    (tmp_path / "a-file").write_text("")
    given = [a.replace("{dir}", str(tmp_path)) for a in args]
    env = {"IMAGEGEN_CONFIG_DIR": str(tmp_path / "config"), "AWS_REGION": "", "AWS_DEFAULT_REGION": ""}
    done = subprocess.run(
        [sys.executable, "-m", "imagegen", *given],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    assert_one_line_error(done, code, *words)
    assert not (tmp_path / "out").exists()  # checked before any work: nothing written


def test_a_port_in_use_is_refused_before_the_engine_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = imagegen("serve", "--port", str(port))
    assert_one_line_error(done, ExitCode.USAGE, f"--port {port}: already in use")


def test_a_wrong_flag_shows_the_usage_of_its_command_and_version_is_there() -> None:
    done = imagegen("jobs", "list", "--bogus")
    assert done.returncode == ExitCode.USAGE and "Traceback" not in done.stderr
    assert done.stderr.startswith("usage: imagegen jobs list")
    assert "imagegen jobs list: error: unrecognized arguments: --bogus" in done.stderr
    version = imagegen("--version")
    assert version.returncode == 0 and re.fullmatch(r"imagegen \S+\n", version.stdout)


def test_help_names_flags_like_the_request_shows_defaults_and_examples() -> None:
    done = imagegen("generate", "--help")
    assert "--negative-prompt" in done.stdout and "--file-name-prefix" in done.stdout
    assert "--negative " not in done.stdout and "--prefix " not in done.stdout  # old names: unlisted
    assert "(default: out)" in done.stdout and "(default: 900.0)" in done.stdout
    assert "examples:\n  imagegen generate" in done.stdout
    for command in (["submit"], ["wait"], ["models"], ["jobs", "list"], ["batch"], ["serve"], ["configure"]):
        helped = imagegen(*command, "--help")
        assert helped.returncode == 0 and "examples:" in helped.stdout, command
    for command in (["generate"], ["batch"], ["submit"], ["wait"]):
        assert "--timeout SECONDS" in imagegen(*command, "--help").stdout, command


def test_the_old_flag_names_still_work(tmp_path: Path) -> None:
    done = imagegen(
        "generate", "a cat", "--negative", "dogs", "--prefix", "cat", "--seed", "3", "-n", "1", "--dry-run"
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["request"]["negative_prompt"] == "dogs" and plan["images"][0]["file"].startswith("cat")


def test_dry_run_checks_and_plans_without_generating(tmp_path: Path) -> None:
    done = imagegen("generate", "a cat", "-n", "2", "--seed", "5", "--dry-run", "--out", str(tmp_path / "o"))
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["dry_run"] is True and [i["seed"] for i in plan["images"]] == [5, 6]
    assert plan["model"] == "stable-image-core" and plan["usd_per_image_deployed"] is not None
    assert not (tmp_path / "o").exists()
    refused = imagegen("generate", "a cat", "--model", "titan-image-v2", "--dry-run")
    assert_one_line_error(refused, ExitCode.INVALID, "InvalidRequest", "end of life")


def test_an_offline_failure_writes_its_manifest_under_out_and_says_where_once(tmp_path: Path) -> None:
    done = imagegen("generate", "a cat [[fault:block-output]]", "-n", "2", "--out", str(tmp_path), "--quiet")
    assert done.returncode == ExitCode.FAILED, done.stderr
    assert "Traceback" not in done.stderr and "s3://" not in done.stdout + done.stderr
    manifest = json.loads(done.stdout)
    path = tmp_path / "images" / manifest["request_id"] / "manifest.json"
    assert json.loads(path.read_text()) == manifest
    assert [i["reason_code"] for i in manifest["images"]] == ["CONTENT_FILTERED_OUTPUT"] * 2
    loud = imagegen("generate", "a cat [[fault:block-output]]", "-n", "1", "--out", str(tmp_path))
    assert loud.stderr.count("manifest.json") == 1 and "s3://" not in loud.stderr


def _until(process: subprocess.Popen[str], marker: str, timeout: float = 120) -> str:
    """Read the process's stderr until a line holds ``marker``; returns what was read."""
    assert process.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen += line
        if marker in line:
            return seen
    raise AssertionError(f"no {marker!r} in {seen!r}")


def _interrupt(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "imagegen", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def test_ctrl_c_during_submit_wait_names_the_job_and_how_to_resume(
    local_server: LocalServer, engine: Any, tmp_path: Path
) -> None:
    # A prompt of this test's own: with a seed, a prompt an earlier test made in this session is served
    # by the prompt cache at once (test_cli_client submits "a lighthouse", seeds 1 and 2), and the job
    # would be over before the interrupt. Image 2 then takes 8 s at the stand-in.
    engine.bedrock.faults = FaultPlan(latency_by_seed={2: 8.0})
    out = str(tmp_path / "o")
    process = _start(
        "submit",
        f"a lighthouse {uuid.uuid4().hex[:8]}",
        "-n",
        "2",
        "--seed",
        "1",
        "--wait",
        "--api",
        local_server.url,
        "--out",
        out,
    )
    seen = _until(process, "1/2")
    job_id = seen.split("job ", 1)[1].split()[0]
    code, _, err = _interrupt(process)
    assert code == ExitCode.INTERRUPTED and "Traceback" not in seen + err
    assert f"job {job_id} keeps running" in err
    resume = f"imagegen wait {job_id} --out {out}"
    assert resume in err and f"imagegen jobs cancel {job_id}" in err
    done = imagegen(*resume.split()[1:], "--api", local_server.url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["succeeded"] == 2


def test_timeout_on_a_wait_leaves_the_job_running_and_says_how_to_resume(
    local_server: LocalServer, engine: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    engine.bedrock.faults = FaultPlan(latency_seconds=4.0)
    api = ["--api", local_server.url, "--quiet"]
    assert main(["submit", "a slow cat", "-n", "1", "--json", *api]) == 0
    job_id = json.loads(capsys.readouterr().out)["job_id"]
    assert main(["wait", job_id, "--timeout", "1", *api]) == ExitCode.TIMED_OUT
    err = capsys.readouterr().err
    assert "not done after --timeout 1 s" in err and f"imagegen wait {job_id}" in err


def test_ctrl_c_during_generate_keeps_the_images_already_made(tmp_path: Path) -> None:
    process = _start("generate", "a slow cat", "-n", "2", "--latency", "60", "--out", str(tmp_path))
    seen = _until(process, "images [")
    code, _, err = _interrupt(process)
    assert code == ExitCode.INTERRUPTED and "Traceback" not in seen + err
    assert "an offline run ends with this command" in err and "run it again" in err


def test_ctrl_c_during_batch_keeps_and_reports_what_had_finished(tmp_path: Path) -> None:
    source = tmp_path / "two.jsonl"
    lines = [{"prompt": "quick", "count": 1, "seed": 1}, {"prompt": "slow [[fault:latency=60]]", "count": 1}]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    process = _start("batch", str(source), "--out", str(out), "--max-concurrency", "2")
    seen = _until(process, "requests finished: 1/2")
    code, _, err = _interrupt(process)
    assert code == ExitCode.INTERRUPTED and "Traceback" not in seen + err
    assert "the 1 requests that had finished are under" in err
    manifests = list(out.rglob("manifest.json"))
    assert len(manifests) == 1
    kept = json.loads(manifests[0].read_text())
    assert kept["succeeded"] == 1 and (out / kept["images"][0]["key"]).is_file()


def test_a_partly_failed_job_exits_4_and_prints_the_manifest_or_words(
    local_server: LocalServer,
    engine: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine.bedrock.faults = FaultPlan(block_output_seeds={8})
    api = ["--api", local_server.url, "--quiet", "--out", str(tmp_path)]
    assert main(["submit", "a harbour", "-n", "2", "--seed", "7", "--wait", *api]) == ExitCode.PARTIAL
    printed = json.loads(capsys.readouterr().out)  # not a terminal: the manifest
    assert printed["succeeded"] == 1 and [i["status"] for i in printed["images"]] == ["SUCCEEDED", "FILTERED"]
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["submit", "a harbour", "-n", "2", "--seed", "7", "--wait", *api]) == ExitCode.PARTIAL
    words = capsys.readouterr().out
    assert "1 of 2 images written to" in words and "seed 8) filtered: CONTENT_FILTERED_OUTPUT" in words
    assert "manifest" in words and "placeholder" not in words  # an API's images are the model's


def test_terminal_output_is_words_and_tables_json_with_the_flag(
    local_server: LocalServer,
    engine: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = ["--api", local_server.url, "--quiet"]
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["models", *api]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["ID", "DEFAULT", "AVAILABLE", "LIFECYCLE", "USD/IMAGE", "NAME"]
    assert any(line.startswith("stable-image-core") and " yes " in line for line in table)
    assert main(["models", "--json", *api]) == 0
    assert json.loads(capsys.readouterr().out)["default_model"] == "stable-image-core"
    assert main(["submit", "a cat", "-n", "1", *api]) == 0
    said = capsys.readouterr().out
    job_id = said.split()[1]
    assert f"follow it: imagegen wait {job_id}" in said
    assert main(["jobs", "list", "--limit", "5", *api]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:3] == ["JOB", "STATUS", "STARTED"]
    row = next(line for line in listing if line.startswith(job_id))
    assert main(["status", job_id, *api]) == 0
    assert capsys.readouterr().out.startswith(f"job {job_id} ")  # words, not the job's JSON
    if "PROMPT" in listing[0]:  # the API says each job's prompt (GET /jobs of docs/api.md)
        assert row.rstrip().endswith("a cat")


def test_generate_on_a_terminal_says_what_was_written_and_that_it_is_a_placeholder(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            "script",
            "-qec",
            f"{sys.executable} -m imagegen generate 'a cat' -n 2 --seed 3 --out {tmp_path}",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout
    assert "2 of 2 images written to" in done.stdout and "image-00-3.png  seed 3" in done.stdout
    assert "placeholder pictures" in done.stdout and '"manifest_version"' not in done.stdout


def test_the_readmes_offline_commands_run_as_written(tmp_path: Path) -> None:
    """The README's "Use it" lines that run offline and end by themselves (generate, batch), from the
    repository's root, with their --out moved to a temporary directory."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Use it", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert block.lstrip().startswith(". .venv/bin/activate")  # says how imagegen gets on the PATH
    lines = [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]
    offline = [words[1:] for words in lines if words[:2] in (["imagegen", "generate"], ["imagegen", "batch"])]
    assert len(offline) == 3
    for given in offline:
        if "--out" in given:
            at = given.index("--out")
            given = [*given[:at], *given[at + 2 :]]
        done = imagegen(*given, "--out", str(tmp_path / given[0]), "--quiet", cwd=ROOT)
        assert done.returncode == 0, (given, done.stderr)
        assert "Traceback" not in done.stderr
