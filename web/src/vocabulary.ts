// The vocabulary panel: the user's custom vocabularies (VocabularyService), listed with a
// Delete button each, and a form that adds one. Parsing the form is DOM-free (tested in
// test/vocabulary.test.mjs); the server checks the limits and names the field it refuses.

import { create } from "@bufbuild/protobuf";
import {
  FixedTranslationSchema,
  type FixedTranslation,
  type Vocabulary,
  VocabularySchema,
} from "@dragoman/client";
import type { DragomanClient } from "@dragoman/client";

/** Comma- or newline-separated words, trimmed, empty ones dropped. */
export function splitTerms(text: string): string[] {
  return text.split(/[,\n]/).map((t) => t.trim()).filter((t) => t !== "");
}

/** "source = target" lines as fixed translations of one pair; a line without "=" is an error
 * naming its line number. */
export function parseTranslations(text: string, source: string, target: string): FixedTranslation[] {
  const out: FixedTranslation[] = [];
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    const at = line.indexOf("=");
    if (at < 0) throw new Error(`Translation line ${i + 1} needs "term = translation".`);
    out.push(create(FixedTranslationSchema, {
      sourceLanguageCode: source, targetLanguageCode: target,
      source: line.slice(0, at).trim(), target: line.slice(at + 1).trim(),
    }));
  });
  return out;
}

export interface VocabularyForm {
  name: string;
  terms: string;
  doNotTranslate: string;
  translations: string;
  source: string;
  target: string;
}

export function vocabularyFrom(form: VocabularyForm): Vocabulary {
  return create(VocabularySchema, {
    displayName: form.name.trim(),
    terms: splitTerms(form.terms),
    doNotTranslate: splitTerms(form.doNotTranslate),
    translations: parseTranslations(form.translations, form.source, form.target),
  });
}

/** One line about a vocabulary, as the list shows it. */
export function summary(v: Vocabulary): string {
  const parts = [
    v.terms.length ? `recognise: ${v.terms.join(", ")}` : "",
    v.translations.length ? `translate: ${v.translations.map(
      (t) => `${t.source} → ${t.target} (${t.sourceLanguageCode}→${t.targetLanguageCode})`).join(", ")}` : "",
    v.doNotTranslate.length ? `keep: ${v.doNotTranslate.join(", ")}` : "",
  ].filter((p) => p !== "");
  return parts.join("; ") || "empty";
}

export interface VocabularyElements {
  list: HTMLUListElement;
  form: HTMLFormElement;
  name: HTMLInputElement;
  terms: HTMLInputElement;
  doNotTranslate: HTMLInputElement;
  translations: HTMLTextAreaElement;
  source: HTMLSelectElement;
  target: HTMLSelectElement;
}

export class VocabularyPanel {
  vocabularies: Vocabulary[] = [];

  constructor(
    private readonly client: DragomanClient["vocabularies"],
    private readonly ui: VocabularyElements,
    private readonly run: (area: HTMLElement, action: () => Promise<void>) => Promise<void>,
  ) {
    ui.form.addEventListener("submit", (e) => {
      e.preventDefault();
      void run(ui.form, () => this.add());
    });
  }

  async load(): Promise<void> {
    this.vocabularies = (await this.client.listVocabularies({})).vocabularies;
    this.render();
  }

  private async add(): Promise<void> {
    const { ui } = this;
    const vocabulary = vocabularyFrom({
      name: ui.name.value, terms: ui.terms.value, doNotTranslate: ui.doNotTranslate.value,
      translations: ui.translations.value, source: ui.source.value, target: ui.target.value,
    });
    await this.client.createVocabulary({ vocabulary });
    ui.form.reset();
    await this.load();
  }

  private async remove(v: Vocabulary): Promise<void> {
    await this.client.deleteVocabulary({ vocabularyId: v.vocabularyId });
    await this.load();
  }

  private render(): void {
    const items = this.vocabularies.map((v) => {
      const li = document.createElement("li");
      li.dataset.vocabularyId = v.vocabularyId;
      const name = document.createElement("strong");
      name.textContent = v.displayName;
      const text = document.createElement("span");
      text.textContent = ` — ${summary(v)} `;
      const del = document.createElement("button");
      del.type = "button";
      del.className = "secondary";
      del.textContent = "Delete";
      del.setAttribute("aria-label", `Delete vocabulary ${v.displayName}`);
      del.addEventListener("click", () => void this.run(li, () => this.remove(v)));
      li.append(name, text, del);
      return li;
    });
    if (items.length === 0) {
      const li = document.createElement("li");
      li.textContent = "No vocabulary yet.";
      items.push(li);
    }
    this.ui.list.replaceChildren(...items);
  }
}
