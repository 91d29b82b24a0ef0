// The service worker: serves the app's shell (every file of the build, precached by workbox
// with a content hash each, so a new build replaces exactly what changed) without the network,
// so the installed app opens offline. Nothing else passes through it: API calls (gRPC-Web
// POSTs) and config.json (the deployment's; the page keeps its answer) go to the network.

import { clientsClaim } from "workbox-core";
import { cleanupOutdatedCaches, createHandlerBoundToURL, precacheAndRoute } from "workbox-precaching";
import { NavigationRoute, registerRoute } from "workbox-routing";

declare const self: ServiceWorkerGlobalScope;
/** The build's files and their content hashes; scripts/build.mjs writes it in. */
declare const SHELL: { url: string; revision: string }[];

// The shell holds no state worth keeping a tab on the old version for: take over at once.
void self.skipWaiting();
clientsClaim();
precacheAndRoute(SHELL);
cleanupOutdatedCaches();
// Any page of the app (a reload at ./?anything included) opens the shell; the admin
// console is a page of its own.
registerRoute(new NavigationRoute(createHandlerBoundToURL("index.html"), { denylist: [/\/admin\.html$/] }));
