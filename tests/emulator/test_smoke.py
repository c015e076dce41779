from __future__ import annotations

from typing import TYPE_CHECKING

from tests.conftest import FLOW_ID, INSTANCE_ID

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient
    from types_aiobotocore_sqs import SQSClient


async def test_start_and_describe_contact(connect_client: ConnectClient) -> None:
    started = await connect_client.start_web_rtc_contact(
        InstanceId=INSTANCE_ID, ContactFlowId=FLOW_ID, ParticipantDetails={"DisplayName": "Jane"}
    )
    described = await connect_client.describe_contact(
        InstanceId=INSTANCE_ID, ContactId=started["ContactId"]
    )
    assert described["Contact"]["Id"] == started["ContactId"]
    assert described["Contact"]["InitiationMethod"] == "WEBRTC_API"


async def test_sqs_queue_is_empty(sqs_client: SQSClient, sqs_queue: str) -> None:
    got = await sqs_client.receive_message(QueueUrl=sqs_queue, WaitTimeSeconds=0)
    assert got.get("Messages", []) == []
