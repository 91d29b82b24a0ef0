// Drives two headless Chromiums through recording with consent, and a third that was not there.
//
// cfg.mode "consent": the host asks to record, the guest agrees (both see "Recording"), the host
// speaks, the guest stops the recording and then speaks; the host ends the session and both
// open the recording from their Recordings view (each utterance's words and translated speech
// in <audio>); the host saves it. cfg.mode "decline": the guest declines, the host speaks, the
// session ends, and the Recordings view lists the request as declined with nothing kept.
// Either way a third person, who was not in the session, lists no recording.
//
//   node tests/browser/drive_recording.mjs CONFIG.json   (tests/browser/test_recording.py writes it)
//
// Writes one JSON line, {"result": ...}: pages.mjs's, plus what each page showed at each step.
import { readFileSync } from "node:fs";
import {
  cfg, heardPartner, open, ownSpeechDone, pair, register, result, run, screenshots, state, until,
} from "./pages.mjs";

/** (runs in the page) What the recording controls show. */
function controls() {
  const shown = (id) => !document.getElementById(id).hidden;
  return {
    indicator: shown("recording-indicator") ? document.getElementById("recording-indicator").textContent : "",
    prompt: shown("recording-prompt") ? document.getElementById("recording-question").textContent : "",
    record: shown("record"), stop: shown("recording-stop"),
    pageWidth: document.documentElement.scrollWidth,
  };
}

const look = async (p) => ({ ...(await p.page.evaluate(controls)), ...(await state(p)).recording });
const recordingIs = (p, what) => until(p, `the recording ${what}`, (s) => window.dragomanDebug().recording.state === s, what);

/** Waits until `p`'s Recordings view lists `id` in `wanted` state. */
const listed = (p, id, wanted) => until(p, `recording ${id} listed ${wanted}`, ([rid, s]) =>
  window.dragomanDebug().recording.recordings.some((r) => r.id === rid && r.state === s), [id, wanted]);

/** Opens recording `id` in `p`'s Recordings view and waits until every <audio> knows its duration. */
async function play(p, id) {
  await p.page.locator(`#recording-list li[data-recording="${id}"]`).getByRole("button", { name: /^play/i }).click();
  await until(p, "the recording opened", (rid) => window.dragomanDebug().recording.opened?.recordingId === rid, id);
  await until(p, "the speech's durations", () => {
    const audios = [...document.querySelectorAll("#recorded-utterances audio")];
    return audios.length > 0 && audios.every((a) => Number.isFinite(a.duration) && a.duration > 0);
  });
  return p.page.evaluate(() => ({
    audio: [...document.querySelectorAll("#recorded-utterances audio")].map((a) => ({
      language: a.dataset.language, duration: a.duration, type: a.src.startsWith("blob:") ? "blob" : a.src,
    })),
    shown: document.getElementById("recorded-utterances").innerText,
    pageWidth: document.documentElement.scrollWidth,
  }));
}

await run(async () => {
  const [alice, bruno, carla] = [await open(cfg.people[0]), await open(cfg.people[1]), await open(cfg.people[2])];
  for (const p of [alice, bruno, carla]) await register(p);
  await pair(alice, bruno);
  const steps = (result.steps = {});

  result.phase = "ask";
  await alice.page.click("#record");
  await until(bruno, "the consent prompt", () => window.dragomanDebug().recording.offer.asked);
  await until(alice, "her request", () => window.dragomanDebug().recording.state === "AWAITING_CONSENT");
  steps.asked = { alice: await look(alice), bruno: await look(bruno) };
  await screenshots("-asked");
  const id = steps.asked.bruno.recordingId;

  /** `who` presses `button`; both pages must come to the recording in `wanted` state. */
  const press = async (step, who, button, wanted) => {
    result.phase = step;
    await who.page.click(button);
    for (const p of [alice, bruno]) await recordingIs(p, wanted);
    steps[step] = { alice: await look(alice), bruno: await look(bruno) };
  };
  /** `speaker`'s microphone plays their clip; `listener` must get it translated and spoken. */
  const speak = async (step, speaker, listener) => {
    result.phase = step;
    await speaker.page.click("#mic");
    await until(speaker, "own speech processed", ownSpeechDone);
    await until(listener, "the other's translated speech", heardPartner);
  };
  if (cfg.mode === "consent") {
    await press("recording", bruno, "#recording-agree", "RECORDING");
    await speak("speak while recording", alice, bruno);
    await press("withdrawn", bruno, "#recording-stop", "STOPPED");
    await speak("speak after withdrawing", bruno, alice);
  } else {
    await press("declined", bruno, "#recording-decline", "DECLINED");
    await speak("speak after declining", alice, bruno);
  }

  result.phase = "end";
  await alice.page.click("#end");
  for (const p of [alice, bruno]) await until(p, "the session's end", () => window.dragomanDebug().status === "ended");
  const wanted = cfg.mode === "consent" ? "STOPPED" : "DECLINED";
  for (const p of [alice, bruno]) await listed(p, id, wanted);

  result.phase = "recordings";
  if (cfg.mode === "consent") {
    steps.played = { alice: await play(alice, id), bruno: await play(bruno, id) };
    const [download] = await Promise.all([
      alice.page.waitForEvent("download"), alice.page.click("#recording-download")]);
    result.download = { filename: download.suggestedFilename(), content: readFileSync(await download.path(), "utf8") };
  } else {
    steps.list = await alice.page.evaluate((rid) => {
      const li = document.querySelector(`#recording-list li[data-recording="${rid}"]`);
      return { text: li.textContent, buttons: li.querySelectorAll("button").length };
    }, id);
  }
  // one who was not in the session: their list came back, without it
  await until(carla, "her recordings listed", () => window.dragomanDebug().recording.listed);
  steps.outsider = (await state(carla)).recording;
  steps.ended = {};
  for (const p of [alice, bruno]) steps.ended[p.name] = await look(p);
  await screenshots("-recordings");
  result.phase = "done";
  result.recordingId = id;
});
