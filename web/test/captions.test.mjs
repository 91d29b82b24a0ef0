// Which captions are marked doubtful, and what their tooltip says.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Speaker, TranscriptionSchema, TranslationSchema } from "@dragoman/client";
import { Captions, doubt } from "../src/captions.ts";

const transcription = (fields) => create(TranscriptionSchema, {
  utteranceId: "u1", text: "hello", speaker: Speaker.PARTNER, speakerParticipantId: "u-ana",
  speakerDisplayName: "Ana", languageCode: "en", ...fields });
const translation = (fields) => create(TranslationSchema, {
  utteranceId: "u1", text: "olá", speaker: Speaker.PARTNER, speakerParticipantId: "u-ana",
  speakerDisplayName: "Ana", targetLanguageCode: "pt", isFinal: true, ...fields });

/** Just enough of the DOM for Captions: elements with children, text and attributes. */
class Element {
  constructor(tag) {
    Object.assign(this, { tag, children: [], parent: null, text: "", className: "", title: "", lang: "",
      hidden: false, dataset: {}, style: { setProperty() {} } });
    this.classList = { add: (c) => { this.className = `${this.className} ${c}`.trim(); } };
  }
  get textContent() {
    return this.children.length ? this.children.map((c) => (typeof c === "string" ? c : c.textContent)).join("")
      : this.text;
  }
  set textContent(value) { this.children = []; this.text = value; }
  append(...nodes) {
    for (const n of nodes) {
      this.children.push(n);
      if (typeof n !== "string") n.parent = this;
    }
  }
  replaceChildren(...nodes) { this.children = []; this.text = ""; this.append(...nodes); }
  before(node) { this.parent.children.splice(this.parent.children.indexOf(this), 0, node); node.parent = this.parent; }
  findAll(predicate) {
    const own = predicate(this) ? [this] : [];
    return own.concat(...this.children.filter((c) => typeof c !== "string").map((c) => c.findAll(predicate)));
  }
}
globalThis.document = { createElement: (tag) => new Element(tag) };

function captions() {
  const list = new Element("ol");
  return { list, captions: new Captions(list, new Element("div")) };
}

test("a low-confidence final is doubtful, and the tooltip says how sure the recogniser was", () => {
  const said = doubt(transcription({ isFinal: true, confidence: 0.414, lowConfidence: true }));
  assert.equal(said, "the recogniser was unsure (confidence 41%)");
});

test("a sure final, or any partial, is not doubtful", () => {
  assert.equal(doubt(transcription({ isFinal: true, confidence: 0.9, lowConfidence: false })), "");
  // partials are never scored: a flag on one (from a confused server) is not shown
  assert.equal(doubt(transcription({ isFinal: false, confidence: 0, lowConfidence: true })), "");
});

test("the caption of an unsure final and its translation are drawn doubtful, with the tooltip", () => {
  const { list, captions: c } = captions();
  c.transcription(transcription({ text: "hel", isFinal: false }));
  assert.deepEqual(list.findAll((e) => e.className === "doubtful"), []);
  c.transcription(transcription({ isFinal: true, confidence: 0.3, lowConfidence: true }));
  c.translation(translation());
  const doubtful = list.findAll((e) => e.className === "doubtful");
  assert.deepEqual(doubtful.map((e) => [e.textContent, e.title]), [
    ["hello", "the recogniser was unsure (confidence 30%)"],
    ["olá", "translated from speech the recogniser was unsure (confidence 30%)"],
  ]);
  const [snap] = c.snapshot();
  assert.equal(snap.doubtful, true);
  assert.equal(snap.transcript, "hello");
  assert.equal(snap.translation, "olá");
});

test("the caption of a sure final is plain", () => {
  const { list, captions: c } = captions();
  c.transcription(transcription({ isFinal: true, confidence: 0.9 }));
  c.translation(translation());
  assert.deepEqual(list.findAll((e) => e.className === "doubtful" || e.title), []);
  assert.equal(c.snapshot()[0].doubtful, false);
});
