// The dragoman web client: sign in, create a session or join one by code, talk
// with everyone in it. Calls go over gRPC-Web to the edge (Envoy), which
// forwards them to the gateway.

import {
  AudioQueue, Code, ConnectError, connect, type Conversation, type ConversationStatus, type DragomanClient,
  type Event, type ListLanguagesResponse, openSealedTranscript, PrivacyMode, type Session, TranscriptFormat,
} from "@dragoman/client";
import { CAPTURE_RATE_HZ, Microphone, microphoneProblem } from "./audio/capture";
import { type NowSpeaking, Player } from "./audio/player";
import { Captions, type UtteranceSnapshot } from "./captions";
import { browserName, DevicesPanel } from "./devices";
import { nativeName } from "./languages";
import * as offline from "./offline";
import { apiBaseUrl, describeError, el } from "./page";
import * as roster from "./roster";
import * as privacy from "./privacy";
import * as recording from "./recording";
import * as signin from "./signin";
import { VocabularyPanel } from "./vocabulary";
import { ScreenWakeLock } from "./wakelock";

const OUTPUT_RATE_HZ = 24000;

/** The export form's choices. */
const TRANSCRIPT_FORMATS: Record<string, TranscriptFormat> = {
  text: TranscriptFormat.TEXT,
  srt: TranscriptFormat.SRT,
  webvtt: TranscriptFormat.WEBVTT,
  json: TranscriptFormat.JSON,
};

/** What tests and curious people can read: window.dragomanDebug(). */
export interface DebugState {
  status: ConversationStatus | "signed-out" | "idle";
  code: string;
  sessionId: string;
  sequences: number[];
  reconnects: number;
  sentChunks: number;
  scheduledSamples: number;
  playedSamples: number;
  audioState: string;
  utterances: UtteranceSnapshot[];
  /** The language codes the selector offers, and where they came from. */
  languages: string[];
  languagesFrom: "page" | "server";
  /** Who is in the session, as the roster panel shows them. */
  roster: roster.RosterState;
  /** Whose translated speech plays now, and every utterance in the order it started playing. */
  nowSpeaking: NowSpeaking | undefined;
  played: NowSpeaking[];
  /** The status line, and the error shown ("" when none). */
  message: string;
  error: string;
  /** The names of the user's vocabularies, as the vocabulary panel lists them. */
  vocabularies: string[];
  /** The installable app: whether a service worker controls the page, the past sessions
   * listed (and whether from this device's cache), a sign-in waiting for the network, and
   * whether the screen is kept on. */
  serviceWorker: boolean;
  pastSessions: offline.PastSession[];
  pastSessionsFrom: "none" | "cache" | "server";
  signInQueued: boolean;
  wakeLock: boolean;
  /** The sign-in providers offered as buttons, and whether a provider sign-in waits for the
   * password of the existing account it would link to. */
  providers: string[];
  linkPending: boolean;
  /** The session's recording as the controls show it, the Recordings list and the one opened. */
  recording: recording.RecordingDebug;
}

class App {
  private readonly ui = {
    status: el<HTMLParagraphElement>("status"),
    error: el<HTMLParagraphElement>("error"),
    language: el<HTMLSelectElement>("language"),
    account: el<HTMLElement>("account"),
    accountForm: el<HTMLFormElement>("account-form"),
    username: el<HTMLInputElement>("username"),
    password: el<HTMLInputElement>("password"),
    email: el<HTMLInputElement>("email"),
    providers: el<HTMLDivElement>("providers"),
    session: el<HTMLElement>("session"),
    sessionTitle: el<HTMLHeadingElement>("session-title"),
    create: el<HTMLButtonElement>("create"),
    size: el<HTMLSelectElement>("size"),
    privacy: el<HTMLSelectElement>("privacy"),
    privacyBadge: el<HTMLSpanElement>("privacy-badge"),
    joinForm: el<HTMLFormElement>("join-form"),
    joinCode: el<HTMLInputElement>("join-code"),
    conversation: el<HTMLElement>("conversation"),
    codeBox: el<HTMLDivElement>("code-box"),
    code: el<HTMLOutputElement>("code"),
    partner: el<HTMLParagraphElement>("partner"),
    connection: el<HTMLSpanElement>("connection"),
    mic: el<HTMLButtonElement>("mic"),
    speaker: el<HTMLInputElement>("speaker"),
    end: el<HTMLButtonElement>("end"),
    leave: el<HTMLButtonElement>("leave"),
    lock: el<HTMLButtonElement>("lock"),
    roster: el<HTMLUListElement>("roster"),
    rosterTitle: el<HTMLHeadingElement>("roster-title"),
    speaking: el<HTMLParagraphElement>("speaking"),
    captions: el<HTMLOListElement>("captions"),
    announcer: el<HTMLParagraphElement>("announcer"),
    summary: el<HTMLParagraphElement>("summary"),
    again: el<HTMLButtonElement>("again"),
    exportForm: el<HTMLFormElement>("export-form"),
    exportFormat: el<HTMLSelectElement>("export-format"),
    devicesBox: el<HTMLDetailsElement>("devices-box"),
    devices: el<HTMLUListElement>("devices"),
    vocabularies: el<HTMLElement>("vocabularies"),
  };
  private readonly devicesPanel: DevicesPanel;
  private audio: AudioContext | undefined;
  private player: Player | undefined;
  private microphone: Microphone | undefined;
  /** The microphone's audio, which the conversation sends. */
  private speech: AudioQueue | undefined;
  private conversation: Conversation | undefined;
  private sessionId = "";
  private captions: Captions | undefined;
  private sequences: number[] = [];
  private code = "";
  private languagesFrom: "page" | "server" = "page";
  private roster: roster.RosterState = roster.EMPTY;
  private privacyMode = PrivacyMode.STANDARD;
  private readonly rosterPanel: roster.RosterPanel;
  private readonly vocabularyPanel: VocabularyPanel;
  /** Set while this page leaves or ends the session, so the stream's end is no error. */
  private leaving: "" | "leave" | "end" = "";
  private readonly history = new offline.PastSessionsPanel(el("history"), el("past-sessions"), el("history-note"));
  private pastSessionsFrom: DebugState["pastSessionsFrom"] = "none";
  private signInQueued = false;
  private username = "";
  /** The configured sign-in providers' names, as the buttons show them. */
  private providers: string[] = [];
  /** A provider sign-in waiting for the password of the account it links to. */
  private linkState = "";
  private readonly wakeLock = new ScreenWakeLock();
  // recording with consent: the conversation's controls and the Recordings view (recording.ts)
  private readonly recordingControls: recording.RecordingControls;
  private readonly recordings: recording.RecordingsPanel;

  constructor(private readonly api: DragomanClient) {
    const { ui } = this;
    const say = (m: string) => this.say(m);
    const fail = (m: string) => this.fail(m);
    this.recordingControls = new recording.RecordingControls(api.recordings, {
      box: el("recording-box"), request: el("record"), stop: el("recording-stop"),
      indicator: el("recording-indicator"), prompt: el("recording-prompt"), question: el("recording-question"),
      agree: el("recording-agree"), decline: el("recording-decline"),
    }, { say, fail, selfId: () => api.userId, sessionId: () => this.sessionId });
    this.recordings = new recording.RecordingsPanel(api.recordings, {
      section: el("recordings"), list: el("recording-list"), view: el("recording-view"),
      viewTitle: el("recording-view-title"), utterances: el("recorded-utterances"), download: el("recording-download"),
    }, { say, fail });
    ui.accountForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const action = (e.submitter as HTMLButtonElement | null)?.value ?? "login";
      void this.busy(ui.accountForm, () => this.signIn(action === "register"));
    });
    ui.create.addEventListener("click", () => void this.busy(ui.session, () => this.createSession()));
    ui.joinForm.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.busy(ui.session, () => this.joinSession());
    });
    ui.mic.addEventListener("click", () => void this.toggleMicrophone());
    ui.speaker.addEventListener("change", () => {
      if (this.player) this.player.muted = !ui.speaker.checked;
    });
    ui.end.addEventListener("click", () => void this.endSession());
    ui.leave.addEventListener("click", () => void this.leaveSession());
    this.rosterPanel = new roster.RosterPanel(ui.roster, ui.rosterTitle, ui.lock, {
      remove: (person) => void this.removeParticipant(person),
      lock: (locked) => void this.lockSession(locked),
    });
    this.devicesPanel = new DevicesPanel(ui.devices, (deviceId) => void this.revokeDevice(deviceId));
    ui.devicesBox.addEventListener("toggle", () => {
      if (ui.devicesBox.open) void this.busy(ui.devicesBox, () => this.loadDevices());
    });
    ui.again.addEventListener("click", () => {
      this.show("session");
      void this.refreshHistory(); // with the session just ended
      void this.recordings.refresh();
    });
    ui.exportForm.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.busy(ui.exportForm, () => this.exportTranscript());
    });
    window.addEventListener("online", () => this.conversation?.reconnectNow());
    this.vocabularyPanel = new VocabularyPanel(api.vocabularies, {
      list: el("vocabulary-list"), form: el("vocabulary-form"), name: el("vocabulary-name"),
      terms: el("vocabulary-terms"), doNotTranslate: el("vocabulary-keep"),
      translations: el("vocabulary-translations"), source: el("vocabulary-source"),
      target: el("vocabulary-target"),
    }, (area, action) => this.busy(area, action));
    const kept = offline.loadPastSessions(localStorage);
    this.history.render(kept, true);
    if (kept) this.pastSessionsFrom = "cache";
    offline.watchConnectivity(el("offline"));
  }

  debug(): DebugState {
    return {
      status: this.conversation?.status ?? (this.api.signedIn ? "idle" : "signed-out"),
      code: this.code,
      sessionId: this.sessionId,
      sequences: [...this.sequences],
      reconnects: this.conversation?.reconnects ?? 0,
      sentChunks: this.conversation?.sentChunks ?? 0,
      scheduledSamples: this.player?.scheduledSamples ?? 0,
      playedSamples: this.player?.playedSamples ?? 0,
      audioState: this.audio?.state ?? "none",
      utterances: this.captions?.snapshot() ?? [],
      languages: [...this.ui.language.options].map((o) => o.value),
      languagesFrom: this.languagesFrom,
      roster: structuredClone(this.roster),
      nowSpeaking: this.player?.nowSpeaking,
      played: [...(this.player?.playedUtterances ?? [])],
      message: this.ui.status.textContent ?? "",
      error: this.ui.error.hidden ? "" : this.ui.error.textContent ?? "",
      vocabularies: this.vocabularyPanel.vocabularies.map((v) => v.displayName),
      serviceWorker: navigator.serviceWorker?.controller != null,
      pastSessions: this.history.sessions?.sessions ?? [],
      pastSessionsFrom: this.pastSessionsFrom,
      signInQueued: this.signInQueued,
      wakeLock: this.wakeLock.held,
      providers: [...this.providers],
      linkPending: this.linkState !== "",
      recording: { ...this.recordingControls.debug(), ...this.recordings.debug() },
    };
  }

  /** Offers only the languages this deployment can hold a conversation in (both ways, with at
   * least one other language): ListLanguages needs no sign-in. Without an answer the page's
   * own list stays. */
  async loadLanguages(): Promise<void> {
    let reply: ListLanguagesResponse;
    try {
      reply = await this.api.sessions.listLanguages({}, { timeoutMs: 5000 });
    } catch (e) {
      console.warn(`keeping the page's languages: ${describeError(e)}`);
      return;
    }
    const usable = reply.languages.filter((l) => l.conversable && l.recognized && l.spoken);
    if (usable.length === 0) return;
    const select = this.ui.language;
    const chosen = select.value;
    select.replaceChildren(...usable.map((l) => new Option(nativeName(l.languageCode, l.displayName), l.languageCode)));
    if (usable.some((l) => l.languageCode === chosen)) select.value = chosen;
    this.languagesFrom = "server";
  }

  /** One button per configured provider (ListSignInProviders needs no sign-in). */
  async loadProviders(): Promise<void> {
    try {
      this.providers = (await this.api.auth.listSignInProviders({}, { timeoutMs: 5000 })).providers.map((p) => p.name);
    } catch (e) {
      console.warn(`no sign-in providers: ${describeError(e)}`);
      return;
    }
    this.ui.providers.replaceChildren(...this.providers.map((name) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "secondary";
      button.textContent = `Sign in with ${name}`;
      button.dataset.provider = name;
      button.addEventListener("click", () => void this.busy(this.ui.providers, () => this.startSignIn(name)));
      return button;
    }));
    this.ui.providers.hidden = this.providers.length === 0;
  }

  private async startSignIn(provider: string): Promise<void> {
    const here = new URL(location.href);
    const started = await this.api.auth.startSignIn({ provider, redirectUri: signin.redirectUri(here) });
    sessionStorage.setItem(signin.STATE_KEY, started.state);
    location.assign(started.authorizationUrl);
  }

  /** Finishes a provider sign-in when this page is the provider's redirect back to it. */
  async finishSignIn(): Promise<void> {
    const here = new URL(location.href);
    const answer = signin.returned(here, sessionStorage.getItem(signin.STATE_KEY));
    if (!answer) return;
    sessionStorage.removeItem(signin.STATE_KEY);
    history.replaceState(null, "", signin.withoutAnswer(here));
    await this.busy(this.ui.account, async () => {
      if (answer.error) throw new Error(`The provider did not sign you in (${answer.error}).`);
      try {
        await this.signedIn(await this.api.finishSignIn(answer.state, answer.code) ? "Account created; signed in." : "Signed in.");
      } catch (e) {
        if (ConnectError.from(e).code !== Code.FailedPrecondition || !describeError(e).includes("password")) throw e;
        this.linkState = answer.state;
        throw new Error("An account with this email address exists. Enter its username and password and press " +
          "Log in to link it to this provider.");
      }
    });
  }

  private async signIn(register: boolean): Promise<void> {
    const { ui } = this;
    const username = ui.username.value.trim();
    const password = ui.password.value;
    if (this.linkState && !register) {
      const state = this.linkState;
      this.linkState = "";  // one try: a wrong password means signing in with the provider again
      await this.api.finishSignIn(state, "", password);
      ui.password.value = "";
      await this.signedIn("Linked and signed in.");
      return;
    }
    if (!ui.username.checkValidity() || !ui.password.checkValidity()) {
      throw new Error("Enter a username (3 to 32 letters, digits, . _ -) and a password of at least 8 characters.");
    }
    if (!navigator.onLine) {
      // offline (the app opened from its cache): sign in once the network is back
      this.signInQueued = true;
      this.say("You are offline. You will be signed in as soon as the network is back.");
      try {
        await offline.whenOnline();
      } finally {
        this.signInQueued = false;
      }
    }
    if (register) {
      if (!ui.email.value || !ui.email.checkValidity()) throw new Error("Enter your email address to register.");
      await this.api.register({ username, email: ui.email.value.trim(), password, language: ui.language.value });
    } else {
      await this.api.login(username, password);
    }
    ui.password.value = "";
    this.username = username;
    await this.signedIn(`Signed in as ${username}.`);
  }

  private async signedIn(message: string): Promise<void> {
    this.say(message);
    this.show("session");
    await this.vocabularyPanel.load();
    void this.refreshHistory();
    void this.recordings.refresh();
  }

  private async loadDevices(): Promise<void> {
    this.devicesPanel.show((await this.api.auth.listDevices({})).devices);
  }

  /** Signs another device out at once (its tokens stop working), then shows the list again. */
  private async revokeDevice(deviceId: string): Promise<void> {
    await this.busy(this.ui.devicesBox, async () => {
      await this.api.auth.revokeDevice({ deviceId });
      this.say("Device signed out.");
      await this.loadDevices();
    });
  }

  /** Lists the past sessions from the server, and keeps the list for when the app is offline. */
  private async refreshHistory(): Promise<void> {
    try {
      const reply = await this.api.sessions.listSessions({ pageSize: 20 }, { timeoutMs: 10_000 });
      this.history.render(offline.savePastSessions(localStorage, this.username, this.api.userId, reply.sessions), false);
      this.pastSessionsFrom = "server";
    } catch (e) {
      console.warn(`past sessions not refreshed: ${describeError(e)}`);
    }
  }

  private async createSession(): Promise<void> {
    this.unlockAudio();
    const session = await this.api.createSession(this.ui.language.value, {
      maxParticipants: Number(this.ui.size.value), privacyMode: privacy.PRIVACY_MODES[this.ui.privacy.value],
    });
    this.code = session.code;
    this.ui.code.value = session.code;
    this.ui.codeBox.hidden = false;
    this.start(session);
    this.say(`Session created. Your code is ${session.code.split("").join(" ")}.`);
  }

  private async joinSession(): Promise<void> {
    const code = this.ui.joinCode.value.trim();
    if (!/^[0-9]{6}$/.test(code)) throw new Error("The code has 6 digits.");
    this.unlockAudio();
    const session = await this.api.joinSession(code, this.ui.language.value);
    this.code = "";
    this.ui.codeBox.hidden = true;
    this.start(session);
  }

  /** Audio may only start from a user gesture: create the context on the create/join click. */
  private unlockAudio(): void {
    this.audio ??= new AudioContext({ latencyHint: "interactive" });
    void this.audio.resume();
    this.player ??= new Player(this.audio, (now) => this.onSpeaking(now));
    this.player.muted = !this.ui.speaker.checked;
  }

  private start(session: Session): void {
    const { ui } = this;
    this.sessionId = session.sessionId;
    this.sequences = [];
    ui.captions.replaceChildren();
    ui.summary.hidden = ui.again.hidden = ui.exportForm.hidden = true;
    ui.end.disabled = ui.leave.disabled = false;
    ui.mic.disabled = true;
    this.leaving = "";
    this.captions = new Captions(ui.captions, ui.announcer);
    this.setRoster(roster.fromSession(session.participants, session.locked, session.maxParticipants,
      this.api.userId));
    this.privacyMode = session.privacyMode;
    this.recordingControls.reset(session.privacyMode === PrivacyMode.STANDARD);
    Object.assign(ui.privacyBadge, { textContent: privacy.describe(session.privacyMode).label,
      title: privacy.describe(session.privacyMode).title });
    const historyKey = session.privacyMode === PrivacyMode.PARTICIPANT_KEYED
      ? privacy.historyKey(localStorage, session.sessionId) : new Uint8Array();
    this.speech?.end();
    this.speech = new AudioQueue();
    const conversation = this.api.converse(session.sessionId, this.speech, {
      sampleRateHz: CAPTURE_RATE_HZ, outputSampleRateHz: OUTPUT_RATE_HZ, historyKey,
      // the microphone comes and goes; SendAudio is retried for as long as the conversation lasts
      endAfterAudio: false, retryLimitMs: Number.POSITIVE_INFINITY,
      onStatus: (s, cause) => {
        if (s !== "ended") this.onStatus(s, cause ? describeError(cause) : ""); // run() says why it ended
      },
    });
    this.conversation = conversation;
    this.onStatus(conversation.status, "");
    this.show("conversation");
    void this.wakeLock.hold();
    void this.run(conversation);
  }

  /** Shows the conversation's events until it ends, then why it ended. */
  private async run(conversation: Conversation): Promise<void> {
    let detail = "left";
    try {
      for await (const event of conversation) {
        this.onEvent(event);
        if (event.type === "sessionEnded") detail = "the session ended";
      }
    } catch (e) {
      detail = ConnectError.from(e).code === Code.Unauthenticated ? "signed out: log in again" : describeError(e);
    }
    this.onStatus("ended", detail);
  }

  private onEvent(event: Event): void {
    this.sequences.push(Number(event.sequence));
    const captions = this.captions!;
    switch (event.type) {
      case "rosterChanged": {
        const before = this.roster;
        this.setRoster(roster.fromEvent(event.rosterChanged, before, this.api.userId));
        const message = roster.describeChange(event.rosterChanged, before, this.api.userId);
        if (this.roster.people.length >= 2 && this.ui.mic.disabled) this.paired(message);
        else if (message) this.say(message);
        break;
      }
      // A two-party server says who the partner is with these; a roster (preferred) says it all.
      case "sessionPaired": {
        const { partnerUserId, partnerDisplayName, partnerLanguageCode } = event.sessionPaired;
        captions.partnerName = partnerDisplayName || "Partner";
        captions.partnerLanguage = partnerLanguageCode;
        if (!this.roster.fromEvents) {
          this.setRoster(roster.withPartner(this.roster, partnerUserId, partnerDisplayName, partnerLanguageCode));
        }
        if (this.ui.mic.disabled) this.paired(`${captions.partnerName} joined.`);
        break;
      }
      case "partnerConnected":
        if (!this.roster.fromEvents) {
          this.setRoster(roster.withConnected(this.roster, event.partnerConnected.partnerUserId, true));
        }
        break;
      case "partnerDisconnected":
        if (!this.roster.fromEvents) {
          this.setRoster(roster.withConnected(this.roster, event.partnerDisconnected.partnerUserId, false));
          this.say(`${captions.partnerName} lost the connection (${event.partnerDisconnected.reason}).`);
        }
        break;
      case "processingStarted":
        captions.started(event.processingStarted);
        break;
      case "transcription":
        captions.transcription(event.transcription);
        this.player?.heard(event.transcription.utteranceId);
        break;
      case "translation":
        captions.translation(event.translation);
        this.player?.heard(event.translation.utteranceId);
        break;
      case "speechAudio":
        captions.audio(event.speechAudio);
        this.player?.play(event.speechAudio);
        break;
      case "processingEnded":
        captions.ended(event.processingEnded);
        this.player?.ended(event.processingEnded.utteranceId);
        break;
      case "error":
        this.say(`Problem: ${event.error.message}`);
        break;
      case "recordingChanged":
        this.recordingControls.changed(event.recordingChanged);
        break;
      case "sessionEnded":
        this.say(`The session ended (${event.sessionEnded.reason}).`);
        break;
      default:
        break;
    }
  }

  /** Someone to talk to is here: the microphone may start. */
  private paired(news: string): void {
    const { ui } = this;
    // without a roster this is a two-party server: the code has done its job
    if (!this.roster.fromEvents) ui.codeBox.hidden = true;
    ui.mic.disabled = false;
    this.say(`${news ? `${news} ` : ""}Start the microphone to speak.`);
    ui.mic.focus();
  }

  /** Shows `state`, with this page's own entry connected while its stream is live: the page
   * knows before any RosterChanged, and a two-party server never says. */
  private setRoster(state: roster.RosterState): void {
    const { ui } = this;
    state = roster.withConnected(state, this.api.userId, this.conversation?.status === "live");
    this.roster = state;
    this.rosterPanel.render(state);
    if (state.people.length) ui.partner.textContent = roster.summary(state);
    const host = roster.isHost(state);
    // others than the host leave; they may end a session of two, as before
    ui.leave.hidden = host || state.people.length === 0;
    ui.end.hidden = !host && state.people.length > 2;
    // the code stays on the host's screen while others may still join with it
    if (host && this.code) {
      const full = state.maxParticipants > 0 && state.people.length >= state.maxParticipants;
      ui.codeBox.hidden = state.locked || full;
    }
  }

  private onSpeaking(now: NowSpeaking | undefined): void {
    this.ui.speaking.textContent = now ? `Now speaking: ${now.name || this.captions?.partnerName || "Partner"}` : "";
    this.rosterPanel.speaking(now?.participantId);
  }

  private onStatus(status: ConversationStatus, detail: string): void {
    const { ui } = this;
    ui.connection.textContent = status === "reconnecting" ? "reconnecting…" : status;
    ui.connection.className = `badge ${status}`;
    this.setRoster(this.roster); // this page's own "connected"
    if (status === "reconnecting" && detail) this.say(`Connection lost; reconnecting.`);
    if (status === "ended") {
      this.wakeLock.release();
      this.stopMicrophone();
      this.speech?.end();
      ui.mic.disabled = ui.end.disabled = ui.leave.disabled = ui.lock.disabled = true;
      ui.roster.querySelectorAll("button").forEach((b) => (b.disabled = true));
      ui.partner.textContent = this.leaving === "leave" ? "You left this conversation." : "The conversation is over.";
      ui.again.hidden = ui.exportForm.hidden = false;
      this.recordingControls.ended();
      this.recordings.show(true); // what was just recorded, to play or save
      void this.recordings.refresh();
      if (detail && detail !== "the session ended" && !this.leaving) this.fail(`The conversation ended: ${detail}`);
      if (this.leaving === "leave") this.say("You left the session.");
    }
  }

  private async toggleMicrophone(): Promise<void> {
    if (this.microphone?.active) {
      this.stopMicrophone();
      return;
    }
    try {
      this.unlockAudio();
      this.say("Allow the microphone if your browser asks.");
      this.microphone = new Microphone(this.audio!, (pcm, at) => this.speech?.push(pcm, at));
      await this.microphone.start();
      this.ui.mic.setAttribute("aria-pressed", "true");
      this.ui.mic.textContent = "Stop microphone";
      this.say("Microphone on: speak now.");
    } catch (e) {
      this.microphone = undefined;
      this.say("Microphone off.");
      this.fail(microphoneProblem(e));
    }
  }

  private stopMicrophone(): void {
    if (!this.microphone?.active) return;
    this.microphone.stop();
    this.ui.mic.setAttribute("aria-pressed", "false");
    this.ui.mic.textContent = "Start microphone";
    this.say("Microphone off.");
  }

  private async endSession(): Promise<void> {
    const { sessionId } = this;
    if (!sessionId) return;
    this.leaving = "end";
    try {
      const reply = await this.api.sessions.endSession({ sessionId });
      const m = reply.metrics;
      if (m) {
        this.ui.summary.textContent = `${m.utteranceCount} utterances translated; mean latency ` +
          `${Math.round(m.meanLatencyMs)} ms; ${m.errorCount} errors; ` +
          `${Math.round(m.lowConfidenceShare * 100)}% of transcripts unsure.`;
        this.ui.summary.hidden = false;
      }
    } catch (e) {
      this.leaving = "";
      this.fail(describeError(e));
    } finally {
      this.conversation?.close();
    }
  }

  /** Saves the ended session's transcript, in the chosen format, as the file the server names. */
  private async exportTranscript(): Promise<void> {
    const format = TRANSCRIPT_FORMATS[this.ui.exportFormat.value] ?? TranscriptFormat.TEXT;
    const reply = await this.api.sessions.exportTranscript({ sessionId: this.sessionId, format });
    let [content, type, filename] = [new Uint8Array(reply.content), reply.contentType, reply.filename];
    if (this.privacyMode === PrivacyMode.PARTICIPANT_KEYED) { // sealed: opened here, with this browser's key
      const opened = await openSealedTranscript(content, privacy.historyKey(localStorage, this.sessionId));
      content = new TextEncoder().encode(JSON.stringify(opened, null, 1));
      [type, filename] = ["application/json", filename.replace(/\.sealed\.json$/, ".json")];
    }
    const url = URL.createObjectURL(new Blob([content], { type }));
    const link = document.createElement("a");
    link.href = url;
    link.download = filename;
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 60_000); // the download has started by then
    this.say(`Transcript saved as ${filename}.`);
  }

  /** Leaves (anyone but the host): the others go on without this page. */
  private async leaveSession(): Promise<void> {
    const { sessionId } = this;
    if (!sessionId) return;
    this.leaving = "leave";
    try {
      await this.api.sessions.leaveSession({ sessionId });
      this.conversation?.close();
    } catch (e) {
      this.leaving = "";
      this.fail(describeError(e));
    }
  }

  /** The host takes someone out of the session; they cannot join again. */
  private async removeParticipant(person: roster.Person): Promise<void> {
    try {
      await this.api.sessions.removeParticipant({ sessionId: this.sessionId, userId: person.id });
    } catch (e) {
      this.fail(`${person.name} could not be removed: ${describeError(e)}`);
    }
  }

  private async lockSession(locked: boolean): Promise<void> {
    try {
      const session = (await this.api.sessions.lockSession({ sessionId: this.sessionId, locked })).session;
      // the RosterChanged that follows says the same; this shows it at once
      if (session) this.setRoster({ ...this.roster, locked: session.locked });
    } catch (e) {
      this.fail(`The session could not be ${locked ? "locked" : "unlocked"}: ${describeError(e)}`);
    }
  }

  private show(section: "account" | "session" | "conversation"): void {
    const { ui } = this;
    ui.account.hidden = section !== "account";
    ui.session.hidden = ui.vocabularies.hidden = section !== "session";
    ui.conversation.hidden = section !== "conversation";
    this.history.show(section !== "conversation");
    this.recordings.show(section === "session");
    if (section === "session") ui.sessionTitle.focus();
  }

  private async busy(area: HTMLElement, action: () => Promise<void>): Promise<void> {
    const buttons = [...area.querySelectorAll("button")];
    buttons.forEach((b) => (b.disabled = true));
    area.setAttribute("aria-busy", "true");
    this.ui.error.hidden = true;
    try {
      await action();
    } catch (e) {
      this.fail(e instanceof Error && !("code" in e) ? e.message : describeError(e));
    } finally {
      buttons.forEach((b) => (b.disabled = false));
      area.removeAttribute("aria-busy");
    }
  }

  private say(message: string): void {
    this.ui.status.textContent = message;
  }

  private fail(message: string): void {
    this.ui.error.textContent = message;
    this.ui.error.hidden = false;
  }
}

declare global {
  interface Window {
    dragomanDebug?: () => DebugState;
  }
}

async function main(): Promise<void> {
  const app = new App(connect(await apiBaseUrl(), { deviceName: browserName(navigator.userAgent) }));
  await Promise.all([app.loadLanguages(), app.loadProviders()]);
  window.dragomanDebug = () => app.debug();
  await app.finishSignIn();
  await offline.registerServiceWorker();
  document.body.dataset.ready = "true";
}

void main();
