// The roster model: what the panel shows after each RosterChanged.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { RosterChange, RosterChangedSchema } from "@dragoman/client";
import { ParticipantSchema, ParticipantState } from "@dragoman/client";
import * as roster from "../src/roster.ts";

const entry = (participantId, displayName, languageCode, host = false, connected = true) =>
  ({ participantId, displayName, languageCode, host, connected });
const ANA = entry("u-ana", "Ana", "en", true);
const BRUNO = entry("u-bruno", "Bruno", "pt");
const CARLA = entry("u-carla", "Carla", "es");
const changed = (change, participantId, people, extra = {}) =>
  create(RosterChangedSchema, { change, participantId, roster: people, ...extra });

test("the join reply's participants give the first roster, without those who left", () => {
  const participants = [
    create(ParticipantSchema, { userId: "u-ana", displayName: "Ana", languageCode: "en", host: true,
      state: ParticipantState.JOINED, connected: true }),
    create(ParticipantSchema, { userId: "u-dan", displayName: "Dan", languageCode: "es",
      state: ParticipantState.LEFT }),
    create(ParticipantSchema, { userId: "u-bruno", displayName: "Bruno", languageCode: "pt",
      state: ParticipantState.JOINED }),
  ];
  const state = roster.fromSession(participants, false, 3, "u-bruno");
  assert.deepEqual(state.people.map((p) => [p.name, p.self, p.host]),
    [["Ana", false, true], ["Bruno", true, false]]);
  assert.equal(state.maxParticipants, 3);
  assert.equal(state.fromEvents, false);
  assert.equal(roster.isHost(state), false);
});

test("each RosterChanged replaces the roster and keeps the session's size", () => {
  const first = roster.fromSession([], false, 8, "u-ana");
  const state = roster.fromEvent(changed(RosterChange.JOINED, "u-carla", [ANA, BRUNO, CARLA]), first, "u-ana");
  assert.deepEqual(state.people.map((p) => p.id), ["u-ana", "u-bruno", "u-carla"]);
  assert.equal(state.maxParticipants, 8);
  assert.equal(state.fromEvents, true);
  assert.equal(roster.isHost(state), true);
  const locked = roster.fromEvent(changed(RosterChange.LOCKED, "u-ana", [ANA, BRUNO, CARLA], { locked: true }),
    state, "u-ana");
  assert.equal(locked.locked, true);
});

test("changes are told by name, from the roster before them for those who went", () => {
  const before = roster.fromEvent(changed(RosterChange.JOINED, "u-carla", [ANA, BRUNO, CARLA]), roster.EMPTY,
    "u-ana");
  const say = (change, who, people, extra) =>
    roster.describeChange(changed(change, who, people, extra), before, "u-ana");
  assert.equal(say(RosterChange.JOINED, "u-carla", [ANA, BRUNO, CARLA]), "Carla joined.");
  assert.equal(say(RosterChange.LEFT, "u-bruno", [ANA, CARLA]), "Bruno left the session.");
  assert.equal(say(RosterChange.REMOVED, "u-carla", [ANA, BRUNO]), "Carla was removed by the host.");
  assert.equal(say(RosterChange.DISCONNECTED, "u-bruno", [ANA, BRUNO, CARLA], { reason: "connection lost" }),
    "Bruno lost the connection (connection lost).");
  assert.equal(say(RosterChange.CONNECTED, "u-bruno", [ANA, BRUNO, CARLA]), "");
  assert.equal(say(RosterChange.JOINED, "u-ana", [ANA]), ""); // one's own joining is no news
  assert.match(say(RosterChange.LOCKED, "u-ana", [ANA, BRUNO, CARLA], { locked: true }), /locked/);
});

test("the summary names everyone else with their language", () => {
  const state = roster.fromEvent(changed(RosterChange.JOINED, "u-carla", [ANA, BRUNO, CARLA]), roster.EMPTY,
    "u-bruno");
  assert.match(roster.summary(state), /^Talking with Ana \(.+\) and Carla \(.+\)\.$/);
  assert.equal(roster.summary(roster.fromEvent(changed(RosterChange.JOINED, "u-ana", [ANA]), roster.EMPTY,
    "u-ana")), "Waiting for others to join…");
});

test("a two-party server's events keep the roster: the creator hosts, the partner joins", () => {
  // no participant marked host: the first listed (the creator) is
  const participants = [create(ParticipantSchema, { userId: "u-ana", displayName: "Ana", languageCode: "en" })];
  let state = roster.fromSession(participants, false, 0, "u-ana");
  assert.equal(roster.isHost(state), true);
  state = roster.withPartner(state, "u-bruno", "Bruno", "pt");
  assert.deepEqual(state.people.map((p) => [p.id, p.host, p.connected]),
    [["u-ana", true, false], ["u-bruno", false, true]]);
  assert.equal(roster.withPartner(state, "u-bruno", "Bruno", "pt"), state); // once
  state = roster.withConnected(roster.withConnected(state, "u-bruno", false), "u-ana", true);
  assert.deepEqual(state.people.map((p) => p.connected), [true, false]);
  assert.equal(state.fromEvents, false);
});

test("a joiner of a two-party server sees the creator as host", () => {
  const participants = [
    create(ParticipantSchema, { userId: "u-ana", displayName: "Ana", languageCode: "en" }),
    create(ParticipantSchema, { userId: "u-bruno", displayName: "Bruno", languageCode: "pt" }),
  ];
  const state = roster.fromSession(participants, false, 0, "u-bruno");
  assert.equal(roster.isHost(state), false);
  assert.equal(roster.withPartner(state, "u-ana", "Ana", "en"), state);
});
