// The Devices panel's rows and the name this browser signs in with.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DeviceSchema } from "@dragoman/client";
import { browserName, rows } from "../src/devices.ts";

const FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const SAFARI_IOS = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 " +
  "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

test("a browser names itself by browser and system", () => {
  assert.equal(browserName(FIREFOX), "Firefox on Linux");
  assert.equal(browserName(SAFARI_IOS), "Safari on iOS");
  assert.equal(browserName("grpc-python/1.70"), "Browser");
});

test("rows say which device this is, when the others were last seen and from where", () => {
  const now = new Date("2026-03-01T12:00:00Z");
  const devices = [
    create(DeviceSchema, { deviceId: "d1", name: "Ana's laptop", current: true, coarseIp: "203.0.113.0/24",
      lastSeenTime: timestampFromDate(now) }),
    create(DeviceSchema, { deviceId: "d2", userAgent: SAFARI_IOS, coarseIp: "2001:db8:aa::/48",
      lastSeenTime: timestampFromDate(new Date("2026-03-01T09:30:00Z")) }),
    create(DeviceSchema, { deviceId: "d3" }),
  ];
  assert.deepEqual(rows(devices, now), [
    { deviceId: "d1", label: "Ana's laptop", detail: "this device, from 203.0.113.0/24", current: true },
    { deviceId: "d2", label: "Safari on iOS", detail: "last seen 2 h ago, from 2001:db8:aa::/48",
      current: false },
    { deviceId: "d3", label: "unnamed device", detail: "", current: false },
  ]);
});
