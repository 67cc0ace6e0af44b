"""The shared HTTP layer: retry classification, backoff, Retry-After, budgets, typed errors,
strict JSON, transport safety and redaction (reliability.md §2.7, §3, §4.3 F-500/F-429/F-TMO/F-PAGE,
§4.4 B-JSON/B-NAN/B-HUGE)."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestration.lib.channels.http import (
    KEYED_WRITE,
    UNKEYED_WRITE,
    AuthError,
    BadResponse,
    ChannelHttp,
    ConfigError,
    CostBudget,
    OutcomeUnknown,
    Pacer,
    RateLimited,
    Redactor,
    RequestRejected,
    RetryPolicy,
    TransientError,
    parse_json,
    parse_timestamp,
)
from tests.unit.channels.channel_fakes import CANARY, Script, reply, sequence

NOW = datetime(2026, 1, 12, 12, 0, tzinfo=UTC)


def make(script: Script, sleeps, **kw) -> ChannelHttp:
    return ChannelHttp("testchan", "https://api.example.com", headers={"Authorization": f"Bearer {CANARY}"},
                       secrets=[CANARY], transport=script.transport, sleep=sleeps, rng=random.Random(1),
                       now=lambda: NOW, **kw)


# ---------------------------------------------------------------- retry classification


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried_then_succeeds(status, sleeps):
    script = Script(sequence(reply(status, {"error": "x"}), reply(status), reply(200, {"ok": True})))
    answer = make(script, sleeps).request("GET", "/x")
    assert answer.data == {"ok": True}
    assert len(script.requests) == 3
    assert len(sleeps) == 2


def test_backoff_is_exponential_with_full_jitter(sleeps):
    script = Script(sequence(reply(503)))
    policy = RetryPolicy(max_attempts=6, backoff_base=1.0, backoff_cap=8.0, budget_seconds=1000)
    with pytest.raises(TransientError):
        make(script, sleeps, retry=policy).request("GET", "/x")
    assert len(script.requests) == 6
    caps = [1, 2, 4, 8, 8]
    assert all(0 <= s <= cap for s, cap in zip(sleeps, caps, strict=True))
    assert len(set(sleeps)) == len(sleeps)  # jittered, not a fixed ladder


@pytest.mark.parametrize("status,error", [(400, RequestRejected), (404, RequestRejected), (409, RequestRejected),
                                          (422, RequestRejected), (401, AuthError), (403, AuthError)])
def test_other_4xx_are_not_retried(status, error, sleeps):
    script = Script(sequence(reply(status, {"errors": [{"code": "NOPE"}]})))
    with pytest.raises(error) as info:
        make(script, sleeps).request("GET", "/x")
    assert len(script.requests) == 1 and sleeps == []
    assert info.value.status == status


def test_retry_after_seconds_is_honoured(sleeps):
    script = Script(sequence(reply(429, headers={"Retry-After": "7"}), reply(200, {})))
    make(script, sleeps).request("GET", "/x")
    assert sleeps[0] >= 7


def test_retry_after_http_date_is_honoured(sleeps):
    when = format_datetime(NOW + timedelta(seconds=12), usegmt=True)
    script = Script(sequence(reply(429, headers={"Retry-After": when}), reply(200, {})))
    make(script, sleeps).request("GET", "/x")
    assert 12 <= sleeps[0] < 13


def test_a_throttle_budget_caps_the_waits_for_a_throttling_channel(sleeps):
    budget = [10.0]
    script = Script(sequence(reply(429, headers={"Retry-After": "7"}), reply(200, {})))
    make(script, sleeps).request("GET", "/x", throttle_budget=budget)
    assert sleeps[0] >= 7 and budget[0] <= 3  # spent in place
    script = Script(sequence(reply(429, headers={"Retry-After": "7"}), reply(200, {})))
    with pytest.raises(RateLimited) as info:
        make(script, sleeps).request("GET", "/x", throttle_budget=budget)
    assert len(sleeps) == 1 and len(script.requests) == 1 and info.value.retry_after >= 7


def test_retry_after_beyond_budget_stops_cleanly_without_waiting(sleeps):
    script = Script(sequence(reply(429, headers={"Retry-After": "3600"})))
    with pytest.raises(RateLimited) as info:
        make(script, sleeps, retry=RetryPolicy(budget_seconds=60)).request("GET", "/x")
    assert sleeps == [] and len(script.requests) == 1
    assert info.value.retry_after == 3600


def test_throttling_that_never_ends_is_rate_limited(sleeps):
    script = Script(sequence(reply(429)))
    with pytest.raises(RateLimited):
        make(script, sleeps, retry=RetryPolicy(max_attempts=3)).request("GET", "/x")
    assert len(script.requests) == 3


def test_total_budget_caps_waiting(sleeps):
    script = Script(sequence(reply(503, headers={"Retry-After": "4"})))
    with pytest.raises(TransientError):
        make(script, sleeps, retry=RetryPolicy(max_attempts=100, budget_seconds=10)).request("GET", "/x")
    assert sum(sleeps) <= 10


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("slow"), httpx.ConnectError("refused"),
                                 httpx.RemoteProtocolError("peer closed connection"), httpx.ReadError("reset")])
def test_reads_retry_timeouts_and_dropped_connections(exc, sleeps):
    script = Script(sequence(exc, reply(200, {"ok": 1})))
    assert make(script, sleeps).request("POST", "/graphql").data == {"ok": 1}
    assert len(script.requests) == 2


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped")])
def test_unkeyed_write_that_may_have_landed_is_never_resent(exc, sleeps):
    script = Script(sequence(exc, reply(200, {})))
    with pytest.raises(OutcomeUnknown):
        make(script, sleeps).request("PUT", "/w", json_body={"q": 1}, mode=UNKEYED_WRITE)
    assert len(script.requests) == 1


def test_unkeyed_write_is_resent_when_it_never_left(sleeps):
    script = Script(sequence(httpx.ConnectError("refused"), reply(429), reply(200, {"done": True})))
    answer = make(script, sleeps).request("PUT", "/w", json_body={"q": 1}, mode=UNKEYED_WRITE)
    assert answer.data == {"done": True} and len(script.requests) == 3


def test_unkeyed_write_5xx_is_unknown(sleeps):
    script = Script(sequence(reply(500)))
    with pytest.raises(OutcomeUnknown):
        make(script, sleeps).request("PUT", "/w", json_body={}, mode=UNKEYED_WRITE)
    assert len(script.requests) == 1


def test_keyed_write_is_resent_with_identical_bytes_and_exhaustion_is_unknown(sleeps):
    script = Script(sequence(httpx.ReadTimeout("slow")))
    with pytest.raises(OutcomeUnknown):
        make(script, sleeps, retry=RetryPolicy(max_attempts=3)).request(
            "POST", "/w", json_body={"idempotency_key": "k1", "q": "5"}, mode=KEYED_WRITE)
    assert len(script.requests) == 3
    assert len({r.content for r in script.requests}) == 1


def test_keyed_write_only_throttled_is_rate_limited_not_unknown(sleeps):
    script = Script(sequence(reply(429)))
    with pytest.raises(RateLimited):
        make(script, sleeps, retry=RetryPolicy(max_attempts=2)).request("POST", "/w", json_body={}, mode=KEYED_WRITE)


# ---------------------------------------------------------------- bodies (F-PAGE cut_json, B-JSON)


def test_cut_json_page_is_retried_not_parsed(sleeps):
    whole = b'{"items": [1, 2, 3], "cursor": "abc"}'
    script = Script(sequence(reply(200, raw=whole[:17]), reply(200, raw=whole)))
    assert make(script, sleeps).request("GET", "/page").data == {"items": [1, 2, 3], "cursor": "abc"}
    assert len(script.requests) == 2


def test_persistently_cut_body_is_bad_response(sleeps):
    script = Script(sequence(reply(200, raw=b'{"items": [1, 2')))
    with pytest.raises(BadResponse):
        make(script, sleeps, retry=RetryPolicy(max_attempts=2)).request("GET", "/page")


def test_nan_in_a_page_is_refused(sleeps):
    script = Script(sequence(reply(200, raw=b'{"quantity": NaN}')))
    with pytest.raises(BadResponse):
        make(script, sleeps, retry=RetryPolicy(max_attempts=1)).request("GET", "/page")


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", '{"q": NaN}', '[1, Infinity]'])
def test_parse_json_rejects_non_finite(text):
    with pytest.raises(ValueError, match="non-finite"):
        parse_json(text.encode())


def test_parse_json_floats_are_decimal_and_huge_numbers_stay_finite():
    data = parse_json(b'{"a": 1e309, "b": 0.1, "c": 12, "d": 123456789012345678901234567890}')
    assert data["a"] == Decimal("1E+309") and data["a"].is_finite()
    assert data["b"] == Decimal("0.1") and isinstance(data["b"], Decimal)
    assert data["c"] == 12 and isinstance(data["c"], int)
    assert data["d"] == 123456789012345678901234567890


@pytest.mark.parametrize("raw,reason", [
    (b"9" * 5000, "digits"),  # beyond Python's int conversion limit
    (b'{"a": 1, "a": 2}', "duplicate"),
    (b'{"a": "\xff\xfe"}', "utf-8"),
    (b"[" * 100 + b"]" * 100, "nested"),
    (b'{"a": 1', "delimiter"),
])
def test_parse_json_refuses_malformed_input(raw, reason):
    with pytest.raises(ValueError, match=reason):
        parse_json(raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_parse_json_is_total(raw):
    """Any byte string either parses (with no float inside) or raises ValueError/RecursionError."""
    try:
        value = parse_json(raw)
    except (ValueError, RecursionError):
        return
    stack = [value]
    while stack:
        node = stack.pop()
        assert not isinstance(node, float)
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def test_parse_timestamp_requires_a_zone_unless_the_contract_says_utc():
    assert parse_timestamp("2026-01-02T03:04:05.123Z") == datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)
    with pytest.raises(ValueError, match="time zone"):
        parse_timestamp("2026-01-02T03:04:05")
    assert parse_timestamp("2026-01-02T03:04:05", assume_utc=True).tzinfo is UTC


# ---------------------------------------------------------------- transport safety (S-6, S-7)


@pytest.mark.parametrize("url", ["http://api.example.com", "http://10.0.0.5:8080", "ftp://x", "api.example.com"])
def test_plain_http_is_refused_for_remote_hosts(url):
    with pytest.raises(ConfigError):
        ChannelHttp("c", url, headers={}, secrets=[])


@pytest.mark.parametrize("url", ["https://api.example.com", "http://127.0.0.1:8123", "http://localhost:1",
                                 "http://[::1]:9000"])
def test_https_and_loopback_are_accepted(url):
    ChannelHttp("c", url, headers={}, secrets=[]).close()


def test_tls_verification_cannot_be_disabled():
    with pytest.raises(ConfigError, match="TLS verification"):
        ChannelHttp("c", "https://api.example.com", headers={}, secrets=[], verify=False)


def test_timeouts_are_connect_5_read_30():
    http = ChannelHttp("c", "https://api.example.com", headers={}, secrets=[])
    assert http._client.timeout.connect == 5.0 and http._client.timeout.read == 30.0


# ---------------------------------------------------------------- redaction (S-3 canary)


def test_canary_token_never_appears_in_logs_or_errors(sleeps, caplog):
    echo = {"errors": [{"detail": f"token {CANARY} rejected", "header": f"Authorization: Bearer {CANARY}"}]}
    script = Script(sequence(reply(503, echo), reply(500, raw=f"Bearer {CANARY}".encode()), reply(401, echo),
                             reply(422, echo)))
    http = make(script, sleeps)
    caught: list[Exception] = []
    with caplog.at_level(logging.DEBUG):
        for _ in range(2):
            try:
                http.request("GET", f"/x?access_token={CANARY}")
            except Exception as exc:  # noqa: BLE001 - every error type is inspected below
                caught.append(exc)
    assert [type(e) for e in caught] == [AuthError, RequestRejected]
    texts = [caplog.text, repr(http)] + [str(e) + repr(e) + repr(getattr(e, "body", "")) for e in caught]
    assert caplog.records, "the retries were logged"
    for text in texts:
        assert CANARY not in text
    assert all(e.__cause__ is None and (e.__context__ is None or e.__suppress_context__) for e in caught)
    assert script.requests[0].headers["authorization"] == f"Bearer {CANARY}"  # it was really sent


def test_redactor_removes_credentials_by_shape():
    redact = Redactor([])
    assert "abc.def" not in redact("Authorization: Bearer abc.def")
    assert "s3cr3t" not in redact('{"X-Shopify-Access-Token": "s3cr3t"}')
    assert "Atza|x" not in redact("x-amz-access-token=Atza|x")
    assert "zzz" not in redact("https://h/p?a=1&access_token=zzz&b=2")


# ---------------------------------------------------------------- client-side throttles


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_cost_budget_waits_for_the_requested_cost():
    clock = FakeClock()
    budget = CostBudget(1000, 50, sleep=clock.sleep, clock=clock)
    budget.observe(100, 1000, 50)
    assert budget.wait_for(600) == pytest.approx(10.0)
    assert budget.wait_for(600) == 0.0


def test_pacer_keeps_the_rate():
    clock = FakeClock()
    pacer = Pacer(2.0, sleep=clock.sleep, clock=clock)
    for _ in range(5):
        pacer.wait()
    assert clock.t == pytest.approx(2.0)
