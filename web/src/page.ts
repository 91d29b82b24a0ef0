// What the app's pages (index.html, admin.html) share: finding their elements and the API.

import { Code, ConnectError } from "@dragoman/client";
import * as offline from "./offline";

export function el<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} is missing from the page`);
  return found as T;
}

/** Where the API is: config.json's apiBaseUrl when the page is served apart from the edge, else this origin. */
export async function apiBaseUrl(): Promise<string> {
  try {
    const reply = await fetch("config.json", { cache: "no-store" });
    if (reply.ok) {
      const config = (await reply.json()) as { apiBaseUrl?: string };
      if (config.apiBaseUrl) return offline.keepApiBaseUrl(localStorage, config.apiBaseUrl.replace(/\/+$/, ""));
    }
  } catch {
    // offline (the app opened from its cache): where the API was last time
    return offline.keptApiBaseUrl(localStorage) ?? location.origin;
  }
  return location.origin;
}

/** What to show of a failed call: the server's message, else the status code's name. */
export function describeError(e: unknown): string {
  const err = ConnectError.from(e);
  return err.rawMessage || Code[err.code] || String(e);
}
