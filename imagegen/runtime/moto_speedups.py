"""Three fixes to moto 5.2.5's Step Functions interpreter, entered and left with the offline engine.

moto repeats work on every execution. Each fix removes one repetition; each is described, with what
moto does, a patch for moto itself and when to delete the fix, in ``docs/decisions.md`` and
``docs/upstream/``:

* ``program_cache``: moto's ``ExecutionWorker`` parses the whole ASL definition (antlr and its
  preprocessor, ~30 ms of CPU here) each time an execution starts. The fix parses each definition
  text once and gives every execution a ``copy.deepcopy`` of the program (~1.5 ms): the program's
  states keep per-execution data while they run, so each execution gets its own, as a fresh parse
  gave it; the parsed original is never evaluated. A definition that does not parse is not cached.
* ``client_reuse``: every Task calls ``boto_client_for``, which makes a new boto3 client (~2 ms).
  The fix keeps one client per (boto3 default session, Region, service, role the Task runs as,
  moto's mock on or off); boto3 clients are thread-safe. The session is part of the key because the
  engine routes Lambda ``Invoke`` calls through a hook on it (``imagegen.runtime.lambda_router``) and
  a client copies the session's hooks when it is made.
* ``jsonpath_cache``: every ``InputPath``, ``Parameters`` path and ``ResultPath`` is parsed with
  jsonpath-ng's ``parse`` each time it is evaluated (~0.4 ms with jsonpath-ng 1.16). The fix keeps
  one parsed expression per path text (concurrent misses of a path, a Map's branches, parse it once).
  Expressions are only read (``find`` and ``update_or_create`` change the data, not the expression).

:class:`MotoFixes` is a context manager: entering it checks that moto is the pinned version and that
every attribute it replaces is moto's own, then replaces them; leaving it puts every one back. The
engine enters it in ``start`` and leaves it in ``stop``; ``IMAGEGEN_MOTO_SPEEDUPS=0`` (or
``EngineConfig(moto_speedups=False)``) keeps it out. The modules that bind moto's client factory or
a JSONPath ``parse`` by name are found by reading moto's source (:func:`bindings`), not from a list
kept by hand, so a module added by a moto release cannot keep calling the unpatched function.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import importlib
import importlib.util
import inspect
import os
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

#: The moto release these fixes were written for and checked against: the one ``pyproject.toml`` pins.
MOTO_VERSION = "5.2.5"
ENV_SWITCH = "IMAGEGEN_MOTO_SPEEDUPS"
FIXES = ("program_cache", "client_reuse", "jsonpath_cache")

_CLIENT_FACTORY_MODULE = "moto.stepfunctions.parser.asl.utils.boto_client"
_CLIENT_FACTORY = "boto_client_for"
_WORKER_MODULE = "moto.stepfunctions.parser.backend.execution_worker"
#: Where moto's interpreter code lives (the client factory's users), and moto's EventBridge, whose
#: target input paths the engine's event capture evaluates (JSONPath users).
SCANNED_PACKAGES = ("moto.stepfunctions.parser", "moto.events")
#: Marks the functions this module puts into moto, so that a second set of fixes is refused.
_MARK = "__imagegen_moto_fix__"
_PATH_CACHE_SIZE = 4096
_PROGRAM_CACHE_SIZE = 64


class UnsupportedMoto(RuntimeError):
    """moto is not the version, or not laid out as, the fixes were written for: they refuse to run."""


def enabled_by_environment() -> bool:
    """False when ``IMAGEGEN_MOTO_SPEEDUPS`` is ``0``/``false``/``no``/``off``."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def installed_moto_version() -> str:
    try:
        return metadata.version("moto")
    except metadata.PackageNotFoundError:
        return "not installed"


_TURN_OFF = (
    f"Run with the fixes off to use moto unchanged: {ENV_SWITCH}=0 in the environment, or "
    "EngineConfig(moto_speedups=False)."
)


def _check_version() -> None:
    installed = installed_moto_version()
    if installed != MOTO_VERSION:
        raise UnsupportedMoto(
            f"imagegen's fixes to moto (imagegen/runtime/moto_speedups.py) were written for moto "
            f"{MOTO_VERSION}, the version pyproject.toml pins, and moto {installed} is installed. "
            f"Install the pinned version (pip install -e .). To move the pin, check each fix against the "
            f"new moto first (docs/decisions.md, 'Three fixes to moto's interpreter', says what to check "
            f"and when to delete a fix; docs/upstream/ has each as a patch to moto), then change "
            f"MOTO_VERSION with the pin. {_TURN_OFF}"
        )


def _layout_error(detail: str) -> UnsupportedMoto:
    return UnsupportedMoto(
        f"moto {installed_moto_version()} is not laid out as imagegen's fixes to moto expect: {detail}. "
        f"Is moto installed unmodified from PyPI, and is no other patch of it active? {_TURN_OFF}"
    )


# -- finding every module that binds a name --------------------------------------------------------


@dataclass(frozen=True)
class Binding:
    """``from <source> import <name> as <alias>`` in ``module``: at module level (the module's global
    ``alias`` must be patched) or inside a function (resolved from ``source`` at call time)."""

    module: str
    source: str
    name: str
    alias: str
    module_level: bool


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise _layout_error(f"{package} is not a package")
    return Path(next(iter(spec.submodule_search_locations)))


def _imports_in(tree: ast.Module) -> Iterator[tuple[ast.ImportFrom, bool]]:
    """Every ``from ... import ...`` of a module, with whether it runs at import (module level: not
    inside a function; class bodies and ``if``/``try`` blocks run at import)."""
    pending: list[tuple[ast.AST, bool]] = [(tree, True)]
    while pending:
        node, module_level = pending.pop()
        for child in ast.iter_child_nodes(node):
            inside_function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom):
                yield child, module_level
            pending.append((child, module_level and not inside_function))


@functools.cache
def bindings(package: str, name: str, sources: tuple[str, ...]) -> tuple[Binding, ...]:
    """Every ``from <one of sources, or a submodule of one> import <name>`` in ``package``'s source,
    relative imports resolved. Files are read as text first and parsed only if they mention ``name``."""
    root = _package_dir(package)
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_bytes()
        if name.encode() not in text:
            continue
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        module = ".".join([package, *parts[:-1]] if is_package else [package, *parts])
        anchor = module if is_package else module.rpartition(".")[0]
        for node, module_level in _imports_in(ast.parse(text, filename=str(path))):
            relative = "." * node.level + (node.module or "")
            source = importlib.util.resolve_name(relative, anchor) if node.level else relative
            if not any(source == s or source.startswith(s + ".") for s in sources):
                continue
            for alias in node.names:
                if alias.name == name:
                    found.append(Binding(module, source, name, alias.asname or name, module_level))
    return tuple(found)


def client_factory_bindings() -> tuple[Binding, ...]:
    """Every module of moto's interpreter that imports ``boto_client_for``."""
    return bindings(SCANNED_PACKAGES[0], _CLIENT_FACTORY, (_CLIENT_FACTORY_MODULE,))


def jsonpath_parse_bindings() -> tuple[Binding, ...]:
    """Every module of moto's interpreter and EventBridge that imports a jsonpath-ng ``parse``."""
    return tuple(b for package in SCANNED_PACKAGES for b in bindings(package, "parse", ("jsonpath_ng",)))


# -- the fixes ------------------------------------------------------------------------------------


def _require_moto_original(function: Any, module: str, qualname: str) -> None:
    if getattr(function, _MARK, False):
        raise RuntimeError(
            f"{module}.{qualname} is replaced by moto fixes entered already: one set at a time (while an "
            "engine runs, its fixes are entered; OfflineEngine.moto_fixes.suspended() gives moto as shipped)"
        )
    if not (
        callable(function)
        and getattr(function, "__module__", None) == module
        and getattr(function, "__qualname__", None) == qualname
    ):
        raise _layout_error(f"{module}.{qualname} is not moto's")


def _marked(function: Any) -> Any:
    setattr(function, _MARK, True)
    return function


class _ParseOnce:
    """``parse`` with a cache of results by text. A text missed by several threads at once is parsed
    by one of them while the others wait: once per text, exactly."""

    def __init__(self, parse: Callable[[str], Any], max_entries: int) -> None:
        self.parse = parse
        self.max_entries = max_entries
        self.misses = 0
        self._cache: dict[str, Any] = {}
        self._miss_lock = threading.Lock()

    def __call__(self, text: str) -> Any:
        parsed = self._cache.get(text)
        if parsed is None:
            with self._miss_lock:
                parsed = self._cache.get(text)
                if parsed is None:
                    parsed = self.parse(text)
                    self.misses += 1
                    if len(self._cache) < self.max_entries:
                        self._cache[text] = parsed
        return parsed

    def cache_clear(self) -> None:
        with self._miss_lock:
            self._cache.clear()
            self.misses = 0


@dataclass
class _Patch:
    owner: Any  # a module or a class
    attribute: str
    original: Any
    replacement: Any


class MotoFixes:
    """The fixes, as a context manager: entered, moto's functions are replaced; left, every one is
    moto's own again and the kept clients and parses are dropped. One set is entered at a time.

    ``fixes`` chooses among :data:`FIXES` (all by default; the benchmarks measure each alone)."""

    def __init__(self, fixes: Collection[str] = FIXES) -> None:
        unknown = set(fixes) - set(FIXES)
        if unknown:
            raise ValueError(f"unknown fixes {sorted(unknown)}; choose from {FIXES}")
        self.fixes = tuple(f for f in FIXES if f in fixes)
        self._patches: list[_Patch] = []
        self._applied = False
        self._clients: dict[tuple[Any, ...], Any] = {}
        self._clients_lock = threading.Lock()
        self._paths: dict[int, _ParseOnce] = {}  # id(jsonpath-ng's parse) -> its cached form
        self._programs: _ParseOnce | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> MotoFixes:
        if self._patches:
            raise RuntimeError("these moto fixes are entered already")
        try:
            self._patches = self._locate()  # every check passes before anything is replaced
        except BaseException:
            self._forget()
            raise
        self._patch()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._applied:
            self._unpatch()
        self._forget()

    def _forget(self) -> None:
        self._patches = []
        with self._clients_lock:
            self._clients.clear()
        self._paths.clear()
        self._programs = None

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """moto as shipped for the block (the benchmarks and tests compare), then the fixes again."""
        if not self._applied:
            yield
            return
        self._unpatch()
        try:
            yield
        finally:
            for patch in self._patches:
                if getattr(patch.owner, patch.attribute) is not patch.original:
                    raise RuntimeError(f"{patch.owner.__name__}.{patch.attribute} changed while suspended")
            self._patch()

    @property
    def applied(self) -> bool:
        return self._applied

    def patched(self) -> list[tuple[Any, str]]:
        """(module or class, attribute) of every replaced function, while entered."""
        return [(p.owner, p.attribute) for p in self._patches]

    def _patch(self) -> None:
        for patch in self._patches:
            setattr(patch.owner, patch.attribute, patch.replacement)
        self._applied = True

    def _unpatch(self) -> None:
        for patch in reversed(self._patches):
            setattr(patch.owner, patch.attribute, patch.original)
        self._applied = False

    # -- what is replaced, checked before anything is ------------------------------------------
    def _locate(self) -> list[_Patch]:
        _check_version()
        patches: list[_Patch] = []
        try:
            if "program_cache" in self.fixes:
                patches += self._program_patches()
            if "client_reuse" in self.fixes:
                patches += self._client_patches()
            if "jsonpath_cache" in self.fixes:
                patches += self._jsonpath_patches()
        except (ImportError, AttributeError, SyntaxError) as exc:
            raise _layout_error(repr(exc)) from exc
        return patches

    def _program_patches(self) -> list[_Patch]:
        worker_module = importlib.import_module(_WORKER_MODULE)
        worker = worker_module.ExecutionWorker
        original = worker.__dict__.get("_get_evaluation_entrypoint")
        _require_moto_original(original, _WORKER_MODULE, "ExecutionWorker._get_evaluation_entrypoint")
        parser_class = worker_module.AmazonStateLanguageParser
        programs = _ParseOnce(lambda definition: parser_class.parse(definition)[0], _PROGRAM_CACHE_SIZE)
        self._programs = programs

        def _get_evaluation_entrypoint(execution_worker: Any) -> Any:
            definition = execution_worker._evaluation_details.state_machine_details.definition
            if not isinstance(definition, str):
                return parser_class.parse(definition)[0]
            return copy.deepcopy(programs(definition))

        return [_Patch(worker, "_get_evaluation_entrypoint", original, _marked(_get_evaluation_entrypoint))]

    def _client_patches(self) -> list[_Patch]:
        factory_module = importlib.import_module(_CLIENT_FACTORY_MODULE)
        original = getattr(factory_module, _CLIENT_FACTORY)
        _require_moto_original(original, _CLIENT_FACTORY_MODULE, _CLIENT_FACTORY)
        parameters = list(inspect.signature(original).parameters)
        if parameters != ["region", "service", "state_credentials"]:
            raise _layout_error(f"{_CLIENT_FACTORY}{tuple(parameters)} is not moto {MOTO_VERSION}'s")
        replacement = _marked(self._reusing(original))
        patches = [_Patch(factory_module, _CLIENT_FACTORY, original, replacement)]
        for binding in client_factory_bindings():
            if binding.module_level:
                patches.append(self._binding_patch(binding, original, replacement))
        return patches

    def _jsonpath_patches(self) -> list[_Patch]:
        patches: list[_Patch] = []
        for binding in jsonpath_parse_bindings():
            source = importlib.import_module(binding.source)
            parse = getattr(source, "parse")  # noqa: B009
            _require_moto_original(parse, getattr(parse, "__module__", ""), "parse")
            if not parse.__module__.startswith("jsonpath_ng"):
                raise _layout_error(f"{binding.source}.parse is not jsonpath-ng's")
            memo = self._paths.setdefault(id(parse), _ParseOnce(parse, _PATH_CACHE_SIZE))
            replacement = _marked(_cached(memo, parse))
            if binding.module_level:
                patches.append(self._binding_patch(binding, parse, replacement))
            elif not any(p.owner is source and p.attribute == "parse" for p in patches):
                # imported when called (moto's EventBridge): the source module's attribute it is
                patches.append(_Patch(source, "parse", parse, replacement))
        return patches

    @staticmethod
    def _binding_patch(binding: Binding, original: Any, replacement: Any) -> _Patch:
        module = importlib.import_module(binding.module)
        if getattr(module, binding.alias, None) is not original:
            raise _layout_error(f"{binding.module}.{binding.alias} is not {binding.source}.{binding.name}")
        return _Patch(module, binding.alias, original, replacement)

    # -- client reuse ----------------------------------------------------------------------------
    def _reusing(self, client_for: Callable[..., Any]) -> Callable[..., Any]:
        def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
            import boto3
            from moto.core.models import botocore_stubber

            key = (
                boto3.DEFAULT_SESSION,
                region,
                service,
                credentials_key(state_credentials),
                bool(botocore_stubber.enabled),
            )
            with self._clients_lock:
                client = self._clients.get(key)
                if client is None:
                    client = client_for(region=region, service=service, state_credentials=state_credentials)
                    self._clients[key] = client
            return client

        return boto_client_for

    def reused_clients(self) -> list[Any]:
        """The clients kept for moto's tasks (to register event hooks on them, as the benchmarks do)."""
        with self._clients_lock:
            return list(self._clients.values())

    # -- counters for tests and benchmarks -------------------------------------------------------
    def program_parses(self) -> int:
        """Definitions parsed since the cache was last cleared (one per distinct text)."""
        return self._programs.misses if self._programs is not None else 0

    def path_parses(self) -> int:
        """JSONPaths parsed since the caches were last cleared (one per distinct text and parser)."""
        return sum(memo.misses for memo in self._paths.values())

    def clear_caches(self) -> None:
        """Forget every parsed path and program (tests count parses from a cold cache)."""
        for memo in self._paths.values():
            memo.cache_clear()
        if self._programs is not None:
            self._programs.cache_clear()


def _cached(memo: _ParseOnce, parse: Callable[..., Any]) -> Callable[..., Any]:
    def cached_parse(path: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or not isinstance(path, str):
            return parse(path, *args, **kwargs)
        return memo(path)

    return cached_parse


def credentials_key(state_credentials: Any) -> str | None:
    """The part of moto's ``StateCredentials`` a client depends on: the role ARN (None without one)."""
    role = getattr(state_credentials, "role_arn", None)
    return None if role is None else str(role)
