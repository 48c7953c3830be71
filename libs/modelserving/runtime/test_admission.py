"""The adaptive admission limit (AIMD on queueing time): it refuses past the limit, shrinks when
requests wait past their share of their budget (once per round trip), grows while in use and
waits are short, and stays between 1 and its ceiling."""

from modelserving.runtime.admission import BACKOFF, INITIAL, LAG_LIMIT, TARGET_SHARE, AdmissionLimit, Ticket

BUDGET = 2.0  # max_queue_seconds: a request's budget unless its caller's timeout is shorter


def limit(ceiling: int = 1000, adaptive: bool = True) -> AdmissionLimit:
    return AdmissionLimit(ceiling=ceiling, max_queue_seconds=BUDGET, adaptive=adaptive)


def admit_all(admission: AdmissionLimit, count: int, at: float) -> list[Ticket]:
    tickets = [admission.try_admit(now=at) for _ in range(count)]
    assert all(tickets), "refused within the limit"
    return [ticket for ticket in tickets if ticket is not None]


def test_past_the_limit_requests_are_refused_until_one_is_released() -> None:
    admission = limit(ceiling=3, adaptive=False)
    tickets = admit_all(admission, 3, at=0.0)
    assert admission.full()
    assert admission.try_admit(now=0.0) is None
    admission.release(tickets[0])
    admission.release(tickets[0])  # twice: counted once
    assert admission.in_flight == 2
    assert admission.try_admit(now=0.0) is not None


def test_a_ticket_waits_until_the_servers_longest_wait_or_its_callers_sooner_deadline() -> None:
    admission = limit()
    (ticket,) = admit_all(admission, 1, at=10.0)
    assert ticket.deadline == 10.0 + BUDGET
    ticket.limit_to(10.5)
    ticket.limit_to(99.0)  # a later deadline changes nothing
    assert ticket.deadline == 10.5
    assert not ticket.expired(10.49) and ticket.expired(10.5)


def test_a_long_wait_shrinks_the_limit_once_per_round_trip() -> None:
    admission = limit()
    tickets = admit_all(admission, 10, at=0.0)
    late = BUDGET * TARGET_SHARE + 0.1
    for ticket in tickets:  # ten long waits of requests admitted together: one cut
        admission.observe(ticket, taken_at=late)
    assert admission.limit == INITIAL * BACKOFF
    (after_the_cut,) = admit_all(admission, 1, at=late + 0.01)
    admission.observe(after_the_cut, taken_at=late + 0.01 + late)  # it saw the new limit: cuts again
    assert admission.limit == INITIAL * BACKOFF * BACKOFF


def test_a_caller_deadline_sets_the_budget_a_wait_is_measured_against() -> None:
    admission = limit()
    (patient, hurried) = admit_all(admission, 2, at=0.0)
    hurried.limit_to(0.2)
    admission.observe(patient, taken_at=0.15)  # 0.15 s of a 2 s budget
    assert admission.limit == INITIAL
    admission.observe(hurried, taken_at=0.15)  # 0.15 s of a 0.2 s budget
    assert admission.limit == INITIAL * BACKOFF


def test_short_waits_grow_the_limit_by_one_a_round_trip_while_it_is_in_use_never_past_the_ceiling() -> None:
    admission = limit(ceiling=INITIAL + 2)
    (idle,) = admit_all(admission, 1, at=0.0)
    admission.observe(idle, taken_at=0.001)
    assert admission.limit == INITIAL  # one request in flight: the limit is not what holds it back
    busy = admit_all(admission, INITIAL - 1, at=0.0)
    for ticket in busy:  # a round trip: a limit's worth of requests, each waiting a moment
        admission.observe(ticket, taken_at=0.001)
    assert INITIAL + 0.9 < admission.limit < INITIAL + 1.1
    for ticket in busy * 3:
        admission.observe(ticket, taken_at=0.001)
    assert admission.limit == INITIAL + 2


def test_a_late_event_loop_shrinks_the_limit_only_while_requests_are_refused() -> None:
    admission = limit()
    admission.lagged(now=1.0, lag=LAG_LIMIT * 10)  # late, but nobody refused: the load's own doing
    assert admission.limit == INITIAL
    admit_all(admission, INITIAL, at=1.0)
    assert admission.try_admit(now=1.0) is None  # refused
    admission.lagged(now=1.1, lag=LAG_LIMIT * 10)
    assert admission.limit == INITIAL * BACKOFF
    admission.lagged(now=1.2, lag=LAG_LIMIT * 10)  # no refusal since the cut: it stands
    assert admission.limit == INITIAL * BACKOFF


def test_the_limit_never_falls_below_one() -> None:
    admission = limit()
    now = 0.0
    for _ in range(200):
        now += 0.001
        (ticket,) = admit_all(admission, 1, at=now)
        now += BUDGET
        admission.observe(ticket, taken_at=now)  # a whole budget waited: every time a cut
        admission.release(ticket)
    assert admission.limit == 1
    assert admission.try_admit(now=now) is not None
    assert admission.try_admit(now=now) is None


def test_a_fixed_limit_does_not_move() -> None:
    admission = limit(ceiling=5, adaptive=False)
    tickets = admit_all(admission, 5, at=0.0)
    for ticket in tickets:
        admission.observe(ticket, taken_at=BUDGET)
    assert admission.limit == 5
