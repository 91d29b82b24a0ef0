// The client: one gRPC-Web transport (fetch, so browsers and Node.js alike)
// whose interceptor carries the access token, renews it before it expires,
// and retries a call once after a renewal when the server says it expired.

import type { DescService } from "@bufbuild/protobuf";
import {
  Code, ConnectError, createClient, type Client, type Interceptor, type Transport,
} from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type AudioInput, Conversation, type ConverseOptions, SESSION_HEADER } from "./conversation.js";
import { AuthService, type TokenPair } from "./gen/dragoman/v1/auth_pb.js";
import { ConversationService } from "./gen/dragoman/v1/conversation_pb.js";
import {
  type ListLanguagesResponse, type PrivacyMode, type Session, SessionService,
} from "./gen/dragoman/v1/sessions_pb.js";
import { RecordingService } from "./gen/dragoman/v1/recording_pb.js";
import { VocabularyService } from "./gen/dragoman/v1/vocabulary_pb.js";

export interface ConnectOptions {
  /** The fetch to use (default: the global one), e.g. one with its own TLS settings. */
  fetch?: typeof globalThis.fetch;
  /** More interceptors, run inside the SDK's (they see the authorization header). */
  interceptors?: Interceptor[];
  /** A sign-in saved from `tokens` earlier: the client starts signed in. */
  tokens?: TokenPair;
  /** Called with every new token pair (sign-in, renewal) and undefined on logout, to save them. */
  onTokens?: (tokens: TokenPair | undefined) => void;
  /** Renew the access token when it expires within this long. Default 30 s. */
  refreshMarginMs?: number;
  /** The name this device gives its sign-ins, which ListDevices shows (e.g. "Firefox on Linux"). */
  deviceName?: string;
}

/** AuthService calls made without a sign-in (and never retried after a renewal). */
const ANONYMOUS = new Set([
  "Register", "Login", "RefreshToken", "ListSignInProviders", "StartSignIn", "FinishSignIn",
]);

/**
 * A client of a dragoman edge (Envoy's gRPC-Web listener), e.g.
 * `connect("https://translate.example.org")`.
 */
export function connect(baseUrl: string, options: ConnectOptions = {}): DragomanClient {
  return new DragomanClient(baseUrl, options);
}

export class DragomanClient {
  /** The generated clients, for calls the SDK does not wrap; they carry the sign-in too. */
  readonly auth: Client<typeof AuthService>;
  readonly sessions: Client<typeof SessionService>;
  readonly conversation: Client<typeof ConversationService>;
  readonly vocabularies: Client<typeof VocabularyService>;
  /** Recording with consent (docs/recording.md). */
  readonly recordings: Client<typeof RecordingService>;
  /** The signed-in user's id ("" before sign-in, or when the client started from saved tokens). */
  userId = "";
  private current: TokenPair | undefined;
  private renewal: Promise<void> | undefined;
  private readonly transport: Transport;

  constructor(readonly baseUrl: string, private readonly options: ConnectOptions = {}) {
    this.current = options.tokens;
    this.transport = createGrpcWebTransport({
      baseUrl, useBinaryFormat: true, fetch: cancellingBodies(options.fetch),
      interceptors: [this.signIn, ...(options.interceptors ?? [])],
    });
    this.auth = createClient(AuthService, this.transport);
    this.sessions = createClient(SessionService, this.transport);
    this.conversation = createClient(ConversationService, this.transport);
    this.vocabularies = createClient(VocabularyService, this.transport);
    this.recordings = createClient(RecordingService, this.transport);
  }

  /**
   * A client of another service on this connection and sign-in: one the edge routes but
   * this package does not generate, e.g. an operator's `AdminService` from its own stubs.
   */
  client<S extends DescService>(service: S): Client<S> {
    return createClient(service, this.transport);
  }

  /** The current token pair (save it to sign in again later with `ConnectOptions.tokens`). */
  get tokens(): TokenPair | undefined {
    return this.current;
  }

  get signedIn(): boolean {
    return this.current !== undefined;
  }

  /** Creates an account and signs in as it. */
  async register(account: { username: string; email: string; password: string; language: string }): Promise<void> {
    const reply = await this.auth.register({
      username: account.username, email: account.email, password: account.password,
      preferredLanguageCode: account.language, deviceName: this.options.deviceName,
    });
    this.userId = reply.userId;
    this.setTokens(reply.tokens);
  }

  async login(username: string, password: string): Promise<void> {
    const reply = await this.auth.login({ username, password, deviceName: this.options.deviceName });
    this.userId = reply.userId;
    this.setTokens(reply.tokens);
  }

  /**
   * Finishes a sign-in with an OpenID Connect provider (docs/accounts.md): `state` and `code`
   * are what the provider sent back to the `redirectUri` given to `auth.startSignIn`. When the
   * provider's email belongs to an existing account, the server refuses with
   * FAILED_PRECONDITION; call again with the same state, no code, and that account's password
   * to link the two. Resolves to whether the sign-in created an account.
   */
  async finishSignIn(state: string, code: string, password = ""): Promise<boolean> {
    const reply = await this.auth.finishSignIn({ state, code, password, deviceName: this.options.deviceName });
    this.userId = reply.userId;
    this.setTokens(reply.tokens);
    return reply.created;
  }

  /** Ends the sign-in on the server (every token of it) and forgets the tokens. */
  async logout(): Promise<void> {
    const refreshToken = this.current?.refreshToken;
    if (refreshToken) await this.auth.logout({ refreshToken });
    this.setTokens(undefined);
  }

  /** Renews the token pair now; concurrent callers wait for the same renewal. */
  refresh(): Promise<void> {
    this.renewal ??= this.renew().finally(() => (this.renewal = undefined));
    return this.renewal;
  }

  /** Opens a session speaking `language`; others join it with its `code`. */
  async createSession(language: string,
                      options: { voice?: string; maxParticipants?: number; privacyMode?: PrivacyMode } = {},
  ): Promise<Session> {
    const reply = await this.sessions.createSession({
      languageCode: language, voice: options.voice, maxParticipants: options.maxParticipants,
      privacyMode: options.privacyMode,
    });
    return required(reply.session, "CreateSession");
  }

  /** Joins the session of the 6-digit `code`, speaking `language`. */
  async joinSession(code: string, language: string,
                    options: { voice?: string; allowOneWay?: boolean } = {}): Promise<Session> {
    const reply = await this.sessions.joinSession({
      code, languageCode: language, voice: options.voice, allowOneWay: options.allowOneWay,
    });
    return required(reply.session, "JoinSession");
  }

  /** The languages the deployment serves and how each ordered pair is translated (no sign-in needed). */
  listLanguages(): Promise<ListLanguagesResponse> {
    return this.sessions.listLanguages({});
  }

  /**
   * The conversation of session `sessionId`: iterate it for the events; `audio` (LINEAR16 at
   * `options.sampleRateHz`, e.g. `pcmChunks(parseWav(bytes))`) is what the caller says.
   * Without audio the caller only listens.
   */
  converse(sessionId: string, audio?: AudioInput, options: ConverseOptions = {}): Conversation {
    return new Conversation(this, sessionId, audio, options);
  }

  private async renew(): Promise<void> {
    const refreshToken = this.current?.refreshToken;
    if (!refreshToken) throw new ConnectError("not signed in", Code.Unauthenticated);
    this.setTokens((await this.auth.refreshToken({ refreshToken })).tokens);
  }

  private setTokens(tokens: TokenPair | undefined): void {
    this.current = tokens;
    this.options.onTokens?.(tokens);
  }

  private expiresSoon(): boolean {
    const expires = this.current?.accessTokenExpireTime;
    return expires !== undefined && timestampMs(expires) - Date.now() < (this.options.refreshMarginMs ?? 30_000);
  }

  private readonly signIn: Interceptor = (next) => async (req) => {
    const anonymous = req.service.typeName === AuthService.typeName && ANONYMOUS.has(req.method.name);
    const authorize = () => {
      if (this.current) req.header.set("authorization", `Bearer ${this.current.accessToken}`);
    };
    if (!anonymous && this.expiresSoon()) await this.refresh();
    if (!anonymous) authorize();
    // Envoy hashes this header to keep a session's calls on one gateway (deploy/envoy/README.md).
    const sessionId: unknown = req.stream ? undefined : (req.message as { sessionId?: unknown }).sessionId;
    if (typeof sessionId === "string" && sessionId && !req.header.has(SESSION_HEADER)) {
      req.header.set(SESSION_HEADER, sessionId);
    }
    try {
      return await next(req);
    } catch (e) {
      // A stream's body was consumed by the first try; Conversation renews and reopens its own.
      if (anonymous || req.stream || !this.current || ConnectError.from(e).code !== Code.Unauthenticated) throw e;
      await this.refresh();
      authorize();
      return await next(req);
    }
  };
}

/**
 * `fetch` whose response body is cancelled when the call's signal aborts. Node's fetch may
 * not end a body it is not reading at that moment (nodejs/undici#1940), which would keep a
 * closed conversation's stream, and its socket, open until the server's next message.
 */
function cancellingBodies(custom: typeof globalThis.fetch | undefined): typeof globalThis.fetch {
  return async (input, init) => {
    const response = await (custom ?? globalThis.fetch)(input, init);
    const signal = init?.signal;
    if (!signal || !response.body) return response;
    const reader = response.body.getReader();
    const cancel = () => void reader.cancel(signal.reason).catch(() => undefined);
    signal.addEventListener("abort", cancel, { once: true });
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) {
          signal.removeEventListener("abort", cancel);
          controller.close();
        } else {
          controller.enqueue(value);
        }
      },
      cancel: (reason) => reader.cancel(reason),
    });
    return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}

function required<T>(value: T | undefined, rpc: string): T {
  if (value === undefined) throw new ConnectError(`${rpc} returned no session`, Code.Internal);
  return value;
}
