"""Signed webhooks (core/webhooks.py, core/webhook_delivery.py, handlers/deliver_webhook.py): where a
webhook may point, the signature (verified with the ``standardwebhooks`` package, never our code), the
retry schedule, and deliveries to a receiver on 127.0.0.1 through the deployed handler (moto S3, SQS
and Secrets Manager)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from image_pipeline.contract.errors import InvalidRequest
from image_pipeline.contract.request import parse_request
from image_pipeline.core import webhooks
from image_pipeline.core.planning import check_request
from image_pipeline.core.settings import Settings
from image_pipeline.core.tenancy import Caller, execution_name
from image_pipeline.core.webhooks import (
    BACKOFF_SECONDS,
    MAX_ATTEMPTS,
    MAX_VISIBILITY_SECONDS,
    Delivery,
    retry_window_seconds,
    signature_headers,
    webhook_problems,
    webhook_target,
)
from standardwebhooks import Webhook

from tests.webhook_receiver import webhook_receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def public_resolver(host: str, port: int) -> list[str]:
    return {"hooks.example.com": ["93.184.215.14"], "rebind.example.com": ["10.1.2.3"]}.get(host, [])


# -- the request -------------------------------------------------------------------------------------


def test_the_request_takes_a_webhook_and_its_events_strictly() -> None:
    request = parse_request(
        {"prompt": "a", "webhook": "https://hooks.example.com/x", "webhook_events": ["completed", "image"]}
    )
    assert request.webhook == "https://hooks.example.com/x"
    assert request.webhook_events == ["completed", "image"]
    for bad in (
        {"webhook_events": "image"},
        {"webhook_events": []},
        {"webhook_events": ["image", "image"]},
        {"webhook_events": ["done"]},
        {"webhook": 5},
        {"webhook": "https://a b"},
        {"webhook": "ftp://hooks.example.com"},
    ):
        with pytest.raises(InvalidRequest) as refused:
            parse_request({"prompt": "a", **bad})
        assert refused.value.errors[0].field == next(iter(bad)), bad


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",  # not https
        "https://10.0.0.1/x",
        "https://10.255.1.1:8443/x",
        "https://192.168.1.1/",
        "https://172.16.0.1/",
        "https://169.254.169.254/latest/meta-data/",
        "https://127.0.0.1/",
        "https://[::1]/",
        "https://[fe80::1]/",
        "https://[::ffff:10.0.0.1]/",
        "https://224.0.0.1/",
        "https://0.0.0.0/",
        "https://240.0.0.1/",
        "https://100.64.0.1/",  # shared address space (carrier-grade NAT)
        "https://localhost/",  # resolves to 127.0.0.1
        "https://rebind.example.com/",  # resolves to 10.1.2.3
        "https://nowhere.invalid/",
        "https://user:pass@hooks.example.com/",
    ],
)
def test_a_deployed_webhook_must_be_https_to_a_public_address(url: str) -> None:
    resolver = webhooks.resolve if "localhost" in url else public_resolver
    problems = webhook_problems(url, None, network="public", resolver=resolver)
    assert [p.field for p in problems] == ["webhook"], url


def test_a_public_https_webhook_is_taken() -> None:
    target = webhook_target("https://hooks.example.com/in?x=1", network="public", resolver=public_resolver)
    assert not isinstance(target, str)
    assert (target.host, target.port, target.path, target.address) == (
        "hooks.example.com",
        443,
        "/in?x=1",
        "93.184.215.14",
    )


def test_offline_a_webhook_must_point_to_this_machine() -> None:
    for url in ("http://127.0.0.1:9000/h", "https://localhost/h", "http://[::1]:80/"):
        assert webhook_problems(url, None, network="loopback") == [], url
    for url in ("http://10.0.0.1/", "https://93.184.215.14/", "ftp://127.0.0.1/"):
        assert [p.field for p in webhook_problems(url, None, network="loopback")] == ["webhook"], url


def test_events_without_a_webhook_are_refused() -> None:
    assert [p.field for p in webhook_problems(None, ["image"], network="public")] == ["webhook_events"]


def test_check_request_refuses_a_private_webhook_before_anything_starts(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WEBHOOK_NETWORK", raising=False)
    for url in ("https://169.254.169.254/", "https://localhost/hook", "http://127.0.0.1:8000/"):
        with pytest.raises(InvalidRequest) as refused:
            check_request({"prompt": "a cat", "webhook": url}, settings)
        assert [e.field for e in refused.value.errors] == ["webhook"]
        assert "webhook" in str(refused.value)
    monkeypatch.setenv("WEBHOOK_NETWORK", "loopback")
    check_request({"prompt": "a cat", "webhook": "http://127.0.0.1:8000/"}, settings)


# -- signing and retries -----------------------------------------------------------------------------


def test_the_signature_is_what_standardwebhooks_verifies() -> None:
    body = json.dumps({"type": "job.completed", "job": {"job_id": "x"}}).encode()
    now = int(datetime.now(UTC).timestamp())
    headers = signature_headers(SECRET, "msg_1", body, timestamp=now)
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(body, headers) == {"type": "job.completed", "job": {"job_id": "x"}}
    # The bare base64, as Secrets Manager generates it, is the same key.
    assert Webhook(SECRET.removeprefix("whsec_")).verify(body, headers)
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(body + b" ", headers)


def test_deliveries_are_retried_for_more_than_a_day_within_sqs_limits() -> None:
    assert retry_window_seconds() >= 24 * 3600
    assert retry_window_seconds() == sum(BACKOFF_SECONDS[: MAX_ATTEMPTS - 1])
    assert all(0 < s <= MAX_VISIBILITY_SECONDS for s in BACKOFF_SECONDS)
    assert list(BACKOFF_SECONDS) == sorted(BACKOFF_SECONDS)


# -- the deployed handler, with an SQS event ---------------------------------------------------------


CALLER = Caller("apiKey", "key-1")


class FakeStepFunctions:
    """DescribeExecution of ended executions (the rest is moto)."""

    def __init__(self) -> None:
        self.executions: dict[str, dict[str, Any]] = {}

    def add(self, job_id: str, request: dict[str, Any], manifest: dict[str, Any]) -> str:
        name = execution_name(CALLER, job_id)
        arn = f"arn:aws:states:us-west-2:123456789012:execution:imagegen-jobs:{name}"
        caller = CALLER
        self.executions[arn] = {
            "executionArn": arn,
            "name": name,
            "status": "SUCCEEDED",
            "startDate": datetime(2026, 11, 30, 12, tzinfo=UTC),
            "stopDate": datetime(2026, 11, 30, 12, 1, tzinfo=UTC),
            "input": json.dumps({"request": request, "caller": caller.to_input()}),
            "output": json.dumps(manifest),
        }
        return arn

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        return self.executions[executionArn]


MANIFEST = {
    "request_id": "job-1",
    "status": "SUCCEEDED",
    "bucket": "test-bucket",
    "requested": 2,
    "succeeded": 2,
    "filtered": 0,
    "failed": 0,
    "images": [
        {"index": 0, "seed": 1, "status": "SUCCEEDED", "key": "ns/images/job-1/image-0-1.png"},
        {"index": 1, "seed": 2, "status": "SUCCEEDED", "key": "ns/images/job-1/image-1-2.png"},
    ],
}


@pytest.fixture
def deployed(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto S3, SQS (a delivery queue with its DLQ) and Secrets Manager, the handler's environment,
    and the handler module imported inside the mock."""
    import boto3
    from moto import mock_aws

    with mock_aws():  # names of their own: an offline engine's session mock may be running
        suffix = uuid.uuid4().hex[:8]
        bucket = f"webhook-records-{suffix}"
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        sqs = boto3.client("sqs")
        dlq = sqs.create_queue(QueueName=f"dlq-{suffix}")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        queue = sqs.create_queue(
            QueueName=f"deliveries-{suffix}",
            Attributes={
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})
            },
        )["QueueUrl"]
        secret = boto3.client("secretsmanager").create_secret(
            Name=f"webhook-{suffix}", SecretString=SECRET.removeprefix("whsec_")
        )["ARN"]
        for key, value in {
            "IMAGES_BUCKET": bucket,
            "WEBHOOK_QUEUE_URL": queue,
            "WEBHOOK_SECRET_ARN": secret,
            "WEBHOOK_NETWORK": "loopback",  # the receiver is on 127.0.0.1
            "WEBHOOK_MAX_ATTEMPTS": "3",
        }.items():
            monkeypatch.setenv(key, value)
        from image_pipeline.handlers import deliver_webhook

        for cached in (deliver_webhook._settings, deliver_webhook._clients, deliver_webhook._secret):
            cached.cache_clear()
        fake = FakeStepFunctions()
        _, real_s3, real_sqs = deliver_webhook._clients()
        monkeypatch.setattr(deliver_webhook, "_clients", lambda: (fake, real_s3, real_sqs))
        yield {
            "handler": deliver_webhook.handler,
            "sfn": fake,
            "sqs": sqs,
            "queue": queue,
            "dlq": dlq,
            "s3": s3,
            "bucket": bucket,
        }
        for cached in (deliver_webhook._settings, deliver_webhook._secret):
            cached.cache_clear()


def sqs_event(sqs: Any, queue: str) -> dict[str, Any]:
    """The event Lambda's SQS poller gives the function, from the messages on ``queue`` now."""
    got = sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"]
    ).get("Messages", [])
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"]},
                "eventSource": "aws:sqs",
            }
            for m in got
        ]
    }


def status_change(arn: str) -> str:
    return json.dumps(
        {
            "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states",
            "detail": {"executionArn": arn, "status": "SUCCEEDED"},
        }
    )


def run(deployed: dict[str, Any], lambda_context: Any) -> dict[str, Any]:
    """One poll of the queue through the handler; deletes what it handled (as Lambda does)."""
    event = sqs_event(deployed["sqs"], deployed["queue"])
    answer = deployed["handler"](event, lambda_context)
    failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    for record in event["Records"]:
        if record["messageId"] not in failed:
            deployed["sqs"].delete_message(QueueUrl=deployed["queue"], ReceiptHandle=record["receiptHandle"])
    return answer


def test_the_handler_delivers_signed_job_and_image_events(
    deployed: dict[str, Any], lambda_context: Any
) -> None:
    with webhook_receiver() as receiver:
        request = {
            "prompt": "a",
            "count": 2,
            "webhook": receiver.url,
            "webhook_events": ["completed", "image"],
        }
        arn = deployed["sfn"].add("job-1", request, MANIFEST)
        deployed["sqs"].send_message(QueueUrl=deployed["queue"], MessageBody=status_change(arn))
        assert run(deployed, lambda_context) == {"batchItemFailures": []}  # fanned out: 3 deliveries
        assert run(deployed, lambda_context) == {"batchItemFailures": []}  # the three, delivered
        bodies = [Webhook(SECRET).verify(r.body, r.headers) for r in receiver.received]
    assert sorted(b["type"] for b in bodies) == ["job.completed", "job.image", "job.image"]
    completed = next(b for b in bodies if b["type"] == "job.completed")
    assert completed["job"]["job_id"] == "job-1"
    assert completed["job"]["status"] == "succeeded"
    assert [i["index"] for i in completed["job"]["manifest"]["images"]] == [0, 1]
    assert sorted(b["image"]["index"] for b in bodies if b["type"] == "job.image") == [0, 1]
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert len(ids) == 3
    records = webhooks.job_webhooks(deployed["s3"], deployed["bucket"], execution_name(CALLER, "job-1"))
    assert [(r["event"], r["attempts"], r["last_status"]) for r in records] == [
        ("image", 1, 200),
        ("image", 1, 200),
        ("completed", 1, 200),
    ]
    assert all(r["delivered_at"] for r in records)


def test_a_failed_attempt_is_retried_after_its_backoff_and_recorded(
    deployed: dict[str, Any], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    visibility: list[int] = []
    sqs = deployed["sqs"]
    real_change = sqs.change_message_visibility
    from image_pipeline.handlers import deliver_webhook

    def change(**kwargs: Any) -> Any:
        visibility.append(kwargs["VisibilityTimeout"])
        return real_change(**{**kwargs, "VisibilityTimeout": 0})

    monkeypatch.setattr(deliver_webhook._clients()[2], "change_message_visibility", change)
    with webhook_receiver([500, 503]) as receiver:
        arn = deployed["sfn"].add("job-2", {"prompt": "a", "webhook": receiver.url}, MANIFEST)
        delivery = Delivery(arn, "completed")
        sqs.send_message(QueueUrl=deployed["queue"], MessageBody=json.dumps(delivery.message()))
        answers = [run(deployed, lambda_context) for _ in range(3)]
        assert [len(a["batchItemFailures"]) for a in answers] == [1, 1, 0]
        Webhook(SECRET).verify(receiver.received[-1].body, receiver.received[-1].headers)
        assert len({r.headers["webhook-id"] for r in receiver.received}) == 1  # one id, three attempts
    assert visibility == [30, 60]  # the deployed schedule: 30 s, then 60 s
    (record,) = webhooks.job_webhooks(deployed["s3"], deployed["bucket"], execution_name(CALLER, "job-2"))
    assert (record["attempts"], record["last_status"], record["last_error"]) == (3, 200, None)


def test_a_webhook_that_always_fails_ends_in_the_dead_letter_queue(
    deployed: dict[str, Any], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = deployed["sqs"]
    with webhook_receiver(always=500) as receiver:
        arn = deployed["sfn"].add("job-3", {"prompt": "a", "webhook": receiver.url}, MANIFEST)
        sqs.send_message(
            QueueUrl=deployed["queue"], MessageBody=json.dumps(Delivery(arn, "completed").message())
        )
        monkeypatch.setenv("WEBHOOK_MAX_ATTEMPTS", "3")  # the queue's maxReceiveCount here
        real_change = sqs.change_message_visibility
        from image_pipeline.handlers import deliver_webhook

        monkeypatch.setattr(
            deliver_webhook._clients()[2],
            "change_message_visibility",
            lambda **kw: real_change(**{**kw, "VisibilityTimeout": 0}),
        )
        for _ in range(4):
            run(deployed, lambda_context)
        assert len(receiver.received) == 3
    dead = sqs.receive_message(QueueUrl=deployed["dlq"]).get("Messages", [])
    assert [json.loads(m["Body"]) for m in dead] == [Delivery(arn, "completed").message()]
    (record,) = webhooks.job_webhooks(deployed["s3"], deployed["bucket"], execution_name(CALLER, "job-3"))
    assert (record["attempts"], record["last_status"], record["dead_lettered"]) == (3, 500, True)
    assert record["delivered_at"] is None


def test_a_job_without_a_webhook_is_skipped(deployed: dict[str, Any], lambda_context: Any) -> None:
    arn = deployed["sfn"].add("job-4", {"prompt": "a"}, MANIFEST)
    deployed["sqs"].send_message(QueueUrl=deployed["queue"], MessageBody=status_change(arn))
    assert run(deployed, lambda_context) == {"batchItemFailures": []}
    assert deployed["sqs"].receive_message(QueueUrl=deployed["queue"]).get("Messages", []) == []


# -- image deliveries queued by the branch that stored the image ----------------------------------------


def branch_item(arn: str, *, image_webhook: bool = True) -> dict[str, Any]:
    """A Map item as the ASL's ItemSelector makes it (the fields the image webhook reads)."""
    return {"execution_arn": arn, "image_webhook": image_webhook, "image": {"index": 0}}


STORED = {
    "index": 0,
    "seed": 1,
    "key": f"{CALLER.namespace}/images/job-1/image-0-1.png",
    "status": "SUCCEEDED",
    "width": 64,
    "height": 64,
    "model_id": "stability.stable-image-core-v1:1",
}


def queued(deployed: dict[str, Any]) -> list[dict[str, Any]]:
    got = deployed["sqs"].receive_message(
        QueueUrl=deployed["queue"], MaxNumberOfMessages=10, VisibilityTimeout=0
    )
    return [json.loads(m["Body"]) for m in got.get("Messages", [])]


def test_a_branch_queues_its_image_once_and_the_job_end_only_the_others(
    deployed: dict[str, Any], lambda_context: Any
) -> None:
    """The branch claims image 0's record and queues it (with its record); the job's end then queues
    only image 1 (not claimed: say its branch failed) and the completion."""
    sqs, queue = deployed["sqs"], deployed["queue"]
    send = lambda body: sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))  # noqa: E731
    with webhook_receiver() as receiver:
        request = {
            "prompt": "a",
            "count": 2,
            "webhook": receiver.url,
            "webhook_events": ["image", "completed"],
        }
        arn = deployed["sfn"].add("job-5", request, MANIFEST)
        s3, bucket = deployed["s3"], deployed["bucket"]
        assert webhooks.queue_image_delivery(branch_item(arn), STORED, s3=s3, bucket=bucket, send=send)
        assert not webhooks.queue_image_delivery(branch_item(arn), STORED, s3=s3, bucket=bucket, send=send)
        (message,) = queued(deployed)
        assert message["webhook_delivery"]["record"]["key"] == STORED["key"]
        (record,) = webhooks.job_webhooks(s3, bucket, execution_name(CALLER, "job-5"))
        assert (record["event"], record["index"], record["attempts"]) == ("image", 0, 0)
        assert record["queued_at"]

        sqs.send_message(QueueUrl=queue, MessageBody=status_change(arn))
        run(deployed, lambda_context)  # image 0 delivered; the job's end fanned out image 1 and completed
        run(deployed, lambda_context)
        bodies = [Webhook(SECRET).verify(r.body, r.headers) for r in receiver.received]
    images = [b["image"]["index"] for b in bodies if b["type"] == "job.image"]
    assert sorted(images) == [0, 1]  # each once: image 0 by its branch, image 1 by the job's end
    assert [b["type"] for b in bodies].count("job.completed") == 1
    first = next(b for b in bodies if b["type"] == "job.image" and b["image"]["index"] == 0)
    assert first["job_id"] == "job-5"
    assert (first["image"]["seed"], first["image"]["status"]) == (1, "SUCCEEDED")
    assert "X-Amz-Signature=" in first["image"]["url"]  # presigned for the caller's own key


def test_only_stored_or_filtered_images_of_a_job_that_asked_are_queued_by_their_branch(
    deployed: dict[str, Any],
) -> None:
    sent: list[dict[str, Any]] = []
    s3, bucket = deployed["s3"], deployed["bucket"]
    arn = deployed["sfn"].add("job-6", {"prompt": "a", "webhook": "http://127.0.0.1/x"}, MANIFEST)
    cancelled = {**STORED, "status": "CANCELLED", "key": None}
    assert not webhooks.queue_image_delivery(
        branch_item(arn), cancelled, s3=s3, bucket=bucket, send=sent.append
    )
    assert not webhooks.queue_image_delivery(
        branch_item(arn, image_webhook=False), STORED, s3=s3, bucket=bucket, send=sent.append
    )
    filtered = {
        **STORED,
        "index": 1,
        "status": "FILTERED",
        "key": None,
        "reason_code": "CONTENT_FILTERED_OUTPUT",
    }
    assert webhooks.queue_image_delivery(branch_item(arn), filtered, s3=s3, bucket=bucket, send=sent.append)
    assert [m["webhook_delivery"]["record"]["reason_code"] for m in sent] == ["CONTENT_FILTERED_OUTPUT"]


def test_a_message_that_cannot_be_sent_gives_its_claim_back(deployed: dict[str, Any]) -> None:
    """The job's end then claims and queues the image: nothing is lost."""
    s3, bucket = deployed["s3"], deployed["bucket"]
    arn = deployed["sfn"].add("job-7", {"prompt": "a", "webhook": "http://127.0.0.1/x"}, MANIFEST)

    def refused(body: dict[str, Any]) -> None:
        raise RuntimeError("SQS is unavailable")

    with pytest.raises(RuntimeError):
        webhooks.queue_image_delivery(branch_item(arn), STORED, s3=s3, bucket=bucket, send=refused)
    assert webhooks.job_webhooks(s3, bucket, execution_name(CALLER, "job-7")) == []
    assert webhooks.claim(s3, bucket, webhooks.Delivery(arn, "image", 0))


def test_a_branch_queued_image_of_a_running_job_is_delivered(
    deployed: dict[str, Any], lambda_context: Any
) -> None:
    with webhook_receiver() as receiver:
        request = {"prompt": "a", "webhook": receiver.url, "webhook_events": ["image"]}
        arn = deployed["sfn"].add("job-8", request, MANIFEST)
        deployed["sfn"].executions[arn].update(status="RUNNING", output=None, stopDate=None)
        sqs, queue = deployed["sqs"], deployed["queue"]
        send = lambda body: sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))  # noqa: E731
        webhooks.queue_image_delivery(
            branch_item(arn), STORED, s3=deployed["s3"], bucket=deployed["bucket"], send=send
        )
        assert run(deployed, lambda_context) == {"batchItemFailures": []}
        (body,) = [Webhook(SECRET).verify(r.body, r.headers) for r in receiver.received]
    assert (body["type"], body["job_id"], body["image"]["index"]) == ("job.image", "job-8", 0)
    (record,) = webhooks.job_webhooks(deployed["s3"], deployed["bucket"], execution_name(CALLER, "job-8"))
    assert (record["attempts"], record["last_status"]) == (1, 200)


def test_a_job_end_seen_twice_queues_each_delivery_once(
    deployed: dict[str, Any], lambda_context: Any
) -> None:
    """EventBridge delivers at least once: a second copy of the job's end finds every delivery claimed."""
    with webhook_receiver() as receiver:
        request = {
            "prompt": "a",
            "count": 2,
            "webhook": receiver.url,
            "webhook_events": ["image", "completed"],
        }
        arn = deployed["sfn"].add("job-9", request, MANIFEST)
        for _ in range(2):
            deployed["sqs"].send_message(QueueUrl=deployed["queue"], MessageBody=status_change(arn))
        run(deployed, lambda_context)  # both copies fanned out: 3 deliveries, once
        names = sorted(Delivery.from_message(m).name for m in queued(deployed))  # type: ignore[union-attr]
        assert names == ["completed", "image-0", "image-1"]
        run(deployed, lambda_context)
        bodies = [Webhook(SECRET).verify(r.body, r.headers) for r in receiver.received]
    assert sorted(b["type"] for b in bodies) == ["job.completed", "job.image", "job.image"]
