"""What the image function's role needs to call the deployment's models, from the model facts.

* A model Bedrock serves in the stack's Region is invoked by its model id: ``bedrock:InvokeModel`` on
  ``arn:<partition>:bedrock:<region>::foundation-model/<model id>``.
* A model reached through a cross-Region inference profile is invoked by the profile id. Bedrock then
  requires the profile ARN (``...:<region>:<account>:inference-profile/<profile id>``) *and* the
  foundation model in every destination Region of the profile, the latter only through that profile
  (condition ``bedrock:InferenceProfileArn``). AWS: "When you specify an inference profile in the
  Resource field ..., you must also specify the foundation model in each Region associated with it"
  (https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-prereq.html; the condition key
  as the Service Authorization Reference names it:
  https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonbedrock.html).
* A third-party model (Stability AI's) is an AWS Marketplace product: its first call in an account makes
  Bedrock subscribe the account, with the caller's ``aws-marketplace:Subscribe`` and
  ``aws-marketplace:ViewSubscriptions`` (https://docs.aws.amazon.com/bedrock/latest/userguide/model-access.html).
  :func:`grant_marketplace_first_use` grants those two on ``*`` (Marketplace allows no narrower resource)
  in a policy of its own, only when an allowed model is a Marketplace model; docs/decisions.md says why
  the role has them and what ``imagegen:marketplaceFirstUse`` changes.

The offers come from :mod:`image_pipeline.models.facts` (plain data: no adapter, no Powertools).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Literal

from aws_cdk import Annotations, ArnFormat, Aws, CfnRule, CfnRuleAssertion, Fn, Stack, Token
from aws_cdk import aws_iam as iam
from constructs import Construct, IConstruct
from image_pipeline.models.facts import Offer, today_utc

if TYPE_CHECKING:
    from stacks.config import ImagegenConfig

MarketplaceFirstUse = Literal["viaBedrock", "unconditional", "off"]
#: The two Marketplace actions Bedrock needs from the caller to subscribe on a model's first call
#: (``aws-marketplace:Unsubscribe`` is not needed to invoke).
MARKETPLACE_ACTIONS = ("aws-marketplace:Subscribe", "aws-marketplace:ViewSubscriptions")
#: Only requests Bedrock makes for the role (its code never calls Marketplace itself).
CALLED_VIA_BEDROCK = {"StringEquals": {"aws:CalledViaLast": "bedrock.amazonaws.com"}}


def deployment_region(stack: Stack, config: ImagegenConfig) -> str:
    """The Region the stack is for: its env's (``CDK_DEFAULT_REGION`` in ``app.py``) when concrete, else
    ``imagegen:region``. An environment-agnostic stack states it in its template: a rule refuses to
    deploy it to another Region (whose models the synthesis did not check)."""
    if not Token.is_unresolved(stack.region):
        return stack.region
    region = config.region
    CfnRule(
        stack,
        "DeployedInTheCheckedRegion",
        assertions=[
            CfnRuleAssertion(
                assert_=Fn.condition_equals(Aws.REGION, region),
                assert_description=(
                    f"This template was synthesized for {region} (imagegen:region): its models were checked "
                    f"for that Region. Deploy it there, or synthesize again with CDK_DEFAULT_REGION or "
                    f"-c imagegen:region=<your Region>."
                ),
            )
        ],
    )
    return region


def checked_model_offers(
    stack: Stack, config: ImagegenConfig, *, today: date | None = None
) -> tuple[Offer, ...]:
    """How the stack's function invokes each allowed model, after checking the models against the facts
    for the stack's Region on ``today`` (default: today in UTC): ValueError naming the model, the fact
    and the alternatives when one is past its end of life or not offered there; a legacy model is a
    synthesis warning."""
    region = deployment_region(stack, config)
    for warning in config.check_models(region=region, day=today or today_utc()):
        Annotations.of(stack).add_warning_v2("imagegen:legacyModel", warning)
    return config.model_offers(region)


def foundation_model_arn(scope: IConstruct, model_id: str, region: str | None = None) -> str:
    """``arn:<partition>:bedrock:<region>::foundation-model/<model id>`` (default: the stack's Region)."""
    return Stack.of(scope).format_arn(
        service="bedrock",
        region=region,
        account="",
        resource="foundation-model",
        resource_name=model_id,
        arn_format=ArnFormat.SLASH_RESOURCE_NAME,
    )


def inference_profile_arn(scope: IConstruct, profile_id: str) -> str:
    """``arn:<partition>:bedrock:<region>:<account>:inference-profile/<profile id>`` of the stack."""
    return Stack.of(scope).format_arn(
        service="bedrock",
        resource="inference-profile",
        resource_name=profile_id,
        arn_format=ArnFormat.SLASH_RESOURCE_NAME,
    )


def model_invocation_statements(scope: IConstruct, offers: Sequence[Offer]) -> list[iam.PolicyStatement]:
    """``bedrock:InvokeModel`` on exactly what calling ``offers`` from the stack's Region needs."""
    if not offers:
        raise ValueError("no model to invoke: the workflow could not call any model")
    statements = []
    in_region = [o for o in offers if o.profile is None]
    if in_region:
        statements.append(
            iam.PolicyStatement(
                sid="InvokeAllowedModels",
                actions=["bedrock:InvokeModel"],
                resources=[foundation_model_arn(scope, o.model_id) for o in in_region],
            )
        )
    profiled = [o for o in offers if o.profile is not None]
    if profiled:
        statements.append(
            iam.PolicyStatement(
                sid="InvokeThroughInferenceProfiles",
                actions=["bedrock:InvokeModel"],
                resources=[inference_profile_arn(scope, o.invoke_id) for o in profiled],
            )
        )
    for number, offer in enumerate(profiled, start=1):
        assert offer.profile is not None
        statements.append(
            iam.PolicyStatement(
                sid=f"InvokeModelBehindProfile{number}",
                actions=["bedrock:InvokeModel"],
                resources=[
                    foundation_model_arn(scope, offer.model_id, region)
                    for region in offer.profile.destination_regions
                ],
                conditions={
                    "StringLike": {
                        "bedrock:InferenceProfileArn": inference_profile_arn(scope, offer.invoke_id)
                    }
                },
            )
        )
    return statements


def grant_model_invocation(role: iam.IRole, offers: Sequence[Offer]) -> None:
    """Let ``role`` invoke ``offers`` (model ids in Region, or profiles and the models behind them)."""
    for statement in model_invocation_statements(role, offers):
        role.add_to_principal_policy(statement)


def grant_marketplace_first_use(
    scope: Construct, construct_id: str, role: iam.IRole, mode: MarketplaceFirstUse
) -> iam.Policy | None:
    """A policy of its own on ``role`` with the Marketplace actions of a model's first call (``*``: the
    only resource Marketplace takes), conditioned on Bedrock making the call (``viaBedrock``) or not
    (``unconditional``); None for ``off``."""
    if mode == "off":
        return None
    policy = iam.Policy(
        scope,
        construct_id,
        statements=[
            iam.PolicyStatement(
                sid="MarketplaceSubscribeOnFirstUse",
                actions=list(MARKETPLACE_ACTIONS),
                resources=["*"],
                conditions=CALLED_VIA_BEDROCK if mode == "viaBedrock" else None,
            )
        ],
    )
    policy.attach_to_role(role)
    return policy
