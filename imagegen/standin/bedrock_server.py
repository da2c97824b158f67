"""A local HTTP server that speaks the Amazon Bedrock Runtime ``InvokeModel`` protocol, offline.

It is a stand-in for Bedrock, not a model: every "generated" image comes from
``imagegen.standin.renderer.render_png``, an abstract picture derived from a hash of the prompt and seed,
labelled ``OFFLINE RENDER — not a model``. The server exists so that the image pipeline (and boto3
code in general) can run, be tested and be benchmarked without an AWS account.

boto3 needs no change: point the ``bedrock-runtime`` client at the server, e.g. with
``AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:PORT`` (any credentials and Region will do)::

    with LocalBedrockServer() as server:
        client = boto3.client("bedrock-runtime", endpoint_url=server.endpoint_url, region_name="us-east-1",
                              aws_access_key_id="x", aws_secret_access_key="x")
        body = client.invoke_model(modelId="amazon.nova-canvas-v1:0", body=json.dumps({...}))["body"]

Run it by hand with ``python -m imagegen.standin.bedrock_server --port 8765 [--latency 0.5] ...``.

Routes:

* ``POST /model/{modelId}/invoke`` — InvokeModel. The model id may carry an inference-profile
  prefix (``us.stability.sd3-5-large-v1:0``) or be a model / inference-profile ARN. Models:
  ``amazon.titan-image-generator-v1``, ``amazon.titan-image-generator-v2:0``,
  ``amazon.nova-canvas-v1:0`` (the ``TEXT_IMAGE`` task) and ``stability.sd3-5-large-v1:0``,
  ``stability.stable-image-core-v1:1``, ``stability.stable-image-ultra-v1:1`` (text-to-image).
* ``GET /__faults`` / ``PUT /__faults`` — read / replace the ``FaultPlan`` (JSON body).
* ``GET /__stats`` — counters; ``DELETE /__stats`` resets them. ``GET /__requests`` — the most
  recent calls (model, seed, prompt, outcome).

Errors use the AWS restJson1 form botocore parses (status code, ``x-amzn-ErrorType`` header and a
``{"message": ...}`` body), so boto3 raises ``client.exceptions.ThrottlingException`` and so on.

Fault injection: a server-wide ``FaultPlan`` (``imagegen.standin.faults``: latency, first-k or rate-based
throttling / timeouts / server errors, blocked prompt terms, blocked output seeds, denied models)
and per-request directives written in the prompt, which the server strips before rendering:

* ``[[fault:throttle]]`` ThrottlingException · ``[[fault:timeout]]`` ModelTimeoutException ·
  ``[[fault:error]]`` the plan's ``fail_status`` error (default ServiceUnavailableException) ·
  ``[[fault:unavailable]]`` 503 · ``[[fault:internal]]`` 500 · ``[[fault:model-error]]`` 424 ·
  ``[[fault:denied]]`` AccessDeniedException — each with an optional count, e.g.
  ``[[fault:throttle=2]]``: only the first 2 calls with this prompt, model and seed fail;
* ``[[fault:block-prompt]]`` the prompt is blocked, ``[[fault:block-output]]`` the images are;
* ``[[fault:latency=0.3]]`` 0.3 s of extra latency.

Content-filter answers follow each model family: Titan and Nova Canvas answer a blocked prompt with
ValidationException ("This request has been blocked by our content filters. ...") and blocked
images with HTTP 200 ``{"images": [], "error": "All of the generated images have been blocked by our
content filters."}``; the Stability models answer HTTP 200 with ``finish_reasons`` ``["Filter reason:
prompt"]`` or ``["Filter reason: output image"]`` and no image.

What it does not do: image-to-image and other task types, streaming, Converse, guardrails,
request signing checks. Requests are validated against the published limits of each model (fields,
sizes, seeds, prompt lengths) so that malformed bodies fail here as they would on Bedrock, but the
wording of the messages is this server's own.
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
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from imagegen.standin.faults import BEDROCK_ERROR_HTTP_STATUS, Directive, FaultPlan, parse_directives
from imagegen.standin.renderer import render_image

__all__ = [
    "AMAZON_MODELS",
    "ASPECT_RATIO_SIZES",
    "NOVA_STYLES",
    "STABILITY_MODELS",
    "TITAN_SIZES",
    "FaultPlan",
    "LocalBedrockServer",
    "canonical_model_id",
    "main",
]

PROMPT_BLOCKED_MESSAGE = "This request has been blocked by our content filters. Please adjust your text prompt to submit a new request."
ALL_BLOCKED_MESSAGE = "All of the generated images have been blocked by our content filters."
SOME_BLOCKED_MESSAGE = "Some of the generated images have been blocked by our content filters."

_MESSAGES = {
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ModelTimeoutException": "Model has timed out in processing the request. Try your request again.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "InternalServerException": "The server encountered an internal error while processing the request.",
    "ModelErrorException": "The model encountered an error while processing the request.",
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ResourceNotFoundException": "Could not resolve the foundation model from the provided model identifier.",
}


@dataclass(frozen=True)
class _AmazonModel:
    max_seed: int
    max_prompt: int
    default_seed: int
    default_cfg: float
    nova: bool


@dataclass(frozen=True)
class _StabilityModel:
    max_seed: int = 4_294_967_294
    max_prompt: int = 10_000


AMAZON_MODELS: dict[str, _AmazonModel] = {
    "amazon.titan-image-generator-v1": _AmazonModel(2_147_483_646, 512, 42, 8.0, nova=False),
    "amazon.titan-image-generator-v1:0": _AmazonModel(2_147_483_646, 512, 42, 8.0, nova=False),
    "amazon.titan-image-generator-v2:0": _AmazonModel(2_147_483_646, 512, 42, 8.0, nova=False),
    "amazon.nova-canvas-v1:0": _AmazonModel(858_993_459, 1024, 12, 6.5, nova=True),
}
"""The ``TEXT_IMAGE`` models this server answers for, by model id."""

STABILITY_MODELS: dict[str, _StabilityModel] = {
    "stability.sd3-5-large-v1:0": _StabilityModel(),
    "stability.stable-image-core-v1:1": _StabilityModel(),
    "stability.stable-image-ultra-v1:1": _StabilityModel(),
}
"""The Stability AI text-to-image models this server answers for, by model id."""

TITAN_SIZES: frozenset[tuple[int, int]] = frozenset(
    {
        (1024, 1024), (768, 768), (512, 512), (768, 1152), (384, 576), (1152, 768), (576, 384),
        (768, 1280), (384, 640), (1280, 768), (640, 384), (896, 1152), (448, 576), (1152, 896),
        (576, 448), (768, 1408), (384, 704), (1408, 768), (704, 384), (640, 1408), (320, 704),
        (1408, 640), (704, 320), (1152, 640), (1173, 640),
    }
)  # fmt: skip
"""Titan Image Generator's documented output sizes."""

NOVA_STYLES = frozenset(
    {
        "3D_ANIMATED_FAMILY_FILM", "DESIGN_SKETCH", "FLAT_VECTOR_ILLUSTRATION", "GRAPHIC_NOVEL_ILLUSTRATION",
        "MAXIMALISM", "MIDCENTURY_RETRO", "PHOTOREALISM", "SOFT_DIGITAL_PAINTING",
    }
)  # fmt: skip
"""Nova Canvas style presets (``textToImageParams.style``)."""

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

_PROFILE_PREFIXES = ("us", "eu", "apac", "global", "us-gov", "ca", "jp", "au", "ap")
_MAX_BODY = 25 * 1024 * 1024


def canonical_model_id(model_id: str) -> str:
    """The foundation-model id in ``model_id``: ARNs reduced to their last path part, and an
    inference-profile prefix (``us.``, ``eu.``, ``apac.``, ``global.`` ...) removed."""
    model_id = model_id.strip()
    if model_id.startswith("arn:") and "/" in model_id:
        model_id = model_id.rsplit("/", 1)[1]
    prefix, _, rest = model_id.partition(".")
    if rest and prefix in _PROFILE_PREFIXES and "." in rest:
        return rest
    return model_id


class _BedrockError(Exception):
    """An error answer: code (the ``x-amzn-ErrorType``) and message."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(message or _MESSAGES.get(code, code))
        self.code = code
        self.message = message or _MESSAGES.get(code, code)
        self.status = BEDROCK_ERROR_HTTP_STATUS.get(code, 400)


def _invalid(path: str, problem: str) -> _BedrockError:
    return _BedrockError(
        "ValidationException",
        f"Malformed input request: {path}: {problem}, please reformat your input and try again.",
    )


def _injected(code: str, why: str) -> _BedrockError:
    return _BedrockError(code, f"{_MESSAGES[code]} (offline fault injection: {why})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_keys(obj: dict[str, Any], path: str, allowed: set[str]) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise _invalid(path, f"extraneous key [{extra[0]}] is not permitted")


def _check_text(obj: dict[str, Any], key: str, path: str, max_len: int, *, required: bool) -> str | None:
    if key not in obj or obj[key] is None:
        if required:
            raise _invalid(path, f"required key [{key}] not found")
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise _invalid(f"{path}/{key}", f"expected type: String, found: {type(value).__name__}")
    if required and not value.strip():
        raise _invalid(f"{path}/{key}", "expected minLength: 1, actual: 0")
    if len(value) > max_len:
        raise _invalid(f"{path}/{key}", f"expected maxLength: {max_len}, actual: {len(value)}")
    return value


def _derived_seed(prompt: str, max_seed: int) -> int:
    """The seed used when a Stability request asks for a random one (seed 0 or none): fixed by the
    prompt, so runs repeat."""
    return 1 + int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big") % max_seed


@dataclass
class _Call:
    """One InvokeModel call while it is being answered."""

    model_id: str
    body: dict[str, Any]
    raw_prompt: str
    prompt: str
    directives: list[Directive]
    seed_hint: Any


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
            self._send(self.server.owner._invoke(parts[1], body))
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
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        faults: FaultPlan | None = None,
        verbose: bool = False,
        history: int = 1000,
    ) -> None:
        self.host = host
        self.port = port
        self.verbose = verbose
        self._lock = threading.Lock()
        self._faults = faults or FaultPlan()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._history: deque[dict[str, Any]] = deque(maxlen=history)
        self._reset_fault_state()
        self._reset_stats()

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

    def client(self, *, max_attempts: int = 1, read_timeout: float = 60.0) -> Any:
        """A boto3 ``bedrock-runtime`` client for this server (dummy credentials; by default no retries)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "bedrock-runtime",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
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
        self._history.clear()

    def reset_counters(self) -> None:
        """Zero the invocation counters and forget the recent requests (the fault plan stays)."""
        with self._lock:
            in_flight = self._in_flight
            self._reset_stats()
            self._in_flight = in_flight

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
                "faults": self._faults.to_dict(),
            }

    def recent_requests(self) -> list[dict[str, Any]]:
        """The most recent InvokeModel calls, oldest first: model, seed, prompt, status, outcome."""
        with self._lock:
            return list(self._history)

    # -- InvokeModel ----------------------------------------------------------------------------

    def _invoke(self, raw_model_id: str, body: bytes) -> _Reply:
        model_id = canonical_model_id(raw_model_id)
        with self._lock:
            self._invocations += 1
            self._by_model[model_id] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            plan = self._faults
        call: _Call | None = None
        try:
            call = self._parse(model_id, raw_model_id, body, plan)
            reply = self._answer(call, plan)
        except _BedrockError as exc:
            reply = _Reply(exc.status, {"message": exc.message}, exc.code, exc.code)
        except Exception as exc:  # a bug here should still look like a server error to the client
            reply = _Reply(
                500, {"message": f"offline server error: {exc!r}"}, "InternalServerException", "crash"
            )
        with self._lock:
            self._in_flight -= 1
            self._outcomes[reply.outcome] += 1
            self._images += len(reply.payload.get("images") or ()) if reply.status == 200 else 0
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

    def _parse(self, model_id: str, raw_model_id: str, body: bytes, plan: FaultPlan) -> _Call:
        if model_id not in AMAZON_MODELS and model_id not in STABILITY_MODELS:
            raise _BedrockError("ResourceNotFoundException")
        if model_id in plan.access_denied_models or raw_model_id in plan.access_denied_models:
            raise _injected("AccessDeniedException", "access_denied_models")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _BedrockError(
                "ValidationException", "Malformed input request: the body is not valid JSON."
            ) from None
        if not isinstance(data, dict):
            raise _invalid("#", "expected type: JSONObject")
        if model_id in AMAZON_MODELS:
            params = data.get("textToImageParams")
            raw_prompt = params.get("text") if isinstance(params, dict) else None
            config = data.get("imageGenerationConfig")
            seed_hint = config.get("seed") if isinstance(config, dict) else None
        else:
            raw_prompt, seed_hint = data.get("prompt"), data.get("seed")
        raw_prompt = raw_prompt if isinstance(raw_prompt, str) else ""
        try:
            directives, prompt = parse_directives(raw_prompt)
        except ValueError as exc:
            raise _BedrockError("ValidationException", str(exc)) from None
        return _Call(model_id, data, raw_prompt, prompt, directives, seed_hint)

    def _answer(self, call: _Call, plan: FaultPlan) -> _Reply:
        """The model's answer (or error), ``delay`` seconds after the call began: the rendering happens
        within that time, so a server started with ``--latency L`` answers in L (or in the rendering
        time, if that is longer), and model time is known exactly."""
        began = time.monotonic()
        with self._lock:
            jitter = self._rng.uniform(0, plan.latency_jitter_seconds) if plan.latency_jitter_seconds else 0.0
        delay = plan.latency_seconds + jitter + sum(d.latency or 0.0 for d in call.directives)
        try:
            self._inject_errors(call, plan)
            if call.model_id in AMAZON_MODELS:
                return self._amazon(call, plan, AMAZON_MODELS[call.model_id])
            return self._stability(call, plan, STABILITY_MODELS[call.model_id])
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

    def _amazon(self, call: _Call, plan: FaultPlan, model: _AmazonModel) -> _Reply:
        data = call.body
        _check_keys(data, "#", {"taskType", "textToImageParams", "imageGenerationConfig"})
        if "taskType" not in data:
            raise _invalid("#", "required key [taskType] not found")
        if data["taskType"] != "TEXT_IMAGE":
            raise _invalid("#/taskType", f"{data['taskType']!r} is not supported offline; use TEXT_IMAGE")
        params = data.get("textToImageParams")
        if not isinstance(params, dict):
            raise _invalid("#", "required key [textToImageParams] not found")
        _check_keys(
            params,
            "#/textToImageParams",
            {"text", "negativeText", "style"} if model.nova else {"text", "negativeText"},
        )
        _check_text(params, "text", "#/textToImageParams", 10**9, required=True)
        if not call.prompt.strip():
            raise _invalid("#/textToImageParams/text", "expected minLength: 1, actual: 0")
        if len(call.prompt) > model.max_prompt:
            raise _invalid(
                "#/textToImageParams/text",
                f"expected maxLength: {model.max_prompt}, actual: {len(call.prompt)}",
            )
        negative = _check_text(
            params, "negativeText", "#/textToImageParams", model.max_prompt, required=False
        )
        style = params.get("style")
        if style is not None and style not in NOVA_STYLES:
            raise _invalid("#/textToImageParams/style", f"{style!r} is not a valid enum value")

        config = data.get("imageGenerationConfig")
        if not isinstance(config, dict):
            raise _invalid("#", "required key [imageGenerationConfig] not found")
        cpath = "#/imageGenerationConfig"
        _check_keys(config, cpath, {"numberOfImages", "quality", "cfgScale", "seed", "width", "height"})
        for key in ("width", "height"):
            if key not in config:
                raise _invalid(cpath, f"required key [{key}] not found")
            if not _is_int(config[key]):
                raise _invalid(
                    f"{cpath}/{key}", f"expected type: Integer, found: {type(config[key]).__name__}"
                )
        width, height = config["width"], config["height"]
        if model.nova:
            for key, value in (("width", width), ("height", height)):
                if not 320 <= value <= 4096 or value % 16:
                    raise _invalid(f"{cpath}/{key}", f"{value} is not from 320 to 4096 and divisible by 16")
            if not 0.25 <= width / height <= 4.0 or width * height >= 4_194_304:
                raise _invalid(
                    cpath, f"{width}x{height}: aspect ratio must be 1:4 to 4:1 and pixels < 4194304"
                )
        elif (width, height) not in TITAN_SIZES:
            raise _invalid(cpath, f"{width}x{height} is not a supported Titan Image Generator size")
        count = config.get("numberOfImages", 1)
        if not _is_int(count) or not 1 <= count <= 5:
            raise _invalid(f"{cpath}/numberOfImages", f"expected an integer from 1 to 5, found {count!r}")
        quality = config.get("quality", "standard")
        if quality not in ("standard", "premium"):
            raise _invalid(f"{cpath}/quality", f"{quality!r} is not a valid enum value")
        cfg = config.get("cfgScale", model.default_cfg)
        if not _is_number(cfg) or not 1.1 <= cfg <= 10.0:
            raise _invalid(f"{cpath}/cfgScale", f"expected a number from 1.1 to 10, found {cfg!r}")
        seed = config.get("seed", model.default_seed)
        if not _is_int(seed) or not 0 <= seed <= model.max_seed:
            raise _invalid(f"{cpath}/seed", f"expected an integer from 0 to {model.max_seed}, found {seed!r}")

        if self._prompt_blocked(call, plan):
            raise _BedrockError("ValidationException", PROMPT_BLOCKED_MESSAGE)
        images = []
        for i in range(count):
            if not self._output_blocked(call, plan, seed + i):
                images.append(_encode(call.prompt, seed + i, width, height, negative, style, "png"))
        if not images:
            return _Reply(200, {"images": [], "error": ALL_BLOCKED_MESSAGE}, outcome="filtered-output")
        error = SOME_BLOCKED_MESSAGE if len(images) < count else None
        return _Reply(200, {"images": images, "error": error}, outcome="success")

    # -- Stability AI ----------------------------------------------------------------------------

    def _stability(self, call: _Call, plan: FaultPlan, model: _StabilityModel) -> _Reply:
        data = call.body
        if "image" in data or data.get("mode", "text-to-image") != "text-to-image":
            raise _invalid("#/mode", "only text-to-image is supported by the offline server")
        _check_keys(
            data,
            "#",
            {"prompt", "negative_prompt", "aspect_ratio", "seed", "output_format", "mode", "style_preset"},
        )
        _check_text(data, "prompt", "#", 10**9, required=True)
        if not call.prompt.strip():
            raise _invalid("#/prompt", "expected minLength: 1, actual: 0")
        if len(call.prompt) > model.max_prompt:
            raise _invalid("#/prompt", f"expected maxLength: {model.max_prompt}, actual: {len(call.prompt)}")
        negative = _check_text(data, "negative_prompt", "#", model.max_prompt, required=False)
        aspect = data.get("aspect_ratio", "1:1")
        if aspect not in ASPECT_RATIO_SIZES:
            raise _invalid("#/aspect_ratio", f"{aspect!r} is not one of {', '.join(ASPECT_RATIO_SIZES)}")
        output_format = data.get("output_format", "png")
        if output_format not in ("png", "jpeg"):
            raise _invalid("#/output_format", f"{output_format!r} is not one of png, jpeg")
        style = data.get("style_preset")
        if style is not None and not isinstance(style, str):
            raise _invalid("#/style_preset", "expected type: String")
        seed = data.get("seed", 0)
        if not _is_int(seed) or not 0 <= seed <= model.max_seed:
            raise _invalid("#/seed", f"expected an integer from 0 to {model.max_seed}, found {seed!r}")
        if seed == 0:
            seed = _derived_seed(call.prompt, model.max_seed)

        if self._prompt_blocked(call, plan):
            payload = {"seeds": [seed], "finish_reasons": ["Filter reason: prompt"], "images": []}
            return _Reply(200, payload, outcome="filtered-prompt")
        if self._output_blocked(call, plan, seed):
            payload = {"seeds": [seed], "finish_reasons": ["Filter reason: output image"], "images": []}
            return _Reply(200, payload, outcome="filtered-output")
        width, height = ASPECT_RATIO_SIZES[aspect]
        image = _encode(call.prompt, seed, width, height, negative, style, output_format)
        return _Reply(200, {"seeds": [seed], "finish_reasons": [None], "images": [image]})


def _encode(
    prompt: str, seed: int, width: int, height: int, negative: str | None, style: str | None, fmt: str
) -> str:
    picture = render_image(prompt, seed, width, height, negative_prompt=negative, style=style)
    buffer = io.BytesIO()
    if fmt == "jpeg":
        picture.save(buffer, format="JPEG", quality=85)
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
                random_seed=args.random_seed,
            )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    server = LocalBedrockServer(args.host, args.port, faults=plan, verbose=not args.quiet)
    url = server.start()
    print(f"Offline Bedrock Runtime stand-in (not a model) at {url}", flush=True)
    print(f"  export AWS_ENDPOINT_URL_BEDROCK_RUNTIME={url}", flush=True)
    print(f"  faults: {json.dumps(plan.to_dict())}", flush=True)
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
