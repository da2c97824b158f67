"""``--auth iam``: the client commands sign each call with Signature Version 4 for ``execute-api``, as an
API Gateway deployment with ``imagegen:apiAuth=iam`` requires. A local stand-in of such an API checks
what API Gateway checks of the ``Authorization`` header: its shape (algorithm, credential scope of the
access key, date, Region and service, the signed headers, a 64-hex signature) and the signature itself,
recomputed by botocore's ``SigV4Auth`` from what arrived (method, path, query, body, signed headers,
``X-Amz-Date``) with the secret key the test gave the client. A wrong secret is refused, as AWS does.
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv4-signing-requests.html (read 2026-11-30)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from imagegen.cli.configure import ApiSettings

ACCESS_KEY, SECRET_KEY, TOKEN, REGION = (
    "AKIDEXAMPLE",
    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "session-token-1",
    "us-west-2",
)
AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]+)/(?P<day>\d{8})/(?P<region>[a-z0-9-]+)/"
    r"(?P<service>[a-z-]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})$"
)


def verify(method: str, url: str, headers: dict[str, str], body: bytes) -> str | None:
    """Why API Gateway would refuse this call's signature, or None when it is right."""
    given = AUTHORIZATION.match(headers.get("authorization", ""))
    if given is None:
        return f"malformed Authorization header: {headers.get('authorization')!r}"
    if (given["key"], given["region"], given["service"]) != (ACCESS_KEY, REGION, "execute-api"):
        return f"wrong credential scope: {given.group(0)}"
    amz_date = headers.get("x-amz-date", "")
    if not amz_date.startswith(given["day"]) or headers.get("x-amz-security-token") != TOKEN:
        return "X-Amz-Date or X-Amz-Security-Token missing or not in the scope"
    signed = given["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return f"host and x-amz-date must be signed, not only {signed}"
    again = AWSRequest(method=method, url=url, data=body, headers={h: headers[h] for h in signed})
    again.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, TOKEN), "execute-api", REGION)
    canonical = signer.canonical_request(again)
    expected = signer.signature(signer.string_to_sign(again, canonical), again)
    return None if expected == given["sig"] else "The request signature we calculated does not match"


class IamApi(BaseHTTPRequestHandler):
    """A stand-in of an IAM-authorized imagegen API: verifies every call, then answers."""

    calls: list[dict[str, Any]] = []

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        problem = verify(self.command, f"http://{headers['host']}{self.path}", headers, body)
        IamApi.calls.append(
            {"method": self.command, "path": self.path, "problem": problem, "headers": headers}
        )
        if problem:
            status, answer = 403, {"message": problem}
        elif self.path.endswith("/models"):
            status, answer = (
                200,
                {"default_model": "stable-image-core", "models": [{"id": "stable-image-core"}]},
            )
        else:
            status, answer = (
                202,
                {"job_id": "j-1", "status": "running", "status_url": "jobs/j-1", "echo": json.loads(body)},
            )
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def iam_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), IamApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    IamApi.calls = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def run(
    *args: str, secret: str = SECRET_KEY, key: str = ACCESS_KEY, token: str = TOKEN, tmp: Path
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_SESSION_TOKEN": token,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        "IMAGEGEN_CONFIG_DIR": str(tmp / "config"),
        "IMAGEGEN_AUTH": "iam",
    }
    env.pop("AWS_PROFILE", None)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if not env[name]:
            del env[name]
    return subprocess.run(
        [sys.executable, "-m", "imagegen", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_calls_are_signed_with_sigv4_for_execute_api(iam_api: str, tmp_path: Path) -> None:
    done = run("models", "--api", iam_api, "--json", tmp=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["default_model"] == "stable-image-core"
    submitted = run("submit", "a red porsche", "-n", "2", "--api", iam_api, "--json", tmp=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)["echo"] == {"prompt": "a red porsche", "count": 2}  # the signed body
    assert [(c["method"], c["path"], c["problem"]) for c in IamApi.calls] == [
        ("GET", "/v1/models", None),
        ("POST", "/v1/jobs", None),
    ]
    assert all("x-api-key" not in c["headers"] for c in IamApi.calls)


def test_a_wrong_secret_is_refused_and_said_in_one_line(iam_api: str, tmp_path: Path) -> None:
    done = run("models", "--api", iam_api, secret="not-the-secret", tmp=tmp_path)
    assert done.returncode == 5 and "Traceback" not in done.stderr
    assert "403" in done.stderr and "signature" in done.stderr and "imagegen configure" in done.stderr
    assert IamApi.calls[0]["problem"] == "The request signature we calculated does not match"


def test_missing_or_partial_aws_credentials_are_one_line(iam_api: str, tmp_path: Path) -> None:
    partial = run("models", "--api", iam_api, secret="", tmp=tmp_path)
    assert partial.returncode == 5 and "Traceback" not in partial.stderr
    assert (
        "your AWS credentials cannot be used" in partial.stderr and "AWS_SECRET_ACCESS_KEY" in partial.stderr
    )
    none = run("models", "--api", iam_api, secret="", key="", token="", tmp=tmp_path)
    assert none.returncode == 5 and "no AWS credentials found" in none.stderr
    assert IamApi.calls == []  # nothing unsigned was sent


def test_the_region_of_an_execute_api_url_is_the_signing_region() -> None:
    from imagegen.cli.api_commands import _region_of

    url = "https://abc123.execute-api.eu-central-1.amazonaws.com/v1/"
    assert _region_of(ApiSettings(api_url=url, auth="iam", region="us-west-2")) == "eu-central-1"
    assert (
        _region_of(ApiSettings(api_url="http://127.0.0.1:8000", auth="iam", region="us-west-2"))
        == "us-west-2"
    )
