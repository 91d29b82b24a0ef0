// Live captions of everyone. One list item per utterance, in the order they
// began, labelled with the speaker's name: a partial transcript (or
// translation) replaces the previous partial, a final one is appended and
// stays. A translated partial is drawn lighter, less so as its stability rises
// (--stability in style.css). Own speech gets one translation line per
// language the others hear.
// The others' final translations are also announced to screen readers.
// A final the recogniser was unsure of (Transcription.low_confidence), and its
// translation, are marked doubtful: dotted underline and a tooltip saying why.

import type { Duration } from "@bufbuild/protobuf/wkt";
import {
  type ProcessingEnded,
  type ProcessingStarted,
  Speaker,
  type SpeechAudio,
  type Transcription,
  type Translation,
  type UtteranceLatency,
} from "@dragoman/client";
import { languageName } from "./languages";

interface Final {
  text: string;
  /** Why it is doubtful (its tooltip), "" when it is not. */
  doubt: string;
}

interface Line {
  finals: Final[];
  partial: string;
  /** Stability of the partial (Translation.stability), 0 for transcripts. */
  stability: number;
  el: HTMLParagraphElement;
}

interface Utterance {
  id: string;
  speaker: Speaker;
  speakerId: string;
  speakerName: string;
  el: HTMLLIElement;
  who: HTMLParagraphElement;
  transcript: Line;
  /** By target language, in the order they came. */
  translations: Map<string, Line>;
  latency: HTMLParagraphElement;
  latencyMs: number | undefined;
  audioChunks: number;
  /** Highest SpeechAudio.piece_index heard: 0 when spoken whole. */
  pieces: number;
  done: boolean;
  translationPartials: { text: string; stability: number }[];
  /** `doubt()` of its final transcript, "" when sure. */
  doubt: string;
}

/** What a test or a debugger can read back. */
export interface UtteranceSnapshot {
  id: string;
  speaker: "self" | "partner";
  speakerId: string;
  speakerName: string;
  transcript: string;
  transcriptPartial: string;
  /** Every final translation, joined (one language, for the others' speech). */
  translation: string;
  /** Final translation by target language. */
  translations: Record<string, string>;
  /** The partial translation shown now (one language, for the others' speech), "" when none. */
  translationPartial: string;
  /** Every translated partial shown, in order, with its stability (one language, for the others' speech). */
  translationPartials: { text: string; stability: number }[];
  latencyMs: number | undefined;
  latencyText: string;
  audioChunks: number;
  /** Pieces its speech came in (simultaneous mode), 0 when spoken whole. */
  pieces: number;
  /** ProcessingEnded came: nothing more will arrive for it (an utterance that heard no words ends with no latency). */
  done: boolean;
  /** Its final transcript is marked doubtful (the recogniser was unsure). */
  doubtful: boolean;
}

/** How many colours style.css has for telling the others apart (.utterance[data-colour]). */
const SPEAKER_COLOURS = 4;

/** The tooltip of a final transcript the recogniser was unsure of, "" for any other. */
export function doubt(t: Transcription): string {
  if (!t.isFinal || !t.lowConfidence) return "";
  return `the recogniser was unsure (confidence ${Math.round(t.confidence * 100)}%)`;
}

export function durationMs(d: Duration | undefined): number {
  return d ? Number(d.seconds) * 1000 + Math.round(d.nanos / 1e6) : 0;
}

export function formatLatency(l: UtteranceLatency): string {
  const ms = (d: Duration | undefined) => `${durationMs(d)} ms`;
  return `${(durationMs(l.total) / 1000).toFixed(2)} s from end of speech to translated audio ` +
    `(end of speech ${ms(l.endpointing)} · recognition ${ms(l.recognition)} · translation ` +
    `${ms(l.translation)} · first audio ${ms(l.synthesisFirstChunk)} · delivery ${ms(l.delivery)})`;
}

/** Who said an utterance, as the events about it name them. */
interface SpeakerOf {
  speaker: Speaker;
  utteranceId: string;
  speakerParticipantId: string;
  speakerDisplayName: string;
}

function texts(line: Line): string {
  return line.finals.map((f) => f.text).join(" ");
}

export class Captions {
  /** The name for others' speech when the server names no speaker (a two-party server). */
  partnerName = "Partner";
  partnerLanguage = "";
  private readonly utterances = new Map<string, Utterance>();
  /** Stable colour slots for speakers, in the order they first spoke. */
  private readonly speakers = new Map<string, number>();

  constructor(
    private readonly list: HTMLOListElement,
    private readonly announcer: HTMLElement,
  ) {}

  /** Someone started speaking: their card appears at once, with a placeholder. */
  started(p: ProcessingStarted): void {
    const u = this.utterance(p);
    if (!u.transcript.finals.length && !u.transcript.partial) this.update(u.transcript, "…", false, "");
  }

  transcription(t: Transcription): void {
    const u = this.utterance(t);
    // speech translated straight into English (no text route from this language): say so
    if (t.translatedToEnglish) u.transcript.el.title = "Translated into English from speech";
    if (t.isFinal) u.doubt = doubt(t);
    this.update(u.transcript, t.text, t.isFinal, t.translatedToEnglish ? "en" : t.languageCode, u.doubt);
  }

  translation(t: Translation): void {
    const u = this.utterance(t);
    let line = u.translations.get(t.targetLanguageCode);
    if (!line) {
      line = this.line("translation");
      // own speech may be translated into several languages: say which is which
      if (u.speaker === Speaker.SELF) line.el.dataset.label = languageName(t.targetLanguageCode);
      u.translations.set(t.targetLanguageCode, line);
      u.latency.before(line.el);
    }
    if (!t.isFinal) {
      // a partial that lost the race with the final would bring back words the final replaced;
      // an empty one (a word or two that translate to nothing) would blank the one before
      if (u.done || line.finals.length || !t.text.trim()) return;
      line.stability = t.stability;
      u.translationPartials.push({ text: t.text, stability: t.stability });
    }
    // a translation is no surer than the transcript it translates
    this.update(line, t.text, t.isFinal, t.targetLanguageCode, u.doubt && `translated from speech ${u.doubt}`);
    if (t.isFinal && t.speaker !== Speaker.SELF) {
      this.announcer.textContent = `${u.speakerName}: ${t.text}`;
    }
  }

  audio(a: SpeechAudio): void {
    const u = this.utterances.get(a.utteranceId);
    if (u) {
      u.audioChunks++;
      u.pieces = Math.max(u.pieces, a.pieceIndex);
      u.el.classList.add("spoken");
    }
  }

  ended(e: ProcessingEnded): void {
    const u = this.utterance(e);
    u.el.classList.add("done");
    u.done = true;
    if (u.transcript.partial === "…") this.update(u.transcript, "", false, "");
    const translated = [...u.translations.values()].some((l) => l.finals.length);
    u.el.hidden = !u.transcript.finals.length && !translated; // nothing was said
    if (e.latency) {
      u.latencyMs = durationMs(e.latency.total);
      u.latency.textContent = formatLatency(e.latency);
      u.latency.hidden = false;
    }
  }

  snapshot(): UtteranceSnapshot[] {
    return [...this.utterances.values()].map((u) => ({
      id: u.id,
      speaker: u.speaker === Speaker.SELF ? "self" : "partner",
      speakerId: u.speakerId,
      speakerName: u.speakerName,
      transcript: texts(u.transcript),
      transcriptPartial: u.transcript.partial === "…" ? "" : u.transcript.partial,
      translation: [...u.translations.values()].map(texts).filter(Boolean).join(" "),
      translations: Object.fromEntries([...u.translations].map(([lang, l]) => [lang, texts(l)])),
      translationPartial: [...u.translations.values()].map((l) => l.partial).filter(Boolean).join(" "),
      translationPartials: u.translationPartials,
      latencyMs: u.latencyMs,
      latencyText: u.latency.textContent ?? "",
      audioChunks: u.audioChunks,
      pieces: u.pieces,
      done: u.done,
      doubtful: u.transcript.finals.some((f) => f.doubt),
    }));
  }

  private utterance(about: SpeakerOf): Utterance {
    let u = this.utterances.get(about.utteranceId);
    if (u) {
      // an earlier event may have come without the speaker's name
      if (about.speakerDisplayName && !u.speakerName) this.name(u, about);
      return u;
    }
    const el = document.createElement("li");
    const self = about.speaker === Speaker.SELF;
    el.className = `utterance ${self ? "self" : "partner"}`;
    el.dataset.utterance = about.utteranceId;
    const who = document.createElement("p");
    who.className = "who";
    const latency = document.createElement("p");
    latency.className = "latency";
    latency.hidden = true;
    u = { id: about.utteranceId, speaker: about.speaker, speakerId: "", speakerName: "", el, who,
      transcript: this.line("transcript"), translations: new Map(), latency, latencyMs: undefined,
      audioChunks: 0, pieces: 0, done: false, translationPartials: [], doubt: "" };
    this.name(u, about);
    el.append(who, u.transcript.el, latency);
    this.list.append(el);
    this.utterances.set(about.utteranceId, u);
    el.scrollIntoView?.({ block: "nearest" });
    return u;
  }

  /** Labels the utterance with its speaker: "You", else the name the server gives. */
  private name(u: Utterance, about: SpeakerOf): void {
    const self = about.speaker === Speaker.SELF;
    u.speakerId = about.speakerParticipantId;
    u.speakerName = about.speakerDisplayName || (self ? "" : this.partnerName);
    u.who.textContent = self ? "You" : u.speakerName;
    if (u.speakerId) u.el.dataset.speaker = u.speakerId;
    if (!self && u.speakerId) {
      if (!this.speakers.has(u.speakerId)) this.speakers.set(u.speakerId, this.speakers.size % SPEAKER_COLOURS);
      u.el.dataset.colour = String(this.speakers.get(u.speakerId));
    }
  }

  private line(cls: string): Line {
    const p = document.createElement("p");
    p.className = cls;
    return { finals: [], partial: "", stability: 0, el: p };
  }

  private update(line: Line, text: string, isFinal: boolean, lang: string, doubt = ""): void {
    if (isFinal) {
      if (text.trim()) line.finals.push({ text: text.trim(), doubt });
      line.partial = "";
    } else {
      line.partial = text;
    }
    if (lang) line.el.lang = lang;
    const finals = document.createElement("span");
    finals.append(...line.finals.flatMap((f, i) => {
      const span = document.createElement("span");
      span.textContent = f.text;
      if (f.doubt) {
        span.className = "doubtful";
        span.title = f.doubt;
      }
      return i ? [" ", span] : [span];
    }));
    const partial = document.createElement("span");
    partial.className = "partial";
    partial.textContent = line.partial && line.finals.length ? ` ${line.partial}` : line.partial;
    if (line.partial) partial.style.setProperty("--stability", String(line.stability));
    line.el.replaceChildren(finals, partial);
  }
}
