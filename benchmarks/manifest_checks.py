"""BuildManifest's S3 checks: one HeadObject per image, one after another or in parallel.

The aggregation step checks every image it reports in S3 (it exists, is a PNG, has a size), so
nothing the manifest lists is missing. Offline, moto answers a HeadObject in about a millisecond of
CPU, which hides what a round trip to S3 costs deployed. This part calls the real
``image_pipeline.core.manifest.build_manifest`` over N stored images (N = 1, 4, 10, 40) on moto S3,
with each HeadObject held for a fixed round trip R before moto answers it (a sleep, which releases the
interpreter lock as network I/O does), and compares, in the same run and interleaved, the checks one
at a time (``HEAD_WORKERS = 1``, what the step did before) with the checks in parallel (the shipped
``HEAD_WORKERS``). R = 0 is moto as it is; R = 15 ms is an **assumed** in-Region S3 HeadObject round
trip (not measured here: no AWS account on this machine).
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from harness import RunContext, load_average, ratio, summarize, write_result

BUCKET = "bench-manifest"
ROUND_TRIPS_MS = (0, 15)


class _RoundTripS3:
    """The S3 client with a fixed round trip added to each HeadObject (the only S3 call the checks make
    besides the manifest's own PutObject)."""

    def __init__(self, s3: Any, seconds: float) -> None:
        self._s3, self._seconds = s3, seconds
        self._lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def head_object(self, **kwargs: Any) -> Any:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self._seconds:
                time.sleep(self._seconds)
            return self._s3.head_object(**kwargs)
        finally:
            with self._lock:
                self.in_flight -= 1


def _state(s3: Any, count: int, tag: str) -> dict[str, Any]:
    """A planned request of ``count`` images whose branches all stored their PNG."""
    from image_pipeline.core.planning import check_request
    from image_pipeline.core.planning import plan as plan_of
    from image_pipeline.core.settings import Settings
    from image_pipeline.core.tenancy import console_caller

    request = {"prompt": f"manifest checks {tag}", "count": count, "model": "stable-image-core", "seed": 1}
    settings = Settings(images_bucket=BUCKET, max_images_per_request=40)
    plan = plan_of(check_request(request, settings), f"bench-{tag}", caller=console_caller())
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 2048
    results = []
    for image in plan["images"]:
        s3.put_object(
            Bucket=BUCKET,
            Key=image["key"],
            Body=png,
            ContentType="image/png",
            Metadata={"seed": str(image["seed"])},
        )
        results.append(
            {
                "index": image["index"],
                "seed": image["seed"],
                "key": image["key"],
                "status": "SUCCEEDED",
                "width": 1024,
                "height": 1024,
            }
        )
    return {**plan, "results": results}


def run(ctx: RunContext) -> dict[str, Any]:
    import boto3
    from botocore.config import Config
    from image_pipeline.core import manifest as manifest_module
    from moto import mock_aws

    started, load_start = time.perf_counter(), load_average()
    shipped_workers = manifest_module.HEAD_WORKERS
    counts = (1, 4) if ctx.quick else (1, 4, 10, 40)
    repeats = max(3, ctx.repeats) if not ctx.quick else 2
    variants = {"one_at_a_time": 1, "parallel": shipped_workers}
    points: list[dict[str, Any]] = []
    with mock_aws():
        s3 = boto3.client(
            "s3",
            region_name="us-east-1",
            config=Config(signature_version="s3v4", max_pool_connections=50),
        )
        s3.create_bucket(Bucket=BUCKET)
        for round_trip_ms in ROUND_TRIPS_MS if not ctx.quick else (15,):
            for count in counts:
                state = _state(s3, count, f"{round_trip_ms}-{count}")
                walls: dict[str, list[float]] = {name: [] for name in variants}
                overlap: dict[str, int] = {}
                try:
                    for _ in range(repeats):
                        for name, workers in variants.items():  # interleaved within each repeat
                            manifest_module.HEAD_WORKERS = workers
                            client = _RoundTripS3(s3, round_trip_ms / 1000)
                            t0 = time.perf_counter()
                            built = manifest_module.build_manifest(
                                state, s3=client, bucket=BUCKET, expires_in=600
                            )
                            walls[name].append(time.perf_counter() - t0)
                            assert built["succeeded"] == count, built["status"]
                            overlap[name] = max(overlap.get(name, 0), client.max_in_flight)
                finally:
                    manifest_module.HEAD_WORKERS = shipped_workers
                medians = {name: statistics.median(values) for name, values in walls.items()}
                points.append(
                    {
                        "round_trip_ms": round_trip_ms,
                        "count": count,
                        "wall": {name: summarize(values) for name, values in walls.items()},
                        "max_checks_in_flight": overlap,
                        "one_at_a_time_over_parallel": ratio(medians["one_at_a_time"], medians["parallel"]),
                    }
                )
                ctx.log(
                    f"  R = {round_trip_ms} ms, N = {count}: one at a time {medians['one_at_a_time']:.3f} s, "
                    f"parallel {medians['parallel']:.3f} s"
                )
    data = {
        "head_workers": shipped_workers,
        "round_trips_ms": list(ROUND_TRIPS_MS),
        "round_trip_note": "R = 15 ms is an assumed in-Region S3 HeadObject round trip, not measured",
        "points": points,
    }
    write_result(ctx, "manifest_checks", data, started=started, load_start=load_start)
    return {"points": len(points)}
