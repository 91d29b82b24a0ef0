"""The catch-up controller: a listener's backlog of unplayed speech and the speed it asks for."""

from __future__ import annotations

import pytest

from session_svc.catchup import Backlog, CatchUp


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_backlog_is_speech_sent_minus_what_has_played_since() -> None:
    clock = Clock()
    backlog = Backlog(clock)
    assert backlog.seconds == 0.0
    backlog.sent(2.0)
    backlog.sent(3.0)  # queued behind the first: played back to back
    assert backlog.seconds == pytest.approx(5.0)
    clock.now += 1.5
    assert backlog.seconds == pytest.approx(3.5)
    clock.now += 10.0  # all played, and the listener sat in silence
    assert backlog.seconds == 0.0
    backlog.sent(1.0)  # starts playing now, not when the last one ended
    assert backlog.seconds == pytest.approx(1.0)


def test_backlog_is_also_how_late_speech_starts_when_synthesis_falls_behind() -> None:
    clock = Clock()
    backlog = Backlog(clock)
    backlog.sent(1.0, ready=clock.now - 0.5)  # synthesised in 0.5 s: on time
    assert backlog.seconds == pytest.approx(1.0)
    clock.now += 10.0
    backlog.sent(1.0)  # a later chunk of that speech says nothing of its lateness
    assert backlog.late_s == pytest.approx(0.5)
    clock.now += 10.0
    # its text was ready 6 s ago: little is unplayed, yet the listener is 6 s behind
    backlog.sent(1.0, ready=clock.now - 6.0)
    assert backlog.unplayed_s == pytest.approx(1.0)
    assert backlog.seconds == pytest.approx(6.0)
    backlog.idle()  # all heard, nothing on its way
    assert backlog.seconds == pytest.approx(1.0)


@pytest.mark.parametrize(("backlog_s", "speed"), [
    (0.0, 1.0), (3.9, 1.0), (4.0, 1.0),  # up to the threshold: the voice's own rate
    (4.1, 1.05),  # just over it: one step
    (6.0, 1.15), (7.0, 1.25), (8.0, 1.3), (30.0, 1.3),  # capped at twice the threshold
])
def test_speed_rises_in_steps_with_the_backlog_and_is_capped(backlog_s: float, speed: float) -> None:
    assert CatchUp(backlog_s=4.0, max_speed=1.3).speed(backlog_s) == speed


def test_speed_steps_back_to_the_voices_own_as_the_backlog_drains() -> None:
    clock = Clock()
    backlog, catchup = Backlog(clock), CatchUp(backlog_s=2.0, max_speed=1.3)
    backlog.sent(5.0)
    speeds = []
    for _ in range(8):  # 5 s of backlog, then 4.5, 4, ... 1.5
        speeds.append(catchup.for_listeners([backlog]))
        clock.now += 0.5
    assert speeds == [1.3, 1.3, 1.3, 1.25, 1.15, 1.1, 1.0, 1.0]


def test_the_listener_furthest_behind_sets_a_shared_synthesis_speed() -> None:
    clock = Clock()
    ahead, behind = Backlog(clock), Backlog(clock)
    ahead.sent(1.0)
    behind.sent(3.0)
    catchup = CatchUp(backlog_s=2.0, max_speed=1.5)
    assert catchup.for_listeners([ahead]) == 1.0
    assert catchup.for_listeners([ahead, behind]) == 1.25
    assert catchup.for_listeners([]) == 1.0


def test_max_speed_one_turns_it_off() -> None:
    assert CatchUp(backlog_s=1.0, max_speed=1.0).speed(100.0) == 1.0
