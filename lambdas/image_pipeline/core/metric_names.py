"""The names of the handlers' metrics: plain constants, with no Powertools import.

:mod:`image_pipeline.core.observability` records the metrics under these names; the CDK app
(``stacks/monitoring.py``) builds its alarms and dashboard on the same names. ``SERVICE`` is also
the Powertools service name of every handler (``POWERTOOLS_SERVICE_NAME``).
"""

from __future__ import annotations

NAMESPACE = "imagegen"
SERVICE = "imagegen"
MODEL_DIMENSION = "model"

IMAGES_GENERATED = "ImagesGenerated"
IMAGES_FILTERED = "ImagesFiltered"
IMAGES_FAILED = "ImagesFailed"
IMAGES_THROTTLED = "ImagesThrottled"
MODEL_LATENCY = "ModelLatency"
