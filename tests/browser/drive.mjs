// Drives two headless Chromiums through one conversation turn each way.
//
//   node tests/browser/drive.mjs CONFIG.json     (tests/browser/test_browser.py writes the config)
//
// Each person is a separate browser process, because the fake microphone's WAV file is a
// browser-wide flag. Every wait is bounded; screenshots are taken at the end or on failure.
// Protocol on stdout/stdin, one JSON line each: {"control": "cut"|"restore"} asks the test to
// cut or restore Bruno's network and waits for a line back; {"result": ...} ends the run with each
// person's window.dragomanDebug() state, screenshots and console lines.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { createInterface } from "node:readline";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { chromium } = createRequire(join(cfg.webDir, "package.json"))("playwright-core");
const WAIT = { timeout: cfg.waitMs, polling: 250 };
const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required",
];

const people = [];
const result = { ok: false, people: {}, error: "" };
const replies = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Asks the test to act on the network, and waits until it did. */
async function control(action) {
  process.stdout.write(JSON.stringify({ control: action }) + "\n");
  const { value, done } = await replies.next();
  if (done || value.trim() !== "ok") throw new Error(`control ${action}: ${done ? "no reply" : value}`);
}

async function open(p) {
  const browser = await chromium.launch({
    executablePath: cfg.chromium, headless: true, chromiumSandbox: false, timeout: 60_000,
    args: [...FLAGS, `--use-file-for-fake-audio-capture=${p.wav}%noloop`],
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: p.viewport, locale: "en-US" });
  const page = await context.newPage();
  const log = [];
  page.on("console", (m) => log.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`pageerror: ${e.message}`));
  page.setDefaultTimeout(cfg.waitMs);
  const person = { ...p, browser, context, page, log };
  people.push(person);
  await page.goto(p.url, { waitUntil: "load" });
  await page.waitForSelector("body[data-ready=true]");
  return person;
}

const state = (p) => p.page.evaluate(() => window.dragomanDebug());

/** Waits until `predicate(state)` holds in the page, `what` names it in the error. */
async function until(p, what, predicate, arg) {
  try {
    await p.page.waitForFunction(predicate, arg, WAIT);
  } catch (e) {
    throw new Error(`${p.name}: gave up waiting for ${what}: ${e.message.split("\n")[0]}`);
  }
}

async function register(p) {
  await p.page.selectOption("#language", p.language);
  await p.page.fill("#username", p.username);
  await p.page.fill("#password", "password-123");
  await p.page.fill("#email", `${p.username}@example.org`);
  await p.page.keyboard.press("Tab");
  await p.page.click("#register");
  await p.page.waitForSelector("#session:not([hidden])");
}

/** The partner's turn arrived in full: every utterance ended, with transcript, translation, audio. */
function heardPartner() {
  const s = window.dragomanDebug();
  const theirs = s.utterances.filter((u) => u.speaker === "partner");
  const spoken = theirs.filter((u) => u.transcript);
  // (these run in the page: each must stand alone) an utterance with no words ends with no latency
  const over = (u) => u.latencyMs !== undefined || (u.done && !u.transcript);
  return theirs.every(over) && spoken.length > 0
    && spoken.every((u) => u.translation && u.audioChunks > 0) && s.scheduledSamples > 0;
}

/** This person's own turn was processed: every utterance ended, some with words. */
function ownSpeechDone() {
  const mine = window.dragomanDebug().utterances.filter((u) => u.speaker === "self");
  const over = (u) => u.latencyMs !== undefined || (u.done && !u.transcript);
  return mine.every(over) && mine.some((u) => u.transcript);
}

async function screenshots() {
  for (const p of people) {
    const path = join(cfg.artifacts, `${p.name}.png`);
    try {
      await p.page.screenshot({ path, fullPage: true, timeout: 20_000 });
      result.people[p.name] = { ...(result.people[p.name] ?? {}), screenshot: path };
    } catch (e) {
      p.log.push(`screenshot failed: ${e.message}`);
    }
  }
}

try {
  const [alice, bruno] = [await open(cfg.people[0]), await open(cfg.people[1])];
  await register(alice);
  await register(bruno);

  await alice.page.click("#create");
  await until(alice, "a pairing code", () => /^[0-9]{6}$/.test(document.getElementById("code").value));
  const code = await alice.page.evaluate(() => document.getElementById("code").value);
  await bruno.page.fill("#join-code", code);
  await bruno.page.press("#join-code", "Enter"); // keyboard: submit the join form
  for (const p of [alice, bruno]) await until(p, "pairing", () => !document.getElementById("mic").disabled);

  // Bruno's network drops while Alice speaks; he must get her words once back, exactly once.
  await control("cut");
  await alice.page.click("#mic");
  await until(alice, "her own utterance processed", ownSpeechDone);
  await control("restore");
  await until(bruno, "a reconnection", () => window.dragomanDebug().reconnects > 0);
  await until(bruno, "Alice's translated speech", heardPartner);

  await bruno.page.focus("#mic");
  await bruno.page.keyboard.press("Enter"); // keyboard: the microphone button
  await until(bruno, "his own utterance processed", ownSpeechDone);
  await until(alice, "Bruno's translated speech", heardPartner);
  // let the last audio play out before reading the counters
  for (const p of [alice, bruno]) {
    await until(p, "playback", () => window.dragomanDebug().playedSamples > 0);
  }
  await screenshots();
  for (const p of people) result.people[p.name] = { ...result.people[p.name], state: await state(p) };
  result.ok = true;
} catch (e) {
  result.error = e.stack || String(e);
  await screenshots();
  for (const p of people) {
    try {
      result.people[p.name] = { ...result.people[p.name], state: await state(p) };
    } catch {
      // page gone
    }
  }
} finally {
  for (const p of people) {
    result.people[p.name] = { ...result.people[p.name], log: p.log.slice(-40) };
    await p.browser.close().catch(() => {});
  }
  process.stdout.write(JSON.stringify({ result }) + "\n");
  process.exit(0); // stdin stays open
}
