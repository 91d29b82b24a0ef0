// Participant-keyed sessions (docs/privacy.md): the caller's history is sealed with a key it
// sends on every stream (ConverseOptions.historyKey); the server keeps no key, so the export
// comes back sealed and is opened here with WebCrypto (browsers and Node.js alike).

const KEY_BYTES = 32;
const NONCE_BYTES = 12;

/** A new history key (32 random bytes, AES-256). Keep it: every stream of the session needs it. */
export function newHistoryKey(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(KEY_BYTES));
}

/** One utterance of a participant's own copy, as session_svc sealed it. */
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

interface SealedRecord {
  utterance_id: string;
  start_ms: number | null;
  end_ms: number | null;
  aad: string;
  sealed: string;
}

/** The opened file: the export's fields, with `records` replaced by `utterances`. */
export interface OpenedTranscript {
  session_id: string;
  utterances: OpenedUtterance[];
  [more: string]: unknown;
}

/**
 * A participant-keyed session's export (ExportTranscript's `content`) opened with the key the
 * caller sent as its history key, like dragoman.client.open_sealed_transcript in Python. Each
 * record is nonce (12 bytes) || AES-256-GCM ciphertext || tag; rejects (OperationError) when
 * `key` is not the one it was sealed with.
 */
export async function openSealedTranscript(content: Uint8Array, key: Uint8Array): Promise<OpenedTranscript> {
  const { records, ...doc } = JSON.parse(new TextDecoder().decode(content)) as
    { session_id: string; records: SealedRecord[]; [more: string]: unknown };
  const aes = await crypto.subtle.importKey("raw", key as BufferSource, "AES-GCM", false, ["decrypt"]);
  const utterances: OpenedUtterance[] = [];
  for (const r of records) {
    const blob = Uint8Array.from(atob(r.sealed), (c) => c.charCodeAt(0));
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: blob.subarray(0, NONCE_BYTES) as BufferSource, additionalData: new TextEncoder().encode(r.aad) },
      aes, blob.subarray(NONCE_BYTES) as BufferSource);
    utterances.push({ ...JSON.parse(new TextDecoder().decode(plain)), start_ms: r.start_ms, end_ms: r.end_ms });
  }
  return { ...doc, utterances };
}
