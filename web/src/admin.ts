// The admin console (admin.html): live sessions, users, sessions, minutes and
// latency per day (uPlot), language pairs, health and the audit log, over
// dragoman.admin.v1.AdminService.
// The gateway checks the admin role on every call; this page only shows
// what it is given.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { type Client, connect } from "@dragoman/client";
import { AdminService, type GetAnalyticsResponse, type LiveSession, type User } from "./gen/dragoman/admin/v1/admin_pb";
import { apiBaseUrl, describeError, el } from "./page";

/** AdminService is not in the public SDK: operators' stubs are generated here (src/gen). */
type AdminClient = Client<typeof AdminService>;

/** What the browser test reads. */
interface AdminDebug {
  signedIn: boolean;
  liveSessionIds: string[];
  usernames: string[];
  chartDays: number;
  /** uPlot series (the x axis included) of each chart, by its element id. */
  charts: Record<string, number>;
  /** The language pairs table: "en>pt 12", most used first. */
  pairs: string[];
  /** The models in the health panel: "stt whisper-base READY". */
  models: string[];
  audit: string[];
  error: string;
}

const debug: AdminDebug = { signedIn: false, liveSessionIds: [], usernames: [], chartDays: 0, charts: {}, pairs: [], models: [], audit: [], error: "" };
(window as unknown as { dragomanDebug: () => AdminDebug }).dragomanDebug = () => debug;

function cell(row: HTMLTableRowElement, text: string): HTMLTableCellElement {
  const td = row.insertCell();
  td.textContent = text;
  return td;
}

function button(label: string, action: () => Promise<void>): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", () => void action());
  return b;
}

const CHART_DAYS = 30;
const DAY_S = 86_400;

/** Every day of the last CHART_DAYS: UTC midnights in seconds (uPlot's x), so that the
 * axis spans the whole range. */
function lastDays(now = Date.now()): number[] {
  const today = Math.floor(now / 1000 / DAY_S) * DAY_S;
  return Array.from({ length: CHART_DAYS }, (_, i) => today - (CHART_DAYS - 1 - i) * DAY_S);
}

/** The value of each of `days` by its YYYY-MM-DD, `missing` where there is none. */
function onDays<M extends number | null>(days: number[], values: Map<string, number>, missing: M): (number | M)[] {
  return days.map((x) => values.get(new Date(x * 1000).toISOString().slice(0, 10)) ?? missing);
}

class Console {
  private readonly charts = new Map<string, uPlot>();

  constructor(private readonly admin: AdminClient) {}

  private async run(what: () => Promise<void>): Promise<void> {
    el("error").hidden = true;
    try {
      await what();
    } catch (e) {
      debug.error = describeError(e);
      el("error").textContent = debug.error;
      el("error").hidden = false;
    }
  }

  async load(): Promise<void> {
    await this.run(async () => {
      await Promise.all([this.live(), this.users(""), this.analytics(), this.health(), this.audit()]);
    });
  }

  private async live(): Promise<void> {
    const reply = await this.admin.listLiveSessions({});
    const body = el<HTMLTableElement>("live").tBodies[0];
    body.replaceChildren();
    for (const s of reply.sessions) this.liveRow(body.insertRow(), s);
    debug.liveSessionIds = reply.sessions.map((s) => s.sessionId);
  }

  private liveRow(row: HTMLTableRowElement, s: LiveSession): void {
    row.dataset.sessionId = s.sessionId;
    cell(row, s.sessionId.slice(0, 8));
    cell(row, s.status);
    cell(row, s.languageCodes.join(", "));
    cell(row, s.participants.map((p) => `${p.displayName} (${p.languageCode}, ${p.state})`).join("; "));
    cell(row, `${Math.round(Number(s.durationMs) / 1000)} s`);
    cell(row, s.latency?.utteranceCount ? `${Math.round(s.latency.totalMs)} ms` : "—");
    // only the replica holding a session counts its errors before it ends
    cell(row, s.errorCountKnown ? String(s.errorCount) : "—");
    row.insertCell().append(button("End", () => this.run(async () => {
      await this.admin.endSession({ sessionId: s.sessionId });
      await Promise.all([this.live(), this.audit()]);
    })));
  }

  async users(query: string): Promise<void> {
    const reply = await this.admin.searchUsers({ query });
    const body = el<HTMLTableElement>("users").tBodies[0];
    body.replaceChildren();
    for (const u of reply.users) this.userRow(body.insertRow(), u, query);
    debug.usernames = reply.users.map((u) => u.username);
  }

  private userRow(row: HTMLTableRowElement, u: User, query: string): void {
    row.dataset.userId = u.userId;
    cell(row, u.username);
    cell(row, u.email);
    cell(row, u.roles.join(", "));
    cell(row, u.disabled ? "disabled" : "enabled");
    const act = (label: string, call: () => Promise<unknown>) => button(label, () => this.run(async () => {
      await call();
      await Promise.all([this.users(query), this.audit()]);
    }));
    row.insertCell().append(
      u.disabled ? act("Enable", () => this.admin.enableUser({ userId: u.userId }))
        : act("Disable", () => this.admin.disableUser({ userId: u.userId })),
      act("Delete", async () => {
        if (confirm(`Delete ${u.username} and all their data?`)) await this.admin.deleteUser({ userId: u.userId });
      }),
    );
  }

  private async analytics(): Promise<void> {
    const reply: GetAnalyticsResponse = await this.admin.getAnalytics({ days: CHART_DAYS });
    const days = lastDays();
    const daily = reply.dailySessions;
    this.plot("chart", [days, onDays(days, new Map(daily.map((d) => [d.date, Number(d.sessionCount)])), 0)],
      [{ label: "sessions", stroke: "#0b5cad", fill: "rgba(11, 92, 173, 0.15)" }], "sessions");
    this.plot("minutes-chart", [days, onDays(days, new Map(daily.map((d) => [d.date, d.minutes])), 0)],
      [{ label: "minutes", stroke: "#2f7d32", fill: "rgba(47, 125, 50, 0.15)" }], "minutes");
    debug.chartDays = daily.length;
    this.latency(reply, days);
    this.pairs(reply);
    el("shares").textContent = `Errors: ${(reply.errorShare * 100).toFixed(1)} % of utterances; ` +
      `unsure transcripts: ${(reply.lowConfidenceShare * 100).toFixed(1)} %.`;
  }

  /** p50 and p95 of the total latency (end of speech to first audio heard) per day, of the
   * most used pair: percentiles of different pairs cannot be merged here. Days without
   * utterances are gaps. */
  private latency(reply: GetAnalyticsResponse, days: number[]): void {
    const main = reply.languagePairs[0];
    const rows = main ? reply.latency.filter((r) => r.stage === "total"
      && r.sourceLanguageCode === main.sourceLanguageCode && r.targetLanguageCode === main.targetLanguageCode) : [];
    el("latency-title").textContent = main
      ? `Total latency per day, ${main.sourceLanguageCode} → ${main.targetLanguageCode} (the most used pair)`
      : "Total latency per day (no translated utterances yet)";
    this.plot("latency-chart", [days, onDays(days, new Map(rows.map((r) => [r.date, r.p50Ms])), null),
      onDays(days, new Map(rows.map((r) => [r.date, r.p95Ms])), null)],
      [{ label: "p50", stroke: "#0b5cad" }, { label: "p95", stroke: "#b3261e" }], "ms");
  }

  /** Language pairs by use, each with a bar as long as its share of the most used. */
  private pairs(reply: GetAnalyticsResponse): void {
    const pairs = reply.languagePairs;
    const most = Math.max(1, ...pairs.map((p) => Number(p.utteranceCount)));
    const body = el<HTMLTableElement>("pairs").tBodies[0];
    body.replaceChildren();
    for (const p of pairs) {
      const row = body.insertRow();
      cell(row, `${p.sourceLanguageCode} → ${p.targetLanguageCode}`);
      cell(row, String(p.utteranceCount));
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.height = "0.8em";
      bar.style.background = "#0b5cad";
      bar.style.width = `${(100 * Number(p.utteranceCount)) / most}%`;
      row.insertCell().append(bar);
    }
    debug.pairs = pairs.map((p) => `${p.sourceLanguageCode}>${p.targetLanguageCode} ${p.utteranceCount}`);
  }

  private plot(id: string, data: uPlot.AlignedData, series: uPlot.Series[], unit: string): void {
    this.charts.get(id)?.destroy();
    const target = el(id);
    this.charts.set(id, new uPlot({
      width: Math.min(720, target.clientWidth || 720), height: 240,
      series: [{}, ...series], axes: [{}, { label: unit }],
    }, data, target));
    debug.charts[id] = data.length;
  }

  async downloadCsv(): Promise<void> {
    const reply = await this.admin.exportAnalyticsCsv({ range: { days: CHART_DAYS } });
    const text = [reply.dailySessionsCsv, reply.languagePairsCsv, reply.latencyCsv, reply.sharesCsv].join("\n");
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
    link.download = "dragoman-analytics.csv";
    link.click();
    URL.revokeObjectURL(link.href);
  }

  private async health(): Promise<void> {
    const reply = await this.admin.getHealth({});
    el("health").replaceChildren(...reply.services.map((s) => {
      const li = document.createElement("li");
      li.textContent = `${s.service} (${s.address}): ${s.status}${s.detail ? ` — ${s.detail}` : ""}`;
      return li;
    }));
    debug.models = reply.models.map((m) => `${m.service} ${m.name} ${m.status}`);
    // one collapsed list per service: mt alone lists every language pair
    el("models").replaceChildren(...["stt", "mt", "tts"].map((service) => {
      const models = reply.models.filter((m) => m.service === service);
      const ready = models.filter((m) => m.status === "READY").length;
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = `${service}: ${ready} of ${models.length} ready`;
      const list = document.createElement("ul");
      list.replaceChildren(...models.map((m) => {
        const li = document.createElement("li");
        const what = m.name ? `${m.name} (${m.engine}; ${m.languageCodes.join(", ")})` : service;
        li.textContent = `${what}: ${m.status}${m.detail ? ` — ${m.detail}` : ""}`;
        return li;
      }));
      details.replaceChildren(summary, list);
      return details;
    }));
  }

  private async audit(): Promise<void> {
    const reply = await this.admin.listAuditLog({ pageSize: 50 });
    debug.audit = reply.entries.map((e) => `${e.adminUsername} ${e.action} ${e.target}`);
    el("audit").replaceChildren(...reply.entries.map((e, i) => {
      const li = document.createElement("li");
      const when = e.time ? new Date(Number(e.time.seconds) * 1000).toISOString() : "";
      li.textContent = `${when} ${debug.audit[i]} from ${e.coarseIp || "?"}`;
      return li;
    }));
  }
}

async function start(): Promise<void> {
  const api = connect(await apiBaseUrl(), { deviceName: "admin console" });
  const admin = new Console(api.client(AdminService));
  el<HTMLFormElement>("signin").addEventListener("submit", (ev) => {
    ev.preventDefault();
    void (async () => {
      try {
        await api.login(el<HTMLInputElement>("username").value, el<HTMLInputElement>("password").value);
        el("signin").hidden = true;
        el("console").hidden = false;
        el("status").textContent = "";
        debug.signedIn = true;
        await admin.load();
      } catch (e) {
        debug.error = describeError(e);
        el("error").textContent = debug.error;
        el("error").hidden = false;
      }
    })();
  });
  el<HTMLFormElement>("search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    void admin.users(el<HTMLInputElement>("query").value).catch((e: unknown) => {
      debug.error = describeError(e);
    });
  });
  el("refresh").addEventListener("click", () => void admin.load());
  el("csv").addEventListener("click", () => void admin.downloadCsv());
  el("status").textContent = "Sign in with an admin account.";
  document.body.dataset.ready = "true";
}

void start();
