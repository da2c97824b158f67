"""Every state machine of the stack logs to a log group under ``/aws/vendedlogs/states/``
(``stacks.workflow.vended_log_group``), as AWS advises so that the CloudWatch Logs resource policy
Step Functions updates stays under its size limit (https://docs.aws.amazon.com/step-functions/latest/dg/bp-cwl.html)."""

from __future__ import annotations

import pytest

from stacks.workflow import VENDED_LOGS_PREFIX
from tests.infra.synthesis import Synthesized


@pytest.mark.parametrize("which", ["synthesized", "variant"])
def test_every_state_machine_logs_under_aws_vendedlogs_states(
    which: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    log_groups = synth.resources("AWS::Logs::LogGroup")
    machines = synth.resources("AWS::StepFunctions::StateMachine")
    assert len(machines) >= 2  # the per-request workflow and the batch
    names = []
    for logical_id, machine in machines.items():
        (destination,) = machine["Properties"]["LoggingConfiguration"]["Destinations"]
        log_group_id, attribute = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"]
        assert attribute == "Arn"  # the log group's ARN, which ends in ":*" as Step Functions needs
        props = log_groups[log_group_id]["Properties"]
        name = props["LogGroupName"]
        assert isinstance(name, str) and name.startswith(VENDED_LOGS_PREFIX), (logical_id, name)
        assert name.startswith(f"{VENDED_LOGS_PREFIX}{synth.stack.stack_name}-"), name  # one stack's own
        assert props["RetentionInDays"] == 30
        names.append(name)
    assert len(set(names)) == len(names)
    # Only the state machines' log groups are named: the functions' keep their generated names.
    named = [
        p["Properties"]["LogGroupName"] for p in log_groups.values() if "LogGroupName" in p["Properties"]
    ]
    assert {n for n in named if isinstance(n, str) and n.startswith(VENDED_LOGS_PREFIX)} == set(names)
