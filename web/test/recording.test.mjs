// The recording controls' model: what each participant is offered and told as the recording
// is asked for, answered, started and stopped, and the file a recording is saved as.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  RecordedUtteranceSchema, RecordingChange, RecordingChangedSchema, RecordingConsentAnswer, RecordingSchema,
  RecordingState,
} from "@dragoman/client";
import * as recording from "../src/recording.ts";

const { PENDING, GRANTED, DECLINED, WITHDRAWN } = RecordingConsentAnswer;
const consent = (participantId, displayName, answer) => ({ participantId, displayName, answer });
const rec = (state, anaAnswer, brunoAnswer, extra = {}) => create(RecordingSchema, {
  recordingId: "r-1", sessionId: "s-1", state, requestedByParticipantId: "u-ana", translatedSpeech: true,
  consents: [consent("u-ana", "Ana", anaAnswer), consent("u-bruno", "Bruno", brunoAnswer)], ...extra,
});
const changed = (change, participantId, recordingValue, reason = "") =>
  create(RecordingChangedSchema, { change, participantId, recording: recordingValue, reason });

test("the one asked gets the prompt; the asker, who consented by asking, may cancel", () => {
  const asked = rec(RecordingState.AWAITING_CONSENT, GRANTED, PENDING);
  assert.deepEqual(recording.offer(asked, "u-bruno"),
    { canRequest: false, asked: true, indicator: "awaiting", canStop: false });
  assert.deepEqual(recording.offer(asked, "u-ana"),
    { canRequest: false, asked: false, indicator: "awaiting", canStop: true });
});

test("while recording everyone sees the indicator and may stop it; after, anyone may ask again", () => {
  for (const who of ["u-ana", "u-bruno"]) {
    assert.deepEqual(recording.offer(rec(RecordingState.RECORDING, GRANTED, GRANTED), who),
      { canRequest: false, asked: false, indicator: "recording", canStop: true });
    for (const state of [RecordingState.STOPPED, RecordingState.DECLINED]) {
      assert.deepEqual(recording.offer(rec(state, GRANTED, WITHDRAWN), who),
        { canRequest: true, asked: false, indicator: "", canStop: false });
    }
  }
  assert.equal(recording.offer(undefined, "u-ana").canRequest, true);
});

test("each change is told in a sentence naming who did it", () => {
  const asked = rec(RecordingState.AWAITING_CONSENT, GRANTED, PENDING);
  assert.match(recording.describeChange(changed(RecordingChange.REQUESTED, "u-ana", asked), "u-bruno"),
    /^Ana asks to record this conversation\. Nothing is recorded unless everyone agrees\.$/);
  assert.match(recording.describeChange(changed(RecordingChange.REQUESTED, "u-ana", asked), "u-ana"), /^You asked/);
  const refused = rec(RecordingState.DECLINED, GRANTED, DECLINED);
  assert.equal(recording.describeChange(changed(RecordingChange.DECLINED, "u-bruno", refused), "u-ana"),
    "Bruno declined recording: nothing is recorded.");
  assert.equal(recording.describeChange(changed(RecordingChange.STARTED, "", rec(RecordingState.RECORDING,
    GRANTED, GRANTED)), "u-ana"), "Everyone agreed: this conversation is being recorded.");
  assert.equal(recording.describeChange(changed(RecordingChange.WITHDRAWN, "u-bruno",
    rec(RecordingState.STOPPED, GRANTED, WITHDRAWN)), "u-bruno"),
  "You stopped the recording: nothing said from now on is kept.");
  assert.equal(recording.describeChange(changed(RecordingChange.STOPPED, "",
    rec(RecordingState.STOPPED, GRANTED, GRANTED), "session ended"), "u-ana"), "The recording stopped (session ended).");
});

test("a reply that arrives after the events that followed it does not undo them", () => {
  const awaiting = rec(RecordingState.AWAITING_CONSENT, GRANTED, PENDING);
  const running = rec(RecordingState.RECORDING, GRANTED, GRANTED);
  assert.equal(recording.isStaler(awaiting, running), true);
  assert.equal(recording.isStaler(running, awaiting), false);
  assert.equal(recording.isStaler(create(RecordingSchema, { ...awaiting, recordingId: "r-2" }), running), false);
});

test("the list says when a recording expires, and a declined one that nothing was kept", () => {
  const now = Date.UTC(2026, 11, 6, 12);
  const expire = new Date(now + 30 * 86_400_000 + 60_000);
  assert.equal(recording.expiry(expire, now), "expires in 30 days (2027-01-05)");
  assert.equal(recording.expiry(new Date(now + 3_600_000), now), "expires today");
  const declined = rec(RecordingState.DECLINED, GRANTED, DECLINED, { expireTime: timestampFromMs(expire.getTime()) });
  const line = recording.describeRecording(declined, now);
  assert.match(line, /Declined: nothing recorded · expires in 30 days/);
  assert.doesNotMatch(line, /utterance/);
  const kept = rec(RecordingState.STOPPED, GRANTED, WITHDRAWN,
    { utteranceCount: 2, duration: { seconds: 75n, nanos: 0 } });
  assert.match(recording.describeRecording(kept, now), /Recorded · 2 utterances · 1:15/);
});

test("a recording is saved as JSON with its utterances, audio in base64", () => {
  const stopped = rec(RecordingState.STOPPED, GRANTED, WITHDRAWN, { startTime: timestampFromMs(Date.UTC(2026, 11, 6, 9, 5)) });
  const utterance = create(RecordedUtteranceSchema, {
    recordingId: "r-1", utteranceId: "u1", speakerDisplayName: "Ana", languageCode: "en", text: "hello",
    translations: [{ targetLanguageCode: "pt", text: "olá" }],
    speech: [{ languageCode: "pt", voice: "v", oggOpus: new Uint8Array([79, 103, 103, 83]) }],
  });
  const file = recording.recordingFile(stopped, [utterance]);
  assert.equal(file.name, "dragoman-recording-2026-12-06T0905.json");
  const doc = JSON.parse(file.json);
  assert.equal(doc.recording.state, "RECORDING_STATE_STOPPED");
  assert.equal(doc.utterances[0].text, "hello");
  assert.equal(doc.utterances[0].speech[0].oggOpus, "T2dnUw==");
});
