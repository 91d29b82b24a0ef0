// Drives two headless Chromiums through one conversation turn each way.
//
//   node tests/browser/drive.mjs CONFIG.json     (tests/browser/test_browser.py writes the config)
//
// Bruno's page calls the API through the test's cuttable link (control() in pages.mjs).
import {
  cfg, control, heardPartner, open, ownSpeechDone, pair, register, result, run, until,
} from "./pages.mjs";

/** Records each change of the others' translation captions (window.translationsSeen): the final
 * and partial text of the line, and how the partial looked then. */
function watchTranslations() {
  const seen = (window.translationsSeen = []);
  const list = document.getElementById("captions");
  new MutationObserver(() => {
    for (const line of list.querySelectorAll(".partner .translation")) {
      const [final, partial] = line.children;
      if (!partial) continue;
      const style = getComputedStyle(partial);
      const now = { utterance: line.closest("li").dataset.utterance, final: final.textContent,
        partial: partial.textContent, fontStyle: style.fontStyle, opacity: Number(style.opacity) };
      const last = seen.findLast((s) => s.utterance === now.utterance);
      if (!last || last.final !== now.final || last.partial !== now.partial) seen.push(now);
    }
  }).observe(list, { childList: true, subtree: true, characterData: true });
}

await run(async () => {
  const [alice, bruno] = [await open(cfg.people[0]), await open(cfg.people[1])];
  await register(alice);
  await register(bruno);

  await pair(alice, bruno);

  // Bruno's network drops while Alice speaks; he must get her words once back, exactly once.
  await control("cut");
  await alice.page.click("#mic");
  await until(alice, "her own utterance processed", ownSpeechDone);
  await control("restore");
  await until(bruno, "a reconnection", () => window.dragomanDebug().reconnects > 0);
  await until(bruno, "Alice's translated speech", heardPartner);

  // Alice's link is never cut: she sees Bruno's translated partials as they come
  await alice.page.evaluate(watchTranslations);
  await bruno.page.focus("#mic");
  await bruno.page.keyboard.press("Enter"); // keyboard: the microphone button
  await until(bruno, "his own utterance processed", ownSpeechDone);
  await until(alice, "Bruno's translated speech", heardPartner);
  result.aliceSawTranslations = await alice.page.evaluate(() => window.translationsSeen);
  // let the last audio play out before reading the counters
  for (const p of [alice, bruno]) {
    await until(p, "playback", () => window.dragomanDebug().playedSamples > 0);
  }
});
