r"""API Gateway mapping templates (VTL) between the HTTP API and Step Functions.

Requests:

* ``POST /images`` -> ``StartSyncExecution`` of the Express workflow: the body, unchanged, is the
  execution input; the API request id names the execution (and so the request's S3 folder).
* ``GET /images?prompt=...&count=...`` -> the same, with ``{"prompt": ..., "count": ...}`` as input.
* ``POST /jobs`` -> ``StartExecution`` of the Standard workflow, named by the ``Idempotency-Key`` header
  (or the body's ``idempotency_key``), else by the API request id. Standard workflows are idempotent on
  the name, so a retried request neither starts nor bills a second job.

Responses: ``StartSyncExecution`` answers HTTP 200 whether the execution succeeded or not, so the
template reads ``status`` and sets the HTTP status with ``$context.responseOverride.status``:

=================================================  ======
SUCCEEDED (body: the execution output, the manifest) 200
FAILED with InvalidRequest or AllImagesFiltered      400
FAILED with ImagesThrottled                          429
any other FAILED                                     502
TIMED_OUT                                            504
=================================================  ======

Every error body is ``{"error": <error name>, "message": <text>}``; for a failed execution the message
is the ``errorMessage`` of the Lambda error payload in ``cause`` (never its stack trace), or the cause.

Strings are written into JSON with ``$util.escapeJavaScript(...)``, which escapes ``'`` as ``\'`` (not
valid JSON), hence the ``.replaceAll("\\'", "'")`` that follows each call (as the CDK's own
Step Functions integration does). ``"$!x"`` turns a missing value into an empty string.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

#: Workflow error name -> HTTP status of ``POST /images``; other failures: 502, TIMED_OUT: 504.
FAILED_STATUS = {"InvalidRequest": 400, "AllImagesFiltered": 400, "ImagesThrottled": 429}
OTHER_FAILED_STATUS = 502
TIMED_OUT_STATUS = 504
#: HTTP statuses a workflow's method can answer (declared as method responses).
SYNC_STATUSES = ("200", "400", "429", "502", "503", "504")
JOBS_STATUSES = ("202", "400", "409", "429", "502", "503")
#: Execution names given as Idempotency-Key: the charset of ``ImageRequest.idempotency_key``.
IDEMPOTENCY_KEY_PATTERN = "[A-Za-z0-9_-]{1,64}"
#: A name Step Functions rejects (it has spaces): an invalid key becomes an InvalidName error -> 400.
INVALID_NAME_MARKER = "invalid Idempotency-Key"


def _json_text(expression: str) -> str:
    """VTL that writes ``expression`` as the inside of a JSON string."""
    return f"""$util.escapeJavaScript({expression}).replaceAll("\\\\'","'")"""


def _json_text_twice(expression: str) -> str:
    """VTL that writes ``expression`` as a JSON string inside a JSON string (an execution input)."""
    return _json_text(_json_text(expression))


def _error_body(error: str, message: str) -> str:
    """``{"error": ..., "message": ...}``. A value starting with ``$`` is a VTL reference, written
    escaped; any other value is literal text."""

    def value(v: str) -> str:
        return f'"{_json_text(v)}"' if v.startswith("$") else json.dumps(v)

    return f'{{"error": {value(error)}, "message": {value(message)}}}'


def cors_prelude(origins: Sequence[str]) -> str:
    """VTL that allows the request's ``Origin`` when it is one of ``origins`` (nothing when empty)."""
    if not origins:
        return ""
    if list(origins) == ["*"]:
        return '#set($context.responseOverride.header.Access-Control-Allow-Origin = "*")\n'
    allowed = " || ".join(f'$origin == "{o}"' for o in origins)
    return (
        "#set($origin = \"$!input.params().header.get('Origin')\")\n"
        '#if($origin == "")#set($origin = "$!input.params().header.get(\'origin\')")#end\n'
        f"#if({allowed})\n"
        "#set($context.responseOverride.header.Access-Control-Allow-Origin = $origin)\n"
        '#set($context.responseOverride.header.Vary = "Origin")\n'
        "#end\n"
    )


# -- requests -------------------------------------------------------------------------------------


def sync_request_from_body(state_machine_arn: str) -> str:
    """``POST /images``: the body is the execution input, unchanged."""
    return (
        "## The body (already validated against the ImageRequest model) is the execution input.\n"
        "{\n"
        f'  "stateMachineArn": "{state_machine_arn}",\n'
        '  "name": "$context.requestId",\n'
        f'  "input": "{_json_text("$input.body")}"\n'
        "}\n"
    )


def sync_request_from_query(state_machine_arn: str) -> str:
    """``GET /images?prompt=...&count=...``: ``{"prompt": ..., "count": ...}`` is the execution input.

    A numeric ``count`` is passed as a number; anything else as a string, so the workflow's validation
    names the field (HTTP 400).
    """
    count = (
        "#if($count.matches('[0-9]{1,9}')), \\\"count\\\": $count"
        f'#elseif($count != ""), \\"count\\": \\"{_json_text_twice("$count")}\\"#end'
    )
    return (
        "## The query string (prompt required, count optional) becomes the execution input.\n"
        "#set($query = $input.params().querystring)\n"
        "#set($prompt = \"$!query.get('prompt')\")\n"
        "#set($count = \"$!query.get('count')\")\n"
        "{\n"
        f'  "stateMachineArn": "{state_machine_arn}",\n'
        '  "name": "$context.requestId",\n'
        f'  "input": "{{\\"prompt\\": \\"{_json_text_twice("$prompt")}\\"{count}}}"\n'
        "}\n"
    )


def _idempotency_key() -> str:
    """VTL that sets ``$key`` to the Idempotency-Key header ("" when absent)."""
    return (
        "#set($headers = $input.params().header)\n"
        "#set($key = \"$!headers.get('Idempotency-Key')\")\n"
        '#if($key == "")#set($key = "$!headers.get(\'idempotency-key\')")#end\n'
    )


def jobs_request(state_machine_arn: str) -> str:
    """``POST /jobs``: the body is the input; the execution name is the idempotency key or request id.

    An Idempotency-Key outside the allowed characters, or one that differs from the body's
    ``idempotency_key``, becomes a name Step Functions rejects (``InvalidName``), answered with 400.
    """
    return (
        "## Execution name: Idempotency-Key header, else the body's idempotency_key, else the request id.\n"
        + _idempotency_key()
        + "#set($bodyKey = \"$!input.path('$.idempotency_key')\")\n"
        '#if($key != "")\n'
        f"  #if(!$key.matches('{IDEMPOTENCY_KEY_PATTERN}') || ($bodyKey != \"\" && $bodyKey != $key))\n"
        f'    #set($name = "{INVALID_NAME_MARKER}")\n'
        "  #else\n"
        "    #set($name = $key)\n"
        "  #end\n"
        '#elseif($bodyKey != "")\n'
        "  #set($name = $bodyKey)\n"
        "#else\n"
        "  #set($name = $context.requestId)\n"
        "#end\n"
        "{\n"
        f'  "stateMachineArn": "{state_machine_arn}",\n'
        '  "name": "$name",\n'
        f'  "input": "{_json_text("$input.body")}"\n'
        "}\n"
    )


# -- responses ------------------------------------------------------------------------------------


def _chain(cases: Sequence[tuple[str, int, str, str]], otherwise: tuple[int, str, str] | None) -> str:
    """``#if/#elseif/#else`` over (VTL condition, HTTP status, error, message) cases."""
    lines = []
    for i, (condition, status, error, message) in enumerate(cases):
        lines.append(f"#{'if' if i == 0 else 'elseif'}({condition})")
        lines.append(f"#set($context.responseOverride.status = {status})")
        if error:
            lines.append(_error_body(error, message))
    if otherwise is not None:
        status, error, message = otherwise
        lines.append("#else")
        lines.append(f"#set($context.responseOverride.status = {status})")
        if error:
            lines.append(_error_body(error, message))
    lines.append("#end")
    return "\n".join(lines) + "\n"


def sync_response(cors_origins: Sequence[str] = ()) -> str:
    """StartSyncExecution answered (HTTP 200): the manifest, or the failure with its HTTP status."""
    by_status: dict[int, list[str]] = {}
    for error, status in FAILED_STATUS.items():
        by_status.setdefault(status, []).append(error)
    failed = [
        (" || ".join(f'$error == "{e}"' for e in errors), status, "", "")
        for status, errors in by_status.items()
    ]
    return (
        cors_prelude(cors_origins) + "#set($status = \"$!input.path('$.status')\")\n"
        '#if($status == "SUCCEEDED")\n'
        "$input.path('$.output')\n"
        "#else\n"
        "#set($error = \"$!input.path('$.error')\")\n"
        "#set($message = \"$!input.path('$.cause')\")\n"
        "## A Lambda error's cause is its payload: {errorType, errorMessage, stackTrace, ...}.\n"
        '#if($message.startsWith("{"))\n'
        "#set($parsed = $util.parseJson($message))\n"
        '#set($text = "$!parsed.errorMessage")\n'
        '#if($text != "")#set($message = $text)#end\n'
        "#end\n"
        '#if($status == "TIMED_OUT")\n'
        '#if($error == "")#set($error = "ExecutionTimedOut")#end\n'
        '#if($message == "")#set($message = "the workflow did not finish in time")#end\n'
        "#else\n"
        '#if($error == "")#set($error = "ExecutionFailed")#end\n'
        '#if($message == "")#set($message = "the workflow failed")#end\n'
        "#end\n"
        + _chain(
            [('$status == "TIMED_OUT"', TIMED_OUT_STATUS, "", ""), *failed],
            (OTHER_FAILED_STATUS, "", ""),
        )
        + f"{_error_body('$error', '$message')}\n"
        "#end\n"
    )


_CONFLICT = _idempotency_key() + (
    '#set($conflict = "a job with this idempotency key exists already, for another request or finished: '
    'GET /jobs/$key shows it; send a new Idempotency-Key for a new job")\n'
)


def start_failed_response(cors_origins: Sequence[str] = (), *, jobs: bool = False) -> str:
    """Step Functions refused to start an execution (HTTP 4xx from its API): why, as our error body."""
    cases: list[tuple[str, int, str, str]] = []
    if jobs:
        cases += [
            ('$type.contains("ExecutionAlreadyExists")', 409, "IdempotencyKeyReused", "$conflict"),
            (
                '$type.contains("InvalidName")',
                400,
                "InvalidRequest",
                "Idempotency-Key: 1 to 64 letters, digits, '_' or '-', and the same as the body's "
                "idempotency_key when both are sent",
            ),
        ]
    cases += [
        ('$type.contains("InvalidExecutionInput")', 400, "InvalidRequest", "$detail"),
        (
            '$type.contains("Throttling") || $type.contains("ExecutionLimitExceeded")',
            429,
            "TooManyRequests",
            "the workflow is busy; try again later",
        ),
    ]
    return (
        cors_prelude(cors_origins)
        + "#set($type = \"$!input.path('$.__type')\")\n"
        + "#set($detail = \"$!input.path('$.message')\")\n"
        + (_CONFLICT if jobs else "")
        + _chain(cases, (502, "ExecutionNotStarted", "the workflow could not be started"))
    )


def unavailable_response(cors_origins: Sequence[str] = ()) -> str:
    """Step Functions failed (HTTP 5xx from its API)."""
    return (
        cors_prelude(cors_origins)
        + _error_body("ServiceUnavailable", "the workflow service is unavailable; try again")
        + "\n"
    )


def job_accepted_response(cors_origins: Sequence[str] = ()) -> str:
    """StartExecution answered: 202 with the job id (the execution name) and where to poll."""
    return (
        cors_prelude(cors_origins) + "#set($arn = \"$!input.path('$.executionArn')\")\n"
        '#set($start = $arn.lastIndexOf(":") + 1)\n'
        "#set($job = $arn.substring($start))\n"
        '{"job_id": "$job", "status": "running", "status_url": "/jobs/$job"}\n'
    )
