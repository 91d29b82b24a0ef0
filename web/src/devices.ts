// The Devices panel: where the user is signed in (ListDevices), each with a
// Revoke button (RevokeDevice) that signs that device out at once.

import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Device } from "@dragoman/client";

/** One row of the panel, as shown. */
export interface DeviceRow {
  deviceId: string;
  /** The name the device gave, else what its user agent says it is. */
  label: string;
  /** "last seen …, from 203.0.113.0/24" */
  detail: string;
  current: boolean;
}

const BROWSERS: [RegExp, string][] = [
  [/Edg\//, "Edge"], [/OPR\//, "Opera"], [/Firefox\//, "Firefox"], [/Chrome\//, "Chrome"],
  [/Safari\//, "Safari"],
];
const SYSTEMS: [RegExp, string][] = [
  [/Android/, "Android"], [/iPhone|iPad/, "iOS"], [/Windows/, "Windows"], [/Mac OS X/, "macOS"],
  [/Linux/, "Linux"],
];

/** "Firefox on Linux": the device name this browser gives at sign-in (at most 64 characters). */
export function browserName(userAgent: string): string {
  const browser = BROWSERS.find(([re]) => re.test(userAgent))?.[1] ?? "Browser";
  const system = SYSTEMS.find(([re]) => re.test(userAgent))?.[1];
  return (system ? `${browser} on ${system}` : browser).slice(0, 64);
}

export function rows(devices: readonly Device[], now: Date = new Date()): DeviceRow[] {
  return devices.map((d) => {
    const seen = d.lastSeenTime ? timestampDate(d.lastSeenTime) : undefined;
    const parts = [d.current ? "this device" : seen ? `last seen ${ago(seen, now)}` : ""];
    if (d.coarseIp) parts.push(`from ${d.coarseIp}`);
    return {
      deviceId: d.deviceId,
      label: d.name || (d.userAgent ? browserName(d.userAgent) : "unnamed device"),
      detail: parts.filter(Boolean).join(", "),
      current: d.current,
    };
  });
}

function ago(then: Date, now: Date): string {
  const s = Math.max(0, Math.round((now.getTime() - then.getTime()) / 1000));
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} days ago`;
}

/** The list in the page; `revoke` signs a device out (the panel reloads after). */
export class DevicesPanel {
  constructor(
    private readonly list: HTMLUListElement,
    private readonly revoke: (deviceId: string) => void,
  ) {}

  show(devices: readonly Device[]): void {
    this.list.replaceChildren(...rows(devices).map((row) => {
      const item = document.createElement("li");
      item.dataset.deviceId = row.deviceId;
      const name = document.createElement("strong");
      name.textContent = row.label;
      const detail = document.createElement("small");
      detail.textContent = ` ${row.detail}`;
      item.append(name, detail);
      if (!row.current) {  // signing this page out is what Log out is for
        const button = document.createElement("button");
        button.type = "button";
        button.className = "secondary";
        button.textContent = "Revoke";
        button.setAttribute("aria-label", `Revoke ${row.label}`);
        button.addEventListener("click", () => this.revoke(row.deviceId));
        item.append(" ", button);
      }
      return item;
    }));
  }
}
