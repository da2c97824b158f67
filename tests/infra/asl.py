"""Walking an ASL document: its string values, keys, nested state machines and transitions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

#: A CloudFormation definition substitution in an ASL file: ``${Name}``.
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def strings(node: Any) -> Iterator[str]:
    """Every string value of a JSON document (not the keys)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from keys(value)


def state_machines(definition: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """The top-level machine and every nested one (Map ItemProcessor/Iterator, Parallel Branches)."""
    yield path or "<top>", definition
    for name, state in definition["States"].items():
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from state_machines(state[key], f"{path}/{name}")
        for i, branch in enumerate(state.get("Branches", [])):
            yield from state_machines(branch, f"{path}/{name}[{i}]")


def transitions(state: dict[str, Any]) -> list[str]:
    targets = [state["Next"]] if "Next" in state else []
    targets += [c["Next"] for c in state.get("Catch", [])]
    targets += [c["Next"] for c in state.get("Choices", [])]
    if "Default" in state:
        targets.append(state["Default"])
    return targets
