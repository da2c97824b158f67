"""The functions' defaults (``stacks/functions.py``) in the synthesized stack: runtime, architecture, the
Powertools layer, tracing, the environment contract and the code asset."""

from __future__ import annotations

import re

import pytest
from aws_cdk.assertions import Match

from stacks.functions import POWERTOOLS_LAYER_ACCOUNT, POWERTOOLS_LAYER_NAME
from tests.infra.stack_template import OUR_HANDLERS, function_id, images_bucket_id, join_text
from tests.infra.synthesis import Synthesized

CONTRACT_ENV = {
    "IMAGES_BUCKET",
    "DEFAULT_MODEL",
    "ALLOWED_MODELS",
    "MAX_IMAGES_PER_REQUEST",
    "PRESIGN_EXPIRY_SECONDS",
    "MAP_MAX_CONCURRENCY",
    "BEDROCK_MAX_ATTEMPTS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_LOG_LEVEL",
}


@pytest.mark.parametrize("name", sorted(OUR_HANDLERS))
def test_function_runtime_architecture_layer_tracing_and_environment(
    synthesized: Synthesized, name: str
) -> None:
    synthesized.template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": OUR_HANDLERS[name],
            "Runtime": "python3.13",
            "Architectures": ["arm64"],
            "TracingConfig": {"Mode": "Active"},
            "Layers": [
                Match.string_like_regexp(
                    rf"^arn:aws:lambda:us-west-2:{POWERTOOLS_LAYER_ACCOUNT}:layer:{POWERTOOLS_LAYER_NAME}:\d+$"
                )
            ],
            "LoggingConfig": {"LogGroup": {"Ref": Match.any_value()}},
        },
    )
    env = synthesized.resources("AWS::Lambda::Function")[function_id(synthesized, name)]["Properties"]
    variables = env["Environment"]["Variables"]
    assert set(variables) >= CONTRACT_ENV
    config = synthesized.config
    assert variables["IMAGES_BUCKET"] == {"Ref": images_bucket_id(synthesized)}
    assert variables["DEFAULT_MODEL"] == config.default_model == "stable-image-core"
    assert variables["ALLOWED_MODELS"] == "stable-image-core,stable-image-ultra,sd3-5-large"  # cdk.json
    assert variables["MAX_IMAGES_PER_REQUEST"] == "40"
    assert variables["PRESIGN_EXPIRY_SECONDS"] == "3600"
    assert variables["MAP_MAX_CONCURRENCY"] == "40"  # the semaphore, not the Map, limits the calls (issue 15)
    assert variables["POWERTOOLS_SERVICE_NAME"] == "imagegen"
    assert variables["POWERTOOLS_LOG_LEVEL"] == "INFO"


def test_the_asset_is_the_lambdas_directory_without_caches(synthesized: Synthesized) -> None:
    code = synthesized.resources("AWS::Lambda::Function")[function_id(synthesized, "generate_image")]
    key = code["Properties"]["Code"]["S3Key"]
    asset = synthesized.outdir / f"asset.{key.removesuffix('.zip')}"
    files = {p.relative_to(asset).as_posix() for p in asset.rglob("*") if p.is_file()}
    assert "image_pipeline/handlers/generate_image.py" in files
    assert "image_pipeline/models/registry.py" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


def test_env_agnostic_synthesis_takes_the_layer_of_the_deployment_region(variant: Synthesized) -> None:
    assert variant.stack.region.startswith("${Token[")  # no account/Region: the layer ARN is a token
    for name in OUR_HANDLERS:
        fn = variant.resources("AWS::Lambda::Function")[function_id(variant, name)]["Properties"]
        (layer,) = fn["Layers"]
        assert re.fullmatch(
            rf"arn:aws:lambda:<AWS::Region>:{POWERTOOLS_LAYER_ACCOUNT}:layer:{POWERTOOLS_LAYER_NAME}:\d+",
            join_text(layer),
        )
