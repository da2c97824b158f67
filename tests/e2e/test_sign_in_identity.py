"""Sign-in's claim-to-namespace path offline: moto's cognito-idp (a user pool, two users, the
``ADMIN_USER_PASSWORD_AUTH`` flow) issues each user an ID token; the token is checked against the
pool's JSON Web Key Set, as API Gateway's user pool authorizer does, and its claims are put where the
authorizer puts them (``requestContext.authorizer.claims``, every value a string) in the canonical API
Gateway events; the deployed API's Lambda then serves each user as the caller ``cognito`` + ``sub``:
a job is its starter's, 404 for the other user exactly as for a missing one, and the images live under
the ``sub``'s namespace. What moto does not serve (the hosted pages, ``/oauth2/token``) and API
Gateway's own check of the token are not run here (docs/decisions.md, "Sign-in")."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from image_pipeline.core.keys import namespace_prefix
from image_pipeline.core.tenancy import Caller
from joserfc import jwt
from joserfc.jwk import KeySet

from imagegen.runtime.engine import REGION
from imagegen.runtime.lambda_router import LambdaContext
from tests.support import load_event

PASSWORD = "Correct-Horse-42!"


def _claims_as_the_authorizer_gives_them(token: str, jwks: dict[str, Any]) -> dict[str, str]:
    """The token checked against the pool's keys (signature, ``token_use``), its claims as strings."""
    decoded = jwt.decode(token, KeySet.import_key_set(jwks))
    assert decoded.header["alg"] == "RS256"
    claims = decoded.claims
    assert claims["token_use"] == "id"
    return {name: value if isinstance(value, str) else json.dumps(value) for name, value in claims.items()}


@pytest.fixture(scope="module")
def users(offline_engine: Any) -> Iterator[dict[str, dict[str, str]]]:
    """Two users of a moto user pool, each with the claims of its ID token."""
    idp = boto3.client("cognito-idp", region_name=REGION)
    pool = idp.create_user_pool(PoolName=f"imagegen-{uuid.uuid4().hex[:6]}")["UserPool"]["Id"]
    client = idp.create_user_pool_client(
        UserPoolId=pool, ClientName="page", ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    jwks = _jwks()
    found = {}
    for name in ("ana", "ben"):
        email = f"{name}@example.com"
        idp.admin_create_user(UserPoolId=pool, Username=email, MessageAction="SUPPRESS")
        idp.admin_set_user_password(UserPoolId=pool, Username=email, Password=PASSWORD, Permanent=True)
        tokens = idp.admin_initiate_auth(
            UserPoolId=pool,
            ClientId=client,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": email, "PASSWORD": PASSWORD},
        )["AuthenticationResult"]
        found[name] = _claims_as_the_authorizer_gives_them(tokens["IdToken"], jwks)
    yield found


def _jwks() -> dict[str, Any]:
    """The pool's JSON Web Key Set: what moto serves at ``/<pool>/.well-known/jwks.json`` (Cognito's
    address of it), read from moto's own resource rather than over the network."""
    from moto.utilities.utils import load_resource

    return dict(load_resource("cognitoidp/resources/jwks-public.json"))


def _call(module: Any, name: str, claims: dict[str, str], **changes: Any) -> dict[str, Any]:
    event = load_event(name)
    context = event["requestContext"]
    context["identity"].update({"apiKeyId": None, "apiKey": None})  # no key with user pool auth
    context["authorizer"] = {"claims": claims}
    context["requestId"] = str(uuid.uuid4())
    for header in ("Idempotency-Key", "x-api-key", "X-Api-Key"):
        event["headers"].pop(header, None)
        event["multiValueHeaders"].pop(header, None)
    event.update(changes)
    response: dict[str, Any] = module.handler(event, LambdaContext(function_name="imagegen-http-api"))
    return response


def _get_job(module: Any, claims: dict[str, str], job_id: str) -> dict[str, Any]:
    path = f"/jobs/{job_id}"
    event_changes = {"path": path, "pathParameters": {"id": job_id}}
    return _call(module, "apigw_get_job", claims, **event_changes)


def test_each_signed_in_user_is_the_caller_of_its_token(
    users: dict[str, dict[str, str]], engine: Any
) -> None:
    from image_pipeline.handlers import http_api as module

    ana, ben = users["ana"], users["ben"]
    assert ana["sub"] != ben["sub"] and ana["cognito:username"] == "ana@example.com"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JOBS_STATE_MACHINE_ARN", engine.state_machines["jobs"])
        module.environment.cache_clear()
        try:
            body = json.dumps({"prompt": "ana's lighthouse", "count": 1, "seed": 3})
            started = _call(module, "apigw_post_jobs", ana, body=body)
            assert started["statusCode"] == 202, started["body"]
            job_id = json.loads(started["body"])["job_id"]
            deadline = time.monotonic() + 120
            while True:
                mine = _get_job(module, ana, job_id)
                assert mine["statusCode"] == 200, mine["body"]
                job = json.loads(mine["body"])
                if job["status"] not in {"running", "queued"}:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert job["status"] == "succeeded", job
            namespace = Caller("cognito", ana["sub"]).namespace
            assert job["manifest"]["caller_namespace"] == namespace
            assert all(i["key"].startswith(namespace_prefix(namespace)) for i in job["manifest"]["images"])
            # ben, signed in too, gets what a job that does not exist gets
            theirs = _get_job(module, ben, job_id)
            missing = _get_job(module, ben, f"missing-{uuid.uuid4().hex[:8]}")
            assert theirs["statusCode"] == missing["statusCode"] == 404
            assert json.loads(theirs["body"])["error"] == json.loads(missing["body"])["error"]
            # a claim the token does not carry is no identity: no sub, no caller (401 from the function)
            no_sub = {k: v for k, v in ana.items() if k != "sub"}
            assert _get_job(module, no_sub, job_id)["statusCode"] == 401
        finally:
            module.environment.cache_clear()


def test_a_token_of_another_pool_is_refused_by_the_key_check(users: dict[str, dict[str, str]]) -> None:
    """What the authorizer relies on: a token signed with a key not in the pool's set does not decode."""
    from joserfc.errors import BadSignatureError
    from joserfc.jwk import RSAKey

    pool_keys = KeySet.import_key_set(_jwks())
    kid = pool_keys.keys[0].kid  # the pool's key id, on a token signed with another key
    stranger = RSAKey.generate_key(2048, parameters={"kid": kid})
    claims = {**users["ana"], "sub": users["ben"]["sub"]}
    forged = jwt.encode({"alg": "RS256", "kid": kid}, claims, stranger)
    with pytest.raises(BadSignatureError):
        jwt.decode(forged, pool_keys)
