"""The prompt cache and the image index, measured: a "Re-run with this seed" of 4 images with the cache
and without it (``"cache": false``), side by side in one run, and what indexing costs per 1,000 images.

    python benchmarks/prompt_cache.py                  # 5 repeats interleaved, model latency 2 s
    python benchmarks/prompt_cache.py --repeats 2 --latency 0.5 --results-dir /tmp/bench

Offline: the engine runs the ASL and handlers on moto (S3, Step Functions, DynamoDB) against the Bedrock
stand-in in its own process, answering each call after ``--latency`` seconds (a stand-in for the model's
time; Stable Image Core takes several seconds deployed). Each repeat first makes the original request
(seeded, its own prompt), then re-runs it with ``"cache": false`` and with the cache, in alternating
order. Model calls are the stand-in's own count; cost is the manifest's (``core/cost.py``, prices of
``models/prices.json``). The index's write cost is computed from the items the run wrote (their sizes
as DynamoDB counts them) and the on-demand price in ``models/prices.json``. Writes
``results/prompt_cache.json``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from harness import RESULTS_DIR, BedrockProcess, RunContext, load_average, summarize, write_result
from image_pipeline.core.index_keys import GSIS
from image_pipeline.models.prices import price_table

from imagegen.runtime.engine import EngineConfig, OfflineEngine

COUNT = 4
MODEL = "stable-image-core"
#: Writes of a job's item when the API starts it: start_job, ValidateRequest, BuildManifest.
JOB_WRITES = 3


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it (approximately): attribute names plus values (strings and
    binary their UTF-8 length, numbers about 1 byte per 2 digits + 1, sets and lists their members plus
    3 bytes, maps 3 bytes plus their pairs, booleans and null 1)."""

    def size(value: Any) -> int:
        if isinstance(value, str):
            return len(value.encode())
        if isinstance(value, bool) or value is None:
            return 1
        if isinstance(value, int | float | Decimal):
            return math.ceil(len(str(value).lstrip("-").replace(".", "")) / 2) + 1
        if isinstance(value, dict):
            return 3 + sum(len(k.encode()) + size(v) for k, v in value.items())
        if isinstance(value, list | set | tuple):
            return 3 + sum(size(v) for v in value)
        return len(str(value).encode())

    return sum(len(name.encode()) + size(value) for name, value in item.items())


def write_units(item: dict[str, Any]) -> int:
    """Write request units of one PutItem of ``item``: 1 per KB, rounded up, for the table and again for
    each GSI whose keys it carries (a GSI write is billed like a table write)."""
    units = math.ceil(item_size(item) / 1024)
    indexes = sum(1 for pk, _ in GSIS.values() if pk in item)
    return units * (1 + indexes)


def run(engine: OfflineEngine, server: BedrockProcess, request: dict[str, Any]) -> dict[str, Any]:
    before = server.stats()["invocations"]
    started = time.perf_counter()
    result = engine.run(request)
    wall = time.perf_counter() - started
    assert result.status == "SUCCEEDED", result
    manifest = result.output
    return {
        "wall_seconds": round(wall, 3),
        "model_calls": server.stats()["invocations"] - before,
        "cached_images": sum(1 for i in manifest["images"] if i.get("cached")),
        "model_usd": manifest["cost"]["model_usd"],
        "total_usd": manifest["cost"]["total_usd"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--latency", type=float, default=2.0, help="the stand-in's seconds per model call")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    ctx = RunContext(quick=False, latency=args.latency, repeats=args.repeats, results_dir=args.results_dir)
    started, load_start = time.perf_counter(), load_average()

    runs: dict[str, list[dict[str, Any]]] = {"original": [], "without_cache": [], "with_cache": []}
    with BedrockProcess(args.latency) as server:
        config = EngineConfig(bedrock_endpoint=server.url, map_max_concurrency=40)
        with OfflineEngine(config) as engine:
            engine.run({"prompt": "warm-up", "count": 1, "model": MODEL})  # imports, clients, moto
            for repeat in range(args.repeats):
                request = {"prompt": f"a lighthouse at dusk {uuid.uuid4().hex[:8]}", "count": COUNT,
                           "model": MODEL, "seed": 1000 + repeat}  # fmt: skip
                runs["original"].append(run(engine, server, request))
                order = (
                    ["without_cache", "with_cache"] if repeat % 2 == 0 else ["with_cache", "without_cache"]
                )
                for variant in order:
                    rerun = {**request, "cache": variant == "with_cache"}
                    runs[variant].append(run(engine, server, rerun))
            items = engine.index_table.scan()["Items"]

    images = [i for i in items if i.get("kind") == "image" and i.get("status") == "SUCCEEDED"]
    jobs = [i for i in items if i.get("kind") == "job"]
    table = price_table()
    wru = table.service("dynamodb_on_demand_per_write_request_unit")
    rru = table.service("dynamodb_on_demand_per_read_request_unit")
    image_units = sum(write_units(i) for i in images) / len(images)
    # a job item: three UpdateItems of a job started through the API (the API as it starts it,
    # ValidateRequest, BuildManifest), each billed for the table and the by-caller-jobs GSI; per image
    # of a 4-image request
    job_units = JOB_WRITES * sum(write_units(j) for j in jobs) / len(jobs) / COUNT
    lookup_units = 0.5  # the cache's Query on a GSI: eventually consistent, one item under 4 KB
    per_1000 = {
        "image_item_write_units": round(image_units, 2),
        "job_item_write_units_per_image": round(job_units, 2),
        "job_item_writes": JOB_WRITES,
        "mean_job_item_bytes": round(sum(item_size(j) for j in jobs) / len(jobs)),
        "cache_lookup_read_units": lookup_units,
        "usd_per_1000_images_index_writes": round(1000 * (image_units + job_units) * wru, 5),
        "usd_per_1000_images_cache_lookups": round(1000 * lookup_units * rru, 5),
        "mean_image_item_bytes": round(sum(item_size(i) for i in images) / len(images)),
        "prices": {
            "write_request_unit": wru,
            "read_request_unit": rru,
            "source": table.reference(),
        },
    }
    per_1000["usd_per_1000_images_total"] = round(
        per_1000["usd_per_1000_images_index_writes"] + per_1000["usd_per_1000_images_cache_lookups"], 5
    )

    def figures(name: str) -> dict[str, Any]:
        rows = runs[name]
        return {
            "model_calls": [r["model_calls"] for r in rows],
            "cached_images": [r["cached_images"] for r in rows],
            "wall_seconds": summarize([r["wall_seconds"] for r in rows]),
            "model_usd": rows[0]["model_usd"],
            "total_usd": rows[0]["total_usd"],
        }

    data = {
        "count": COUNT,
        "model": MODEL,
        "rerun": {name: figures(name) for name in runs},
        "index_cost": per_1000,
    }
    path = write_result(ctx, "prompt_cache", data, started=started, load_start=load_start)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
