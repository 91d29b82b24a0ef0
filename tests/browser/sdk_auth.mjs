// @dragoman/client against the real edge: the automatic token renewal and the errors a
// caller gets. Usage: node sdk_auth.mjs PACKAGE_DIST_INDEX EDGE_URL; prints one JSON object.
import { randomBytes } from "node:crypto";
import { pathToFileURL } from "node:url";

const [dist, url] = process.argv.slice(2);
const { connect, ConnectError, Code } = await import(pathToFileURL(dist).href);

const password = randomBytes(12).toString("base64url");
const username = `sdk-${randomBytes(4).toString("hex")}`;
const first = connect(url);
await first.register({ username, email: `${username}@example.org`, password, language: "en" });
const original = first.tokens;
const saved = { ...original };
const result = {};
/** An interceptor (inside the SDK's) that records the methods called. */
const recording = (calls) => (next) => async (req) => {
  calls.push(req.method.name);
  return next(req);
};
const failure = (e) => {
  const err = ConnectError.from(e);
  return { code: Code[err.code], message: err.rawMessage };
};

// 1. An access token the gateway refuses: the call is renewed and retried once.
{
  const renewed = [];
  const calls = [];
  const client = connect(url, {
    tokens: { ...saved, accessToken: "not-a-token" }, onTokens: (t) => renewed.push(t),
    interceptors: [recording(calls)],
  });
  const { sessions } = await client.sessions.listSessions({});
  result.retried = { sessions: sessions.length, renewals: renewed.length, calls,
                     newRefreshToken: renewed[0]?.refreshToken !== saved.refreshToken };
  saved.refreshToken = client.tokens.refreshToken; // the old one was used up
  saved.accessToken = client.tokens.accessToken;
}

// 2. An access token about to expire: renewed before the call, which goes through once.
{
  const renewed = [];
  const calls = [];
  const soon = { seconds: BigInt(Math.floor(Date.now() / 1000) + 5), nanos: 0 };
  const client = connect(url, {
    tokens: { ...saved, accessTokenExpireTime: soon }, onTokens: (t) => renewed.push(t), interceptors: [recording(calls)],
  });
  const session = await client.createSession("en");
  result.ahead = { renewals: renewed.length, calls, code: session.code };
  saved.refreshToken = client.tokens.refreshToken;
}

// 3. A code nobody created; a session the caller is not in.
const client = connect(url, { tokens: saved });
try {
  await client.joinSession("000000", "pt");
  result.badCode = "joined";
} catch (e) {
  result.badCode = failure(e);
}
try {
  for await (const _ of client.converse("no-such-session")) break;
  result.badSession = "listened";
} catch (e) {
  result.badSession = failure(e);
}

// 4. The first refresh token again, spent in 1: the renewal is refused and the call fails.
try {
  const spent = connect(url, { tokens: { ...original, accessToken: "not-a-token" } });
  await spent.sessions.listSessions({});
  result.spent = "accepted";
} catch (e) {
  result.spent = failure(e);
}
console.log(JSON.stringify(result));
