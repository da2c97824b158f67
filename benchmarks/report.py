"""Markdown tables from ``benchmarks/results/*.json`` (``run_all.py`` writes them to ``summary.md``).

python benchmarks/report.py [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness import RESULTS_DIR


def _load(results_dir: Path, name: str) -> dict[str, Any] | None:
    path = results_dir / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _s(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _meta(data: dict[str, Any]) -> str:
    m = data["meta"]
    return (
        f"_{m['written_at']}, commit {m['machine']['git_commit']}, {m['machine']['cpu_count']} CPUs, "
        f"load average {m['loadavg_start'][0]} → {m['loadavg_end'][0]}, {m['repeats']} repeats, "
        f"L = {m['latency_seconds']} s_"
    )


def fanout(results_dir: Path) -> str:
    data = _load(results_dir, "fanout")
    peers = _load(results_dir, "peers")
    if data is None:
        return ""
    latency = data["latency_seconds"]
    rows = []
    ratios = {r["count"]: r for r in (peers or {}).get("ratios", [])}
    for p in data["points"]:
        w = p["wall"]
        r = ratios.get(p["count"], {})
        rows.append(
            [
                str(p["count"]),
                f"{w['median']:.2f} ({w['min']:.2f}-{w['max']:.2f})",
                _s(p["wall_over_wall1"]),
                _s(p["overhead_seconds"]),
                _s(p["cpu_seconds"]["median"]),
                _s(p["execution_seconds"]["median"]),
                _s(r.get("seed001_seconds")),
                _s(r.get("engine_over_seed001")),
                _s(r.get("seed000_seconds")),
                _s(r.get("engine_over_seed000")),
            ]
        )
    header = [
        "N",
        "engine wall s, median (min-max)",
        "wall(N)/wall(1)",
        "wall - L s",
        "CPU s",
        "execution s",
        "seed 001 s",
        "engine/seed 001",
        "seed 000 s",
        "engine/seed 000",
    ]
    split = data["overhead_split_wall1"]
    targets = "\n".join(
        f"- {t['target']}: **{t['value']}** — {'met' if t['met'] else 'missed'}" for t in data["targets"]
    )
    return (
        f"### Fan-out and peers (L = {latency} s)\n\n{_meta(data)}\n\n{_table(header, rows)}\n\n"
        f"Direct model call (warm client, no workflow): {data['direct_model_call']['median']:.3f} s. "
        f"wall(1) = L {split['latency_L']} + stand-in beyond L {split['stand_in_beyond_L']} + "
        f"workflow and harness {split['workflow_and_harness']} s.\n\n{targets}\n"
    )


def concurrency(results_dir: Path) -> str:
    data = _load(results_dir, "concurrency")
    if data is None:
        return ""
    rows = []
    for name, v in data["variants"].items():
        rows.append(
            [
                name,
                f"{v['completed']}/{v['requests']}",
                _s(v.get("p50_seconds")),
                _s(v.get("p99_seconds")),
                _s(v.get("p99_over_L"), 1),
                _s(v.get("makespan_seconds"), 1),
                str(v.get("bedrock_max_in_flight", "n/a")),
                json.dumps(v.get("statuses")) if v.get("statuses") else "n/a",
                "met" if v["target_met"] else "missed",
            ]
        )
    header = [
        "variant",
        "done",
        "p50 s",
        "p99 s",
        "p99 / L",
        "makespan s",
        "max model calls in flight",
        "statuses",
        "target",
    ]
    return (
        f"### {data['concurrent_requests']} concurrent {data['images_per_request']}-image requests "
        f"({data['target']})\n\n{_meta(data)}\n\n{_table(header, rows)}\n"
    )


def cost(results_dir: Path) -> str:
    data = _load(results_dir, "cost")
    if data is None:
        return ""
    counts = list(data["per_1000_images"])
    measured_rows = [
        [
            str(m["count"]),
            str(m["state_transitions"]),
            str(sum(m["lambda_invocations"].get(f, 0) for f in m["lambda_invocations"])),
            str(m["aws_calls"].get("s3.PutObject", 0)),
            str(m["aws_calls"].get("s3.HeadObject", 0)),
            str(m["aws_calls"].get("events.PutEvents", 0)),
            _s(m["handler_seconds_median"].get("imagegen-validate-request"), 4),
            _s(m["generate_image_own_seconds_median"], 4),
            _s(m["handler_seconds_median"].get("imagegen-build-manifest"), 4),
            f"{m['express_memory']['used_mb']:.2f} → {m['express_memory']['billed_mb']:.0f}",
        ]
        for m in data["measured_per_request"]
    ]
    measured = _table(
        [
            "N",
            "state transitions",
            "Lambda invocations",
            "S3 PUT",
            "S3 HEAD",
            "PutEvents",
            "ValidateRequest s",
            "GenerateImage own s",
            "BuildManifest s",
            "Express MB used → billed",
        ],
        measured_rows,
    )
    component_rows = []
    default = str(data["assumptions"]["images_per_request_default"])
    per = data["per_1000_images"][default]
    for part in per["express"]:
        component_rows.append(
            [part.replace("_", " "), f"{per['express'][part]:.4f}", f"{per['standard'][part]:.4f}"]
        )
    components = _table([f"$ per 1,000 images, N = {default}", "Express", "Standard"], component_rows)
    model_rows = []
    for model, entry in data["by_model"].items():
        row = [f"{model} ({entry['price_status']})"]
        for count in counts:
            r = entry["by_images_per_request"][count]
            if count == counts[0]:
                row.append(f"{r['model_per_1000_images']:.2f}")
            row.append(f"{r['express_pct_of_model']:.2f} / {r['standard_pct_of_model']:.2f}")
        model_rows.append(row)
    models = _table(
        ["model (price status)", "model $/1,000"] + [f"N={c}: Express / Standard %" for c in counts],
        model_rows,
    )
    return (
        f"### Cost per 1,000 images\n\n{_meta(data)}\n\nMeasured per request (offline execution):\n\n{measured}\n\n"
        f"{components}\n\nStorage, per month, of 1,000 images of {data['assumptions']['image_megabytes_in_aws']} MB: "
        f"${per['s3_storage_per_month']:.4f}. Each second of model latency adds "
        f"${data['lambda_wait_per_model_second_per_1000_images']:.4f} per 1,000 images (GenerateImage waits).\n\n"
        f"Orchestration as % of the model's price:\n\n{models}\n\n"
        f"Target {data['target']}: {'met everywhere' if data['target_met_everywhere'] else 'missed somewhere (see table)'}.\n"
    )


def profile(results_dir: Path) -> str:
    data = _load(results_dir, "profile")
    if data is None:
        return ""
    units = _table(
        ["operation", "ms"], [[k.replace("_", " "), f"{v:.4g}"] for k, v in data["unit_costs_ms"].items()]
    )
    count_rows = [
        [
            str(c["count"]),
            str(c["jsonpath_parses"]),
            f"{c['jsonpath_parses_interpreter']} + {c['jsonpath_parses_eventbridge_targets']}",
            str(c["boto3_clients_created"]),
            str(c["describe_execution_polls"]),
            _s(c["cpu_seconds"]),
            json.dumps(data["estimated_cpu_ms_per_request"][str(c["count"])]),
        ]
        for c in data["per_request_counts"]
    ]
    counts = _table(
        [
            "N",
            "JSONPath parses",
            "interpreter + EventBridge target",
            "clients created",
            "describe_execution calls",
            "CPU s",
            "estimated CPU ms",
        ],
        count_rows,
    )
    shipped = {s["category"]: s["share"] for s in data["sampled_busy_shares"]}
    engine_shares = {s["category"]: s["share"] for s in data.get("sampled_busy_shares_engine", [])}
    categories = sorted(
        set(shipped) | set(engine_shares), key=lambda c: -max(shipped.get(c, 0.0), engine_shares.get(c, 0.0))
    )
    shares = _table(
        ["category", "share of busy samples, moto as shipped", "engine (speed-ups)"],
        [
            [c, f"{100 * shipped.get(c, 0.0):.1f}%", f"{100 * engine_shares.get(c, 0.0):.1f}%"]
            for c in categories[:12]
        ],
    )
    variant_rows = []
    for where, variants in (
        ("out of process", data["variants_out_of_process_server"]),
        ("in process", data.get("in_process_server") or {}),
    ):
        for name, v in variants.items():
            walls = " / ".join(f"{n}: {w['median']:.2f}" for n, w in v["wall"].items())
            ratios = " / ".join(f"{n}: {r}" for n, r in v["wall_over_wall1"].items())
            cpu = " / ".join(f"{n}: {c:.2f}" for n, c in v.get("cpu_seconds_median", {}).items())
            variant_rows.append([where, name, walls, ratios, _s(v["overhead_seconds_wall1"]), cpu])
    variants_table = _table(
        ["stand-in", "variant", "wall s by N", "wall(N)/wall(1)", "wall(1) - L s", "CPU s by N"], variant_rows
    )
    return (
        f"### Where the time goes\n\n{_meta(data)}\n\nUnit costs and counts with moto as shipped (no speed-ups):\n\n"
        f"{units}\n\n{counts}\n\n{shares}\n\n{variants_table}\n"
    )


def cold_start(results_dir: Path) -> str:
    data = _load(results_dir, "cold_start")
    if data is None:
        return ""
    rows = []
    for module, h in data["handlers"].items():
        p = h["packages_ms_median"]
        rows.append(
            [
                module.rsplit(".", 1)[1],
                _s(h["import_seconds"]["median"], 3),
                _s(h["first_call_clients_seconds"]["median"], 3),
                " · ".join(
                    f"{k} {p[k]:.0f}"
                    for k in (
                        "boto3",
                        "botocore",
                        "pydantic",
                        "pydantic_core",
                        "aws_lambda_powertools",
                        "aws_xray_sdk",
                        "image_pipeline",
                    )
                    if k in p
                ),
            ]
        )
    table = _table(["handler", "import s", "first clients s", "self import ms by package"], rows)
    a = data["asset"]
    deps = _table(
        ["distribution", "version here", "in AWS from"],
        [
            [d["distribution"], str(d["version_here"]), d["in_aws_from"]]
            for d in data["third_party_loaded_at_runtime"]
        ],
    )
    return (
        f"### Cold path\n\n{_meta(data)}\n\nInterpreter start: {data['interpreter_start_seconds']['median']:.3f} s.\n\n"
        f"{table}\n\nLambda asset (`lambdas/` minus {', '.join(a['excludes'])}): {a['files']} files, "
        f"{a['bytes']:,} bytes, {a['zip_bytes']:,} bytes zipped.\n\n{deps}\n"
    )


def manifest_checks(results_dir: Path) -> str:
    data = _load(results_dir, "manifest_checks")
    if data is None:
        return ""
    rows = [
        [
            str(point["round_trip_ms"]),
            str(point["count"]),
            f"{_s(point['wall']['one_at_a_time']['median'], 3)} ({point['max_checks_in_flight']['one_at_a_time']})",
            f"{_s(point['wall']['parallel']['median'], 3)} ({point['max_checks_in_flight']['parallel']})",
            _s(point["one_at_a_time_over_parallel"]),
        ]
        for point in data["points"]
    ]
    table = _table(
        [
            "S3 round trip R ms",
            "N images",
            "one at a time s (most in flight)",
            f"parallel, {data['head_workers']} workers s (most in flight)",
            "one at a time / parallel",
        ],
        rows,
    )
    return (
        f"### BuildManifest's S3 checks\n\n{_meta(data)}\n\n{table}\n\n"
        f"Medians of `build_manifest` over N stored images on moto S3; {data['round_trip_note']}.\n"
    )


def render(results_dir: Path) -> str:
    parts = [
        fanout(results_dir),
        concurrency(results_dir),
        cost(results_dir),
        profile(results_dir),
        manifest_checks(results_dir),
        cold_start(results_dir),
    ]
    body = "\n".join(p for p in parts if p)
    return f"# Benchmark results\n\nGenerated by `python benchmarks/report.py` from `{results_dir.name}/*.json`.\n\n{body}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/report.py", description=__doc__.split("\n")[0])
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    print(render(args.results_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
