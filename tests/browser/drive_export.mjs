// Drives two headless Chromiums through one turn, then the host ends the session and the
// listener saves its transcript with the Export control. With cfg.privacy the host
// chooses that privacy mode first, and each page reports the badge it shows.
//
//   node tests/browser/drive_export.mjs CONFIG.json   (tests/browser/test_export.py writes the config)
import { readFileSync } from "node:fs";
import { cfg, heardPartner, open, ownSpeechDone, pair, register, result, run, until } from "./pages.mjs";

await run(async () => {
  const [alice, bruno] = [await open(cfg.people[0]), await open(cfg.people[1])];
  await register(alice);
  await register(bruno);
  if (cfg.privacy) await alice.page.selectOption("#privacy", cfg.privacy);
  await pair(alice, bruno);
  result.badges = {};
  for (const p of [alice, bruno]) {
    result.badges[p.name] = await p.page.evaluate(() => document.getElementById("privacy-badge").textContent);
  }
  await alice.page.click("#mic");
  await until(alice, "her own utterance processed", ownSpeechDone);
  await until(bruno, "Alice's translated speech", heardPartner);
  await alice.page.click("#end");
  await bruno.page.waitForSelector("#export-form:not([hidden])");
  await bruno.page.selectOption("#export-format", cfg.format);
  const [download] = await Promise.all([bruno.page.waitForEvent("download"), bruno.page.click("#export")]);
  result.download = {
    filename: download.suggestedFilename(),
    content: readFileSync(await download.path(), "utf8"),
  };
});
