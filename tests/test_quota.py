"""Quotas announced in headers: every family read, nonsense clamped, pacing that keeps a
run inside the quota."""

from __future__ import annotations

import itertools
import math
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from multidict import CIMultiDict

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
        pytest.param(
            {"RateLimit-Policy": '"default";q=100;w=60'},
            Announced(100, 60, None, None, "default"),
            id="ietf-policy-alone",
        ),
        pytest.param(
            {
                "RateLimit-Policy": '"default";q=100;w=60',
                "RateLimit": '"default";r=5;t=30',
                "RateLimit-Limit": "7",
            },
            Announced(100, 60, 5, 30, "default"),
            id="ietf-state-wins-over-an-earlier-drafts-limit",
        ),
        pytest.param(
            {
                "RateLimit-Limit": "100",
                "RateLimit-Remaining": "42",
                "RateLimit-Reset": "5",
                "RateLimit-Policy": "100;w=60",
            },
            Announced(100, 60, 42, 5),
            id="earlier-drafts-window-from-the-policy",
        ),
        pytest.param(
            {"RateLimit-Policy": '"d";q=100;qu="requests";w=60', "RateLimit": '"d";r=5;t=30'},
            Announced(100, 60, 5, 30, "d"),
            id="ietf-quota-of-requests-said",
        ),
        pytest.param(
            {
                "RateLimit-Policy": '"bytes";q=5000;qu="content-bytes";w=1, "d";q=100;w=60',
                "RateLimit": '"d";r=5;t=30',
            },
            Announced(100, 60, 5, 30, "d"),
            id="ietf-a-quota-of-bytes-hides-no-other",
        ),
    ],
)
def test_each_shape_is_read_whole(headers: dict[str, str], expected: Announced) -> None:
    assert read_announced(CIMultiDict(headers), now=NOW) == (expected,)


@pytest.mark.parametrize(
    ("reset", "seconds"),
    [
        ("0", 0.0),
        ("0.5", 0.5),
        ("1000000000", 0.0),  # a Unix time (in 2001), past
        (str(int(NOW) + 30), 30.0),
        ("1000000000000", 0.0),  # a Unix time in milliseconds, past
        (str(int(NOW * 1000) + 2500), 2.5),
    ],
)
def test_a_reset_is_read_as_seconds_from_now(reset: str, seconds: float) -> None:
    found = read_announced(
        CIMultiDict({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}), now=NOW
    )
    assert found == (Announced(None, None, 0, pytest.approx(seconds, abs=1e-6)),)


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
                "RateLimit-Policy": '(1 2);q=5;w=1, "default";q=100;w=60',
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
        CIMultiDict(
            {
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": reset,
                "Date": formatdate(served_at, usegmt=True),
            }
        )
    )
    assert dated == (Announced(None, None, 0, 30.0),)
    # asctime, the third HTTP-date format, is GMT though it names no zone.
    asctime = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(served_at))
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset, "Date": asctime}
    assert read_announced(CIMultiDict(headers)) == dated
    for date in ({}, {"Date": "yesterday"}):
        undated = read_announced(
            CIMultiDict({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset} | date)
        )
        assert undated == (Announced(None, None, 0, 0.0),)  # a reset already past by ours


@pytest.mark.parametrize(
    ("quota", "window", "reset", "gap"),
    [
        pytest.param(20, 5, 1, 1 / (4 * HEADROOM), id="20-in-5s-is-4-a-second"),
        pytest.param(20, 10, 10, 1 / (2 * HEADROOM), id="a-window-of-10s-is-still-a-rate"),
        pytest.param(40, 20, 20, 0, id="a-window-of-20s-is-a-budget"),
        pytest.param(10, None, 1, 1 / (10 * HEADROOM), id="no-window-its-reset-shows-it"),
        pytest.param(10, None, None, 0, id="no-window-no-reset-no-rate"),
    ],
)
def test_a_rate_is_the_quota_over_its_window(
    quota: float, window: float | None, reset: float | None, gap: float
) -> None:
    """Paced evenly when the window (announced, else shown by the reset) is short; a
    quota over a longer window, or over none known, is a budget with plenty left."""
    pacer = QuotaPacer()
    number, _ = pacer.reserve(0.0)
    pacer.learn(number, Announced(quota, window, quota - 1, reset), 0.0)
    _, first = pacer.reserve(0.0)
    _, second = pacer.reserve(0.0)
    assert (first, second - first) == pytest.approx((gap, gap), rel=1e-9)
    # The summary's "paced by a quota at N/s": the rate paced at, None when none held it.
    assert pacer.rate == (pytest.approx(1 / gap, rel=1e-9) if gap else None)


@pytest.mark.parametrize(
    ("share", "remaining", "reset", "wait"),
    [
        pytest.param(1.0, 500, 1000, 0, id="half-left-spent-freely"),
        pytest.param(1.0, 400, 1000, 1000 / (400 * HEADROOM), id="below-half-spread"),
        pytest.param(1.0, 100, 0.5, 0.5 / (100 * HEADROOM), id="spread-over-half-a-second"),
        pytest.param(1.0, 1, 0.5, 0.5 / HEADROOM, id="the-last-one-spread-too"),
        pytest.param(0.5, 600, 1000, 0, id="a-share-more-than-half-its-part"),
        pytest.param(0.5, 400, 1000, 1000 / (200 * HEADROOM), id="a-share-spreads-its-part"),
    ],
)
def test_a_budget_is_spread_once_half_of_it_is_spent(
    share: float, remaining: float, reset: float, wait: float
) -> None:
    """1,000 an hour: a worker's part (``share``) of what is left is spent freely while
    it is at least half of its part of the quota, then spread over the time to the reset."""
    pacer = QuotaPacer(share=share)
    number, _ = pacer.reserve(100.0)
    pacer.learn(number, Announced(1000, 3600, remaining, reset), 100.0)
    assert pacer.reserve(100.0)[1] == pytest.approx(wait, rel=1e-9)


def test_with_no_quota_said_what_was_left_is_the_budget() -> None:
    """Only ``Remaining: 10`` (reset in 10 s): 5 start freely, then the rest is spread."""
    pacer = QuotaPacer()
    number, _ = pacer.reserve(0.0)
    pacer.learn(number, Announced(None, None, 10, 10), 0.0)
    waits = [pacer.reserve(0.0)[1] for _ in range(7)]
    assert waits == [0] * 6 + [pytest.approx(10 / (4 * HEADROOM), rel=1e-9)]


@pytest.mark.parametrize("later", [2.0, 5.0])
def test_at_the_reset_what_an_answer_said_was_left_holds_nothing_back(later: float) -> None:
    pacer = QuotaPacer()
    number, _ = pacer.reserve(0.0)
    pacer.learn(number, Announced(1000, 3600, 100, 2.0), 0.0)  # spread, until the reset
    assert [pacer.reserve(later)[1] for _ in range(3)] == [0, 0, 0]


def test_a_worker_spends_its_share_of_what_is_left() -> None:
    pacer = QuotaPacer(share=0.5)
    number, _ = pacer.reserve(0.0)
    pacer.learn(number, Announced(None, None, 4, 3.0), 0.0)
    assert [pacer.reserve(0.0)[1] for _ in range(3)] == [0, 0, 3.0]


@pytest.mark.parametrize(
    ("announced", "wait"),
    [
        pytest.param(Announced(None, 30, 0, None), 30.0, id="the-window"),
        pytest.param(Announced(None, None, 0, None), 1.0, id="nothing-said-a-second"),
    ],
)
def test_a_spent_budget_with_no_reset_said_waits_for(announced: Announced, wait: float) -> None:
    pacer = QuotaPacer()
    number, _ = pacer.reserve(0.0)
    pacer.learn(number, announced, 0.0)
    assert pacer.reserve(0.0)[1] == wait


def _wait_after(
    answers: list[tuple[float, float, float]], quota: float | None = None, window: float = 0
) -> float:
    """The wait of a start right after the last of ``answers`` (at, left, reset), each
    answering a request started when it arrived."""
    pacer = QuotaPacer(longest_wait=1000.0)
    for at, left, reset in answers:
        number, _ = pacer.reserve(at)
        pacer.learn(number, Announced(quota, window or None, left, reset), at)
    return pacer.reserve(answers[-1][0])[1]


@pytest.mark.parametrize(
    ("answers", "quota", "window", "wait"),
    [
        pytest.param([(0.0, 3, 1), (0.3, 5, 1), (0.4, 0, 1)], None, 0, 1.0, id="up-2-no-refill"),
        pytest.param([(0.0, 3, 1), (0.3, 6, 1), (0.4, 0, 1)], None, 0, 0.9, id="up-3-refill"),
        pytest.param(
            [(0.0, 1, 100), (30.0, 5, 100), (40.0, 0, 100)], 10, 100, 90.0, id="up-to-half-refill"
        ),
        pytest.param(
            [(0.0, 1, 100), (30.0, 4, 100), (40.0, 0, 100)], 10, 100, 100.0, id="below-half-not"
        ),
        pytest.param(  # a refill seen twice, 0.3 s apart, is not a window of 0.3 s
            [(0.0, 3, 11), (0.2, 99, 11), (0.25, 4, 11), (0.5, 99, 11), (1.5, 0, 11)],
            None,
            0,
            0.5 + 11 - 1.5,
            id="refills-0.3s-apart-measure-nothing",
        ),
        pytest.param(
            [(0.0, 3, 11), (0.25, 99, 11), (0.5, 4, 11), (0.75, 99, 11), (1.5, 0, 11)],
            None,
            0,
            0.75 + 11 - 1.5,
            id="refills-0.5s-apart-measure-nothing",
        ),
        pytest.param(  # 5% of a 10 s window: an answer 0.3 s after its end speaks of it
            [(0.0, 3, 10), (1.0, 99, 10), (11.3, 0, 10)], None, 10, 0.0, id="10s-0.3s-late"
        ),
        pytest.param(
            [(0.0, 3, 10), (1.0, 99, 10), (11.6, 0, 10)], None, 10, 21 - 11.6, id="10s-0.6s-late"
        ),
        pytest.param(  # made (a second before it arrived) at the very end of a window
            [(0.0, 3, 50), (0.5, 99, 50), (81.5, 0, 50)], None, 40, 120.5 - 81.5, id="made-at-end"
        ),
    ],
)
def test_a_refill_dates_the_reset(
    answers: list[tuple[float, float, float]], quota: float | None, window: float, wait: float
) -> None:
    """What was left jumping up by more than two (not two answers out of order), to at
    least half the quota, is a window beginning; two refills more than half a second
    apart measure the window; the answer's age allowed for is 5% of the window."""
    assert _wait_after(answers, quota, window) == pytest.approx(wait, abs=1e-9)


def test_a_policy_not_kept_is_passed_over_and_the_next_one_still_paces() -> None:
    """A server announcing two policies: the first, "a", says nothing is left again and
    again while it serves, so it is no longer believed; the second, "b", is honest, and
    its spent budget still holds starts until its reset."""
    pacer = QuotaPacer(longest_wait=2.0)
    now = 0.0
    number, _ = pacer.reserve(now)
    pacer.learn(number, Announced(None, None, 0, 1e9, "a"), now)
    for _ in range(3):  # served after each wait, and "nothing left" again
        number, wait = pacer.reserve(now)
        now += wait
        pacer.learn(number, Announced(None, None, 0, 1e9, "a"), now)
    number, wait = pacer.reserve(now)
    assert wait == 0.0  # "a" holds nothing back now
    pacer.learn(number, Announced(10, 60, 0, 1.5, "b"), now)
    assert [pacer.reserve(now)[1] for _ in range(2)] == [1.5, 1.5]


@pytest.mark.parametrize(
    "text",
    ["1" * 32, " " + "1" * 32 + " "],
)
def test_a_number_of_32_characters_is_read(text: str) -> None:
    """Spaces around it are not counted."""
    announced = read_announced(
        CIMultiDict({"X-RateLimit-Limit": text, "X-RateLimit-Remaining": "5"})
    )
    assert [a.quota for a in announced] == [float("1" * 32)]


def test_a_number_longer_than_32_characters_is_no_number() -> None:
    """A header value is the server's text: a number of 33 digits is not worked on."""
    announced = read_announced(
        CIMultiDict({"X-RateLimit-Limit": "1" * 33, "X-RateLimit-Remaining": "5"})
    )
    assert [a.quota for a in announced] == [None]


@pytest.mark.parametrize(
    ("script", "waits"),
    [
        pytest.param(
            ["start", (0, 0), "start", (1, 0), "start", (2, 0), "start", (3, 0), "start"],
            [0, 2, 2, 2, 0],
            id="three-served-after-the-wait-then-ignored",
        ),
        pytest.param(
            ["start", "start", "start", (0, 0), "start", (1, 0), (2, 0), (3, 0), "start"],
            [0, 0, 0, 2, 2],
            id="answers-to-requests-started-before-the-wait-are-honest",
        ),
        pytest.param(
            [
                *("start", (0, 0), "start", (1, 0, False), "start", (2, 0, False)),
                *("start", (3, 0, False), "start", (4, 0, False), "start"),
            ],
            [0, 2, 2, 2, 2, 2],
            id="rejected-answers-are-obeyed-forever",
        ),
        pytest.param(
            [
                *("start", (0, 0), "start", (1, 0), "start", (2, 0), "start", (3, 1)),
                *("start", (4, 0), "start", (5, 0), "start", (6, 0), "start"),
            ],
            [0, 2, 2, 2, 0, 2, 2, 2],
            id="one-left-between-starts-the-count-again",
        ),
    ],
)
def test_when_a_quota_is_taken_for_one_the_server_does_not_keep(
    script: list[str | tuple[int, float] | tuple[int, float, bool]], waits: list[float]
) -> None:
    """ "Nothing left, reset in 30 years": each start waits the longest wait (2 s) until
    three answers served after such a wait say nothing is left again; answers to
    requests started before the wait, and rejections, prove nothing."""
    pacer = QuotaPacer(longest_wait=2.0)
    now = 0.0
    numbers: list[int] = []
    seen = []
    for step in script:
        if step == "start":
            number, wait = pacer.reserve(now)
            now += wait
            numbers.append(number)
            seen.append(wait)
        elif len(step) == 2:  # served (the default)
            pacer.learn(numbers[step[0]], Announced(None, None, step[1], 1e9), now)
        else:
            pacer.learn(numbers[step[0]], Announced(None, None, step[1], 1e9), now, step[2])
    assert seen == waits
