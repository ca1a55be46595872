"""Redis down or hung under the /v1 path (issue 12, point 1).

A server process of the gateway (uvicorn, as deployed) runs on a Redis of the test's own,
which the test stops, freezes and starts again; the machine's shared Redis is never touched.
With Redis gone the gateway answers every request in the OpenAI error shape: authentication
falls back to the database (a key never seen before still authenticates, an unknown one is
still refused with 401), admission fails closed with a 503 and `Retry-After`, and nothing is a
bare 500. A hung Redis costs one short timeout, not one per request. When Redis comes back the
same process serves again, without a restart.
"""

from __future__ import annotations

import signal
import time
import uuid

import httpx
import pytest

from accounts import keyformat
from accounts import services as account_services
from tests.billing.test_attacks_durability import OwnRedis
from tests.billing.test_multiprocess_gateway import HERO, Servers
from tests.billing.test_multiprocess_gateway import ready as ready  # a fixture

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": HERO, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


@pytest.fixture
def own_redis():
    server = OwnRedis()
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.proc.send_signal(signal.SIGCONT)  # in case the test left it frozen
    server.kill()


@pytest.fixture
def server(ready, sim, own_redis, tmp_path):
    log = (tmp_path / "server.log").open("wb")
    servers = Servers(
        count=1,
        stderr=log,
        simulator_url=sim.url,
        prefix=f"faults:{uuid.uuid4().hex[:10]}",
        extra_env={"REDIS_URL": own_redis.url, "CELERY_BROKER_URL": own_redis.url},
    )
    yield servers
    servers.stop()


def _key(alice, name: str, **limits) -> str:
    _, secret = account_services.api_key_create(
        organization=alice.org, created_by=alice.user, name=name, **limits
    )
    return secret


def _post(http: httpx.Client, url: str, secret: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = http.post(
        f"{url}/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {secret}"}
    )
    return response, time.monotonic() - started


def _assert_unavailable(response: httpx.Response) -> None:
    """A refusal a client can act on: 503, the OpenAI error shape, and when to retry."""
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["type"] == "service_unavailable"
    assert error["code"] in ("billing_unavailable", "rate_limiter_unavailable")
    assert response.headers["retry-after"] == "1"


def test_redis_stopped_answers_503_in_the_openai_shape_and_recovers_without_a_restart(
    ready, server, own_redis
):
    alice = ready
    url = server.url(0)
    warm = _key(alice, "warm")
    limited = _key(alice, "limited", rpm_limit=1000)
    cold = _key(alice, "cold")
    unknown = keyformat.generate()
    with httpx.Client(timeout=30) as http:
        for secret in (warm, limited):
            response, _ = _post(http, url, secret)
            assert response.status_code == 200, response.text

        own_redis.kill()

        statuses: dict[int, int] = {}
        durations = []
        for _ in range(10):
            for secret in (warm, limited, cold):
                response, took = _post(http, url, secret)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                durations.append(took)
                if response.status_code != 200:
                    _assert_unavailable(response)
        assert 500 not in statuses, statuses
        # Spend holds live in Redis: with Redis down nothing is admitted (fail closed).
        assert statuses == {503: 30}, statuses
        durations.sort()
        print(  # the figure the issue asks for (pytest -s)
            f"\nRedis stopped: 503 in p50 {durations[15] * 1000:.1f} ms, "
            f"max {durations[-1] * 1000:.1f} ms"
        )
        assert durations[-1] < 2.0

        # A key this process never saw authenticates from the database; an unknown key is
        # still told it is wrong (401, not a 500 or a 503).
        info = http.get(f"{url}/key", headers={"Authorization": f"Bearer {cold}"})
        assert info.status_code == 200, info.text
        assert info.json()["data"]["name"] == "cold"
        refused = http.get(f"{url}/key", headers={"Authorization": f"Bearer {unknown}"})
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "invalid_api_key"
        assert http.get(f"{url}/models").status_code == 200  # the catalog: its last copy

        own_redis.start()  # back, empty (no persistence), on the same address
        deadline = time.monotonic() + 15
        recovered: dict[str, int] = {}
        while len(recovered) < 3 and time.monotonic() < deadline:
            for name, secret in (("warm", warm), ("limited", limited), ("cold", cold)):
                if name in recovered:
                    continue
                response, _ = _post(http, url, secret)
                assert response.status_code in (200, 503), response.text
                if response.status_code == 200:
                    recovered[name] = response.status_code
            time.sleep(0.2)
        assert set(recovered) == {"warm", "limited", "cold"}


def test_a_hung_redis_costs_one_short_timeout_not_one_per_request(ready, server, own_redis):
    alice = ready
    url = server.url(0)
    secrets = [_key(alice, f"k{i}") for i in range(3)]
    with httpx.Client(timeout=30) as http:
        for secret in secrets:
            response, _ = _post(http, url, secret)
            assert response.status_code == 200, response.text
        time.sleep(1.2)  # the keys' local copies lapse: the next lookups ask Redis

        own_redis.proc.send_signal(signal.SIGSTOP)  # accepts connections, answers nothing
        try:
            started = time.monotonic()
            durations = []
            for _ in range(5):
                for secret in secrets:
                    response, took = _post(http, url, secret)
                    durations.append(took)
                    assert response.status_code in (200, 503), response.text
                    if response.status_code == 503:
                        _assert_unavailable(response)
            total = time.monotonic() - started
        finally:
            own_redis.proc.send_signal(signal.SIGCONT)
        durations.sort()
        print(
            f"\nRedis hung: 15 requests in {total:.2f} s, p50 {durations[7] * 1000:.1f} ms, "
            f"max {durations[-1] * 1000:.1f} ms"
        )
        # One request pays the socket timeout (1 s); the cooldown spares the others.
        assert durations[-1] < 3.0
        assert total < 6.0

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            response, _ = _post(http, url, secrets[0])
            if response.status_code == 200:
                break
            time.sleep(0.2)
        assert response.status_code == 200, response.text
