"""The image index and the prompt cache (``core/image_index.py``, ``core/generation.py``), on moto's
DynamoDB and S3: the items written as a job is made, each access pattern, the search's checks and
tenancy, the cache's key, hit and miss, and writes that fail without failing the image."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from image_pipeline.contract.errors import FieldError, InvalidRequest
from image_pipeline.core import planning
from image_pipeline.core.generation import generate_image
from image_pipeline.core.image_index import (
    SEARCH_MAX_LIMIT,
    ImageIndex,
    SearchQuery,
    cache_key,
    parse_search,
    search_answer,
    words_of,
)
from image_pipeline.core.index_keys import table_definition
from image_pipeline.core.settings import Settings
from image_pipeline.core.tenancy import Caller
from image_pipeline.models.registry import get_adapter
from moto import mock_aws

from tests.support import ALL_MODELS_ACTIVE, empty_bucket
from tests.unit.test_generation_and_manifest import FakeBedrock, png_b64

BUCKET = "test-bucket"
TABLE = "test-index"  # a table of its own per test (below): moto's state may outlive one mock_aws
ALICE = Caller("apiKey", "alice-key")
BOB = Caller("apiKey", "bob-key")


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[tuple[Any, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        # when a session's offline engine holds moto open, this mock_aws shares its state: a table of
        # this test's own, so no earlier test's items (or table) are found
        name = f"{TABLE}-{uuid.uuid4().hex[:8]}"
        boto3.client("dynamodb", region_name="us-east-1").create_table(TableName=name, **table_definition())
        yield s3, boto3.resource("dynamodb", region_name="us-east-1").Table(name)
        empty_bucket(s3, BUCKET)


def plan_of(caller: Caller, job: str, **fields: Any) -> dict[str, Any]:
    request = {
        "prompt": "a red lighthouse at dusk",
        "count": 2,
        "model": "stable-image-core",
        "seed": 10,
        **fields,
    }
    checked = planning.check_request(request, Settings(images_bucket=BUCKET), today=ALL_MODELS_ACTIVE)
    return planning.plan(checked, job, caller=caller)


def branch(plan: dict[str, Any], index: int) -> dict[str, Any]:
    """A Map item as the ASL's ItemSelector makes it."""
    return {
        "request_id": plan["request_id"],
        "execution_name": None,
        "model": plan["model"],
        "request": plan["request"],
        "caller_namespace": plan["caller_namespace"],
        "cache": plan["cache"],
        "image": plan["images"][index],
    }


def answers(count: int) -> list[dict[str, Any]]:
    return [{"seeds": [10 + i], "finish_reasons": [None], "images": [png_b64()]} for i in range(count)]


def run_job(s3: Any, index: ImageIndex, plan: dict[str, Any], bedrock: FakeBedrock) -> list[dict[str, Any]]:
    index.put_job(plan)
    return [
        generate_image(branch(plan, i), bedrock=bedrock, s3=s3, bucket=BUCKET, catalog=index, price=0.04)
        for i in range(len(plan["images"]))
    ]


# -- values -------------------------------------------------------------------------------------------


def test_words_are_case_folded_distinct_and_in_order() -> None:
    assert words_of("A Red, red LIGHTHOUSE at dusk!") == ["a", "red", "lighthouse", "at", "dusk"]
    assert words_of("\uff2c\uff49\uff47\uff48\uff54") == ["light"]  # fullwidth letters: NFKC
    assert words_of(None) == []


def test_cache_key_covers_every_parameter_and_the_callers_scope() -> None:
    adapter = get_adapter("stable-image-core")
    params = plan_of(ALICE, "j")["request"]
    body = adapter.build_body(params, 10)
    key = cache_key(adapter.model_id, body, namespace="ns1", shared=False)
    assert key == cache_key(
        adapter.model_id, dict(reversed(list(body.items()))), namespace="ns1", shared=False
    )
    assert key != cache_key(adapter.model_id, adapter.build_body(params, 11), namespace="ns1", shared=False)
    other = adapter.build_body({**params, "negative_prompt": "fog"}, 10)
    assert key != cache_key(adapter.model_id, other, namespace="ns1", shared=False)
    assert key != cache_key("stability.sd3-5-large-v1:0", body, namespace="ns1", shared=False)
    assert key != cache_key(adapter.model_id, body, namespace="ns2", shared=False)
    assert cache_key(adapter.model_id, body, namespace="ns1", shared=True) == cache_key(
        adapter.model_id, body, namespace="ns2", shared=True
    )


def test_only_a_determined_request_may_be_served_from_the_cache() -> None:
    assert plan_of(ALICE, "j")["cache"] is True
    assert plan_of(ALICE, "j", seed=None)["cache"] is False  # random seeds: never
    assert plan_of(ALICE, "j", cache=False)["cache"] is False  # opted out
    with pytest.raises(InvalidRequest, match="cache"):
        plan_of(ALICE, "j", cache="no")


def test_models_whose_seed_does_not_reproduce_are_never_cached() -> None:
    assert get_adapter("stable-image-core").seed_reproducible
    for model in ("titan-image-v2", "nova-canvas"):
        assert not get_adapter(model).seed_reproducible
        checked = planning.check_request(
            {"prompt": "p", "count": 1, "model": model, "seed": 5},
            Settings(images_bucket=BUCKET),
            today=ALL_MODELS_ACTIVE,
        )
        assert planning.plan(checked, "j", caller=ALICE)["cache"] is False


def test_whether_a_model_is_cached_is_its_documented_seed_fact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each adapter's seed_reproducible is model_facts.json's "seed" (wording, page, status); a model
    whose facts say nothing of its seed is never cached."""
    from image_pipeline.models.registry import list_adapters

    for adapter in list_adapters():
        seed = adapter.facts.seed
        if not getattr(adapter, "takes_seed", True):  # Fast Upscale, Remove Background: no seed at all
            assert seed is None and not adapter.seed_reproducible
            continue
        assert seed is not None, f"{adapter.registry_id}: no seed fact"
        assert adapter.seed_reproducible is seed.reproducible
        assert seed.source.startswith("https://docs.aws.amazon.com/") and seed.wording
        if not seed.reproducible:  # a similar image only: the pages' own words
            assert "similar image" in seed.wording
    core = get_adapter("stable-image-core")
    silent = core.facts.model_copy(update={"seed": None})
    monkeypatch.setattr(type(core), "facts", property(lambda self: silent))
    assert not core.seed_reproducible
    assert plan_of(ALICE, "j")["cache"] is False


# -- items as they are made ------------------------------------------------------------------------------


def test_items_of_a_job_and_its_images_answer_each_access_pattern(aws: tuple[Any, Any]) -> None:
    s3, table = aws
    index = ImageIndex(table, expiration_days=7)
    plan = plan_of(ALICE, "job-1")
    records = run_job(s3, index, plan, FakeBedrock(*answers(2)))
    manifest = {"status": "SUCCEEDED", "succeeded": 2, "filtered": 0, "failed": 0, "images": records}
    assert index.finish_job(plan, manifest)

    (job,), more = index.jobs(ALICE.namespace)
    assert job["job_id"] == "job-1" and job["status"] == "SUCCEEDED" and job["succeeded"] == 2 and not more
    assert job["thumbnail_key"] == records[0]["key"] and job["count"] == 2 and job["stopped_at"]
    images = index.job_images(ALICE.namespace, "job-1")
    assert [i["index"] for i in images] == [0, 1]
    first = images[0]
    assert first["key"] == records[0]["key"] and first["seed"] == 10 and first["status"] == "SUCCEEDED"
    assert first["prompt"] == "a red lighthouse at dusk" and first["model"] == "stable-image-core"
    assert (
        first["cost_usd"] == 0.04 and first["size_bytes"] > 0 and first["parameters"]["aspect_ratio"] == "1:1"
    )
    created = datetime.fromisoformat(first["created_at"].replace("Z", "+00:00"))
    assert abs(first["expires_at"] - (created + timedelta(days=7)).timestamp()) < 2  # the bucket's retention
    assert index.image_by_key(records[1]["key"])["index"] == 1


def test_a_callers_jobs_come_newest_first_and_page(aws: tuple[Any, Any]) -> None:
    _, table = aws
    index = ImageIndex(table)
    for n in range(3):  # started a millisecond apart, in another order than their names
        index.put_job(
            plan_of(ALICE, f"job-{n}"), started=datetime(2026, 11, 30, 10, 0, 0, (2 - n) * 1000, UTC)
        )
        index.put_job(plan_of(BOB, f"job-{n}"))
    first, key = index.jobs(ALICE.namespace, limit=2)
    assert [j["job_id"] for j in first] == ["job-0", "job-1"] and key is not None
    rest, end = index.jobs(ALICE.namespace, limit=2, start=key)
    assert [j["job_id"] for j in rest] == ["job-2"] and end is None
    assert {j["caller_namespace"] for j in first + rest} == {ALICE.namespace}  # never bob's


def test_a_job_item_follows_its_job_whoever_writes_first(aws: tuple[Any, Any]) -> None:
    """The API's write at the start, ValidateRequest's plan and BuildManifest's end, in any order:
    the item ends with the plan's values and the final status, and a late start write changes nothing."""
    _, table = aws
    index = ImageIndex(table)
    plan = plan_of(ALICE, "job-1", prompt="A Lighthouse", count=3)
    started = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert index.put_job(plan, started=started)
    (job,), _ = index.jobs(ALICE.namespace)
    assert (job["status"], job["count"], job["model"]) == ("RUNNING", 3, "stable-image-core")
    images = [
        {"index": 0, "status": "FAILED", "key": None},
        {"index": 2, "status": "SUCCEEDED", "key": "k/image-02.png"},
        {"index": 1, "status": "SUCCEEDED", "key": "k/image-01.png"},
    ]
    manifest = {"status": "PARTIAL", "succeeded": 2, "filtered": 0, "failed": 1, "images": images}
    assert index.finish_job(plan, manifest)
    assert index.job_started(
        ALICE.namespace, "job-1", started=started, execution_name="x", request={"prompt": "late"}
    )
    (job,), _ = index.jobs(ALICE.namespace)
    assert (job["status"], job["failed"], job["thumbnail_key"]) == ("PARTIAL", 1, "k/image-01.png")
    assert job["prompt"] == "A Lighthouse" and job["started_at"] == "2026-11-30T10:00:00+00:00"
    assert index.put_job(plan, started=started)  # a late plan does not make it RUNNING again
    assert index.jobs(ALICE.namespace)[0][0]["status"] == "PARTIAL"
    index.finish_job(plan, {**manifest, "cancelled": True})
    assert index.jobs(ALICE.namespace)[0][0]["status"] == "CANCELLED"


def test_a_job_refused_before_its_plan_is_failed_with_the_reason(aws: tuple[Any, Any]) -> None:
    _, table = aws
    index = ImageIndex(table)
    started = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    index.job_started(
        ALICE.namespace, "job-9", started=started, execution_name="ns-job-9", request={"prompt": 5}
    )
    assert index.fail_job(
        ALICE.namespace, "job-9", started=started, error="InvalidRequest", message="count: too many",
        request={"prompt": "a cat", "model": "nope"},
    )  # fmt: skip
    (job,), _ = index.jobs(ALICE.namespace, statuses={"FAILED"})
    assert (job["status"], job["error"], job["error_message"]) == (
        "FAILED",
        "InvalidRequest",
        "count: too many",
    )
    assert job["prompt"] == "a cat" and job["model"] == "nope" and job["stopped_at"]
    assert index.jobs(ALICE.namespace, statuses={"RUNNING"}) == ([], None)


def test_a_filtered_list_reads_a_bounded_number_of_items(aws: tuple[Any, Any]) -> None:
    _, table = aws
    index = ImageIndex(table)
    for n in range(5):
        started = datetime(2026, 11, 30, 10, n, tzinfo=UTC)
        index.put_job(plan_of(ALICE, f"job-{n}"), started=started)
    index.finish_job(plan_of(ALICE, "job-0"), {"status": "SUCCEEDED", "images": []})
    found, key = index.jobs(ALICE.namespace, statuses={"SUCCEEDED"}, limit=10, max_read=3)
    assert found == [] and key is not None  # three RUNNING jobs read, none kept: more to read
    found, key = index.jobs(ALICE.namespace, statuses={"SUCCEEDED"}, limit=10, start=key, max_read=3)
    assert [j["job_id"] for j in found] == ["job-0"] and key is None


def test_a_failed_index_write_is_counted_never_raised(aws: tuple[Any, Any]) -> None:
    s3, _ = aws
    missing = ImageIndex(boto3.resource("dynamodb", region_name="us-east-1").Table("no-such-table"))
    plan = plan_of(ALICE, "job-1")
    assert missing.put_job(plan) is False
    records = run_job(s3, missing, plan, FakeBedrock(*answers(2)))  # the lookup fails too: a miss
    assert [r["status"] for r in records] == ["SUCCEEDED", "SUCCEEDED"]
    assert missing.finish_job(plan, {"status": "SUCCEEDED"}) is False
    assert (
        missing.job_started(ALICE.namespace, "j", started=datetime.now(UTC), execution_name="n", request={})
        is False
    )


# -- the prompt cache ------------------------------------------------------------------------------------------


def test_the_same_determined_request_is_copied_not_generated(aws: tuple[Any, Any]) -> None:
    s3, table = aws
    index = ImageIndex(table)
    first = run_job(s3, index, plan_of(ALICE, "job-1"), FakeBedrock(*answers(2)))
    bedrock = FakeBedrock()  # no answer: a call would fail the test
    again = run_job(s3, index, plan_of(ALICE, "job-2"), bedrock)
    assert bedrock.calls == []
    for before, after in zip(first, again, strict=True):
        assert (
            after["cached"] is True
            and after["cached_from"] == before["key"]
            and after["key"] != before["key"]
        )
        assert after["status"] == "SUCCEEDED" and after["seed"] == before["seed"]
        copy = s3.get_object(Bucket=BUCKET, Key=after["key"])
        assert copy["Body"].read() == s3.get_object(Bucket=BUCKET, Key=before["key"])["Body"].read()
        assert copy["Metadata"]["cached-from"] == before["key"]
    cached_items = index.job_images(ALICE.namespace, "job-2")
    assert [i["cost_usd"] for i in cached_items] == [0, 0]
    assert cached_items[0]["parent_key"] == first[0]["key"]  # lineage


def test_no_seed_opt_out_another_caller_or_another_parameter_calls_the_model(aws: tuple[Any, Any]) -> None:
    s3, table = aws
    index = ImageIndex(table)
    run_job(s3, index, plan_of(ALICE, "job-1"), FakeBedrock(*answers(2)))
    for caller, fields in ((ALICE, {"cache": False}), (BOB, {}), (ALICE, {"negative_prompt": "fog"})):
        bedrock = FakeBedrock(*answers(2))
        records = run_job(
            s3, index, plan_of(caller, f"job-{caller.namespace}-{len(fields)}", **fields), bedrock
        )
        assert len(bedrock.calls) == 2 and not any(r.get("cached") for r in records), (caller, fields)


def test_a_shared_cache_serves_another_callers_image(aws: tuple[Any, Any]) -> None:
    s3, table = aws
    shared = ImageIndex(table, share_cache=True)
    run_job(s3, shared, plan_of(ALICE, "job-1"), FakeBedrock(*answers(2)))
    bedrock = FakeBedrock()
    records = run_job(s3, shared, plan_of(BOB, "job-2"), bedrock)
    assert bedrock.calls == [] and all(r["cached"] for r in records)
    assert all(r["key"].startswith(BOB.namespace + "/") for r in records)  # copied into bob's folder


def test_a_cached_image_whose_object_is_gone_is_generated_again(aws: tuple[Any, Any]) -> None:
    s3, table = aws
    index = ImageIndex(table)
    first = run_job(s3, index, plan_of(ALICE, "job-1"), FakeBedrock(*answers(2)))
    s3.delete_object(Bucket=BUCKET, Key=first[0]["key"])
    bedrock = FakeBedrock(*answers(1))
    records = run_job(s3, index, plan_of(ALICE, "job-2"), bedrock)
    assert len(bedrock.calls) == 1
    assert [bool(r.get("cached")) for r in records] == [False, True]


def test_an_expired_item_is_not_served(aws: tuple[Any, Any]) -> None:
    s3, table = aws
    index = ImageIndex(table)
    plan = plan_of(ALICE, "job-1")
    run_job(s3, index, plan, FakeBedrock(*answers(2)))
    adapter = get_adapter("stable-image-core")
    key = cache_key(
        adapter.model_id, adapter.build_body(plan["request"], 10), namespace=ALICE.namespace, shared=False
    )
    assert index.find_cached(key) is not None
    assert index.find_cached(key, now=(datetime.now(UTC) + timedelta(days=31)).timestamp()) is None


# -- search ------------------------------------------------------------------------------------------------------


def _resolve(name: str) -> str | FieldError:
    return (
        name if name in {"stable-image-core", "sd3-5-large"} else FieldError("model", f"unknown model {name}")
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"limit": "5"}, "q"),
        ({"q": "!!!"}, "q"),
        ({"model": "dall-e-3"}, "model"),
        ({"since": "2026-11-30", "until": "2026-11-01"}, "until"),
        ({"since": "yesterday"}, "since"),
        ({"q": "x", "limit": str(SEARCH_MAX_LIMIT + 1)}, "limit"),
        ({"q": "x", "limit": "0"}, "limit"),
        ({"q": "x", "caller": "bob"}, "caller"),
    ],
)
def test_bad_searches_name_the_field(params: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_search(params, resolve_model=_resolve)
    assert field in [e.field for e in raised.value.errors]


def test_search_finds_a_callers_images_by_words_model_and_time_and_pages(aws: tuple[Any, Any]) -> None:
    s3, table = aws
    index = ImageIndex(table)
    run_job(s3, index, plan_of(ALICE, "job-1", count=3), FakeBedrock(*answers(3)))
    run_job(s3, index, plan_of(ALICE, "job-2", prompt="a blue boat", seed=50), FakeBedrock(*answers(2)))
    run_job(s3, index, plan_of(BOB, "job-3", count=3), FakeBedrock(*answers(3)))

    def search(**params: str) -> tuple[list[dict[str, Any]], str | None]:
        return index.search(ALICE.namespace, parse_search(params, resolve_model=_resolve))

    found, token = search(q="Lighthouse red")
    assert len(found) == 3 and token is None and {i["job_id"] for i in found} == {"job-1"}
    assert all(i["caller_namespace"] == ALICE.namespace for i in found)  # bob's images never appear
    assert [i["job_id"] for i in search(model="stable-image-core")[0]] == ["job-2"] * 2 + ["job-1"] * 3
    assert search(model="sd3-5-large")[0] == []
    assert search(q="lighthouse", until="2000-01-01")[0] == []
    assert len(search(since=datetime.now(UTC).date().isoformat())[0]) == 5

    page, token = search(q="red", limit="2")
    assert len(page) == 2 and token
    rest, last = search(q="red", limit="2", next_token=token)
    assert len(rest) == 1 and last is None
    assert {i["key"] for i in page} | {rest[0]["key"]} == {i["key"] for i in found}
    with pytest.raises(InvalidRequest, match="next_token"):  # a token is its caller's only
        index.search(BOB.namespace, SearchQuery(words=("red",), next_token=token))

    answer = search_answer(found, None, presign=lambda key: f"https://signed/{key}")
    assert answer["count"] == 3 and answer["images"][0]["url"].startswith("https://signed/")
    assert json.loads(json.dumps(answer)) == answer


def test_filtered_images_are_indexed_but_never_found_or_cached(aws: tuple[Any, Any]) -> None:
    s3, table = aws
    index = ImageIndex(table)
    plan = plan_of(ALICE, "job-1", count=1)
    filtered = {"seeds": [10], "finish_reasons": ["Filter reason: output image"], "images": [None]}
    (record,) = run_job(s3, index, plan, FakeBedrock(filtered))
    assert record["status"] == "FILTERED"
    (item,) = index.job_images(ALICE.namespace, "job-1")
    assert item["status"] == "FILTERED" and item["reason_code"] and item["cost_usd"] == 0.04
    assert index.search(ALICE.namespace, SearchQuery(words=("lighthouse",)))[0] == []
    bedrock = FakeBedrock(*answers(1))
    run_job(s3, index, plan_of(ALICE, "job-2", count=1), bedrock)
    assert len(bedrock.calls) == 1


def test_the_stored_image_is_read_back_unchanged(aws: tuple[Any, Any]) -> None:
    s3, table = aws
    index = ImageIndex(table)
    (record,) = run_job(s3, index, plan_of(ALICE, "job-1", count=1), FakeBedrock(*answers(1)))
    body = s3.get_object(Bucket=BUCKET, Key=record["key"])["Body"].read()
    assert io.BytesIO(body).read(8) == b"\x89PNG\r\n\x1a\n"


def test_an_images_lineage_is_indexed_with_its_parent(aws: tuple[Any, Any]) -> None:
    """A refinement's record carries its lineage (issue 16: the operation, the source image, its
    parameters): the item keeps it and names the source as its parent; a cache copy's parent is the
    image it was copied from; an image made from its prompt alone has none."""
    _, table = aws
    index = ImageIndex(table)
    plan = plan_of(ALICE, "job-1", count=3)
    lineage = {"operation": "upscale", "source_image": "ns/images/old/image-00-7.png", "parameters": {}}
    records = [
        {"index": 0, "status": "SUCCEEDED", "key": "k/0.png", "seed": 10, "lineage": lineage},
        {
            "index": 1,
            "status": "SUCCEEDED",
            "key": "k/1.png",
            "seed": 11,
            "cached": True,
            "cached_from": "c/1.png",
        },
        {"index": 2, "status": "SUCCEEDED", "key": "k/2.png", "seed": 12},
    ]
    for record in records:
        assert index.put_image(branch(plan, record["index"]), record, cost_usd=0.04, cache_key=None)
    items = index.job_images(ALICE.namespace, "job-1")
    assert [i.get("parent_key") for i in items] == ["ns/images/old/image-00-7.png", "c/1.png", None]
    assert items[0]["lineage"]["operation"] == "upscale" and "lineage" not in items[2]


def test_a_refined_image_is_indexed_under_its_source(aws: tuple[Any, Any]) -> None:
    """An upscale of a stored image (issue 16) run by the image branch: its item names the source as
    its parent and keeps the operation; the job's item has the refine request's parameters."""
    s3, table = aws
    index = ImageIndex(table)
    source = f"{ALICE.namespace}/images/job-0/image-00-7.png"
    s3.put_object(Bucket=BUCKET, Key=source, Body=base64.b64decode(png_b64(96, 64)), ContentType="image/png")
    settings = Settings(images_bucket=BUCKET, allowed_models=(), region="us-west-2")
    checked = planning.check_request({"source_image": source, "operation": "upscale"}, settings)
    plan = planning.plan(checked, "job-up", caller=ALICE)
    index.put_job(plan)
    (record,) = run_job(
        s3, index, plan, FakeBedrock({"seeds": [3], "finish_reasons": [None], "images": [png_b64(384, 256)]})
    )
    assert record["status"] == "SUCCEEDED"
    (item,) = index.job_images(ALICE.namespace, "job-up")
    assert item["parent_key"] == source and item["lineage"]["operation"] == "upscale"
    assert index.image_by_key(record["key"])["parent_key"] == source
    (job,), _ = index.jobs(ALICE.namespace)
    assert job["parameters"]["operation"] == "upscale" and job["parameters"]["source_image"] == source
