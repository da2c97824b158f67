"""Helpers the suites share, imported as ``from tests.support import ...`` (fixtures stay in conftest.py).

Canonical inputs (``tests/events/*.json``) and an API Gateway event of another identity
(:func:`with_identity`), emptying a bucket inside the session's mock, counting the executions an engine
started, and serving an ASGI app (the local API) on a free port.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

EVENTS = Path(__file__).parent / "events"
#: A day when every registry model was active (before Titan Image v1 became legacy on 2025-01-31; the
#: model facts file has the dates). Tests of a retired model's own limits that go through
#: ``check_request`` judge it on this day; a request today names an active model.
ALL_MODELS_ACTIVE = date(2025, 1, 1)


def load_event(name: str) -> Any:
    """A canonical input from ``tests/events/<name>.json``."""
    return json.loads((EVENTS / f"{name}.json").read_text())


def with_identity(
    event: dict[str, Any],
    *,
    api_key_id: str | None = None,
    user_arn: str | None = None,
    cognito_sub: str | None = None,
) -> dict[str, Any]:
    """A copy of an API Gateway REST proxy event (``load_event("apigw_...")``) as API Gateway would
    send it for another identity: the API key's id (``requestContext.identity.apiKeyId``), an IAM
    principal (``identity.userArn``) or a Cognito user (``authorizer.claims.sub``). None of them: an
    event that names nobody. Headers and body are left as they are: they never name the caller."""
    changed = copy.deepcopy(event)
    context = changed.setdefault("requestContext", {})
    identity = context.setdefault("identity", {})
    identity.update({"apiKeyId": api_key_id, "userArn": user_arn})
    if api_key_id is None:
        identity["apiKey"] = None
    context.pop("authorizer", None)
    if cognito_sub is not None:
        context["authorizer"] = {"claims": {"sub": cognito_sub, "token_use": "id"}}
    return changed


def empty_bucket(s3: Any, bucket: str) -> None:
    """Remove the bucket: inside another test's live mock (the session engine), moto keeps state."""
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)


def count_executions(engine: Any) -> int:
    """Executions started so far on the engine's state machines."""
    return int(engine.count_executions())


class LocalServer(NamedTuple):
    """A running local API: its base URL (no trailing slash) and the engine behind it."""

    url: str
    engine: Any


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on a free port; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the local API server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
