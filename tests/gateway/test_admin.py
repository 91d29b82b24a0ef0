"""AdminService (issue 23 parts 1-3) through a real gateway and a real
session_svc on loopback over the test PostgreSQL: role checks, the setting,
disabling and deleting users, the last admin, live sessions and ending them,
the audit log, and analytics whose plans use the indexes of migration 0011."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import AsyncIterator, Iterator

import grpc
import psycopg
import pytest

from dragoman import config, db, errors
from dragoman.admin.v1 import admin_pb2, admin_pb2_grpc
from dragoman.db.testing import scratch_schema
from dragoman.v1 import auth_pb2, sessions_pb2
from gateway import server
from gateway.pgstore import PgUserStore
from gateway.store import ADMIN, USER, InMemoryUserStore, User
from session_svc import analytics
from tests.conftest import started
from tests.gateway.conftest import PASSWORD, SECRET, Stubs, bearer, unique_name
from tests.mesh import serve_mesh
from tts_svc import server as tts_server

Mesh = tuple[str, config.Settings]
"""The gateway's address and its settings."""
Both = tuple[Stubs, "admin_pb2_grpc.AdminServiceAsyncStub"]
"""The public API's stubs and AdminService's."""


@pytest.fixture(scope="module")
def admin_settings(settings: config.Settings) -> Iterator[config.Settings]:
    with scratch_schema(prefix="admin") as database:
        yield dataclasses.replace(
            settings, database=database,
            auth=dataclasses.replace(settings.auth, jwt_secret=SECRET),
            admin=config.AdminSettings(enabled=True))


@pytest.fixture(scope="module")
async def mesh(admin_settings: config.Settings, models_dir: object) -> AsyncIterator[Mesh]:
    """The five services with real models (sessions need them), AdminService on."""
    async with serve_mesh(admin_settings) as addresses:
        yield addresses.gateway, addresses.settings


@pytest.fixture
async def stubs(mesh: Mesh) -> AsyncIterator[Both]:
    async with grpc.aio.insecure_channel(mesh[0]) as channel:
        yield Stubs.on(channel), admin_pb2_grpc.AdminServiceStub(channel)  # type: ignore[misc]


async def make_admin(settings: config.Settings, username: str) -> None:
    database = await db.open_database(settings.database)
    try:
        await PgUserStore(database).set_admin(username, True)
    finally:
        await database.close()


async def login(stubs: Stubs, username: str) -> str:
    reply = await stubs.auth.Login(auth_pb2.LoginRequest(username=username, password=PASSWORD))
    return reply.tokens.access_token


async def failure(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value


@pytest.fixture
async def admin(stubs: tuple[Stubs, object], mesh: Mesh) -> tuple[str, str]:
    """A fresh admin: (user id, access token issued after the role was granted)."""
    name, reply = await stubs[0].register()
    await make_admin(mesh[1], name)
    return reply.user_id, await login(stubs[0], name)


async def test_non_admins_are_denied_every_call(stubs: Both) -> None:
    public, adm = stubs
    _, reply = await public.register()
    token = bearer(reply.tokens.access_token)
    for call in (adm.ListLiveSessions(admin_pb2.ListLiveSessionsRequest(), metadata=token),
                 adm.SearchUsers(admin_pb2.SearchUsersRequest(), metadata=token),
                 adm.DisableUser(admin_pb2.DisableUserRequest(user_id=reply.user_id), metadata=token),
                 adm.ListAuditLog(admin_pb2.ListAuditLogRequest(), metadata=token),
                 adm.GetAnalytics(admin_pb2.GetAnalyticsRequest(), metadata=token)):
        err = await failure(call)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "admin role" in (err.details() or "")
    err = await failure(adm.SearchUsers(admin_pb2.SearchUsersRequest()))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_admin_service_is_unimplemented_when_off(
        settings: config.Settings, double_address: str) -> None:
    off = dataclasses.replace(settings, auth=dataclasses.replace(settings.auth, jwt_secret=SECRET),
                              addresses=dataclasses.replace(settings.addresses, session=double_address))
    assert not off.admin.enabled
    async for address in started(await server.create(off)):
        async with grpc.aio.insecure_channel(address) as channel:
            err = await failure(admin_pb2_grpc.AdminServiceStub(channel).SearchUsers(
                admin_pb2.SearchUsersRequest()))
            assert err.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_disable_enable_delete_and_the_audit_log(
        stubs: Both, admin: tuple[str, str]) -> None:
    public, adm = stubs
    admin_id, token = admin
    name, victim = await public.register(unique_name("victim"))
    found = await adm.SearchUsers(admin_pb2.SearchUsersRequest(query=name.upper()), metadata=bearer(token))
    assert [u.user_id for u in found.users] == [victim.user_id]
    assert not found.users[0].disabled

    await adm.DisableUser(admin_pb2.DisableUserRequest(user_id=victim.user_id), metadata=bearer(token))
    err = await failure(public.auth.Login(auth_pb2.LoginRequest(username=name, password=PASSWORD)))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "disabled" in (err.details() or "")
    err = await failure(public.auth.RefreshToken(auth_pb2.RefreshTokenRequest(
        refresh_token=victim.tokens.refresh_token)))
    assert err.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
    err = await failure(public.auth.ListDevices(auth_pb2.ListDevicesRequest(),
                                                metadata=bearer(victim.tokens.access_token)))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED

    await adm.EnableUser(admin_pb2.EnableUserRequest(user_id=victim.user_id), metadata=bearer(token))
    await login(public, name)

    deleted = await adm.DeleteUser(admin_pb2.DeleteUserRequest(user_id=victim.user_id),
                                   metadata=bearer(token))
    assert deleted.deleted_session_count == 0
    err = await failure(public.auth.Login(auth_pb2.LoginRequest(username=name, password=PASSWORD)))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    err = await failure(adm.DisableUser(admin_pb2.DisableUserRequest(user_id=victim.user_id),
                                        metadata=bearer(token)))
    assert err.code() == grpc.StatusCode.NOT_FOUND

    log = await adm.ListAuditLog(admin_pb2.ListAuditLogRequest(page_size=500), metadata=bearer(token))
    mine = [(e.action, e.target) for e in log.entries if e.admin_user_id == admin_id]
    assert mine == [("DeleteUser", victim.user_id), ("EnableUser", victim.user_id),
                    ("DisableUser", victim.user_id)]
    assert all(e.coarse_ip == "127.0.0.0/24" for e in log.entries if e.admin_user_id == admin_id)


async def only_new_admins(
        public: Stubs, mesh: Mesh, count: int) -> list[tuple[str, auth_pb2.RegisterResponse]]:
    """Takes the role from every admin and registers `count` new ones: (name, reply) each."""
    database = await db.open_database(mesh[1].database)
    try:
        store = PgUserStore(database)
        async with database.pool.connection() as conn:
            await conn.execute("UPDATE users SET roles = '{user}' WHERE %s = ANY (roles)", (ADMIN,))
        made = [await public.register() for _ in range(count)]
        for name, _ in made:
            await store.set_admin(name, True)
        return made
    finally:
        await database.close()


async def test_the_last_admin_cannot_be_disabled_or_deleted(
        stubs: Both, mesh: Mesh) -> None:
    public, adm = stubs
    [(name, reply)] = await only_new_admins(public, mesh, 1)
    token = bearer(await login(public, name))
    for call in (adm.DisableUser(admin_pb2.DisableUserRequest(user_id=reply.user_id), metadata=token),
                 adm.DeleteUser(admin_pb2.DeleteUserRequest(user_id=reply.user_id), metadata=token)):
        err = await failure(call)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "last" in (err.details() or "")
    await adm.SearchUsers(admin_pb2.SearchUsersRequest(), metadata=token)  # still an admin


async def test_two_concurrent_deletions_of_the_last_two_admins_leave_one(
        stubs: Both, mesh: Mesh) -> None:
    public, _ = stubs
    ids = [reply.user_id for _, reply in await only_new_admins(public, mesh, 2)]
    database = await db.open_database(mesh[1].database)
    try:
        store = PgUserStore(database)
        # both transactions start before either deletes: without the lock both would pass
        results = await asyncio.gather(*(store.delete_user(i, keep_an_admin=True) for i in ids),
                                       return_exceptions=True)
        refused = [r for r in results if isinstance(r, errors.FailedPrecondition)]
        assert len(refused) == 1 and "last admin" in str(refused[0]), results
        assert [a.user_id for a in await store.list_admins()] == [ids[results.index(refused[0])]]
        await store.delete_user("nobody", keep_an_admin=True)  # no such account: nothing to refuse
    finally:
        await database.close()


async def test_live_sessions_health_and_ending_a_session(
        stubs: Both, admin: tuple[str, str]) -> None:
    public, adm = stubs
    _, host = await public.register()
    created = await public.sessions.CreateSession(
        sessions_pb2.CreateSessionRequest(language_code="en"), metadata=bearer(host.tokens.access_token))
    session_id = created.session.session_id
    token = bearer(admin[1])
    live = await adm.ListLiveSessions(admin_pb2.ListLiveSessionsRequest(), metadata=token)
    mine = next(s for s in live.sessions if s.session_id == session_id)
    assert mine.status == "waiting" and list(mine.language_codes) == ["en"]
    assert [p.user_id for p in mine.participants] == [host.user_id]
    assert (mine.error_count, mine.error_count_known) == (0, True)  # one replica holds them all

    health = await adm.GetHealth(admin_pb2.GetHealthRequest(), metadata=token)
    by_name = {s.service: s.status for s in health.services}
    assert by_name == dict.fromkeys(("gateway", "session", "stt", "mt", "tts"), "SERVING")
    models = {(m.service, m.name): m for m in health.models}
    stt = {name for service, name in models if service == "stt"}
    assert stt == {"whisper-base"}  # English too: stt.english_model follows stt.model
    assert models["stt", "whisper-base"].engine == "faster-whisper"
    assert list(models["stt", "whisper-base"].language_codes) == ["*"]
    en_pt, en_de = models["mt", "en->pt"], models["mt", "en->de"]
    assert (en_pt.engine, en_pt.status) == ("bergamot", "READY")
    assert (en_de.status, "opus-mt-en-de" in en_de.detail) == ("NOT_INSTALLED", True)
    assert (models["mt", "es->pt"].engine, models["mt", "es->pt"].status) == ("apertium+bergamot", "READY")
    joe = models["tts", "en_US-joe-medium"]
    assert (joe.engine, list(joe.language_codes), joe.status) == ("piper", ["en-US"], "READY")
    assert models["tts", "espeak-pt"].engine == "espeak"
    assert all(m.status != "UNREACHABLE" for m in health.models)

    await adm.EndSession(admin_pb2.EndSessionRequest(session_id=session_id), metadata=token)
    live = await adm.ListLiveSessions(admin_pb2.ListLiveSessionsRequest(), metadata=token)
    assert session_id not in {s.session_id for s in live.sessions}
    err = await failure(adm.EndSession(admin_pb2.EndSessionRequest(session_id=session_id), metadata=token))
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_a_stopped_model_service_is_unreachable_not_a_failure(
        stubs: Both, admin: tuple[str, str], mesh: Mesh) -> None:
    stopped = ""
    async for address in started(await tts_server.create(mesh[1])):
        stopped = address  # left when the loop ends, stopped: nothing listens there now
    settings = dataclasses.replace(
        mesh[1], addresses=dataclasses.replace(mesh[1].addresses, tts=stopped))
    async for address in started(await server.create(settings)):
        async with grpc.aio.insecure_channel(address) as channel:
            health = await admin_pb2_grpc.AdminServiceStub(channel).GetHealth(
                admin_pb2.GetHealthRequest(), metadata=bearer(admin[1]))
    assert {s.service: s.status for s in health.services}["tts"] == "UNREACHABLE"
    [tts] = [m for m in health.models if m.service == "tts"]
    assert (tts.name, tts.status) == ("", "UNREACHABLE") and "UNAVAILABLE" in tts.detail
    assert {m.status for m in health.models if m.name == "whisper-base"} == {"READY"}


async def test_bad_analytics_ranges_are_invalid(
        stubs: Both, admin: tuple[str, str]) -> None:
    for request, words in ((admin_pb2.GetAnalyticsRequest(days=400), "days"),
                           (admin_pb2.GetAnalyticsRequest(end_date="yesterday"), "end_date")):
        err = await failure(stubs[1].GetAnalytics(request, metadata=bearer(admin[1])))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and words in (err.details() or "")


DAY0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
LOG_ROWS = 100_000


async def test_analytics_over_100000_logs_use_indexes(
        stubs: Both, admin: tuple[str, str],
        mesh: Mesh) -> None:
    """A year of logs (about 274 a day over 365 days); 30 days asked."""
    database = mesh[1].database
    async with await db.connect(database) as conn:
        await conn.execute(
            "INSERT INTO sessions (session_id, code, status, created_at, ended_at) "
            "SELECT 'an-' || d, '000000', 'ended', %s + d * interval '1 day', "
            "%s + d * interval '1 day' + interval '10 minutes' FROM generate_series(0, 364) d",
            (DAY0, DAY0))
        await conn.execute(
            "INSERT INTO session_metrics (session_id, utterance_count, error_count, mean_latency_ms, "
            "min_latency_ms, max_latency_ms, duration_ms, created_at, transcribed_count, "
            "low_confidence_count) SELECT 'an-' || d, 9, 1, 1, 1, 1, 600000, "
            "%s + d * interval '1 day' + interval '10 minutes', 10, 2 FROM generate_series(0, 364) d",
            (DAY0,))
        await conn.execute(
            "INSERT INTO translation_logs (log_id, session_id, utterance_id, speaker_user_id, "
            "source_language_code, target_language_code, key_id, source_text, translated_text, "
            "endpointing_ms, recognition_ms, translation_ms, synthesis_first_chunk_ms, delivery_ms, "
            "total_ms, created_at) SELECT gen_random_uuid(), 'an-' || (mod(i, 365)), 'u' || i, 'x', "
            "CASE WHEN mod(i, 4) = 0 THEN 'pt' ELSE 'en' END, "
            "CASE WHEN mod(i, 4) = 0 THEN 'en' ELSE 'pt' END, "
            "'k', '\\x00', '\\x00', 100, mod(i, 1000), 50, 80, 10, 300 + mod(i, 100), "
            "%s + (mod(i, 365)) * interval '1 day' + interval '1 minute' FROM generate_series(1, %s) i",
            (DAY0, LOG_ROWS))
        await conn.commit()
        await conn.set_autocommit(True)
        for table in ("sessions", "translation_logs", "session_metrics"):
            await conn.execute(f"VACUUM ANALYZE {table}")
        span = {"start": DAY0 + datetime.timedelta(days=100),
                "end": DAY0 + datetime.timedelta(days=130)}
        plans = {}
        for name, query in analytics.QUERIES.items():
            rows = await (await conn.execute("EXPLAIN " + query, span)).fetchall()
            plans[name] = "\n".join(r[0] for r in rows)
            assert "Seq Scan" not in plans[name], plans[name]
        assert "translation_logs_analytics" in plans["latency"]
        assert "translation_logs_analytics" in plans["language_pairs"]
    print("\n\n".join(f"{k}:\n{v}" for k, v in plans.items()))

    reply = await stubs[1].GetAnalytics(admin_pb2.GetAnalyticsRequest(end_date="2026-05-10", days=30),
                                        metadata=bearer(admin[1]))
    assert len(reply.daily_sessions) == 30
    assert all(d.session_count == 1 and d.minutes == pytest.approx(10) for d in reply.daily_sessions)
    pairs = {(p.source_language_code, p.target_language_code): p.utterance_count
             for p in reply.language_pairs}
    assert sum(pairs.values()) == pytest.approx(LOG_ROWS * 30 / 365, rel=0.02)
    assert pairs[("en", "pt")] > pairs[("pt", "en")]
    total = [r for r in reply.latency if r.stage == "total"]
    assert {r.date for r in total} == {d.date for d in reply.daily_sessions}
    assert all(300 <= r.p50_ms <= r.p95_ms <= 399 for r in total)
    assert reply.error_share == pytest.approx(0.1)
    assert reply.low_confidence_share == pytest.approx(0.2)
    csv = await stubs[1].ExportAnalyticsCsv(admin_pb2.ExportAnalyticsCsvRequest(
        range=admin_pb2.GetAnalyticsRequest(end_date="2026-05-10", days=30)), metadata=bearer(admin[1]))
    assert csv.daily_sessions_csv.splitlines()[0] == "date,session_count,minutes"
    assert len(csv.daily_sessions_csv.splitlines()) == 31
    assert csv.shares_csv.splitlines()[1] == "0.1,0.2"


async def test_the_audit_log_cannot_be_edited(mesh: Mesh, admin: tuple[str, str]) -> None:
    async with await db.connect(mesh[1].database) as conn:
        for statement in ("UPDATE admin_audit_log SET action = 'x'", "DELETE FROM admin_audit_log"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                await conn.execute(statement)
            await conn.rollback()


async def test_the_memory_store_searches_disables_and_deletes_as_postgres_does() -> None:
    store = InMemoryUserStore()
    for name, roles in (("ann", (USER, ADMIN)), ("bob", (USER, ADMIN)), ("Anna", (USER,))):
        await store.add_user(User(f"id-{name}", name, f"{name}@example.org", "h", "en", 0.0, roles))
    assert [u.username for u in await store.search_users("AN", 10)] == ["ann", "Anna"]
    assert [u.username for u in await store.search_users("", 1)] == ["ann"]
    assert (await store.set_disabled("id-ann", True)).disabled  # type: ignore[union-attr]
    with pytest.raises(errors.FailedPrecondition, match="last enabled admin"):
        await store.set_disabled("id-bob", True)
    assert await store.set_disabled("nobody", True) is None
    assert not (await store.set_disabled("id-ann", False)).disabled  # type: ignore[union-attr]
    await store.set_disabled("id-ann", True)
    with pytest.raises(errors.FailedPrecondition, match="last admin"):
        await store.delete_user("id-bob", keep_an_admin=True)  # ann is disabled
    await store.delete_user("id-ann", keep_an_admin=True)  # bob stays an enabled admin
    assert [u.username for u in await store.list_admins()] == ["bob"]
