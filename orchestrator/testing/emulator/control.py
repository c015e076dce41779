"""A client for the emulator's `/_emulator/` control API: its ground truth and its knobs.

Tests, the demo and the benchmarks ask the emulator what really happened (every contact with its
timestamps, per-operation counts) and steer it (connect an agent now, hang up, change the
configuration) through this one client.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp


class ControlError(Exception):
    """The control API answered something other than 200."""


class EmulatorControl:
    """The `/_emulator/` API of the emulator at `base_url` (a short-lived session per call)."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        async with (
            aiohttp.ClientSession(timeout=self._timeout) as session,
            session.request(method, f"{self.base_url}/_emulator/{path}", json=body) as response,
        ):
            text = await response.text()
            if response.status != 200:
                raise ControlError(f"{method} /_emulator/{path}: {response.status} {text}")
            return json.loads(text)

    async def stats(self) -> dict[str, Any]:
        """Per-operation counts (`calls`, `successes`, `throttled`, ...) and totals."""
        result: dict[str, Any] = await self._call("GET", "stats")
        return result

    async def op_stats(self, operation: str) -> dict[str, int]:
        """The counts of one operation, e.g. `DescribeContact`."""
        result: dict[str, int] = (await self.stats())["operations"][operation]
        return result

    async def dropped_events(self) -> list[dict[str, str]]:
        """Contact events never delivered (`events_drop_rate`): `id`, `contactId`, `eventType`."""
        result: list[dict[str, str]] = (await self.stats())["events_dropped"]
        return result

    async def contacts(self) -> list[dict[str, Any]]:
        """Every contact the emulator holds, with its ground-truth timestamps."""
        result: list[dict[str, Any]] = (await self._call("GET", "contacts"))["Contacts"]
        return result

    async def background(self) -> list[dict[str, Any]]:
        """Other applications' contacts in the queue (`background_contacts`), ground truth."""
        result: list[dict[str, Any]] = (await self._call("GET", "contacts"))["Background"]
        return result

    async def add_background(self, contacts: int) -> list[str]:
        """`contacts` contacts of other applications join the queue now; their ids."""
        result: list[str] = (await self._call("POST", "background", {"contacts": contacts}))[
            "ContactIds"
        ]
        return result

    async def positions(self) -> dict[str, int]:
        """Every waiting contact's true position now (1: next), ours and other applications'."""
        result: dict[str, int] = (await self._call("GET", "positions"))["Positions"]
        return result

    async def contact(self, contact_id: str) -> dict[str, Any]:
        """One contact; `LookupError` when the emulator does not hold it."""
        for contact in await self.contacts():
            if contact["ContactId"] == contact_id:
                return contact
        raise LookupError(f"contact {contact_id} not in the emulator's ground truth")

    async def connect_agent(self, contact_id: str) -> dict[str, Any]:
        """Connect an agent to a waiting contact now."""
        result: dict[str, Any] = await self._call("POST", f"contacts/{contact_id}/connect-agent")
        return result

    async def disconnect(self, contact_id: str) -> dict[str, Any]:
        """End a contact now (the customer hangs up)."""
        result: dict[str, Any] = await self._call("POST", f"contacts/{contact_id}/disconnect")
        return result

    async def hold(self, contact_id: str) -> dict[str, Any]:
        """Keep a waiting contact from every agent: it waits until stopped or hung up."""
        result: dict[str, Any] = await self._call("POST", f"contacts/{contact_id}/hold")
        return result

    async def fail_next(self, operation: str, code: str, *, times: int = 1, after: int = 0) -> None:
        """Answer `times` calls of `operation` with the error `code` (a Connect error code the
        emulator knows, e.g. `InternalServiceException`), once `after` more calls went
        through."""
        body = {"operation": operation, "code": code, "times": times, "after": after}
        await self._call("POST", "faults", body)

    async def stopped_with_agent(self) -> list[str]:
        """Contacts StopContact ended while an agent was on them (ground truth: must be none)."""
        return [c["ContactId"] for c in await self.contacts() if c["StoppedWithAgent"]]

    async def reset(self) -> None:
        """Forget every contact, token and count."""
        await self._call("POST", "reset")

    async def config(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "config")
        return result

    async def patch_config(self, **changes: Any) -> dict[str, Any]:
        """Change configuration keys at run time; answers the whole new configuration."""
        result: dict[str, Any] = await self._call("POST", "config", changes)
        return result
