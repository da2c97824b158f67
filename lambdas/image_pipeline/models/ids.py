"""Every model the registry knows: registry id -> Bedrock model id, in registry order.

Read from the facts file (``model_facts.json``, the entries with a ``registry_id``), so it is not a
list of its own: the CDK app reads which models exist (the default of ``imagegen:allowedModels``)
and which Bedrock model ids IAM must allow without importing the adapters; each adapter takes its
``model_id`` from here (``image_pipeline.models.registry`` has one adapter per entry).
"""

from __future__ import annotations

from image_pipeline.models.facts import registry_model_facts

BEDROCK_MODEL_IDS: dict[str, str] = {
    facts.registry_id: facts.model_id for facts in registry_model_facts() if facts.registry_id
}
