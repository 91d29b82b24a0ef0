// Drives three headless Chromiums through a session of three: the host creates it for three,
// the others join with the code, each speaks once (the last two at the same time; Bruno's
// network drops while the host speaks) and every page must show and play the others' speech;
// then the host locks the session, one guest leaves and the host removes the other, which ends
// the session.
//
//   node tests/browser/drive_party.mjs CONFIG.json   (tests/browser/test_party.py writes the config)
//
// Writes one JSON line, {"result": ...}: each person's window.dragomanDebug() state at the end and
// after everyone spoke (`afterSpeech`), page width, screenshot and console lines (pages.mjs), and
// `phase`, the step it reached.
import {
  cfg, control, open, ownSpeechDone, people, register, result, run, screenshots, state, until,
} from "./pages.mjs";

/** (runs in the page) Each of `names` was heard in full: every utterance of theirs ended, and
 * those with words came with a translation and audio. */
function heardFrom(names) {
  const s = window.dragomanDebug();
  return names.every((name) => {
    const theirs = s.utterances.filter((u) => u.speaker === "partner" && u.speakerName === name);
    const spoken = theirs.filter((u) => u.transcript);
    const over = (u) => u.latencyMs !== undefined || (u.done && !u.transcript);
    return spoken.length > 0 && theirs.every(over) && spoken.every((u) => u.translation && u.audioChunks > 0);
  });
}

const others = (p) => people.filter((o) => o !== p).map((o) => o.username);

await run(async () => {
  result.phase = "open";
  for (const p of cfg.people) await register(await open(p));
  const [ana, bruno, carla] = people; // Ana hosts

  result.phase = "join";
  await ana.page.selectOption("#size", String(cfg.size));
  await ana.page.click("#create");
  await until(ana, "a code", () => /^[0-9]{6}$/.test(document.getElementById("code").value));
  const code = await ana.page.evaluate(() => document.getElementById("code").value);
  for (const guest of [bruno, carla]) {
    await guest.page.fill("#join-code", code);
    await guest.page.click("#join");
  }
  for (const p of people) {
    await until(p, "a roster of three", () => window.dragomanDebug().roster.people.length === 3
      && window.dragomanDebug().roster.people.every((x) => x.connected));
    await until(p, "the microphone", () => !document.getElementById("mic").disabled);
  }

  result.phase = "speech";
  // Bruno's network drops while Ana speaks; once back he must get her words, exactly once
  await control("cut");
  await ana.page.click("#mic");
  await until(ana, "her own speech processed", ownSpeechDone);
  await control("restore");
  await until(bruno, "a reconnection", () => window.dragomanDebug().reconnects > 0);
  for (const p of [bruno, carla]) await until(p, "the host's speech", heardFrom, [ana.username]);
  // the two guests speak at once: the host hears them one after the other
  await Promise.all([bruno, carla].map((p) => p.page.click("#mic")));
  for (const p of [bruno, carla]) await until(p, "own speech processed", ownSpeechDone);
  for (const p of people) await until(p, "everyone else's speech", heardFrom, others(p));
  for (const p of people) {
    await until(p, "everyone else's speech played", (names) => {
      const played = new Set(window.dragomanDebug().played.map((s) => s.name));
      return names.every((n) => played.has(n));
    }, others(p));
  }
  for (const p of people) {
    const width = await p.page.evaluate(() => document.documentElement.scrollWidth);
    result.people[p.name] = { ...result.people[p.name], pageWidth: width, afterSpeech: await state(p) };
  }

  await screenshots("-talking");

  result.phase = "lock";
  await ana.page.click("#lock");
  for (const p of people) await until(p, "the lock", () => window.dragomanDebug().roster.locked);

  result.phase = "leave";
  await carla.page.click("#leave");
  await until(carla, "her page to end", () => window.dragomanDebug().status === "ended");
  for (const p of [ana, bruno]) {
    await until(p, "a roster of two", () => window.dragomanDebug().roster.people.length === 2);
  }

  result.phase = "remove";
  const entry = ana.page.locator("#roster li", { hasText: bruno.username });
  await entry.getByRole("button", { name: /^remove/i }).click();
  await entry.getByRole("button", { name: /^confirm/i }).click(); // removing is for good: pressed twice
  for (const p of [ana, bruno]) await until(p, "the session's end", () => window.dragomanDebug().status === "ended");
  result.phase = "done";
});
