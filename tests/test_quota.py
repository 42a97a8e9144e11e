"""Quotas announced in headers: every family read, nonsense clamped, pacing that keeps a
run inside the quota."""

from __future__ import annotations

import itertools
import math
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fetchmany.fetch.quota import HEADROOM, Announced, QuotaPacer, read_announced

NOW = 1_800_000_000.0  # a Unix time, for resets given as one


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(
            {"RateLimit-Policy": '"default";q=100;w=1', "RateLimit": '"default";r=42;t=1'},
            Announced(100, 1, 42, 1),
            id="ietf",
        ),
        pytest.param(
            {"RateLimit-Policy": "default;q=100;w=60", "RateLimit": "default;r=7;t=30"},
            Announced(100, 60, 7, 30),
            id="ietf-token-names",
        ),
        pytest.param(
            {
                "RateLimit-Policy": '"burst";q=100;w=1, "daily";q=1000;w=86400',
                "RateLimit": '"burst";r=99;t=1, "daily";r=900;t=4000',
            },
            Announced(1000, 86400, 900, 4000),
            id="ietf-two-policies",
        ),
        pytest.param(
            {
                "RateLimit-Policy": '"burst";q=100;w=1, "daily";q=1000;w=86400',
                "RateLimit": '"burst";r=0;t=1, "daily";r=900;t=4000',
            },
            Announced(100, 1, 0, 1),
            id="ietf-a-spent-policy",
        ),
        pytest.param(
            {"RateLimit-Policy": '"bytes";q=5000;qu="content-bytes";w=1'},
            None,  # not a quota of requests
            id="ietf-quota-of-bytes-ignored",
        ),
        pytest.param(
            {"RateLimit-Policy": "100;w=60", "RateLimit": "limit=100, remaining=50, reset=30"},
            Announced(100, 60, 50, 30),
            id="draft-07",
        ),
        pytest.param(
            {"RateLimit-Limit": "100", "RateLimit-Remaining": "42", "RateLimit-Reset": "5"},
            Announced(100, None, 42, 5),
            id="earlier-drafts",
        ),
        pytest.param(
            {"RateLimit-Limit": "100, 100;w=10", "RateLimit-Remaining": "42"},
            Announced(100, 10, 42, None),
            id="earlier-drafts-with-window",
        ),
        pytest.param(
            {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "59", "X-RateLimit-Reset": "60"},
            Announced(60, None, 59, 60),
            id="x-seconds",
        ),
        pytest.param(
            {
                "X-RateLimit-Limit": "5000",
                "X-RateLimit-Remaining": "4999",
                "X-RateLimit-Reset": str(int(NOW) + 3600),
            },
            Announced(5000, None, 4999, 3600),
            id="x-unix-time-as-github",
        ),
        pytest.param(
            {"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": str(int(NOW * 1000) + 2500)},
            Announced(None, None, 3, 2.5),
            id="x-unix-milliseconds",
        ),
        pytest.param({"Content-Type": "text/plain"}, None, id="none"),
    ],
)
def test_each_family_is_read(headers: dict[str, str], expected: Announced | None) -> None:
    found = read_announced(headers, now=NOW)
    if expected is None:
        assert found == ()
        return
    binding = [policy for policy in found if policy.quota == expected.quota]
    assert len(binding) == 1, found
    policy = binding[0]
    assert policy.window == expected.window
    assert policy.remaining == expected.remaining
    if expected.reset is None:
        assert policy.reset is None
    else:
        assert policy.reset == pytest.approx(expected.reset, abs=0.01)


def test_every_policy_is_read_with_its_state() -> None:
    found = read_announced(
        {
            "RateLimit-Policy": '"burst";q=100;w=1, "daily";q=1000;w=86400',
            "RateLimit": '"burst";r=99;t=1, "daily";r=900;t=4000',
        },
        now=NOW,
    )
    assert found == (
        Announced(100, 1, 99, 1, "burst"),
        Announced(1000, 86400, 900, 4000, "daily"),
    )


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"X-RateLimit-Remaining": "-5"}, Announced(None, None, 0, None), id="neg"),
        pytest.param(
            {"X-RateLimit-Limit": "0", "X-RateLimit-Remaining": "3"},
            Announced(None, None, 3, None),
            id="quota-of-0-is-no-quota",
        ),
        pytest.param(
            {"RateLimit-Policy": '"p";q=100;w=0', "RateLimit": '"p";r=5'},
            Announced(100, None, 5, None, "p"),
            id="window-of-0-is-none",
        ),
        pytest.param(
            {"X-RateLimit-Limit": "ten", "X-RateLimit-Remaining": "nan", "X-RateLimit-Reset": "x"},
            None,
            id="words",
        ),
        pytest.param({"RateLimit": '"p";r=inf'}, None, id="not-a-number"),
        pytest.param({"X-RateLimit-Remaining": "1e400"}, None, id="overflow"),
        pytest.param({"X-RateLimit-Remaining": "\uff15"}, None, id="fullwidth-digit"),
        pytest.param(
            {"RateLimit-Policy": '"d\xe9";q=1;w=1', "RateLimit": '"d\xe9";r=0;t=1'},
            None,
            id="structured-field-beyond-ascii",
        ),
    ],
)
def test_nonsense_is_ignored_or_clamped(
    headers: dict[str, str], expected: Announced | None
) -> None:
    assert read_announced(headers, now=NOW) == (() if expected is None else (expected,))


def test_a_reset_in_the_year_3000_never_waits_past_the_longest_wait() -> None:
    announced = read_announced(
        {
            "X-RateLimit-Limit": "10",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "32503680000",
        },
        now=NOW,
    )
    pacer = QuotaPacer(longest_wait=2.0)
    number, _ = pacer.reserve(0.0)
    for policy in announced:
        pacer.learn(number, policy, 0.0)
    _, wait = pacer.reserve(0.0)
    assert 0 < wait <= 2.0


@given(
    name=st.sampled_from(
        [
            "RateLimit",
            "RateLimit-Policy",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
        ]
    ),
    value=st.text(max_size=60),
    other=st.text(alphabet='0123456789-.,;="qwrtinf ', max_size=30),
)
@example(name="RateLimit", value='"a";r=1;t=1', other='"a";q=0;w=-1')
@example(name="X-RateLimit-Reset", value="99999999999999999999999", other="1")
def test_any_header_text_is_read_without_a_crash_and_within_bounds(
    name: str, value: str, other: str
) -> None:
    """Whatever a server sends, reading it never raises, and what is read is clamped:
    nothing negative, nothing infinite, no wait past the longest."""
    headers = {name: value, "RateLimit-Policy": other, "X-RateLimit-Remaining": other}
    pacer = QuotaPacer(longest_wait=5.0)
    for found in read_announced(headers, now=NOW):
        for part in (found.quota, found.window, found.remaining, found.reset):
            assert part is None or (math.isfinite(part) and part >= 0)
        assert found.quota is None or found.quota > 0
        assert found.window is None or found.window > 0
        for at in range(4):
            number, wait = pacer.reserve(float(at))
            assert 0 <= wait <= 5.0 + 1e-9
            pacer.learn(number, found, float(at))


def test_starts_are_paced_at_the_quotas_rate_with_headroom() -> None:
    pacer = QuotaPacer()
    number, wait = pacer.reserve(0.0)
    assert wait == 0  # nothing known yet: the first request goes
    pacer.learn(number, Announced(100, 1, 99, 1), 0.05)
    starts = []
    now = 0.05
    for _ in range(50):
        _, wait = pacer.reserve(now)
        now += wait
        starts.append(now)
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    assert rate == pytest.approx(100 * HEADROOM, rel=1e-6)


def test_idle_time_is_not_saved_up_as_a_burst() -> None:
    pacer = QuotaPacer()
    number, _ = pacer.reserve(0.0)
    pacer.learn(number, Announced(10, 1, 9, 1), 0.0)
    pacer.reserve(0.0)
    _, wait = pacer.reserve(100.0)  # a long stall, then two at once
    assert wait == 0
    _, wait = pacer.reserve(100.0)
    assert wait == pytest.approx(1 / (10 * HEADROOM))


def test_a_spent_budget_waits_for_the_reset_counting_requests_in_flight() -> None:
    """The answer to request 1 said 3 were left; requests 2..4 started after it may each
    have been counted since: the fifth waits for the reset."""
    pacer = QuotaPacer()
    first, _ = pacer.reserve(0.0)
    for _ in range(3):
        pacer.reserve(0.0)
    pacer.learn(first, Announced(None, None, 3, 0.8), 0.1)
    _, wait = pacer.reserve(0.1)
    assert wait == pytest.approx(0.8)


def test_a_window_seen_to_begin_dates_the_next_reset() -> None:
    """Whole-second resets (``t=1``) overstate the time left by up to a second; a jump
    in what is left shows when a window began, and the next reset follows from it."""
    pacer = QuotaPacer()  # no quota said (no pace): only the budget and its reset
    number, _ = pacer.reserve(0.0)
    pacer.learn(number, Announced(None, 1, 3, 1), 0.0)
    number, _ = pacer.reserve(0.3)
    pacer.learn(number, Announced(None, 1, 99, 1), 0.35)  # refilled: a window began by 0.35
    number, _ = pacer.reserve(0.9)
    pacer.learn(number, Announced(None, 1, 0, 1), 0.9)
    _, wait = pacer.reserve(0.9)
    assert wait == pytest.approx(0.35 + 1 - 0.9)  # not the whole second t=1 says


def test_a_share_paces_a_worker_at_its_part_of_the_quota() -> None:
    pacer = QuotaPacer(share=0.5)
    number, _ = pacer.reserve(0.0)
    pacer.learn(number, Announced(100, 1, 99, 1), 0.0)
    _, first = pacer.reserve(0.0)
    _, second = pacer.reserve(0.0)
    assert second - first == pytest.approx(1 / (50 * HEADROOM))


def test_no_pace_is_slower_than_the_longest_wait() -> None:
    """A quota of 1 in 100,000 s, or a daily one read as the binding rate, paced one
    request a day: waits are capped, as every wait of a run is, by --max-backoff."""
    pacer = QuotaPacer(longest_wait=3.0)
    number, _ = pacer.reserve(0.0)
    pacer.learn(number, Announced(1, 100_000, 0, 100_000), 0.0)
    waits = [pacer.reserve(0.0)[1] for _ in range(3)]
    assert max(waits) <= 3.0


def test_a_budget_with_plenty_left_is_not_paced() -> None:
    """5,000 an hour with 4,940 left: a run of 60 has no reason to crawl at 1.4 a second
    (it took 45 s where --limit 10 took half a second)."""
    pacer = QuotaPacer()
    number, _ = pacer.reserve(0.0)
    pacer.learn(number, Announced(5000, None, 4940, 3600), 0.0)
    assert all(pacer.reserve(0.0)[1] == 0 for _ in range(60))


def test_a_budget_below_half_is_spread_over_the_time_left() -> None:
    pacer = QuotaPacer()
    number, _ = pacer.reserve(0.0)
    pacer.learn(number, Announced(1000, 3600, 100, 1000), 0.0)
    _, first = pacer.reserve(0.0)
    _, second = pacer.reserve(0.0)
    # 100 left over 1000 s, with the headroom; then 99 (one started since the answer)
    assert first == pytest.approx(1000 / (100 * HEADROOM), rel=1e-6)
    assert second - first == pytest.approx(1000 / (99 * HEADROOM), rel=1e-6)


def test_of_two_policies_the_one_that_binds_paces() -> None:
    """A burst policy and a daily one with 999 left: the daily one holds nothing back."""
    pacer = QuotaPacer()
    number, _ = pacer.reserve(0.0)
    for policy in (Announced(10, 1, 9, 1, "burst"), Announced(1000, 86400, 999, 86000, "day")):
        pacer.learn(number, policy, 0.0)
    now = 0.0
    starts = []
    for _ in range(9):
        _, wait = pacer.reserve(now)
        now += wait
        starts.append(now)
    assert (starts[-1] - starts[0]) == pytest.approx(8 / (10 * HEADROOM), rel=1e-6)


def test_two_refills_measure_the_window_whatever_the_servers_clock() -> None:
    """A Unix-time reset from a clock 10 s ahead says 11 s for a 1 s window; the time
    between two refills says 1 s, and the reset follows from it."""
    pacer = QuotaPacer()  # no quota said: only the budget, its reset and the window
    for at, left in ((0.0, 3), (0.2, 99), (0.7, 4), (1.2, 99), (1.5, 0)):
        number, _ = pacer.reserve(at)
        pacer.learn(number, Announced(None, None, left, 11), at)
    _, wait = pacer.reserve(1.5)
    assert wait == pytest.approx(2.2 - 1.5)  # the next window at 2.2, not 12.5


def test_redirect_hops_are_spent_too() -> None:
    pacer = QuotaPacer()
    number, _ = pacer.reserve(0.0)
    pacer.learn(number, Announced(None, None, 2, 5), 0.0)
    pacer.charge(2)  # the next attempt followed two redirects on this host
    _, wait = pacer.reserve(0.0)
    assert wait == pytest.approx(5)


def test_after_a_spent_budget_the_starts_resume_paced_not_in_a_burst() -> None:
    """Every request held for a spent budget was let go at the reset at once, on top of
    the paced ones: 41 arrived in a window of 40 under -P 2."""
    pacer = QuotaPacer()
    number, _ = pacer.reserve(0.0)
    pacer.learn(number, Announced(40, 1, 0, 0.5), 0.0)
    starts = [pacer.reserve(0.0)[1] for _ in range(4)]
    assert starts[0] == pytest.approx(0.5)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps == pytest.approx([1 / (40 * HEADROOM)] * 3)


def test_a_quota_the_server_does_not_keep_is_not_obeyed_at_a_crawl() -> None:
    """ "Nothing left, reset in the year 3000" on every answer, each one served: after a
    few answers that prove it, the policy is ignored (it took 45 s for 200 items)."""
    pacer = QuotaPacer(longest_wait=2.0)
    now = 0.0
    waits = []
    for _ in range(8):
        number, wait = pacer.reserve(now)
        now += wait
        waits.append(wait)
        pacer.learn(number, Announced(10, None, 0, 1e9), now, served=True)
    assert waits[-3:] == [0, 0, 0]
    assert sum(waits) <= 3 * 2.0 + 1e-9


def test_an_answer_arriving_just_after_a_window_ends_speaks_of_the_window_before() -> None:
    """Found by bench/adaptive.py: an answer that left the server just before a window
    ended (6 left, 9 more in flight) arrived a fraction of a millisecond after the
    window's end as the client reckons it. That end was taken as passed and the one after
    it as the reset, so the client stood idle for a whole window while the server had
    refilled: 0.69x of the quota's rate."""
    pacer = QuotaPacer()  # no quota said (no pace): only the budget and its reset
    for at, left in ((0.0, 3), (0.25, 99), (0.8, 5), (1.249, 99)):  # a window of 0.999 s
        number, _ = pacer.reserve(at)
        pacer.learn(number, Announced(None, None, left, 1), at)
    number, _ = pacer.reserve(2.2)  # answered below: what the server had left then
    for _ in range(9):
        pacer.reserve(2.2)
    pacer.learn(number, Announced(None, None, 6, 1), 2.2482)  # the window ended at 2.248
    _, wait = pacer.reserve(2.2482)
    assert wait == 0  # a new window began: its budget is whole


def test_an_hours_window_is_not_taken_to_have_ended_minutes_ago() -> None:
    """The answer's age allowed for is a share of its window, but a second at most: an
    answer saying nothing is left, 2 minutes after an hourly window's end as reckoned,
    waits for the next end, not none."""
    pacer = QuotaPacer()
    for at, left in ((0.0, 3), (100.0, 4000), (3700.0, 4000)):  # windows of an hour
        number, _ = pacer.reserve(at)
        pacer.learn(number, Announced(None, None, left, 3600), at)
    number, _ = pacer.reserve(7420.0)
    pacer.learn(number, Announced(None, None, 0, 3600), 7420.0)  # 2 min after 7300
    _, wait = pacer.reserve(7420.0)
    assert wait == pytest.approx(60.0)  # capped by the longest wait, not 0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(
            {
                "RateLimit-Limit": "100, 100;w=60;comment=fixed window",
                "RateLimit-Remaining": "5",
            },
            Announced(100, None, 5, None),
            id="limit-not-a-structured-field-first-number",
        ),
        pytest.param(
            {"RateLimit-Limit": "0, 100;w=10", "RateLimit-Remaining": "5"},
            Announced(100, 10, 5, None),
            id="limit-a-zero-member-skipped",
        ),
        pytest.param(
            {"RateLimit-Policy": "100;w=60", "RateLimit": "remaining=50, reset=30"},
            Announced(100, 60, 50, 30),
            id="draft-07-without-limit",
        ),
        pytest.param(
            {"RateLimit-Policy": "100;w=60", "RateLimit": "limit=100, reset=30"},
            Announced(100, 60, None, 30),
            id="draft-07-without-remaining",
        ),
        pytest.param(
            {"RateLimit-Policy": "100;w=60", "RateLimit": "reset=30"},
            Announced(100, 60, None, None),
            id="a-dictionary-naming-neither-limit-nor-remaining-is-no-state",
        ),
        pytest.param(
            {
                "RateLimit-Policy": "100;w=60",
                "RateLimit": f"limit=100, remaining=50, reset={int(NOW) + 30}",
            },
            Announced(100, 60, 50, 30),
            id="draft-07-reset-as-a-unix-time",
        ),
        pytest.param(
            {
                "RateLimit-Policy": '"default";q=100;w=60',
                "RateLimit": f'"default";r=5;t={int(NOW) + 30}',
            },
            Announced(100, 60, 5, 30, "default"),
            id="ietf-reset-as-a-unix-time",
        ),
    ],
)
def test_each_shape_is_read_whole(headers: dict[str, str], expected: Announced) -> None:
    assert read_announced(headers, now=NOW) == (expected,)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(
            {"RateLimit-Limit": "(1 2), 100", "RateLimit-Remaining": "5"},
            Announced(100, None, 5, None),
            id="limit",
        ),
        pytest.param(
            {"RateLimit-Policy": "100;w=60", "RateLimit": "limit=(1 2), remaining=5, reset=3"},
            Announced(100, 60, 5, 3),
            id="draft-07-state",
        ),
        pytest.param(
            {
                "RateLimit-Policy": '"default";q=100;w=60',
                "RateLimit": '(1 2);r=0;t=9, "default";r=7;t=3',
            },
            Announced(100, 60, 7, 3, "default"),
            id="ietf-state",
        ),
    ],
)
def test_an_inner_list_where_a_number_or_name_belongs_hides_nothing_else(
    headers: dict[str, str], expected: Announced
) -> None:
    """A structured field's member may be an inner list (``(1 2)``), which has no value:
    it is passed over, never a crash, and what else the field says is read."""
    found = read_announced(headers, now=NOW)
    assert [policy for policy in found if policy.name == expected.name] == [expected]


def test_a_unix_time_reset_is_read_against_the_servers_date() -> None:
    """GitHub's ``X-RateLimit-Reset`` is a Unix time: read against the answer's ``Date``,
    a server whose clock is a day off from ours still says 30 s; with no ``Date`` that
    parses, our clock is the one."""
    from email.utils import formatdate

    served_at = int(time.time()) - 86_400  # the server's clock a day behind ours
    reset = str(served_at + 30)
    dated = read_announced(
        {
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": reset,
            "Date": formatdate(served_at, usegmt=True),
        }
    )
    assert dated == (Announced(None, None, 0, 30.0),)
    for date in ({}, {"Date": "yesterday"}):
        undated = read_announced({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset} | date)
        assert undated == (Announced(None, None, 0, 0.0),)  # a reset already past by ours
