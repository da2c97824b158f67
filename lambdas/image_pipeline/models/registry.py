"""The registry of model adapters. Which models a deployment offers, and its default, is configuration
(CDK context -> ``ALLOWED_MODELS`` / ``DEFAULT_MODEL``).

Adding a model is one adapter class (listed here) plus one entry in ``model_facts.json`` whose
``registry_id`` names it (its lifecycle, Regions and inference profiles, with their AWS sources);
``image_pipeline.models.ids`` and the CDK app read that entry, and a test checks that every entry with
a ``registry_id`` has its adapter here and the other way round. Retiring one is its dates there."""

from __future__ import annotations

from image_pipeline.contract.errors import FieldError
from image_pipeline.models.amazon import NovaCanvas, TitanImageV1, TitanImageV2
from image_pipeline.models.base import ImageModelAdapter
from image_pipeline.models.stability import SD35Large, StableImageCore, StableImageUltra
from image_pipeline.models.stability_services import IMAGE_SERVICES

_ADAPTERS: dict[str, ImageModelAdapter] = {
    adapter.registry_id: adapter
    for adapter in (
        TitanImageV1(),
        TitanImageV2(),
        NovaCanvas(),
        SD35Large(),
        StableImageCore(),
        StableImageUltra(),
        *(service() for service in IMAGE_SERVICES),
    )
}
_BY_MODEL_ID = {a.model_id: a for a in _ADAPTERS.values()}


def list_adapters() -> list[ImageModelAdapter]:
    """Every adapter the code knows, in registry order."""
    return list(_ADAPTERS.values())


def get_adapter(registry_id: str) -> ImageModelAdapter:
    """The adapter of a registry id; KeyError if unknown."""
    return _ADAPTERS[registry_id]


def resolve_model(name: str, *, allowed: tuple[str, ...] = ()) -> ImageModelAdapter | FieldError:
    """Find a model by registry id or Bedrock model id, within the deployment's allowed models.

    Returns a FieldError for the ``model`` field when it is unknown or not enabled here.
    """
    adapter = _ADAPTERS.get(name) or _BY_MODEL_ID.get(name)
    offered = [a for a in _ADAPTERS if not allowed or a in allowed]
    if adapter is None:
        return FieldError("model", f"unknown model {name[:100]!r}; available: {', '.join(offered)}")
    if allowed and adapter.registry_id not in allowed:
        return FieldError(
            "model",
            f"{adapter.registry_id} is not enabled in this deployment; available: {', '.join(offered)}",
        )
    return adapter
