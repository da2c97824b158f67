"""``imagegen keys create|list|revoke``: the deployment's API keys, each a caller of its own.

Run with the operator's AWS credentials (API Gateway calls, not the API): the deployment is found from
its CloudFormation stack's outputs (``ApiUrl``: the API id and stage; ``UsagePlanId``, or for a stack
deployed before that output existed, the plan of ``ApiKeyId``).

* ``create NAME`` makes an enabled API key named ``NAME`` and adds it to the deployment's usage plan,
  whose throttle and quota apply to each key on its own. With ``--rate``/``--burst``/``--quota`` the key
  gets a usage plan of its own for the same API stage (``imagegen-key-NAME``) with those limits instead
  (API Gateway allows a key in one plan per stage). With ``--daily-spend-usd`` the key's caller gets a
  spend ceiling per UTC day of its own (an item of the spend ledger in the image index's table,
  ``core/spend.py``; without it, the deployment's ``imagegen:dailySpendLimitUsd``). Prints the key's
  value once, its id and its caller namespace (the folder of its images in the bucket, ``<namespace>/``).
* ``list`` shows every key of the deployment's plans: id, name, enabled, namespace, limits, its own daily
  spend ceiling (never a value).
* ``revoke KEY`` (id or name) disables the key: API Gateway refuses it from then on (403) and its caller's
  jobs and images stay. No redeployment is needed; how soon it takes effect no AWS page says (a re:Post
  answer reports about 10 seconds: https://repost.aws/questions/QUIiY_hoP0T4SYnFd3NMGDRw, read
  2026-11-30). ``--delete`` also removes it from its plan and deletes it (and its own plan):
  not for the stack's first key (``ApiKeyId``), which CloudFormation manages.

A key is a caller (``Caller("apiKey", <key id>)``): a new key starts with no jobs, so rotating a key is
giving its holder a new caller.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from image_pipeline.core.spend import SpendLedger, usd
from image_pipeline.core.tenancy import Caller

from imagegen.cli.options import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from imagegen.runtime.local_auth import KEY_NAME  # a key's name, offline and deployed alike

DEFAULT_STACK = "Imagegen"
#: The prefix of a key's own usage plan (a key with limits of its own).
OWN_PLAN_PREFIX = "imagegen-key-"
_API_URL = re.compile(r"^https://(?P<api>[a-z0-9]+)\.execute-api\.[a-z0-9-]+\.[a-z0-9.]+/(?P<stage>[^/]+)/?$")


class KeysError(Exception):
    """A key operation that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Deployment:
    """What ``imagegen keys`` works on: the API, its stage, the shared usage plan and the first key."""

    api_id: str
    stage: str
    usage_plan_id: str
    first_key_id: str | None = None
    #: The image index's table, which holds each caller's daily spend ledger and own ceiling
    #: (``ImageIndexTableName``; None for a stack deployed before it).
    index_table: str | None = None


@dataclass(frozen=True)
class Limits:
    """A usage plan's per-key throttle (requests per second, burst) and daily quota."""

    rate: float
    burst: int
    quota_per_day: int

    @classmethod
    def of_plan(cls, plan: dict[str, Any]) -> Limits | None:
        throttle, quota = plan.get("throttle") or {}, plan.get("quota") or {}
        if not throttle and not quota:
            return None
        return cls(
            float(throttle.get("rateLimit", 0)),
            int(throttle.get("burstLimit", 0)),
            int(quota.get("limit", 0)),
        )


def deployment_of(cfn: Any, apigw: Any, stack_name: str) -> Deployment:
    """The deployment of CloudFormation stack ``stack_name`` (its outputs)."""
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except Exception as exc:  # botocore's ClientError ("does not exist") and connection errors alike
        raise KeysError(f"cannot read the stack {stack_name!r}: {exc}") from None
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stacks[0].get("Outputs", [])}
    match = _API_URL.match(outputs.get("ApiUrl", ""))
    if match is None:
        raise KeysError(f"the stack {stack_name!r} has no ApiUrl output; is it an imagegen stack?")
    first_key = outputs.get("ApiKeyId") or None
    plan_id = outputs.get("UsagePlanId")
    if not plan_id and first_key:  # a stack deployed before the UsagePlanId output
        plans = apigw.get_usage_plans(keyId=first_key).get("items", [])
        plan_id = plans[0]["id"] if plans else None
    if not plan_id:
        raise KeysError(
            f"the stack {stack_name!r} has no usage plan: it was deployed with imagegen:apiAuth=iam or "
            "cognito (callers are IAM principals or signed-in users; there are no keys to manage)"
        )
    return Deployment(
        match["api"], match["stage"], plan_id, first_key, outputs.get("ImageIndexTableName") or None
    )


def _plans(apigw: Any, deployment: Deployment) -> Iterator[dict[str, Any]]:
    """The usage plans of the deployment's API stage: the shared one and the keys' own."""
    for page in apigw.get_paginator("get_usage_plans").paginate():
        for plan in page.get("items", []):
            stages = {(s.get("apiId"), s.get("stage")) for s in plan.get("apiStages", [])}
            if (deployment.api_id, deployment.stage) in stages:
                yield plan


def _key_record(
    apigw: Any, key_id: str, plan: dict[str, Any], deployment: Deployment, ledger: SpendLedger | None = None
) -> dict[str, Any]:
    key = apigw.get_api_key(apiKey=key_id, includeValue=False)
    limits = Limits.of_plan(plan)
    record = {
        "id": key_id,
        "name": key.get("name"),
        "enabled": bool(key.get("enabled")),
        "caller_namespace": Caller("apiKey", key_id).namespace,
        "usage_plan": plan["id"],
        "own_limits": plan["id"] != deployment.usage_plan_id,
        "limits": None if limits is None else vars(limits),
        "first_key": key_id == deployment.first_key_id,
    }
    if ledger is not None:  # its own daily spend ceiling; None: the deployment's
        own = ledger.own_limit_micro(Caller("apiKey", key_id).namespace)
        record["daily_spend_usd"] = None if own is None else usd(own)
    return record


def list_keys(apigw: Any, deployment: Deployment, ledger: SpendLedger | None = None) -> list[dict[str, Any]]:
    """Every key of the deployment's usage plans (no values), by name; with the ``ledger``, each key's
    own daily spend ceiling (``daily_spend_usd``, None: the deployment's)."""
    records = []
    for plan in _plans(apigw, deployment):
        for page in apigw.get_paginator("get_usage_plan_keys").paginate(usagePlanId=plan["id"]):
            records += [
                _key_record(apigw, item["id"], plan, deployment, ledger) for item in page.get("items", [])
            ]
    return sorted(records, key=lambda r: (str(r["name"]), r["id"]))


def find_key(apigw: Any, deployment: Deployment, key: str) -> dict[str, Any]:
    """The deployment's key with id or name ``key``."""
    found = [r for r in list_keys(apigw, deployment) if key in (r["id"], r["name"])]
    if not found:
        raise KeysError(f"no key {key!r} in this deployment; see imagegen keys list")
    if len(found) > 1:
        raise KeysError(f"{len(found)} keys are named {key!r}; give the id")
    return found[0]


def create_key(
    apigw: Any,
    deployment: Deployment,
    name: str,
    limits: Limits | None = None,
    *,
    daily_spend_usd: float | None = None,
    ledger: SpendLedger | None = None,
) -> dict[str, Any]:
    """A new enabled key named ``name`` in the deployment's usage plan (or, with ``limits``, in a plan
    of its own for the same stage), with ``daily_spend_usd`` its own daily spend ceiling (an item of
    the ``ledger``, ``core/spend.py``; none: the deployment's ``imagegen:dailySpendLimitUsd``). Returns
    its record with its value."""
    if not KEY_NAME.match(name):
        raise KeysError(f"{name!r}: a key's name is 1 to 64 letters, digits, '.', '_' or '-'")
    if daily_spend_usd is not None:
        if not (0 < daily_spend_usd < float("inf")):
            raise KeysError(f"--daily-spend-usd must be a positive number of USD, not {daily_spend_usd}")
        if ledger is None:
            raise KeysError(
                "this stack has no ImageIndexTableName output (deployed before the image index): "
                "update it to give a key its own daily spend limit"
            )
    if any(r["name"] == name for r in list_keys(apigw, deployment)):
        raise KeysError(f"a key named {name!r} exists; revoke it, or choose another name")
    created = apigw.create_api_key(name=name, description=f"imagegen caller {name}", enabled=True)
    plan_id = deployment.usage_plan_id
    if limits is not None:
        plan_id = apigw.create_usage_plan(
            name=f"{OWN_PLAN_PREFIX}{name}",
            description=f"imagegen: the limits of key {name}",
            apiStages=[{"apiId": deployment.api_id, "stage": deployment.stage}],
            throttle={"rateLimit": limits.rate, "burstLimit": limits.burst},
            quota={"limit": limits.quota_per_day, "period": "DAY"},
        )["id"]
    if daily_spend_usd is not None and ledger is not None:  # before the key is usable
        ledger.set_limit(Caller("apiKey", created["id"]).namespace, daily_spend_usd)
    apigw.create_usage_plan_key(usagePlanId=plan_id, keyId=created["id"], keyType="API_KEY")
    plan = apigw.get_usage_plan(usagePlanId=plan_id)
    record = _key_record(apigw, created["id"], plan, deployment, ledger)
    return {**record, "value": created["value"]}


def revoke_key(
    apigw: Any, deployment: Deployment, key: str, *, delete: bool = False, ledger: SpendLedger | None = None
) -> dict[str, Any]:
    """Disable key ``key`` (id or name); with ``delete``, remove it from its plan and delete it (and its
    own plan and daily spend ceiling). Returns its record as it was before, with ``revoked``
    (``disabled`` or ``deleted``)."""
    record = find_key(apigw, deployment, key)
    if delete and record["first_key"]:
        raise KeysError(
            f"{record['id']} is the stack's first key (ApiKeyId), managed by CloudFormation: revoke it "
            "without --delete (disabled), or remove it from the stack"
        )
    apigw.update_api_key(
        apiKey=record["id"], patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}]
    )
    if delete:
        apigw.delete_usage_plan_key(usagePlanId=record["usage_plan"], keyId=record["id"])
        apigw.delete_api_key(apiKey=record["id"])
        if record["own_limits"]:
            apigw.delete_usage_plan(usagePlanId=record["usage_plan"])
        if ledger is not None:
            ledger.forget_limit(record["caller_namespace"])
    return {**record, "enabled": False, "revoked": "deleted" if delete else "disabled"}


# -- the command -----------------------------------------------------------------------------------


def add_commands(subparsers: Any) -> None:
    keys = subparsers.add_parser(
        "keys",
        help="the deployment's API keys: create, list, revoke (operator's AWS credentials)",
        description="Manage the API keys of a deployed stack; each key is a caller with its own jobs "
        "and images. Uses your AWS credentials (API Gateway, CloudFormation), not the API.",
    )
    keys.add_argument("--stack", default=DEFAULT_STACK, help="the stack's name (default %(default)s)")
    keys.add_argument("--region", default=None, help="its Region (default: $AWS_REGION / your profile's)")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="a new key (prints its value once)")
    create.add_argument("name", help="the key's name: letters, digits, '.', '_' or '-'")
    create.add_argument("--rate", type=float, help="its own rate limit, requests per second")
    create.add_argument("--burst", type=int, help="its own burst limit")
    create.add_argument("--quota", type=int, help="its own quota, requests per day")
    create.add_argument(
        "--daily-spend-usd",
        type=float,
        metavar="USD",
        help="its own spend ceiling per UTC day from the cost model (default: imagegen:dailySpendLimitUsd)",
    )
    create.set_defaults(func=cmd_keys)
    actions.add_parser("list", help="every key: id, name, enabled, namespace, limits").set_defaults(
        func=cmd_keys
    )
    revoke = actions.add_parser("revoke", help="disable a key (--delete: delete it)")
    revoke.add_argument("key", help="the key's id or name")
    revoke.add_argument("--delete", action="store_true", help="also remove it from its plan and delete it")
    revoke.set_defaults(func=cmd_keys)


def _limits(args: argparse.Namespace) -> Limits | None:
    given = [args.rate, args.burst, args.quota]
    if all(v is None for v in given):
        return None
    if any(v is None for v in given):
        raise KeysError("--rate, --burst and --quota go together: give all three for a key's own limits")
    if args.rate <= 0 or args.burst < 1 or args.quota < 1:
        raise KeysError("--rate must be above 0, --burst and --quota at least 1")
    return Limits(args.rate, args.burst, args.quota)


def cmd_keys(args: argparse.Namespace) -> int:
    import boto3

    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    apigw = boto3.client("apigateway", region_name=region)
    cfn = boto3.client("cloudformation", region_name=region)
    try:
        deployment = deployment_of(cfn, apigw, args.stack)
        ledger = (
            SpendLedger(
                boto3.client("dynamodb", region_name=region),
                deployment.index_table,
                default_limit_usd=None,
                default_model="",
            )
            if deployment.index_table
            else None
        )
        if args.keys_command == "create":
            answer: Any = create_key(
                apigw,
                deployment,
                args.name,
                _limits(args),
                daily_spend_usd=args.daily_spend_usd,
                ledger=ledger,
            )
        elif args.keys_command == "list":
            answer = list_keys(apigw, deployment, ledger)
        else:
            answer = revoke_key(apigw, deployment, args.key, delete=args.delete, ledger=ledger)
    except KeysError as exc:
        print(f"imagegen keys: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # AWS refused (credentials, permissions): say so in one line
        print(f"imagegen keys: API Gateway refused: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(answer, indent=2, default=str))
    return EXIT_OK
