"""The offline account: its names, how it fills the ASL placeholders, and how an execution ended.

Shared by the engine and the batch runner (which takes the engine as a parameter), so neither
imports the other's module to learn a name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The offline account's Region: one where the default model (stable-image-core) is offered, so the
#: handlers judge "offered here" (AWS_REGION) as they do deployed (``image_pipeline.models.facts``).
REGION = "us-west-2"
ACCOUNT = "123456789012"
DEFAULT_BUCKET = "imagegen-offline-images"
ASL_FILE = "generate_images.asl.json"

EVENT_BUS = "imagegen-offline-events"
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def asl_path() -> Path:
    """The state machine definition file of this checkout (``IMAGEGEN_ASL_PATH`` overrides)."""
    override = os.environ.get("IMAGEGEN_ASL_PATH")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "statemachine" / ASL_FILE


def substitute(definition: str, values: dict[str, str]) -> str:
    """Fill ``${Name}`` placeholders as CloudFormation's DefinitionSubstitutions does."""
    for key, value in values.items():
        definition = definition.replace("${" + key + "}", value)
    if "${" in definition:
        start = definition.index("${")
        raise ValueError(f"unsubstituted placeholder in the definition: {definition[start : start + 60]}")
    return definition


def bucket_location(region: str) -> dict[str, Any]:
    """CreateBucket's location argument for ``region`` (us-east-1 takes none, every other Region its own)."""
    return {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


@dataclass
class ExecutionResult:
    """How an execution ended."""

    name: str
    arn: str
    status: str
    output: dict[str, Any] | None = None
    error: str | None = None
    cause: str | None = None

    @property
    def message(self) -> str:
        """The human-readable part of the cause (the Lambda ``errorMessage``)."""
        if not self.cause:
            return self.error or ""
        try:
            parsed = json.loads(self.cause)
        except ValueError:
            return self.cause
        return str(parsed.get("errorMessage", self.cause)) if isinstance(parsed, dict) else self.cause


@dataclass
class Progress:
    """What a running execution has done so far."""

    total: int | None = None
    done: int = 0
    failed: int = 0
    status: str = "RUNNING"
