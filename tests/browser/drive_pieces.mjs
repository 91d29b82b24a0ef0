// Drives two headless Chromiums through one long turn in simultaneous mode: Bruno speaks, and
// Alice's page must take his translated speech in pieces and play all of it, once, in order.
//
//   node tests/browser/drive_pieces.mjs CONFIG.json   (tests/browser/test_simultaneous.py writes the config)
import { cfg, heardPartner, open, ownSpeechDone, pair, register, run, until } from "./pages.mjs";

await run(async () => {
  const [alice, bruno] = [await open(cfg.people[0]), await open(cfg.people[1])];
  await register(alice);
  await register(bruno);
  await pair(alice, bruno);
  await bruno.page.click("#mic");
  await until(bruno, "his own utterance processed", ownSpeechDone);
  await until(alice, "Bruno's translated speech", heardPartner);
  await until(alice, "all of it played", () => {
    const s = window.dragomanDebug();
    return s.playedSamples === s.scheduledSamples && !s.nowSpeaking;
  });
});
