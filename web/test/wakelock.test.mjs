// The screen wake lock's bookkeeping, over a stand-in for navigator.wakeLock.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ScreenWakeLock } from "../src/wakelock.ts";

class Sentinel {
  released = false;
  async release() { this.released = true; }
}

const host = (refuse = false) => {
  const given = [];
  return {
    given,
    wakeLock: {
      async request(type) {
        assert.equal(type, "screen");
        if (refuse) throw Object.assign(new Error("page hidden"), { name: "NotAllowedError" });
        const s = new Sentinel();
        given.push(s);
        return s;
      },
    },
  };
};

test("held while wanted, released after", async () => {
  const h = host();
  const lock = new ScreenWakeLock(h);
  await lock.hold();
  assert.equal(lock.held, true);
  await lock.hold(); // already held: no second request
  assert.equal(h.given.length, 1);
  lock.release();
  assert.equal(lock.held, false);
  assert.equal(h.given[0].released, true);
});

test("a lock the browser dropped (page hidden) no longer counts as held", async () => {
  const h = host();
  const lock = new ScreenWakeLock(h);
  await lock.hold();
  h.given[0].released = true;
  assert.equal(lock.held, false);
  await lock.hold();
  assert.equal(lock.held, true);
  assert.equal(h.given.length, 2);
});

test("a release before the request is granted gives the lock straight back", async () => {
  const h = host();
  const lock = new ScreenWakeLock(h);
  const asked = lock.hold();
  lock.release();
  await asked;
  assert.equal(lock.held, false);
  assert.equal(h.given[0].released, true);
});

test("a refusal or a browser without the API is noted, not thrown", async () => {
  const refused = new ScreenWakeLock(host(true));
  await refused.hold();
  assert.equal(refused.held, false);
  assert.match(refused.problem, /^NotAllowedError/);
  const none = new ScreenWakeLock({});
  await none.hold();
  assert.equal(none.held, false);
  assert.match(none.problem, /no screen wake lock/);
});
