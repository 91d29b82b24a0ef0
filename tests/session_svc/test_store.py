"""The session registry over PostgreSQL: pairing codes, expiry, encrypted logs, key rotation."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg import sql

from bench.private import Postgres
from dragoman import config, db
from dragoman.coverage import Inventory
from dragoman.coverage import Path as CoveragePath
from dragoman.db import crypto, migrate
from dragoman.db.testing import scratch_schema
from dragoman.errors import FailedPrecondition, ResourceExhausted
from dragoman.overload import LoopLag
from dragoman.v1 import conversation_pb2 as cpb
from dragoman.v1 import sessions_pb2 as spb
from session_svc import server as session_server
from session_svc import store as session_store
from session_svc.handover import Handover
from session_svc.records import STAGES, UtteranceLog
from session_svc.sessions import Identity, SessionRegistry
from session_svc.store import PgSessionStore
from tests.dragoman.test_coverage import default_like

CODES = ["111111", "222222", "333333", "444444", "555555"]


@pytest.fixture(scope="module")
def database_settings() -> Iterator[config.DbSettings]:
    with scratch_schema(prefix="store") as settings:
        yield settings


@pytest.fixture(scope="module")
async def database(database_settings: config.DbSettings) -> AsyncIterator[db.Database]:
    database = await db.open_database(database_settings)
    yield database
    await database.close()


@pytest.fixture
async def clean(database: db.Database) -> db.Database:
    async with database.pool.connection() as conn:
        await conn.execute("TRUNCATE sessions CASCADE")
    return database


def registry(database: db.Database, codes: list[str] | None = None, **session: object) -> SessionRegistry:
    settings = dataclasses.replace(config.SessionSettings(), **session)
    pick = itertools.cycle(codes).__next__ if codes else None
    store = PgSessionStore(database)
    return SessionRegistry(settings, store, pick) if pick else SessionRegistry(settings, store)


async def live_codes(database: db.Database) -> list[str]:
    async with database.pool.connection() as conn:
        cur = await conn.execute("SELECT code FROM sessions WHERE status <> 'ended' ORDER BY code")
        return [row[0] for row in await cur.fetchall()]


async def test_concurrent_creation_never_shares_a_live_code(clean: db.Database) -> None:
    """Two replicas, only five possible codes, thirty creations at once."""
    replicas = [registry(clean, CODES), registry(clean, CODES[2:] + CODES[:2])]
    results = await asyncio.gather(
        *(replicas[i % 2].create(Identity(f"u{i}", f"U{i}"), "en", "") for i in range(30)),
        return_exceptions=True)
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, ResourceExhausted)]
    assert len(created) == len(CODES) and len(refused) == 30 - len(CODES)
    assert sorted(s.code for s in created) == CODES == await live_codes(clean)
    assert "no free pairing code" in refused[0].message

    # ending a session frees its code for the next one
    first = created[0]
    owner = replicas[0] if replicas[0].find_live(first.session_id) else replicas[1]
    await owner.end(Identity(first.members[0].user_id, ""), first.session_id, "done")
    again = await owner.create(Identity("late", "Late"), "pt", "")
    assert again.code == first.code
    assert sorted(await live_codes(clean)) == CODES


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("dragoman_sessions_refused_total", {"reason": reason}) or 0.0


async def test_a_replica_at_its_limit_refuses_new_sessions_until_one_ends(clean: db.Database) -> None:
    sessions = registry(clean, CODES, max_live_sessions=2)
    first = await sessions.create(Identity("ana", "Ana"), "en", "")
    await sessions.join(Identity("ben", "Ben"), first.code, "es", "")
    await sessions.create(Identity("cy", "Cy"), "en", "")  # waiting: it counts too
    before = refused("limit")
    with pytest.raises(ResourceExhausted) as e:
        await sessions.create(Identity("dee", "Dee"), "en", "")
    assert "limit of 2 live sessions" in e.value.message and e.value.retry_after_s == 5.0
    assert refused("limit") == before + 1
    assert len(await live_codes(clean)) == 2  # nothing stored for the refused one

    await sessions.end(Identity("ben", "Ben"), first.session_id, "done")
    assert (await sessions.create(Identity("dee", "Dee"), "en", "")).status == spb.SESSION_STATUS_WAITING


async def test_concurrent_creates_cannot_overshoot_the_limit(clean: db.Database) -> None:
    sessions = registry(clean, max_live_sessions=2)
    results = await asyncio.gather(
        *(sessions.create(Identity(f"u{i}", f"U{i}"), "en", "") for i in range(6)),
        return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 2
    assert sum(isinstance(r, ResourceExhausted) for r in results) == 4
    assert len(await live_codes(clean)) == 2


async def test_expired_codes_do_not_count_against_the_limit(clean: db.Database) -> None:
    sessions = registry(clean, CODES, max_live_sessions=1, code_ttl_s=-1)
    stale = await sessions.create(Identity("ana", "Ana"), "en", "")
    fresh = await sessions.create(Identity("ben", "Ben"), "en", "")  # the first expired: room again
    assert stale.status == spb.SESSION_STATUS_ENDED
    assert fresh.status == spb.SESSION_STATUS_WAITING


async def test_sessions_nobody_is_connected_to_end_as_abandoned(clean: db.Database) -> None:
    sessions = registry(clean, CODES, abandoned_after_s=-1, max_live_sessions=2)
    left = await sessions.create(Identity("ana", "Ana"), "en", "")
    await sessions.join(Identity("ben", "Ben"), left.code, "es", "")
    held = await sessions.create(Identity("cy", "Cy"), "en", "")
    await sessions.join(Identity("dee", "Dee"), held.code, "es", "")
    held.members[0].connection = object()  # type: ignore[assignment]  # someone is still there
    # the limit is reached, but nobody is connected to the first session any more
    await sessions.create(Identity("eve", "Eve"), "en", "")
    assert left.status == spb.SESSION_STATUS_ENDED
    assert held.status == spb.SESSION_STATUS_ACTIVE
    async with clean.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT end_reason FROM sessions WHERE session_id = %s", (left.session_id,))
        assert await cur.fetchone() == ("abandoned: no participant connected",)


class _Behind(LoopLag):
    """An event loop that has run `late_s` behind for the whole window."""

    def __init__(self, late_s: float) -> None:
        super().__init__()
        self.late_s = late_s

    def lag_s(self) -> float:
        return self.late_s


async def test_an_overloaded_replica_refuses_new_sessions_but_not_joins(clean: db.Database) -> None:
    behind = _Behind(0.0)
    sessions = SessionRegistry(config.SessionSettings(), PgSessionStore(clean), lag=behind)
    waiting = await sessions.create(Identity("ana", "Ana"), "en", "")
    behind.late_s = 0.25
    before = refused("overload")
    with pytest.raises(ResourceExhausted) as e:
        await sessions.create(Identity("cy", "Cy"), "en", "")
    assert "overloaded (its event loop runs 250 ms late" in e.value.message
    assert refused("overload") == before + 1
    joined = await sessions.join(Identity("ben", "Ben"), waiting.code, "es", "")  # its creator waits
    assert joined.status == spb.SESSION_STATUS_ACTIVE

    off = SessionRegistry(
        config.SessionSettings(overload_lag_ms=0), PgSessionStore(clean), lag=behind)
    await off.create(Identity("cy", "Cy"), "en", "")


async def test_joining_activates_the_session_in_the_store(clean: db.Database) -> None:
    sessions = registry(clean)
    created = await sessions.create(Identity("ana", "Ana"), "pt-BR", "faber")
    joined = await sessions.join(Identity("ben", "Ben"), created.code, "en", "")
    assert joined.status == spb.SESSION_STATUS_ACTIVE
    stored = await sessions.store.sessions_of("ben", limit=5)
    assert [s.session_id for s in stored] == [created.session_id]
    assert stored[0].status == "active"
    assert [(p.user_id, p.language_code, p.voice) for p in stored[0].participants] == [
        ("ana", "pt-BR", "faber"), ("ben", "en", "")]


async def test_expired_codes_end_their_sessions(clean: db.Database) -> None:
    sessions = registry(clean, code_ttl_s=-1)  # every code is expired at once
    stale = await sessions.create(Identity("ana", "Ana"), "en", "")
    await sessions.create(Identity("ana", "Ana"), "en", "")  # sweeps the first one
    assert stale.status == spb.SESSION_STATUS_ENDED
    [stored] = await sessions.store.sessions_of("ana", limit=1, session_id=stale.session_id)
    assert stored.status == "ended" and stored.metrics is not None
    async with clean.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT end_reason FROM sessions WHERE session_id = %s", (stale.session_id,))
        assert await cur.fetchone() == ("pairing code expired",)


def latency(total_ms: int) -> cpb.UtteranceLatency:
    out = cpb.UtteranceLatency()
    for i, stage in enumerate(STAGES[:-1]):
        getattr(out, stage).FromMilliseconds(10 * (i + 1))
    out.total.FromMilliseconds(total_ms)
    return out


async def test_utterances_are_logged_encrypted_and_keys_rotate(
    clean: db.Database, database_settings: config.DbSettings
) -> None:
    sessions = registry(clean)
    session = await sessions.create(Identity("ana", "Ana"), "en", "")
    await sessions.join(Identity("ben", "Ben"), session.code, "pt", "")
    ana, ben = session.members
    said = "the secret password is swordfish"
    session.record_utterance(ana, ben, "1-1", said, "a senha secreta é peixe-espada", latency(420))
    session.record_utterance(ben, ana, "2-1", "obrigado", "thank you", latency(380))
    ended = await sessions.end(Identity("ben", "Ben"), session.session_id, "bye")

    async with clean.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT t::text, key_id FROM translation_logs t WHERE session_id = %s ORDER BY utterance_id",
            (session.session_id,))
        raw = await cur.fetchall()
        cur = await conn.execute(
            "SELECT message_count FROM sessions WHERE session_id = %s", (session.session_id,))
        assert await cur.fetchone() == (2,)
        cur = await conn.execute(
            "SELECT utterance_count, mean_latency_ms, min_latency_ms, max_latency_ms "
            "FROM session_metrics WHERE session_id = %s", (session.session_id,))
        assert await cur.fetchone() == (2, 400.0, 380.0, 420.0)
    assert ended.metrics().utterance_count == 2
    assert len(raw) == 2 and {key for _, key in raw} == {"test1"}
    for row, _ in raw:  # neither the text nor its hex appears anywhere in the rows
        for text in (said, "swordfish", "peixe", "obrigado", "thank you"):
            assert text not in row and text.encode().hex() not in row

    async with clean.pool.connection() as conn:
        logs = await session_store.utterances_of(conn, clean.keyring, "ana")
        assert [(u.source_text, u.latency_ms["total"], u.latency_ms["recognition"]) for u in logs] \
            == [(said, 420, 20), ("obrigado", 380, 20)]
        stranger_key = crypto.Keyring.parse(crypto.new_key_entry("test1"))
        with pytest.raises(crypto.DecryptionError):
            await session_store.utterances_of(conn, stranger_key, "ana")

        # rotation: a new first key, the old one still decrypts until rotated
        new_entry = crypto.new_key_entry("test2")
        both = crypto.Keyring.parse(f"{new_entry},{database_settings.encryption_keys}")
        assert await session_store.rotate_keys(conn, both, batch_size=1) == 2
        assert await session_store.rotate_keys(conn, both) == 0
        only_new = crypto.Keyring.parse(new_entry)
        assert [u.translated_text for u in await session_store.utterances_of(conn, only_new, "ben")] \
            == ["a senha secreta é peixe-espada", "thank you"]
        with pytest.raises(crypto.DecryptionError, match="no encryption key with id 'test2'"):
            await session_store.utterances_of(conn, clean.keyring, "ben")


def _count_batches(sessions: SessionRegistry) -> list[int]:
    """The sizes of the journal's writes, as they happen."""
    store = sessions.journal._store
    batches: list[int] = []
    write = store.add_utterances

    async def counting(logs: list[UtteranceLog]) -> None:
        batches.append(len(logs))
        await write(logs)

    store.add_utterances = counting  # type: ignore[method-assign]
    return batches


async def test_logs_recorded_together_are_written_together(clean: db.Database) -> None:
    """Under load the journal writes what queued up in one transaction: every
    row lands, each session's message count adds up."""
    sessions = registry(clean)
    pairs = []
    for i in range(3):
        session = await sessions.create(Identity(f"a{i}", "A"), "en", "")
        await sessions.join(Identity(f"b{i}", "B"), session.code, "pt", "")
        pairs.append(session)
    batches = _count_batches(sessions)
    for k in range(30):
        session = pairs[k % 3]
        a, b = session.members
        session.record_utterance(a, b, f"1-{k}", f"line {k}", f"linha {k}", latency(300 + k))
    await sessions.journal.flush()
    assert sum(batches) == 30 and len(batches) < 30, batches
    async with clean.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT session_id, message_count FROM sessions ORDER BY session_id")
        assert dict(await cur.fetchall()) == {s.session_id: 10 for s in pairs}
        logs = await session_store.utterances_of(conn, clean.keyring, "a1")
    assert [u.source_text for u in logs] == [f"line {k}" for k in range(1, 30, 3)]


async def test_logs_a_moment_apart_share_a_transaction_and_a_flush_does_not_linger(
        clean: db.Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A log waits JOURNAL_LINGER_S for others to share its transaction; a
    flush (EndSession, shutdown) writes at once."""
    sessions = registry(clean)
    session = await sessions.create(Identity("a", "A"), "en", "")
    await sessions.join(Identity("b", "B"), session.code, "pt", "")
    a, b = session.members
    batches = _count_batches(sessions)
    monkeypatch.setattr(session_store, "JOURNAL_LINGER_S", 30.0)
    for k in range(4):
        session.record_utterance(a, b, f"1-{k}", f"line {k}", f"linha {k}", latency(300))
        await asyncio.sleep(0.05)  # one utterance after another, not at once
    assert batches == []  # still lingering: 30 s
    await asyncio.wait_for(sessions.journal.flush(), 10)
    assert batches == [4]
    session.record_utterance(a, b, "1-4", "line 4", "linha 4", latency(300))
    await asyncio.wait_for(sessions.journal.flush(), 10)
    assert batches == [4, 1]
    async with clean.pool.connection() as conn:
        logs = await session_store.utterances_of(conn, clean.keyring, "a")
    assert [u.source_text for u in logs] == [f"line {k}" for k in range(5)]


async def test_the_sessions_of_a_silent_owner_end_and_a_live_owners_stay(clean: db.Database) -> None:
    lost, alive = registry(clean), registry(clean)
    lost.owner, alive.owner = "10.0.0.1:50051", "10.0.0.2:50051"
    gone = await lost.create(Identity("g1", "G"), "en", "")
    kept = await alive.create(Identity("k1", "K"), "en", "")
    store = PgSessionStore(clean)
    await store.renew_owner(lost.owner)
    await store.renew_owner(alive.owner)
    async with clean.pool.connection() as conn:  # the first stopped renewing 2 minutes ago
        await conn.execute("UPDATE session_owners SET seen_at = now() - interval '2 minutes' "
                           "WHERE owner = %s", (lost.owner,))
    assert await store.end_orphaned(60) == [gone.session_id]
    assert await store.end_orphaned(60) == []  # once
    async with clean.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT s.session_id, s.status, s.end_reason, m.duration_ms IS NOT NULL FROM sessions s "
            "LEFT JOIN session_metrics m USING (session_id) ORDER BY s.session_id = %s DESC",
            (gone.session_id,))
        rows = await cur.fetchall()
        assert [r[0] for r in rows] == [gone.session_id, kept.session_id]
        assert rows[0][1:] == ("ended", "its session service replica stopped", True)
        assert rows[1][1:3] == ("waiting", None)
        assert await session_store.session_owner(conn, session_id=gone.session_id) is None
        assert await session_store.session_owner(conn, code=kept.code) == alive.owner


async def _renews_after_a_failure(
    replica: SessionRegistry, monkeypatch: pytest.MonkeyPatch, **lease: float,
) -> None:
    """Runs `replica`'s lease loop for 0.3 s, its first renewal failing as in a database
    outage, so that it renews a few times after it."""
    renew, renewals = replica.store.renew_owner, []

    async def fails_once(owner: str) -> None:
        renewals.append(owner)
        if len(renewals) == 1:
            raise psycopg.OperationalError("the database went away")
        await renew(owner)

    monkeypatch.setattr(replica.store, "renew_owner", fails_once)
    task = asyncio.create_task(replica.keep_owner_lease(renew_s=0.05, **lease))
    try:
        await asyncio.sleep(0.3)
        assert len(renewals) >= 3
    finally:
        task.cancel()


async def test_a_replica_not_yet_able_to_take_over_leaves_a_released_lease_alone(
    clean: db.Database, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A drained replica gives its lease up (silent at once). A replica that may not take
    sessions over yet (its lease renewed again for less than handover_after_ms after a
    failed or late renewal) must not end them either, before one that may takes them over."""
    leaving, staying = registry(clean), registry(clean, handover_after_ms=60_000)
    leaving.owner, staying.owner = "10.0.0.1:50051", "10.0.0.2:50051"
    staying.handover = Handover(clean, staying.owner)
    session = await leaving.create(Identity("g1", "G"), "en", "")
    await PgSessionStore(clean).renew_owner(leaving.owner)
    await Handover(clean, leaving.owner).release()
    await _renews_after_a_failure(staying, monkeypatch)
    assert await live_codes(clean) == [session.code]
    store = PgSessionStore(clean)
    assert await store.end_orphaned(60, released=False) == []  # left to be taken over
    assert await store.end_orphaned(60) == [session.session_id]  # no handover


async def test_a_replica_back_from_an_outage_waits_before_it_ends_silent_owners(
    clean: db.Database, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a handover, a replica ends the sessions of owners silent for `silent_s`. After
    an outage every lease is that silent: one back first must not end the sessions of replicas
    that have not renewed yet, until it has renewed its own for `silent_s`."""
    other, back = registry(clean), registry(clean)
    other.owner, back.owner = "10.0.0.1:50051", "10.0.0.2:50051"
    session = await other.create(Identity("g1", "G"), "en", "")
    store = PgSessionStore(clean)
    await store.renew_owner(other.owner)
    async with clean.pool.connection() as conn:  # the outage silenced it 2 minutes ago
        await conn.execute("UPDATE session_owners SET seen_at = now() - interval '2 minutes' "
                           "WHERE owner = %s", (other.owner,))
    await _renews_after_a_failure(back, monkeypatch, silent_s=60)
    assert await live_codes(clean) == [session.code]
    # a replica that renewed all along knows the silence is the owner's own
    steady = registry(clean)
    steady.owner = "10.0.0.3:50051"
    lease = asyncio.create_task(steady.keep_owner_lease(renew_s=0.05, silent_s=60))
    try:
        async with asyncio.timeout(5):
            while await live_codes(clean):
                await asyncio.sleep(0.05)
    finally:
        lease.cancel()


async def test_a_replica_keeps_its_lease_while_it_runs(clean: db.Database) -> None:
    replica = registry(clean)
    replica.owner = "10.0.0.3:50051"
    lease = asyncio.create_task(replica.keep_owner_lease(renew_s=0.05, silent_s=60))
    try:
        await asyncio.sleep(0.2)
        async with clean.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT now() - seen_at < interval '1 second' FROM session_owners WHERE owner = %s",
                (replica.owner,))
            assert (await cur.fetchone()) == (True,)
    finally:
        lease.cancel()


async def test_each_participants_numbers_and_each_target_language_are_kept(
    clean: db.Database,
) -> None:
    sessions = registry(clean)
    session = await sessions.create(Identity("ana", "Ana"), "en", "", max_participants=4)
    for who, language in (("ben", "pt"), ("cy", "es"), ("dora", "pt-BR")):
        await sessions.join(Identity(who, who.title()), session.code, language, "")
    ana, ben, cy, dora = session.members
    # one utterance of Ana, heard by all three: translated into pt and es (dora shares pt)
    for listener, total_ms in ((ben, 300), (cy, 500), (dora, 400)):
        session.record_utterance(ana, listener, "1-1", "hello", "olá", latency(total_ms))
    for total_ms in (100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200,
                     1300, 1400, 1500, 1600, 1700, 1800, 1900, 2000):
        session.record_utterance(ben, ana, f"2-{total_ms}", "oi", "hi", latency(total_ms))
    session.record_error(cy)
    for unsure in (False, True, False, False):
        session.record_transcript(unsure)
    await sessions.remove(Identity("ana", "Ana"), session.session_id, "dora")
    ended = await sessions.end(Identity("ana", "Ana"), session.session_id, "bye")

    top = ended.metrics()
    assert (top.utterance_count, top.error_count) == (21, 1)  # utterances, not deliveries
    [stored] = await sessions.store.sessions_of("ben", limit=1, session_id=session.session_id)
    assert stored.metrics is not None and stored.metrics.participants == top.participants
    assert stored.metrics.low_confidence_share == top.low_confidence_share == 0.25
    numbers = {p.user_id: p for p in stored.metrics.participants}
    assert [p.user_id for p in stored.metrics.participants] == ["ana", "ben", "cy", "dora"]
    assert (numbers["ana"].utterances_spoken, numbers["ana"].utterances_heard) == (1, 20)
    assert numbers["ana"].mean_latency_ms == 1050.0 and numbers["ana"].p95_latency_ms == 1900.0
    assert (numbers["ben"].utterances_spoken, numbers["ben"].utterances_heard) == (20, 1)
    assert numbers["ben"].p95_latency_ms == 300.0
    assert (numbers["cy"].error_count, numbers["cy"].utterances_heard) == (1, 1)
    assert (numbers["dora"].utterances_spoken, numbers["dora"].utterances_heard) == (0, 1)
    assert [(p.user_id, p.state) for p in stored.participants] == [
        ("ana", "joined"), ("ben", "joined"), ("cy", "joined"), ("dora", "removed")]
    assert stored.max_participants == 4 and not stored.locked
    async with clean.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT target_language_code FROM translation_logs WHERE session_id = %s "
            "AND utterance_id = '1-1' ORDER BY target_language_code", (session.session_id,))
        assert await cur.fetchall() == [("es",), ("pt",)]
        cur = await conn.execute(
            "SELECT state, left_at IS NOT NULL FROM session_participants "
            "WHERE session_id = %s AND user_id = 'dora'", (session.session_id,))
        assert await cur.fetchone() == ("removed", True)

    # deleting a user's data takes their numbers with their part; the session stays
    async with clean.pool.connection() as conn, conn.transaction():
        await session_store.delete_user_data(conn, "ben")
    [kept] = await sessions.store.sessions_of("ana", limit=1, session_id=session.session_id)
    assert kept.metrics is not None
    assert [p.user_id for p in kept.metrics.participants] == ["ana", "cy", "dora"]


async def test_lock_leave_and_rejoin_are_recorded(clean: db.Database) -> None:
    sessions = registry(clean)
    session = await sessions.create(Identity("ana", "Ana"), "en", "")
    for who in ("ben", "cy"):
        await sessions.join(Identity(who, who.title()), session.code, "pt", "")
    await sessions.leave(Identity("cy", "Cy"), session.session_id)
    [stored] = await sessions.store.sessions_of("cy", limit=1)
    assert [p.state for p in stored.participants] == ["joined", "joined", "left"]
    await sessions.join(Identity("cy", "Cy"), session.code, "es", "v2")
    await sessions.lock(Identity("ana", "Ana"), session.session_id, True)
    [stored] = await sessions.store.sessions_of("cy", limit=1)
    assert stored.locked and stored.status == "active"
    assert [(p.state, p.language_code, p.voice) for p in stored.participants][2] == ("joined", "es", "v2")
    # the code still names the live session, so that a join is refused precisely
    assert await sessions.store.owner(code=session.code) == ""


async def test_sessions_written_before_multi_party_stay_readable(tmp_path: Path) -> None:
    with scratch_schema(prefix="oldrows") as settings:
        for path in sorted(migrate.MIGRATIONS_DIR.glob("000[1-3]_*.sql")):
            shutil.copy(path, tmp_path)
        async with await db.connect(settings) as conn:
            await migrate.upgrade(conn, settings.schema, tmp_path)
            await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.schema)))
            await conn.execute(
                "INSERT INTO sessions (session_id, code, status, created_at, joined_at, ended_at, "
                "end_reason) VALUES ('old', '123456', 'ended', now(), now(), now(), 'bye')")
            await conn.execute(
                "INSERT INTO session_participants (session_id, user_id, position, display_name, "
                "language_code, joined_at, session_created_at) VALUES "
                "('old', 'ana', 1, 'Ana', 'en', now(), now()), "
                "('old', 'ben', 2, 'Ben', 'pt', now(), now())")
            await conn.execute(
                "INSERT INTO session_metrics (session_id, utterance_count, error_count, "
                "mean_latency_ms, min_latency_ms, max_latency_ms, duration_ms) "
                "VALUES ('old', 3, 0, 400, 300, 500, 60000)")
            await conn.commit()
        database = await db.open_database(settings)  # applies 0004
        try:
            [old] = await PgSessionStore(database).sessions_of("ben", limit=5)
            assert (old.session_id, old.status, old.max_participants, old.locked) == (
                "old", "ended", 2, False)
            assert [(p.user_id, p.state) for p in old.participants] == [
                ("ana", "joined"), ("ben", "joined")]
            assert old.metrics is not None and old.metrics.utterance_count == 3
            assert old.metrics.participants == ()
            proto = session_server.session_proto(old)
            assert [(p.host, p.state) for p in proto.participants] == [
                (True, spb.PARTICIPANT_STATE_JOINED), (False, spb.PARTICIPANT_STATE_JOINED)]
            assert proto.max_participants == 2 and proto.metrics.utterance_count == 3
            assert proto.metrics.low_confidence_share == 0.0  # counted none before 0006
            # new rows: a ninth position is refused, an utterance may have several targets
            async with database.pool.connection() as conn:
                with pytest.raises(psycopg.errors.CheckViolation):
                    await conn.execute(
                        "INSERT INTO session_participants (session_id, user_id, position, "
                        "display_name, language_code, joined_at, session_created_at) "
                        "VALUES ('old', 'x', 9, 'X', 'en', now(), now())")
            sessions = registry(database)
            session = await sessions.create(Identity("ana", "Ana"), "en", "")
            for i, language in enumerate(("pt", "es")):
                await sessions.join(Identity(f"u{i}", "U"), session.code, language, "")
            ana, u0, u1 = session.members
            session.record_utterance(ana, u0, "1-1", "hi", "oi", latency(300))
            session.record_utterance(ana, u1, "1-1", "hi", "hola", latency(300))
            await sessions.end(Identity("ana", "Ana"), session.session_id, "bye")
            async with database.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT count(*) FROM translation_logs WHERE session_id = %s",
                    (session.session_id,))
                assert await cur.fetchone() == (2,)
        finally:
            await database.close()


async def test_a_joiner_is_checked_both_ways_against_every_language_present(
    clean: db.Database,
) -> None:
    async def inventory() -> Inventory:
        return default_like()

    sessions = SessionRegistry(config.SessionSettings(), PgSessionStore(clean), inventory=inventory)
    session = await sessions.create(Identity("ana", "Ana"), "en", "")
    await sessions.join(Identity("ben", "Ben"), session.code, "pt", "")
    assert not session.one_way
    with pytest.raises(FailedPrecondition) as info:  # nothing translates into German
        await sessions.join(Identity("cy", "Cy"), session.code, "de", "")
    assert info.value.message.startswith("no translation from en to de")
    assert [m.user_id for m in session.members] == ["ana", "ben"]  # no seat taken

    await sessions.join(Identity("cy", "Cy"), session.code, "de", "", allow_one_way=True)
    assert session.one_way
    listed = session.to_proto()
    assert [(r.source_language_code, r.target_language_code, r.available)
            for r in listed.routes] == [
        ("en", "pt", True), ("en", "de", False), ("pt", "en", True), ("pt", "de", False),
        ("de", "en", True), ("de", "pt", True)]
    ana, ben, cy = session.members
    speech = session.route_between(cy, ben)  # German speech translated, then into Portuguese
    assert speech is not None and speech.path is CoveragePath.SPEECH
    paired = [e.session_paired for e in cy.log.kept() if e.HasField("session_paired")]
    assert [(p.partner_user_id, p.one_way) for p in paired] == [("ana", True)]
    await sessions.end(Identity("ana", "Ana"), session.session_id, "bye")


async def test_a_database_restart_mid_conversation_loses_no_logs(
        killable_database: tuple[Postgres, db.Database]) -> None:
    """PostgreSQL killed (SIGKILL, with its backends) and started again: the pool lends
    no dead connection afterwards, and the logs recorded while it was down, longer than
    the pool waits for a connection, are written once it is back
    (session_store.JOURNAL_RETRY_S)."""
    postgres, database = killable_database
    sessions = registry(database)
    session = await sessions.create(Identity("a", "A"), "en", "")
    await sessions.join(Identity("b", "B"), session.code, "pt", "")
    a, b = session.members
    session.record_utterance(a, b, "1-0", "line 0", "linha 0", latency(300))
    await sessions.journal.flush()
    await postgres.kill()
    session.record_utterance(a, b, "1-1", "line 1", "linha 1", latency(300))
    await asyncio.sleep(2.5)  # the journal tries, and finds no database
    await postgres.start()
    await asyncio.wait_for(sessions.journal.flush(), 30)
    assert sessions.journal.failed == 0
    async with database.pool.connection() as conn:  # not one of the dead ones
        logs = await session_store.utterances_of(conn, database.keyring, "a")
    assert [u.source_text for u in logs] == ["line 0", "line 1"]
