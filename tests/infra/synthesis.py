"""Synthesizing the CDK app offline (no credentials, no Docker, a fixed account/Region) and reading what
synthesis wrote: the template and cdk-nag's report. The session fixtures are in ``conftest.py``.

Two deployments are synthesized, each with the cdk-nag validation plugin as ``app.py`` attaches it:

* ``synthesized``: the defaults of ``cdk.json`` (API key auth, web page, the three active models);
* ``variant``: IAM auth, no web page, two CORS origins, two models, versioned bucket, destroy on removal,
  batch concurrency 2 and 25 % tolerated failures, an alarm e-mail, and environment-agnostic (no account or Region), as ``app.py`` synthesizes without credentials.

A failed validation does not stop the fixture: the templates are written before plugins run, so the
template tests still run and ``test_nag`` reports the findings. Constructs tested alone are synthesized
in a scratch stack in the same account and Region (:data:`ENV`), and read with :func:`nag_findings`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Template

from stacks.config import ImagegenConfig, cdk_json_context
from stacks.imagegen_stack import ImagegenStack

#: us-west-2: where the default models are offered (the stack refuses a Region that does not offer them).
ENV = cdk.Environment(account="123456789012", region="us-west-2")
STACK_NAME = "ImagegenTest"
#: What cdk-nag's validation plugin writes into the assembly.
NAG_REPORT = "validation-report.json"
VARIANT = {
    "apiAuth": "iam",
    "web": False,
    "corsOrigins": "https://a.example.com,https://b.example.com",
    "allowedModels": "sd3-5-large,stable-image-ultra",
    "defaultModel": "stable-image-ultra",
    "bucketVersioning": "true",
    "destroyOnRemoval": "true",
    "imageExpirationDays": "7",
    "throttle": '{"rateLimit": 2, "burstLimit": 4, "quotaPerDay": 50}',
    "batchMaxConcurrency": "2",
    "batchToleratedFailurePercentage": "25",
    "alarmEmail": "ops@example.com",
    "dailySpendLimitUsd": "2.5",
}


@dataclass(frozen=True)
class Synthesized:
    """One synthesized deployment."""

    stack: ImagegenStack
    config: ImagegenConfig
    outdir: Path
    template_json: dict[str, Any]
    #: cdk-nag's report (``validation-report.json``): {"pluginReports": [...]}.
    report: dict[str, Any]
    error: Exception | None

    @property
    def template(self) -> Template:
        return Template.from_json(self.template_json)

    @property
    def template_path(self) -> Path:
        return self.outdir / f"{STACK_NAME}.template.json"

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template_json["Resources"].items() if v["Type"] == resource_type}

    @property
    def arn_prefix(self) -> str:
        """``arn:<partition>:`` and the Region as cdk-nag's flattening writes them (literal or token)."""
        if self.stack.environment == f"aws://{ENV.account}/{ENV.region}":
            return "arn:aws"
        return "arn:<AWS::Partition>"

    @property
    def region(self) -> str:
        return ENV.region if self.arn_prefix == "arn:aws" else "<AWS::Region>"

    @property
    def account(self) -> str:
        return ENV.account if self.arn_prefix == "arn:aws" else "<AWS::AccountId>"

    def violations(self) -> list[dict[str, Any]]:
        return [v for plugin in self.report.get("pluginReports", []) for v in plugin.get("violations", [])]


def synthesize(
    outdir: Path, overrides: dict[str, Any] | None = None, *, env: cdk.Environment | None = ENV
) -> Synthesized:
    """Synthesize the app as ``app.py`` builds it, with ``imagegen:*`` context overrides."""
    context = cdk_json_context()
    context.update({f"imagegen:{k}": v for k, v in (overrides or {}).items()})
    app = cdk.App(outdir=str(outdir), context=context)
    config = ImagegenConfig.from_context(app.node)
    stack = ImagegenStack(app, STACK_NAME, config=config, env=env)
    error: Exception | None = None
    try:
        app.synth()
    except Exception as exc:  # jsii raises a plain RuntimeError for ValidationFailed
        error = exc
    template_json = json.loads((outdir / f"{STACK_NAME}.template.json").read_text())
    return Synthesized(stack, config, outdir, template_json, nag_report(outdir), error)


def nag_report(outdir: Path) -> dict[str, Any]:
    """cdk-nag's report of a synthesis into ``outdir`` (``{"pluginReports": [...]}``); {} if none."""
    report_file = outdir / NAG_REPORT
    return json.loads(report_file.read_text()) if report_file.exists() else {}


def nag_findings(outdir: Path, *, severity: str | None = None) -> dict[str, set[str]]:
    """Rule (without the finding's ``[...]`` suffix) -> construct paths, over every plugin's violations
    in the report of ``outdir``: of every severity, or of ``severity`` only (``"error"``)."""
    found: dict[str, set[str]] = {}
    for plugin in nag_report(outdir).get("pluginReports", []):
        for violation in plugin.get("violations", []):
            if severity is None or violation["severity"] == severity:
                rule = violation["ruleName"].split("[", 1)[0]
                found.setdefault(rule, set()).update(
                    c["constructPath"] for c in violation["violatingConstructs"]
                )
    return found
