"""cdk-nag (AwsSolutions) finds nothing that is not acknowledged, and it does find what it should."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

from stacks.nag import flatten_cfn_reference, iam5, wildcard_findings
from tests.infra.synthesis import ENV, Synthesized, nag_findings

ACKNOWLEDGED = cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY


@pytest.mark.parametrize("which", ["synthesized", "variant"])
def test_no_unacknowledged_aws_solutions_finding(which: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    assert synth.error is None, str(synth.error)[:4000]
    assert synth.violations() == [], json.dumps(synth.violations(), indent=2)[:4000]
    # The plugin did run: its (empty) report is part of the assembly.
    assert (synth.outdir / "validation-report.json").exists()


def test_the_checker_reports_a_bare_bucket(tmp_path: Path) -> None:
    """A scratch stack with a bucket that has neither access logs nor an SSL-only policy fails
    synthesis with AwsSolutions-S1 and -S10: the plugin is wired the way the app wires it."""
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Scratch", env=ENV)
    s3.Bucket(stack, "Bare")
    cdk.Validations.of(stack).add_plugins(AwsSolutionsChecks())
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
    found = nag_findings(tmp_path)
    assert "Scratch/Bare/Resource" in found["AwsSolutions-S1"]
    assert "Scratch/Bare/Resource" in found["AwsSolutions-S10"]


def test_an_acknowledgment_names_one_finding_on_one_construct(tmp_path: Path) -> None:
    """Acknowledging S1 on the bucket leaves S10 reported: nothing is silenced wholesale."""
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Scratch", env=ENV)
    bucket = s3.Bucket(stack, "Bare")
    cdk.Validations.of(bucket).acknowledge(cdk.Acknowledgment(id="AwsSolutions-S1", reason="test"))
    cdk.Validations.of(stack).add_plugins(AwsSolutionsChecks())
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
    found = nag_findings(tmp_path)
    assert "AwsSolutions-S1" not in found
    assert "AwsSolutions-S10" in found


def strip_namespace(rule: str) -> str:
    """CDK stores acknowledged ids as ``Annotation::<id>`` (cdk-nag strips that prefix too)."""
    return re.sub(r"^annotation::", "", rule, flags=re.IGNORECASE)


def acknowledgments(synth: Synthesized) -> list[tuple[str, str, str]]:
    """(construct path, finding id, reason) of every acknowledgment in the stack."""
    out = []
    for construct in synth.stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == ACKNOWLEDGED:
                out += [
                    (construct.node.path, strip_namespace(rule), reason)
                    for rule, reason in entry.data.items()
                ]
    return out


@pytest.mark.parametrize("which", ["synthesized", "variant"])
def test_every_acknowledgment_is_specific_and_has_a_reason(
    which: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    acks = acknowledgments(synth)
    assert acks
    for path, rule, reason in acks:
        assert path != synth.stack.node.path, f"{rule} acknowledged for the whole stack"
        assert rule.startswith("AwsSolutions-"), rule
        assert len(reason) >= 40, f"{path} {rule}: the reason says too little: {reason!r}"
    # Wildcard resources are acknowledged one by one, never as a wildcard rule.
    assert not [a for a in acks if a[1] == "AwsSolutions-IAM5"]


def test_generate_image_wildcards_are_exactly_the_image_keys(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    role = stack.workflow.generate_image.role
    rules = {rule for path, rule, _ in acknowledgments(synthesized) if path == role.node.path}
    bucket = stack.storage.images_bucket
    assert rules == {
        "AwsSolutions-IAM5[Resource::*]",
        f"AwsSolutions-{iam5(bucket, bucket.arn_for_objects('*.png'))}",
        # the prompt cache's lookup: Query on the image index's GSIs (stacks/index.py)
        f"AwsSolutions-{iam5(stack.index, stack.index.indexes_arn)}",
        # each image's webhook delivery record, claimed as the image is stored (stacks/webhooks.py)
        f"AwsSolutions-{iam5(bucket, stack.webhooks.records_arn)}",
    }


def test_flatten_cfn_reference_writes_references_as_cdk_nag_does() -> None:
    value = {"Fn::Join": ["", [{"Fn::GetAtt": ["Bucket1", "Arn"]}, "/*.png"]]}
    assert flatten_cfn_reference(value) == "<Bucket1.Arn>/*.png"
    assert flatten_cfn_reference({"Ref": "AWS::Partition"}) == "<AWS::Partition>"
    assert flatten_cfn_reference("arn:${AWS::Partition}:s3:::b/*") == "arn:<AWS::Partition>:s3:::b/*"
    assert flatten_cfn_reference({"Fn::Select": [1, ["a", "b"]]}) == '{"Fn::Select":[1,["a","b"]]}'


def test_wildcard_findings_lists_actions_and_resources_of_allow_statements() -> None:
    stack = cdk.Stack(cdk.App(), "Scratch", env=ENV)
    policy = iam.Policy(stack, "P")
    policy.add_statements(
        iam.PolicyStatement(actions=["s3:Get*", "s3:PutObject"], resources=["arn:aws:s3:::b/*"]),
        iam.PolicyStatement(effect=iam.Effect.DENY, actions=["s3:*"], resources=["*"]),
    )
    assert wildcard_findings(policy) == ["IAM5[Action::s3:Get*]", "IAM5[Resource::arn:aws:s3:::b/*]"]
