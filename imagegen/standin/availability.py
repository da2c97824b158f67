"""Which model ids the stand-in serves, in which Region and until when: the model facts file.

Bedrock refuses a call before it reads the body when the model id cannot be served. The stand-in
does the same, from ``image_pipeline.models.facts`` (the dated facts file the registry, the CDK app and
``imagegen doctor`` read), in this order:

1. an id that is no model of the facts file (or a profile id the model does not have): ValidationException
   "The provided model identifier is invalid.";
2. a model past its end-of-life date on the stand-in's "today": ResourceNotFoundException "This model
   version has reached the end of its life. ...";
3. a model the Region does not serve: by its bare id when it is served only through an inference profile
   whose source Regions include this one, ValidationException "Invocation of model ID ... with on-demand
   throughput isn\u2019t supported. ..."; otherwise (not offered here at all, or a profile whose source
   Regions do not include this one) "The provided model identifier is invalid.".

The wording and where it was seen: ``imagegen.standin.errors``. The Region is the server's configured
one, or else the Region each call is signed for (SigV4's credential scope): the offline engine's
Lambda handlers sign for the offline engine's Region, so by default the stand-in serves what that
Region serves. The Marketplace first-use rule is the server's (it keeps the account's subscriptions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from image_pipeline.models.facts import ModelFacts, load_facts

from imagegen.standin.errors import (
    END_OF_LIFE,
    INVALID_MODEL_IDENTIFIER,
    ON_DEMAND_NOT_SUPPORTED,
    BedrockError,
)

__all__ = ["PROFILE_PREFIXES", "Identifier", "ModelAvailability", "parse_identifier", "signed_region"]

PROFILE_PREFIXES = ("us", "eu", "apac", "global", "us-gov", "ca", "jp", "au", "ap")
"""The geography prefixes of system-defined inference profile ids (``us.stability....``)."""

_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/")


@dataclass(frozen=True)
class Identifier:
    """An InvokeModel ``modelId`` taken apart: the foundation model id and, if the caller named one,
    the inference profile id."""

    model_id: str
    profile_id: str | None


def parse_identifier(raw: str) -> Identifier:
    """The model (and profile) an InvokeModel ``modelId`` names: a model id, a profile id
    (``us.stability.x-v1:0``), or a foundation-model / inference-profile ARN."""
    raw = raw.strip()
    profile_arn = False
    if raw.startswith("arn:") and "/" in raw:
        resource, raw = raw.rsplit("/", 1)
        profile_arn = resource.endswith(":inference-profile")
    prefix, _, rest = raw.partition(".")
    if rest and "." in rest and (prefix in PROFILE_PREFIXES or profile_arn):
        return Identifier(rest, raw)
    return Identifier(raw, None)


def signed_region(authorization: str | None) -> str | None:
    """The Region of a SigV4 ``Authorization`` header's credential scope, or None."""
    match = _CREDENTIAL_SCOPE.search(authorization or "")
    return match.group(1) if match else None


class ModelAvailability:
    """Bedrock's refusals for a model id (see the module docstring).

    ``region`` None: the Region each call is signed for. ``today`` None: the current UTC date, read
    at each call. ``enforce`` False: only the model id is resolved (any profile prefix is taken),
    nothing is refused for its lifecycle or Region.
    """

    def __init__(self, *, region: str | None = None, today: date | None = None, enforce: bool = True) -> None:
        self.region = region
        self.today = today
        self.enforce = enforce

    def day(self) -> date:
        """The stand-in's "today"."""
        return self.today if self.today is not None else datetime.now(UTC).date()

    @staticmethod
    def facts(model_id: str) -> ModelFacts | None:
        """The facts of a model id, or None."""
        return load_facts().models.get(model_id)

    def admit(self, raw_model_id: str, *, signed: str | None = None) -> Identifier:
        """The model a call may invoke, or the BedrockError Bedrock answers instead."""
        ident = parse_identifier(raw_model_id)
        if not self.enforce:
            return ident
        facts = self.facts(ident.model_id)
        if facts is None:
            raise BedrockError("ValidationException", INVALID_MODEL_IDENTIFIER)
        profile = None
        if ident.profile_id is not None:
            profile = next((p for p in facts.inference_profiles if p.id == ident.profile_id), None)
            if profile is None:
                raise BedrockError("ValidationException", INVALID_MODEL_IDENTIFIER)
        if facts.status_on(self.day()) == "EOL":
            raise BedrockError("ResourceNotFoundException", END_OF_LIFE)
        region = self.region or signed
        if region is None:
            return ident
        if profile is not None:
            if region not in profile.source_regions:
                raise BedrockError("ValidationException", INVALID_MODEL_IDENTIFIER)
            return ident
        if facts.invoke_via == "model_id" and region in facts.regions.in_region:
            return ident
        if any(region in p.source_regions for p in facts.inference_profiles):
            raise BedrockError("ValidationException", ON_DEMAND_NOT_SUPPORTED.format(model_id=ident.model_id))
        raise BedrockError("ValidationException", INVALID_MODEL_IDENTIFIER)
