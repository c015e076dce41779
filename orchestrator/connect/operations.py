"""The Connect operations the orchestrator calls, and Connect's default quotas for them.

One name per operation (`Operation`) and one table of default quotas: the settings, the rate
budget, the gateway, the metrics labels and the emulator all read them from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Operation(StrEnum):
    """A Connect API operation, spelled as AWS spells it (and as metrics label it)."""

    START_WEBRTC_CONTACT = "StartWebRTCContact"
    DESCRIBE_CONTACT = "DescribeContact"
    START_SCREEN_SHARING = "StartScreenSharing"


@dataclass(frozen=True)
class Quota:
    """An account-level quota: `rate` requests per second, bursts of up to `burst`."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"a quota needs rate > 0 and burst >= 1, got {self.rate}/{self.burst}")


#: Amazon Connect's default quotas per account and Region (`../shared/connect-facts.md`).
DEFAULT_QUOTAS: Mapping[Operation, Quota] = {
    Operation.START_WEBRTC_CONTACT: Quota(2.0, 5.0),
    Operation.DESCRIBE_CONTACT: Quota(10.0, 15.0),
    Operation.START_SCREEN_SHARING: Quota(2.0, 5.0),
}
