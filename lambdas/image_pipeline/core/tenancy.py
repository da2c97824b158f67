"""Who is asking: the caller of a request, and the namespace everything of theirs lives in.

The identity is taken from what API Gateway puts in the request context (the API key's id, the IAM
principal, the Cognito user) or, for the console and EventBridge, named by the entry point itself. It
is never read from the request body or from a header the client controls.

Each caller's jobs, idempotency keys and image keys are scoped by :attr:`Caller.namespace`: a short
hash of the identity (not the identity itself, which may be an ARN or an e-mail). Two callers using the
same idempotency key therefore start two different executions, and a job id of one caller names no
execution of another, which answers 404 exactly like a job that does not exist.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

CallerKind = Literal["apiKey", "iam", "cognito", "local", "system"]
#: Hex characters of the namespace hash: 48 bits. With the 64-character idempotency keys and a '-',
#: an execution name stays within Step Functions' 80 characters.
NAMESPACE_LENGTH = 12
#: The caller of an execution started from the Step Functions console (or any StartExecution whose
#: input is a bare request): operators with StartExecution rights on the state machine.
CONSOLE = ("system", "console")
#: The caller of a local server with no ``--api-key``: everyone who can reach it is one caller.
ANONYMOUS = ("local", "anonymous")
#: Step Functions' limit on an execution name.
MAX_EXECUTION_NAME = 80
#: The longest job id (an idempotency key or a UUID): what is left of an execution name after
#: ``<namespace>-``.
MAX_JOB_ID_LENGTH = MAX_EXECUTION_NAME - NAMESPACE_LENGTH - 1


@dataclass(frozen=True)
class Caller:
    """One caller: what kind of identity, and its id within that kind."""

    kind: CallerKind
    id: str

    @property
    def namespace(self) -> str:
        """The caller's namespace: a stable hash of kind and id (hex, :data:`NAMESPACE_LENGTH` long)."""
        digest = hashlib.sha256(f"{self.kind}\0{self.id}".encode()).hexdigest()
        return digest[:NAMESPACE_LENGTH]

    def to_input(self) -> dict[str, str]:
        """The caller as written into an execution's input by the entry point."""
        return {"kind": self.kind, "id": self.id}

    @classmethod
    def from_input(cls, value: Mapping[str, Any]) -> Caller:
        """The caller an entry point wrote into an execution's input (see :meth:`to_input`)."""
        kind, ident = value.get("kind"), value.get("id")
        if (
            kind not in {"apiKey", "iam", "cognito", "local", "system"}
            or not isinstance(ident, str)
            or not ident
        ):
            raise ValueError(f"not a caller: {dict(value)!r}")
        return cls(kind, ident)  # type: ignore[arg-type]


def console_caller() -> Caller:
    return Caller(*CONSOLE)  # type: ignore[arg-type]


def anonymous_caller() -> Caller:
    """The one caller of a local server that was started without ``--api-key``."""
    return Caller(*ANONYMOUS)  # type: ignore[arg-type]


def events_caller(account: str) -> Caller:
    """The caller of a request put on the event bus from ``account`` (the event's ``account``): the
    EventBridge rule's input transformer writes it, so nothing in the event's ``detail`` can name it."""
    return Caller("system", f"events:{account}")


def batch_caller(upload_key: str) -> Caller:
    """The caller of every request of a batch file: the folder it was uploaded to
    (``batches/team-a/run.jsonl`` -> ``batch:batches/team-a/``). Whoever may put objects under
    ``batches/`` is an operator; the folder is what tells one team's batches from another's."""
    folder = upload_key.rsplit("/", 1)[0] + "/" if "/" in upload_key else ""
    return Caller("system", f"batch:{folder}")


def caller_from_request_context(request_context: Mapping[str, Any]) -> Caller | None:
    """The caller API Gateway authenticated, from a REST API Lambda proxy event's ``requestContext``.

    Cognito (a user pool authorizer's ``claims.sub``) first, then IAM (``identity.userArn``), then the
    API key (``identity.apiKeyId``). None when the context names nobody (a deployment without auth).
    """
    authorizer = request_context.get("authorizer") or {}
    claims = authorizer.get("claims") if isinstance(authorizer, Mapping) else None
    if isinstance(claims, Mapping) and claims.get("sub"):
        return Caller("cognito", str(claims["sub"]))
    identity = request_context.get("identity") or {}
    if identity.get("userArn"):
        return Caller("iam", str(identity["userArn"]))
    if identity.get("apiKeyId"):
        return Caller("apiKey", str(identity["apiKeyId"]))
    return None


def execution_name(caller: Caller, job_id: str) -> str:
    """The Step Functions execution name of a caller's job: ``<namespace>-<job id>``."""
    return f"{caller.namespace}-{job_id}"


def job_id_of(caller: Caller, name: str) -> str | None:
    """The caller's job id of an execution name, or None when the execution is not theirs."""
    prefix = f"{caller.namespace}-"
    return name[len(prefix) :] if name.startswith(prefix) else None
