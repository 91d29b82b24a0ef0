// DragomanClient's interceptor against a fake edge (an interceptor of the caller's that answers
// instead of the network): which calls carry the sign-in, the device name and the session's
// affinity header. The real edge is tests/browser/test_typescript_sdk.py's and the web client's.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { connect, PrivacyMode, SESSION_HEADER, VocabularyService } from "@dragoman/client";

const tokens = { accessToken: "a1", refreshToken: "r1" };

function fakeEdge(replies = {}) {
  const calls = [];
  const answer = () => async (req) => {
    calls.push({ method: req.method.name, header: new Headers(req.header), message: req.message });
    return {
      stream: false, service: req.service, method: req.method, header: new Headers(), trailer: new Headers(),
      message: create(req.method.output, replies[req.method.name]?.(req.message) ?? {}),
    };
  };
  const client = connect("http://127.0.0.1:9", { interceptors: [answer], deviceName: "Firefox on Linux" });
  return { calls, client };
}

test("sign-ins name the device; calls about a session carry its affinity header", async () => {
  const { calls, client } = fakeEdge({
    Login: () => ({ userId: "u1", tokens }),
    CreateSession: (m) => ({ session: { sessionId: "s1", code: "123456", privacyMode: m.privacyMode } }),
  });
  await client.login("alice", "secret-password");
  const session = await client.createSession("en", { privacyMode: PrivacyMode.PARTICIPANT_KEYED });
  await client.sessions.endSession({ sessionId: session.sessionId });
  assert.equal(session.privacyMode, PrivacyMode.PARTICIPANT_KEYED);
  const [login, created, ended] = calls;
  assert.equal(login.message.deviceName, "Firefox on Linux");
  assert.equal(login.header.get("authorization"), null);
  assert.equal(created.header.get("authorization"), "Bearer a1");
  assert.equal(created.header.get(SESSION_HEADER), null); // no session yet: any gateway
  assert.equal(ended.header.get(SESSION_HEADER), "s1");
  assert.equal(ended.header.get("authorization"), "Bearer a1");
});

test("a provider sign-in is finished without a token and signs in", async () => {
  const { calls, client } = fakeEdge({
    FinishSignIn: (m) => ({ userId: "u2", tokens, created: m.code !== "" }),
  });
  assert.equal(await client.finishSignIn("st", "co"), true);
  assert.equal(client.userId, "u2");
  assert.deepEqual([client.signedIn, client.tokens.accessToken], [true, "a1"]);
  // linking to an existing account: the state again with its password, no code
  assert.equal(await client.finishSignIn("st", "", "pw-of-the-account"), false);
  assert.deepEqual(calls.map((c) => [c.message.state, c.message.code, c.message.password, c.message.deviceName]),
                   [["st", "co", "", "Firefox on Linux"], ["st", "", "pw-of-the-account", "Firefox on Linux"]]);
  assert.equal(calls[1].header.get("authorization"), null);
});

test("client() and vocabularies call other services with the sign-in", async () => {
  const { calls, client } = fakeEdge({ Login: () => ({ userId: "u1", tokens }) });
  await client.login("alice", "secret-password");
  await client.client(VocabularyService).listVocabularies({});
  await client.vocabularies.deleteVocabulary({ vocabularyId: "v1" });
  assert.deepEqual(calls.map((c) => [c.method, c.header.get("authorization")]),
                   [["Login", null], ["ListVocabularies", "Bearer a1"], ["DeleteVocabulary", "Bearer a1"]]);
});
