"""What AWS says about each Bedrock image model: lifecycle, Regions, inference profiles, quota.

The facts live in ``model_facts.json`` beside this module (package data: the Lambda asset and every
install carry it), each with the AWS page it was read from and the day it was read. This module is
plain (pydantic, no Powertools, no AWS calls), so the CDK app, the Lambda functions, the offline
runtime, the Bedrock stand-in and ``imagegen doctor`` all read the same facts the same way.

Adding a model is one entry here (with ``registry_id``) plus one adapter in
``image_pipeline.models.registry``; retiring one is its dates here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

FACTS_FILE = Path(__file__).with_name("model_facts.json")

LifecycleStatus = Literal["ACTIVE", "LEGACY", "EOL"]
"""ACTIVE and LEGACY are Bedrock's ``FoundationModelLifecycleStatus``; EOL is ours: on or after
``endOfLifeTime`` Bedrock no longer serves the model."""

InvokeVia = Literal["model_id", "inference_profile"]


class _Fact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Lifecycle(_Fact):
    """A model's lifecycle dates; ``status`` is what it was on ``read_on``."""

    status: LifecycleStatus
    legacy_date: date | None
    public_extended_access_date: date | None
    eol_date: date | None
    source: str
    read_on: date
    note: str = ""

    def on(self, day: date) -> LifecycleStatus:
        """The status on ``day``: from the dates when known, else the status as read."""
        if self.eol_date is not None and day >= self.eol_date:
            return "EOL"
        if self.legacy_date is not None and day >= self.legacy_date:
            return "LEGACY"
        if self.status == "EOL" and self.eol_date is None:
            return "EOL"  # retired on a day not recorded
        if self.status == "LEGACY" and self.legacy_date is None:
            return "LEGACY"  # legacy since a day not recorded
        return "ACTIVE"

    @model_validator(mode="after")
    def _status_matches_dates(self) -> Lifecycle:
        if self.on(self.read_on) != self.status:
            raise ValueError(
                f"status {self.status} does not match the dates on {self.read_on} ({self.on(self.read_on)})"
            )
        return self


class Regions(_Fact):
    """The Regions that serve the model in-Region (invoked by its model id)."""

    in_region: tuple[str, ...]
    source: str
    read_on: date
    note: str = ""


class InferenceProfile(_Fact):
    """A system-defined (cross-Region) inference profile of the model."""

    id: str
    source_regions: tuple[str, ...]
    destination_regions: tuple[str, ...]
    source: str
    read_on: date
    note: str = ""


class Quota(_Fact):
    """The documented per-Region requests-per-minute quota (its code is not documented)."""

    name: str
    default_requests_per_minute: int
    adjustable: bool
    service_code: str
    quota_code: str | None
    source: str
    read_on: date
    note: str = ""


class Seed(_Fact):
    """What the model's documentation says a seed does: whether the same seed and body give the same
    image (``reproducible``: the prompt cache may then serve an earlier one), in its own words."""

    reproducible: bool
    wording: str
    source: str
    read_on: date
    status: Literal["confirmed", "verify"]
    note: str = ""


class ModelFacts(_Fact):
    """Everything recorded about one Bedrock model."""

    model_id: str = Field(description="The Bedrock model id (the key in the facts file).")
    registry_id: str | None = Field(description="The registry adapter serving it; None: no adapter yet.")
    provider: str
    marketplace: bool = Field(description="Sold through AWS Marketplace: first use subscribes.")
    lifecycle: Lifecycle
    regions: Regions
    inference_profiles: tuple[InferenceProfile, ...]
    invoke_via: InvokeVia
    successor: str | None
    successor_unconfirmed: bool = False
    successor_note: str = ""
    quota: Quota
    #: None: the documentation says nothing of it, and the model is never served from the prompt cache.
    seed: Seed | None = None
    text_to_image: bool = Field(
        default=True,
        description="Draws from a prompt alone; False: it works on an input image (a Stability AI Image "
        "Service, input modality Image on its model card), so only another such model replaces it.",
    )

    @model_validator(mode="after")
    def _invocable_somehow(self) -> ModelFacts:
        if self.invoke_via == "inference_profile" and not self.inference_profiles:
            raise ValueError("invoke_via is inference_profile but no inference profile is listed")
        return self

    def status_on(self, day: date) -> LifecycleStatus:
        """The lifecycle status on ``day``."""
        return self.lifecycle.on(day)

    def offer_in(self, region: str) -> Offer | None:
        """How a caller in ``region`` invokes the model, or None when it is not offered there."""
        if self.invoke_via == "model_id" and region in self.regions.in_region:
            return Offer(model_id=self.model_id, invoke_id=self.model_id, region=region, profile=None)
        for profile in self.inference_profiles:
            if region in profile.source_regions:
                return Offer(model_id=self.model_id, invoke_id=profile.id, region=region, profile=profile)
        return None

    def regions_offering(self) -> tuple[str, ...]:
        """Every Region a caller can invoke the model from (in-Region or as a profile source), sorted."""
        found = {r for r in self.regions.in_region if self.invoke_via == "model_id"}
        for profile in self.inference_profiles:
            found.update(profile.source_regions)
        return tuple(sorted(found))


class Offer(_Fact):
    """How to invoke a model from one Region: ``invoke_id`` is the InvokeModel ``modelId``."""

    model_id: str
    invoke_id: str
    region: str
    profile: InferenceProfile | None

    @property
    def via_profile(self) -> bool:
        return self.profile is not None


class FactsFile(_Fact):
    """The whole facts file."""

    read_on: date
    models: dict[str, ModelFacts]
    sources: dict[str, str]
    provenance: str

    @model_validator(mode="before")
    @classmethod
    def _keys_are_model_ids(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("models"), dict):
            data = {
                **data,
                "models": {
                    key: {**entry, "model_id": key} if isinstance(entry, dict) else entry
                    for key, entry in data["models"].items()
                },
            }
        return data

    @model_validator(mode="after")
    def _registry_ids_unique(self) -> FactsFile:
        seen = [m.registry_id for m in self.models.values() if m.registry_id]
        if len(seen) != len(set(seen)):
            raise ValueError(f"a registry_id names two models: {seen}")
        return self


def read_facts(path: Path = FACTS_FILE) -> FactsFile:
    """Read and check a facts file (ValueError/ValidationError on a bad shape)."""
    return FactsFile.model_validate(json.loads(path.read_text(encoding="utf-8")))


@cache
def load_facts() -> FactsFile:
    """The shipped facts file, read once per process."""
    return read_facts()


def all_model_facts() -> tuple[ModelFacts, ...]:
    """Every model in the facts file, in file order (the registry's order first)."""
    return tuple(load_facts().models.values())


def registry_model_facts() -> tuple[ModelFacts, ...]:
    """The models with a registry adapter, in file order."""
    return tuple(m for m in all_model_facts() if m.registry_id)


def model_facts(model: str) -> ModelFacts:
    """The facts of a model, by Bedrock model id or registry id; KeyError if unknown."""
    facts = load_facts().models
    if model in facts:
        return facts[model]
    for entry in facts.values():
        if entry.registry_id == model:
            return entry
    raise KeyError(f"no facts recorded for model {model!r}")


def lifecycle_on(model: str, day: date) -> LifecycleStatus:
    """ACTIVE, LEGACY or EOL on ``day``."""
    return model_facts(model).status_on(day)


def offer_in(model: str, region: str) -> Offer | None:
    """How ``model`` is invoked from ``region`` (model id or inference profile), None if not offered."""
    return model_facts(model).offer_in(region)


def offered_in(model: str, region: str) -> str | None:
    """The ``modelId`` to invoke ``model`` with from ``region`` (its id or a profile id), or None."""
    offer = offer_in(model, region)
    return offer.invoke_id if offer else None


def regions_offering(model: str) -> tuple[str, ...]:
    """The Regions ``model`` can be invoked from, sorted."""
    return model_facts(model).regions_offering()


# -- judging a model for a day and a Region --------------------------------------------------------


def today_utc() -> date:
    """Today's date in UTC (lifecycle dates are whole days; AWS states them without a time zone)."""
    return datetime.now(UTC).date()


class Standing(NamedTuple):
    """What a model is worth on ``day`` in ``region``: usable (maybe with a warning) or not, and why.

    ``problem`` says why it cannot be used (past its end of life, or not offered in the Region), with
    the date, the AWS source and what to use instead; ``warning`` says it is legacy and until when.
    ``offer`` is how to invoke it from ``region`` (None when not offered, or when no Region is given).
    """

    facts: ModelFacts
    day: date
    region: str | None
    status: LifecycleStatus
    offer: Offer | None
    alternatives: tuple[str, ...]
    problem: str | None
    warning: str | None

    @property
    def usable(self) -> bool:
        return self.problem is None


def name_of(facts: ModelFacts) -> str:
    """How messages name a model: its registry id and Bedrock id, or the Bedrock id alone."""
    return f"{facts.registry_id} ({facts.model_id})" if facts.registry_id else facts.model_id


def alternatives(
    model: str, *, day: date, region: str | None, among: Iterable[str] | None = None
) -> tuple[str, ...]:
    """Registry ids to use instead of ``model``: active on ``day``, offered in ``region`` (when given),
    taken from ``among`` (registry ids; default: every registry model); AWS's named successor first."""
    this = model_facts(model)
    pool = [model_facts(m) for m in among] if among is not None else list(registry_model_facts())
    fits = [
        m.registry_id
        for m in pool
        if m.registry_id
        and m.model_id != this.model_id
        and m.text_to_image == this.text_to_image  # an image service stands in for another one
        and m.status_on(day) == "ACTIVE"
        and (region is None or m.offer_in(region) is not None)
    ]
    successor = next((m.registry_id for m in pool if m.model_id == this.successor), None)
    if successor in fits:
        fits.remove(successor)
        fits.insert(0, successor)
    return tuple(dict.fromkeys(fits))


def _instead(
    model: str, alts: tuple[str, ...], *, region: str | None, day: date, among: Iterable[str] | None
) -> str:
    if alts:
        return f"use {_one_of(alts)} instead"
    if region:
        elsewhere = alternatives(model, day=day, region=None, among=among)
        if elsewhere:
            regions = sorted({r for m in elsewhere for r in model_facts(m).regions_offering()})
            return (
                f"no other active model is offered in {region}: {_one_of(elsewhere)} "
                f"(offered in {', '.join(regions)})"
            )
    return "no other active model is known here"


def _one_of(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def standing(
    model: str, *, day: date, region: str | None = None, among: Iterable[str] | None = None
) -> Standing:
    """Judge ``model`` on ``day`` for a deployment in ``region`` (None: any Region).

    ``among`` limits the alternatives a message proposes (a deployment's allowed models); KeyError if
    the facts file does not know the model.
    """
    facts = model_facts(model)
    status = facts.status_on(day)
    offer = facts.offer_in(region) if region else None
    among = tuple(among) if among is not None else None
    alts = alternatives(model, day=day, region=region, among=among)
    instead = _instead(model, alts, region=region, day=day, among=among)
    life = facts.lifecycle
    problem = warning = None
    if status == "EOL":
        when = f"on {life.eol_date}" if life.eol_date else "(date not recorded)"
        problem = (
            f"{name_of(facts)} reached its end of life {when}: Bedrock no longer serves it "
            f"(AWS, read {life.read_on}: {life.source}); {instead}"
        )
    elif region and offer is None:
        offered = facts.regions_offering()
        if offered and alts:
            instead = f"deploy in {_one_of(offered)}, or {instead}"
        elif offered:
            instead = f"deploy in {_one_of(offered)}"
        problem = (
            f"{name_of(facts)} is not offered in {region}: Bedrock offers it in "
            f"{', '.join(offered) or 'no Region'} (AWS, read {facts.regions.read_on}: {facts.regions.source}); "
            f"{instead}"
        )
    if status == "LEGACY" and problem is None:
        since = f" since {life.legacy_date}" if life.legacy_date else ""
        until = f"its end of life is {life.eol_date}" if life.eol_date else "its end of life is not announced"
        warning = (
            f"{name_of(facts)} is legacy{since} and {until} (AWS, read {life.read_on}: {life.source}); "
            f"{instead.replace(' instead', ' before then')}"
        )
    return Standing(facts, day, region, status, offer, alts, problem, warning)
