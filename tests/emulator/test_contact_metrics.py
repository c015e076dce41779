"""GetContactMetrics in the emulator: true positions in FIFO order counting other applications'
contacts, the estimated wait, errors outside the queue, its quota and the AccessDenied fault."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from orchestrator.connect.operations import Quota
from tests.conftest import INSTANCE_ID
from tests.emulator._helpers import ControlApi, ManualClock, answer_of, start_args

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient

    from tests.emulator._helpers import ClientFactory, EmulatorStarter

METRICS: Any = [{"Name": "POSITION_IN_QUEUE"}, {"Name": "ESTIMATED_WAIT_TIME"}]
#: One agent, busy 10 s a call; customers never hang up.
CENTER: dict[str, Any] = {
    "agents": 1,
    "handle_time_s": (10.0, 10.0),
    "patience_s": (3600.0, 3600.0),
    "flow_delay_s": 0.5,
    "max_concurrent_calls": None,
}


async def _metrics(client: ConnectClient, contact_id: str) -> dict[str, float]:
    answer = await client.get_contact_metrics(
        InstanceId=INSTANCE_ID, ContactId=contact_id, Metrics=METRICS
    )
    assert answer["Id"] == contact_id
    return {r["Name"]: r["Value"]["Number"] for r in answer["MetricResults"]}


async def _start(client: ConnectClient) -> str:
    return (await client.start_web_rtc_contact(**start_args()))["ContactId"]


async def test_positions_count_other_applications_contacts_in_fifo_order(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    # Three of another application's contacts: the agent takes the first, two wait ahead.
    emulator = await start_clocked_emulator(**CENTER, background_contacts=3, quotas_enabled=False)
    client, control = await client_for(emulator), ControlApi(emulator.url)
    ours = [await _start(client) for _ in range(2)]
    clock.advance(0.5)

    first, second = [await _metrics(client, c) for c in ours]
    assert first == {"POSITION_IN_QUEUE": 3.0, "ESTIMATED_WAIT_TIME": 30.0}
    assert second == {"POSITION_IN_QUEUE": 4.0, "ESTIMATED_WAIT_TIME": 40.0}
    truth = await control.positions()
    assert [truth[c] for c in ours] == [3, 4]
    background = await control.background()
    assert len(background) == 3 and all(b["Background"] for b in background)
    assert all(c["ContactId"] in ours for c in await control.contacts())

    clock.advance(10.0)  # the agent's call ends: it takes the next contact of the line
    assert (await _metrics(client, ours[0]))["POSITION_IN_QUEUE"] == 2.0
    [joined] = await control.add_background(1)  # arrives behind ours
    assert (await control.positions())[joined] == 4
    assert (await _metrics(client, ours[1]))["POSITION_IN_QUEUE"] == 3.0


async def test_outside_the_queue_the_answer_is_invalid_request(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    emulator = await start_clocked_emulator(**CENTER, background_contacts=1, quotas_enabled=False)
    client, control = await client_for(emulator), ControlApi(emulator.url)
    contact = await _start(client)

    async def refusal() -> str:
        with pytest.raises(ClientError) as caught:
            await _metrics(client, contact)
        answer = answer_of(caught.value)
        assert answer.status == 400
        return answer.code

    assert await refusal() == "InvalidRequestException"  # not queued yet (the flow runs)
    clock.advance(0.5)
    assert (await _metrics(client, contact))["POSITION_IN_QUEUE"] == 1.0
    await control.connect_agent(contact)
    assert await refusal() == "InvalidRequestException"  # the agent has it
    assert (await control.contact(contact))["GetContactMetricsCalls"] == 3


async def test_over_its_quota_it_throttles(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    emulator = await start_clocked_emulator(
        **CENTER, background_contacts=1, quotas={"GetContactMetrics": Quota(2.0, 2.0)}
    )
    client, control = await client_for(emulator), ControlApi(emulator.url)
    contact = await _start(client)
    clock.advance(0.5)
    for _ in range(2):
        await _metrics(client, contact)
    with pytest.raises(ClientError) as caught:
        await _metrics(client, contact)
    assert answer_of(caught.value).code == "ThrottlingException"
    clock.advance(0.5)
    await _metrics(client, contact)
    assert (await control.op_stats("GetContactMetrics"))["throttled"] == 1


async def test_access_denied_by_a_fault_knob(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    emulator = await start_clocked_emulator(**CENTER, background_contacts=1, quotas_enabled=False)
    client, control = await client_for(emulator), ControlApi(emulator.url)
    contact = await _start(client)
    clock.advance(0.5)
    await control.patch_config(metrics_access_denied=True)
    with pytest.raises(ClientError) as caught:
        await _metrics(client, contact)
    assert (answer_of(caught.value).code, answer_of(caught.value).status) == (
        "AccessDeniedException",
        403,
    )
    await control.patch_config(metrics_access_denied=False)
    assert (await _metrics(client, contact))["POSITION_IN_QUEUE"] == 1.0
