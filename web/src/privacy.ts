// Privacy modes (docs/privacy.md): the choice on create, the badge every participant
// sees, and, for participant-keyed sessions, this browser's key and the opening of
// the sealed transcript with WebCrypto. The server never keeps the key: it lives here.

import { PrivacyMode } from "@dragoman/client";

/** The create form's choices. */
export const PRIVACY_MODES: Record<string, PrivacyMode> = {
  standard: PrivacyMode.STANDARD,
  private: PrivacyMode.PRIVATE,
  "participant-keyed": PrivacyMode.PARTICIPANT_KEYED,
};

/** What the badge says, and what it means, for each mode. */
export function describe(mode: PrivacyMode): { label: string; title: string } {
  switch (mode) {
    case PrivacyMode.PRIVATE:
      return { label: "Private", title: "No transcript or translation is stored; nothing to export." };
    case PrivacyMode.PARTICIPANT_KEYED:
      return {
        label: "Your key",
        title: "Your history is encrypted with a key kept in this browser. " +
          "The server still sees the text while it translates.",
      };
    default:
      return { label: "Standard", title: "Transcripts are stored encrypted with the server's keys." };
  }
}

const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const storageKey = (sessionId: string) => `dragoman.historyKey.${sessionId}`;

function toBase64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** This browser's key for the session: made once (CSPRNG), then the same on every
 * reconnect, since the server refuses another key (history sealed with the first). */
export function historyKey(storage: Storage, sessionId: string): Uint8Array {
  const kept = storage.getItem(storageKey(sessionId));
  if (kept) return fromBase64(kept);
  const key = crypto.getRandomValues(new Uint8Array(KEY_BYTES));
  storage.setItem(storageKey(sessionId), toBase64(key));
  return key;
}

/** One utterance of a participant's own copy, as sealed by session_svc. */
export interface OpenedUtterance {
  utterance_id: string;
  speaker_user_id: string;
  source_language_code: string;
  target_language_code: string;
  source_text: string;
  translated_text: string;
  start_ms: number | null;
  end_ms: number | null;
}

interface SealedTranscript {
  session_id: string;
  records: { utterance_id: string; start_ms: number | null; end_ms: number | null; aad: string; sealed: string }[];
  [more: string]: unknown;
}

/** Opens ExportTranscript's sealed file (AES-256-GCM, nonce || ciphertext || tag) with
 * the key; rejects (OperationError) when the key is not the one it was sealed with. */
export async function openSealed(key: Uint8Array, content: Uint8Array): Promise<{
  session_id: string; utterances: OpenedUtterance[];
}> {
  const doc = JSON.parse(new TextDecoder().decode(content)) as SealedTranscript;
  const aes = await crypto.subtle.importKey("raw", key as BufferSource, "AES-GCM", false, ["decrypt"]);
  const utterances: OpenedUtterance[] = [];
  for (const r of doc.records) {
    const blob = fromBase64(r.sealed);
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: blob.subarray(0, NONCE_BYTES) as BufferSource, additionalData: new TextEncoder().encode(r.aad) },
      aes, blob.subarray(NONCE_BYTES) as BufferSource);
    utterances.push({ ...JSON.parse(new TextDecoder().decode(plain)), start_ms: r.start_ms, end_ms: r.end_ms });
  }
  return { session_id: doc.session_id, utterances };
}
