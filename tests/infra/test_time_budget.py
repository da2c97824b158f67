"""The time budget of the deployed functions (``image_pipeline.core.time_budget``), from the real numbers:
the synthesized template's function timeouts and environment (the CDK context, the settings' defaults),
the state machines' definitions as synthesized (each Task state's ``TimeoutSeconds``), and the clients'
timeouts and attempts. Change any one of them and a test here fails, instead of a hung call ending as
a Lambda or state timeout.

* Each function's worst case (its AWS calls, every attempt timing out, the longest backoff, and its
  own code) fits in its timeout: the model step (Bedrock, then the S3 write), the manifest step (the
  HeadObject checks, then the manifest's PutObject), the HTTP API's waits.
* Each Lambda Task state allows its function's timeout plus Lambda's 10 s Init phase.
* The inpaint mask check (pure Python, CPU-bound) of the largest mask any model allows fits, at the
  memory of each function that runs it (Lambda's CPU share), in its timeout.
* Every Task state has a ``TimeoutSeconds`` (a Task without one waits up to the execution's limit).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from image_pipeline.core import time_budget
from image_pipeline.core.admission import EARLY_HAND_OFF_TICKETS, HAND_OFF_TICKETS
from image_pipeline.core.manifest import HEAD_WORKERS
from image_pipeline.core.settings import Settings
from image_pipeline.functions import ADMISSION, BUILD_MANIFEST, GENERATE_IMAGE, HTTP_API, VALIDATE_REQUEST
from image_pipeline.models.registry import list_adapters
from pydantic import ValidationError

from stacks.workflow import GENERATE_IMAGE_TIMEOUT, check_time_budget
from tests.infra.asl import state_machines
from tests.infra.stack_template import method
from tests.infra.synthesis import Synthesized

DEPLOYMENTS = ["synthesized", "variant"]


def deployment(request: pytest.FixtureRequest, name: str) -> Synthesized:
    synth: Synthesized = request.getfixturevalue(name)
    return synth


def function_by_handler(synth: Synthesized, handler: str) -> dict[str, Any]:
    found = [
        f["Properties"]
        for f in synth.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == handler
    ]
    assert len(found) == 1, handler
    return found[0]


def settings_of(function: dict[str, Any]) -> Settings:
    """The settings the function reads at its cold start (CloudFormation references left out)."""
    variables = function["Environment"]["Variables"]
    return Settings.from_environ({k: v for k, v in variables.items() if isinstance(v, str)})


def definition_of(synth: Synthesized, machine: dict[str, Any]) -> dict[str, Any]:
    """A synthesized state machine's definition: its asset, placeholders left in (they are in strings)."""
    asset = synth.outdir / f"asset.{machine['Properties']['DefinitionS3Location']['Key']}"
    definition: dict[str, Any] = json.loads(asset.read_text())
    return definition


def lambda_tasks(synth: Synthesized) -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(state machine, Task state, the state, the function it invokes) for every Lambda Task state of
    every synthesized state machine, the function found through the machine's substitutions."""
    functions = synth.resources("AWS::Lambda::Function")
    for machine_id, machine in synth.resources("AWS::StepFunctions::StateMachine").items():
        props = machine["Properties"]
        substitutions = props["DefinitionSubstitutions"]
        for _path, definition in state_machines(definition_of(synth, machine)):
            for name, state in definition["States"].items():
                if state["Type"] != "Task" or not state["Resource"].startswith("arn:aws:states:::lambda:"):
                    continue
                placeholder = state["Parameters"]["FunctionName"].removeprefix("${").removesuffix("}")
                function_id = substitutions[placeholder]["Fn::GetAtt"][0]
                yield machine_id, name, state, functions[function_id]["Properties"]


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_every_task_state_has_a_timeout(name: str, request: pytest.FixtureRequest) -> None:
    synth = deployment(request, name)
    tasks = 0
    for machine in synth.resources("AWS::StepFunctions::StateMachine").values():
        for _path, definition in state_machines(definition_of(synth, machine)):
            for state_name, state in definition["States"].items():
                if state["Type"] == "Task":
                    tasks += 1
                    assert isinstance(state.get("TimeoutSeconds"), int), state_name
    assert tasks >= 8  # 5 in the per-request workflow (twice), 3 in the batch


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_each_task_state_allows_its_function_timeout_and_lambdas_init(
    name: str, request: pytest.FixtureRequest
) -> None:
    synth = deployment(request, name)
    found = list(lambda_tasks(synth))
    assert {state for _m, state, _s, _f in found} == {
        "ValidateRequest",
        "AcquireSlot",
        "ReleaseSlot",
        "ReleaseSlotAfterFailure",
        "GenerateImage",
        "BuildManifest",
        "PrepareBatch",
        "BuildBatchManifest",
    }
    for machine, state_name, state, function in found:
        assert function["Timeout"] + time_budget.LAMBDA_INIT_SECONDS <= state["TimeoutSeconds"], (
            f"{machine}/{state_name}: the function's {function['Timeout']} s timeout and Lambda's "
            f"{time_budget.LAMBDA_INIT_SECONDS} s Init phase do not fit in TimeoutSeconds "
            f"{state['TimeoutSeconds']}"
        )


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_a_hung_model_call_and_the_image_write_end_before_the_model_step_times_out(
    name: str, request: pytest.FixtureRequest
) -> None:
    synth = deployment(request, name)
    function = function_by_handler(synth, GENERATE_IMAGE.handler)
    settings = settings_of(function)
    assert settings.bedrock_max_attempts == synth.config.bedrock_max_attempts  # the CDK context's
    bedrock = time_budget.bedrock(settings)
    worst = time_budget.generate_image_bound(settings)
    # a model call (or none: a cache hit), the hand-off of its admission slot to the oldest waiting
    # branch (one ticket, no fill: ReleaseSlot fills), one PutObject (or CopyObject), a cache lookup and
    # the index item, and the image's webhook: its record claimed, its message sent, the claim given
    # back if not sent
    index_calls = 2 * time_budget.INDEX_DYNAMODB.worst_case_seconds
    webhook_calls = 3 * time_budget.WEBHOOK_QUEUEING.worst_case_seconds
    assert time_budget.ADMISSION_EARLY_RELEASE.attempts == 1
    assert EARLY_HAND_OFF_TICKETS == 1
    hand_off = time_budget.admission_hand_off_bound(fill=False, tickets=EARLY_HAND_OFF_TICKETS)
    assert hand_off < time_budget.admission_hand_off_bound(fill=False)  # fewer tickets than ReleaseSlot's
    assert worst == (
        bedrock.worst_case_seconds
        + hand_off
        + time_budget.S3.worst_case_seconds
        + index_calls
        + webhook_calls
        + time_budget.CODE_SECONDS
    )
    assert worst <= function["Timeout"], f"Bedrock {bedrock.describe()}; S3 {time_budget.S3.describe()}"


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_an_admission_step_ends_before_its_function_and_its_task_state_time_out(
    name: str, request: pytest.FixtureRequest
) -> None:
    """The Admission function's worst case (an acquire, or a release handing its slot on and filling
    free slots: ``HAND_OFF_TICKETS`` tickets each) fits in its timeout; ReleaseSlot and
    ReleaseSlotAfterFailure allow that timeout and Lambda's Init; AcquireSlot, which also waits for its
    task token, allows at least as much (its ``TimeoutSeconds`` covers the invocation and the wait)."""
    synth = deployment(request, name)
    function = function_by_handler(synth, ADMISSION.handler)
    worst = time_budget.admission_bound()
    assert worst <= function["Timeout"], (
        f"the Admission function can take {worst} s at worst, more than its {function['Timeout']} s timeout"
    )
    # the bound covers a release with its fill, and the fill rounds of an acquire
    assert worst >= time_budget.admission_hand_off_bound(fill=True) + time_budget.CODE_SECONDS
    assert time_budget.admission_hand_off_bound(fill=True) > time_budget.admission_hand_off_bound(
        fill=False, tickets=HAND_OFF_TICKETS
    )
    invoked = time_budget.LAMBDA_INIT_SECONDS + function["Timeout"]
    states = {
        state_name: state
        for _m, state_name, state, fn in lambda_tasks(synth)
        if fn.get("Handler") == ADMISSION.handler
    }
    assert set(states) == {"AcquireSlot", "ReleaseSlot", "ReleaseSlotAfterFailure"}
    for state_name in ("ReleaseSlot", "ReleaseSlotAfterFailure"):
        assert states[state_name]["Resource"] == "arn:aws:states:::lambda:invoke"
        assert states[state_name]["TimeoutSeconds"] >= invoked, state_name
    acquire = states["AcquireSlot"]
    assert acquire["Resource"].endswith(".waitForTaskToken")
    assert acquire["TimeoutSeconds"] >= invoked


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_an_admission_lease_outlasts_every_live_holder(name: str, request: pytest.FixtureRequest) -> None:
    """A branch holds its slot from AcquireSlot until GenerateImage hands it on (or ReleaseSlot gives it
    back), across GenerateImage's retries; no live branch outlives its execution's TimeoutSeconds. A lease
    (written by the Admission function's take and by either function's hand-over) shorter than that could
    expire under a live holder: the keeper would reclaim it and the model would have one call more in
    flight than its limit. GenerateImage's own retries do not bound the hold (each retrier counts its own
    attempts: together more than the execution lasts), so the execution's limit is the bound."""
    synth = deployment(request, name)
    machines = [
        definition_of(synth, m)
        for m in synth.resources("AWS::StepFunctions::StateMachine").values()
        if "GenerateImages" in definition_of(synth, m)["States"]
    ]
    assert machines
    for definition in machines:
        execution_limit = definition["TimeoutSeconds"]
        branch = definition["States"]["GenerateImages"]["ItemProcessor"]["States"]
        generate = branch["GenerateImage"]
        attempts = 1 + sum(r["MaxAttempts"] for r in generate["Retry"])
        assert attempts * generate["TimeoutSeconds"] > execution_limit  # why the execution is the bound
        for handler in (ADMISSION.handler, GENERATE_IMAGE.handler):
            lease = settings_of(function_by_handler(synth, handler)).admission_lease_seconds
            assert lease >= execution_limit, (handler, lease, execution_limit)


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_the_manifest_checks_and_write_end_before_the_manifest_step_times_out(
    name: str, request: pytest.FixtureRequest
) -> None:
    synth = deployment(request, name)
    function = function_by_handler(synth, BUILD_MANIFEST.handler)
    settings = settings_of(function)
    worst = time_budget.build_manifest_bound(settings, head_workers=HEAD_WORKERS)
    assert worst <= function["Timeout"]
    # A request has at most 40 images whatever the context says: the bound holds for any deployment.
    with pytest.raises(ValidationError):
        Settings(max_images_per_request=41)
    most = Settings(max_images_per_request=40)
    assert time_budget.build_manifest_bound(most, head_workers=HEAD_WORKERS) <= function["Timeout"]


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_the_http_api_answers_within_api_gateways_29_seconds(
    name: str, request: pytest.FixtureRequest
) -> None:
    synth = deployment(request, name)
    function = function_by_handler(synth, HTTP_API.handler)
    limit = time_budget.API_GATEWAY_INTEGRATION_SECONDS
    assert function["Timeout"] <= limit
    for route in (("POST", "/images"), ("POST", "/jobs"), ("GET", "/jobs/{id}")):
        assert method(synth, *route)["Integration"]["TimeoutInMillis"] <= limit * 1000
    # A synchronous route waits for its job (polls), then answers.
    wait = int(function["Environment"]["Variables"]["SYNC_MAX_WAIT_SECONDS"])
    assert time_budget.sync_wait_bound(wait) <= function["Timeout"]
    # POST /jobs: one StartExecution with the Step Functions client's attempts.
    assert time_budget.start_job_bound() <= function["Timeout"], time_budget.STEPFUNCTIONS.describe()


def test_the_backoff_bound_is_botocores_longest() -> None:
    """:func:`time_budget.retry_backoff_bound` against botocore's own ExponentialBackoff, its random draw
    at 1, a throttling error, and a retry-after header asking for an hour."""
    from botocore.retries.standard import ExponentialBackoff

    class Throttling:
        def is_throttling_error_from_context(self, context: Any) -> bool:
            return True

    class Answer:
        headers = {"x-amz-retry-after": str(3600 * 1000)}

    class Context:
        def __init__(self, attempt_number: int) -> None:
            self.attempt_number = attempt_number
            self.http_response = Answer()

    backoff = ExponentialBackoff(random=lambda: 1.0, throttling_detector=Throttling())  # type: ignore[arg-type]
    for attempts in range(1, 11):
        botocore_longest = sum(backoff.delay_amount(Context(i)) for i in range(1, attempts))  # type: ignore[arg-type]
        assert time_budget.retry_backoff_bound(attempts) == pytest.approx(botocore_longest)


def test_synthesis_refuses_more_bedrock_attempts_than_the_model_step_can_wait_for() -> None:
    """``imagegen:bedrockMaxAttempts`` is CDK context: a value whose worst case outlasts GenerateImage's
    timeout fails synthesis with the numbers, instead of deploying a Lambda timeout."""
    fits = max(
        n
        for n in range(1, 11)
        if time_budget.generate_image_bound(Settings(bedrock_max_attempts=n))
        <= GENERATE_IMAGE_TIMEOUT.to_seconds()
    )
    check_time_budget(Settings(bedrock_max_attempts=fits))
    with pytest.raises(ValueError, match=r"GenerateImage can take .* s at worst .*bedrockMaxAttempts"):
        check_time_budget(Settings(bedrock_max_attempts=fits + 1))
    with pytest.raises(ValueError, match="BEDROCK_READ_TIMEOUT_SECONDS"):
        check_time_budget(Settings(bedrock_read_timeout_seconds=300))


MASK_BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "results" / "mask_check.json"


def test_the_mask_budget_covers_the_largest_mask_and_the_measured_cost() -> None:
    """The mask checked is at most the largest source any model takes (a mask is checked only when it is
    its source's size and the source passed its limits), and the cost per pixel covers the slowest case
    ``benchmarks/mask_check.py`` recorded."""
    largest = max(
        limits.max_pixels or 0
        for adapter in list_adapters()
        for field, limits in adapter.input_limits.items()
        if field == "source_image"
    )
    assert time_budget.LARGEST_MASK_PIXELS == largest == 9_437_184
    measured = json.loads(MASK_BENCHMARK.read_text())["worst"]["cpu_seconds_per_pixel"]
    assert measured <= time_budget.MASK_CHECK_CORE_SECONDS_PER_PIXEL
    # Below one vCPU the check is slower in proportion; above it, one thread gains nothing.
    one_vcpu = time_budget.mask_check_seconds(time_budget.LAMBDA_MB_PER_VCPU)
    assert time_budget.mask_check_seconds(256) == pytest.approx(one_vcpu * 1769 / 256)
    assert time_budget.mask_check_seconds(3538) == one_vcpu


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_the_largest_mask_check_ends_before_validate_request_times_out(
    name: str, request: pytest.FixtureRequest
) -> None:
    synth = deployment(request, name)
    function = function_by_handler(synth, VALIDATE_REQUEST.handler)
    memory = function.get("MemorySize", 128)
    worst = time_budget.validate_request_bound(memory)
    assert worst <= function["Timeout"], (
        f"ValidateRequest at {memory} MB: the largest mask's check takes "
        f"{time_budget.mask_check_seconds(memory):.1f} s, with its code {worst:.1f} s, "
        f"more than its {function['Timeout']} s timeout"
    )
    # The figure the memory was chosen for: at the default 256 MB it would not fit.
    assert time_budget.validate_request_bound(256) > function["Timeout"]


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_the_largest_mask_check_ends_before_the_http_api_times_out(
    name: str, request: pytest.FixtureRequest
) -> None:
    """The check and the function's own code fit in API Gateway's 29 s. (Together with the start's
    worst case, every attempt of every call timing out, they do not: see docs/decisions.md.)"""
    synth = deployment(request, name)
    function = function_by_handler(synth, HTTP_API.handler)
    memory = function.get("MemorySize", 128)
    worst = time_budget.mask_check_seconds(memory) + time_budget.CODE_SECONDS
    assert worst <= function["Timeout"], (
        f"the HTTP API at {memory} MB: the largest mask's check and its code take {worst:.1f} s, "
        f"more than its {function['Timeout']} s timeout"
    )
