// Drives the installable app in two headless Chromiums, a phone (Alice) and a desktop (Bruno),
// both on the page's own http://127.0.0.1 origin (a secure context, so the service worker
// installs; the test certificate of the edge would stop it). Each page must link a manifest
// Chromium parses and finds installable, and come under its service worker's control. They
// pair; the screen is kept on during the conversation; Bruno's microphone permission is denied
// and he is told so. After the session, each page lists it as a past session; then, offline,
// a reload still opens the app from the service worker with the past sessions from the
// device's cache, and a sign-in waits until the browser is online again.
//
//   node tests/browser/drive_pwa.mjs CONFIG.json   (tests/browser/test_pwa.py writes the config)
import { cfg, open, pair, register, result, run, screenshots, state, until } from "./pages.mjs";

/** What Chromium and the page say about the app: its manifest, icons, installability, layout. */
async function inspect(p) {
  const cdp = await p.context.newCDPSession(p.page);
  const { url, errors, data } = await cdp.send("Page.getAppManifest");
  const { installabilityErrors } = await cdp.send("Page.getInstallabilityErrors");
  const page = await p.page.evaluate(async () => {
    const link = document.querySelector("link[rel=manifest]");
    const manifest = await (await fetch(link.href)).json();
    const icons = await Promise.all(manifest.icons.map(async (icon) => {
      const img = new Image();
      img.src = new URL(icon.src, link.href).href;
      await img.decode();
      return { ...icon, width: img.naturalWidth, height: img.naturalHeight };
    }));
    const registration = await navigator.serviceWorker.getRegistration();
    return { manifest, icons, scope: registration?.scope, worker: registration?.active?.scriptURL };
  });
  await cdp.detach();
  return { url, errors, parsed: JSON.parse(data ?? "null"), installabilityErrors, ...page };
}

/** The page fits the viewport's width: nothing scrolls sideways. */
const fits = (p) => p.page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);

await run(async () => {
  const [alice, bruno] = [await open(cfg.people[0]), await open(cfg.people[1])];
  result.checks = {};
  const cdp = await bruno.browser.newBrowserCDPSession();
  await cdp.send("Browser.setPermission", {
    permission: { name: "microphone" }, setting: "denied", origin: new URL(bruno.url).origin,
  });
  for (const p of [alice, bruno]) {
    await until(p, "a service worker controlling the page", () => window.dragomanDebug().serviceWorker);
    result.checks[p.name] = { app: await inspect(p), fits: [await fits(p)] };
  }
  for (const p of [alice, bruno]) await register(p);
  await pair(alice, bruno);
  for (const p of [alice, bruno]) await until(p, "the screen wake lock", () => window.dragomanDebug().wakeLock);
  await bruno.page.click("#mic");
  await until(bruno, "the denied microphone's message", () => /blocked/.test(window.dragomanDebug().error));
  result.checks.bruno.micButton = await bruno.page.textContent("#mic");
  result.checks.bruno.micError = (await state(bruno)).error;
  for (const p of [alice, bruno]) result.checks[p.name].fits.push(await fits(p));
  await screenshots("-conversation");
  await alice.page.click("#end");
  for (const p of [alice, bruno]) {
    await until(p, "the session over", () => !document.getElementById("again").hidden);
    await until(p, "the wake lock released", () => !window.dragomanDebug().wakeLock);
    await p.page.click("#again");
    await until(p, "the past session listed from the server", () => {
      const s = window.dragomanDebug();
      return s.pastSessionsFrom === "server" && s.pastSessions.length === 1 && !s.pastSessions[0].live;
    });
    result.checks[p.name].online = await state(p);
    result.checks[p.name].fits.push(await fits(p));
  }
  await screenshots("-history");

  for (const p of [alice, bruno]) {
    await p.context.setOffline(true);
    const reply = await p.page.reload({ waitUntil: "load" });
    await p.page.waitForSelector("body[data-ready=true]");
    const offline = {
      fromServiceWorker: reply.fromServiceWorker(),
      navigatorOnLine: await p.page.evaluate(() => navigator.onLine),
      banner: await p.page.isVisible("#offline"),
      history: await p.page.isVisible("#history"),
      listed: await p.page.$$eval("#past-sessions li", (items) => items.map((i) => i.textContent)),
      state: await state(p),
    };
    await p.page.fill("#username", p.username);
    await p.page.fill("#password", "password-123");
    await p.page.click("#login");
    await until(p, "the sign-in queued", () => window.dragomanDebug().signInQueued);
    await p.page.waitForTimeout(1500); // still waiting, not failed
    offline.queued = await state(p);
    offline.accountShown = await p.page.isVisible("#account");
    offline.fits = await fits(p);
    result.checks[p.name].offline = offline;
    await p.page.screenshot({ path: `${cfg.artifacts}/${p.name}-offline.png`, fullPage: true });
    await p.context.setOffline(false);
    await until(p, "the queued sign-in done", () => !document.getElementById("session").hidden
      && window.dragomanDebug().pastSessionsFrom === "server");
    result.checks[p.name].back = await state(p);
  }
});
