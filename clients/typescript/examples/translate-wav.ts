// Streams a WAV file into a dragoman session and prints what a listener gets.
//
//   npm run build
//   node dist-examples/translate-wav.js https://127.0.0.1:8443 hello.wav --from en --to pt
//
// Two fresh accounts: a speaker of --from creates a session and says the WAV file
// (16-bit mono PCM, any rate from 8 to 48 kHz) at real-time pace; a listener of
// --to joins with the session's code and prints each final translation as it
// arrives. For a test CA, run node with NODE_EXTRA_CA_CERTS=ca.crt.

import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { connect, type DragomanClient, parseWav, pcmChunks, Speaker } from "@dragoman/client";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { from: { type: "string", default: "en" }, to: { type: "string", default: "pt" } },
});
const [url, wavPath] = positionals;
if (!url || !wavPath) {
  console.error("usage: translate-wav.js EDGE_URL FILE.wav [--from en] [--to pt]");
  process.exit(2);
}
const from = values.from!;
const to = values.to!;

/** A client signed in as a new account speaking `language`. */
async function newAccount(role: string, language: string): Promise<DragomanClient> {
  const client = connect(url);
  const username = `${role}-${randomBytes(4).toString("hex")}`;
  await client.register({
    username, email: `${username}@example.org`, password: randomBytes(16).toString("base64url"), language,
  });
  return client;
}

const pcm = parseWav(await readFile(wavPath));
const speaker = await newAccount("speaker", from);
const route = (await speaker.listLanguages()).routes
  .find((r) => r.sourceLanguageCode === from && r.targetLanguageCode === to);
if (!route?.available) {
  console.error(`no route from ${from} to ${to}: ${route?.missing.join("; ") ?? "unknown language"}`);
  process.exit(1);
}
console.log(`route: ${from} -> ${to} via ${route.engines.join(" + ")}`);
const listener = await newAccount("listener", to);
const session = await speaker.createSession(from);
await listener.joinSession(session.code, to);
console.log(`session ${session.sessionId} (code ${session.code})`);

const hearing = listener.converse(session.sessionId, undefined, { outputSampleRateHz: 24000 });
const processed = new Set<string>(); // utterances the listener got processingEnded of
const voiced = new Set<string>(); // ... and the last chunk of the translated speech of
let spoken: Set<string> | undefined; // the speaker's utterances, once the speaker is done
const closeWhenHeard = () => {
  if (spoken && [...spoken].every((id) => processed.has(id) && voiced.has(id))) hearing.close();
};
const listening = (async () => {
  const samples = new Map<string, number>();
  for await (const e of hearing) {
    if (e.type === "translation" && e.translation.isFinal) {
      console.log(`translation (${e.translation.targetLanguageCode}): ${e.translation.text}`);
    } else if (e.type === "speechAudio") {
      const a = e.speechAudio;
      samples.set(a.utteranceId, (samples.get(a.utteranceId) ?? 0) + a.data.length / 2);
      if (a.isLast) {
        console.log(`speech (${to}): ${(samples.get(a.utteranceId)! / a.sampleRateHertz).toFixed(2)} s`);
        voiced.add(a.utteranceId);
      }
    } else if (e.type === "processingEnded") {
      processed.add(e.processingEnded.utteranceId);
    } else if (e.type === "error") {
      console.error(`error: ${e.error.message}`);
    }
    closeWhenHeard();
  }
})();

// The speaker's conversation ends once the whole file (and a second of silence to end
// its last phrase) has been sent and every utterance of it processed.
const ids = new Set<string>();
const audio = pcmChunks(pcm, { chunkMs: 100, trailingSilenceMs: 1000 });
const talk = speaker.converse(session.sessionId, audio, { sampleRateHz: pcm.sampleRateHz });
for await (const e of talk) {
  if (e.type === "processingStarted" && e.processingStarted.speaker === Speaker.SELF) {
    ids.add(e.processingStarted.utteranceId);
  } else if (e.type === "transcription" && e.transcription.isFinal && e.transcription.speaker === Speaker.SELF) {
    console.log(`transcript (${e.transcription.languageCode || from}): ${e.transcription.text}`);
  }
}
if (talk.unfinished.size) console.error(`not processed in time: ${[...talk.unfinished].join(", ")}`);
spoken = ids;
closeWhenHeard();
setTimeout(() => hearing.close(), 30_000).unref(); // a listener that never hears everything
await listening;
await Promise.allSettled([speaker.logout(), listener.logout()]);
if (ids.size === 0) {
  console.error("no speech was recognised in the file");
  process.exitCode = 1;
}
