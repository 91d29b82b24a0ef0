// Drives two headless Chromiums through one turn in which Alice speaks the wrong language, and
// reads how Bruno's page marks the captions the recogniser was unsure of.
//
//   node tests/browser/drive_doubt.mjs CONFIG.json   (tests/browser/test_doubtful_captions.py writes it)
import { cfg, heardPartner, open, ownSpeechDone, pair, register, result, run, until } from "./pages.mjs";

/** Each doubtful span of the partner's cards: its line, text, tooltip and how it is drawn. */
function doubtfulSpans() {
  return [...document.querySelectorAll("#captions .partner .doubtful")].map((span) => {
    const style = getComputedStyle(span);
    return {
      line: span.closest("li > *").className, text: span.textContent, title: span.title,
      decoration: style.textDecorationLine, decorationStyle: style.textDecorationStyle,
      cursor: style.cursor,
    };
  });
}

await run(async () => {
  const [alice, bruno] = [await open(cfg.people[0]), await open(cfg.people[1])];
  await register(alice);
  await register(bruno);
  await pair(alice, bruno);
  await alice.page.click("#mic");
  await until(alice, "her own utterance processed", ownSpeechDone);
  await until(bruno, "Alice's translated speech", heardPartner);
  result.doubtful = await bruno.page.evaluate(doubtfulSpans);
  // the tooltip is the title: hovering shows it (what a pointer user sees)
  const first = bruno.page.locator("#captions .partner .doubtful").first();
  await first.hover();
  result.hovered = await first.getAttribute("title");
});
