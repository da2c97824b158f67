"""Lasting links (``core/lasting_links.py``): tokens signed and checked, expiry, tampering, namespaces,
links minted into a manifest, and ``GET /links/{token}`` deployed (``handlers/follow_link.py``) with
API Gateway events over moto (Secrets Manager, S3)."""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from image_pipeline.core import clients
from image_pipeline.core.lasting_links import (
    LinkMinter,
    LinkRefused,
    LinkSettings,
    deployment_secret,
    link_settings,
    secret_bytes,
    sign_token,
    verify_token,
)
from image_pipeline.core.tenancy import Caller
from moto import mock_aws

from tests.support import load_event

SECRET = b"s" * 40
ALICE = Caller("apiKey", "alice-key-id").namespace
BOB = Caller("apiKey", "bob-key-id").namespace
KEY = f"{ALICE}/out/req-1/image-0-42.png"
NOW = 1_800_000_000.0
REGION = "us-west-2"
BUCKET = "links-test-bucket"


# -- tokens -----------------------------------------------------------------------------------------


def test_a_token_signed_is_verified_with_its_claims() -> None:
    token = sign_token(SECRET, key=KEY, namespace=ALICE, expires=int(NOW) + 60)
    claims = verify_token(SECRET, token, now=NOW)
    assert (claims.key, claims.namespace, claims.expires) == (KEY, ALICE, int(NOW) + 60)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_an_expired_token_is_refused_403_link_expired() -> None:
    token = sign_token(SECRET, key=KEY, namespace=ALICE, expires=int(NOW))
    assert verify_token(SECRET, token, now=NOW).key == KEY  # valid through its last second
    with pytest.raises(LinkRefused) as refused:
        verify_token(SECRET, token, now=NOW + 1)
    assert (refused.value.status, refused.value.error) == (403, "LinkExpired")
    assert "expired at" in refused.value.body()["message"]


def _flip(text: str, at: int) -> str:
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda t: _flip(t, 5), id="payload-changed"),
        pytest.param(lambda t: _flip(t, len(t) - 3), id="signature-changed"),
        pytest.param(lambda t: t.split(".")[0], id="no-signature"),
        pytest.param(lambda t: t[:-4], id="truncated"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: "not a token at all", id="garbage"),
        pytest.param(lambda t: t + "x", id="extended"),
    ],
)
def test_a_tampered_token_is_refused_403_invalid_link(tamper: Any) -> None:
    token = sign_token(SECRET, key=KEY, namespace=ALICE, expires=int(NOW) + 60)
    with pytest.raises(LinkRefused) as refused:
        verify_token(SECRET, tamper(token), now=NOW)
    assert (refused.value.status, refused.value.error) == (403, "InvalidLink")


def test_a_token_of_another_secret_is_refused() -> None:
    token = sign_token(b"o" * 40, key=KEY, namespace=ALICE, expires=int(NOW) + 60)
    with pytest.raises(LinkRefused, match="not valid"):
        verify_token(SECRET, token, now=NOW)


def test_a_link_is_never_signed_for_a_key_outside_its_namespace() -> None:
    with pytest.raises(ValueError, match="not under the namespace"):
        sign_token(SECRET, key=KEY, namespace=BOB, expires=int(NOW) + 60)
    # a payload swapping in another namespace (signed, so a secret-holder's bug) is still refused
    import base64
    import hashlib
    import hmac

    payload = base64.urlsafe_b64encode(f"v1\n{int(NOW) + 60}\n{BOB}\n{KEY}".encode()).decode().rstrip("=")
    mac = hmac.new(SECRET, payload.encode(), hashlib.sha256).digest()
    forged = f"{payload}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
    with pytest.raises(LinkRefused) as refused:
        verify_token(SECRET, forged, now=NOW)
    assert refused.value.error == "InvalidLink"


def test_secrets_shorter_than_32_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        secret_bytes("short")
    assert secret_bytes("x" * 64) == b"x" * 64


# -- minting ----------------------------------------------------------------------------------------


def _manifest(*keys: str | None) -> dict[str, Any]:
    return {
        "request_id": "req-1",
        "images": [
            {"index": i, "key": key, "status": "SUCCEEDED" if key else "FAILED", "url": "presigned"}
            for i, key in enumerate(keys)
        ],
    }


def test_links_are_minted_for_the_callers_own_images_only() -> None:
    minter = LinkMinter(
        secret=SECRET,
        lifetime_seconds=30 * 86400,
        base_url="https://api/v1/",
        namespace=ALICE,
        clock=lambda: NOW,
    )
    foreign = f"{BOB}/out/req-1/image-1-43.png"
    linked = minter.with_links(_manifest(KEY, foreign, None))
    own, theirs, failed = linked["images"]
    assert own["link"].startswith("https://api/v1/links/")
    assert own["download_link"] == own["link"] + "?download=1"
    assert own["url"] == "presigned"  # url and download_url stay what the page and CLI read
    token = own["link"].removeprefix("https://api/v1/links/")
    assert verify_token(SECRET, token, now=NOW + 30 * 86400).key == KEY
    with pytest.raises(LinkRefused):
        verify_token(SECRET, token, now=NOW + 30 * 86400 + 1)
    assert "link" not in theirs and "link" not in failed
    assert linked["links_expire_at"] == "2027-02-14T08:00:00+00:00"


def test_link_settings_read_their_environment() -> None:
    settings = LinkSettings.from_environ(
        {"LINKS_SECRET_ARN": "arn:x", "LINK_LIFETIME_SECONDS": "86400", "LINK_REDIRECT_EXPIRY_SECONDS": "120"}
    )
    assert (settings.secret_arn, settings.lifetime_seconds, settings.redirect_expiry_seconds) == (
        "arn:x",
        86400,
        120,
    )
    assert LinkSettings.from_environ(settings.to_environment()) == settings
    with pytest.raises(RuntimeError):
        LinkSettings.from_environ({"LINK_LIFETIME_SECONDS": "10"})


# -- GET /links/{token} deployed ----------------------------------------------------------------------


@pytest.fixture
def follow(aws_credentials: None, monkeypatch: pytest.MonkeyPatch, fresh_clients: None) -> Iterator[Any]:
    """``call(token, download=False)`` -> the follow-link function's answer, over moto; ``.secret`` is
    the secret Secrets Manager generated, ``.s3`` the client."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("IMAGES_BUCKET", BUCKET)
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    with mock_aws():
        secrets = boto3.client("secretsmanager", region_name=REGION)
        password = secrets.get_random_password(PasswordLength=64, ExcludePunctuation=True)["RandomPassword"]
        arn = secrets.create_secret(Name="imagegen-links", SecretString=password)["ARN"]
        monkeypatch.setenv("LINKS_SECRET_ARN", arn)
        link_settings.cache_clear()
        deployment_secret.cache_clear()
        clients.reset_clients()
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"\x89PNG...", ContentType="image/png")
        module = importlib.import_module("image_pipeline.handlers.follow_link")

        def call(token: str, download: bool = False) -> dict[str, Any]:
            event = copy.deepcopy(load_event("apigw_get_job"))
            event.update(
                resource="/links/{token}",
                path=f"/links/{token}",
                pathParameters={"token": token},
                queryStringParameters={"download": "1"} if download else None,
            )
            for name in ("x-api-key",):  # no key: the signature is the authorization
                event["headers"].pop(name, None)
                event["multiValueHeaders"].pop(name, None)
            event["requestContext"]["identity"].update(apiKey=None, apiKeyId=None)
            return module.handler(event, _context())

        call.secret = password.encode()  # type: ignore[attr-defined]
        call.s3 = s3  # type: ignore[attr-defined]
        yield call
    link_settings.cache_clear()
    deployment_secret.cache_clear()


def _context() -> Any:
    from imagegen.runtime.lambda_router import LambdaContext

    return LambdaContext(function_name="imagegen-follow-link")


def _token(secret: bytes, key: str = KEY, namespace: str = ALICE, expires_in: int = 3600) -> str:
    import time

    return sign_token(secret, key=key, namespace=namespace, expires=int(time.time()) + expires_in)


def test_a_valid_link_redirects_to_a_fresh_presigned_url(follow: Any) -> None:
    answer = follow(_token(follow.secret))
    assert answer["statusCode"] == 302 and answer["body"] == ""
    location = answer["headers"]["Location"]
    parts = urlsplit(location)
    assert parts.path.endswith("/image-0-42.png") and BUCKET in location
    query = parse_qs(parts.query)
    assert query["X-Amz-Expires"] == ["300"]  # followed at once: a short presigned URL
    assert answer["headers"]["Cache-Control"] == "no-store"
    assert follow.s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == b"\x89PNG..."


def test_a_download_link_redirects_to_an_attachment(follow: Any) -> None:
    location = follow(_token(follow.secret), download=True)["headers"]["Location"]
    disposition = parse_qs(urlsplit(location).query)["response-content-disposition"]
    assert disposition == ['attachment; filename="image-0-42.png"']


@pytest.mark.parametrize(
    ("make", "status", "error"),
    [
        pytest.param(lambda s: _token(s, expires_in=-5), 403, "LinkExpired", id="expired"),
        pytest.param(lambda s: _flip(_token(s), 3), 403, "InvalidLink", id="tampered"),
        pytest.param(lambda s: _token(b"z" * 40), 403, "InvalidLink", id="other-secret"),
        pytest.param(lambda s: "", 403, "InvalidLink", id="empty"),
        pytest.param(
            lambda s: _token(s, key=f"{ALICE}/out/req-1/gone.png"), 404, "NotFound", id="image-gone"
        ),
    ],
)
def test_links_not_honoured_are_refused_with_error_and_message(
    follow: Any, make: Any, status: int, error: str
) -> None:
    answer = follow(make(follow.secret))
    assert answer["statusCode"] == status
    body = json.loads(answer["body"])
    assert body["error"] == error and body["message"]
    assert "Location" not in answer["headers"]


# -- what the CLI keeps ------------------------------------------------------------------------------


def test_the_cli_keeps_lasting_links_in_the_manifest_it_writes(tmp_path: Any) -> None:
    from imagegen.cli.outputs import write_local_manifest

    manifest = {
        "links_expire_at": "2027-01-01T00:00:00+00:00",
        "urls_expire_at": "2026-12-01T00:00:00+00:00",
        "images": [
            {"key": KEY, "url": "presigned", "download_url": "presigned", "link": "L", "download_link": "D"}
        ],
    }
    written = json.loads(write_local_manifest(manifest, {KEY: tmp_path / "a.png"}, tmp_path).read_text())
    (image,) = written["images"]
    assert (image["link"], image["download_link"]) == ("L", "D") and "url" not in image
    assert written["links_expire_at"] and "urls_expire_at" not in written


def test_serve_refuses_a_link_lifetime_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    from imagegen.cli.main import main

    assert main(["serve", "--link-lifetime-days", "0"]) != 0
    assert "--link-lifetime-days takes 1 to 3650 days" in capsys.readouterr().err


def test_the_deployment_mints_links_outside_a_request_only_with_its_base_url(
    follow: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest step and the webhooks mint with ``LINKS_BASE_URL`` (the API's stage URL) and the
    secret; without the URL, or for no namespace, they mint none. A link they mint is followed."""
    from image_pipeline.core.lasting_links import deployment_minter

    assert deployment_minter(ALICE) is None  # no LINKS_BASE_URL
    monkeypatch.setenv("LINKS_BASE_URL", "https://abc123.execute-api.us-west-2.amazonaws.com/v1/")
    link_settings.cache_clear()
    assert deployment_minter(None) is None
    minter = deployment_minter(ALICE)
    assert minter is not None
    link = minter.mint(KEY)
    assert link is not None and link.startswith(
        "https://abc123.execute-api.us-west-2.amazonaws.com/v1/links/"
    )
    answer = follow(link.rsplit("/", 1)[1])
    assert answer["statusCode"] == 302
