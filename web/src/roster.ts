// Who is in the session. Each RosterChanged carries the whole roster, so the
// page replaces what it shows; before the first one the roster comes from the
// Session of CreateSession/JoinSession, and a two-party server that sends none
// keeps it up to date through SessionPaired and PartnerConnected/Disconnected.

import { RosterChange, type RosterChanged } from "@dragoman/client";
import { type Participant, ParticipantState } from "@dragoman/client";
import { languageName } from "./languages";

export interface Person {
  id: string;
  name: string;
  language: string;
  connected: boolean;
  host: boolean;
  /** The person using this page. */
  self: boolean;
}

export interface RosterState {
  people: Person[];
  locked: boolean;
  /** Most participants the session takes; 0 when unknown. */
  maxParticipants: number;
  /** True once a RosterChanged came: the roster is the server's word, not the join reply's. */
  fromEvents: boolean;
}

export const EMPTY: RosterState = { people: [], locked: false, maxParticipants: 0, fromEvents: false };

/** The roster as the create or join reply has it: those still in the session. */
export function fromSession(
  participants: Participant[], locked: boolean, maxParticipants: number, selfId: string,
): RosterState {
  const inSession = participants.filter((p) =>
    p.state === ParticipantState.JOINED || p.state === ParticipantState.UNSPECIFIED);
  // a server older than hosts lists the creator first and marks nobody
  const marked = participants.some((p) => p.host);
  return {
    people: inSession.map((p) => ({
      id: p.userId, name: p.displayName || "Someone", language: p.languageCode,
      connected: p.connected, host: marked ? p.host : p === participants[0], self: p.userId === selfId,
    })),
    locked, maxParticipants, fromEvents: false,
  };
}

/** A two-party server's SessionPaired: the partner joins the roster, if not in it yet. */
export function withPartner(state: RosterState, id: string, name: string, language: string): RosterState {
  if (state.people.some((p) => p.id === id)) return state;
  const partner = { id, name: name || "Partner", language, connected: true, host: !isHost(state), self: false };
  return { ...state, people: [...state.people, partner] };
}

/** A two-party server's PartnerConnected/Disconnected, or this page's own stream going up or down. */
export function withConnected(state: RosterState, id: string, connected: boolean): RosterState {
  return { ...state, people: state.people.map((p) => (p.id === id ? { ...p, connected } : p)) };
}

/** The roster after `event`. */
export function fromEvent(event: RosterChanged, before: RosterState, selfId: string): RosterState {
  return {
    people: event.roster.map((e) => ({
      id: e.participantId, name: e.displayName || "Someone", language: e.languageCode,
      connected: e.connected, host: e.host, self: e.participantId === selfId,
    })),
    locked: event.locked, maxParticipants: before.maxParticipants, fromEvents: true,
  };
}

/** Whether the person using the page is the host. */
export function isHost(state: RosterState): boolean {
  return state.people.some((p) => p.self && p.host);
}

export function displayName(state: RosterState, id: string): string | undefined {
  return state.people.find((p) => p.id === id)?.name;
}

/** What to tell people about `event`, or "" when nothing worth saying happened (e.g. their own
 * stream connecting). `before` is the roster before it, which still names those who left. */
export function describeChange(event: RosterChanged, before: RosterState, selfId: string): string {
  const self = event.participantId === selfId;
  const name = self ? "You" : displayName(before, event.participantId)
    ?? event.roster.find((e) => e.participantId === event.participantId)?.displayName ?? "Someone";
  const why = event.reason ? ` (${event.reason})` : "";
  switch (event.change) {
    case RosterChange.JOINED:
      return self ? "" : `${name} joined.`;
    case RosterChange.LEFT:
      return self ? "You left the session." : `${name} left the session.`;
    case RosterChange.REMOVED:
      return self ? "The host removed you from the session." : `${name} was removed by the host.`;
    case RosterChange.DISCONNECTED:
      return self ? "" : `${name} lost the connection${why}.`;
    case RosterChange.CONNECTED:
      return "";
    case RosterChange.LOCKED:
      return "The session is locked: nobody else can join.";
    case RosterChange.UNLOCKED:
      return "The session is unlocked: others can join with the code.";
    default:
      return "";
  }
}

/** Who the page talks with, in a line: "Talking with Bruno (Portuguese)." or with several. */
export function summary(state: RosterState): string {
  const others = state.people.filter((p) => !p.self);
  if (others.length === 0) return "Waiting for others to join…";
  const named = others.map((p) => `${p.name} (${languageName(p.language)})`);
  const list = named.length === 1 ? named[0]
    : `${named.slice(0, -1).join(", ")} and ${named[named.length - 1]}`;
  return `Talking with ${list}.`;
}

export interface RosterActions {
  remove(person: Person): void;
  lock(locked: boolean): void;
}

/** How long a first press of Remove waits for the second that confirms it. */
const CONFIRM_MS = 5000;

/** The roster panel: one list item per person, with the host's buttons. Removing someone
 * cannot be undone (they may not join again), so Remove asks to be pressed twice. */
export class RosterPanel {
  private state: RosterState = EMPTY;
  private speakingId: string | undefined;
  /** Whose Remove was pressed once. */
  private confirming: string | undefined;
  private confirmTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly list: HTMLUListElement,
    private readonly heading: HTMLElement,
    private readonly lockButton: HTMLButtonElement,
    private readonly actions: RosterActions,
  ) {
    lockButton.addEventListener("click", () => actions.lock(lockButton.dataset.locked !== "true"));
  }

  render(state: RosterState): void {
    this.state = state;
    const host = isHost(state);
    const limit = state.maxParticipants ? ` of ${state.maxParticipants}` : "";
    this.heading.textContent = `People (${state.people.length}${limit})${state.locked ? " · locked" : ""}`;
    this.lockButton.hidden = !host;
    this.lockButton.dataset.locked = String(state.locked);
    this.lockButton.textContent = state.locked ? "Unlock session" : "Lock session";
    // a rebuilt list keeps the keyboard where it was
    const active = document.activeElement;
    const focused = active && this.list.contains(active)
      ? active.closest<HTMLElement>("li")?.dataset.participant : undefined;
    this.list.replaceChildren(...state.people.map((p) => this.item(p, host)));
    if (focused) {
      [...this.list.querySelectorAll<HTMLLIElement>("li")].find((li) => li.dataset.participant === focused)
        ?.querySelector("button")?.focus();
    }
  }

  /** Marks whose speech plays now, in place: a focused button keeps its focus. */
  speaking(id: string | undefined): void {
    this.speakingId = id;
    for (const li of this.list.querySelectorAll<HTMLLIElement>("li")) {
      const on = li.dataset.participant === id;
      li.classList.toggle("speaking", on);
      li.querySelector<HTMLElement>(".badge.speaking")!.hidden = !on;
    }
  }

  private item(p: Person, host: boolean): HTMLLIElement {
    const speaking = p.id === this.speakingId;
    const li = document.createElement("li");
    li.className = `person${p.self ? " self" : ""}${p.connected ? " connected" : " away"}${speaking ? " speaking" : ""}`;
    li.dataset.participant = p.id;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = p.self ? `${p.name} (you)` : p.name;
    li.append(name);
    const badge = (cls: string, text: string, shown: boolean) => {
      const b = document.createElement("span");
      b.className = `badge ${cls}`;
      b.textContent = text;
      b.hidden = !shown;
      li.append(" ", b);
    };
    if (p.host) badge("host", "host", true);
    badge("speaking", "speaking", speaking);
    const details = document.createElement("span");
    details.className = "details";
    details.textContent = `${languageName(p.language)} · ${p.connected ? "connected" : "not connected"}`;
    li.append(details);
    if (host && !p.self) li.append(this.removeButton(p));
    return li;
  }

  private removeButton(p: Person): HTMLButtonElement {
    const button = document.createElement("button");
    button.type = "button";
    const confirming = this.confirming === p.id;
    button.className = confirming ? "remove confirm" : "secondary remove";
    button.textContent = confirming ? "Confirm" : "Remove";
    button.setAttribute("aria-label", confirming ? `Confirm: remove ${p.name} for good` : `Remove ${p.name}`);
    button.addEventListener("click", () => {
      clearTimeout(this.confirmTimer);
      if (confirming) {
        this.confirming = undefined;
        this.actions.remove(p);
      } else {
        this.confirming = p.id;
        this.confirmTimer = setTimeout(() => {
          this.confirming = undefined;
          this.render(this.state);
        }, CONFIRM_MS);
      }
      this.render(this.state);
    });
    return button;
  }
}
