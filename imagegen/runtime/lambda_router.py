"""Route Lambda ``Invoke`` calls made through boto3 to handler modules in this process.

moto runs no Lambda code without Docker: its Step Functions interpreter calls ``lambda.invoke`` on a
boto3 client created from the default session. We register a ``before-call.lambda.Invoke`` handler on
that session's event system (a documented botocore extension point): it runs the handler module
and answers as the Lambda service would, including ``FunctionError`` and the error payload that
Step Functions turns into the error name (the exception's class name).
"""

from __future__ import annotations

import importlib
import io
import json
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.awsrequest import AWSResponse

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that the handlers (and Powertools) read."""

    function_name: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    invoked_function_arn: str = ""
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "offline"
    log_stream_name: str = "offline"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def function_name_of(identifier: str) -> str:
    """``my-fn`` from a function name, a (partial) ARN, or an ARN with a qualifier."""
    identifier = unquote(identifier)
    if ":function:" in identifier:
        identifier = identifier.split(":function:", 1)[1]
    return identifier.split(":", 1)[0]


def load_handler(dotted: str) -> Handler:
    """Import ``package.module.function``."""
    module_name, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


class LambdaRouter:
    """Maps function names to handler paths and answers ``Invoke`` for them."""

    def __init__(self, functions: dict[str, str]) -> None:
        self.functions = dict(functions)
        self.invocations: dict[str, int] = dict.fromkeys(functions, 0)
        self._lock = threading.Lock()
        self._session: Any = None

    def register(self) -> None:
        """Attach to boto3's default session (clients created afterwards are routed)."""
        self._session = boto3._get_default_session()
        self._session.events.register(
            "before-call.lambda.Invoke", self._on_invoke, unique_id=f"router-{id(self)}"
        )

    def unregister(self) -> None:
        if self._session is not None:
            self._session.events.unregister("before-call.lambda.Invoke", unique_id=f"router-{id(self)}")
            self._session = None

    def invoke(self, name: str, event: Any) -> tuple[int, str | None, bytes]:
        """Run a function: (status code, FunctionError or None, JSON payload bytes)."""
        handler = load_handler(self.functions[name])
        with self._lock:
            self.invocations[name] += 1
        context = LambdaContext(function_name=name, invoked_function_arn=f"offline:function:{name}")
        try:
            result = handler(event, context)
            return 200, None, json.dumps(result).encode()
        except Exception as exc:  # what the Lambda runtime does with an unhandled exception
            payload = {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "requestId": context.aws_request_id,
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }
            return 200, "Unhandled", json.dumps(payload).encode()

    def _on_invoke(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        path = str(params.get("url_path", ""))
        marker = "/functions/"
        if marker not in path:
            return None
        name = function_name_of(path.split(marker, 1)[1].split("/invocations", 1)[0])
        if name not in self.functions:
            return None
        body = params.get("body") or b"{}"
        event = json.loads(body.decode() if isinstance(body, bytes | bytearray) else body)
        status, function_error, payload = self.invoke(name, event)
        http = AWSResponse(url=path, status_code=status, headers={}, raw=None)
        parsed: dict[str, Any] = {
            "StatusCode": status,
            "ExecutedVersion": "$LATEST",
            "Payload": io.BytesIO(payload),
            "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": str(uuid.uuid4()), "HTTPHeaders": {}},
        }
        if function_error:
            parsed["FunctionError"] = function_error
        return http, parsed
