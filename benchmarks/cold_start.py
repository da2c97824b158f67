"""Part 6: the cold path of the Lambda functions.

* Import time of each handler module in a fresh interpreter (``python -X importtime``), with the
  heaviest packages, and the init a first invocation adds (creating the module-level AWS clients);
* the Lambda asset as CDK zips it: ``lambdas/`` minus ``ASSET_EXCLUDES`` of ``stacks/functions.py``
  (read from that file, so the benchmark follows the stack);
* the third-party packages the asset imports, and where each comes from in AWS (the Powertools
  layer, or the Lambda runtime's own boto3).

This machine is not a Lambda: a 256 MB arm64 function gets a fraction of a vCPU, so read the import
times as relative (which package costs what), not as the INIT duration in AWS.
"""

from __future__ import annotations

import ast
import fnmatch
import io
import json
import os
import re
import statistics
import subprocess
import sys
import time
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import ROOT, RunContext, load_average, summarize, write_result

LAMBDA_DIR = ROOT / "lambdas"
HANDLERS_DIR = LAMBDA_DIR / "image_pipeline" / "handlers"
FUNCTIONS_FILE = ROOT / "stacks" / "functions.py"
KEY_PACKAGES = (
    "boto3",
    "botocore",
    "pydantic",
    "pydantic_core",
    "aws_lambda_powertools",
    "aws_xray_sdk",
    "image_pipeline",
)
#: Where each distribution comes from in AWS. The Powertools v3 layer is built with the package's
#: extras and leaves out what the runtime has (https://docs.aws.amazon.com/powertools/python/latest/
#: "Lambda Layer": "We compile and optimize all dependencies, and remove duplicate dependencies
#: already available in the Lambda runtime"); boto3/botocore are the runtime's.
SOURCES = {
    "aws-lambda-powertools": "Powertools layer",
    "pydantic": "Powertools layer (parser extra)",
    "pydantic-core": "Powertools layer (pydantic's dependency)",
    "annotated-types": "Powertools layer (pydantic's dependency)",
    "typing-extensions": "Powertools layer (pydantic's dependency)",
    "typing-inspection": "Powertools layer (pydantic's dependency)",
    "aws-xray-sdk": "Powertools layer (tracer extra)",
    "wrapt": "Powertools layer (aws-xray-sdk's dependency)",
    "jmespath": "Lambda runtime (botocore's dependency); Powertools also depends on it",
    "boto3": "Lambda runtime (not bundled, not in the layer)",
    "botocore": "Lambda runtime (not bundled, not in the layer)",
    "s3transfer": "Lambda runtime (boto3's dependency)",
    "urllib3": "Lambda runtime (botocore's dependency)",
    "python-dateutil": "Lambda runtime (botocore's dependency)",
    "six": "Lambda runtime (python-dateutil's dependency)",
    "certifi": "Lambda runtime (botocore's dependency)",
}
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)\s*$")


def lambda_environment() -> dict[str, str]:
    """The variables the handlers read at import or first call, with dummy values."""
    env = dict(os.environ)
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-west-2",  # where the default model is offered
            "AWS_REGION": "us-west-2",
            "IMAGES_BUCKET": "bench-bucket",
            "POWERTOOLS_SERVICE_NAME": "imagegen",
            "POWERTOOLS_METRICS_NAMESPACE": "imagegen",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "JOBS_STATE_MACHINE_ARN": "arn:aws:states:us-west-2:123456789012:stateMachine:imagegen-jobs",
        }
    )
    return env


#: The handler the quick mode measures (the one every image goes through).
QUICK_HANDLER = "image_pipeline.handlers.generate_image"


def handler_modules() -> list[str]:
    return sorted(
        f"image_pipeline.handlers.{p.stem}" for p in HANDLERS_DIR.glob("*.py") if p.stem != "__init__"
    )


def parse_importtime(stderr: str, module: str) -> dict[str, Any]:
    """Total import time of ``module`` and the self time of every top-level package's modules (ms),
    from ``-X importtime`` output."""
    total = None
    self_us: dict[str, int] = {}
    for line in stderr.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        own_us, cumulative_us, name = int(match.group(1)), int(match.group(2)), match.group(4)
        top = name.split(".")[0]
        self_us[top] = self_us.get(top, 0) + own_us
        if name == module and not match.group(3):
            total = round(cumulative_us / 1000, 1)
    heaviest = sorted(self_us.items(), key=lambda kv: kv[1], reverse=True)[:8]
    packages = {name: round(self_us.get(name, 0) / 1000, 1) for name in KEY_PACKAGES}
    packages.update({name: round(us / 1000, 1) for name, us in heaviest})
    return {"total_ms": total, "packages_ms": packages}


def _import_once(module: str, env: dict[str, str]) -> dict[str, Any]:
    script = (
        "import json, time\n"
        "t0 = time.perf_counter()\n"
        f"import {module}\n"
        "t1 = time.perf_counter()\n"
        "from image_pipeline.core import clients\n"
        "clients.s3(); clients.bedrock_runtime()\n"
        "t2 = time.perf_counter()\n"
        "import sys\n"
        "top = sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names))\n"
        "print(json.dumps({'import_s': t1 - t0, 'clients_s': t2 - t1, 'loaded': top}))\n"
    )
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    process_seconds = time.perf_counter() - started
    timings = json.loads(out.stdout.strip().splitlines()[-1])
    return {"process_seconds": process_seconds, **timings, **parse_importtime(out.stderr, module)}


def _interpreter_start(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], cwd=ROOT, env=env, check=True, timeout=60)
    return time.perf_counter() - started


def asset_excludes() -> list[str]:
    """``ASSET_EXCLUDES`` of ``stacks/functions.py``, read without importing CDK."""
    tree = ast.parse(FUNCTIONS_FILE.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "ASSET_EXCLUDES" for t in targets):
            return [str(x) for x in ast.literal_eval(value)]
    raise LookupError(f"ASSET_EXCLUDES not found in {FUNCTIONS_FILE}")


def _excluded(relative: str, patterns: list[str]) -> bool:
    parts = relative.split("/")
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        if fnmatch.fnmatch(relative, pattern) or any(fnmatch.fnmatch(part, bare) for part in parts):
            return True
    return False


def asset_size(patterns: list[str]) -> dict[str, Any]:
    """Files, bytes and deflated zip size of ``lambdas/`` as CDK packages it (and without excludes)."""

    def zipped(files: list[Path]) -> int:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in files:
                archive.write(path, path.relative_to(LAMBDA_DIR).as_posix())
        return len(buffer.getvalue())

    every = sorted(p for p in LAMBDA_DIR.rglob("*") if p.is_file())
    kept = [p for p in every if not _excluded(p.relative_to(LAMBDA_DIR).as_posix(), patterns)]
    return {
        "directory": "lambdas/",
        "excludes": patterns,
        "files": len(kept),
        "bytes": sum(p.stat().st_size for p in kept),
        "zip_bytes": zipped(kept),
        "python_files": sum(1 for p in kept if p.suffix == ".py"),
        "in_working_tree_without_excludes": {
            "files": len(every),
            "bytes": sum(p.stat().st_size for p in every),
        },
    }


def imported_by_source() -> set[str]:
    """Top-level modules the asset's source imports (``import x`` / ``from x import y``)."""
    modules: set[str] = set()
    for path in LAMBDA_DIR.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules


def third_party(modules: set[str]) -> list[dict[str, Any]]:
    """The distributions behind ``modules`` that are neither stdlib nor the asset, and their source."""
    own = {"image_pipeline", "__future__", "_distutils_hack"}
    third = sorted(
        m for m in modules if m not in own and m not in sys.stdlib_module_names and not m.startswith("_")
    )
    dists = metadata.packages_distributions()
    out = []
    for module in third:
        for dist in dists.get(module, [module]):
            try:
                version: str | None = metadata.version(dist)
                requires = [
                    r.split(";")[0].split(" ")[0]
                    for r in metadata.requires(dist) or []
                    if "extra ==" not in r
                ]
            except metadata.PackageNotFoundError:
                version, requires = None, []
            key = dist.lower().replace("_", "-")
            out.append(
                {
                    "module": module,
                    "distribution": dist,
                    "version_here": version,
                    "requires": requires,
                    "in_aws_from": SOURCES.get(key, "unknown: bundle it or check the layer"),
                }
            )
    return out


def run(ctx: RunContext) -> dict[str, Any]:
    started, load_start = time.perf_counter(), load_average()
    env = lambda_environment()
    repeats = 1 if ctx.quick else 2
    baseline = [_interpreter_start(env) for _ in range(repeats)]
    handlers: dict[str, Any] = {}
    loaded: set[str] = set()
    for module in [QUICK_HANDLER] if ctx.quick else handler_modules():
        runs = [_import_once(module, env) for _ in range(repeats)]
        totals = [r["total_ms"] for r in runs if r["total_ms"] is not None]
        packages: dict[str, list[float]] = {}
        for r in runs:
            for name, ms in r["packages_ms"].items():
                packages.setdefault(name, []).append(ms)
        loaded.update(name for r in runs for name in r["loaded"])
        handlers[module] = {
            "importtime_total_ms": summarize(totals) if totals else None,
            "import_seconds": summarize([r["import_s"] for r in runs]),
            "first_call_clients_seconds": summarize([r["clients_s"] for r in runs]),
            "fresh_process_seconds": summarize([r["process_seconds"] for r in runs]),
            "packages_ms_median": {k: round(statistics.median(v), 1) for k, v in sorted(packages.items())},
        }
        ctx.log(f"  {module}: import {handlers[module]['import_seconds']['median']:.3f} s")
    data = {
        "repeats": repeats,
        "interpreter_start_seconds": summarize(baseline),
        "handlers": handlers,
        "asset": asset_size(asset_excludes()),
        "third_party_imported_by_source": third_party(imported_by_source()),
        "third_party_loaded_at_runtime": third_party(loaded),
        "note": "import times on this machine, not a Lambda; 256-512 MB arm64 functions have less CPU",
    }
    write_result(ctx, "cold_start", data, started=started, load_start=load_start)
    return data
