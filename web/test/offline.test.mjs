// What the app keeps for offline use: the past sessions list in localStorage, and the
// microphone's error messages.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ParticipantSchema, SessionMetricsSchema, SessionSchema, SessionStatus } from "@dragoman/client";
import { microphoneProblem } from "../src/audio/capture.ts";
import * as offline from "../src/offline.ts";

class MemoryStore {
  items = new Map();
  getItem(key) { return this.items.has(key) ? this.items.get(key) : null; }
  setItem(key, value) { this.items.set(key, String(value)); }
}

const T0 = Date.UTC(2026, 4, 12, 14, 3);
const session = (id, status, people, { utterances = 0, minutes = 0 } = {}) => create(SessionSchema, {
  sessionId: id, status, createTime: timestampFromMs(T0),
  endTime: minutes ? timestampFromMs(T0 + minutes * 60_000) : undefined,
  metrics: create(SessionMetricsSchema, { utteranceCount: utterances }),
  participants: people.map(([userId, displayName, languageCode]) =>
    create(ParticipantSchema, { userId, displayName, languageCode })),
});

test("the sessions ListSessions returned are kept and read back, without the caller among the others", () => {
  const store = new MemoryStore();
  const sessions = [
    session("s2", SessionStatus.ENDED, [["u-ana", "Ana", "en"], ["u-bruno", "Bruno", "pt"]], { utterances: 3, minutes: 4 }),
    session("s1", SessionStatus.WAITING, [["u-ana", "Ana", "en"]]),
  ];
  const saved = offline.savePastSessions(store, "ana", "u-ana", sessions, T0 + 1000);
  const loaded = offline.loadPastSessions(store);
  assert.deepEqual(loaded, saved);
  assert.equal(loaded.username, "ana");
  assert.equal(loaded.savedMs, T0 + 1000);
  assert.deepEqual(loaded.sessions.map((s) => [s.id, s.live, s.others, s.utterances]), [
    ["s2", false, [{ name: "Bruno", language: "pt" }], 3],
    ["s1", true, [], 0],
  ]);
  assert.equal(loaded.sessions[0].endedMs - loaded.sessions[0].createdMs, 4 * 60_000);
});

test("another user's sign-in replaces the list", () => {
  const store = new MemoryStore();
  offline.savePastSessions(store, "ana", "u-ana", [session("s1", SessionStatus.ENDED, [["u-ana", "Ana", "en"]])]);
  offline.savePastSessions(store, "bruno", "u-bruno", []);
  assert.deepEqual(offline.loadPastSessions(store).sessions, []);
  assert.equal(offline.loadPastSessions(store).username, "bruno");
});

test("nothing kept, or something unreadable, reads as no list", () => {
  const store = new MemoryStore();
  assert.equal(offline.loadPastSessions(store), undefined);
  store.setItem(offline.STORAGE_KEY, "{not json");
  assert.equal(offline.loadPastSessions(store), undefined);
  store.setItem(offline.STORAGE_KEY, JSON.stringify({ username: "ana" }));
  assert.equal(offline.loadPastSessions(store), undefined);
});

test("a full storage still gives the list to show", () => {
  const full = { getItem: () => null, setItem: () => { throw new Error("QuotaExceededError"); } };
  const saved = offline.savePastSessions(full, "ana", "u-ana", [session("s1", SessionStatus.ENDED, [])]);
  assert.equal(saved.sessions.length, 1);
});

test("a past session reads as when, with whom, how much", () => {
  const [ended, open] = offline.savePastSessions(new MemoryStore(), "ana", "u-ana", [
    session("s2", SessionStatus.ENDED, [["u-ana", "Ana", "en"], ["u-bruno", "Bruno", "pt"]], { utterances: 1, minutes: 4 }),
    session("s1", SessionStatus.WAITING, [["u-ana", "Ana", "en"]]),
  ]).sessions;
  assert.match(offline.describePastSession(ended), /2026.* · with Bruno \(Portuguese\) · 1 utterance, 4 min$/);
  assert.match(offline.describePastSession(open), / · nobody joined · still open$/);
});

test("each way the microphone fails has its own message", () => {
  const error = (name) => Object.assign(new Error("x"), { name });
  assert.match(microphoneProblem(error("NotAllowedError")), /^Microphone access is blocked\. Allow/);
  assert.match(microphoneProblem(error("NotFoundError")), /^No microphone was found/);
  assert.match(microphoneProblem(error("NotReadableError")), /another app/);
  assert.match(microphoneProblem(error("SecurityError")), /https/);
  assert.equal(microphoneProblem(new Error("boom")), "The microphone could not start: boom");
});

test("config.json's API address is kept for a page opened offline", () => {
  const store = new MemoryStore();
  assert.equal(offline.keptApiBaseUrl(store), undefined);
  assert.equal(offline.keepApiBaseUrl(store, "https://api.example.org"), "https://api.example.org");
  assert.equal(offline.keptApiBaseUrl(store), "https://api.example.org");
});
