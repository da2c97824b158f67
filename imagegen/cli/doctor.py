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
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from importlib import resources
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
from image_pipeline.core.settings import DEFAULT_MODEL_FALLBACK
from image_pipeline.models.ids import BEDROCK_MODEL_IDS

from imagegen.cli.options import EXIT_FAILED, EXIT_INVALID, EXIT_OK

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


# --- The model facts file ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InferenceProfileFacts:
    profile_id: str
    source_regions: tuple[str, ...]
    destination_regions: tuple[str, ...]


@dataclass(frozen=True)
class ModelFacts:
    """What ``lambdas/image_pipeline/models/model_facts.json`` says of one Bedrock model."""

    model_id: str
    marketplace: bool
    status: str  # ACTIVE | LEGACY | EOL on read_on
    legacy_date: date | None
    eol_date: date | None
    in_region: tuple[str, ...]
    profiles: tuple[InferenceProfileFacts, ...]
    successor: str | None
    quota_name: str | None
    quota_default: float | None
    read_on: str

    def status_on(self, day: date) -> str:
        """The lifecycle on ``day``: the recorded status, moved on by the recorded dates."""
        order = ["ACTIVE", "LEGACY", "EOL"]
        state = self.status if self.status in order else "ACTIVE"
        if self.legacy_date and self.legacy_date <= day:
            state = max(state, "LEGACY", key=order.index)
        if self.eol_date and self.eol_date <= day:
            state = "EOL"
        return state

    def profile_for(self, region: str) -> InferenceProfileFacts | None:
        return next((p for p in self.profiles if region in p.source_regions), None)

    def regions(self) -> list[str]:
        """Every Region the model can be called from: in-Region, or as a profile's source Region."""
        found = set(self.in_region)
        for profile in self.profiles:
            found.update(profile.source_regions)
        return sorted(found)


def _day(text: Any) -> date | None:
    return date.fromisoformat(text) if isinstance(text, str) and text else None


def parse_model_facts(document: Mapping[str, Any]) -> dict[str, ModelFacts]:
    """The facts file's ``models`` by Bedrock model id (keys it lacks read as empty)."""
    read_on = str(document.get("read_on", "?"))
    facts: dict[str, ModelFacts] = {}
    for model_id, entry in document.get("models", {}).items():
        lifecycle = entry.get("lifecycle") or {}
        quota = entry.get("quota") or {}
        default = quota.get("default_requests_per_minute")
        facts[model_id] = ModelFacts(
            model_id=model_id,
            marketplace=bool(entry.get("marketplace")),
            status=str(lifecycle.get("status") or "ACTIVE"),
            legacy_date=_day(lifecycle.get("legacy_date")),
            eol_date=_day(lifecycle.get("eol_date")),
            in_region=tuple((entry.get("regions") or {}).get("in_region") or ()),
            profiles=tuple(
                InferenceProfileFacts(
                    profile_id=p["id"],
                    source_regions=tuple(p.get("source_regions") or ()),
                    destination_regions=tuple(p.get("destination_regions") or ()),
                )
                for p in entry.get("inference_profiles") or ()
            ),
            successor=entry.get("successor"),
            quota_name=quota.get("name"),
            quota_default=float(default) if isinstance(default, int | float) else None,
            read_on=str(lifecycle.get("read_on") or read_on),
        )
    return facts


def load_model_facts() -> dict[str, ModelFacts]:
    """The facts file shipped beside the model registry (read only)."""
    text = resources.files("image_pipeline.models").joinpath("model_facts.json").read_text()
    return parse_model_facts(json.loads(text))


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


def read_cdk_context(path: Path) -> dict[str, Any]:
    """``context`` of a cdk.json; empty when there is no such file (the registry's defaults apply)."""
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()).get("context") or {})
    except (OSError, ValueError, AttributeError) as exc:
        raise DoctorCannotRun(f"cannot read {path}: {exc}") from exc


def _names(value: Any) -> list[str]:
    """A list of model names as cdk.json or ``-c`` gives it: a JSON list, JSON text or ``a,b``."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)
        else:
            return [v.strip() for v in text.split(",") if v.strip()]
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

    client.meta.events.register_first("before-call", refuse_writes, unique_id="imagegen-doctor-read-only")
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
    """The CDK bootstrap stack and its version (SSM ``/cdk-bootstrap/<qualifier>/version``)."""
    todo_bootstrap = f"cdk bootstrap aws://{account}/{region} (once per account and Region), then cdk deploy"
    try:
        stack = _describe_stack(cfn, BOOTSTRAP_STACK)
    except (ClientError, BotoCoreError) as exc:
        finding = _could_not(f"read the {BOOTSTRAP_STACK} stack", exc, "cloudformation:DescribeStacks")
        return CheckResult("warn", "cdk bootstrap", finding)
    if stack is None:
        return CheckResult("warn", "cdk bootstrap", f"no {BOOTSTRAP_STACK} stack in {region}", todo_bootstrap)
    stack_status = stack["StackStatus"]
    if not _healthy(stack_status):
        return CheckResult(
            "warn",
            "cdk bootstrap",
            f"{BOOTSTRAP_STACK} is {stack_status}",
            f"look at the {BOOTSTRAP_STACK} stack's events in the CloudFormation console, then {todo_bootstrap}",
            data={"stack_status": stack_status},
        )
    parameter = f"/cdk-bootstrap/{qualifier}/version"
    version_text: str | None
    try:
        version_text = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    except (ClientError, BotoCoreError):
        outputs = {o["OutputKey"]: o.get("OutputValue") for o in stack.get("Outputs", [])}
        version_text = outputs.get("BootstrapVersion")
    data = {"stack_status": stack_status, "version": version_text, "parameter": parameter}
    if version_text is None or not version_text.isdigit():
        return CheckResult(
            "warn",
            "cdk bootstrap",
            f"{BOOTSTRAP_STACK} {stack_status}, but no bootstrap version in {parameter} (qualifier {qualifier})",
            todo_bootstrap,
            data=data,
        )
    if int(version_text) < MIN_BOOTSTRAP_VERSION:
        return CheckResult(
            "warn",
            "cdk bootstrap",
            f"bootstrap version {version_text}; the stack needs {MIN_BOOTSTRAP_VERSION} or later",
            f"{todo_bootstrap} with a current CDK CLI",
            data=data,
        )
    return CheckResult(
        "ok",
        "cdk bootstrap",
        f"{BOOTSTRAP_STACK} {stack_status}, bootstrap version {version_text}",
        data=data,
    )


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


def suggest_model(
    facts: Mapping[str, ModelFacts], region: str, today: date, *, besides: str
) -> tuple[str, str] | None:
    """A registry model that is active and offered in-Region in ``region`` (else anywhere), with a Region."""
    candidates = []
    for registry_id, model_id in BEDROCK_MODEL_IDS.items():
        known = facts.get(model_id)
        if registry_id == besides or known is None or known.status_on(today) == "EOL" or not known.in_region:
            continue
        candidates.append((region not in known.in_region, registry_id, known.in_region[0]))
    if not candidates:
        return None
    local, registry_id, elsewhere = min(candidates, key=lambda c: c[0])
    return registry_id, region if not local else elsewhere


def _replace_todo(
    choice: ModelChoice,
    *,
    is_default: bool,
    facts: Mapping[str, ModelFacts],
    region: str,
    today: date,
) -> str:
    """What to do when a model cannot be called here: remove it, and for the default name another one."""
    todo = f"remove {choice.name} from imagegen:allowedModels"
    if not is_default:
        return todo
    suggestion = suggest_model(facts, region, today, besides=choice.name)
    if suggestion is None:
        return f"set imagegen:defaultModel to another model and {todo}"
    other, where = suggestion
    place = "" if where == region else f" and deploy to {where}"
    return f"set imagegen:defaultModel to {other}{place}, and {todo}"


def check_offered(
    choice: ModelChoice,
    known: ModelFacts | None,
    region: str,
    *,
    is_default: bool,
    facts: Mapping[str, ModelFacts],
    today: date,
) -> CheckResult:
    """Whether the facts file lists the model in ``region``, and whether it is called by model id or by
    an inference profile id there."""
    check = "Region"
    if known is None:
        return CheckResult(
            "warn",
            check,
            f"{choice.model_id} is not in the model facts file: cannot tell whether {region} offers it",
            f"look for it in the Bedrock model catalog of {region}",
            model=choice.name,
        )
    source = f"facts file, read {known.read_on}"
    if (
        known.status_on(today) == "EOL"
    ):  # Regions listed are where it was offered; the lifecycle check decides
        source += f", which lists it until its end of life on {known.eol_date}"
    if region in known.in_region:
        return CheckResult(
            "ok",
            check,
            f"offered in {region}; invoke with the model id {choice.model_id} ({source})",
            model=choice.name,
            data={"invoke_with": choice.model_id, "via": "model_id"},
        )
    profile = known.profile_for(region)
    if profile is not None:
        finding = (
            f"offered in {region} only through the inference profile {profile.profile_id} (runs in "
            f"{', '.join(profile.destination_regions)}); invoke with the profile id, not the model id ({source})"
        )
        data = {"invoke_with": profile.profile_id, "via": "inference_profile"}
        if choice.name in BEDROCK_MODEL_IDS:  # the registry's adapters call the model id
            return CheckResult(
                "warn",
                check,
                finding,
                f"imagegen calls {choice.model_id} by its model id: deploy where it is offered in-Region"
                + (f" ({', '.join(known.in_region)})" if known.in_region else ""),
                model=choice.name,
                data=data,
            )
        return CheckResult("ok", check, finding, model=choice.name, data=data)
    regions = known.regions()
    if regions:
        where = regions[0] if len(regions) == 1 else "one of " + ", ".join(regions)
        todo = f"deploy to {where}, where {choice.name} is offered, or {_replace_todo(choice, is_default=is_default, facts=facts, region=region, today=today)}"
    else:
        todo = _replace_todo(choice, is_default=is_default, facts=facts, region=region, today=today)
        ended = f" (end of life {known.eol_date})" if known.eol_date else ""
        todo = f"{choice.name} is offered in no Region{ended}: {todo}"
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


def check_lifecycle(
    bedrock: Any,
    choice: ModelChoice,
    known: ModelFacts | None,
    *,
    region: str,
    now: datetime,
    is_default: bool,
    facts: Mapping[str, ModelFacts],
) -> CheckResult:
    """Bedrock's own lifecycle of the model (``modelLifecycle``; end of life when ``endOfLifeTime`` has
    passed), compared with the facts file."""
    check = "lifecycle"
    today = now.date()
    replace = _replace_todo(choice, is_default=is_default, facts=facts, region=region, today=today)
    facts_state = known.status_on(today) if known else None
    facts_says = f"the facts file (read {known.read_on}) says {facts_state}" if known else ""
    try:
        details = bedrock.get_foundation_model(modelIdentifier=choice.model_id)["modelDetails"]
    except ClientError as exc:
        if _code(exc) in {"ResourceNotFoundException", "ValidationException"}:
            return CheckResult(
                "fail",
                check,
                f"Bedrock in {region} does not know {choice.model_id} ({_code(exc)}: {_message(exc)})",
                replace,
                model=choice.name,
                data={"error": _code(exc), "facts": facts_state},
            )
        return _lifecycle_from_facts(choice, known, facts_says, replace, exc, today)
    except BotoCoreError as exc:
        return _lifecycle_from_facts(choice, known, facts_says, replace, exc, today)
    lifecycle = details.get("modelLifecycle") or {}
    status = lifecycle.get("status")
    end, legacy, extended = (
        lifecycle.get(k) for k in ("endOfLifeTime", "legacyTime", "publicExtendedAccessTime")
    )
    state = "EOL" if isinstance(end, datetime) and end <= now else status
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
    disagree = bool(known and state and facts_state != state)
    note = f"; {facts_says}" if disagree else ""
    if state == "EOL":
        return CheckResult(
            "fail",
            check,
            f"end of life since {_date_text(end)} (Bedrock: {status}, endOfLifeTime {_date_text(end)}){note}",
            replace,
            model=choice.name,
            data=data,
        )
    if state == "LEGACY":
        dates = [f"legacy since {_date_text(legacy)}" if legacy else "legacy"]
        if extended:
            dates.append(f"public extended access from {_date_text(extended)}")
        if end:
            dates.append(f"end of life {_date_text(end)}")
        return CheckResult(
            "warn",
            check,
            f"{', '.join(dates)} (Bedrock){note}",
            f"plan the move before its end of life: {replace}",
            model=choice.name,
            data=data,
        )
    if state != "ACTIVE":
        return CheckResult(
            "warn",
            check,
            f"Bedrock gave no lifecycle for {choice.model_id}{'; ' + facts_says if known else ''}",
            model=choice.name,
            data=data,
        )
    if disagree:
        return CheckResult(
            "warn",
            check,
            f"active (Bedrock){note}",
            "Bedrock's answer holds; update lambdas/image_pipeline/models/model_facts.json",
            model=choice.name,
            data=data,
        )
    return CheckResult("ok", check, "active (Bedrock)", model=choice.name, data=data)


def _lifecycle_from_facts(
    choice: ModelChoice, known: ModelFacts | None, facts_says: str, replace: str, exc: Exception, today: date
) -> CheckResult:
    """When Bedrock cannot be asked, the facts file decides: end of life there is still a failure."""
    finding = _could_not("ask Bedrock", exc, "bedrock:GetFoundationModel")
    if known and known.status_on(today) == "EOL":
        return CheckResult(
            "fail", "lifecycle", f"{finding}; {facts_says} since {known.eol_date}", replace, model=choice.name
        )
    return CheckResult(
        "warn", "lifecycle", f"{finding}{'; ' + facts_says if facts_says else ''}", model=choice.name
    )


def marketplace_todo(choice: ModelChoice) -> str:
    return (
        f"{choice.model_id} is sold through AWS Marketplace: the first call subscribes the account, and the "
        "identity making it needs aws-marketplace:Subscribe and aws-marketplace:ViewSubscriptions (the "
        "deployment's Lambda role has neither). Grant them to your own identity and call the model once, or "
        f"accept the offer: aws bedrock list-foundation-model-agreement-offers --model-id {choice.model_id}, "
        f"then aws bedrock create-foundation-model-agreement; see {DOCS}"
    )


def check_access(
    bedrock: Any,
    choice: ModelChoice,
    known: ModelFacts | None,
    *,
    region: str,
    is_default: bool,
    facts: Mapping[str, ModelFacts],
    today: date,
) -> CheckResult:
    """Whether the account may invoke the model (``GetFoundationModelAvailability``)."""
    check = "access"
    marketplace = bool(known and known.marketplace)
    try:
        answer = bedrock.get_foundation_model_availability(modelId=choice.model_id)
    except ClientError as exc:
        if _code(exc) in {"ResourceNotFoundException", "ValidationException"}:
            return CheckResult(
                "fail",
                check,
                f"Bedrock in {region} has no availability for {choice.model_id} ({_code(exc)}: {_message(exc)})",
                _replace_todo(choice, is_default=is_default, facts=facts, region=region, today=today),
                model=choice.name,
            )
        finding = _could_not("check access", exc, "bedrock:GetFoundationModelAvailability")
        return CheckResult("warn", check, finding, model=choice.name)
    except BotoCoreError as exc:
        finding = _could_not("check access", exc, "bedrock:GetFoundationModelAvailability")
        return CheckResult("warn", check, finding, model=choice.name)
    agreement = answer["agreementAvailability"]
    data = {
        "agreement": agreement["status"],
        "agreement_error": agreement.get("errorMessage"),
        "authorization": answer["authorizationStatus"],
        "entitlement": answer["entitlementAvailability"],
        "region": answer["regionAvailability"],
        "marketplace": marketplace,
    }
    found: list[tuple[Status, str, str]] = []
    if answer["regionAvailability"] != "AVAILABLE":
        regions = known.regions() if known else []
        todo = f"deploy to {', '.join(regions)}" if regions else ""
        found.append(("fail", f"not available in {region}", todo))
    if answer["authorizationStatus"] != "AUTHORIZED":
        todo = (
            marketplace_todo(choice)
            if marketplace
            else "look for an IAM policy or SCP that denies this model; AWS does not grant legacy models to "
            f"accounts that have not used them recently; {_replace_todo(choice, is_default=is_default, facts=facts, region=region, today=today)}"
        )
        found.append(("fail", f"the account is not authorized to invoke {choice.model_id}", todo))
    status = agreement["status"]
    if status == "ERROR":
        found.append(
            (
                "fail",
                f"the Marketplace subscription failed: {agreement.get('errorMessage', '')}",
                marketplace_todo(choice),
            )
        )
    elif status == "PENDING":
        found.append(
            (
                "warn",
                "the Marketplace subscription is being set up (calls may be denied for a few minutes)",
                "run the doctor again in 15 minutes",
            )
        )
    elif status == "NOT_AVAILABLE" or answer["entitlementAvailability"] != "AVAILABLE":
        if marketplace:
            found.append(
                (
                    "warn",
                    f"no Marketplace subscription yet (agreement {status}, entitlement {answer['entitlementAvailability']})",
                    marketplace_todo(choice),
                )
            )
        else:
            found.append(("warn", f"agreement {status}, entitlement {answer['entitlementAvailability']}", ""))
    if not found:
        return CheckResult(
            "ok",
            check,
            "authorized; agreement, entitlement and Region AVAILABLE",
            model=choice.name,
            data=data,
        )
    worst = max((s for s, _, _ in found), key=_SEVERITY.__getitem__)
    finding = "; ".join(f for _, f, _ in found)
    todo = next((t for s, _, t in found if s == worst and t), "")
    return CheckResult(worst, check, finding, todo, model=choice.name, data=data)


def _normalized(name: str) -> str:
    return " ".join(name.split()).casefold()


@dataclass
class QuotaLookup:
    quota: dict[str, Any] | None = None
    source: str | None = None  # "applied" (this account's value) or "default" (AWS's default)
    error: str | None = None


class BedrockQuotas:
    """Bedrock's quotas in one Region, listed once: the account's applied values, then AWS's defaults
    for quotas that have no applied value (ListServiceQuotas leaves those out)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lists: dict[str, list[dict[str, Any]] | Exception] = {}

    def _list(self, operation: str) -> list[dict[str, Any]] | Exception:
        if operation not in self._lists:
            try:
                pages = self._client.get_paginator(operation).paginate(ServiceCode="bedrock")
                self._lists[operation] = [q for page in pages for q in page.get("Quotas", [])]
            except (ClientError, BotoCoreError) as exc:
                self._lists[operation] = exc
        return self._lists[operation]

    def find(self, name: str) -> QuotaLookup:
        wanted = _normalized(name)
        errors = []
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


def check_quota(
    quotas: BedrockQuotas, choice: ModelChoice, known: ModelFacts | None, *, region: str
) -> CheckResult:
    """The account's on-demand requests-per-minute quota for the model, found by its documented name."""
    check = "quota"
    if known is None or not known.quota_name:
        return CheckResult(
            "warn",
            check,
            f"no documented quota name for {choice.model_id}",
            f"look for it in the Service Quotas console (Amazon Bedrock, {region})",
            model=choice.name,
        )
    lookup = quotas.find(known.quota_name)
    if lookup.error:
        return CheckResult("warn", check, lookup.error, model=choice.name)
    if lookup.quota is None:
        return CheckResult(
            "warn",
            check,
            f"no quota named '{known.quota_name}' for Bedrock in {region}",
            f"the model may not be offered in {region}, or AWS renamed the quota: search 'On-demand model "
            "inference requests per minute' in the Service Quotas console (Amazon Bedrock)",
            model=choice.name,
            data={"name": known.quota_name},
        )
    value = lookup.quota.get("Value")
    code = lookup.quota.get("QuotaCode")
    data = {
        "name": lookup.quota.get("QuotaName"),
        "code": code,
        "value": value,
        "source": lookup.source,
        "documented_default": known.quota_default,
    }
    shown = f"{value:g}" if isinstance(value, float | int) else str(value)
    what = "this account's value" if lookup.source == "applied" else "AWS default; no applied value listed"
    finding = f"{shown} requests per minute ({what}; {code})"
    increase = (
        "request an increase in the Service Quotas console or, if it is not adjustable, through AWS Support"
    )
    if value == 0:
        return CheckResult(
            "fail", check, f"{finding}: the account cannot call it", increase, model=choice.name, data=data
        )
    if isinstance(value, float | int) and known.quota_default and value < known.quota_default:
        return CheckResult(
            "warn",
            check,
            f"{finding}, below the documented default {known.quota_default:g}",
            f"expect THROTTLED images at load; {increase}",
            model=choice.name,
            data=data,
        )
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
    for choice in deployment.models:
        known = facts.get(choice.model_id)
        is_default = choice == deployment.default
        results += [
            check_offered(choice, known, region, is_default=is_default, facts=facts, today=now.date()),
            check_lifecycle(
                bedrock, choice, known, region=region, now=now, is_default=is_default, facts=facts
            ),
            check_access(
                bedrock, choice, known, region=region, is_default=is_default, facts=facts, today=now.date()
            ),
            check_quota(quotas, choice, known, region=region),
        ]
    return Report(region, region_source, deployment, tuple(results))


def summary_lines(report: Report) -> list[str]:
    default = report.deployment.default.name
    lines = [
        f"The default model {default} can be called in {report.region}."
        if report.default_callable
        else f"The default model {default} cannot be called in {report.region}: see its fail lines."
    ]
    others = [m for m in report.failed_models() if m != default]
    if others:
        lines.append(
            f"Allowed but not callable here: {', '.join(others)}; remove them from imagegen:allowedModels."
        )
    return lines


def format_table(report: Report) -> str:
    """The report for a terminal: a header, one line per check, the stack's outputs, a summary."""
    header = (
        f"imagegen doctor: account {report.account}, Region {report.region}"
        f"{f' ({report.region_source})' if report.region_source else ''}, stack {report.deployment.stack_name}"
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
        facts = load_model_facts()
        context = read_cdk_context(Path(args.cdk_json))
        deployment = deployment_from_context(context, facts, args.model)
        if args.stack_name:
            deployment = Deployment(
                deployment.models, deployment.default, args.stack_name, deployment.bootstrap_qualifier
            )
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
        return EXIT_INVALID
    if args.json:
        print(json.dumps(report_json(report), indent=2, default=str))
    else:
        print(format_table(report))
    return report.exit_status
