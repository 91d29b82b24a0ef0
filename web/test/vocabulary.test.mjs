import assert from "node:assert/strict";
import { test } from "node:test";
import { parseTranslations, splitTerms, summary, vocabularyFrom } from "../src/vocabulary.ts";

test("terms are split on commas and lines, trimmed, empties dropped", () => {
  assert.deepEqual(splitTerms(" Siobhan, Kubernetes ,,\nNginx\n"), ["Siobhan", "Kubernetes", "Nginx"]);
  assert.deepEqual(splitTerms("  "), []);
});

test("translation lines become fixed translations of the chosen pair", () => {
  const [t] = parseTranslations("\n front desk = receção \n", "en", "pt");
  assert.equal(t.source, "front desk");
  assert.equal(t.target, "receção");
  assert.equal(t.sourceLanguageCode, "en");
  assert.equal(t.targetLanguageCode, "pt");
  assert.throws(() => parseTranslations("ok = bem\nno equals sign", "en", "pt"), /line 2/);
});

test("a form becomes a vocabulary, and a vocabulary a summary line", () => {
  const v = vocabularyFrom({
    name: " Work ", terms: "Siobhan, Kubernetes", doNotTranslate: "Dragoman",
    translations: "check-in = registo", source: "en", target: "pt",
  });
  assert.equal(v.displayName, "Work");
  assert.equal(summary(v),
    "recognise: Siobhan, Kubernetes; translate: check-in → registo (en→pt); keep: Dragoman");
  assert.equal(summary(vocabularyFrom({ name: "x", terms: "", doNotTranslate: "", translations: "",
    source: "en", target: "pt" })), "empty");
});
