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
#: Index writes that failed (logged; the job goes on): ``image_pipeline.core.image_index``.
INDEX_WRITE_FAILED = "IndexWriteFailed"
#: Admission control (``core/admission.py``, per model): slots held after a take, branches waiting at
#: the last read, seconds a branch waited for its slot, and takes DynamoDB throttled (each one a
#: ``NoSlot`` retry; a branch without a slot waits in the queue instead).
ADMISSION_SLOTS_IN_USE = "AdmissionSlotsInUse"
ADMISSION_WAITING = "AdmissionWaitingBranches"
ADMISSION_WAIT_SECONDS = "AdmissionWaitSeconds"
ADMISSION_NO_SLOT = "AdmissionNoSlot"
