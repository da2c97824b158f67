"""The image index's table as plain data: its keys, global secondary indexes, TTL attribute and the
search's parameters. No imports beyond the standard library, so the CDK app (``stacks/index.py``,
``stacks/api.py``) and the offline engine read the same shape without loading Powertools; the index's
code is ``core/image_index.py``.
"""

from __future__ import annotations

from typing import Any

PK, SK = "pk", "sk"
#: The partition keys of the daily spend ledger's items (``core/spend.py``): ``SPEND#<namespace>``.
SPEND_PREFIX = "SPEND#"
TTL_ATTRIBUTE = "expires_at"
BY_CALLER = "by-caller"
BY_CALLER_MODEL = "by-caller-model"
BY_KEY = "by-key"
BY_CACHE_KEY = "by-cache-key"
BY_CALLER_JOBS = "by-caller-jobs"
#: GSI name -> (partition key attribute, sort key attribute or None). All string keys, ALL projected.
GSIS: dict[str, tuple[str, str | None]] = {
    BY_CALLER: ("caller", "made"),
    BY_CALLER_MODEL: ("caller_model", "made"),
    BY_KEY: ("image_key", None),
    BY_CACHE_KEY: ("cache_key", "made"),
    #: A caller's jobs, newest first (``GET /jobs``): ``caller_jobs = CALLER#<ns>``, ``started = <time>#<job>``.
    BY_CALLER_JOBS: ("caller_jobs", "started"),
}
#: The sort key of a job's own item, in the job's partition (``JOB#<ns>#<job>``) beside its images.
JOB_SK = "JOB"

#: ``GET /images/search``'s query parameters.
SEARCH_PARAMETERS = ("q", "model", "since", "until", "limit", "next_token")


def table_definition() -> dict[str, Any]:
    """``CreateTable`` arguments without the name: on-demand, the keys and GSIs above (offline engine,
    tests; ``stacks/index.py`` declares the same from :data:`GSIS`)."""
    attributes = {PK, SK} | {a for keys in GSIS.values() for a in keys if a}
    return {
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in sorted(attributes)],
        "KeySchema": [{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": name,
                "KeySchema": [{"AttributeName": pk, "KeyType": "HASH"}]
                + ([{"AttributeName": sk, "KeyType": "RANGE"}] if sk else []),
                "Projection": {"ProjectionType": "ALL"},
            }
            for name, (pk, sk) in GSIS.items()
        ],
    }
