"""A request that sets no AllowedCapabilities still gets screen sharing when it asks for it (the
default): the worker sends Connect the capabilities screen sharing needs, and nothing else."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.engine.events import EventType
from orchestrator.engine.request import SCREEN_SHARING_CAPABILITIES, parse_request
from orchestrator.testing.emulator import Emulator, EmulatorControl
from orchestrator.testing.requests import FLOW_ID, INSTANCE_ID
from tests.daemon.conftest import DrainedWorker

SCREEN_SHARE_ONLY = {"Customer": {"ScreenShare": "SEND"}, "Agent": {"ScreenShare": "SEND"}}


def minimal(request_id: str, **fields: Any) -> dict[str, Any]:
    """The smallest valid request: an id, the instance and flow, the customer's name."""
    return {
        "RequestId": request_id,
        "InstanceId": INSTANCE_ID,
        "ContactFlowId": FLOW_ID,
        "ParticipantDetails": {"DisplayName": "Jane"},
        **fields,
    }


@pytest.mark.parametrize(
    ("fields", "sent"),
    [
        ({}, SCREEN_SHARE_ONLY),
        ({"AllowedCapabilities": None}, SCREEN_SHARE_ONLY),
        ({"ScreenSharing": True}, SCREEN_SHARE_ONLY),
        ({"ScreenSharing": False}, None),
        ({"AllowedCapabilities": {}}, {}),
        (
            {"AllowedCapabilities": {"Customer": {"Video": "SEND"}}},
            {"Customer": {"Video": "SEND"}},
        ),
    ],
)
def test_capabilities_are_added_only_when_screen_sharing_is_wanted_and_none_are_set(
    fields: dict[str, Any], sent: dict[str, Any] | None
) -> None:
    params = parse_request(json.dumps(minimal("caps-1", **fields))).start_webrtc_contact_params(
        "token"
    )
    assert params.get("AllowedCapabilities") == sent
    assert SCREEN_SHARING_CAPABILITIES == SCREEN_SHARE_ONLY


async def test_the_minimal_request_ends_with_screen_sharing_started(
    drained_worker: DrainedWorker, emulator: Emulator
) -> None:
    bodies = [
        json.dumps(minimal("minimal-1")),
        json.dumps(minimal("declines-1", ScreenSharing=False)),
        json.dumps(minimal("video-only-1", AllowedCapabilities={"Customer": {"Video": "SEND"}})),
    ]

    run = await drained_worker(bodies)

    assert run.finals() == {
        "minimal-1": EventType.SCREEN_SHARING_STARTED,
        "declines-1": EventType.SCREEN_SHARING_SKIPPED,
        "video-only-1": EventType.SCREEN_SHARING_SKIPPED,
    }
    sent = {
        contact["ContactId"]: contact["Request"].get("AllowedCapabilities")
        for contact in await EmulatorControl(emulator.url).contacts()
    }
    started = {
        e.request_id: e.contact_id
        for e in run.sink.events
        if e.type is EventType.STARTED and e.contact_id
    }
    assert sent[started["minimal-1"]] == SCREEN_SHARE_ONLY
    assert sent[started["declines-1"]] is None
    assert sent[started["video-only-1"]] == {"Customer": {"Video": "SEND"}}
    truth = await EmulatorControl(emulator.url).contact(started["minimal-1"])
    assert truth["ScreenSharingStarts"] == 1
