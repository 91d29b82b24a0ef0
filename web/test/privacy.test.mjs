// The participant-keyed key and the opening of a sealed transcript with WebCrypto.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PrivacyMode } from "@dragoman/client";
import { describe, historyKey, openSealed } from "../src/privacy.ts";

class MemoryStorage {
  items = new Map();
  getItem(k) { return this.items.get(k) ?? null; }
  setItem(k, v) { this.items.set(k, String(v)); }
}

// sealed as session_svc seals (store.seal_log): nonce (12) || ciphertext || tag
async function seal(key, utterance, aad) {
  const aes = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["encrypt"]);
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  const body = new Uint8Array(await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: nonce, additionalData: new TextEncoder().encode(aad) }, aes,
    new TextEncoder().encode(JSON.stringify(utterance))));
  const blob = new Uint8Array([...nonce, ...body]);
  return btoa(String.fromCharCode(...blob));
}

test("one key per session, the same on every reconnect", () => {
  const storage = new MemoryStorage();
  const first = historyKey(storage, "s1");
  assert.equal(first.length, 32);
  assert.deepEqual(historyKey(storage, "s1"), first);
  assert.notDeepEqual(historyKey(storage, "s2"), first);
});

test("a sealed transcript opens with its key, and not with another", async () => {
  const storage = new MemoryStorage();
  const key = historyKey(storage, "s1");
  const said = { utterance_id: "u1", speaker_user_id: "ana", source_language_code: "en",
    target_language_code: "pt", source_text: "hello", translated_text: "olá" };
  const aad = "participant_logs:0b7c";
  const file = new TextEncoder().encode(JSON.stringify({
    session_id: "s1", records: [{ utterance_id: "u1", start_ms: 100, end_ms: 900, aad,
      sealed: await seal(key, said, aad) }] }));
  const opened = await openSealed(key, file);
  assert.equal(opened.utterances[0].translated_text, "olá");
  assert.equal(opened.utterances[0].start_ms, 100);
  await assert.rejects(openSealed(historyKey(storage, "other"), file));
});

test("every mode has a badge that says what is kept", () => {
  assert.equal(describe(PrivacyMode.PRIVATE).label, "Private");
  assert.match(describe(PrivacyMode.PARTICIPANT_KEYED).title, /server still sees the text/);
  assert.equal(describe(PrivacyMode.UNSPECIFIED).label, "Standard");
});
