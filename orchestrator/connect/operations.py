"""The Connect operations the orchestrator calls, Connect's default quotas for them, and how much
of them one budget spends.

One name per operation (`Operation`), one table of default quotas (`DEFAULT_QUOTAS`) and one
declaration of a budget's share and headroom (`BudgetShare`): the settings, the rate budgets, the
gateway, the metrics labels and the emulator all read them from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from orchestrator.bounds import Bounded, declared, described


class Operation(StrEnum):
    """A Connect API operation, spelled as AWS spells it (and as metrics label it)."""

    START_WEBRTC_CONTACT = "StartWebRTCContact"
    DESCRIBE_CONTACT = "DescribeContact"
    START_SCREEN_SHARING = "StartScreenSharing"
    GET_CONTACT_METRICS = "GetContactMetrics"
    STOP_CONTACT = "StopContact"


@dataclass(frozen=True)
class Quota(Bounded):
    """An account-level quota: `rate` requests per second, bursts of up to `burst`."""

    rate: float = field(metadata=described("Requests per second the account may make.", gt=0))
    burst: float = field(metadata=described("Requests the account may make at once.", ge=1))


#: Amazon Connect's default quotas per account and Region (`../shared/connect-facts.md`).
DEFAULT_QUOTAS: Mapping[Operation, Quota] = {
    Operation.START_WEBRTC_CONTACT: Quota(2.0, 5.0),
    Operation.DESCRIBE_CONTACT: Quota(10.0, 15.0),
    Operation.START_SCREEN_SHARING: Quota(2.0, 5.0),
    #: No published quota (connect-facts.md): assumed like the other per-contact calls.
    Operation.GET_CONTACT_METRICS: Quota(2.0, 5.0),
    # L-650BD10F: 10/s in a recent default dump, 2/s in an older table; budgeted at the lower.
    Operation.STOP_CONTACT: Quota(2.0, 5.0),
}


@dataclass(frozen=True)
class BudgetShare(Bounded):
    """How much of the account's quotas one rate budget spends."""

    share: float = declared(
        1.0,
        "This worker's share of the account's quotas (1 / number of workers sharing the "
        "account). Fleet mode shares the quotas through Redis instead.",
        gt=0,
        le=1,
    )
    headroom: float = declared(
        0.03,
        "Stay this fraction under each quota, so latency jitter does not turn into 429s.",
        ge=0,
        lt=1,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
