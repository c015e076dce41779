"""Fleet mode's policies without Redis: the one home of its settings, and the fleet size a worker
divides the quota by, on the test's own clock."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestrator.daemon.fleet.policy import FleetPolicy, FleetSize, local_rate
from orchestrator.daemon.settings import FleetSettings

TTL = 10.0


def test_the_fleet_size_is_the_largest_count_seen_within_one_ttl_and_at_least_min_workers() -> None:
    size = FleetSize(TTL, min_workers=2)
    assert size.value == 2
    assert size.seen(0.0, 1) == 2
    assert size.seen(1.0, 5) == 5
    assert size.seen(2.0, 3) == 5  # the workers that beat earlier are still there
    assert size.seen(11.5, 3) == 3  # the count of 5 is older than a TTL


def test_the_fleet_size_is_kept_through_an_outage_and_for_one_ttl_after_it() -> None:
    size = FleetSize(TTL)
    size.seen(0.0, 6)
    size.lost()
    # Redis comes back empty 60 s later: the first beats find only some of the workers.
    assert size.seen(60.0, 1) == 6
    assert size.seen(65.0, 4) == 6
    assert size.seen(69.9, 5) == 6
    # One TTL after Redis answered again, the set holds every live worker: it is the truth.
    assert size.seen(70.0, 5) == 5


def test_a_worker_that_never_reached_redis_divides_by_min_workers() -> None:
    size = FleetSize(TTL, min_workers=3)
    size.lost()
    assert size.value == 3
    assert size.seen(5.0, 1) == 3


def test_the_local_share_divides_the_rate_by_the_fleet_size() -> None:
    assert local_rate(19.4, 6) == pytest.approx(19.4 / 6)
    assert local_rate(19.4, 0) == 19.4


def test_the_policy_is_the_one_home_of_the_fleet_settings_defaults_and_rules() -> None:
    policy, settings = FleetPolicy(), FleetSettings()
    for name in ("heartbeat_interval_s", "heartbeat_ttl_s", "breaker_failures",
                 "breaker_reset_s", "min_workers"):  # fmt: skip
        assert getattr(settings, name) == getattr(policy, name), name
    assert policy.handover_s == 2 * policy.breaker_reset_s
    with pytest.raises(ValueError, match="heartbeat_ttl_s must be longer"):
        FleetPolicy(heartbeat_interval_s=5.0, heartbeat_ttl_s=5.0)
    with pytest.raises(ValidationError, match="heartbeat_ttl_s must be longer"):
        FleetSettings(heartbeat_interval_s=5.0, heartbeat_ttl_s=4.0)
    with pytest.raises(ValueError, match="breaker_failures"):
        FleetPolicy(breaker_failures=0)
