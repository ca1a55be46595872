"""Spend holds shared by every server process through Redis: one EVALSHA per operation.

Keys, under a prefix (settings.BILLING_REDIS_PREFIX):
  <p>:c:<scope>:<subject>:<period tag>  hash {s: spent, h: held}; expires 2 days after its period
  <p>:h:<hold id>                        hash {state, amount, parts, started}; kept a grace period
                                         after it ends (settle and release are exactly-once);
                                         {p, rec, note} while its stream records its progress
  <p>:f:<subject>                        sorted set: the subject's active hold ids -> deadline
                                         (ms): the in-flight cap counts them
  <p>:deadlines                          sorted set: hold id -> deadline (ms); a key's own TTL
                                         can't run code when it lapses, so the periodic job
                                         releases what is past its deadline from here
  <p>:usage                              list of settled usage records, oldest at the tail: the
                                         second way to the ledger, for a process that died
                                         before its outbox (billing.holds.outbox) wrote them
  <p>:usage:inflight                     sorted set of batches being written (ms taken), each a
                                         list <p>:usage:batch:<id>; a batch whose writer died is
                                         queued again (the ledger write is idempotent)

The scripts touch keys they read from a hold's record, so the store is one Redis (or one
shard), like the rate limiter. Amounts are integers; Lua compares them as doubles, exact below
2**53 nano-USD (about 9 million USD), beyond any one counter we keep.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
import weakref

import orjson
import redis
from django.conf import settings
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry as SyncRetry

from billing.holds.outbox import UsageOutbox
from billing.holds.store import (
    HoldStore,
    HoldUnavailable,
    PlaceOutcome,
    UsageRecord,
    decode_record,
    encode_record,
    from_us,
    orphans_notify,
    to_us,
)
from config.cooldown import Cooldown

# KEYS: hold, deadlines, counter...   ARGV: hold id, amount, deadline ms, record ttl ms,
# started us, then per counter: limit ("" = none), ttl ms ("" = none), seed ("" = unknown:
# report it cold), then the in-flight set ("" = no cap), its cap and now (ms).
_PLACE = """
local n = #KEYS - 2
local fa = 5 + n * 3
local state = redis.call('HGET', KEYS[1], 'state')
if state then return {'dup', state} end
local cold = {}
for i = 1, n do
  local c = KEYS[i + 2]
  if redis.call('EXISTS', c) == 0 then
    local seed = ARGV[5 + (i - 1) * 3 + 3]
    if seed ~= '' then
      redis.call('HSET', c, 's', seed, 'h', 0)
      local ttl = ARGV[5 + (i - 1) * 3 + 2]
      if ttl ~= '' then redis.call('PEXPIRE', c, ttl) end
    else
      cold[#cold + 1] = tostring(i - 1)
    end
  end
end
if #cold > 0 then return {'cold', table.concat(cold, ' ')} end
local flight = ARGV[fa + 1]
if flight ~= '' then
  -- Holds past their deadline no longer count, whether or not the sweep has run yet.
  redis.call('ZREMRANGEBYSCORE', flight, '-inf', ARGV[fa + 3])
  local active = redis.call('ZCARD', flight)
  if active >= tonumber(ARGV[fa + 2]) then return {'busy', tostring(active)} end
end
local amount = tonumber(ARGV[2])
local rooms = {}
local refused = -1
for i = 1, n do
  local limit = ARGV[5 + (i - 1) * 3 + 1]
  if limit == '' then
    rooms[i] = '-'
  else
    local v = redis.call('HMGET', KEYS[i + 2], 's', 'h')
    local room = tonumber(limit) - (tonumber(v[1]) or 0) - (tonumber(v[2]) or 0)
    rooms[i] = string.format('%.0f', room)
    if refused < 0 and room < amount then refused = i - 1 end
  end
end
if refused >= 0 then return {'refused', table.concat(rooms, ' '), tostring(refused)} end
local parts = {}
for i = 1, n do
  redis.call('HINCRBY', KEYS[i + 2], 'h', ARGV[2])
  parts[i] = KEYS[i + 2]
end
redis.call('HSET', KEYS[1], 'state', 'held', 'amount', ARGV[2],
           'parts', table.concat(parts, ' '), 'started', ARGV[5])
if flight ~= '' then
  redis.call('ZADD', flight, ARGV[3], ARGV[1])
  if redis.call('PTTL', flight) < tonumber(ARGV[4]) then redis.call('PEXPIRE', flight, ARGV[4]) end
  redis.call('HSET', KEYS[1], 'f', flight)
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return {'ok', table.concat(rooms, ' ')}
"""

# Give an active hold's amount back to its counters (never below zero: a counter reseeded
# after a Redis restart doesn't carry the holds it lost).
_GIVE_BACK = """
local function give_back(hold, id)
  local flight = redis.call('HGET', hold, 'f')
  if flight then redis.call('ZREM', flight, id) end
  local amount = redis.call('HGET', hold, 'amount')
  if amount == '0' then return end  -- and "-0" is no integer to Redis
  local parts = redis.call('HGET', hold, 'parts') or ''
  for c in string.gmatch(parts, '%S+') do
    if redis.call('EXISTS', c) == 1 then
      if redis.call('HINCRBY', c, 'h', '-' .. amount) < 0 then redis.call('HSET', c, 'h', 0) end
    end
  end
end
"""

# KEYS: hold, deadlines, usage queue   ARGV: hold id, cost, record ttl ms, started us (used
# when the hold is unknown), record json
_SETTLE = (
    _GIVE_BACK
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'settled' then return {'settled', '0'} end
local started = ARGV[4]
if state then
  if state == 'held' then give_back(KEYS[1], ARGV[1]) end
  local parts = redis.call('HGET', KEYS[1], 'parts') or ''
  for c in string.gmatch(parts, '%S+') do
    if redis.call('EXISTS', c) == 1 then redis.call('HINCRBY', c, 's', ARGV[2]) end
  end
  started = redis.call('HGET', KEYS[1], 'started') or started
  redis.call('ZREM', KEYS[2], ARGV[1])
end
redis.call('HSET', KEYS[1], 'state', 'settled', 'cost', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('LPUSH', KEYS[3], started .. ' ' .. ARGV[5])
return {state or 'missing', started}
"""
)

# KEYS: hold, deadlines   ARGV: hold id, record ttl ms
_RELEASE = (
    _GIVE_BACK
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'held' then return 0 end
give_back(KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'released')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""
)

# KEYS: hold   ARGV: cost so far, its usage record json, note json
_PROGRESS = """
if redis.call('HGET', KEYS[1], 'state') ~= 'held' then return 0 end
redis.call('HSET', KEYS[1], 'p', ARGV[1], 'rec', ARGV[2], 'note', ARGV[3])
return 1
"""

# KEYS: deadlines, usage queue   ARGV: now ms, max, hold key prefix, record ttl ms
# A hold with progress (a stream whose process died) is settled at it, else released.
# Returns {ended, then id, started us, record json, note json of each hold settled}.
_EXPIRE = (
    _GIVE_BACK
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local reply = {0}
for _, id in ipairs(ids) do
  local hold = ARGV[3] .. id
  if redis.call('HGET', hold, 'state') == 'held' then
    give_back(hold, id)
    reply[1] = reply[1] + 1
    local p = redis.call('HGET', hold, 'p')
    if p then
      if p ~= '0' then
        local parts = redis.call('HGET', hold, 'parts') or ''
        for c in string.gmatch(parts, '%S+') do
          if redis.call('EXISTS', c) == 1 then redis.call('HINCRBY', c, 's', p) end
        end
      end
      local started = redis.call('HGET', hold, 'started')
      local rec = redis.call('HGET', hold, 'rec')
      redis.call('HSET', hold, 'state', 'settled', 'cost', p)
      redis.call('LPUSH', KEYS[2], started .. ' ' .. rec)
      for _, v in ipairs({id, started, rec, redis.call('HGET', hold, 'note')}) do
        reply[#reply + 1] = v
      end
      redis.call('HDEL', hold, 'p', 'rec', 'note')
    else
      redis.call('HSET', hold, 'state', 'expired')
    end
    redis.call('PEXPIRE', hold, ARGV[4])
  end
  redis.call('ZREM', KEYS[1], id)
end
return reply
"""
)

# KEYS: queue, inflight set, this batch   ARGV: now ms, max, stale before ms
_TAKE = """
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
for _, batch in ipairs(stale) do
  while redis.call('RPOPLPUSH', batch, KEYS[1]) do end
  redis.call('ZREM', KEYS[2], batch)
end
local items = {}
for i = 1, tonumber(ARGV[2]) do
  local item = redis.call('RPOPLPUSH', KEYS[1], KEYS[3])
  if not item then break end
  items[#items + 1] = item
end
if #items > 0 then redis.call('ZADD', KEYS[2], ARGV[1], KEYS[3]) end
return items
"""


class _Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


PLACE, SETTLE, RELEASE, EXPIRE, TAKE, PROGRESS = map(
    _Script, (_PLACE, _SETTLE, _RELEASE, _EXPIRE, _TAKE, _PROGRESS)
)


class RedisHoldStore(HoldStore):
    """Each event loop gets its own asyncio client (connections belong to their loop); the
    batch side (Celery) uses one synchronous client. A dropped pooled connection is reopened
    once; any other failure raises HoldUnavailable at once. Retrying is safe: placing,
    settling and releasing are all idempotent on the hold id."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        max_connections: int = 64,
        timeout: float = 1.0,
        connect_timeout: float | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix if prefix is not None else settings.BILLING_REDIS_PREFIX
        self._max_connections = max_connections
        self._timeout = timeout
        self._connect_timeout = timeout if connect_timeout is None else connect_timeout
        # After a failure, placing refuses at once for a moment (a 503 either way) instead of
        # each request waiting out a timeout. Settling and releasing always try: they carry
        # money already spent.
        self.cooldown = Cooldown()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._redis: Redis | None = None
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = (
            weakref.WeakKeyDictionary()
        )
        self._sync: redis.Redis | None = None
        self.deadlines_key = f"{self.prefix}:deadlines"
        self.queue_key = f"{self.prefix}:usage"
        self.inflight_key = f"{self.prefix}:usage:inflight"
        # The first way to the ledger, within milliseconds, whatever happens to Redis.
        self.outbox = UsageOutbox()

    # -- keys --------------------------------------------------------------------------------

    def hold_key(self, hold_id: str) -> str:
        return f"{self.prefix}:h:{hold_id}"

    def flight_key(self, subject: str) -> str:
        return f"{self.prefix}:f:{subject}"

    def counter_key(self, name: str) -> str:
        return f"{self.prefix}:c:{name}"

    @property
    def record_ttl_ms(self) -> int:
        return int(settings.BILLING_HOLD_RECORD_SECONDS * 1000)

    # -- clients -----------------------------------------------------------------------------

    def _make_client(self) -> Redis:
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=self._max_connections,
            timeout=self._timeout,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._connect_timeout,
            client_name="llmapi-billing",
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        return Redis.from_pool(pool)

    def _client(self) -> Redis:
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return self._redis
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._make_client()
        self._loop, self._redis = loop, client
        return client

    def _sync_client(self) -> redis.Redis:
        if self._sync is None:
            self._sync = redis.Redis.from_url(
                self.url,
                socket_timeout=5.0,
                socket_connect_timeout=self._connect_timeout,
                client_name="llmapi-billing-batch",
                retry=SyncRetry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            )
        return self._sync

    async def _eval(self, script: _Script, keys: list[str], args: list) -> object:
        client = self._client()
        try:
            try:
                return await client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:  # first use, or Redis restarted / flushed its scripts
                await client.script_load(script.source)
                return await client.evalsha(script.sha, len(keys), *keys, *args)
        except (RedisError, OSError) as exc:
            self.cooldown.trip()
            raise HoldUnavailable(f"hold store unavailable: {exc}") from exc

    def _eval_sync(self, script: _Script, keys: list[str], args: list) -> object:
        client = self._sync_client()
        try:
            try:
                return client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                client.script_load(script.source)
                return client.evalsha(script.sha, len(keys), *keys, *args)
        except (RedisError, OSError) as exc:
            raise HoldUnavailable(f"hold store unavailable: {exc}") from exc

    # -- hot path ----------------------------------------------------------------------------

    async def place(
        self, *, hold_id, parts, amount, started_at, deadline, seeds=None, in_flight=None
    ):
        if self.cooldown.active:
            raise HoldUnavailable("hold store unavailable: Redis failed a moment ago")
        keys = [self.hold_key(hold_id), self.deadlines_key]
        keys.extend(self.counter_key(part.counter) for part in parts)
        deadline_ms = int(deadline * 1000)
        args: list = [
            hold_id,
            amount,
            deadline_ms,
            max(deadline_ms - int(time.time() * 1000), 0) + self.record_ttl_ms,
            to_us(started_at),
        ]
        for i, part in enumerate(parts):
            ttl = part.ttl_seconds(started_at)
            seed = "" if seeds is None or i not in seeds else seeds[i]
            limit = "" if part.limit is None else part.limit
            args.extend((limit, "" if ttl is None else int(ttl * 1000), seed))
        if in_flight is None:
            args.extend(("", "", ""))
        else:
            args.extend(
                (self.flight_key(in_flight.subject), in_flight.limit, int(time.time() * 1000))
            )
        reply = await self._eval(PLACE, keys, args)
        status = _text(reply[0])
        if status == "busy":
            return PlaceOutcome("busy", in_flight=int(reply[1]))
        if status == "dup":
            return PlaceOutcome("dup", dup_state=_text(reply[1]))
        if status == "cold":
            return PlaceOutcome("cold", cold=tuple(int(i) for i in _text(reply[1]).split()))
        rooms = tuple(None if r == "-" else int(r) for r in _text(reply[1]).split())
        if status == "refused":
            return PlaceOutcome("refused", rooms=rooms, refused_index=int(reply[2]))
        return PlaceOutcome("ok", rooms=rooms)

    async def settle(self, *, hold_id, record):
        reply = await self._eval(
            SETTLE,
            [self.hold_key(hold_id), self.deadlines_key, self.queue_key],
            [
                hold_id,
                record.cost_nanousd,
                self.record_ttl_ms,
                to_us(record.occurred_at),
                encode_record(record),
            ],
        )
        state, started = _text(reply[0]), int(reply[1])
        if state != "settled":
            # At the hold's start, which decides its spend period (positional: dataclasses'
            # replace() costs several times more on this path).
            self.outbox.append(
                UsageRecord(
                    record.reference,
                    record.organization_id,
                    record.key_id,
                    record.cost_nanousd,
                    from_us(started),
                    record.description,
                    record.metadata,
                )
            )
        return state

    async def release(self, *, hold_id):
        reply = await self._eval(
            RELEASE, [self.hold_key(hold_id), self.deadlines_key], [hold_id, self.record_ttl_ms]
        )
        return int(reply) == 1

    async def progress(self, *, hold_id, record, note):
        reply = await self._eval(
            PROGRESS,
            [self.hold_key(hold_id)],
            [record.cost_nanousd, encode_record(record), orjson.dumps(note)],
        )
        return int(reply) == 1

    # -- batch side --------------------------------------------------------------------------

    def release_expired(self, *, now=None, limit=1000):
        now_ms = int((time.time() if now is None else now) * 1000)
        reply = self._eval_sync(
            EXPIRE,
            [self.deadlines_key, self.queue_key],
            [now_ms, limit, f"{self.prefix}:h:", self.record_ttl_ms],
        )
        settled = []
        for i in range(1, len(reply), 4):
            _, started, rec, note = reply[i : i + 4]
            record = decode_record(f"{_text(started)} {_text(rec)}")
            # Also in the Redis queue: this copy reaches PostgreSQL within milliseconds.
            self.outbox.append(record)
            settled.append((record, orjson.loads(note) if note else {}))
        orphans_notify(settled)
        return int(reply[0])

    def usage_take(self, *, limit):
        batch = f"{self.prefix}:usage:batch:{uuid.uuid4().hex}"
        now_ms = int(time.time() * 1000)
        stale_ms = now_ms - int(settings.BILLING_USAGE_BATCH_STALE_SECONDS * 1000)
        items = self._eval_sync(
            TAKE, [self.queue_key, self.inflight_key, batch], [now_ms, limit, stale_ms]
        )
        if not items:
            return None, []
        return batch, [decode_record(item) for item in items]

    def usage_done(self, batch, *, requeue=()):
        client = self._sync_client()
        try:
            pipe = client.pipeline(transaction=True)
            for record in requeue:
                pipe.lpush(self.queue_key, f"{to_us(record.occurred_at)} {encode_record(record)}")
            pipe.delete(batch)
            pipe.zrem(self.inflight_key, batch)
            pipe.execute()
        except (RedisError, OSError) as exc:
            # The batch stays in flight and is queued again once stale: written twice at worst,
            # which the ledger's unique references make harmless.
            raise HoldUnavailable(f"hold store unavailable: {exc}") from exc

    def usage_pending(self) -> int:
        client = self._sync_client()
        pending = client.llen(self.queue_key)
        for batch in client.zrange(self.inflight_key, 0, -1):
            pending += client.llen(batch)
        return int(pending)

    def counter(self, part):
        values = self._sync_client().hmget(self.counter_key(part.counter), "s", "h")
        if values[0] is None:
            return None
        return int(values[0]), int(values[1] or 0)

    def hold_state(self, hold_id):
        state = self._sync_client().hget(self.hold_key(hold_id), "state")
        return None if state is None else _text(state)

    async def aclose(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is self._redis:
            self._loop = self._redis = None
        if client is not None:
            await client.aclose()
        if self._sync is not None:
            self._sync.close()
            self._sync = None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
