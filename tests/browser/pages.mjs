// What the browser drivers (drive.mjs, drive_party.mjs) share: one headless Chromium per
// person, bounded waits on the page's window.dragomanDebug(), sign-up, and the result line.
//
// Each person is a separate browser process, because the fake microphone's WAV file is a
// browser-wide flag. Screenshots are taken at the end or on failure.
//
// Protocol on stdout/stdin, one JSON line each: {"control": "cut"|"restore"} asks the test to
// cut or restore the link that pages loaded from the other origin call the API through, and
// waits for a line back; {"result": ...} ends the run with each person's window.dragomanDebug()
// state, screenshots and console lines.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { createInterface } from "node:readline";

export const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { chromium } = createRequire(join(cfg.webDir, "package.json"))("playwright-core");
const WAIT = { timeout: cfg.waitMs, polling: 250 };
const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required",
];

export const people = [];
export const result = { ok: false, people: {}, error: "" };
const replies = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Asks the test to act on the network, and waits until it did. */
export async function control(action) {
  process.stdout.write(JSON.stringify({ control: action }) + "\n");
  const { value, done } = await replies.next();
  if (done || value.trim() !== "ok") throw new Error(`control ${action}: ${done ? "no reply" : value}`);
}

/** Starts `p`'s browser on its page and waits until the page is ready. */
export async function open(p) {
  const browser = await chromium.launch({
    executablePath: cfg.chromium, headless: true, chromiumSandbox: false, timeout: 60_000,
    // micDenied: no flag that accepts every permission prompt, so a denied permission holds
    args: [...FLAGS.filter((f) => !p.micDenied || f !== "--use-fake-ui-for-media-stream"),
      `--use-file-for-fake-audio-capture=${p.wav}%noloop`],
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

export const state = (p) => p.page.evaluate(() => window.dragomanDebug());

/** Waits until `predicate(arg)` holds in the page; `what` names it in the error. */
export async function until(p, what, predicate, arg) {
  try {
    await p.page.waitForFunction(predicate, arg, WAIT);
  } catch (e) {
    throw new Error(`${p.name}: gave up waiting for ${what}: ${e.message.split("\n")[0]}`);
  }
}

/** Signs `p` up in their language; the page then offers to create or join a session. */
export async function register(p) {
  await p.page.selectOption("#language", p.language);
  await p.page.fill("#username", p.username);
  await p.page.fill("#password", "password-123");
  await p.page.fill("#email", `${p.username}@example.org`);
  await p.page.keyboard.press("Tab");
  await p.page.click("#register");
  await p.page.waitForSelector("#session:not([hidden])");
}

/** `host` creates a session and `guest` joins it with its code (the keyboard submits the
 * join form); returns when both may speak. */
export async function pair(host, guest) {
  await host.page.click("#create");
  await until(host, "a pairing code", () => /^[0-9]{6}$/.test(document.getElementById("code").value));
  const code = await host.page.evaluate(() => document.getElementById("code").value);
  await guest.page.fill("#join-code", code);
  await guest.page.press("#join-code", "Enter");
  for (const p of [host, guest]) await until(p, "pairing", () => !document.getElementById("mic").disabled);
}

/** This person's own turn was processed: every utterance ended, some with words. */
export function ownSpeechDone() {
  const mine = window.dragomanDebug().utterances.filter((u) => u.speaker === "self");
  const over = (u) => u.latencyMs !== undefined || (u.done && !u.transcript);
  return mine.every(over) && mine.some((u) => u.transcript);
}

/** The partner's turn arrived in full: every utterance ended, with transcript, translation, audio. */
export function heardPartner() {
  const s = window.dragomanDebug();
  const theirs = s.utterances.filter((u) => u.speaker === "partner");
  const spoken = theirs.filter((u) => u.transcript);
  // (these run in the page: each must stand alone) an utterance with no words ends with no latency
  const over = (u) => u.latencyMs !== undefined || (u.done && !u.transcript);
  return theirs.every(over) && spoken.length > 0
    && spoken.every((u) => u.translation && u.audioChunks > 0) && s.scheduledSamples > 0;
}

/** Saves each page as ARTIFACTS/[cfg.prefix]NAME[suffix].png; the result names the last one taken. */
export async function screenshots(suffix = "") {
  for (const p of people) {
    const path = join(cfg.artifacts, `${cfg.prefix ?? ""}${p.name}${suffix}.png`);
    try {
      await p.page.screenshot({ path, fullPage: true, timeout: 20_000 });
      result.people[p.name] = { ...(result.people[p.name] ?? {}), screenshot: path };
    } catch (e) {
      p.log.push(`screenshot failed: ${e.message}`);
    }
  }
}

/** Runs `scenario`, then writes {"result": ...} with each page's state, screenshots and console
 * lines (also on failure), closes the browsers and exits. */
export async function run(scenario) {
  try {
    await scenario();
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
}
