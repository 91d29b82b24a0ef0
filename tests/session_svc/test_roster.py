"""Sessions of up to eight (issue 19): joining with the code while it is open, the
host's lock and removals, leaving and joining again, and the roster everyone sees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from dragoman.v1 import conversation_pb2 as pb
from dragoman.v1 import sessions_pb2
from tests.session_svc.conftest import Caller, kinds, utterance
from tests.session_svc.stack import Stack

_n = 0


def people(stack: Stack, count: int) -> list[Caller]:
    global _n
    _n += 1
    return [Caller(stack.session, f"p{i}-r{_n}") for i in range(count)]


async def create(host: Caller, language: str = "en", max_participants: int = 0) -> sessions_pb2.Session:
    reply = await host.sessions.CreateSession(sessions_pb2.CreateSessionRequest(
        language_code=language, max_participants=max_participants), metadata=host.metadata)
    return reply.session


async def party(stack: Stack, languages: list[str]) -> tuple[list[Caller], sessions_pb2.Session]:
    """A session of len(languages) people, the first its host; the last join's session."""
    members = people(stack, len(languages))
    session = await create(members[0], languages[0])
    for member, language in zip(members[1:], languages[1:], strict=True):
        session = await member.join(session.code, language)
    return members, session


async def status(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


def lock(c: Caller, session_id: str, locked: bool = True) -> Any:
    return c.sessions.LockSession(
        sessions_pb2.LockSessionRequest(session_id=session_id, locked=locked), metadata=c.metadata)


def leave(c: Caller, session_id: str) -> Any:
    return c.sessions.LeaveSession(
        sessions_pb2.LeaveSessionRequest(session_id=session_id), metadata=c.metadata)


def remove(c: Caller, session_id: str, user_id: str) -> Any:
    return c.sessions.RemoveParticipant(sessions_pb2.RemoveParticipantRequest(
        session_id=session_id, user_id=user_id), metadata=c.metadata)


def end(c: Caller, session_id: str) -> Any:
    return c.sessions.EndSession(
        sessions_pb2.EndSessionRequest(session_id=session_id), metadata=c.metadata)


def rosters(events: list[pb.ConversationEvent]) -> list[pb.RosterChanged]:
    return [e.roster_changed for e in events if e.HasField("roster_changed")]


def ids(roster: pb.RosterChanged) -> list[str]:
    return [r.participant_id for r in roster.roster]


async def read_all(call: Any, into: list[pb.ConversationEvent]) -> grpc.StatusCode:
    """Reads a stream to its end; the status it ended with."""
    try:
        async for response in call:
            into.append(response.event)
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


async def until(c: Caller, call: object, change: int) -> pb.RosterChanged:
    """Reads `c`'s stream up to the next roster change of kind `change`."""
    while True:
        events = await c.collect(call, "roster_changed")
        if events[-1].roster_changed.change == change:
            return events[-1].roster_changed


async def close(*callers: Caller) -> None:
    for c in callers:
        await c.close()


async def test_eight_join_with_the_code_a_ninth_is_refused_and_all_see_the_roster(
        plumbing: Stack) -> None:
    languages = ["en", "pt", "es", "en", "pt", "es", "pt", "en"]
    members, last = await party(plumbing, languages)
    user_ids = [m.user_id for m in members]
    assert [p.user_id for p in last.participants] == user_ids
    assert [p.host for p in last.participants] == [True] + [False] * 7
    assert all(p.state == sessions_pb2.PARTICIPANT_STATE_JOINED for p in last.participants)
    assert last.max_participants == 8 and last.code == ""  # full: nobody else can join
    # each ordered pair of the languages present, in the order they joined
    assert [(r.source_language_code, r.target_language_code) for r in last.routes] == [
        ("en", "pt"), ("en", "es"), ("pt", "en"), ("pt", "es"), ("es", "en"), ("es", "pt")]

    session_id = last.session_id
    # the host's stream: joined (the host), paired with the first joiner, then each joiner
    host_call = members[0].converse(session_id)
    host_events = await members[0].collect(host_call, "roster_changed", count=8)
    assert kinds(host_events)[:2] == ["roster_changed", "session_paired"]
    assert host_events[1].session_paired.partner_user_id == user_ids[1]
    changes = rosters(host_events)
    assert [c.change for c in changes] == [pb.ROSTER_CHANGE_JOINED] * 8
    assert [c.participant_id for c in changes] == user_ids
    assert [ids(c) for c in changes] == [user_ids[:i + 1] for i in range(8)]
    assert [e.host for e in changes[-1].roster] == [True] + [False] * 7
    assert [e.language_code for e in changes[-1].roster] == languages

    # a later joiner is paired with the host, then sees the roster with themself in it
    third_call = members[2].converse(session_id)
    third = await members[2].collect(third_call, "roster_changed", count=6)
    assert third[0].session_paired.partner_user_id == user_ids[0]
    assert third[0].session_paired.partner_language_code == "en"
    assert [c.participant_id for c in rosters(third)] == user_ids[2:]
    # the host learns the third connected (and, for two-party clients, PartnerConnected)
    more = await members[0].collect(host_call, "roster_changed", count=1)
    assert more[-1].roster_changed.change == pb.ROSTER_CHANGE_CONNECTED
    assert more[-1].roster_changed.participant_id == user_ids[2]
    assert [e.connected for e in more[-1].roster_changed.roster][:3] == [True, False, True]
    assert any(e.partner_connected.partner_user_id == user_ids[2]
               for e in more if e.HasField("partner_connected"))
    await close(*members)


async def test_max_participants_is_checked_and_bounds_the_session(
        plumbing: Stack) -> None:
    host, *others = people(plumbing, 4)
    for wrong in (1, 9, -1):
        code, details = await status(create(host, max_participants=wrong))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details == (f"max_participants must be 0 (for 8) or 2 to 8 (setting "
                           f"session.max_participants), got {wrong}")
    session = await create(host, max_participants=3)
    assert session.max_participants == 3
    await others[0].join(session.code, "pt")
    joined = await others[1].join(session.code, "es")
    assert joined.code == ""
    assert await status(others[2].join(session.code, "en")) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, "this session is full: it takes 3 participants")
    await close(host, *others)


async def test_the_ninth_with_the_code_is_refused(plumbing: Stack) -> None:
    members = people(plumbing, 9)
    session = await create(members[0])
    for m in members[1:8]:
        await m.join(session.code, "pt")
    assert await status(members[8].join(session.code, "pt")) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, "this session is full: it takes 8 participants")
    await close(*members)


async def test_only_the_host_locks_and_a_locked_session_takes_nobody(plumbing: Stack) -> None:
    (host, b, c), session = await party(plumbing, ["en", "pt", "es"])
    sid = session.session_id
    d = people(plumbing, 1)[0]
    assert (await status(lock(b, sid)))[0] == grpc.StatusCode.PERMISSION_DENIED
    assert (await status(remove(b, sid, c.user_id)))[0] == grpc.StatusCode.PERMISSION_DENIED

    locked = (await lock(host, sid)).session
    assert locked.locked and locked.code == ""
    assert await status(d.join(session.code, "en")) == (
        grpc.StatusCode.FAILED_PRECONDITION, "the host locked this session: nobody else can join")
    b_events = await b.collect(b.converse(sid), "roster_changed", count=3)  # joined b, c; locked
    change = rosters(b_events)[-1]
    assert (change.change, change.participant_id, change.locked) == (
        pb.ROSTER_CHANGE_LOCKED, host.user_id, True)
    assert ids(change) == [host.user_id, b.user_id, c.user_id]

    unlocked = (await lock(host, sid, False)).session
    assert not unlocked.locked and unlocked.code == session.code
    joined = await d.join(session.code, "en")
    assert [p.user_id for p in joined.participants][-1] == d.user_id
    await end(host, sid)
    assert await status(lock(host, sid)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "the session has ended")
    await close(host, b, c, d)


async def test_a_removed_participant_is_cut_off_and_cannot_come_back(plumbing: Stack) -> None:
    (host, b, c), session = await party(plumbing, ["en", "pt", "es"])
    sid = session.session_id
    b_call, c_call = b.converse(sid), c.converse(sid)
    await until(c, c_call, pb.ROSTER_CHANGE_JOINED)
    await until(b, b_call, pb.ROSTER_CHANGE_CONNECTED)

    reply = (await remove(host, sid, c.user_id)).session
    assert reply.status == sessions_pb2.SESSION_STATUS_ACTIVE  # two are left
    assert [p.state for p in reply.participants] == [
        sessions_pb2.PARTICIPANT_STATE_JOINED, sessions_pb2.PARTICIPANT_STATE_JOINED,
        sessions_pb2.PARTICIPANT_STATE_REMOVED]
    c_rest: list[pb.ConversationEvent] = []
    assert await read_all(c_call, c_rest) == grpc.StatusCode.PERMISSION_DENIED
    told = rosters(c_rest)[-1]
    assert (told.change, told.participant_id) == (pb.ROSTER_CHANGE_REMOVED, c.user_id)
    removed = await until(b, b_call, pb.ROSTER_CHANGE_REMOVED)
    assert removed.participant_id == c.user_id
    assert ids(removed) == [host.user_id, b.user_id]

    assert await status(c.join(session.code, "es")) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "the host removed you from this session; you cannot join again")
    again: list[pb.ConversationEvent] = []
    assert await read_all(c.converse(sid), again) == grpc.StatusCode.PERMISSION_DENIED
    assert await status(remove(host, sid, c.user_id)) == (
        grpc.StatusCode.NOT_FOUND, f"user {c.user_id} is not a participant of this session")

    # only the host left: the session ends, as a session of two always did
    ended = (await remove(host, sid, b.user_id)).session
    assert ended.status == sessions_pb2.SESSION_STATUS_ENDED
    b_rest: list[pb.ConversationEvent] = []
    assert await read_all(b_call, b_rest) == grpc.StatusCode.PERMISSION_DENIED
    assert b_rest[-1].session_ended.reason == "partner removed by the creator"
    await close(host, b, c)


async def test_leaving_and_joining_again_resumes_the_stream(plumbing: Stack, fleurs: Path) -> None:
    (host, b, c), session = await party(plumbing, ["en", "pt", "es"])
    sid = session.session_id
    host_call, b_call, c_call = host.converse(sid), b.converse(sid), c.converse(sid)
    await c.collect(c_call, "roster_changed", count=1)
    assert await status(leave(host, sid)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "the host cannot leave their session: end it with EndSession")

    left = (await leave(c, sid)).session
    assert left.status == sessions_pb2.SESSION_STATUS_ACTIVE
    assert left.participants[2].state == sessions_pb2.PARTICIPANT_STATE_LEFT
    assert await read_all(c_call, c.events) == grpc.StatusCode.OK  # their stream ends
    mine = rosters(c.events)[-1]
    assert (mine.change, mine.participant_id) == (pb.ROSTER_CHANGE_LEFT, c.user_id)
    last_seen = c.events[-1].sequence
    gone = await until(b, b_call, pb.ROSTER_CHANGE_LEFT)
    assert gone.participant_id == c.user_id
    assert ids(gone) == [host.user_id, b.user_id]
    assert await status(leave(c, sid)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "you are not in this session: join it again with its code")
    away: list[pb.ConversationEvent] = []
    assert await read_all(c.converse(sid, resume_after=last_seen), away) == (
        grpc.StatusCode.FAILED_PRECONDITION)
    assert await status(end(c, sid)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "only the host can end a session of more than two; use LeaveSession to leave it")

    await host.say(utterance(fleurs))  # while c is away
    await b.collect(b_call, "processing_ended")
    await host.collect(host_call, "processing_ended")

    back = await c.join(session.code, "es")
    assert back.participants[2].state == sessions_pb2.PARTICIPANT_STATE_JOINED
    assert len(back.participants) == 3
    c.events = []
    resumed = c.converse(sid, resume_after=last_seen)
    events = await c.collect(resumed, "roster_changed", count=1)
    seqs = [e.sequence for e in events if e.WhichOneof("kind") != "heartbeat"]
    assert seqs == list(range(last_seen + 1, last_seen + 1 + len(seqs)))  # no gap, no repeat
    assert kinds(events) == ["roster_changed"]  # nothing was translated for them while away
    assert (events[0].roster_changed.change, events[0].roster_changed.participant_id) == (
        pb.ROSTER_CHANGE_JOINED, c.user_id)
    assert ids(events[0].roster_changed) == [host.user_id, b.user_id, c.user_id]
    host_events = await host.collect(host_call, "roster_changed", count=2)  # joined, connected
    assert [(r.change, r.participant_id) for r in rosters(host_events)[-2:]] == [
        (pb.ROSTER_CHANGE_JOINED, c.user_id), (pb.ROSTER_CHANGE_CONNECTED, c.user_id)]
    assert await status(c.join(session.code, "es")) == (
        grpc.StatusCode.FAILED_PRECONDITION, "you are already in this session")

    # two present again: any of them may end it
    await leave(b, sid)
    ended = (await end(c, sid)).session
    assert ended.status == sessions_pb2.SESSION_STATUS_ENDED
    await close(host, b, c)


async def test_in_a_session_of_two_leaving_ends_it(plumbing: Stack) -> None:
    (host, b), session = await party(plumbing, ["en", "pt"])
    host_call = host.converse(session.session_id)
    ended = (await leave(b, session.session_id)).session
    assert ended.status == sessions_pb2.SESSION_STATUS_ENDED
    rest: list[pb.ConversationEvent] = []
    assert await read_all(host_call, rest) == grpc.StatusCode.OK
    assert rest[-1].session_ended.reason == "everyone else left"
    assert rosters(rest)[-1].change == pb.ROSTER_CHANGE_LEFT
    await close(host, b)


@pytest.mark.parametrize("joiners", [2, 3])
async def test_the_two_party_events_stay_for_two_party_clients(
        plumbing: Stack, joiners: int) -> None:
    members, session = await party(plumbing, ["en", "pt", "es", "en"][:joiners + 1])
    calls = [m.converse(session.session_id) for m in members]
    first = await members[1].collect(calls[1], "partner_connected", count=joiners)
    # PartnerConnected names each other participant that connects
    assert {e.partner_connected.partner_user_id for e in first
            if e.HasField("partner_connected")} == {m.user_id for m in members if m is not members[1]}
    await close(*members)
