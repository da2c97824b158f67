"""docs/deploy.md against the synthesized templates, so the page cannot drift from the stack: its table of
outputs is every output of the default and the variant deployment (and says which are conditional), its
fixed monthly cost counts the template's resources billed by the month (priced from prices.json), its
clean-up names every kind of resource the template retains, and the docs' example API URLs use the
stages the stacks deploy."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from image_pipeline.models.prices import price_table

from stacks.api import STAGE_NAME
from stacks.openai_api import STAGE_NAME as OPENAI_STAGE_NAME
from tests.infra.synthesis import Synthesized

DOCS = Path(__file__).resolve().parents[2] / "docs"
DEPLOY = (DOCS / "deploy.md").read_text()

#: Resource types billed by the month whatever the traffic, and their entry in prices.json.
MONTHLY = {
    "AWS::CloudWatch::Dashboard": "cloudwatch_dashboard_per_month",
    "AWS::CloudWatch::Alarm": "cloudwatch_alarm_standard_per_month",
    "AWS::KMS::Key": "kms_customer_managed_key_per_month",
    "AWS::SecretsManager::Secret": "secretsmanager_secret_per_month",
}
#: Other types with a monthly or hourly charge: the template must have none (or the table grows).
UNPRICED_FIXED = {
    "AWS::CloudWatch::CompositeAlarm",
    "AWS::WAFv2::WebACL",
    "AWS::EC2::NatGateway",
    "AWS::EC2::VPCEndpoint",
    "AWS::Route53::HostedZone",
    "AWS::ElasticLoadBalancingV2::LoadBalancer",
    "AWS::RDS::DBInstance",
    "AWS::EC2::Instance",
    "AWS::DynamoDB::Table",  # provisioned capacity would be fixed; the index is a GlobalTable on demand
}
#: How the clean-up section names each kind of retained resource.
RETAINED_WORDS = {
    "AWS::S3::Bucket": "buckets",
    "AWS::DynamoDB::GlobalTable": "image index table",
    "AWS::Logs::LogGroup": "log groups",
    "AWS::KMS::Key": "KMS key",
    "AWS::IAM::Role": "CloudWatch Logs role",
    "AWS::ApiGateway::Account": "AWS::ApiGateway::Account",
}


def section(text: str, marker: str) -> str:
    return text.split(f"<!-- {marker}:", 1)[1].split(f"<!-- end of {marker} -->", 1)[0]


def table_rows(text: str) -> list[list[str]]:
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ]
    return rows[2:]  # the heading and its rule


def test_the_outputs_table_is_every_output_of_the_templates(
    synthesized: Synthesized, variant: Synthesized, cognito: Synthesized
) -> None:
    """Every output of the three deployments (API keys, IAM, Cognito sign-in) is in the table; those of
    all three say "always", the others say when."""
    outputs = [set(s.template_json["Outputs"]) for s in (synthesized, variant, cognito)]
    documented = {row[0].strip("`"): row[1] for row in table_rows(section(DEPLOY, "stack outputs"))}
    assert set(documented) == set.union(*outputs)
    for name, when in documented.items():
        always = all(name in names for names in outputs)
        assert (when == "always") == always, (name, when)


def test_the_fixed_monthly_cost_is_the_templates_resources_at_the_table_prices(
    synthesized: Synthesized,
) -> None:
    types = Counter(r["Type"] for r in synthesized.template_json["Resources"].values())
    assert not UNPRICED_FIXED & set(types), UNPRICED_FIXED & set(types)
    prices = price_table()
    rows = table_rows(section(DEPLOY, "fixed monthly cost"))
    *lines, total = rows
    assert len(lines) == len(MONTHLY)
    expected_total = 0.0
    for (kind, entry), row in zip(MONTHLY.items(), lines, strict=True):
        count, each = types[kind], prices.service(entry)
        assert (int(row[1]), float(row[2]), float(row[3])) == (count, each, round(count * each, 2)), (
            kind,
            row,
        )
        expected_total += count * each
    assert float(total[3].strip("*")) == round(expected_total, 2)


def test_the_clean_up_names_every_kind_of_resource_the_template_retains(synthesized: Synthesized) -> None:
    clean_up = DEPLOY.split("## Clean up", 1)[1]
    retained = {
        r["Type"]
        for r in synthesized.template_json["Resources"].values()
        if r.get("DeletionPolicy") == "Retain"
    }
    assert retained <= set(RETAINED_WORDS), retained - set(RETAINED_WORDS)
    for kind in retained:
        assert RETAINED_WORDS[kind] in clean_up, kind
    assert "aws kms schedule-key-deletion" in clean_up and "cdk destroy" in clean_up


def test_example_api_urls_in_the_docs_use_the_deployed_stages() -> None:
    stages = {STAGE_NAME, OPENAI_STAGE_NAME}
    found = []
    for page in [*DOCS.glob("*.md"), DOCS.parent / "README.md"]:
        for stage in re.findall(r"execute-api\.[^/\s]+\.amazonaws\.com/([^/\s;`\"')]+)", page.read_text()):
            found.append((page.name, stage))
    assert found and all(stage in stages for _, stage in found), found
