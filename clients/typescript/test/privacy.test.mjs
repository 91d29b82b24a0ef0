// Opening a participant-keyed export with WebCrypto; the sealing is session_svc's (store.seal_log).
import assert from "node:assert/strict";
import { test } from "node:test";
import { newHistoryKey, openSealedTranscript } from "@dragoman/client";

// nonce (12) || ciphertext || tag, base64, as the server writes each record
async function seal(key, utterance, aad) {
  const aes = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["encrypt"]);
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  const body = new Uint8Array(await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: nonce, additionalData: new TextEncoder().encode(aad) }, aes,
    new TextEncoder().encode(JSON.stringify(utterance))));
  return btoa(String.fromCharCode(...nonce, ...body));
}

test("a sealed transcript opens with its key, and not with another", async () => {
  const key = newHistoryKey();
  assert.equal(key.length, 32);
  const said = { utterance_id: "u1", speaker_user_id: "ana", source_language_code: "en",
    target_language_code: "pt", source_text: "hello", translated_text: "olá" };
  const aad = "participant_logs:0b7c";
  const file = new TextEncoder().encode(JSON.stringify({
    session_id: "s1", privacy_mode: "participant-keyed",
    records: [{ utterance_id: "u1", start_ms: 100, end_ms: 900, aad, sealed: await seal(key, said, aad) }] }));
  const opened = await openSealedTranscript(file, key);
  assert.deepEqual(opened, {
    session_id: "s1", privacy_mode: "participant-keyed", utterances: [{ ...said, start_ms: 100, end_ms: 900 }],
  });
  await assert.rejects(openSealedTranscript(file, newHistoryKey()), { name: "OperationError" });
  // the record's aad is authenticated: a record moved to another table's label does not open
  const moved = new TextDecoder().decode(file).replace(aad, "participant_logs:ffff");
  await assert.rejects(openSealedTranscript(new TextEncoder().encode(moved), key), { name: "OperationError" });
});
