// Drives the admin console (admin.html) in headless Chromium: sign in as an admin, see the
// live session, the users, the charts (sessions, minutes and latency per day) and the language
// pairs and the models' health, end the session, see the audit log.
//
//   node tests/browser/drive_admin.mjs CONFIG.json   (tests/browser/test_admin_console.py writes it)
import { cfg, open, result, run, until } from "./pages.mjs";

await run(async () => {
  const admin = await open(cfg.people[0]);
  const { page } = admin;
  await page.fill("#username", admin.username);
  await page.fill("#password", cfg.password);
  await page.click("#signin button[type=submit]");
  await until(admin, "the live session and the chart", (id) => {
    const s = window.dragomanDebug();
    return s.liveSessionIds.includes(id) && s.chartDays > 0 && s.usernames.length > 0 && s.models.length > 0;
  }, cfg.sessionId);
  for (const chart of ["#chart", "#minutes-chart", "#latency-chart"]) {
    if ((await page.locator(`${chart} canvas`).count()) !== 1) throw new Error(`no canvas in ${chart}`);
  }
  result.people[admin.name] = {
    pairBars: await page.locator("#pairs tbody tr .bar").count(),
    modelLists: await page.locator("#models details").count(),
  };
  await page.fill("#query", cfg.hostUsername);
  await page.click("#search button[type=submit]");
  await until(admin, "the host found by search", (name) => {
    const s = window.dragomanDebug();
    return s.usernames.length === 1 && s.usernames[0] === name;
  }, cfg.hostUsername);
  await page.click(`#live tr[data-session-id="${cfg.sessionId}"] button`);
  await until(admin, "the session ended and audited", (id) => {
    const s = window.dragomanDebug();
    return !s.liveSessionIds.includes(id) && s.audit.some((a) => a.includes(`EndSession ${id}`));
  }, cfg.sessionId);
});
