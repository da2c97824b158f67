"""``imagegen doctor``: a read-only preflight of an AWS account and Region for this deployment.

Run it with your AWS credentials before ``cdk deploy`` and after. For the Region and each model the
deployment allows (``cdk.json``'s ``imagegen:allowedModels`` and ``imagegen:defaultModel``, or
``--model``), it checks that the model is offered in the Region and how it is invoked (model id or
inference profile id; the model facts file), its lifecycle (Bedrock's ``GetFoundationModel``, compared
with the facts file), whether the account may invoke it (``GetFoundationModelAvailability``) and its
on-demand quota (Service Quotas). It also checks the CDK bootstrap, the stack and its outputs, and who
the caller is.

Each check is a plain function that returns a :class:`CheckResult`. Printing is separate
(:func:`format_table`, :func:`report_json`). Only read operations are called: every client the doctor
uses refuses any operation outside :data:`READ_ONLY_OPERATIONS` (:func:`read_only`).

Exit status: 0 when the default model can be called (warnings allowed), 1 when it cannot (not offered,
end of life, not authorized, a quota of 0), and 2 when the doctor cannot run (no credentials, no
network, no Region, an unknown model).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    SSOError,
    TokenRetrievalError,
)
from image_pipeline.core.admission import default_quota
from image_pipeline.core.settings import DEFAULT_MODEL_FALLBACK
from image_pipeline.models.facts import ModelFacts, load_facts
from image_pipeline.models.ids import BEDROCK_MODEL_IDS

from imagegen.cli.options import EXIT_FAILED, EXIT_OK, EXIT_USAGE

Status = Literal["ok", "warn", "fail"]
_SEVERITY: dict[Status, int] = {"ok": 0, "warn": 1, "fail": 2}

#: The only operations the doctor calls, as (service, operation). Every client it uses refuses others.
READ_ONLY_OPERATIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("sts", "GetCallerIdentity"),
        ("cloudformation", "DescribeStacks"),
        ("ssm", "GetParameter"),
        ("bedrock", "GetFoundationModel"),
        ("bedrock", "GetFoundationModelAvailability"),
        ("service-quotas", "ListServiceQuotas"),
        ("service-quotas", "ListAWSDefaultServiceQuotas"),
    }
)

BOOTSTRAP_STACK = "CDKToolkit"
DEFAULT_QUALIFIER = "hnb659fds"
#: The synthesized template's CheckBootstrapVersion rule rejects versions 1-5.
MIN_BOOTSTRAP_VERSION = 6
DEFAULT_STACK_NAME = "Imagegen"
DOCS = "docs/deploy.md#before-and-after-deploying-imagegen-doctor"

#: Bounded so that an unreachable endpoint fails in seconds, not minutes.
CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=20, retries={"mode": "standard", "total_max_attempts": 2}
)

ClientFactory = Callable[[str], Any]


class DoctorCannotRun(Exception):
    """The doctor cannot check anything: no credentials, no network, no Region, a bad model name."""


class MutatingCallRefused(RuntimeError):
    """A doctor's client was asked for an operation that is not in READ_ONLY_OPERATIONS."""


@dataclass(frozen=True)
class CheckResult:
    """One line of the report: what was checked, what was found, and what to do when it is not ok."""

    status: Status
    check: str
    finding: str
    todo: str = ""
    model: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.model}: {self.check}" if self.model else self.check


# --- What the deployment allows ------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelChoice:
    name: str  # as the deployment names it: a registry id, or a Bedrock model id
    model_id: str


@dataclass(frozen=True)
class Deployment:
    models: tuple[ModelChoice, ...]  # the default first
    default: ModelChoice
    stack_name: str
    bootstrap_qualifier: str
    models_from: str = ""  # where the list came from: --model, a cdk.json, or the registry


def read_cdk_context(path: Path) -> dict[str, Any]:
    """``context`` of a cdk.json; empty when there is no such file (the registry's defaults apply)."""
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()).get("context") or {})
    except (OSError, ValueError, AttributeError) as exc:
        raise DoctorCannotRun(f"cannot read {path}: {exc}") from exc


def _names(value: Any) -> list[str]:
    """Model names as the context holds them: a list, or text (a JSON list, or ``a,b``) as ``-c`` gives."""
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            return [v.strip() for v in text.split(",") if v.strip()]
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise DoctorCannotRun(f"imagegen:allowedModels is not a JSON list: {exc}") from exc
    if not isinstance(value, list):
        raise DoctorCannotRun(f"imagegen:allowedModels must be a list of model ids, not {value!r}")
    return [str(v) for v in value]


def resolve_model(name: str, facts: Mapping[str, ModelFacts]) -> ModelChoice:
    """A registry id (``stable-image-core``) or a Bedrock model id the registry or facts file knows."""
    if name in BEDROCK_MODEL_IDS:
        return ModelChoice(name, BEDROCK_MODEL_IDS[name])
    by_model_id = {v: k for k, v in BEDROCK_MODEL_IDS.items()}
    if name in by_model_id:
        return ModelChoice(by_model_id[name], name)
    if name in facts:
        return ModelChoice(name, name)
    raise DoctorCannotRun(
        f"unknown model {name!r}: give a registry id ({', '.join(BEDROCK_MODEL_IDS)}) "
        "or a Bedrock model id of lambdas/image_pipeline/models/model_facts.json"
    )


def deployment_from_context(
    context: Mapping[str, Any], facts: Mapping[str, ModelFacts], models: Sequence[str] = ()
) -> Deployment:
    """The models to check: ``models`` (the first is the default) or the context's allowed models and
    default; the stack name and bootstrap qualifier from the context too."""
    if models:
        names = list(models)
        default_name = names[0]
    else:
        allowed = context.get("imagegen:allowedModels")
        names = _names(allowed) if allowed is not None else list(BEDROCK_MODEL_IDS)
        default_name = str(context.get("imagegen:defaultModel") or DEFAULT_MODEL_FALLBACK)
    default = resolve_model(default_name, facts)
    chosen = [default] + [resolve_model(n, facts) for n in names]
    unique = tuple(dict.fromkeys(chosen))
    return Deployment(
        models=unique,
        default=default,
        stack_name=str(context.get("imagegen:stackName") or DEFAULT_STACK_NAME),
        bootstrap_qualifier=str(context.get("@aws-cdk/core:bootstrapQualifier") or DEFAULT_QUALIFIER),
    )


# --- Clients that only read ----------------------------------------------------------------------------


def read_only(client: Any) -> Any:
    """``client``, refusing (before anything is sent) every operation not in READ_ONLY_OPERATIONS."""
    service = client.meta.service_model.service_id.hyphenize()

    def refuse_writes(model: Any, **_: Any) -> None:
        if (service, model.name) not in READ_ONLY_OPERATIONS:
            raise MutatingCallRefused(f"imagegen doctor only reads; it refused {service} {model.name}")

    # "before-call.*.*" and first: before any other handler there (a botocore Stubber answers from it)
    # and before the request is signed or sent.
    client.meta.events.register_first("before-call.*.*", refuse_writes, unique_id="imagegen-doctor-read-only")
    return client


def aws_clients(session: boto3.Session) -> ClientFactory:
    """One read-only client per service from ``session`` (its Region), with short timeouts."""
    made: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in made:
            made[service] = read_only(session.client(service, config=CLIENT_CONFIG))  # type: ignore[call-overload]
        return made[service]

    return client


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def _could_not(what: str, exc: Exception, permission: str) -> str:
    if isinstance(exc, ClientError) and _code(exc) in {"AccessDenied", "AccessDeniedException"}:
        return f"could not {what}: access denied (needs {permission})"
    if isinstance(exc, ClientError):
        return f"could not {what}: {_code(exc)}: {_message(exc)}"
    return f"could not {what}: {exc}"


# --- Account checks ------------------------------------------------------------------------------------

_REFUSED_CREDENTIALS = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidAccessKeyId",
}


def check_identity(sts: Any) -> CheckResult:
    """Who the caller is (``sts get-caller-identity``); raises DoctorCannotRun when AWS cannot be asked."""
    try:
        identity = sts.get_caller_identity()
    except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as exc:
        raise DoctorCannotRun(
            f"no usable AWS credentials ({exc}): run `aws configure` or `aws sso login`, or set AWS_PROFILE"
        ) from exc
    except (SSOError, TokenRetrievalError) as exc:
        raise DoctorCannotRun(f"the AWS SSO session cannot be used ({exc}): run `aws sso login`") from exc
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError) as exc:
        raise DoctorCannotRun(f"cannot reach AWS ({exc}): check the network, proxy or Region") from exc
    except ClientError as exc:
        if _code(exc) in _REFUSED_CREDENTIALS:
            raise DoctorCannotRun(
                f"AWS refused the credentials ({_code(exc)}: {_message(exc)}): refresh or replace them"
            ) from exc
        raise DoctorCannotRun(f"sts get-caller-identity failed: {_code(exc)}: {_message(exc)}") from exc
    except BotoCoreError as exc:
        raise DoctorCannotRun(f"cannot call AWS: {exc}") from exc
    return CheckResult(
        "ok",
        "identity",
        f"account {identity['Account']} as {identity['Arn']}",
        data={"account": identity["Account"], "arn": identity["Arn"], "user_id": identity["UserId"]},
    )


def _describe_stack(cfn: Any, name: str) -> dict[str, Any] | None:
    """The stack, or None when it does not exist (CloudFormation's ValidationError 'does not exist')."""
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if _code(exc) == "ValidationError" and "does not exist" in _message(exc):
            return None
        raise
    return stacks[0] if stacks else None


def _healthy(stack_status: str) -> bool:
    return (
        stack_status.endswith("_COMPLETE") and "ROLLBACK" not in stack_status and "DELETE" not in stack_status
    )


def check_bootstrap(cfn: Any, ssm: Any, *, account: str, region: str, qualifier: str) -> CheckResult:
    """The CDK bootstrap: the version parameter (SSM ``/cdk-bootstrap/<qualifier>/version``, which the
    stack's template reads) and the ``CDKToolkit`` stack."""
    check, parameter = "cdk bootstrap", f"/cdk-bootstrap/{qualifier}/version"
    todo_bootstrap = f"cdk bootstrap aws://{account}/{region} (once per account and Region), then cdk deploy"
    version: str | None
    try:
        version = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    except (ClientError, BotoCoreError):
        version = None
    try:
        stack = _describe_stack(cfn, BOOTSTRAP_STACK)
    except (ClientError, BotoCoreError) as exc:
        finding = _could_not(f"read the {BOOTSTRAP_STACK} stack", exc, "cloudformation:DescribeStacks")
        return CheckResult("warn", check, finding, data={"version": version})
    stack_status = stack["StackStatus"] if stack else None
    if stack and version is None:  # the parameter could not be read: the stack's output says the same
        version = {o["OutputKey"]: o.get("OutputValue") for o in stack.get("Outputs", [])}.get(
            "BootstrapVersion"
        )
    data = {"stack_status": stack_status, "version": version, "parameter": parameter}
    if stack_status and not _healthy(stack_status):
        todo = f"look at the {BOOTSTRAP_STACK} stack's events in the CloudFormation console, then {todo_bootstrap}"
        return CheckResult("warn", check, f"{BOOTSTRAP_STACK} is {stack_status}", todo, data=data)
    if version is None or not version.isdigit():
        where = (
            f"no {BOOTSTRAP_STACK} stack in {region}"
            if stack is None
            else f"{BOOTSTRAP_STACK} {stack_status}"
        )
        return CheckResult(
            "warn", check, f"{where}, no bootstrap version in {parameter}", todo_bootstrap, data=data
        )
    if int(version) < MIN_BOOTSTRAP_VERSION:
        finding = f"bootstrap version {version}; the stack needs {MIN_BOOTSTRAP_VERSION} or later"
        return CheckResult("warn", check, finding, f"{todo_bootstrap} with a current CDK CLI", data=data)
    where = (
        f"{BOOTSTRAP_STACK} {stack_status}"
        if stack
        else f"no stack named {BOOTSTRAP_STACK} (bootstrapped with another --toolkit-stack-name?)"
    )
    return CheckResult("ok", check, f"bootstrap version {version} ({parameter}); {where}", data=data)


def check_stack(cfn: Any, stack_name: str, region: str) -> CheckResult:
    """The deployed stack, if any: its status and outputs."""
    check = f"stack {stack_name}"
    try:
        stack = _describe_stack(cfn, stack_name)
    except (ClientError, BotoCoreError) as exc:
        return CheckResult("warn", check, _could_not("read the stack", exc, "cloudformation:DescribeStacks"))
    if stack is None:
        return CheckResult("ok", check, f"not deployed in {region} yet (cdk deploy creates it)")
    stack_status = stack["StackStatus"]
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    data = {"stack_status": stack_status, "outputs": outputs}
    finding = f"{stack_status}, {len(outputs)} outputs"
    if stack_status.endswith("_IN_PROGRESS"):
        return CheckResult(
            "warn", check, finding, "wait for the stack operation to end, then run again", data=data
        )
    if not _healthy(stack_status):
        todo = (
            "creation failed: delete the stack, fix the cause shown in its events, then cdk deploy"
            if stack_status == "ROLLBACK_COMPLETE"
            else "look at the stack's events in the CloudFormation console, then cdk deploy again"
        )
        return CheckResult("warn", check, finding, todo, data=data)
    return CheckResult("ok", check, finding, data=data)


# --- Model checks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelCheckContext:
    """What every model check reads besides its model: the Region, the time, the facts, the default."""

    region: str
    now: datetime
    facts: Mapping[str, ModelFacts]
    default: ModelChoice

    @property
    def today(self) -> date:
        return self.now.date()

    def known(self, choice: ModelChoice) -> ModelFacts | None:
        return self.facts.get(choice.model_id)

    def usable_models(self, *, besides: str) -> list[tuple[str, ModelFacts]]:
        """Registry models the facts file has as not past end of life and offered in-Region somewhere,
        the fallback default first, then registry order."""
        found: list[tuple[str, ModelFacts]] = []
        for registry_id, model_id in BEDROCK_MODEL_IDS.items():
            known = self.facts.get(model_id)
            if known is None or registry_id == besides or not known.regions.in_region:
                continue
            if known.status_on(self.today) != "EOL":
                found.append((registry_id, known))
        return sorted(found, key=lambda item: item[0] != DEFAULT_MODEL_FALLBACK)

    def local_alternative(self, *, besides: str) -> str | None:
        """A usable registry model offered in-Region in this Region."""
        usable = self.usable_models(besides=besides)
        return next((name for name, known in usable if self.region in known.regions.in_region), None)

    def replace_todo(self, choice: ModelChoice) -> str:
        """What to do when a model cannot be called here: remove it; for the default, name another."""
        todo = f"remove {choice.name} from imagegen:allowedModels"
        if choice != self.default:
            return todo
        local = self.local_alternative(besides=choice.name)
        if local:
            return f"set imagegen:defaultModel to {local} and {todo}"
        usable = self.usable_models(besides=choice.name)
        if usable:
            name, known = usable[0]
            return f"deploy to {known.regions.in_region[0]} with imagegen:defaultModel={name}, and {todo}"
        return f"set imagegen:defaultModel to another model and {todo}"

    def where_offered_todo(self, choice: ModelChoice) -> str:
        """Deploy where the model is offered, or (for the default) use one this Region offers; for a
        model past its end of life (facts file) or offered nowhere, replace it."""
        known = self.known(choice)
        regions = known.regions_offering() if known else ()
        if not known or not regions or known.status_on(self.today) == "EOL":
            return self.replace_todo(choice)
        where = regions[0] if len(regions) == 1 else "one of " + ", ".join(regions)
        todo = f"deploy to {where}, where {choice.name} is offered"
        local = self.local_alternative(besides=choice.name)
        if local and choice == self.default:
            todo += f", or set imagegen:defaultModel to {local}, which {self.region} offers"
        return todo


def check_offered(choice: ModelChoice, ctx: ModelCheckContext) -> CheckResult:
    """Whether the facts file lists the model in the Region, and whether it is called there by model id
    or by an inference profile id."""
    check, region, known = "Region", ctx.region, ctx.known(choice)
    if known is None:
        return CheckResult(
            "warn",
            check,
            f"{choice.model_id} is not in the model facts file: cannot tell whether {region} offers it",
            f"look for it in the Bedrock model catalog of {region}",
            model=choice.name,
        )
    source = f"facts file, read {known.regions.read_on}"
    if known.status_on(ctx.today) == "EOL":  # the Regions it had; the lifecycle check judges the end of life
        source += f"; end of life {known.lifecycle.eol_date}"
    offer = known.offer_in(region)
    if offer is not None and offer.profile is None:
        return CheckResult(
            "ok",
            check,
            f"offered in {region}; invoke with the model id {choice.model_id} ({source})",
            model=choice.name,
            data={"invoke_with": choice.model_id, "via": "model_id"},
        )
    if offer is not None and offer.profile is not None:
        profile = offer.profile
        finding = (
            f"offered in {region} only through the inference profile {profile.id} (runs in "
            f"{', '.join(profile.destination_regions)}); invoke with the profile id, not the model id ({source})"
        )
        data = {"invoke_with": profile.id, "via": "inference_profile"}
        if choice.name not in BEDROCK_MODEL_IDS:
            return CheckResult("ok", check, finding, model=choice.name, data=data)
        todo = f"imagegen calls {choice.model_id} by its model id: " + (
            ctx.where_offered_todo(choice) if known.regions.in_region else ctx.replace_todo(choice)
        )
        return CheckResult("warn", check, finding, todo, model=choice.name, data=data)
    regions = list(known.regions_offering())
    todo = ctx.where_offered_todo(choice)
    if not regions:
        todo = f"{choice.name} is offered in no Region: {todo}"
    return CheckResult(
        "fail",
        check,
        f"not offered in {region} ({source})",
        todo,
        model=choice.name,
        data={"offered_in": regions},
    )


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime | date) else None


def _date_text(value: Any) -> str:
    return value.date().isoformat() if isinstance(value, datetime) else str(value)


def check_lifecycle(bedrock: Any, choice: ModelChoice, ctx: ModelCheckContext) -> CheckResult:
    """Bedrock's own lifecycle of the model (``modelLifecycle``; end of life once ``endOfLifeTime`` has
    passed), compared with the facts file."""
    check, known = "lifecycle", ctx.known(choice)
    facts_state = known.status_on(ctx.today) if known else None
    facts_says = f"the facts file (read {known.lifecycle.read_on}) says {facts_state}" if known else ""
    try:
        details = bedrock.get_foundation_model(modelIdentifier=choice.model_id)["modelDetails"]
    except ClientError as exc:
        if _code(exc) in {"ResourceNotFoundException", "ValidationException"}:
            return CheckResult(
                "fail",
                check,
                f"Bedrock in {ctx.region} does not know {choice.model_id} ({_code(exc)}: {_message(exc)})",
                ctx.replace_todo(choice),
                model=choice.name,
                data={"error": _code(exc), "facts": facts_state},
            )
        return _lifecycle_from_facts(choice, ctx, facts_says, exc)
    except BotoCoreError as exc:
        return _lifecycle_from_facts(choice, ctx, facts_says, exc)
    lifecycle = details.get("modelLifecycle") or {}
    status = lifecycle.get("status")
    end, legacy, extended = (
        lifecycle.get(k) for k in ("endOfLifeTime", "legacyTime", "publicExtendedAccessTime")
    )
    state = "EOL" if isinstance(end, datetime) and end <= ctx.now else status
    data = {
        "bedrock": {
            "status": status,
            "legacyTime": _iso(legacy),
            "publicExtendedAccessTime": _iso(extended),
            "endOfLifeTime": _iso(end),
        },
        "state": state,
        "facts": facts_state,
    }
    note = f"; {facts_says}" if known and state and facts_state != state else ""
    if state == "EOL":
        finding = f"end of life since {_date_text(end)} (Bedrock: {status}, endOfLifeTime passed){note}"
        return CheckResult("fail", check, finding, ctx.replace_todo(choice), model=choice.name, data=data)
    if state == "LEGACY":
        dates = [f"legacy since {_date_text(legacy)}" if legacy else "legacy"]
        if extended:
            dates.append(f"public extended access from {_date_text(extended)}")
        if end:
            dates.append(f"end of life {_date_text(end)}")
        todo = f"plan the move before its end of life: {ctx.replace_todo(choice)}"
        return CheckResult(
            "warn", check, f"{', '.join(dates)} (Bedrock){note}", todo, model=choice.name, data=data
        )
    if state != "ACTIVE":
        finding = f"Bedrock gave no lifecycle for {choice.model_id}{'; ' + facts_says if known else ''}"
        return CheckResult("warn", check, finding, model=choice.name, data=data)
    if note:
        todo = "Bedrock's answer holds; update lambdas/image_pipeline/models/model_facts.json"
        return CheckResult("warn", check, f"active (Bedrock){note}", todo, model=choice.name, data=data)
    return CheckResult("ok", check, "active (Bedrock)", model=choice.name, data=data)


def _lifecycle_from_facts(
    choice: ModelChoice, ctx: ModelCheckContext, facts_says: str, exc: Exception
) -> CheckResult:
    """When Bedrock cannot be asked, the facts file decides: an end of life there is still a failure."""
    finding = _could_not("ask Bedrock", exc, "bedrock:GetFoundationModel")
    known = ctx.known(choice)
    if known and known.status_on(ctx.today) == "EOL":
        finding = f"{finding}; {facts_says} since {known.lifecycle.eol_date}"
        return CheckResult("fail", "lifecycle", finding, ctx.replace_todo(choice), model=choice.name)
    return CheckResult(
        "warn", "lifecycle", f"{finding}{'; ' + facts_says if facts_says else ''}", model=choice.name
    )


def marketplace_todo(choice: ModelChoice) -> str:
    """How an account subscribes to a Marketplace model: the first call does it with the caller's
    Marketplace permissions (the deployed image function has them unless ``imagegen:marketplaceFirstUse``
    is ``off``), or the agreement API does."""
    return (
        "the deployment's first call subscribes the account (its image function may "
        "aws-marketplace:Subscribe and aws-marketplace:ViewSubscriptions unless imagegen:marketplaceFirstUse=off); to "
        "subscribe beforehand, invoke the model once yourself with those two actions allowed, or run aws bedrock "
        f"list-foundation-model-agreement-offers --model-id {choice.model_id}, then "
        f"create-foundation-model-agreement; see {DOCS}"
    )


def check_access(bedrock: Any, choice: ModelChoice, ctx: ModelCheckContext) -> CheckResult:
    """Whether the account may invoke the model (``GetFoundationModelAvailability``)."""
    check, known = "access", ctx.known(choice)
    marketplace = bool(known and known.marketplace)
    try:
        answer = bedrock.get_foundation_model_availability(modelId=choice.model_id)
    except ClientError as exc:
        if _code(exc) in {"ResourceNotFoundException", "ValidationException"}:
            finding = f"Bedrock in {ctx.region} has no availability for {choice.model_id} ({_code(exc)}: {_message(exc)})"
            return CheckResult("fail", check, finding, ctx.replace_todo(choice), model=choice.name)
        finding = _could_not("check access", exc, "bedrock:GetFoundationModelAvailability")
        return CheckResult("warn", check, finding, model=choice.name)
    except BotoCoreError as exc:
        finding = _could_not("check access", exc, "bedrock:GetFoundationModelAvailability")
        return CheckResult("warn", check, finding, model=choice.name)
    agreement, entitlement = answer["agreementAvailability"], answer["entitlementAvailability"]
    data = {
        "agreement": agreement["status"],
        "agreement_error": agreement.get("errorMessage"),
        "authorization": answer["authorizationStatus"],
        "entitlement": entitlement,
        "region": answer["regionAvailability"],
        "marketplace": marketplace,
    }
    found: list[tuple[Status, str, str]] = []
    if answer["regionAvailability"] != "AVAILABLE":
        todo = ctx.where_offered_todo(choice)
        found.append(("fail", f"not available in {ctx.region} (regionAvailability NOT_AVAILABLE)", todo))
    if answer["authorizationStatus"] != "AUTHORIZED":
        todo = (
            marketplace_todo(choice)
            if marketplace
            else "look for an IAM policy or SCP that denies this model (AWS does not grant legacy models to "
            f"accounts that have not used them recently), or {ctx.replace_todo(choice)}"
        )
        market = " (an AWS Marketplace model)" if marketplace else ""
        found.append(("fail", f"the account is not authorized to invoke {choice.model_id}{market}", todo))
    if agreement["status"] == "ERROR":
        failed = f"the Marketplace subscription failed: {agreement.get('errorMessage', '')}"
        found.append(("fail", failed, marketplace_todo(choice)))
    elif agreement["status"] == "PENDING":
        pending = "the Marketplace subscription is being set up (calls may be denied for up to 15 minutes)"
        found.append(("warn", pending, "run imagegen doctor again in a few minutes"))
    elif agreement["status"] != "AVAILABLE" or entitlement != "AVAILABLE":
        states = f"agreement {agreement['status']}, entitlement {entitlement}"
        if marketplace:
            not_yet = (
                f"AWS Marketplace model, not subscribed yet ({states}): the first call subscribes the account"
            )
            found.append(("warn", not_yet, marketplace_todo(choice)))
        else:
            found.append(("warn", states, ""))
    if not found:
        finding = "authorized; agreement, entitlement and Region AVAILABLE"
        return CheckResult("ok", check, finding, model=choice.name, data=data)
    worst = max((status for status, _, _ in found), key=_SEVERITY.__getitem__)
    todo = next((t for status, _, t in found if status == worst and t), "")
    return CheckResult(worst, check, "; ".join(f for _, f, _ in found), todo, model=choice.name, data=data)


def _normalized(name: str) -> str:
    return " ".join(name.split()).casefold()


@dataclass(frozen=True)
class QuotaLookup:
    quota: dict[str, Any] | None = None
    source: str | None = None  # "applied" (this account's value) or "default" (AWS's default)
    error: str | None = None


class BedrockQuotas:
    """Bedrock's quotas in one Region, each list read once: the account's applied values, then AWS's
    defaults, for a quota with no applied value (ListServiceQuotas leaves such quotas out)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lists: dict[str, list[dict[str, Any]] | Exception] = {}

    def _list(self, operation: str) -> list[dict[str, Any]] | Exception:
        if operation not in self._lists:
            try:
                pages = self._client.get_paginator(operation).paginate(ServiceCode="bedrock")
                self._lists[operation] = [quota for page in pages for quota in page.get("Quotas", [])]
            except (ClientError, BotoCoreError) as exc:
                self._lists[operation] = exc
        return self._lists[operation]

    def find(self, name: str) -> QuotaLookup:
        wanted, errors = _normalized(name), []
        for operation, source in (
            ("list_service_quotas", "applied"),
            ("list_aws_default_service_quotas", "default"),
        ):
            quotas = self._list(operation)
            if isinstance(quotas, Exception):
                errors.append(
                    _could_not("list the Bedrock quotas", quotas, "servicequotas:ListServiceQuotas")
                )
                continue
            match = next((q for q in quotas if _normalized(q.get("QuotaName", "")) == wanted), None)
            if match is not None:
                return QuotaLookup(match, source)
        return QuotaLookup(error=errors[0] if len(errors) == 2 else None)


def check_quota(quotas: BedrockQuotas, choice: ModelChoice, ctx: ModelCheckContext) -> CheckResult:
    """The account's on-demand requests-per-minute quota for the model, found by its documented name."""
    check, known = "quota", ctx.known(choice)
    if known is None or not known.quota.name:
        return CheckResult(
            "warn",
            check,
            f"no documented quota name for {choice.model_id}",
            f"look for it in the Service Quotas console (Amazon Bedrock, {ctx.region})",
            model=choice.name,
        )
    lookup = quotas.find(known.quota.name)
    default = known.quota.default_requests_per_minute
    if lookup.error:
        return CheckResult("warn", check, lookup.error, model=choice.name)
    if lookup.quota is None:
        return CheckResult(
            "warn",
            check,
            f"no quota named '{known.quota.name}' for Bedrock in {ctx.region}",
            f"the model may not be offered in {ctx.region}, or AWS renamed the quota: search 'On-demand model "
            "inference requests per minute' in the Service Quotas console (Amazon Bedrock)",
            model=choice.name,
            data={"name": known.quota.name},
        )
    value, code = lookup.quota.get("Value"), lookup.quota.get("QuotaCode")
    data = {
        "name": lookup.quota.get("QuotaName"),
        "code": code,
        "value": value,
        "source": lookup.source,
        "documented_default": default,
    }
    what = (
        "this account's value"
        if lookup.source == "applied"
        else "AWS default, no value applied to the account"
    )
    finding = (
        f"{value:g} requests per minute ({what}; {code})" if isinstance(value, float | int) else str(value)
    )
    increase = (
        "request an increase in the Service Quotas console or, when it is not adjustable, from AWS Support"
    )
    if value == 0:
        finding += ": the account cannot call it"
        return CheckResult("fail", check, finding, increase, model=choice.name, data=data)
    if isinstance(value, float | int) and value >= 1:
        # admission control's calls in flight from this quota, as core/admission derives a default
        data["calls_in_flight"] = default_quota(int(value))
        finding += f"; admission control: {data['calls_in_flight']} calls in flight"
    if isinstance(value, float | int) and default and value < default:
        finding += f", below the documented default {default}"
        todo = f"expect THROTTLED images under load; {increase}"
        return CheckResult("warn", check, finding, todo, model=choice.name, data=data)
    return CheckResult("ok", check, finding, model=choice.name, data=data)


# --- The run and its report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    region: str
    region_source: str
    deployment: Deployment
    results: tuple[CheckResult, ...]

    @property
    def account(self) -> str:
        return str(self.results[0].data.get("account", "")) if self.results else ""

    def model_concurrency(self) -> dict[str, int]:
        """Admission control's calls in flight per model from the quotas read (``imagegen:modelConcurrency``)."""
        return {
            r.model: int(r.data["calls_in_flight"])
            for r in self.results
            if r.model and r.check == "quota" and "calls_in_flight" in r.data
        }

    def failed_models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.results if r.model and r.status == "fail"))

    @property
    def default_callable(self) -> bool:
        return self.deployment.default.name not in self.failed_models()

    @property
    def exit_status(self) -> int:
        return EXIT_OK if self.default_callable else EXIT_FAILED


def run_doctor(
    deployment: Deployment,
    region: str,
    clients: ClientFactory,
    *,
    facts: Mapping[str, ModelFacts],
    now: datetime,
    region_source: str = "",
) -> Report:
    """Every check, in report order. ``clients(service)`` gives a client in ``region``; each is made
    read-only here, whoever built it."""

    def client(service: str) -> Any:
        return read_only(clients(service))

    identity = check_identity(client("sts"))
    account = identity.data["account"]
    cfn = client("cloudformation")
    results = [
        identity,
        check_bootstrap(
            cfn, client("ssm"), account=account, region=region, qualifier=deployment.bootstrap_qualifier
        ),
        check_stack(cfn, deployment.stack_name, region),
    ]
    bedrock = client("bedrock")
    quotas = BedrockQuotas(client("service-quotas"))
    ctx = ModelCheckContext(region=region, now=now, facts=facts, default=deployment.default)
    for choice in deployment.models:
        results += [
            check_offered(choice, ctx),
            check_lifecycle(bedrock, choice, ctx),
            check_access(bedrock, choice, ctx),
            check_quota(quotas, choice, ctx),
        ]
    return Report(region, region_source, deployment, tuple(results))


def summary_lines(report: Report) -> list[str]:
    default = report.deployment.default.name
    lines = [
        f"The default model {default} can be called in {report.region}."
        if report.default_callable
        else f"The default model {default} cannot be called in {report.region}: see its fail lines."
    ]
    concurrency = report.model_concurrency()
    if concurrency:
        lines.append(
            "Admission control from these quotas (1 call in flight per 10 requests a minute): deploy with "
            f"-c imagegen:modelConcurrency='{json.dumps(concurrency, sort_keys=True)}'."
        )
    others = [m for m in report.failed_models() if m != default]
    if others:
        lines.append(
            f"Allowed but not callable here: {', '.join(others)}; remove "
            f"{'it' if len(others) == 1 else 'them'} from imagegen:allowedModels."
        )
    return lines


def format_table(report: Report) -> str:
    """The report for a terminal: a header, one line per check, the stack's outputs, a summary."""
    header = (
        f"imagegen doctor: account {report.account}, Region {report.region}"
        f"{f' ({report.region_source})' if report.region_source else ''}, stack {report.deployment.stack_name}"
        f"{f', models from {report.deployment.models_from}' if report.deployment.models_from else ''}"
    )
    width = max(len("check"), *(len(r.label) for r in report.results))
    lines = [header, "", f"{'status':<6}  {'check':<{width}}  finding -> what to do"]
    for result in report.results:
        todo = f" -> {result.todo}" if result.todo and result.status != "ok" else ""
        lines.append(f"{result.status:<6}  {result.label:<{width}}  {result.finding}{todo}")
    for result in report.results:
        outputs = result.data.get("outputs")
        if outputs:
            lines += ["", f"Outputs of {report.deployment.stack_name}:"]
            lines += [f"  {key} = {value}" for key, value in sorted(outputs.items())]
    return "\n".join([*lines, "", *summary_lines(report)])


def report_json(report: Report) -> dict[str, Any]:
    """The report for machines (``--json``)."""
    return {
        "account": report.account,
        "region": report.region,
        "region_source": report.region_source,
        "stack_name": report.deployment.stack_name,
        "default_model": report.deployment.default.name,
        "models_from": report.deployment.models_from,
        "models": [asdict(m) for m in report.deployment.models],
        "checks": [
            {
                "status": r.status,
                "check": r.check,
                "model": r.model,
                "finding": r.finding,
                "todo": r.todo,
                "data": r.data,
            }
            for r in report.results
        ],
        "default_model_callable": report.default_callable,
        "exit_status": report.exit_status,
    }


# --- The command ---------------------------------------------------------------------------------------


def add_commands(subparsers: Any) -> None:
    doctor = subparsers.add_parser(
        "doctor",
        help="check an AWS account and Region for this deployment (read-only)",
        description="Read-only preflight, before cdk deploy and after: for the Region and each model the "
        "deployment allows, whether it is offered there and how it is invoked, its lifecycle, whether the "
        "account may invoke it and its quota; then the CDK bootstrap, the stack and its outputs. Exit "
        "status 0 when the default model can be called (warnings allowed), 1 when it cannot, 2 when the "
        "doctor cannot run (no credentials, no network, no Region).",
    )
    doctor.add_argument("--region", help="AWS Region (default: your AWS config's, e.g. $AWS_REGION)")
    doctor.add_argument("--profile", help="AWS profile (default: $AWS_PROFILE or the default profile)")
    doctor.add_argument(
        "--model",
        "-m",
        action="append",
        default=[],
        help="a model to check instead of cdk.json's allowed models (repeat; the first is the default); "
        "a registry id or a Bedrock model id",
    )
    doctor.add_argument("--cdk-json", default="cdk.json", help="the app's cdk.json (default: %(default)s)")
    doctor.add_argument(
        "--stack-name", help="the stack (default: imagegen:stackName in cdk.json, or Imagegen)"
    )
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.set_defaults(func=cmd_doctor)


def _facts() -> Mapping[str, ModelFacts]:
    try:
        return load_facts().models
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise DoctorCannotRun(f"cannot read the model facts file: {exc}") from exc


def _session(args: argparse.Namespace) -> tuple[boto3.Session, str, str]:
    try:
        session = boto3.Session(profile_name=args.profile, region_name=args.region)
    except ProfileNotFound as exc:
        raise DoctorCannotRun(f"{exc}: check --profile / AWS_PROFILE and ~/.aws/config") from exc
    region = session.region_name
    if not region:
        raise DoctorCannotRun("no AWS Region: pass --region or set AWS_REGION (or region in ~/.aws/config)")
    source = "from --region" if args.region else "from your AWS config"
    return session, region, source


def cmd_doctor(
    args: argparse.Namespace, *, clients: ClientFactory | None = None, now: datetime | None = None
) -> int:
    try:
        facts = _facts()
        context = read_cdk_context(Path(args.cdk_json))
        deployment = deployment_from_context(context, facts, args.model)
        models_from = "--model" if args.model else args.cdk_json if context else "the registry (no cdk.json)"
        deployment = replace(deployment, models_from=models_from)
        if args.stack_name:
            deployment = replace(deployment, stack_name=args.stack_name)
        session, region, source = _session(args)
        report = run_doctor(
            deployment,
            region,
            clients or aws_clients(session),
            facts=facts,
            now=now or datetime.now(UTC),
            region_source=source,
        )
    except (DoctorCannotRun, NoRegionError) as exc:
        print(f"imagegen doctor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(report_json(report), indent=2, default=str))
    else:
        print(format_table(report))
    return report.exit_status
