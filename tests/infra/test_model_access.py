"""The deployment's models against the model facts (``stacks/model_access.py``, ``stacks/config.py``):
synthesis stops on a retired or out-of-Region model, an environment-agnostic stack states its Region,
the image function may invoke a profile-only model through its inference profile, and complete a
Marketplace model's first-use subscription."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_events as events
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template
from image_pipeline.models.facts import offer_in
from image_pipeline.models.ids import BEDROCK_MODEL_IDS

from stacks.config import ImagegenConfig, cdk_json_context
from stacks.functions import FunctionDefaults
from stacks.imagegen_stack import ImagegenStack
from stacks.workflow import ImageWorkflow
from tests.infra.stack_template import as_list, role_of, statements_of_role
from tests.infra.synthesis import ENV, Synthesized

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 11, 30)
INPAINT = "stability.stable-image-inpaint-v1:0"  # Bedrock serves it only through us.stability.*


def build(overrides: dict[str, Any] | None = None, *, env: cdk.Environment | None = ENV) -> ImagegenStack:
    """The stack as app.py builds it (construction only: the model check runs before synthesis)."""
    context = cdk_json_context()
    context.update({f"imagegen:{k}": v for k, v in (overrides or {}).items()})
    app = cdk.App(context=context)
    return ImagegenStack(
        app, "ModelCheck", config=ImagegenConfig.from_context(app.node), env=env, today=TODAY
    )


IMAGE_SERVICE_IDS = (
    "stable-conservative-upscale",
    "stable-creative-upscale",
    "stable-fast-upscale",
    "stable-remove-background",
    "stable-search-replace",
    "stable-inpaint",
    "stable-outpaint",
    "stable-style-transfer",
)


def test_the_shipped_cdk_json_allows_only_active_models() -> None:
    context = cdk_json_context()
    # (the Stability AI Image Services, for operations on a stored image, are opt-in: issue 16)
    assert context["imagegen:allowedModels"] == ["stable-image-core", "stable-image-ultra", "sd3-5-large"]
    assert context["imagegen:defaultModel"] == "stable-image-core"
    assert context["imagegen:region"] == "us-west-2"
    assert set(ImagegenConfig().allowed_models) == set(context["imagegen:allowedModels"])


def test_a_retired_allowed_model_stops_synthesis_naming_the_model_the_fact_and_the_alternatives() -> None:
    with pytest.raises(ValueError) as info:
        build({"allowedModels": "stable-image-core,titan-image-v2"})
    message = str(info.value)
    assert "imagegen:allowedModels: titan-image-v2 (amazon.titan-image-generator-v2:0)" in message
    assert "reached its end of life on 2026-06-30" in message
    assert "use sd3-5-large, stable-image-core or stable-image-ultra instead" in message


def test_a_retired_default_model_stops_synthesis() -> None:
    with pytest.raises(ValueError, match=r"imagegen:defaultModel: nova-canvas .* end of life on 2026-09-30"):
        build({"allowedModels": "nova-canvas,stable-image-core", "defaultModel": "nova-canvas"})


def test_a_model_not_offered_in_the_stack_s_region_stops_synthesis() -> None:
    with pytest.raises(ValueError) as info:
        build(env=cdk.Environment(account=ENV.account, region="us-east-1"))
    message = str(info.value)
    assert "Invalid CDK context for a stack in us-east-1" in message
    assert (
        "imagegen:defaultModel: stable-image-core (stability.stable-image-core-v1:1) is not offered in us-east-1"
        in message
    )
    assert "Bedrock offers it in us-west-2" in message and "deploy in us-west-2" in message


def test_an_environment_agnostic_stack_is_checked_for_imagegen_region() -> None:
    with pytest.raises(ValueError, match="is not offered in eu-west-1"):
        build({"region": "eu-west-1"}, env=None)
    stack = build(env=None)  # the default imagegen:region, us-west-2
    assert [o.invoke_id for o in stack.model_offers] == [
        "stability.stable-image-core-v1:1",
        "stability.stable-image-ultra-v1:1",
        "stability.sd3-5-large-v1:0",
    ]


def test_an_environment_agnostic_template_refuses_another_region(variant: Synthesized) -> None:
    [assertion] = variant.template_json["Rules"]["DeployedInTheCheckedRegion"]["Assertions"]
    assert assertion["Assert"] == {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-west-2"]}
    assert "synthesized for us-west-2 (imagegen:region)" in assertion["AssertDescription"]


def test_a_stack_for_a_concrete_region_has_no_region_rule(synthesized: Synthesized) -> None:
    assert "DeployedInTheCheckedRegion" not in synthesized.template_json.get("Rules", {})


def test_the_app_fails_for_a_region_without_the_default_model() -> None:
    """``python app.py`` (what ``cdk synth`` runs) with CDK_DEFAULT_REGION where the default is not offered."""
    env = {**os.environ, "CDK_DEFAULT_REGION": "eu-central-1", "CDK_DEFAULT_ACCOUNT": "123456789012"}
    env.pop("CDK_OUTDIR", None)
    run = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode != 0
    assert "stable-image-core (stability.stable-image-core-v1:1) is not offered in eu-central-1" in run.stderr


# -- IAM ---------------------------------------------------------------------------------------------


def marketplace_statements(synth: Synthesized) -> list[dict[str, Any]]:
    return [
        statement
        for resource in synth.resources("AWS::IAM::Policy").values()
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
        if any(action.startswith("aws-marketplace:") for action in as_list(statement["Action"]))
    ]


def test_the_image_function_may_complete_a_marketplace_first_use_subscription(
    synthesized: Synthesized,
) -> None:
    [statement] = marketplace_statements(synthesized)
    assert statement == {
        "Sid": "MarketplaceSubscribeOnFirstUse",
        "Effect": "Allow",
        "Action": ["aws-marketplace:Subscribe", "aws-marketplace:ViewSubscriptions"],
        "Resource": "*",
        "Condition": {"StringEquals": {"aws:CalledViaLast": "bedrock.amazonaws.com"}},
    }
    [policy] = [
        r
        for r in synthesized.resources("AWS::IAM::Policy").values()
        if r["Properties"]["PolicyDocument"]["Statement"] == [statement]
    ]
    assert policy["Properties"]["Roles"] == [{"Ref": role_of(synthesized, "generate_image")}]


@pytest.mark.parametrize(("mode", "condition"), [("unconditional", None), ("off", "none")])
def test_the_marketplace_grant_follows_imagegen_marketplace_first_use(
    mode: str, condition: str | None
) -> None:
    stack = build({"marketplaceFirstUse": mode})
    template = Template.from_stack(stack)
    found = template.find_resources(
        "AWS::IAM::Policy",
        {
            "Properties": {
                "PolicyDocument": {
                    "Statement": [Match.object_like({"Sid": "MarketplaceSubscribeOnFirstUse"})]
                }
            }
        },
    )
    if condition == "none":
        assert not found and stack.workflow.marketplace_policy is None
        return
    [policy] = found.values()
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert "Condition" not in statement and statement["Resource"] == "*"


def test_no_marketplace_model_no_marketplace_grant() -> None:
    assert ImagegenConfig(allowedModels=("nova-canvas",), defaultModel="nova-canvas").marketplace_models == ()
    assert ImagegenConfig().marketplace_models == ("sd3-5-large", "stable-image-core", "stable-image-ultra")
    refining = ImagegenConfig(allowedModels=("stable-image-core", *IMAGE_SERVICE_IDS))
    assert refining.marketplace_models == (
        "stable-image-core",
        *sorted(IMAGE_SERVICE_IDS, key=list(BEDROCK_MODEL_IDS).index),
    )


def profile_workflow() -> Template:
    """The workflow construct alone, allowed one profile-only model as the facts file describes it."""
    app = cdk.App(context=cdk_json_context())  # the app's feature flags (partition literals)
    stack = cdk.Stack(app, "Profiles", env=ENV)
    offer = offer_in(INPAINT, ENV.region)
    assert offer is not None and offer.invoke_id == "us.stability.stable-image-inpaint-v1:0"
    ImageWorkflow(
        stack,
        "Workflow",
        images_bucket=s3.Bucket(stack, "Images"),
        event_bus=events.EventBus(stack, "Bus"),
        models=[offer, offer_in("stable-image-core", ENV.region)],  # type: ignore[list-item]
        defaults=FunctionDefaults.create(stack, environment={"IMAGES_BUCKET": "b"}),
    )
    return Template.from_stack(stack)


def test_a_profile_model_is_granted_its_profile_and_the_models_behind_it_only_through_it() -> None:
    statements = [
        s
        for policy in profile_workflow().find_resources("AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s["Action"] == "bedrock:InvokeModel"
    ]
    by_sid = {s["Sid"]: s for s in statements}
    account, region = ENV.account, ENV.region
    profile_arn = (
        f"arn:aws:bedrock:{region}:{account}:inference-profile/us.stability.stable-image-inpaint-v1:0"
    )
    assert by_sid["InvokeAllowedModels"]["Resource"] == (
        f"arn:aws:bedrock:{region}::foundation-model/stability.stable-image-core-v1:1"
    )
    assert by_sid["InvokeThroughInferenceProfiles"]["Resource"] == profile_arn
    behind = by_sid["InvokeModelBehindProfile1"]
    assert behind["Resource"] == [
        f"arn:aws:bedrock:{r}::foundation-model/{INPAINT}" for r in ("us-east-1", "us-east-2", "us-west-2")
    ]
    assert behind["Condition"] == {"StringLike": {"bedrock:InferenceProfileArn": profile_arn}}
    assert "Condition" not in by_sid["InvokeThroughInferenceProfiles"]


def test_the_granted_models_are_the_invoked_ones(synthesized: Synthesized) -> None:
    statements = statements_of_role(synthesized, role_of(synthesized, "generate_image"))
    invoke = [s for s in statements if s["Action"] == "bedrock:InvokeModel"]
    assert [s["Sid"] for s in invoke] == ["InvokeAllowedModels"]  # no profile needed in us-west-2


def test_a_deployment_that_lists_the_image_services_grants_their_profiles() -> None:
    """docs/deploy.md's refining deployment synthesizes: each service through its us. profile."""
    stack = build({"allowedModels": ",".join(("stable-image-core", *IMAGE_SERVICE_IDS))})
    text = str(Template.from_stack(stack).to_json())
    for service in IMAGE_SERVICE_IDS:
        profile = offer_in(service, ENV.region)
        assert profile is not None and profile.invoke_id.startswith("us.stability.")
        assert f"inference-profile/{profile.invoke_id}" in text
