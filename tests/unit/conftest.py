"""Unit-test fixtures: settings and a Lambda context."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from image_pipeline.core.clients import reset_clients
from image_pipeline.core.settings import Settings

from imagegen.runtime.lambda_router import LambdaContext


@pytest.fixture
def settings() -> Settings:
    return Settings(images_bucket="test-bucket", allowed_models=(), max_images_per_request=40)


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext(
        function_name="test-function", invoked_function_arn="arn:aws:lambda:us-east-1:1:function:t"
    )


@pytest.fixture
def fresh_clients() -> Iterator[None]:
    """Clients and settings re-read from the (monkeypatched) environment."""
    reset_clients()
    yield
    reset_clients()
