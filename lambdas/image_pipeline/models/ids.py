"""Every model the registry knows: registry id -> Bedrock model id, in registry order.

Plain data, so the CDK app reads which models exist (the default of ``imagegen:allowedModels``) and
which Bedrock model ids IAM must allow without importing the adapters; each adapter takes its
``model_id`` from here (``image_pipeline.models.registry`` has one adapter per entry).
"""

from __future__ import annotations

BEDROCK_MODEL_IDS: dict[str, str] = {
    "titan-image-v1": "amazon.titan-image-generator-v1",
    "titan-image-v2": "amazon.titan-image-generator-v2:0",
    "nova-canvas": "amazon.nova-canvas-v1:0",
    "sd3-5-large": "stability.sd3-5-large-v1:0",
    "stable-image-core": "stability.stable-image-core-v1:1",
    "stable-image-ultra": "stability.stable-image-ultra-v1:1",
}
