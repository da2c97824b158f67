"""The handlers' settings: read from the environment, and written to it by the one writer."""

from __future__ import annotations

import pytest
from image_pipeline.core.settings import BatchSettings, Settings, handler_environment


def test_settings_written_read_back_the_same() -> None:
    settings = Settings(
        images_bucket="b", allowed_models=("nova-canvas", "sd3-5-large"), map_max_concurrency=0
    )
    environment = settings.to_environment()
    assert environment == {
        "IMAGES_BUCKET": "b",
        "ALLOWED_MODELS": "nova-canvas,sd3-5-large",
        "MAP_MAX_CONCURRENCY": "0",
    }
    assert Settings.from_environ(environment) == settings


def test_every_setting_has_its_variable() -> None:
    assert set(Settings.ENVIRONMENT) == set(Settings.model_fields)
    assert set(BatchSettings.ENVIRONMENT) == set(BatchSettings.model_fields)


def test_handler_environment_adds_the_powertools_service_and_log_level() -> None:
    environment = handler_environment(Settings(default_model="nova-canvas"), log_level="DEBUG")
    assert environment == {
        "DEFAULT_MODEL": "nova-canvas",
        "POWERTOOLS_SERVICE_NAME": "imagegen",
        "POWERTOOLS_LOG_LEVEL": "DEBUG",
    }


@pytest.mark.parametrize(("tolerated", "written"), [(10.0, "10"), (12.5, "12.5"), (0, "0")])
def test_batch_settings_are_written_as_the_handlers_read_them(tolerated: float, written: str) -> None:
    settings = BatchSettings(max_concurrency=4, tolerated_failure_percentage=tolerated)
    environment = settings.to_environment()
    assert environment == {"BATCH_MAX_CONCURRENCY": "4", "BATCH_TOLERATED_FAILURE_PERCENTAGE": written}
    assert BatchSettings.from_environ(environment) == settings
