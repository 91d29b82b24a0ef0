// The SDK's audio helpers and typed events, against the built package (npm run build).
import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import {
  ConversationEventSchema, parseWav, pcmBytes, pcmChunks, toEvent,
} from "@dragoman/client";

/** A WAV file of `samples` (16-bit mono), with a LIST chunk before the data as some writers add. */
function wav(samples, rateHz = 16000, { bits = 16, channels = 1 } = {}) {
  const data = pcmBytes(Int16Array.from(samples));
  const list = new TextEncoder().encode("LIST\x04\x00\x00\x00INFO");
  const out = new Uint8Array(12 + 24 + list.length + 8 + data.length);
  const view = new DataView(out.buffer);
  const text = (at, s) => out.set(new TextEncoder().encode(s), at);
  text(0, "RIFF"); view.setUint32(4, out.length - 8, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, channels, true);
  view.setUint32(24, rateHz, true); view.setUint32(28, rateHz * 2 * channels, true);
  view.setUint16(32, 2 * channels, true); view.setUint16(34, bits, true);
  out.set(list, 36);
  text(36 + list.length, "data"); view.setUint32(40 + list.length, data.length, true);
  out.set(data, 44 + list.length);
  return out;
}

test("parseWav reads 16-bit mono PCM past other chunks", () => {
  const pcm = parseWav(wav([0, 1, -1, 32767, -32768], 22050));
  assert.equal(pcm.sampleRateHz, 22050);
  assert.deepEqual([...pcm.samples], [0, 1, -1, 32767, -32768]);
});

test("parseWav names what it cannot take", () => {
  assert.throws(() => parseWav(new Uint8Array(44)), /not a WAV file/);
  assert.throws(() => parseWav(wav([1, 2], 16000, { channels: 2 })), /16-bit mono PCM \(got codec 1, 16 bits, 2 channels\)/);
  assert.throws(() => parseWav(wav([1, 2]).subarray(0, 36)), /no data chunk/);
});

test("pcmBytes is little-endian", () => {
  assert.deepEqual([...pcmBytes(Int16Array.of(1, -2))], [1, 0, 0xfe, 0xff]);
});

test("pcmChunks cuts 100 ms chunks, adds trailing silence and paces at real time", async () => {
  const pcm = { sampleRateHz: 16000, samples: new Int16Array(4000).fill(7) }; // 250 ms
  const fast = [];
  for await (const c of pcmChunks(pcm, { paced: false, trailingSilenceMs: 100 })) fast.push(c);
  assert.deepEqual(fast.map((c) => c.length), [1600, 1600, 1600, 800]);
  assert.equal(fast[2][799], 7);
  assert.equal(fast[2][800], 0); // the silence after the 4000th sample
  const start = Date.now();
  let chunks = 0;
  for await (const _ of pcmChunks(pcm, { chunkMs: 50 })) chunks++;
  assert.equal(chunks, 5);
  assert.ok(Date.now() - start >= 190, `5 chunks of 50 ms took ${Date.now() - start} ms`);
});

test("toEvent types each kind and drops heartbeats", () => {
  const translation = toEvent(create(ConversationEventSchema, {
    sessionId: "s", sequence: 7n, kind: { case: "translation", value: { text: "olá", isFinal: true } },
  }));
  assert.equal(translation.type, "translation");
  assert.equal(translation.translation.text, "olá");
  assert.equal(translation.sequence, 7n);
  assert.equal(toEvent(create(ConversationEventSchema, { kind: { case: "heartbeat", value: {} } })), undefined);
});
