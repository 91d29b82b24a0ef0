"""The session registry over PostgreSQL: pairing codes, expiry, encrypted logs, key rotation."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Iterator

import pytest
from prometheus_client import REGISTRY

from dragoman import config, db
from dragoman.db import crypto
from dragoman.db.testing import scratch_schema
from dragoman.errors import ResourceExhausted
from dragoman.overload import LoopLag
from dragoman.v1 import conversation_pb2 as cpb
from dragoman.v1 import sessions_pb2 as spb
from session_svc import store as session_store
from session_svc.records import STAGES, UtteranceLog
from session_svc.sessions import Identity, SessionRegistry
from session_svc.store import PgSessionStore

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
