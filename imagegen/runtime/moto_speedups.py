"""Three fixes to moto's Step Functions interpreter (moto 5.2.5, pinned), applied in this process only.

Profiling the offline engine (``benchmarks/profile_overhead.py``) found where its CPU goes:

* **JSONPath parsing, about 85 % of it.** moto evaluates every ``InputPath``, ``Parameters`` path and
  ``ResultPath`` by calling ``jsonpath_ng``'s ``parse``, which builds a new PLY parser, LALR tables
  included, on every call: some 20 ms for a path like ``$.image.seed``. A workflow has a few dozen
  distinct paths, so :func:`apply` memoizes ``parse`` (a cache keyed on the path text; concurrent misses
  of one path parse it once). Parsed expressions are only read (``find``, ``update_or_create`` change
  the data, not the expression), so sharing them between threads is safe.
* **A new boto3 client for every Task.** moto's Lambda, EventBridge, SQS, S3 and Step Functions task
  code calls ``boto_client_for`` per invocation (a client costs ~4 ms of CPU). :func:`apply` keeps one
  client per (boto3 default session, Region, service, credentials); boto3 clients are thread-safe.
  The credentials part is the role the Task runs as (moto's ``StateCredentials.role_arn``: the
  execution's role, or the state's ``Credentials.RoleArn``); moto 5.2.5 gives every client the same
  fake keys whatever the role, but keying on it keeps one client per role should that change. The key
  holds the default session because the engine makes a new one per start and routes Lambda ``Invoke``
  calls through a hook on it (``imagegen.runtime.lambda_router``): a client copies the session's hooks when it
  is made, so every reused client carries the router. :func:`forget_clients` drops them at engine stop.
* **The whole ASL definition parsed again for every execution.** moto's ``ExecutionWorker`` runs the
  antlr parser and its preprocessor over the definition each time an execution starts: 30-60 ms of CPU
  for this project's workflows, the largest part of the overhead of a one-image run once the two fixes
  above are in. :func:`apply` parses each definition text once and gives every execution a
  ``copy.deepcopy`` of that program (~2 ms): the program's states keep per-execution data while they
  run, so executions get a copy each, exactly what a fresh parse gave them; the parsed original is never
  evaluated. A definition that does not parse is not cached: it raises as before.

The behaviour of the interpreter is unchanged: same paths, same clients' configuration (moto's own
``boto_client_for`` still makes each client), same program. All three would be better fixed in moto
itself (a cached parser in ``asl/utils/json_path.py``, a client cache in ``asl/utils/boto_client.py``,
a program cache in ``backend/execution_worker.py``); until then,
``IMAGEGEN_MOTO_SPEEDUPS=0`` turns this off (the benchmarks measure moto as shipped beside it).
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import os
import threading
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any

#: Modules of moto 5.2.5 that bind ``boto_client_for`` by name (``from ... import boto_client_for``).
_CLIENT_USERS = (
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_events",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sqs",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sns",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_dynamodb",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3",
)
#: Modules of moto 5.2.5 that bind a JSONPath ``parse`` by name, and which parser it is.
_PARSE_USERS = (
    ("moto.stepfunctions.parser.asl.utils.json_path", "jsonpath_ng.ext"),
    ("moto.stepfunctions.parser.asl.component.common.path.result_path", "jsonpath_ng"),
)
ENV_SWITCH = "IMAGEGEN_MOTO_SPEEDUPS"
_CACHE_SIZE = 4096

_lock = threading.Lock()
_saved: dict[tuple[Any, str], Any] = {}  # (module, attribute) -> the original
_clients: dict[tuple[int, str, str, str | None, bool], Any] = {}
_memos: dict[Any, _ParseOnce] = {}  # parser -> its memoized form, kept warm across restore()
_WORKER_MODULE = "moto.stepfunctions.parser.backend.execution_worker"


def enabled_by_environment() -> bool:
    """False when ``IMAGEGEN_MOTO_SPEEDUPS`` is ``0``/``false``/``no``/``off``."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def is_applied() -> bool:
    with _lock:
        return bool(_saved)


def apply() -> bool:
    """Apply both fixes (idempotent, thread-safe). Returns False, with a warning, when moto's layout is
    not the one this module knows (a moto upgrade): the engine then runs moto unchanged."""
    with _lock:
        if _saved:
            return True
        try:
            from moto.stepfunctions.parser.asl.utils import boto_client

            original_client_for = boto_client.boto_client_for
            parameters = list(inspect.signature(original_client_for).parameters)
            if parameters != ["region", "service", "state_credentials"]:
                raise LookupError(f"boto_client_for{tuple(parameters)} is not moto 5.2.5's")
            targets: list[tuple[Any, str, Any]] = []
            for module_name, parser_module in _PARSE_USERS:
                module = importlib.import_module(module_name)
                parser = importlib.import_module(parser_module)
                if getattr(module, "parse", None) is not parser.parse:
                    raise LookupError(f"{module_name}.parse is not {parser_module}.parse")
                targets.append((module, "parse", _memoized(getattr(parser, "parse"))))  # noqa: B009
            ext = importlib.import_module("jsonpath_ng.ext")  # moto.events imports it at call time
            targets.append((ext, "parse", _memoized(getattr(ext, "parse"))))  # noqa: B009
            for module_name in _CLIENT_USERS:
                module = importlib.import_module(module_name)
                if getattr(module, "boto_client_for", None) is not original_client_for:
                    raise LookupError(f"{module_name}.boto_client_for is not moto's")
                targets.append((module, "boto_client_for", _reusing(original_client_for)))
            worker = importlib.import_module(_WORKER_MODULE)
            if not hasattr(worker.ExecutionWorker, "_get_evaluation_entrypoint"):
                raise LookupError("ExecutionWorker._get_evaluation_entrypoint is not moto 5.2.5's")
            parser_class = worker.AmazonStateLanguageParser
            targets.append(
                (worker.ExecutionWorker, "_get_evaluation_entrypoint", _copying_program(parser_class))
            )
        except (ImportError, LookupError, AttributeError) as exc:
            warnings.warn(
                f"moto speed-ups not applied: {exc} (moto {_moto_version()}; written for 5.2.5, the pinned "
                "version); running moto unchanged",
                stacklevel=2,
            )
            return False
        for module, attribute, replacement in targets:
            _saved[(module, attribute)] = getattr(module, attribute)
            setattr(module, attribute, replacement)
        return True


def _moto_version() -> str:
    try:
        return metadata.version("moto")
    except metadata.PackageNotFoundError:
        return "not installed"


def restore() -> None:
    """Put moto back as it was (for tests and benchmarks)."""
    with _lock:
        for (module, attribute), original in _saved.items():
            setattr(module, attribute, original)
        _saved.clear()
        _clients.clear()


def reused_clients() -> list[Any]:
    """The clients kept for moto's tasks (to register event hooks on them, as the benchmarks do)."""
    with _lock:
        return list(_clients.values())


def forget_clients() -> None:
    """Drop the reused clients (the engine calls it when it stops: its default session is gone)."""
    with _lock:
        _clients.clear()


def clear_parse_caches() -> None:
    """Forget every parsed path and program (tests use it to count parses from a cold cache)."""
    with _lock:
        memos = list(_memos.values())
    for memo in memos:
        memo.cache_clear()
    _programs.cache_clear()


class _ParseOnce:
    """``parse`` with a cache of parsed paths by text. A path missed by several threads at once (the
    branches of a Map) is parsed by one of them, the others wait for it: once per path, exactly."""

    def __init__(self, parse: Callable[..., Any], max_entries: int = _CACHE_SIZE) -> None:
        self.parse = parse
        self.max_entries = max_entries
        self.misses = 0
        self._cache: dict[str, Any] = {}
        self._miss_lock = threading.Lock()
        functools.update_wrapper(self, parse)

    def __call__(self, path: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or not isinstance(path, str):
            return self.parse(path, *args, **kwargs)
        parsed = self._cache.get(path)
        if parsed is None:
            with self._miss_lock:
                parsed = self._cache.get(path)
                if parsed is None:
                    parsed = self.parse(path)
                    self.misses += 1
                    if len(self._cache) < self.max_entries:
                        self._cache[path] = parsed
        return parsed

    def cache_clear(self) -> None:
        with self._miss_lock:
            self._cache.clear()
            self.misses = 0


#: Parsed ASL programs by definition text (the parser's ``parse`` returns ``(program, parse tree)``).
_programs = _ParseOnce(lambda definition: _program_parser().parse(definition)[0], max_entries=64)


def _program_parser() -> Any:
    return importlib.import_module(_WORKER_MODULE).AmazonStateLanguageParser


def program_parses() -> int:
    """How many definitions were parsed since the cache was last cleared (one per distinct text)."""
    return _programs.misses


def _copying_program(parser_class: Any) -> Callable[[Any], Any]:
    def _get_evaluation_entrypoint(worker: Any) -> Any:
        definition = worker._evaluation_details.state_machine_details.definition
        if not isinstance(definition, str):
            return parser_class.parse(definition)[0]
        return copy.deepcopy(_programs(definition))

    return _get_evaluation_entrypoint


def _memoized(parse: Callable[..., Any]) -> _ParseOnce:
    if parse not in _memos:
        _memos[parse] = _ParseOnce(parse)
    return _memos[parse]


def credentials_key(state_credentials: Any) -> str | None:
    """The part of moto's ``StateCredentials`` a client depends on: the role ARN (None without one)."""
    role = getattr(state_credentials, "role_arn", None)
    return None if role is None else str(role)


def _reusing(client_for: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(client_for)
    def reused_client(region: str, service: str, state_credentials: Any = None) -> Any:
        import boto3
        from moto.core.models import botocore_stubber

        session = boto3.DEFAULT_SESSION
        key = (
            id(session),
            region,
            service,
            credentials_key(state_credentials),
            bool(botocore_stubber.enabled),
        )
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = client_for(region=region, service=service, state_credentials=state_credentials)
                _clients[key] = client
        return client

    return reused_client
