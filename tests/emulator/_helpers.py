"""Helpers shared by the emulator tests: waiting on conditions, the control API, raw requests."""

from __future__ import annotations

import http.client
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from botocore.exceptions import ClientError

from orchestrator.testing.emulator import Emulator, EmulatorControl, EmulatorThread
from tests.conftest import ACCESS_KEY, FLOW_ID, INSTANCE_ID

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient

T = TypeVar("T")

#: `await client_for(emulator, **botocore_config)` -> an aiobotocore Connect client.
ClientFactory = Callable[..., Awaitable["ConnectClient"]]
#: `await start_clocked_emulator(**config_overrides)` -> an Emulator on the manual clock.
EmulatorStarter = Callable[..., Awaitable[Emulator]]
#: `start_emulator_thread(**config_overrides)` -> an EmulatorThread for boto3 tests.
ThreadStarter = Callable[..., EmulatorThread]
#: `boto3_client_for(thread, **botocore_config)` -> a boto3 Connect client (untyped).
Boto3Factory = Callable[..., Any]

#: Looks like a SigV4 header to the emulator, which only reads the access key id from it.
FAKE_SIGV4 = (
    f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20250101/us-east-1/connect/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64
)

#: Both sides may send video and share their screen.
SCREEN_SHARE_BOTH = {
    "Customer": {"Video": "SEND", "ScreenShare": "SEND"},
    "Agent": {"ScreenShare": "SEND"},
}


def start_args(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments of a valid StartWebRTCContact call."""
    args: dict[str, Any] = {
        "InstanceId": INSTANCE_ID,
        "ContactFlowId": FLOW_ID,
        "ParticipantDetails": {"DisplayName": "Jane Doe"},
    }
    args.update(overrides)
    return args


class ManualClock:
    """A clock the test moves by hand, passed to `Emulator(clock=...)`.

    The simulation applies every transition at its scheduled time whenever the server looks, so
    moving this clock and then asking the emulator gives exact, timing-independent answers.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class ApiAnswer:
    """What a botocore ClientError says about the emulator's answer."""

    code: str
    status: int
    message: str
    request_id: str


def answer_of(error: ClientError) -> ApiAnswer:
    meta = error.response["ResponseMetadata"]
    return ApiAnswer(
        code=error.response["Error"]["Code"],
        status=meta["HTTPStatusCode"],
        message=error.response["Error"].get("Message", ""),
        request_id=meta.get("RequestId", ""),
    )


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: Any


class ControlApi(EmulatorControl):
    """The emulator's control API plus raw Connect requests (any method, body and headers)."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> RawResponse:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method, self.base_url + path, json=json_body, data=data, headers=headers
            ) as response,
        ):
            text = await response.text()
            body = json.loads(text) if text else None
            return RawResponse(response.status, dict(response.headers), body)


class SyncControlApi:
    """The control API for synchronous (boto3) tests, over http.client."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        assert parts.hostname is not None
        assert parts.port is not None
        self._host = parts.hostname
        self._port = parts.port

    def request(self, method: str, path: str, json_body: Any = None) -> RawResponse:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=10)
        try:
            payload = None if json_body is None else json.dumps(json_body)
            conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            text = response.read().decode()
            return RawResponse(
                response.status, dict(response.getheaders()), json.loads(text) if text else None
            )
        finally:
            conn.close()

    def contacts(self) -> list[dict[str, Any]]:
        response = self.request("GET", "/_emulator/contacts")
        assert response.status == 200
        result: list[dict[str, Any]] = response.body["Contacts"]
        return result

    def contact(self, contact_id: str) -> dict[str, Any]:
        matches = [c for c in self.contacts() if c["ContactId"] == contact_id]
        assert len(matches) == 1, f"contact {contact_id} not in the ground truth"
        return matches[0]

    def op_stats(self, operation: str) -> dict[str, int]:
        response = self.request("GET", "/_emulator/stats")
        assert response.status == 200
        result: dict[str, int] = response.body["operations"][operation]
        return result

    def connect_agent(self, contact_id: str) -> None:
        response = self.request("POST", f"/_emulator/contacts/{contact_id}/connect-agent")
        assert response.status == 200

    def disconnect(self, contact_id: str) -> None:
        response = self.request("POST", f"/_emulator/contacts/{contact_id}/disconnect")
        assert response.status == 200

    def patch_config(self, **changes: Any) -> None:
        response = self.request("POST", "/_emulator/config", changes)
        assert response.status == 200, response
