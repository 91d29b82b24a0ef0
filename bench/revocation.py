"""What the identity checks add to a proxied call (bench/results/revocation.md).

Times, per call, on this machine: the gateway's login check (`Revocations`)
when its cache answers and when it asks PostgreSQL (one primary-key read on
login_families), the access token check it follows, and the identity
assertion the gateway signs and session_svc verifies.

    python -m bench.revocation [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from dragoman import db
from dragoman.assertion import Assertions
from dragoman.db.testing import scratch_schema
from gateway.auth import AccessTokens, Identity, Revocations
from gateway.pgstore import PgUserStore
from gateway.store import RefreshToken, User


def _per_call_us(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


async def _per_call_us_async(fn: Callable[[], Awaitable[object]], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await fn()
    return (time.perf_counter() - start) / calls * 1e6


async def run(calls: int) -> dict[str, float]:
    key = b"k" * 48
    tokens = AccessTokens(key, 900)
    assertions = Assertions(key)
    out: dict[str, float] = {}
    with scratch_schema(prefix="benchrev") as settings:
        database = await db.open_database(settings)
        try:
            store = PgUserStore(database)
            user = User(uuid.uuid4().hex, "bench", "bench@example.org", "x", "en", time.time())
            await store.add_user(user)
            family = uuid.uuid4().hex
            await store.add_refresh_token(RefreshToken(uuid.uuid4().hex, user.user_id, family,
                                                       time.time() + 3600))
            identity = Identity(user.user_id, user.username, family)
            cached = Revocations(store, recheck_s=3600.0)
            uncached = Revocations(store, recheck_s=0.0)
            await cached.check(identity)
            runs = 5
            out["check_cached_us"] = statistics.median(
                [await _per_call_us_async(lambda: cached.check(identity), calls)
                 for _ in range(runs)])
            out["check_postgres_us"] = statistics.median(
                [await _per_call_us_async(lambda: uncached.check(identity), calls // 20)
                 for _ in range(runs)])
        finally:
            await database.close()
    token, _ = tokens.issue(identity)
    header = [("authorization", f"Bearer {token}")]
    out["access_token_verify_us"] = statistics.median(
        [_per_call_us(lambda: tokens.authenticate(header), calls) for _ in range(5)])
    # a fresh signer or verifier each call: what the first call of a caller costs
    out["assertion_sign_us"] = statistics.median(
        [_per_call_us(lambda: Assertions(key).sign(user.user_id, user.username), calls)
         for _ in range(5)])
    out["assertion_sign_reused_us"] = statistics.median(
        [_per_call_us(lambda: assertions.sign(user.user_id, user.username), calls)
         for _ in range(5)])
    signed = assertions.metadata(user.user_id, user.username)
    out["assertion_verify_us"] = statistics.median(
        [_per_call_us(lambda: Assertions(key).from_metadata(signed), calls) for _ in range(5)])
    out["assertion_verify_remembered_us"] = statistics.median(
        [_per_call_us(lambda: assertions.from_metadata(signed), calls) for _ in range(5)])
    return {k: round(v, 1) for k, v in out.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args.calls)), indent=2))


if __name__ == "__main__":
    main()
