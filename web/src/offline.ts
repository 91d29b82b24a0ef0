// What the installed app keeps for when the network is gone: the service worker that serves
// the shell (sw/sw.ts), the past sessions ListSessions last returned, and sign-in held until
// the browser is back online.

import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type Session, SessionStatus } from "@dragoman/client";
import { languageName } from "./languages";

/** One past session as the list shows it; plain JSON, so it survives in localStorage. */
export interface PastSession {
  id: string;
  createdMs: number;
  endedMs: number;
  live: boolean;
  /** The others in it, host first. */
  others: { name: string; language: string }[];
  utterances: number;
}

/** The last list seen, and whose it is. */
export interface PastSessions {
  username: string;
  savedMs: number;
  sessions: PastSession[];
}

/** The part of Storage (localStorage) used here. */
export type KeyValueStore = Pick<Storage, "getItem" | "setItem">;

export const STORAGE_KEY = "dragoman.pastSessions.v1";

export function pastSession(session: Session, selfId: string): PastSession {
  return {
    id: session.sessionId,
    createdMs: session.createTime ? timestampMs(session.createTime) : 0,
    endedMs: session.endTime ? timestampMs(session.endTime) : 0,
    live: session.status === SessionStatus.ACTIVE || session.status === SessionStatus.WAITING,
    others: session.participants.filter((p) => p.userId !== selfId)
      .map((p) => ({ name: p.displayName, language: p.languageCode })),
    utterances: session.metrics?.utteranceCount ?? 0,
  };
}

/** Keeps `sessions` (newest first) as `username`'s list, replacing any earlier one. */
export function savePastSessions(store: KeyValueStore, username: string, selfId: string, sessions: Session[],
  nowMs = Date.now()): PastSessions {
  const saved = { username, savedMs: nowMs, sessions: sessions.map((s) => pastSession(s, selfId)) };
  try {
    store.setItem(STORAGE_KEY, JSON.stringify(saved));
  } catch (e) {
    console.warn(`past sessions not kept: ${String(e)}`); // storage full or disabled: show them anyway
  }
  return saved;
}

/** The last list kept, or undefined when there is none or it is not one (an older format). */
export function loadPastSessions(store: KeyValueStore): PastSessions | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(store.getItem(STORAGE_KEY) ?? "null");
  } catch {
    return undefined;
  }
  const kept = parsed as PastSessions | null;
  if (!kept || typeof kept.username !== "string" || !Array.isArray(kept.sessions)) return undefined;
  return kept;
}

const when = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** One line: when, with whom (in which language), how much was said. */
export function describePastSession(s: PastSession): string {
  const start = s.createdMs ? when.format(s.createdMs) : "Unknown date";
  const others = s.others.length
    ? `with ${s.others.map((o) => `${o.name} (${languageName(o.language)})`).join(", ")}`
    : "nobody joined";
  const minutes = s.endedMs > s.createdMs && s.createdMs ? Math.max(1, Math.round((s.endedMs - s.createdMs) / 60_000)) : 0;
  const size = s.live ? "still open" : `${s.utterances} utterance${s.utterances === 1 ? "" : "s"}` +
    (minutes ? `, ${minutes} min` : "");
  return `${start} · ${others} · ${size}`;
}

/** The "Past sessions" panel. */
export class PastSessionsPanel {
  private shown = true;
  private kept: PastSessions | undefined;

  constructor(private readonly section: HTMLElement, private readonly list: HTMLUListElement,
    private readonly note: HTMLElement) {}

  get sessions(): PastSessions | undefined {
    return this.kept;
  }

  render(kept: PastSessions | undefined, fromCache: boolean): void {
    this.kept = kept;
    this.list.replaceChildren(...(kept?.sessions ?? []).map((s) => {
      const item = document.createElement("li");
      item.textContent = describePastSession(s);
      item.dataset.session = s.id;
      return item;
    }));
    this.note.textContent = !kept ? "" : fromCache
      ? `${kept.username}'s sessions, as of ${when.format(kept.savedMs)} (saved on this device).`
      : `${kept.username}'s sessions.`;
    this.update();
  }

  /** Hidden during a conversation, and while there is nothing to list. */
  show(shown: boolean): void {
    this.shown = shown;
    this.update();
  }

  private update(): void {
    this.section.hidden = !this.shown || !this.kept?.sessions.length;
  }
}

const API_KEY = "dragoman.apiBaseUrl";

/** Keeps config.json's API address for a page opened offline (config.json belongs to the
 * deployment, not the build, so the service worker does not hold it); returns it. */
export function keepApiBaseUrl(store: KeyValueStore, url: string): string {
  try {
    store.setItem(API_KEY, url);
  } catch {
    // storage disabled: offline the page falls back to its own origin
  }
  return url;
}

export function keptApiBaseUrl(store: KeyValueStore): string | undefined {
  return store.getItem(API_KEY) ?? undefined;
}

/** Resolves when the browser says it is online (at once when it already is). */
export function whenOnline(): Promise<void> {
  if (navigator.onLine) return Promise.resolve();
  return new Promise((resolve) => window.addEventListener("online", () => resolve(), { once: true }));
}

/** Shows `banner` while the browser is offline. */
export function watchConnectivity(banner: HTMLElement): void {
  const update = () => (banner.hidden = navigator.onLine);
  window.addEventListener("online", update);
  window.addEventListener("offline", update);
  update();
}

/** Installs sw.js (served next to index.html); resolves with whether a worker controls the page. */
export async function registerServiceWorker(): Promise<boolean> {
  // service workers need a secure context (https, or http on localhost/127.0.0.1)
  if (!("serviceWorker" in navigator)) return false;
  try {
    await navigator.serviceWorker.register(new URL("sw.js", document.baseURI), { scope: "./" });
  } catch (e) {
    console.warn(`the app will not open offline: ${String(e)}`);
    return false;
  }
  return navigator.serviceWorker.controller !== null;
}
