// Conversation's plumbing against an in-memory ConversationService (connect's router
// transport): resuming after a drop, and audio retried with the same sequence. The real
// server is tests/browser/test_typescript_sdk.py's.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { Conversation, ConversationService } from "@dragoman/client";

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
