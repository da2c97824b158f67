"""Fault injection settings for the offline Bedrock Runtime stand-in (``imagegen.standin.bedrock_server``).

A ``FaultPlan`` describes how the local server misbehaves during a run: added latency, throttling,
timeouts, server errors, content-filter blocks and access denials. It is plain data: JSON in and
out through ``from_dict``/``to_dict``, so it can be sent to the server's ``PUT /__faults`` endpoint.

Server-wide faults, checked for every InvokeModel call in this order:

1. ``latency_seconds`` + a uniform draw from ``[0, latency_jitter_seconds]`` of sleep (every call to a
   known model, including the calls that then fail), plus ``latency_by_seed[seed]`` for a call whose
   body asks for that seed (so the images of one request can finish one after the other);
2. "first k" faults, as consecutive budgets shared by all threads: the first ``throttle_first``
   calls get ThrottlingException, the next ``timeout_first`` get ModelTimeoutException, the next
   ``fail_first`` get the error of ``fail_status``;
3. rate faults: one draw from ``random.Random(random_seed)`` per call picks ThrottlingException
   with probability ``throttle_rate``, ModelTimeoutException with ``timeout_rate``, the
   ``fail_status`` error with ``fail_rate`` (the three rates must add up to at most 1);
4. ``block_prompt_terms``: a case-insensitive substring of the prompt blocks the prompt;
5. ``block_output_seeds`` / ``block_output_rate``: an image whose seed is listed, or whose seed
   hashes (with ``random_seed``) below the rate, is blocked by the "output filter". This choice
   depends only on the seed, so it is the same in every run and in every order of calls.

``access_denied_models`` lists model ids (without inference-profile prefix) that answer
AccessDeniedException, before any of the above. ``no_marketplace_permission`` says the caller lacks
the AWS Marketplace permissions (``aws-marketplace:ViewSubscriptions``, ``aws-marketplace:Subscribe``)
that a third-party model's first call needs: until a call to such a model has succeeded (which
subscribes the account; replacing the plan does not unsubscribe it), its calls answer
AccessDeniedException, as Bedrock does.

Per-request faults are directives written inside the prompt text; the server removes them from the
prompt before it renders the image:

==============================  =====================================================================
``[[fault:throttle]]``          ThrottlingException (429)
``[[fault:timeout]]``           ModelTimeoutException (408)
``[[fault:error]]``             the plan's ``fail_status`` error (default 503 ServiceUnavailable)
``[[fault:unavailable]]``       ServiceUnavailableException (503)
``[[fault:internal]]``          InternalServerException (500)
``[[fault:model-error]]``       ModelErrorException (424)
``[[fault:denied]]``            AccessDeniedException (403)
``[[fault:block-prompt]]``      the prompt is blocked by the content filter
``[[fault:block-output]]``      every image of the request is blocked by the output filter
``[[fault:block-input]]``       the input image is blocked (Stability: ``Filter reason: input image``)
``[[fault:latency=0.3]]``       0.3 s of extra latency for this call
==============================  =====================================================================

The error directives take an optional count: ``[[fault:throttle=2]]`` fails only the first 2 calls
that carry this exact prompt for the same model and seed, and lets later calls (retries) through.
Without a count the directive fails every call. Several directives may be combined; error
directives are tried in the order written, and a counted one that has run out lets the next one
apply, so ``[[fault:throttle=1]][[fault:timeout=1]]`` gives a throttle, then a timeout, then an
image. Names are case-insensitive; an unknown name is a ValidationException (to catch typos).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BEDROCK_ERROR_HTTP_STATUS",
    "DIRECTIVE_RE",
    "FAIL_STATUS_CODES",
    "Directive",
    "FaultPlan",
    "parse_directives",
    "seed_unit",
]

#: Bedrock Runtime exception name -> the HTTP status Bedrock answers it with.
BEDROCK_ERROR_HTTP_STATUS: dict[str, int] = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ThrottlingException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}
"""Bedrock Runtime error codes and their HTTP status codes (as in botocore's service model)."""

FAIL_STATUS_CODES: dict[int, str] = {
    500: "InternalServerException",
    503: "ServiceUnavailableException",
    424: "ModelErrorException",
}
"""The server errors ``FaultPlan.fail_status`` may name."""

_ERROR_DIRECTIVES: dict[str, str | None] = {
    "throttle": "ThrottlingException",
    "timeout": "ModelTimeoutException",
    "error": None,  # the plan's fail_status
    "unavailable": "ServiceUnavailableException",
    "internal": "InternalServerException",
    "model-error": "ModelErrorException",
    "denied": "AccessDeniedException",
}
_FLAG_DIRECTIVES = ("block-prompt", "block-output", "block-input")

DIRECTIVE_RE = re.compile(r"\[\[\s*fault\s*:\s*([A-Za-z_-]+)\s*(?:=\s*([^\]\s]*)\s*)?\]\]", re.IGNORECASE)
"""A fault directive in a prompt: ``[[fault:NAME]]`` or ``[[fault:NAME=VALUE]]``."""

_MAX_LATENCY = 900.0


@dataclass(frozen=True)
class Directive:
    """One ``[[fault:...]]`` directive found in a prompt.

    ``error_code`` is set for error directives (None for ``error``, which means the plan's
    ``fail_status``); ``times`` is the count of an error directive (None: every call);
    ``latency`` is set for ``latency=...``; ``name`` is the lower-case directive name.
    """

    name: str
    index: int
    error_code: str | None = None
    times: int | None = None
    latency: float | None = None

    @property
    def is_error(self) -> bool:
        return self.name in _ERROR_DIRECTIVES


def parse_directives(prompt: str) -> tuple[list[Directive], str]:
    """The fault directives in ``prompt`` and the prompt without them (whitespace tidied).

    Raises ValueError, with a message meant for the caller, for an unknown name or a bad value.
    """
    directives: list[Directive] = []
    for index, match in enumerate(DIRECTIVE_RE.finditer(prompt)):
        name, value = match.group(1).lower().replace("_", "-"), match.group(2)
        if name in _ERROR_DIRECTIVES:
            times = None
            if value:
                if not value.isdigit() or int(value) < 1:
                    raise ValueError(
                        f"fault directive {match.group(0)!r}: the count must be a whole number >= 1"
                    )
                times = int(value)
            directives.append(Directive(name, index, error_code=_ERROR_DIRECTIVES[name], times=times))
        elif name in _FLAG_DIRECTIVES:
            if value:
                raise ValueError(f"fault directive {match.group(0)!r} takes no value")
            directives.append(Directive(name, index))
        elif name == "latency":
            try:
                seconds = float(value or "")
            except ValueError:
                seconds = -1.0
            if not 0.0 <= seconds <= _MAX_LATENCY:
                raise ValueError(
                    f"fault directive {match.group(0)!r}: latency must be seconds from 0 to {_MAX_LATENCY:g}"
                )
            directives.append(Directive(name, index, latency=seconds))
        else:
            known = ", ".join([*_ERROR_DIRECTIVES, *_FLAG_DIRECTIVES, "latency"])
            raise ValueError(f"unknown fault directive {match.group(0)!r}; known names: {known}")
    if not directives:
        return [], prompt
    return directives, " ".join(DIRECTIVE_RE.sub(" ", prompt).split())


def seed_unit(random_seed: int, seed: int) -> float:
    """A number in [0, 1) fixed by ``random_seed`` and an image ``seed`` (for ``block_output_rate``)."""
    digest = hashlib.sha256(f"{random_seed}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


@dataclass
class FaultPlan:
    """How the local Bedrock server misbehaves during a run (see the module docstring).

    The default plan injects nothing. Replace a running server's plan by assigning
    ``server.faults = FaultPlan(...)`` (or ``PUT /__faults``); that also restarts the "first k"
    budgets, the rate draws and the per-prompt directive counts.
    """

    latency_seconds: float = 0.0
    latency_jitter_seconds: float = 0.0
    latency_by_seed: dict[int, float] = field(default_factory=dict)
    throttle_first: int = 0
    throttle_rate: float = 0.0
    timeout_first: int = 0
    timeout_rate: float = 0.0
    fail_first: int = 0
    fail_rate: float = 0.0
    fail_status: int = 503
    block_prompt_terms: list[str] = field(default_factory=list)
    block_output_seeds: set[int] = field(default_factory=set)
    block_output_rate: float = 0.0
    access_denied_models: set[str] = field(default_factory=set)
    no_marketplace_permission: bool = False
    random_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("latency_seconds", "latency_jitter_seconds"):
            value = _as_float(name, getattr(self, name))
            if not 0.0 <= value <= _MAX_LATENCY:
                raise ValueError(f"{name} must be from 0 to {_MAX_LATENCY:g} seconds, got {value!r}")
            setattr(self, name, value)
        if not isinstance(self.latency_by_seed, dict):
            raise ValueError("latency_by_seed must be an object of seed -> seconds")
        by_seed: dict[int, float] = {}
        for seed, seconds in self.latency_by_seed.items():
            number = _as_float("latency_by_seed", seconds)
            if not 0.0 <= number <= _MAX_LATENCY:
                raise ValueError(
                    f"latency_by_seed must be from 0 to {_MAX_LATENCY:g} seconds, got {seconds!r}"
                )
            by_seed[int(seed) if str(seed).isdigit() else _as_int("latency_by_seed", seed)] = number
        self.latency_by_seed = by_seed
        for name in ("throttle_first", "timeout_first", "fail_first", "random_seed"):
            value = _as_int(name, getattr(self, name))
            if name != "random_seed" and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
            setattr(self, name, value)
        for name in ("throttle_rate", "timeout_rate", "fail_rate", "block_output_rate"):
            value = _as_float(name, getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be from 0 to 1, got {value!r}")
            setattr(self, name, value)
        if self.throttle_rate + self.timeout_rate + self.fail_rate > 1.0 + 1e-9:
            raise ValueError("throttle_rate + timeout_rate + fail_rate must be at most 1")
        status = self.fail_status
        if isinstance(status, str) and not status.isdigit():
            by_code = {code: number for number, code in FAIL_STATUS_CODES.items()}
            if status not in by_code:
                raise ValueError(f"fail_status must be one of {sorted(FAIL_STATUS_CODES)} or their codes")
            status = by_code[status]
        status = int(status)
        if status not in FAIL_STATUS_CODES:
            raise ValueError(f"fail_status must be one of {sorted(FAIL_STATUS_CODES)}, got {status!r}")
        self.fail_status = status
        if isinstance(self.block_prompt_terms, str):
            raise ValueError("block_prompt_terms must be a list of strings, not a string")
        self.block_prompt_terms = [str(term) for term in self.block_prompt_terms if str(term)]
        self.block_output_seeds = {_as_int("block_output_seeds", s) for s in self.block_output_seeds}
        if isinstance(self.access_denied_models, str):
            raise ValueError("access_denied_models must be a list of model ids, not a string")
        self.access_denied_models = {str(m) for m in self.access_denied_models}
        if not isinstance(self.no_marketplace_permission, bool):
            raise ValueError(
                f"no_marketplace_permission must be true or false, got {self.no_marketplace_permission!r}"
            )

    @property
    def fail_code(self) -> str:
        """The error code of ``fail_status``."""
        return FAIL_STATUS_CODES[self.fail_status]

    def prompt_blocked(self, prompt: str) -> bool:
        """True if ``prompt`` contains one of ``block_prompt_terms`` (case-insensitive)."""
        folded = prompt.casefold()
        return any(term.casefold() in folded for term in self.block_prompt_terms)

    def output_blocked(self, seed: int) -> bool:
        """True if the image with ``seed`` is blocked: listed, or chosen by ``block_output_rate``."""
        if seed in self.block_output_seeds:
            return True
        return self.block_output_rate > 0 and seed_unit(self.random_seed, seed) < self.block_output_rate

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultPlan:
        """A plan from JSON-like data; unknown keys or bad values raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError("a fault plan must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault plan keys {unknown}; known keys: {', '.join(sorted(known))}")
        for name in ("block_prompt_terms", "block_output_seeds", "access_denied_models"):
            if name in data and not isinstance(data[name], list | tuple | set | frozenset):
                raise ValueError(f"{name} must be a list")
        try:
            return cls(**data)
        except TypeError as exc:  # e.g. a list where a number belongs
            raise ValueError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data (sets become sorted lists)."""
        data = dataclasses.asdict(self)
        data["block_output_seeds"] = sorted(self.block_output_seeds)
        data["access_denied_models"] = sorted(self.access_denied_models)
        return data
