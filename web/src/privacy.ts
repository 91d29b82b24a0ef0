// Privacy modes (docs/privacy.md): the choice on create, the badge every participant
// sees, and, for participant-keyed sessions, this browser's key (the SDK opens the sealed
// transcript with it). The server never keeps the key: it lives here.

import { newHistoryKey, PrivacyMode } from "@dragoman/client";

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
  const key = newHistoryKey();
  storage.setItem(storageKey(sessionId), toBase64(key));
  return key;
}
