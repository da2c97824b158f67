"""Metrics (CloudWatch EMF on stdout) and logs of the workflow's handlers, captured as Lambda writes them."""

from __future__ import annotations

import base64
import functools
import importlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from image_pipeline.contract.errors import AllImagesFiltered, ImagesThrottled
from image_pipeline.core import clients, observability
from moto import mock_aws
from PIL import Image

from imagegen.runtime.lambda_router import LambdaContext

BUCKET = "observed-bucket"
PROMPT = "a very secret prompt about a lighthouse"


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 8)).save(buffer, "PNG")
    return buffer.getvalue()


class FakeBedrock:
    """Stability's answer shape: one image, or a filtered one for prompts with "blocked"."""

    def invoke_model(self, *, body: str, **_: Any) -> dict[str, Any]:
        request = json.loads(body)
        if "blocked" in request.get("prompt", ""):
            answer: dict[str, Any] = {
                "seeds": [1],
                "finish_reasons": ["Filter reason: output image"],
                "images": [],
            }
        else:
            answer = {"seeds": [1], "finish_reasons": [None], "images": [base64.b64encode(png()).decode()]}
        return {"body": io.BytesIO(json.dumps(answer).encode())}


@pytest.fixture
def env(aws_credentials: None, monkeypatch: pytest.MonkeyPatch, fresh_clients: None) -> Iterator[Any]:
    monkeypatch.setenv("IMAGES_BUCKET", BUCKET)
    monkeypatch.setenv("DEFAULT_MODEL", "stable-image-core")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # the session engine may have set it
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        monkeypatch.setattr(clients, "bedrock_runtime", functools.cache(FakeBedrock))
        observability.metrics.clear_metrics()
        yield s3
        observability.metrics.clear_metrics()


def handler(name: str) -> Any:
    return importlib.import_module(f"image_pipeline.handlers.{name}").handler


def emf_lines(text: str) -> list[dict[str, Any]]:
    """The EMF documents among stdout's lines."""
    documents = []
    for line in text.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    return documents


def metric_values(documents: list[dict[str, Any]]) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                values.setdefault(metric["Name"], []).extend(value if isinstance(value, list) else [value])
    return values


def plan(context: LambdaContext, prompt: str = PROMPT, count: int = 2) -> dict[str, Any]:
    return dict(
        handler("validate_request")(
            {"input": {"prompt": prompt, "count": count}, "execution_name": "obs-1"}, context
        )
    )


def generate(planned: dict[str, Any], context: LambdaContext) -> list[dict[str, Any]]:
    return [
        handler("generate_image")(
            {
                "request_id": planned["request_id"],
                "model": planned["model"],
                "request": planned["request"],
                "image": image,
            },
            context,
        )
        for image in planned["images"]
    ]


def test_generate_image_emits_model_latency_per_model(
    env: Any, lambda_context: LambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    planned = plan(lambda_context, count=1)
    capsys.readouterr()
    generate(planned, lambda_context)

    [document] = emf_lines(capsys.readouterr().out)
    [directive] = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "imagegen"
    assert sorted(map(sorted, directive["Dimensions"])) == [["model", "service"], ["service"]]
    assert directive["Metrics"] == [{"Name": "ModelLatency", "Unit": "Milliseconds"}]
    assert document["model"] == "stable-image-core" and document["service"] == "imagegen"
    assert len(document["ModelLatency"]) == 1 and document["ModelLatency"][0] >= 0


def test_build_manifest_counts_generated_and_filtered_images(
    env: Any, lambda_context: LambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    planned = plan(lambda_context, count=2)
    results = generate(planned, lambda_context)
    results[1] = {"index": 1, "seed": 9, "status": "FILTERED", "reason_code": "CONTENT_FILTERED_OUTPUT"}
    capsys.readouterr()
    manifest = handler("build_manifest")({**planned, "results": results}, lambda_context)

    assert manifest["status"] == "PARTIAL"
    values = metric_values(emf_lines(capsys.readouterr().out))
    assert values == {
        "ImagesGenerated": [1.0],
        "ImagesFiltered": [1.0],
        "ImagesFailed": [0.0],
        "ImagesThrottled": [0.0],
    }


def test_a_request_with_no_image_still_emits_its_counts(
    env: Any, lambda_context: LambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    planned = plan(lambda_context, count=3)
    results = [
        {"index": i, "seed": i, "key": None, "status": "FAILED", "error": "ModelThrottled", "cause": "{}"}
        for i in range(3)
    ]
    capsys.readouterr()
    with pytest.raises(ImagesThrottled):
        handler("build_manifest")({**planned, "results": results}, lambda_context)

    values = metric_values(emf_lines(capsys.readouterr().out))
    assert values == {
        "ImagesGenerated": [0.0],
        "ImagesFiltered": [0.0],
        "ImagesFailed": [3.0],
        "ImagesThrottled": [3.0],
    }


def test_all_filtered_counts_filtered_images(
    env: Any, lambda_context: LambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    planned = plan(lambda_context, prompt="a blocked prompt", count=2)
    results = generate(planned, lambda_context)
    capsys.readouterr()
    with pytest.raises(AllImagesFiltered):
        handler("build_manifest")({**planned, "results": results}, lambda_context)
    values = metric_values(emf_lines(capsys.readouterr().out))
    assert values["ImagesFiltered"] == [2.0] and values["ImagesGenerated"] == [0.0]


def test_disabled_metrics_print_nothing_keep_nothing_and_do_not_warn(
    env: Any,
    lambda_context: LambdaContext,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    planned = plan(lambda_context, count=1)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "No application metrics to publish" would fail the test
        for _ in range(120):  # Powertools prints a kept metric set once it holds 100 values
            generate(planned, lambda_context)
    assert emf_lines(capsys.readouterr().out) == []
    assert observability.metrics.metric_set == {}


class Collect(logging.Handler):
    """Formats records with the Powertools JSON formatter, as they would reach CloudWatch Logs."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_prompts_are_not_logged_at_info(env: Any, lambda_context: LambdaContext) -> None:
    modules = [
        importlib.import_module(f"image_pipeline.handlers.{n}")
        for n in ("validate_request", "generate_image", "build_manifest")
    ]
    collectors = []
    levels = []
    for module in modules:
        collector = Collect(module.logger.registered_formatter)
        module.logger.addHandler(collector)
        levels.append(module.logger.log_level)
        module.logger.setLevel("INFO")
        collectors.append(collector)
    try:
        planned = plan(lambda_context, count=2)
        results = generate(planned, lambda_context)
        handler("build_manifest")({**planned, "results": results}, lambda_context)
    finally:
        for module, collector, level in zip(modules, collectors, levels, strict=True):
            module.logger.removeHandler(collector)
            module.logger.setLevel(level)

    lines = [line for c in collectors for line in c.lines]
    assert any('"request planned"' in line for line in lines)
    assert any('"manifest built"' in line for line in lines)
    assert all(PROMPT not in line and "lighthouse" not in line for line in lines)


def test_outcomes_of_a_manifest() -> None:
    manifest = {
        "images": [
            {"status": "SUCCEEDED"},
            {"status": "FILTERED", "reason_code": "CONTENT_FILTERED_INPUT"},
            {"status": "FAILED", "reason_code": "THROTTLED"},
            {"status": "FAILED", "reason_code": "MODEL_TIMEOUT"},
        ]
    }
    assert observability.outcomes_of_manifest(manifest) == {
        "ImagesGenerated": 1,
        "ImagesFiltered": 1,
        "ImagesFailed": 2,
        "ImagesThrottled": 1,
    }


def test_outcomes_of_a_request_without_images() -> None:
    state = {
        "images": [{"index": 0}, {"index": 1}, {"index": 2}],
        "results": [
            {"index": 0, "status": "FILTERED"},
            {"index": 1, "status": "FAILED", "error": "ModelThrottled"},
            {"index": 2, "status": "SUCCEEDED"},  # reported stored, but the manifest found no image
        ],
    }
    assert observability.outcomes_of_failed_request(state) == {
        "ImagesFiltered": 1,
        "ImagesFailed": 2,
        "ImagesThrottled": 1,
    }
