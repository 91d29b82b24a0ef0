// Which captions are marked doubtful, and what their tooltip says.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { TranscriptionSchema } from "../src/gen/dragoman/v1/conversation_pb.ts";
import { doubt } from "../src/captions.ts";

const transcription = (fields) => create(TranscriptionSchema, { utteranceId: "u1", text: "hello", ...fields });

test("a low-confidence final is doubtful, and the tooltip says how sure the recogniser was", () => {
  const said = doubt(transcription({ isFinal: true, confidence: 0.414, lowConfidence: true }));
  assert.equal(said, "the recogniser was unsure (confidence 41%)");
});

test("a sure final, or any partial, is not doubtful", () => {
  assert.equal(doubt(transcription({ isFinal: true, confidence: 0.9, lowConfidence: false })), "");
  // partials are never scored: a flag on one (from a confused server) is not shown
  assert.equal(doubt(transcription({ isFinal: false, confidence: 0, lowConfidence: true })), "");
});
