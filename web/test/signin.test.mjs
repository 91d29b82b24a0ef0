// Reading a provider's redirect back to the page (sign-in with OpenID Connect).
import assert from "node:assert/strict";
import { test } from "node:test";
import { redirectUri, returned, withoutAnswer } from "../src/signin.ts";

const PAGE = "https://app.example.org/dragoman/?lang=pt";

test("the answer to this tab's sign-in is read, and only that", () => {
  const back = new URL(`${PAGE}&code=c0de&state=s1`);
  assert.deepEqual(returned(back, "s1"), { state: "s1", code: "c0de", error: "" });
  assert.equal(returned(back, "another"), undefined); // a forged or stale link
  assert.equal(returned(back, null), undefined); // this tab started no sign-in
  assert.equal(returned(new URL(PAGE), "s1"), undefined);
  assert.deepEqual(returned(new URL(`${PAGE}&error=access_denied&state=s1`), "s1"),
    { state: "s1", code: "", error: "access_denied" });
});

test("the provider sends the user back to this page, whose URL then loses its answer", () => {
  assert.equal(redirectUri(new URL(`${PAGE}#top`)), "https://app.example.org/dragoman/");
  assert.equal(withoutAnswer(new URL(`${PAGE}&code=c0de&state=s1&iss=x`)), PAGE);
});
