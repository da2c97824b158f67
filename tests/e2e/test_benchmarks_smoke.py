"""Smoke run of the benchmarks (``benchmarks/run_all.py --quick``) in a child process, then checks of
the result files' structure and of values that must hold whatever the machine's speed.

No timing thresholds: the machine is shared and the numbers are noisy by nature; what is checked is
that every part ran, counted what it claims to count, and wrote consistent JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from image_pipeline.models.prices import PRICES_FILE

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
FILES = ("fanout", "peers", "concurrency", "cost", "profile", "cold_start", "manifest_checks")
pytestmark = pytest.mark.timeout(600)  # the quick run takes about a minute, more on a busy machine


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("flask", reason="the seed 001 peer is a Flask app (pip install flask)")
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--quick", "--results-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    loaded = {name: json.loads((out / f"{name}.json").read_text()) for name in FILES}
    loaded["_dir"] = out
    return loaded


def test_every_file_has_the_run_metadata(results: dict[str, Any]) -> None:
    for name in FILES:
        meta = results[name]["meta"]
        assert results[name]["benchmark"] == name
        assert meta["quick"] is True
        assert meta["latency_seconds"] == 0.5
        assert len(meta["loadavg_start"]) == 3 and len(meta["loadavg_end"]) == 3
        assert meta["machine"]["cpu_count"] >= 1


def test_fanout_points_are_complete_and_consistent(results: dict[str, Any]) -> None:
    fanout = results["fanout"]
    latency = fanout["latency_seconds"]
    points = {p["count"]: p for p in fanout["points"]}
    assert set(points) == {1, 4}
    for count, point in points.items():
        assert point["all_succeeded"], f"N={count} did not produce every image"
        wall = point["wall"]
        assert wall["min"] <= wall["median"] <= wall["max"]
        assert wall["median"] >= latency  # no request can beat its own model call
        assert point["state_transitions"] >= count + 2
        assert point["overhead_seconds"] == pytest.approx(wall["median"] - latency, abs=1e-3)
    assert points[1]["wall_over_wall1"] == 1.0
    assert fanout["direct_model_call"]["median"] >= latency
    assert {t["target"] for t in fanout["targets"]} >= {
        "wall(4)/wall(1) <= 1.05",
        "overhead wall(1) - L <= 0.050 s",
    }
    assert all(isinstance(t["met"], bool) for t in fanout["targets"])
    assert "imagegen-generate-image" in fanout["handler_seconds"]


def test_peers_are_measured_beside_the_engine(results: dict[str, Any]) -> None:
    peers = results["peers"]
    rows = {r["count"]: r for r in peers["ratios"]}
    assert rows[4]["seed001_seconds"] >= peers["latency_seconds"]
    for count in (1, 4):
        assert rows[count]["seed000_seconds"] >= count * peers["latency_seconds"]  # sequential calls
        assert rows[count]["engine_over_seed000"] > 0
    assert peers["seed001"]["max_concurrent_requests"] == 10


def test_concurrency_completes_every_request(results: dict[str, Any]) -> None:
    data = results["concurrency"]
    for name in ("engine", "seed001_gunicorn_capacity"):
        variant = data["variants"][name]
        assert variant["completed"] == variant["requests"] == data["concurrent_requests"]
        assert variant["errors"] == []
        assert variant["p50_seconds"] <= variant["p99_seconds"]
        assert isinstance(variant["target_met"], bool)
    assert data["variants"]["engine"]["statuses"] == {"SUCCEEDED": data["concurrent_requests"]}


def test_cost_counts_come_from_the_execution(results: dict[str, Any]) -> None:
    cost = results["cost"]
    prices = json.loads(PRICES_FILE.read_text())
    for measured in cost["measured_per_request"]:
        n = measured["count"]
        assert measured["status"] == "SUCCEEDED"
        assert measured["states_entered"]["GenerateImage"] == n
        assert measured["state_transitions"] == sum(measured["states_entered"].values())
        assert measured["lambda_invocations"]["imagegen-generate-image"] == n
        assert measured["aws_calls"]["bedrock-runtime.InvokeModel"] == n
        assert measured["aws_calls"]["s3.PutObject"] >= n  # every image, plus the manifest
        assert measured["aws_calls"]["events.PutEvents"] >= 1  # the completed event, via a reused client
        assert measured["express_memory"]["billed_mb"] % 64 == 0
    for costs in cost["per_1000_images"].values():
        for kind in ("express", "standard"):
            parts = {k: v for k, v in costs[kind].items() if k != "orchestration_total"}
            assert all(v >= 0 for v in parts.values())
            assert costs[kind]["orchestration_total"] == pytest.approx(sum(parts.values()), rel=1e-3)
    assert set(cost["by_model"]) == set(prices["models_per_image"])
    svg = (results["_dir"] / cost["chart"]).read_text()
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")


def test_prices_file_names_a_source_and_a_status_for_every_price() -> None:
    prices = json.loads(PRICES_FILE.read_text())
    assert prices["region"] == "us-east-1" and prices["as_of"]
    entries = [*prices["services"].values(), *prices["models_per_image"].values()]
    for entry in entries:
        assert entry["status"] in {"confirmed", "verify"}
        assert entry["source"].startswith("https://")


def test_profile_and_cold_start(results: dict[str, Any]) -> None:
    profile = results["profile"]
    assert profile["unit_costs_ms"]["jsonpath_parse"] > 0
    counted = profile["per_request_counts"][0]
    assert counted["jsonpath_parses"] > 0 and counted["asl_parses"] == 1
    assert {"moto_as_shipped", "engine"} <= set(profile["variants_out_of_process_server"])
    assert counted["describe_execution_polls"] >= 1  # the engine reads the result through the API
    assert sum(s["share"] for s in profile["sampled_busy_shares_engine"]) == pytest.approx(1.0, abs=0.01)
    assert sum(s["share"] for s in profile["sampled_busy_shares"]) == pytest.approx(1.0, abs=0.01)

    cold = results["cold_start"]
    assert cold["handlers"], "no handler measured"
    for handler in cold["handlers"].values():
        assert handler["import_seconds"]["median"] > 0
    asset = cold["asset"]
    assert 0 < asset["zip_bytes"] < asset["bytes"]
    assert "**/__pycache__" in asset["excludes"]
    sources = {d["distribution"].lower(): d["in_aws_from"] for d in cold["third_party_imported_by_source"]}
    assert sources["boto3"].startswith("Lambda runtime")
    assert sources["pydantic"].startswith("Powertools layer")


def test_manifest_checks_compare_one_at_a_time_with_parallel(results: dict[str, Any]) -> None:
    data = results["manifest_checks"]
    points = {(p["round_trip_ms"], p["count"]): p for p in data["points"]}
    assert set(points) == {(15, 1), (15, 4)}
    for point in points.values():
        assert set(point["wall"]) == {"one_at_a_time", "parallel"}
        assert point["max_checks_in_flight"]["one_at_a_time"] == 1  # the old way: never two at once
        for wall in point["wall"].values():
            assert wall["min"] >= 0.015  # every build waits for at least one round trip
    assert points[(15, 4)]["max_checks_in_flight"]["parallel"] > 1  # the shipped way overlaps them
    assert "### BuildManifest's S3 checks" in (results["_dir"] / "summary.md").read_text()


def test_the_profiler_s_own_code_paths_name_files_that_exist() -> None:
    # A sample is attributed by a path fragment of its frames' files; a fragment naming a file of this
    # repository that moved (imagegen/renderer.py -> imagegen/standin/renderer.py) matches nothing.
    from benchmarks.harness import CAUSES, LAYERS

    ours = [fragment for _, fragment, _ in CAUSES + LAYERS if fragment.startswith("imagegen/")]
    assert ours, "the profiler names none of imagegen's files"
    for fragment in ours:
        assert (ROOT / fragment).is_file(), fragment
