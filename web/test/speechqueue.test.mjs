// SpeechQueue: utterances play whole, in the order their first chunk arrived.
import assert from "node:assert/strict";
import { test } from "node:test";
import { SpeechQueue } from "../src/speechqueue.ts";

const chunk = (utteranceId, i, isLast = false) => ({ utteranceId, i, isLast });
const names = (chunks) => chunks.map((c) => `${c.utteranceId}${c.i}`);

test("chunks of one utterance pass straight through", () => {
  const q = new SpeechQueue();
  assert.deepEqual(names(q.push(chunk("a", 0), 0)), ["a0"]);
  assert.deepEqual(names(q.push(chunk("a", 1, true), 1)), ["a1"]);
  assert.deepEqual(names(q.push(chunk("b", 0, true), 2)), ["b0"]);
  assert.equal(q.playing, undefined);
});

test("another utterance waits for the current one's last chunk, then comes whole", () => {
  const q = new SpeechQueue();
  q.push(chunk("a", 0), 0);
  assert.deepEqual(q.push(chunk("b", 0), 1), []);
  assert.deepEqual(q.push(chunk("c", 0, true), 2), []);
  assert.deepEqual(q.push(chunk("b", 1), 3), []);
  assert.equal(q.queued, 2);
  // a ends: b's chunks so far come out, and b is now current; c waits behind it
  assert.deepEqual(names(q.push(chunk("a", 1, true), 4)), ["a1", "b0", "b1"]);
  assert.equal(q.playing, "b");
  assert.deepEqual(names(q.push(chunk("b", 2, true), 5)), ["b2", "c0"]);
  assert.equal(q.playing, undefined);
  assert.equal(q.queued, 0);
});

test("ProcessingEnded releases the next utterance when the last chunk never came", () => {
  const q = new SpeechQueue();
  q.push(chunk("a", 0), 0);
  q.push(chunk("b", 0, true), 1);
  assert.deepEqual(q.end("b", 2), []); // not current: nothing moves
  assert.deepEqual(names(q.end("a", 3)), ["b0"]);
  assert.equal(q.playing, undefined);
});

test("a waiting utterance that ended without a last chunk does not hold the next", () => {
  const q = new SpeechQueue();
  q.push(chunk("a", 0), 0);
  q.push(chunk("b", 0), 1);
  q.push(chunk("c", 0, true), 2);
  q.end("b", 3);
  assert.deepEqual(names(q.end("a", 4)), ["b0", "c0"]);
});

test("a stalled utterance lets the others go after the stall limit", () => {
  const q = new SpeechQueue(1000);
  q.push(chunk("a", 0), 0);
  q.push(chunk("b", 0, true), 100);
  assert.deepEqual(q.poll(999), []);
  assert.deepEqual(names(q.poll(1000)), ["b0"]);
  // a late chunk of the stalled utterance still plays, after what was waiting
  assert.deepEqual(names(q.push(chunk("a", 1, true), 1100)), ["a1"]);
});

test("polling with nothing waiting never moves on", () => {
  const q = new SpeechQueue(1000);
  q.push(chunk("a", 0), 0);
  assert.deepEqual(q.poll(60_000), []);
  assert.equal(q.playing, "a");
});

// Simultaneous mode: an utterance spoken in pieces (SpeechAudio.piece_index), chunk_index
// counting on across them, is_last only on the last chunk of the last piece.
const piece = (utteranceId, i, pieceIndex, isLast = false, data = [1, 2]) =>
  ({ utteranceId, i, pieceIndex, isLast, data });

test("the pieces of an utterance play in order as one utterance", () => {
  const q = new SpeechQueue(1000);
  const out = [
    ...q.push(piece("a", 0, 1), 0), ...q.push(piece("a", 1, 1), 10),
    ...q.push(piece("a", 2, 2), 500), ...q.push(piece("a", 3, 3, true), 900),
  ];
  assert.deepEqual(names(out), ["a0", "a1", "a2", "a3"]);
  assert.equal(q.playing, undefined);
});

test("an empty last chunk ends a pieced utterance and lets the next one go", () => {
  const q = new SpeechQueue(1000);
  q.push(piece("a", 0, 1), 0);
  assert.deepEqual(q.push(piece("b", 0, 0, true), 10), []);
  // the last piece had nothing new to say: one chunk, no data, is_last
  assert.deepEqual(names(q.push(piece("a", 1, 2, true, []), 20)), ["a1", "b0"]);
  assert.equal(q.playing, undefined);
  assert.equal(q.queued, 0);
});

test("news of a pieced utterance keeps it current through a long pause between pieces", () => {
  const q = new SpeechQueue(1000);
  q.push(piece("a", 0, 1), 0);
  q.push(piece("b", 0, 0, true), 100);
  // its speaker talks on: partial transcripts and translated partials of "a" keep coming
  for (let t = 600; t <= 3000; t += 600) {
    q.heard("a", t);
    assert.deepEqual(q.poll(t + 500), [], `cut off at ${t + 500} ms`);
  }
  assert.equal(q.playing, "a");
  assert.deepEqual(names(q.push(piece("a", 1, 2), 3200)), ["a1"]);
  assert.deepEqual(names(q.push(piece("a", 2, 3, true), 3300)), ["a2", "b0"]);
});

test("news of another utterance does not hold back a stalled one", () => {
  const q = new SpeechQueue(1000);
  q.push(piece("a", 0, 1), 0);
  q.push(piece("b", 0, 0, true), 100);
  q.heard("b", 900);
  q.heard("c", 900);
  assert.deepEqual(names(q.poll(1000)), ["b0"]);
});
