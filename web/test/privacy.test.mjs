// The participant-keyed key this browser keeps, and the privacy badges. (The SDK opens the
// sealed transcript: clients/typescript/test/privacy.test.mjs.)
import assert from "node:assert/strict";
import { test } from "node:test";
import { PrivacyMode } from "@dragoman/client";
import { describe, historyKey } from "../src/privacy.ts";

class MemoryStorage {
  items = new Map();
  getItem(k) { return this.items.get(k) ?? null; }
  setItem(k, v) { this.items.set(k, String(v)); }
}

test("one key per session, the same on every reconnect", () => {
  const storage = new MemoryStorage();
  const first = historyKey(storage, "s1");
  assert.equal(first.length, 32);
  assert.deepEqual(historyKey(storage, "s1"), first);
  assert.notDeepEqual(historyKey(storage, "s2"), first);
});

test("every mode has a badge that says what is kept", () => {
  assert.equal(describe(PrivacyMode.PRIVATE).label, "Private");
  assert.match(describe(PrivacyMode.PARTICIPANT_KEYED).title, /server still sees the text/);
  assert.equal(describe(PrivacyMode.UNSPECIFIED).label, "Standard");
});
