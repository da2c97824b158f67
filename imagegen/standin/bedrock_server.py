"""A local HTTP server that speaks the Amazon Bedrock Runtime ``InvokeModel`` protocol, offline.

It is a stand-in for Bedrock, not a model: every "generated" image comes from
``imagegen.standin.renderer.render_image``, an abstract picture derived from a hash of the prompt and
seed, labelled ``OFFLINE RENDER — not a model``. The server exists so that the image pipeline (and boto3
code in general) can run, be tested and be benchmarked without an AWS account. It is as strict as
Bedrock's documentation says Bedrock is, and no stricter than that, so that it proves the adapters'
bodies against the documentation rather than against the adapters.

boto3 needs no change: point the ``bedrock-runtime`` client at the server, e.g. with
``AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:PORT`` (any credentials will do)::

    with LocalBedrockServer() as server:
        client = boto3.client("bedrock-runtime", endpoint_url=server.endpoint_url, region_name="us-west-2",
                              aws_access_key_id="x", aws_secret_access_key="x")
        body = client.invoke_model(modelId="stability.stable-image-core-v1:1", body=json.dumps({...}))["body"]

Run it by hand with ``python -m imagegen.standin.bedrock_server --port 8765 [--latency 0.5] ...``
(``--help`` lists the options).

Routes:

* ``POST /model/{modelId}/invoke`` — InvokeModel. ``modelId`` is a model id, an inference profile id
  (``us.stability.stable-image-inpaint-v1:0``) or a foundation-model / inference-profile ARN. Models:
  those of the model facts file (``image_pipeline.models.facts``) the server can answer: Titan Image
  Generator v1/v2 and Nova Canvas (``TEXT_IMAGE``), and the Stability AI models: text to image, image to
  image (SD3.5 Large, Stable Image Ultra) and the Image Services, each done on the input's real pixels
  (``imagegen.standin.image_ops``: an upscale is a resize to the documented size, a background removal
  has an alpha channel, an outpaint keeps the original pixels inside a larger canvas, ...).
* ``GET /__faults`` / ``PUT /__faults`` — read / replace the ``FaultPlan`` (JSON body).
* ``GET /__stats`` — counters; ``DELETE /__stats`` resets them. ``GET /__requests`` — the most
  recent calls (model, seed, prompt, outcome).

A call is refused, in this order, as Bedrock refuses it (wording and sources: ``imagegen.standin.errors``):

1. the model id: unknown, past its end of life on the server's "today", not offered in the server's
   Region, or a profile-only model called by its bare id (``imagegen.standin.availability``; the Region
   is ``region`` or, by default, the one each call is signed for, i.e. the offline engine's);
2. ``FaultPlan.access_denied_models``, and a third-party (AWS Marketplace) model's first call when the
   plan says the caller lacks the Marketplace permissions (``no_marketplace_permission``):
   AccessDeniedException. Once a call to such a model has succeeded, the account is subscribed and
   later calls succeed without the permissions, as AWS documents;
3. a body that is not a JSON object: ValidationException;
4. injected faults (below);
5. a body its model's JSON Schema, transcribed from the Bedrock documentation, refuses: ValidationException
   "Malformed input request: ..., please reformat your input and try again." (``imagegen.standin.body_schemas``;
   the schema directory is the repository's ``tests/schemas/bedrock`` unless told otherwise; without it,
   bodies are not checked and the server says so once).

Errors use the AWS restJson1 form botocore parses (status code, ``x-amzn-ErrorType`` header and a
``{"message": ...}`` body), so boto3 raises ``client.exceptions.ThrottlingException`` and so on.

Fault injection: a server-wide ``FaultPlan`` (``imagegen.standin.faults``: latency, first-k or rate-based
throttling / timeouts / server errors, blocked prompt terms, blocked output seeds, denied models, no
Marketplace permissions) and per-request directives written in the prompt, which the server strips
before rendering:

* ``[[fault:throttle]]`` ThrottlingException · ``[[fault:timeout]]`` ModelTimeoutException ·
  ``[[fault:error]]`` the plan's ``fail_status`` error (default ServiceUnavailableException) ·
  ``[[fault:unavailable]]`` 503 · ``[[fault:internal]]`` 500 · ``[[fault:model-error]]`` 424 ·
  ``[[fault:denied]]`` AccessDeniedException — each with an optional count, e.g.
  ``[[fault:throttle=2]]``: only the first 2 calls with this prompt, model and seed fail;
* ``[[fault:block-prompt]]`` the prompt is blocked, ``[[fault:block-output]]`` the images are,
  ``[[fault:block-input]]`` the input image is (image-to-image and the image services);
* ``[[fault:latency=0.3]]`` 0.3 s of extra latency.

Content-filter answers follow each model family: Titan and Nova Canvas answer a blocked prompt with
ValidationException ("This request has been blocked by our content filters. ...") and blocked
images with HTTP 200 ``{"images": [], "error": "All of the generated images have been blocked by our
content filters."}``; the Stability models answer HTTP 200 with ``finish_reasons`` ``["Filter reason:
prompt"]`` or ``["Filter reason: output image"]`` and no image.

What it does not do: Titan/Nova task types other than ``TEXT_IMAGE``, streaming, Converse,
guardrails, request signing checks, the "legacy model unused for 15 days" refusal.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import json
import math
import random
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from image_pipeline.models.ids import BEDROCK_MODEL_IDS
from PIL import Image

from imagegen.standin.availability import ModelAvailability, parse_identifier, signed_region
from imagegen.standin.body_schemas import BodySchemas
from imagegen.standin.errors import (
    INVALID_MODEL_IDENTIFIER,
    MARKETPLACE_DENIED,
    MESSAGES,
    QUOTA_THROTTLED,
    BedrockError,
    malformed,
)
from imagegen.standin.faults import Directive, FaultPlan, parse_directives
from imagegen.standin.image_ops import apply, operation_of
from imagegen.standin.renderer import render_image

__all__ = [
    "ALL_BLOCKED_MESSAGE",
    "ASPECT_RATIO_SIZES",
    "PROMPT_BLOCKED_MESSAGE",
    "SOME_BLOCKED_MESSAGE",
    "FaultPlan",
    "LocalBedrockServer",
    "canonical_model_id",
    "main",
    "model_family",
]

PROMPT_BLOCKED_MESSAGE = "This request has been blocked by our content filters. Please adjust your text prompt to submit a new request."
ALL_BLOCKED_MESSAGE = "All of the generated images have been blocked by our content filters."
SOME_BLOCKED_MESSAGE = "Some of the generated images have been blocked by our content filters."

Family = Literal["titan", "nova", "stability"]

_AMAZON_DEFAULTS: dict[str, tuple[int, int, int]] = {
    "titan": (1408, 1408, 42),  # width, height ("The default value is 1408"), seed (unconfirmed)
    "nova": (1024, 1024, 12),  # "Both default to 1024", seed default 12
}

ASPECT_RATIO_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 756),
    "21:9": (1533, 657),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "4:5": (896, 1120),
    "5:4": (1120, 896),
    "9:16": (756, 1344),
    "9:21": (657, 1533),
}
"""Output size per Stability aspect ratio (about one megapixel, exact ratio)."""

_STABILITY_MAX_SEED = 4_294_967_294
_MAX_BODY = 25 * 1024 * 1024


def model_family(model_id: str) -> Family | None:
    """How the server answers a model id: ``titan``, ``nova``, ``stability``, or None (it cannot)."""
    if model_id.startswith("amazon.titan-image-generator-"):
        return "titan"
    if model_id.startswith("amazon.nova-canvas-"):
        return "nova"
    if model_id.startswith("stability."):
        return "stability"
    return None


def canonical_model_id(model_id: str) -> str:
    """The foundation-model id in ``model_id``: ARNs reduced to their last path part, and an
    inference-profile prefix (``us.``, ``eu.``, ``apac.``, ``global.`` ...) removed."""
    return parse_identifier(model_id).model_id


def _injected(code: str, why: str) -> BedrockError:
    return BedrockError(code, f"{MESSAGES[code]} (offline fault injection: {why})")


def _int(value: Any, default: int) -> int:
    """An integer (or integral number) from a body, else ``default`` (unchecked bodies)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return default
    return int(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _derived_seed(prompt: str, max_seed: int) -> int:
    """The seed used when a Stability request asks for a random one (seed 0 or none): fixed by the
    prompt, so runs repeat."""
    return 1 + int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big") % max_seed


@dataclass
class _Call:
    """One InvokeModel call while it is being answered."""

    model_id: str
    family: Family
    body: dict[str, Any]
    raw_prompt: str
    prompt: str
    directives: list[Directive]
    seed_hint: Any
    marketplace: bool = False


@dataclass
class _Reply:
    status: int
    payload: dict[str, Any]
    error_code: str | None = None
    outcome: str = "success"
    extra_headers: dict[str, str] = field(default_factory=dict)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's listen backlog is 5: a burst of hundreds of Map branches connecting at once
    # would overflow it and have connections reset. The kernel caps it at net.core.somaxconn.
    request_queue_size = 1024
    owner: LocalBedrockServer

    def __init__(self, address: tuple[str, int], owner: LocalBedrockServer) -> None:
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Close kept-alive client connections, so that idle handler threads end."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    timeout = 120  # seconds an idle kept-alive connection stays open
    server: _HTTPServer
    server_version = "imagegen-offline-bedrock/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.verbose:
            sys.stderr.write(f"[bedrock-offline] {self.address_string()} {format % args}\n")

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        try:
            size = int(length) if length else 0
        except ValueError:
            size = -1
        if not 0 <= size <= _MAX_BODY:
            self.close_connection = True
            self._send(_Reply(400, {"message": "Bad Content-Length."}, "ValidationException", "invalid"))
            return None
        return self.rfile.read(size) if size else b""

    def _send(self, reply: _Reply) -> None:
        data = json.dumps(reply.payload).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            if reply.error_code:
                self.send_header("x-amzn-ErrorType", reply.error_code)
            for name, value in reply.extra_headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. its read timeout)
            self.close_connection = True

    def _segments(self) -> list[str]:
        return [unquote(part) for part in urlsplit(self.path).path.split("/")[1:]]

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        parts = self._segments()
        if len(parts) == 3 and parts[0] == "model" and parts[2] == "invoke":
            self._send(self.server.owner._invoke(parts[1], body, self.headers.get("Authorization")))
        else:
            self._send(self._unknown_route())

    def do_GET(self) -> None:
        if self._read_body() is None:
            return
        owner = self.server.owner
        route = urlsplit(self.path).path
        if route == "/__stats":
            self._send(_Reply(200, owner.stats()))
        elif route == "/__faults":
            self._send(_Reply(200, owner.faults.to_dict()))
        elif route == "/__requests":
            self._send(_Reply(200, {"requests": owner.recent_requests()}))
        else:
            self._send(self._unknown_route())

    def do_PUT(self) -> None:
        body = self._read_body()
        if body is None:
            return
        if urlsplit(self.path).path != "/__faults":
            self._send(self._unknown_route())
            return
        try:
            plan = FaultPlan.from_dict(json.loads(body or b"{}"))
        except ValueError as exc:  # includes JSON errors
            self._send(
                _Reply(400, {"message": f"Invalid fault plan: {exc}"}, "ValidationException", "invalid")
            )
            return
        self.server.owner.faults = plan
        self._send(_Reply(200, plan.to_dict()))

    def do_DELETE(self) -> None:
        if self._read_body() is None:
            return
        if urlsplit(self.path).path == "/__stats":
            self.server.owner.reset_counters()
            self._send(_Reply(200, self.server.owner.stats()))
        else:
            self._send(self._unknown_route())

    def _unknown_route(self) -> _Reply:
        message = f"The offline Bedrock server has no route {self.command} {urlsplit(self.path).path}."
        return _Reply(404, {"message": message}, "UnknownOperationException", "unknown-route")


class LocalBedrockServer:
    """An offline stand-in for the Bedrock Runtime ``InvokeModel`` API (see the module docstring).

    ``start()`` binds ``host:port`` (port 0: a free port) and serves on daemon threads; ``stop()``
    shuts it down. Also a context manager. ``faults`` may be replaced at any time, from any thread.

    How strict it is:

    * ``region``: the Region whose models it serves; None (the default): the Region each call is
      signed for, which for the offline engine's handlers is the offline engine's Region;
    * ``today``: the day that decides which models are past end of life; None: the current UTC date;
    * ``check_availability``: False serves any model id it can answer whatever its lifecycle and
      Region (a body is still checked);
    * ``schema_dir``: the JSON Schemas of the request bodies (None: ``IMAGEGEN_BEDROCK_SCHEMA_DIR`` or
      the repository's ``tests/schemas/bedrock``; a directory that does not exist: bodies unchecked);
      ``unconfirmed``: also apply the schemas' ``x-unconfirmed`` patches.

    ``region``, ``today`` and ``check_availability`` may be changed while it runs; the Marketplace
    subscriptions it has recorded are ``subscribed_models``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        faults: FaultPlan | None = None,
        verbose: bool = False,
        history: int = 1000,
        region: str | None = None,
        today: date | None = None,
        check_availability: bool = True,
        schema_dir: str | Path | None = None,
        unconfirmed: bool = False,
        quotas: Mapping[str, int] | None = None,
    ) -> None:
        self.host = host
        #: Calls in flight per model (registry id or Bedrock model id) answered at once; the call
        #: beyond them gets ThrottlingException, as Bedrock answers a call over its quota.
        self.quotas: dict[str, int] = {}
        self.set_quotas(quotas or {})
        self.port = port
        self.verbose = verbose
        self.availability = ModelAvailability(region=region, today=today, enforce=check_availability)
        self.schemas = BodySchemas(schema_dir, unconfirmed=unconfirmed)
        self._subscribed: set[str] = set()
        self._lock = threading.Lock()
        self._faults = faults or FaultPlan()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._history: deque[dict[str, Any]] = deque(maxlen=history)
        self._reset_fault_state()
        self._reset_stats()

    def set_quotas(self, quotas: Mapping[str, int]) -> None:
        """Calls in flight per model (a registry id or a Bedrock model id) from now on."""
        self.quotas = {canonical_model_id(BEDROCK_MODEL_IDS.get(m, m)): n for m, n in quotas.items()}

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> str:
        """Bind and serve in a background thread; returns the endpoint URL."""
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="bedrock-offline",
            daemon=True,
        )
        self._thread.start()
        return self.endpoint_url

    def stop(self) -> None:
        """Stop serving and close the socket and open connections (safe to call twice)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalBedrockServer:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def endpoint_url(self) -> str:
        """``http://HOST:PORT`` of the running server (for ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``)."""
        if self._httpd is None:
            raise RuntimeError("the server is not running; call start() first")
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    @property
    def region(self) -> str | None:
        """The Region whose models are served (None: the Region each call is signed for)."""
        return self.availability.region

    @region.setter
    def region(self, value: str | None) -> None:
        self.availability.region = value

    @property
    def today(self) -> date | None:
        """The day that decides end of life (None: the current UTC date)."""
        return self.availability.today

    @today.setter
    def today(self, value: date | None) -> None:
        self.availability.today = value

    @property
    def check_availability(self) -> bool:
        """False: serve any model id it can answer, whatever its lifecycle and Region."""
        return self.availability.enforce

    @check_availability.setter
    def check_availability(self, value: bool) -> None:
        self.availability.enforce = value

    @property
    def subscribed_models(self) -> frozenset[str]:
        """The Marketplace models this account is subscribed to (a call to each has succeeded)."""
        with self._lock:
            return frozenset(self._subscribed)

    def client(
        self, *, max_attempts: int = 1, read_timeout: float = 60.0, region_name: str | None = None
    ) -> Any:
        """A boto3 ``bedrock-runtime`` client for this server (dummy credentials; by default no retries),
        signing for ``region_name`` (default: the server's Region, else us-west-2)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "bedrock-runtime",
            endpoint_url=self.endpoint_url,
            region_name=region_name or self.region or "us-west-2",
            aws_access_key_id="offline",
            aws_secret_access_key="offline",
            config=Config(
                retries={"mode": "standard", "total_max_attempts": max_attempts},
                read_timeout=read_timeout,
                connect_timeout=5,
            ),
        )

    # -- faults and counters -----------------------------------------------------------------------

    @property
    def faults(self) -> FaultPlan:
        """The fault plan in force."""
        with self._lock:
            return self._faults

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        if not isinstance(plan, FaultPlan):
            raise TypeError("faults must be a FaultPlan")
        with self._lock:
            self._faults = plan
            self._reset_fault_state()

    def _reset_fault_state(self) -> None:
        self._first_used = {"throttle": 0, "timeout": 0, "fail": 0}
        self._rng = random.Random(self._faults.random_seed)
        self._directive_hits: Counter[tuple[Any, ...]] = Counter()

    def _reset_stats(self) -> None:
        self._invocations = 0
        self._by_model: Counter[str] = Counter()
        self._outcomes: Counter[str] = Counter()
        self._images = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._model_in_flight: Counter[str] = Counter()
        self._max_model_in_flight: Counter[str] = Counter()
        self._over_quota = 0
        self._history.clear()

    def reset_counters(self) -> None:
        """Zero the invocation counters and forget the recent requests (the fault plan stays)."""
        with self._lock:
            in_flight, per_model = self._in_flight, self._model_in_flight
            self._reset_stats()
            self._in_flight, self._model_in_flight = in_flight, per_model

    @property
    def invocations(self) -> int:
        """InvokeModel calls received since start (or the last ``reset_counters``)."""
        with self._lock:
            return self._invocations

    @property
    def invocations_by_model(self) -> dict[str, int]:
        """InvokeModel calls per model id (inference-profile prefix removed)."""
        with self._lock:
            return dict(self._by_model)

    @property
    def outcomes(self) -> dict[str, int]:
        """Answers by outcome: ``success``, ``filtered-prompt``, ``filtered-output`` or an error code."""
        with self._lock:
            return dict(self._outcomes)

    @property
    def max_in_flight(self) -> int:
        """The most InvokeModel calls that were being answered at the same time."""
        with self._lock:
            return self._max_in_flight

    def stats(self) -> dict[str, Any]:
        """All counters as JSON-ready data (also served by ``GET /__stats``)."""
        with self._lock:
            return {
                "invocations": self._invocations,
                "by_model": dict(self._by_model),
                "outcomes": dict(self._outcomes),
                "images": self._images,
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "max_in_flight_by_model": dict(self._max_model_in_flight),
                "over_quota": self._over_quota,
                "quotas": dict(self.quotas),
                "faults": self._faults.to_dict(),
            }

    def recent_requests(self) -> list[dict[str, Any]]:
        """The most recent InvokeModel calls, oldest first: model, seed, prompt, status, outcome."""
        with self._lock:
            return list(self._history)

    # -- InvokeModel ----------------------------------------------------------------------------

    def _invoke(self, raw_model_id: str, body: bytes, authorization: str | None = None) -> _Reply:
        model_id = canonical_model_id(raw_model_id)
        with self._lock:
            self._invocations += 1
            self._by_model[model_id] += 1
            quota = self.quotas.get(model_id)
            over_quota = quota is not None and self._model_in_flight[model_id] >= quota
            if over_quota:
                self._over_quota += 1
            else:
                self._in_flight += 1
                self._max_in_flight = max(self._max_in_flight, self._in_flight)
                self._model_in_flight[model_id] += 1
                self._max_model_in_flight[model_id] = max(
                    self._max_model_in_flight[model_id], self._model_in_flight[model_id]
                )
            plan = self._faults
        if over_quota:
            with self._lock:
                self._outcomes["ThrottlingException"] += 1
            return _Reply(429, {"message": QUOTA_THROTTLED}, "ThrottlingException", "ThrottlingException")
        call: _Call | None = None
        try:
            call = self._parse(raw_model_id, body, plan, signed_region(authorization))
            reply = self._answer(call, plan)
        except BedrockError as exc:
            reply = _Reply(exc.status, {"message": exc.message}, exc.code, exc.code)
        except Exception as exc:  # a bug here should still look like a server error to the client
            reply = _Reply(
                500, {"message": f"offline server error: {exc!r}"}, "InternalServerException", "crash"
            )
        with self._lock:
            self._in_flight -= 1
            self._model_in_flight[model_id] -= 1
            self._outcomes[reply.outcome] += 1
            self._images += len(reply.payload.get("images") or ()) if reply.status == 200 else 0
            if call is not None and call.marketplace and reply.status == 200:
                self._subscribed.add(call.model_id)  # the first successful call subscribes the account
            self._history.append(
                {
                    "model_id": model_id,
                    "seed": call.seed_hint if call else None,
                    "prompt": call.prompt if call else None,
                    "status": reply.status,
                    "outcome": reply.outcome,
                    "time": time.time(),
                }
            )
        return reply

    def _parse(self, raw_model_id: str, body: bytes, plan: FaultPlan, signed: str | None) -> _Call:
        model_id = self.availability.admit(raw_model_id, signed=signed).model_id
        family = model_family(model_id)
        if family is None:
            raise BedrockError("ValidationException", INVALID_MODEL_IDENTIFIER)
        if model_id in plan.access_denied_models or raw_model_id in plan.access_denied_models:
            raise _injected("AccessDeniedException", "access_denied_models")
        facts = ModelAvailability.facts(model_id)
        marketplace = facts is not None and facts.marketplace
        if marketplace and plan.no_marketplace_permission:
            with self._lock:
                subscribed = model_id in self._subscribed
            if not subscribed:
                raise BedrockError("AccessDeniedException", MARKETPLACE_DENIED)
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise malformed(["#: the body is not valid JSON"]) from None
        if not isinstance(data, dict):
            raise malformed([f"#: expected type: JSONObject, found: {type(data).__name__}"])
        if family == "stability":
            raw_prompt, seed_hint = data.get("prompt"), data.get("seed")
        else:
            params = data.get("textToImageParams")
            raw_prompt = params.get("text") if isinstance(params, dict) else None
            config = data.get("imageGenerationConfig")
            seed_hint = config.get("seed") if isinstance(config, dict) else None
        raw_prompt = raw_prompt if isinstance(raw_prompt, str) else ""
        try:
            directives, prompt = parse_directives(raw_prompt)
        except ValueError as exc:
            raise BedrockError("ValidationException", str(exc)) from None
        return _Call(model_id, family, data, raw_prompt, prompt, directives, seed_hint, marketplace)

    def _answer(self, call: _Call, plan: FaultPlan) -> _Reply:
        """The model's answer (or error), ``delay`` seconds after the call began: the rendering happens
        within that time, so a server started with ``--latency L`` answers in L (or in the rendering
        time, if that is longer), and model time is known exactly."""
        began = time.monotonic()
        with self._lock:
            jitter = self._rng.uniform(0, plan.latency_jitter_seconds) if plan.latency_jitter_seconds else 0.0
        delay = plan.latency_seconds + jitter + sum(d.latency or 0.0 for d in call.directives)
        if isinstance(call.seed_hint, int) and not isinstance(call.seed_hint, bool):
            delay += plan.latency_by_seed.get(call.seed_hint, 0.0)
        try:
            self._inject_errors(call, plan)
            violations = self.schemas.check(call.model_id, call.body)
            if violations:
                raise malformed(violations)
            if call.family == "stability":
                return self._stability(call, plan)
            return self._amazon(call, plan)
        finally:
            remaining = delay - (time.monotonic() - began)
            if remaining > 0:
                time.sleep(remaining)

    def _inject_errors(self, call: _Call, plan: FaultPlan) -> None:
        """Raise the error a directive or the plan's first-k / rate settings choose, if any."""
        with self._lock:
            for directive in call.directives:
                if not directive.is_error:
                    continue
                if directive.times is not None:
                    key = (call.model_id, call.raw_prompt, repr(call.seed_hint), directive.index)
                    self._directive_hits[key] += 1
                    if self._directive_hits[key] > directive.times:
                        continue
                code = directive.error_code or plan.fail_code
                raise _injected(code, f"[[fault:{directive.name}]] in the prompt")
            used = self._first_used
            for kind, limit, code in (
                ("throttle", plan.throttle_first, "ThrottlingException"),
                ("timeout", plan.timeout_first, "ModelTimeoutException"),
                ("fail", plan.fail_first, plan.fail_code),
            ):
                if used[kind] < limit:
                    used[kind] += 1
                    raise _injected(code, f"{kind}_first={limit}, call {used[kind]}")
            if plan.throttle_rate or plan.timeout_rate or plan.fail_rate:
                draw = self._rng.random()
                for kind, rate, code in (
                    ("throttle", plan.throttle_rate, "ThrottlingException"),
                    ("timeout", plan.timeout_rate, "ModelTimeoutException"),
                    ("fail", plan.fail_rate, plan.fail_code),
                ):
                    if draw < rate:
                        raise _injected(code, f"{kind}_rate={rate:g}")
                    draw -= rate

    @staticmethod
    def _prompt_blocked(call: _Call, plan: FaultPlan) -> bool:
        return any(d.name == "block-prompt" for d in call.directives) or plan.prompt_blocked(call.prompt)

    @staticmethod
    def _output_blocked(call: _Call, plan: FaultPlan, seed: int) -> bool:
        return any(d.name == "block-output" for d in call.directives) or plan.output_blocked(seed)

    # -- Titan Image Generator and Nova Canvas ---------------------------------------------------
    # The body has passed its schema (or bodies are unchecked): read it with the documented defaults.

    def _amazon(self, call: _Call, plan: FaultPlan) -> _Reply:
        params = call.body.get("textToImageParams")
        params = params if isinstance(params, dict) else {}
        config = call.body.get("imageGenerationConfig")
        config = config if isinstance(config, dict) else {}
        default_width, default_height, default_seed = _AMAZON_DEFAULTS[call.family]
        width = _int(config.get("width"), default_width)
        height = _int(config.get("height"), default_height)
        count = max(1, _int(config.get("numberOfImages"), 1))
        seed = _int(config.get("seed"), default_seed)
        negative, style = _text(params.get("negativeText")), _text(params.get("style"))

        if self._prompt_blocked(call, plan):
            raise BedrockError("ValidationException", PROMPT_BLOCKED_MESSAGE)
        images = []
        for i in range(count):
            if not self._output_blocked(call, plan, seed + i):
                images.append(_encode(call.prompt, seed + i, width, height, negative, style, "png"))
        if not images:
            return _Reply(200, {"images": [], "error": ALL_BLOCKED_MESSAGE}, outcome="filtered-output")
        # The documented response holds ``images`` and, only when some were blocked, ``error``.
        payload: dict[str, Any] = {"images": images}
        if len(images) < count:
            payload["error"] = SOME_BLOCKED_MESSAGE
        return _Reply(200, payload, outcome="success")

    # -- Stability AI ----------------------------------------------------------------------------

    def _stability(self, call: _Call, plan: FaultPlan) -> _Reply:
        data = call.body
        negative, style = _text(data.get("negative_prompt")), _text(data.get("style_preset"))
        output_format = data.get("output_format")
        output_format = output_format if output_format in ("png", "jpeg", "webp") else "png"
        seed = _int(data.get("seed"), 0)
        if not 0 < seed <= _STABILITY_MAX_SEED:
            seed = _derived_seed(call.prompt or call.model_id, _STABILITY_MAX_SEED)

        if self._prompt_blocked(call, plan):
            payload = {"seeds": [seed], "finish_reasons": ["Filter reason: prompt"], "images": []}
            return _Reply(200, payload, outcome="filtered-prompt")
        if any(d.name == "block-input" for d in call.directives) and operation_of(call.model_id, data):
            payload = {"seeds": [seed], "finish_reasons": ["Filter reason: input image"], "images": []}
            return _Reply(200, payload, outcome="filtered-input")
        if self._output_blocked(call, plan, seed):
            payload = {"seeds": [seed], "finish_reasons": ["Filter reason: output image"], "images": []}
            return _Reply(200, payload, outcome="filtered-output")
        operation = operation_of(call.model_id, data)
        if operation is not None:  # image-to-image and the image services: done on the input's pixels
            image = _encoded(apply(operation, data, call.prompt, seed), output_format)
        else:
            width, height = ASPECT_RATIO_SIZES.get(str(data.get("aspect_ratio")), ASPECT_RATIO_SIZES["1:1"])
            image = _encode(call.prompt, seed, width, height, negative, style, output_format)
        return _Reply(200, {"seeds": [seed], "finish_reasons": [None], "images": [image]})


def _encode(
    prompt: str, seed: int, width: int, height: int, negative: str | None, style: str | None, fmt: str
) -> str:
    picture = render_image(prompt, seed, width, height, negative_prompt=negative, style=style)
    return _encoded(picture, fmt)


def _encoded(picture: Image.Image, fmt: str) -> str:
    buffer = io.BytesIO()
    if fmt == "jpeg":
        picture.convert("RGB").save(buffer, format="JPEG", quality=85)
    elif fmt == "webp":
        picture.save(buffer, format="WEBP", quality=85)
    else:
        picture.save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# -- command line ------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m imagegen.standin.bedrock_server",
        description="Serve an offline stand-in for the Bedrock Runtime InvokeModel API (no model; "
        "images are labelled OFFLINE RENDER). Point boto3 at it with AWS_ENDPOINT_URL_BEDROCK_RUNTIME.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (default 8765)")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds from a call to its answer, rendering included (the model's latency)",
    )
    parser.add_argument("--jitter", type=float, default=0.0, help="up to this many more seconds, at random")
    parser.add_argument("--throttle-first", type=int, default=0, help="throttle the first N calls")
    parser.add_argument("--throttle-rate", type=float, default=0.0, help="throttle this fraction of calls")
    parser.add_argument("--timeout-first", type=int, default=0, help="time out the next N calls")
    parser.add_argument("--timeout-rate", type=float, default=0.0)
    parser.add_argument("--fail-first", type=int, default=0, help="fail the next N calls with --fail-status")
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--fail-status", type=int, default=503, choices=(500, 503, 424))
    parser.add_argument("--block-term", action="append", default=[], help="block prompts containing this")
    parser.add_argument("--block-output-seed", type=int, action="append", default=[])
    parser.add_argument("--block-output-rate", type=float, default=0.0)
    parser.add_argument("--deny-model", action="append", default=[], help="AccessDenied for this model id")
    parser.add_argument(
        "--no-marketplace-permission",
        action="store_true",
        help="the caller lacks the AWS Marketplace permissions: a third-party model's first call is "
        "AccessDenied (until a call to it succeeds, which subscribes the account)",
    )
    strict = parser.add_argument_group("how strict (Bedrock's refusals, from its documentation)")
    strict.add_argument(
        "--region",
        help="the Region whose models are served (default: the Region each call is signed for, which "
        "for the offline engine is its own Region)",
    )
    strict.add_argument(
        "--today",
        type=date.fromisoformat,
        help="YYYY-MM-DD: the day that decides which models are past end of life (default: today, UTC)",
    )
    strict.add_argument(
        "--no-availability-checks",
        action="store_true",
        help="serve every model it can answer, whatever its lifecycle and Region",
    )
    strict.add_argument(
        "--schema-dir",
        type=Path,
        help="JSON Schemas of the request bodies, one per model id (default: $IMAGEGEN_BEDROCK_SCHEMA_DIR "
        "or the repository's tests/schemas/bedrock; bodies are not checked without it)",
    )
    strict.add_argument(
        "--unconfirmed",
        action="store_true",
        help="also apply the schemas' x-unconfirmed patches (readings no AWS page confirmed)",
    )
    parser.add_argument("--random-seed", type=int, default=0)
    parser.add_argument("--faults", help="a whole fault plan as JSON, or @FILE (overrides the options)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the server in the foreground until interrupted."""
    args = _parse_args(argv)
    try:
        if args.faults:
            text = args.faults
            if text.startswith("@"):
                with open(text[1:], encoding="utf-8") as handle:
                    text = handle.read()
            plan = FaultPlan.from_dict(json.loads(text))
        else:
            plan = FaultPlan(
                latency_seconds=args.latency,
                latency_jitter_seconds=args.jitter,
                throttle_first=args.throttle_first,
                throttle_rate=args.throttle_rate,
                timeout_first=args.timeout_first,
                timeout_rate=args.timeout_rate,
                fail_first=args.fail_first,
                fail_rate=args.fail_rate,
                fail_status=args.fail_status,
                block_prompt_terms=args.block_term,
                block_output_seeds=set(args.block_output_seed),
                block_output_rate=args.block_output_rate,
                access_denied_models=set(args.deny_model),
                no_marketplace_permission=args.no_marketplace_permission,
                random_seed=args.random_seed,
            )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    server = LocalBedrockServer(
        args.host,
        args.port,
        faults=plan,
        verbose=not args.quiet,
        region=args.region,
        today=args.today,
        check_availability=not args.no_availability_checks,
        schema_dir=args.schema_dir,
        unconfirmed=args.unconfirmed,
    )
    url = server.start()
    print(f"Offline Bedrock Runtime stand-in (not a model) at {url}", flush=True)
    print(f"  export AWS_ENDPOINT_URL_BEDROCK_RUNTIME={url}", flush=True)
    print(f"  faults: {json.dumps(plan.to_dict())}", flush=True)
    checks = (
        "off"
        if args.no_availability_checks
        else f"Region {args.region or 'as signed'}, today {server.availability.day()}"
    )
    bodies = str(server.schemas.directory) if server.schemas.enabled else "not checked"
    print(f"  models: {checks}; bodies: {bodies}", flush=True)
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    try:
        while not stopped.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
