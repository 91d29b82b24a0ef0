// Recording with consent (RecordingService): in a conversation, the Record request, the
// consent prompt every other participant answers, the "Recording" indicator and the Stop
// button; on the start page, the user's recordings, played back (translated speech as Ogg
// Opus in <audio>, and the transcript) and saved. Nothing is kept unless everyone agreed,
// and anyone may stop it at once; the server enforces both, the page only shows them.

import type { Client } from "@connectrpc/connect";
import { toJson } from "@bufbuild/protobuf";
import { type Duration, type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import {
  type RecordedUtterance, RecordedUtteranceSchema, type Recording, RecordingChange, type RecordingChanged,
  RecordingConsentAnswer, RecordingSchema, type RecordingService, RecordingState,
} from "@dragoman/client";
import { languageName } from "./languages";

export type RecordingClient = Client<typeof RecordingService>;

/** What the page's own participant should be offered about the session's recording. */
export interface Offer {
  /** "Record" may be pressed: no recording is waiting for consent or running. */
  canRequest: boolean;
  /** The consent prompt (Agree / Decline) is up: asked, and not answered yet. */
  asked: boolean;
  /** The indicator: what is happening, "" for nothing. */
  indicator: "" | "awaiting" | "recording";
  /** "Stop recording" (withdraw): the recording runs, or waits with this user's consent. */
  canStop: boolean;
}

export function answerOf(rec: Recording | undefined, selfId: string): RecordingConsentAnswer {
  return rec?.consents.find((c) => c.participantId === selfId)?.answer ?? RecordingConsentAnswer.UNSPECIFIED;
}

/** How far a recording has gone: its state, then how many answered. */
function progress(rec: Recording): number {
  const rank = rec.state === RecordingState.AWAITING_CONSENT ? 1 : rec.state === RecordingState.RECORDING ? 2 : 3;
  return rank * 1000 + rec.consents.filter((c) => c.answer !== RecordingConsentAnswer.PENDING).length;
}

/** Whether `rec` is an older view of the same recording as `shown`. */
export function isStaler(rec: Recording, shown: Recording): boolean {
  return rec.recordingId === shown.recordingId && progress(rec) < progress(shown);
}

export function offer(rec: Recording | undefined, selfId: string): Offer {
  const answer = answerOf(rec, selfId);
  switch (rec?.state) {
    case RecordingState.AWAITING_CONSENT:
      return { canRequest: false, asked: answer === RecordingConsentAnswer.PENDING, indicator: "awaiting",
        canStop: answer === RecordingConsentAnswer.GRANTED };
    case RecordingState.RECORDING:
      return { canRequest: false, asked: false, indicator: "recording", canStop: true };
    default:
      return { canRequest: true, asked: false, indicator: "", canStop: false };
  }
}

/** Someone's name as the recording's consents have it; "You" for the page's own user. */
export function nameIn(rec: Recording | undefined, id: string, selfId: string): string {
  if (id === selfId) return "You";
  return rec?.consents.find((c) => c.participantId === id)?.displayName || "Someone";
}

/** What to tell everyone about a change, in a sentence. */
export function describeChange(event: RecordingChanged, selfId: string): string {
  const rec = event.recording;
  const who = nameIn(rec, event.participantId, selfId);
  const self = event.participantId === selfId;
  switch (event.change) {
    case RecordingChange.REQUESTED:
      return self ? "You asked everyone to agree to recording this conversation."
        : `${who} asks to record this conversation. Nothing is recorded unless everyone agrees.`;
    case RecordingChange.CONSENTED: {
      const waiting = rec?.consents.filter((c) => c.answer === RecordingConsentAnswer.PENDING).length ?? 0;
      return `${who} agreed to recording; waiting for ${waiting} more.`;
    }
    case RecordingChange.DECLINED:
      return `${who} declined recording: nothing is recorded.`;
    case RecordingChange.STARTED:
      return "Everyone agreed: this conversation is being recorded.";
    case RecordingChange.WITHDRAWN:
      return `${who} stopped the recording: nothing said from now on is kept.`;
    case RecordingChange.STOPPED:
      return `The recording stopped${event.reason ? ` (${event.reason})` : ""}.`;
    default:
      return "";
  }
}

const STATE_LABEL: Record<RecordingState, string> = {
  [RecordingState.UNSPECIFIED]: "Unknown",
  [RecordingState.AWAITING_CONSENT]: "Waiting for consent",
  [RecordingState.RECORDING]: "Recording",
  [RecordingState.STOPPED]: "Recorded",
  [RecordingState.DECLINED]: "Declined: nothing recorded",
};

export function stateLabel(state: RecordingState): string {
  return STATE_LABEL[state] ?? "Unknown";
}

const when = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function date(t: Timestamp | undefined): Date | undefined {
  return t ? timestampDate(t) : undefined;
}

export function seconds(d: Duration | undefined): number {
  return d ? Number(d.seconds) + d.nanos / 1e9 : 0;
}

/** How long until a recording is deleted, in words: "expires in 30 days", "expires today". */
export function expiry(expire: Date | undefined, nowMs: number): string {
  if (!expire) return "";
  const days = Math.floor((expire.getTime() - nowMs) / 86_400_000);
  if (days < 1) return "expires today";
  return `expires in ${days} day${days === 1 ? "" : "s"} (${expire.toISOString().slice(0, 10)})`;
}

/** One line about a recording in the list. */
export function describeRecording(rec: Recording, nowMs: number): string {
  const start = date(rec.requestTime);
  const parts = [start ? when.format(start) : "", stateLabel(rec.state)];
  if (rec.state !== RecordingState.DECLINED) {
    parts.push(`${rec.utteranceCount} utterance${rec.utteranceCount === 1 ? "" : "s"}`);
    const s = Math.round(seconds(rec.duration));
    if (s) parts.push(`${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`);
  }
  parts.push(expiry(date(rec.expireTime), nowMs));
  return parts.filter(Boolean).join(" · ");
}

/** The file a recording is saved as: everything DownloadRecording gave, as JSON (the audio
 * base64 Ogg Opus, which any player opens once decoded). */
export function recordingFile(rec: Recording, utterances: RecordedUtterance[]): { name: string; json: string } {
  const start = date(rec.startTime ?? rec.requestTime)?.toISOString().slice(0, 16).replace(":", "") ?? "";
  return {
    name: `dragoman-recording-${start || rec.recordingId}.json`,
    json: JSON.stringify({
      recording: toJson(RecordingSchema, rec),
      utterances: utterances.map((u) => toJson(RecordedUtteranceSchema, u)),
    }, null, 1),
  };
}

export interface RecordingControlsUi {
  box: HTMLElement;
  request: HTMLButtonElement;
  stop: HTMLButtonElement;
  indicator: HTMLElement;
  prompt: HTMLElement;
  question: HTMLElement;
  agree: HTMLButtonElement;
  decline: HTMLButtonElement;
}

export interface RecordingHooks {
  say(message: string): void;
  fail(message: string): void;
  /** The page's own user id and the live session's id. */
  selfId(): string;
  sessionId(): string;
}

/** What tests read (window.dragomanDebug().recording). */
export interface RecordingDebug {
  recordingId: string;
  state: string;
  consents: { name: string; answer: string }[];
  offer: Offer;
  /** Whether a list came back from the server yet, and what it held. */
  listed: boolean;
  recordings: { id: string; state: string; utterances: number; sizeBytes: number; line: string }[];
  opened: OpenedDebug | undefined;
}

export interface OpenedDebug {
  recordingId: string;
  utterances: { speaker: string; language: string; text: string; translations: string[]; speech: string[] }[];
}

/** The conversation's recording controls, driven by RecordingChanged events. */
export class RecordingControls {
  private current: Recording | undefined;
  private live = false;
  private recordable = false;

  constructor(
    private readonly client: RecordingClient,
    private readonly ui: RecordingControlsUi,
    private readonly hooks: RecordingHooks,
  ) {
    ui.request.addEventListener("click", () => void this.act(() => this.requestRecording()));
    ui.agree.addEventListener("click", () => void this.act(() => this.answer(true)));
    ui.decline.addEventListener("click", () => void this.act(() => this.answer(false)));
    ui.stop.addEventListener("click", () => void this.act(() => this.withdraw()));
  }

  get recording(): Recording | undefined {
    return this.current;
  }

  /** A new conversation: nothing asked yet. Only a PRIVACY_MODE_STANDARD session can be
   * recorded (the server refuses others), so only there is Record offered. */
  reset(recordable: boolean): void {
    this.current = undefined;
    this.live = true;
    this.recordable = recordable;
    this.render();
  }

  /** The conversation ended: the server stopped any recording; nothing more to press. */
  ended(): void {
    this.live = false;
    this.render();
  }

  changed(event: RecordingChanged): void {
    if (event.recording) this.show(event.recording);
    const message = describeChange(event, this.hooks.selfId());
    if (message) this.hooks.say(message);
  }

  debug(): Pick<RecordingDebug, "recordingId" | "state" | "consents" | "offer"> {
    const rec = this.current;
    return {
      recordingId: rec?.recordingId ?? "",
      state: rec ? RecordingState[rec.state] : "",
      consents: (rec?.consents ?? []).map((c) => ({ name: c.displayName, answer: RecordingConsentAnswer[c.answer] })),
      offer: offer(rec, this.hooks.selfId()),
    };
  }

  /** Shows `rec`, unless what is shown is a later state of it: a call's reply may arrive after
   * the events that followed it. */
  private show(rec: Recording): void {
    if (!this.current || !isStaler(rec, this.current)) this.current = rec;
    this.render();
  }

  private render(): void {
    const { ui } = this;
    const rec = this.current;
    const o = offer(rec, this.hooks.selfId());
    ui.box.hidden = !this.live || !this.recordable;
    ui.request.hidden = !o.canRequest;
    ui.request.disabled = !this.live;
    ui.stop.hidden = !o.canStop || !this.live;
    ui.stop.textContent = o.indicator === "recording" ? "Stop recording" : "Cancel recording";
    ui.indicator.hidden = o.indicator === "" || !this.live;
    ui.indicator.className = `badge recording-${o.indicator}`;
    ui.indicator.textContent = o.indicator === "recording" ? "● Recording"
      : `Recording asked: ${rec?.consents.filter((c) => c.answer === RecordingConsentAnswer.GRANTED).length ?? 0}` +
        ` of ${rec?.consents.length ?? 0} agreed`;
    const wasAsked = !ui.prompt.hidden;
    ui.prompt.hidden = !o.asked || !this.live;
    if (o.asked && rec) {
      const who = nameIn(rec, rec.requestedByParticipantId, this.hooks.selfId());
      const what = rec.translatedSpeech ? "the transcript, translations and translated speech" : "the transcript and translations";
      ui.question.textContent = `${who} asks to record this conversation (${what}). ` +
        "It is kept only if everyone agrees, and anyone can stop it.";
      if (!wasAsked) ui.agree.focus();
    }
  }

  private async requestRecording(): Promise<void> {
    const reply = await this.client.requestRecording({ sessionId: this.hooks.sessionId(), translatedSpeech: true });
    if (reply.recording) this.show(reply.recording);
  }

  private async answer(consent: boolean): Promise<void> {
    const rec = this.current;
    if (!rec) return;
    const reply = await this.client.answerRecordingConsent({ recordingId: rec.recordingId, consent });
    if (reply.recording) this.show(reply.recording);
  }

  private async withdraw(): Promise<void> {
    const rec = this.current;
    if (!rec) return;
    const reply = await this.client.withdrawRecordingConsent({ recordingId: rec.recordingId });
    if (reply.recording) this.show(reply.recording);
  }

  private async act(action: () => Promise<void>): Promise<void> {
    const buttons = [this.ui.request, this.ui.agree, this.ui.decline, this.ui.stop];
    buttons.forEach((b) => (b.disabled = true));
    try {
      await action();
    } catch (e) {
      this.hooks.fail(`Recording: ${describe(e)}`);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
      this.render();
    }
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? (("rawMessage" in e && typeof e.rawMessage === "string" && e.rawMessage) || e.message)
    : String(e);
}

export interface RecordingsPanelUi {
  section: HTMLElement;
  list: HTMLUListElement;
  view: HTMLElement;
  viewTitle: HTMLElement;
  utterances: HTMLOListElement;
  download: HTMLButtonElement;
}

/** The Recordings view: the user's recordings (ListRecordings; the server lists only those of
 * sessions they took part in), one opened for playback and saving. */
export class RecordingsPanel {
  private recordings: Recording[] = [];
  private listed = false;
  private shown = false;
  private opened: { rec: Recording; utterances: RecordedUtterance[] } | undefined;
  private urls: string[] = [];

  constructor(
    private readonly client: RecordingClient,
    private readonly ui: RecordingsPanelUi,
    private readonly hooks: Pick<RecordingHooks, "say" | "fail">,
  ) {
    ui.download.addEventListener("click", () => this.save());
  }

  show(shown: boolean): void {
    this.shown = shown;
    this.update();
  }

  async refresh(): Promise<void> {
    try {
      this.recordings = (await this.client.listRecordings({ pageSize: 20 }, { timeoutMs: 10_000 })).recordings;
    } catch (e) {
      console.warn(`recordings not listed: ${describe(e)}`);
      return;
    }
    this.listed = true;
    const now = Date.now();
    this.ui.list.replaceChildren(...this.recordings.map((rec) => this.item(rec, now)));
    this.update();
  }

  debug(): Pick<RecordingDebug, "listed" | "recordings" | "opened"> {
    const now = Date.now();
    return {
      listed: this.listed,
      recordings: this.recordings.map((r) => ({
        id: r.recordingId, state: RecordingState[r.state], utterances: r.utteranceCount,
        sizeBytes: Number(r.sizeBytes), line: describeRecording(r, now),
      })),
      opened: this.opened && {
        recordingId: this.opened.rec.recordingId,
        utterances: this.opened.utterances.map((u) => ({
          speaker: u.speakerDisplayName, language: u.languageCode, text: u.text,
          translations: u.translations.map((t) => t.text), speech: u.speech.map((s) => s.languageCode),
        })),
      },
    };
  }

  private update(): void {
    this.ui.section.hidden = !this.shown || this.recordings.length === 0;
  }

  private item(rec: Recording, now: number): HTMLLIElement {
    const li = document.createElement("li");
    li.dataset.recording = rec.recordingId;
    const line = document.createElement("span");
    line.textContent = describeRecording(rec, now);
    li.append(line);
    if (rec.state === RecordingState.STOPPED || rec.state === RecordingState.RECORDING) {
      const open = document.createElement("button");
      open.type = "button";
      open.className = "secondary";
      open.textContent = "Play";
      open.setAttribute("aria-label", `Play the recording of ${line.textContent}`);
      open.addEventListener("click", () => void this.open(rec.recordingId, open));
      li.append(open);
    }
    return li;
  }

  /** Fetches a recording whole (DownloadRecording) and shows it: each utterance's words and
   * its translated speech, which the browser plays as it is (audio/ogg; codecs=opus). */
  private async open(recordingId: string, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    try {
      let rec: Recording | undefined;
      const utterances: RecordedUtterance[] = [];
      for await (const part of this.client.downloadRecording({ recordingId })) {
        if (part.content.case === "recording") rec = part.content.value;
        else if (part.content.case === "utterance") utterances.push(part.content.value);
      }
      if (!rec) throw new Error("the server sent no recording");
      this.render(rec, utterances);
      this.hooks.say(`Recording opened: ${utterances.length} utterance${utterances.length === 1 ? "" : "s"}.`);
    } catch (e) {
      this.hooks.fail(`The recording could not be opened: ${describe(e)}`);
    } finally {
      button.disabled = false;
    }
  }

  private render(rec: Recording, utterances: RecordedUtterance[]): void {
    const { ui } = this;
    this.urls.forEach((u) => URL.revokeObjectURL(u));
    this.urls = [];
    this.opened = { rec, utterances };
    ui.viewTitle.textContent = describeRecording(rec, Date.now());
    ui.utterances.replaceChildren(...utterances.map((u) => {
      const li = document.createElement("li");
      li.className = "recorded";
      li.dataset.utterance = u.utteranceId;
      const who = document.createElement("p");
      who.className = "who";
      const at = Math.round(seconds(u.startOffset));
      who.textContent = `${u.speakerDisplayName || "Someone"} · ${Math.floor(at / 60)}:${String(at % 60).padStart(2, "0")}`;
      const text = document.createElement("p");
      text.className = "transcript";
      text.lang = u.languageCode;
      text.textContent = u.text;
      li.append(who, text);
      for (const t of u.translations) {
        const p = document.createElement("p");
        p.className = "translation";
        p.lang = t.targetLanguageCode;
        p.textContent = `${languageName(t.targetLanguageCode)}: ${t.text}`;
        li.append(p);
      }
      for (const s of u.speech) {
        const url = URL.createObjectURL(new Blob([s.oggOpus as BlobPart], { type: "audio/ogg; codecs=opus" }));
        this.urls.push(url);
        const audio = document.createElement("audio");
        audio.controls = true;
        audio.preload = "metadata";
        audio.src = url;
        audio.dataset.language = s.languageCode;
        audio.setAttribute("aria-label", `${u.speakerDisplayName || "Someone"}, in ${languageName(s.languageCode)}`);
        const label = document.createElement("p");
        label.className = "spoken-in";
        label.textContent = `Spoken in ${languageName(s.languageCode)}`;
        li.append(label, audio);
      }
      return li;
    }));
    // one utterance's speech ended: the next one in the same language follows, as it was heard
    const audios = [...ui.utterances.querySelectorAll("audio")];
    audios.forEach((audio, i) => audio.addEventListener("ended", () => {
      void audios.slice(i + 1).find((next) => next.dataset.language === audio.dataset.language)?.play();
    }));
    ui.download.hidden = false;
    ui.view.hidden = false;
  }

  /** Saves the opened recording as one file (recordingFile). */
  private save(): void {
    if (!this.opened) return;
    const file = recordingFile(this.opened.rec, this.opened.utterances);
    const url = URL.createObjectURL(new Blob([file.json], { type: "application/json" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = file.name;
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 60_000); // the download has started by then
    this.hooks.say(`Recording saved as ${file.name}.`);
  }
}
