// Conversation's plumbing against an in-memory ConversationService (connect's router
// transport): resuming after a drop, and audio retried with the same sequence. The real
// server is tests/browser/test_typescript_sdk.py's.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { AudioQueue, Conversation, ConversationService } from "@dragoman/client";

const event = (sequence, text) => ({ event: { sessionId: "s1", sequence, kind: { case: "transcription", value: { text } } } });

function fakeServer() {
  const state = { listens: [], attempts: [], accepted: [], failedOnce: false };
  let allAudio;
  const audioDone = new Promise((resolve) => (allAudio = resolve));
  const transport = createRouterTransport(({ service }) => {
    service(ConversationService, {
      async *listen(req) {
        const after = req.join.resumeAfterSequence;
        state.listens.push(after);
        if (state.listens.length === 1) {
          for (let s = 1n; s <= 3n; s++) yield event(s, `e${s}`);
          throw new ConnectError("connection reset", Code.Unavailable);
        }
        yield { event: { sessionId: "s1", sequence: after, kind: { case: "heartbeat", value: {} } } };
        for (let s = after + 1n; s <= 5n; s++) yield event(s, `e${s}`);
        await audioDone;
        yield { event: { sessionId: "s1", sequence: 6n, kind: { case: "sessionEnded", value: { reason: "host" } } } };
      },
      async sendAudio(req) {
        const { sequence, data } = req.audio;
        state.attempts.push(sequence);
        if (sequence === 2n && !state.failedOnce) {
          state.failedOnce = true;
          throw new ConnectError("busy", Code.Unavailable);
        }
        state.accepted.push({ sequence, bytes: data.length, session: req.sessionId });
        if (state.accepted.length === 3) allAudio();
        return { sequence };
      },
    });
  });
  return { state, api: { conversation: createClient(ConversationService, transport), refresh: async () => {} } };
}

async function* threeChunks() {
  for (let i = 0; i < 3; i++) yield new Int16Array(1600).fill(i);
}

test("a dropped stream resumes after the last event: nothing lost, nothing twice", async () => {
  const { state, api } = fakeServer();
  const talk = new Conversation(api, "s1", threeChunks(), { endAfterAudio: false, maxChunkBytes: 3200 });
  const seen = [];
  for await (const e of talk) seen.push([e.sequence, e.type]);
  assert.deepEqual(seen.map(([s]) => s), [1n, 2n, 3n, 4n, 5n, 6n]);
  assert.deepEqual(seen.at(-1), [6n, "sessionEnded"]);
  assert.deepEqual(state.listens, [0n, 3n]);
  assert.equal(talk.reconnects, 1);
  assert.equal(talk.lastSequence, 6n);
  // the refused chunk went again with its sequence; none was merged past maxChunkBytes
  assert.deepEqual(state.attempts, [1n, 2n, 2n, 3n]);
  assert.deepEqual(state.accepted.map((a) => [a.sequence, a.bytes, a.session]),
                   [[1n, 3200, "s1"], [2n, 3200, "s1"], [3n, 3200, "s1"]]);
  assert.equal(talk.sentChunks, 3);
});

test("an error reconnecting cannot mend ends the loop with it", async () => {
  const transport = createRouterTransport(({ service }) => {
    service(ConversationService, {
      async *listen() {
        throw new ConnectError("session s9 not found", Code.NotFound);
      },
    });
  });
  const talk = new Conversation({ conversation: createClient(ConversationService, transport), refresh: async () => {} }, "s9");
  await assert.rejects(async () => {
    for await (const _ of talk) assert.fail("no event expected");
  }, (e) => e instanceof ConnectError && e.code === Code.NotFound && e.rawMessage === "session s9 not found");
  assert.equal(talk.reconnects, 0);
});

test("status follows the stream; every stream brings the history key; reconnectNow skips the wait", async () => {
  const joins = [];
  const audio = [];
  const transport = createRouterTransport(({ service }) => {
    service(ConversationService, {
      async *listen(req) {
        joins.push(req.join);
        // three drops before anything arrives: 150 + 300 + 600 ms of backoff at the least
        if (joins.length <= 3) throw new ConnectError("edge restarting", Code.Unavailable);
        yield event(1n, "hello");
        while (audio.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
        yield { event: { sessionId: "s1", sequence: 2n, kind: { case: "sessionEnded", value: { reason: "host" } } } };
      },
      async sendAudio(req) {
        audio.push(req.audio);
        return { sequence: req.audio.sequence };
      },
    });
  });
  const key = new Uint8Array(32).fill(7);
  const statuses = [];
  const speech = new AudioQueue();
  const talk = new Conversation({ conversation: createClient(ConversationService, transport), refresh: async () => {} },
    "s1", speech, {
      historyKey: key, endAfterAudio: false,
      onStatus: (status, cause) => {
        statuses.push([status, cause?.code]);
        if (status === "reconnecting") talk.reconnectNow();
      },
    });
  assert.equal(talk.status, "connecting");
  const start = Date.now();
  for await (const e of talk) {
    if (e.type === "transcription") {
      assert.equal(talk.status, "live");
      speech.push(new Int16Array(160), 1_000_000);
      speech.push(new Int16Array(160), 1_000_010);
    }
  }
  assert.ok(Date.now() - start < 500, `three reconnections took ${Date.now() - start} ms`);
  assert.deepEqual(statuses, [
    ["reconnecting", Code.Unavailable], ["reconnecting", Code.Unavailable], ["reconnecting", Code.Unavailable],
    ["live", undefined], ["ended", undefined],
  ]);
  assert.equal(talk.status, "ended");
  assert.equal(joins.length, 4);
  assert.ok(joins.every((j) => j.historyKey.length === 32 && j.historyKey.every((b) => b === 7)));
  // audio pushed together went out as one chunk, stamped with its first sample's capture time
  assert.equal(timestampMs(audio[0].captureTime), 1_000_000);
  assert.equal(audio.reduce((n, a) => n + a.data.length, 0), 640);
});

test("a failure ends the status with its cause", async () => {
  const transport = createRouterTransport(({ service }) => {
    service(ConversationService, {
      async *listen() {
        throw new ConnectError("no such session", Code.NotFound);
      },
    });
  });
  const statuses = [];
  const talk = new Conversation({ conversation: createClient(ConversationService, transport), refresh: async () => {} },
    "s9", undefined, { onStatus: (status, cause) => statuses.push([status, cause?.code]) });
  await assert.rejects(async () => {
    for await (const _ of talk) assert.fail("no event expected");
  }, /no such session/);
  assert.deepEqual(statuses, [["ended", Code.NotFound]]);
});

test("an AudioQueue yields what was pushed, in order, until end()", async () => {
  const queue = new AudioQueue();
  queue.push(Int16Array.of(1), 10);
  const read = (async () => {
    const out = [];
    for await (const piece of queue) out.push([piece.audio[0], piece.capturedMs]);
    return out;
  })();
  await new Promise((resolve) => setTimeout(resolve, 10));
  queue.push(Int16Array.of(2), 20);
  queue.end();
  queue.push(Int16Array.of(3), 30); // after end(): dropped
  assert.deepEqual(await read, [[1, 10], [2, 20]]);
});
