"""Part 5: what orchestration costs per 1,000 images, beside the model's price, for the Express
(synchronous API) and Standard (jobs) workflows.

What is counted comes from offline executions of the real ASL and handlers, not from reading the
definition: state transitions (every ``*StateEntered`` history event), Lambda invocations per
function (the engine's router), handler durations (timed around each handler call), S3 and
EventBridge requests (counted on boto3's event hooks), the Express billed memory (from the
definition size and the Map steps' payloads). Prices come from one file, the Lambda package's
``image_pipeline/models/prices.json`` (which every manifest's cost reads too).

What is assumed is in ``ASSUMPTIONS`` and written to ``results/cost.json`` with the numbers.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from harness import (
    CallCounter,
    HandlerTimer,
    RunContext,
    engine_request,
    execution_history,
    history_summary,
    load_average,
    write_result,
)
from image_pipeline.models.prices import PRICES_FILE, PRICES_SOURCE

ASSUMPTIONS: dict[str, Any] = {
    "lambda_memory_mb": {
        "imagegen-validate-request": 256,
        "imagegen-generate-image": 512,
        "imagegen-build-manifest": 256,
        "http-api": 256,
    },
    "lambda_memory_note": "memory_size in stacks/workflow.py (GenerateImage 512 MB) and the default of "
    "stacks/functions.py (256 MB, also the HTTP API function of stacks/api.py); arm64",
    "model_seconds_per_image": 10.0,
    "model_seconds_note": "not measured: the Bedrock model's own latency in AWS, which GenerateImage's "
    "Lambda waits for and is billed for; see lambda_wait_per_model_second for the sensitivity",
    "aws_orchestration_seconds": 0.5,
    "aws_orchestration_note": "Express duration = model seconds + this (state transitions, Lambda "
    "invokes, S3 writes in AWS); an estimate, verify against ExpressExecutionBilledDuration",
    "jobs_status_polls": 3,
    "jobs_status_note": "Standard path: POST /jobs (one http_api Lambda call of http_api_seconds), then "
    "this many GET /jobs/{id}, each an API Gateway request and an http_api call of http_api_seconds",
    "http_api_seconds": 0.1,
    "http_api_note": "Express path: POST /images is one API Gateway request and one http_api Lambda call "
    "that validates, then waits in StartSyncExecution for the whole execution (model seconds + "
    "aws_orchestration_seconds), billed at its memory; Standard: http_api_seconds per call",
    "image_megabytes_in_aws": 1.5,
    "image_megabytes_note": "a 1024x1024 PNG from a real model; the offline renders are far smaller",
    "images_per_request_default": 4,
}
FUNCTIONS = ("imagegen-validate-request", "imagegen-generate-image", "imagegen-build-manifest")
SVG_FILE = "cost_overhead.svg"


def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    return json.loads(path.read_text())


def _express_memory_mb(definition_bytes: int, map_payload_bytes: int) -> dict[str, float]:
    """Step Functions' published estimate: 50 MB + definition + payload x Map steps, 64 MB chunks."""
    used = 50.0 + (definition_bytes + map_payload_bytes) / (1024 * 1024)
    return {"used_mb": round(used, 3), "billed_mb": float(64 * math.ceil(used / 64))}


def measure(ctx: RunContext, counts: tuple[int, ...]) -> list[dict[str, Any]]:
    """One offline execution per image count, with every counter on."""
    engine = ctx.engine
    from imagegen.runtime.engine import asl_path

    definition_bytes = len(asl_path().read_bytes())
    timer = HandlerTimer(engine)
    counter = CallCounter(engine)
    measured = []
    try:
        engine.run(engine_request(1, 3), kind="jobs")  # warm: imports, clients
        for n in counts:
            timer.reset()
            counter.reset()
            before = dict(engine.router.invocations)
            arn = engine.start_execution(engine_request(n, 9_000 + n), kind="jobs")
            result = engine.wait(arn)
            events = execution_history(engine.sfn, arn)
            summary = history_summary(events)
            scheduled = [e["taskScheduledEventDetails"] for e in events if e["type"] == "TaskScheduled"]
            map_payload = sum(
                len(d.get("parameters", "")) for d in scheduled if "generate-image" in d.get("parameters", "")
            )
            invocations = {
                k: engine.router.invocations[k] - before.get(k, 0) for k in engine.router.invocations
            }
            output = result.output or {}
            sizes = [i.get("size_bytes") or 0 for i in output.get("images", [])]
            durations = {name: sorted(values) for name, values in timer.durations.items()}
            model_seconds = sorted(timer.model_seconds)
            gen = durations.get("imagegen-generate-image", [])
            own = [max(d - m, 0.0) for d, m in zip(gen, model_seconds, strict=False)] if model_seconds else []
            measured.append(
                {
                    "count": n,
                    "status": result.status,
                    "state_transitions": summary["state_transitions"],
                    "states_entered": summary["states_entered"],
                    "lambda_invocations": invocations,
                    "handler_seconds_median": {
                        name: round(values[len(values) // 2], 4)
                        for name, values in durations.items()
                        if values
                    },
                    "generate_image_own_seconds_median": round(sorted(own)[len(own) // 2], 4)
                    if own
                    else None,
                    "aws_calls": counter.snapshot(),
                    "offline_execution_seconds": summary["execution_seconds"],
                    "offline_image_bytes_median": sorted(sizes)[len(sizes) // 2] if sizes else 0,
                    "definition_bytes": definition_bytes,
                    "map_payload_bytes": map_payload,
                    "express_memory": _express_memory_mb(definition_bytes, map_payload),
                }
            )
            ctx.log(
                f"  N={n}: {summary['state_transitions']} transitions, lambda {invocations}, "
                f"calls {counter.snapshot()}"
            )
    finally:
        timer.close()
        counter.close()
    return measured


def _p(prices: dict[str, Any], name: str) -> float:
    return float(prices["services"][name]["price"])


def request_costs(
    m: dict[str, Any], prices: dict[str, Any], a: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """Dollars per request (N images) by component, for Express and Standard."""
    n = m["count"]
    memory_gb = {name: mb / 1024 for name, mb in a["lambda_memory_mb"].items()}
    handler = m["handler_seconds_median"]
    lam_gbs = _p(prices, "lambda_arm64_per_gb_second")
    lam_req = _p(prices, "lambda_per_request")
    own = m["generate_image_own_seconds_median"] or 0.0
    invocations = sum(m["lambda_invocations"].get(f, 0) for f in FUNCTIONS)
    gb_seconds = (
        handler.get("imagegen-validate-request", 0.0) * memory_gb["imagegen-validate-request"]
        + handler.get("imagegen-build-manifest", 0.0) * memory_gb["imagegen-build-manifest"]
        + n * own * memory_gb["imagegen-generate-image"]
    )
    lambda_requests = invocations * lam_req + gb_seconds * lam_gbs
    lambda_model_wait = n * a["model_seconds_per_image"] * memory_gb["imagegen-generate-image"] * lam_gbs
    calls = m["aws_calls"]
    put_class = sum(v for k, v in calls.items() if k in ("s3.PutObject", "s3.CopyObject", "s3.ListObjectsV2"))
    get_class = sum(v for k, v in calls.items() if k in ("s3.GetObject", "s3.HeadObject"))
    s3 = put_class * _p(prices, "s3_put_per_request") + get_class * _p(prices, "s3_get_per_request")
    events = calls.get("events.PutEvents", 0) * _p(prices, "eventbridge_custom_event")
    duration = a["model_seconds_per_image"] + a["aws_orchestration_seconds"]
    billed_seconds = math.ceil(duration * 10) / 10
    express_sfn = _p(prices, "stepfunctions_express_per_request") + billed_seconds * (
        m["express_memory"]["billed_mb"] / 1024
    ) * _p(prices, "stepfunctions_express_per_gb_second")
    standard_sfn = m["state_transitions"] * _p(prices, "stepfunctions_standard_per_state_transition")
    api = _p(prices, "apigateway_rest_per_request")
    api_gb = memory_gb["http-api"]
    # POST /images: the API function waits for the synchronous execution.
    sync_api_lambda = lam_req + duration * api_gb * lam_gbs
    # POST /jobs, then the status polls: short calls of the same function.
    jobs_api_calls = 1 + a["jobs_status_polls"]
    jobs_api_lambda = jobs_api_calls * (lam_req + a["http_api_seconds"] * api_gb * lam_gbs)
    common = {
        "lambda_handlers": lambda_requests,
        "lambda_waiting_on_model": lambda_model_wait,
        "s3_requests": s3,
    }
    return {
        "express": {
            "step_functions": express_sfn,
            **common,
            "api_gateway": api,
            "api_lambda": sync_api_lambda,
            "eventbridge": events,
        },
        "standard": {
            "step_functions": standard_sfn,
            **common,
            "api_gateway": jobs_api_calls * api,
            "api_lambda": jobs_api_lambda,
            "eventbridge": events,
        },
    }


def per_thousand_images(m: dict[str, Any], prices: dict[str, Any], a: dict[str, Any]) -> dict[str, Any]:
    scale = 1000 / m["count"]
    costs = request_costs(m, prices, a)
    out: dict[str, Any] = {}
    for kind, parts in costs.items():
        dollars = {k: round(v * scale, 6) for k, v in parts.items()}
        dollars["orchestration_total"] = round(sum(parts.values()) * scale, 6)
        out[kind] = dollars
    image_gb = a["image_megabytes_in_aws"] / 1024
    out["s3_storage_per_month"] = round(1000 * image_gb * _p(prices, "s3_storage_per_gb_month"), 6)
    return out


def _svg(rows: list[dict[str, Any]], target_pct: float) -> str:
    """A horizontal bar chart: orchestration as % of model cost, per model, Express and Standard."""
    bar_h, gap, left, width = 14, 10, 190, 420
    top = 40
    top_value = max(max(r["express_pct"], r["standard_pct"]) for r in rows)
    scale_max = max(target_pct * 1.5, top_value * 1.1)
    height = top + len(rows) * (2 * bar_h + gap) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<text x="10" y="20" font-size="14">Orchestration cost as % of model cost ({rows[0]["count"]} images '
        "per request)</text>",
    ]
    for i, row in enumerate(rows):
        y = top + i * (2 * bar_h + gap)
        parts.append(f'<text x="10" y="{y + bar_h + 4}">{row["model"]}</text>')
        for j, (kind, color) in enumerate((("express", "#4e79a7"), ("standard", "#f28e2b"))):
            value = row[f"{kind}_pct"]
            w = max(1.0, width * value / scale_max)
            parts.append(
                f'<rect x="{left}" y="{y + j * bar_h}" width="{w:.1f}" height="{bar_h - 2}" fill="{color}"/>'
            )
            parts.append(f'<text x="{left + w + 4:.1f}" y="{y + j * bar_h + bar_h - 4}">{value:.2f}%</text>')
    x = left + width * target_pct / scale_max
    bottom = height - 30
    parts.append(
        f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{bottom}" stroke="#c00" stroke-dasharray="4 3"/>'
    )
    parts.append(f'<text x="{x + 4:.1f}" y="{top - 8}" fill="#c00">target {target_pct:g}%</text>')
    parts.append(f'<rect x="{left}" y="{bottom + 10}" width="12" height="10" fill="#4e79a7"/>')
    parts.append(f'<text x="{left + 16}" y="{bottom + 19}">Express</text>')
    parts.append(f'<rect x="{left + 80}" y="{bottom + 10}" width="12" height="10" fill="#f28e2b"/>')
    parts.append(f'<text x="{left + 96}" y="{bottom + 19}">Standard</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def run(ctx: RunContext) -> dict[str, Any]:
    started, load_start = time.perf_counter(), load_average()
    prices = load_prices()
    counts = (1, 4) if ctx.quick else (1, 4, 10, 40)
    measured = measure(ctx, counts)
    a = ASSUMPTIONS
    per_count = {str(m["count"]): per_thousand_images(m, prices, a) for m in measured}
    target_pct = 2.0
    by_model: dict[str, Any] = {}
    for model, entry in prices["models_per_image"].items():
        model_cost = entry["price"] * 1000
        rows = {}
        for count, costs in per_count.items():
            rows[count] = {
                "model_per_1000_images": round(model_cost, 4),
                "express_orchestration": costs["express"]["orchestration_total"],
                "standard_orchestration": costs["standard"]["orchestration_total"],
                "express_pct_of_model": round(100 * costs["express"]["orchestration_total"] / model_cost, 3),
                "standard_pct_of_model": round(
                    100 * costs["standard"]["orchestration_total"] / model_cost, 3
                ),
            }
        by_model[model] = {"price_status": entry["status"], "by_images_per_request": rows}
    default = str(a["images_per_request_default"])
    chart_rows = [
        {
            "model": model,
            "count": int(default),
            "express_pct": v["by_images_per_request"][default]["express_pct_of_model"],
            "standard_pct": v["by_images_per_request"][default]["standard_pct_of_model"],
        }
        for model, v in by_model.items()
        if default in v["by_images_per_request"]
    ]
    if chart_rows:
        ctx.results_dir.mkdir(parents=True, exist_ok=True)
        (ctx.results_dir / SVG_FILE).write_text(_svg(chart_rows, target_pct))
    gb = a["lambda_memory_mb"]["imagegen-generate-image"] / 1024
    sensitivity = round(1000 * gb * _p(prices, "lambda_arm64_per_gb_second"), 6)
    met = all(
        r["express_pct_of_model"] <= target_pct and r["standard_pct_of_model"] <= target_pct
        for v in by_model.values()
        for r in v["by_images_per_request"].values()
    )
    data = {
        "prices_file": PRICES_SOURCE,
        "prices_as_of": prices["as_of"],
        "assumptions": a,
        "measured_per_request": measured,
        "per_1000_images": per_count,
        "lambda_wait_per_model_second_per_1000_images": sensitivity,
        "by_model": by_model,
        "target": f"orchestration <= {target_pct}% of model cost",
        "target_met_everywhere": met,
        "chart": SVG_FILE,
    }
    write_result(ctx, "cost", data, started=started, load_start=load_start)
    return data
