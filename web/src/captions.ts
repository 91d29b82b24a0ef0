// Live captions of both sides. One list item per utterance, in the order they
// began: a partial transcript (or translation) replaces the previous partial,
// a final one is appended and stays. The partner's final translations are also
// announced to screen readers.

import type { Duration } from "@bufbuild/protobuf/wkt";
import {
  type ProcessingEnded,
  type ProcessingStarted,
  Speaker,
  type SpeechAudio,
  type Transcription,
  type Translation,
  type UtteranceLatency,
} from "./gen/dragoman/v1/conversation_pb";

interface Line {
  finals: string[];
  partial: string;
  el: HTMLParagraphElement;
}

interface Utterance {
  id: string;
  speaker: Speaker;
  el: HTMLLIElement;
  transcript: Line;
  translation: Line;
  latency: HTMLParagraphElement;
  latencyMs: number | undefined;
  audioChunks: number;
  done: boolean;
}

/** What a test or a debugger can read back. */
export interface UtteranceSnapshot {
  id: string;
  speaker: "self" | "partner";
  transcript: string;
  transcriptPartial: string;
  translation: string;
  latencyMs: number | undefined;
  latencyText: string;
  audioChunks: number;
  /** ProcessingEnded came: nothing more will arrive for it (an utterance that heard no words ends with no latency). */
  done: boolean;
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

export class Captions {
  partnerName = "Partner";
  partnerLanguage = "";
  private readonly utterances = new Map<string, Utterance>();

  constructor(
    private readonly list: HTMLOListElement,
    private readonly announcer: HTMLElement,
  ) {}

  /** Someone started speaking: their card appears at once, with a placeholder. */
  started(p: ProcessingStarted): void {
    const u = this.utterance(p.utteranceId, p.speaker);
    if (!u.transcript.finals.length && !u.transcript.partial) this.update(u.transcript, "…", false, "");
  }

  transcription(t: Transcription): void {
    const u = this.utterance(t.utteranceId, t.speaker);
    // speech translated straight into English (no text route from this language): say so
    if (t.translatedToEnglish) u.transcript.el.title = "Translated into English from speech";
    this.update(u.transcript, t.text, t.isFinal, t.translatedToEnglish ? "en" : t.languageCode);
  }

  translation(t: Translation): void {
    const u = this.utterance(t.utteranceId, t.speaker);
    this.update(u.translation, t.text, t.isFinal, t.targetLanguageCode);
    if (t.isFinal && t.speaker === Speaker.PARTNER) {
      this.announcer.textContent = `${this.partnerName}: ${t.text}`;
    }
  }

  audio(a: SpeechAudio): void {
    const u = this.utterances.get(a.utteranceId);
    if (u) {
      u.audioChunks++;
      u.el.classList.add("spoken");
    }
  }

  ended(e: ProcessingEnded): void {
    const u = this.utterance(e.utteranceId, e.speaker);
    u.el.classList.add("done");
    u.done = true;
    if (u.transcript.partial === "…") this.update(u.transcript, "", false, "");
    u.el.hidden = !u.transcript.finals.length && !u.translation.finals.length; // nothing was said
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
      transcript: u.transcript.finals.join(" "),
      transcriptPartial: u.transcript.partial === "…" ? "" : u.transcript.partial,
      translation: u.translation.finals.join(" "),
      latencyMs: u.latencyMs,
      latencyText: u.latency.textContent ?? "",
      audioChunks: u.audioChunks,
      done: u.done,
    }));
  }

  private utterance(id: string, speaker: Speaker): Utterance {
    let u = this.utterances.get(id);
    if (u) return u;
    const el = document.createElement("li");
    const self = speaker === Speaker.SELF;
    el.className = `utterance ${self ? "self" : "partner"}`;
    el.dataset.utterance = id;
    const who = document.createElement("p");
    who.className = "who";
    who.textContent = self ? "You" : this.partnerName;
    const line = (cls: string): Line => {
      const p = document.createElement("p");
      p.className = cls;
      return { finals: [], partial: "", el: p };
    };
    const latency = document.createElement("p");
    latency.className = "latency";
    latency.hidden = true;
    u = { id, speaker, el, transcript: line("transcript"), translation: line("translation"), latency,
      latencyMs: undefined, audioChunks: 0, done: false };
    el.append(who, u.transcript.el, u.translation.el, latency);
    this.list.append(el);
    this.utterances.set(id, u);
    el.scrollIntoView?.({ block: "nearest" });
    return u;
  }

  private update(line: Line, text: string, isFinal: boolean, lang: string): void {
    if (isFinal) {
      if (text.trim()) line.finals.push(text.trim());
      line.partial = "";
    } else {
      line.partial = text;
    }
    if (lang) line.el.lang = lang;
    const finals = document.createElement("span");
    finals.textContent = line.finals.join(" ");
    const partial = document.createElement("span");
    partial.className = "partial";
    partial.textContent = line.partial && line.finals.length ? ` ${line.partial}` : line.partial;
    line.el.replaceChildren(finals, partial);
  }
}
