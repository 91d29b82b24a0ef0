// Drives one headless Chromium through the "My vocabulary" panel: adds cfg.vocabularies with
// the form, then deletes the one named cfg.remove with its Delete button, reading the list
// after each step.
//
//   node tests/browser/drive_vocabulary.mjs CONFIG.json   (tests/browser/test_vocabulary_panel.py)
import { cfg, open, register, result, run, until } from "./pages.mjs";

/** The panel's list: each vocabulary's id, name and summary line. */
function listed() {
  return [...document.querySelectorAll("#vocabulary-list li")].map((li) => ({
    id: li.dataset.vocabularyId ?? "", name: li.querySelector("strong")?.textContent ?? "",
    text: li.textContent,
  }));
}

await run(async () => {
  const ana = await open(cfg.people[0]);
  await register(ana);
  await ana.page.waitForSelector("#vocabularies:not([hidden])");
  await until(ana, "the empty list", () =>
    document.getElementById("vocabulary-list").textContent === "No vocabulary yet.");
  result.steps = [await ana.page.evaluate(listed)];
  for (const v of cfg.vocabularies) {
    await ana.page.fill("#vocabulary-name", v.name);
    await ana.page.fill("#vocabulary-terms", v.terms);
    await ana.page.fill("#vocabulary-keep", v.keep);
    await ana.page.fill("#vocabulary-translations", v.translations);
    await ana.page.selectOption("#vocabulary-source", v.source);
    await ana.page.selectOption("#vocabulary-target", v.target);
    await ana.page.click("#vocabulary-add");
    await until(ana, `${v.name} listed`, (n) =>
      [...document.querySelectorAll("#vocabulary-list strong")].some((s) => s.textContent === n), v.name);
    result.steps.push(await ana.page.evaluate(listed));
    // the form is cleared for the next one
    result.clearedAfterAdd = await ana.page.evaluate(() => document.getElementById("vocabulary-name").value === "");
  }
  await ana.page.getByRole("button", { name: `Delete vocabulary ${cfg.remove}` }).click();
  await until(ana, `${cfg.remove} gone`, (n) =>
    ![...document.querySelectorAll("#vocabulary-list strong")].some((s) => s.textContent === n), cfg.remove);
  result.steps.push(await ana.page.evaluate(listed));
});
