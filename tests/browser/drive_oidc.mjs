// Signs in with an OpenID Connect provider in headless Chromium: the page shows the provider's
// button, the click goes to the provider (which approves at once) and back, and the page
// finishes the sign-in from the code and state in its URL.
//
//   node tests/browser/drive_oidc.mjs CONFIG.json   (tests/browser/test_oidc_signin.py writes it)
import { cfg, open, result, run, state, until } from "./pages.mjs";

await run(async () => {
  const p = await open(cfg.people[0]);
  await until(p, "the provider's button", () => window.dragomanDebug().providers.length > 0);
  result.checks = { providers: (await state(p)).providers, button: await p.page.textContent("#providers button") };
  const atProvider = p.page.waitForRequest((r) => r.url().startsWith(`${cfg.issuer}/authorize?`));
  await p.page.click("#providers button");
  result.checks.authorize = (await atProvider).url();
  await p.page.waitForSelector("#session:not([hidden])");
  // signed in, the page loads the vocabularies, then the past sessions: wait for the last
  await until(p, "the past sessions from the server", () => window.dragomanDebug().pastSessionsFrom === "server");
  result.checks.url = p.page.url();
  result.checks.signedIn = await state(p);
});
