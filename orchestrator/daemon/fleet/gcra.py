"""The fleet's rate limiter, evaluated atomically inside Redis: GCRA under a shared ceiling.

One hash per Connect operation (`tat`, `factor`, `at`, `cool`) holds the whole state of the
account's budget. Every decision is taken by a Lua script on the server, with the server's clock
(`redis.call('TIME')`), so workers never compare their own clocks. (Tests hand the scripts a time
instead, `Gcra(redis, now=clock.time)`, so they move time on rather than sleep.)

* GCRA (the generic cell rate algorithm): `tat` is the theoretical arrival time of the next call.
  A call may go now when `now >= tat - (burst - 1) * interval`; it then moves `tat` on by one
  interval. Otherwise the script answers how long to wait: callers wait, they are never refused.
  A budget without state (Redis restarted empty) starts with one call, not a full burst: Connect
  still counts what the fleet spent just before.
* The ceiling: the effective rate is `rate * factor`. A 429 seen by any worker halves `factor`
  and forgets saved burst, but only once per cooldown (`cool`, the time the cooldown ends),
  however many workers saw a 429 meanwhile. `factor` then recovers linearly to 1 over
  `recovery_s`, so the fleet probes Connect like one client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

_COMMON = """
redis.replicate_commands()
local now = tonumber(ARGV[6])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local recovery_us = tonumber(ARGV[3]) * 1000000
local min_factor = tonumber(ARGV[4])
local ttl_ms = tonumber(ARGV[5])
local state = redis.call('HMGET', KEYS[1], 'tat', 'factor', 'at')
local factor = tonumber(state[2]) or 1
local at = tonumber(state[3]) or now
if factor < 1 then
  if recovery_us > 0 then
    factor = math.min(1, factor + (now - at) * (1 - min_factor) / recovery_us)
  else
    factor = 1
  end
end
local interval = 1000000 / (rate * factor)
-- No state (a Redis that restarted empty, a key that expired): one call now, and the burst
-- builds up at the rate, since what the fleet spent a moment ago is not known.
local tat = tonumber(state[1]) or (now + (burst - 1) * interval)
if tat < now then tat = now end
"""

#: KEYS[1] the state hash; ARGV rate, burst, recovery_s, min_factor, ttl_ms, now_us (empty: the
#: server's TIME).
#: Returns {granted 0/1, wait_us, tokens, factor} (numbers as strings: Lua floats).
ACQUIRE_SCRIPT = (
    _COMMON
    + """
local allow_at = tat - (burst - 1) * interval
local granted = 0
local wait = 0
if now >= allow_at then
  granted = 1
  tat = tat + interval
else
  wait = allow_at - now
end
local tokens = math.max(0, (now - (tat - burst * interval)) / interval)
redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', tat),
           'factor', tostring(factor), 'at', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], ttl_ms)
return {granted, string.format('%.0f', wait), tostring(tokens), tostring(factor)}
"""
)

#: KEYS[1] the state hash; ARGV as ACQUIRE plus cooldown_s, decrease. Returns {lowered 0/1, factor}.
THROTTLE_SCRIPT = (
    _COMMON
    + """
local cooldown_us = tonumber(ARGV[7]) * 1000000
local decrease = tonumber(ARGV[8])
local cool = tonumber(redis.call('HGET', KEYS[1], 'cool')) or 0
if now < cool then
  return {0, tostring(factor)}
end
factor = math.max(min_factor, factor * decrease)
interval = 1000000 / (rate * factor)
-- Forget saved burst: the next call may go one interval from now.
local empty = now + burst * interval
if tat < empty then tat = empty end
redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', tat),
           'factor', tostring(factor), 'at', string.format('%.0f', now),
           'cool', string.format('%.0f', now + cooldown_us))
redis.call('PEXPIRE', KEYS[1], ttl_ms)
return {1, tostring(factor)}
"""
)


@dataclass(frozen=True)
class Decision:
    """The script's answer to one acquire."""

    granted: bool
    #: How long to wait before asking again (0 when granted).
    wait_s: float
    #: Tokens left after this call (the burst still available).
    tokens: float
    #: The shared ceiling: the fraction of the configured rate the fleet may use now.
    factor: float


@dataclass(frozen=True)
class GcraLimit:
    """One operation's limit: `rate` per second, bursts of `burst`, AIMD on 429s."""

    rate: float
    burst: float
    recovery_s: float = 30.0
    min_factor: float = 0.05
    cooldown_s: float = 1.0
    decrease: float = 0.5

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"a limit needs rate > 0 and burst >= 1, got {self.rate}/{self.burst}")
        if not 0 < self.min_factor <= 1 or not 0 < self.decrease < 1:
            raise ValueError("a limit needs 0 < min_factor <= 1 and 0 < decrease < 1")

    @property
    def ttl_ms(self) -> int:
        """How long an idle state lives: long enough that forgetting it changes nothing."""
        idle_s = self.burst / (self.rate * self.min_factor) + self.recovery_s + self.cooldown_s
        return int(idle_s * 1000) + 1000


class Gcra:
    """The two scripts bound to one Redis client, with typed arguments and answers.

    `now` (epoch seconds) replaces the server's clock: for tests only. Production keeps Redis's
    TIME, one clock for the whole fleet, so no skew between hosts changes a decision.
    """

    def __init__(self, redis: Redis, *, now: Callable[[], float] | None = None) -> None:
        self._acquire = redis.register_script(ACQUIRE_SCRIPT)
        self._throttle = redis.register_script(THROTTLE_SCRIPT)
        self._now = now

    def _args(self, limit: GcraLimit) -> list[Any]:
        now_us = "" if self._now is None else f"{self._now() * 1e6:.0f}"
        return [limit.rate, limit.burst, limit.recovery_s, limit.min_factor, limit.ttl_ms, now_us]

    async def acquire(self, key: str, limit: GcraLimit) -> Decision:
        """Take one call from the budget at `key`, or learn how long to wait for one."""
        reply = cast(list[Any], await self._acquire(keys=[key], args=self._args(limit)))
        granted, wait_us, tokens, factor = reply
        return Decision(
            granted=int(granted) == 1,
            wait_s=float(wait_us) / 1e6,
            tokens=float(tokens),
            factor=float(factor),
        )

    async def throttled(self, key: str, limit: GcraLimit) -> bool:
        """Report a 429: lowers the shared ceiling unless another report did within the
        cooldown. True when this report lowered it."""
        args = [*self._args(limit), limit.cooldown_s, limit.decrease]
        reply = cast(list[Any], await self._throttle(keys=[key], args=args))
        return int(reply[0]) == 1
