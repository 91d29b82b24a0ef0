// The public API over gRPC-Web (through Envoy), holding the user's tokens.

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AdminService } from "./gen/dragoman/admin/v1/admin_pb";
import { AuthService, type TokenPair } from "./gen/dragoman/v1/auth_pb";
import { ConversationService } from "./gen/dragoman/v1/conversation_pb";
import { RecordingService } from "./gen/dragoman/v1/recording_pb";
import { SessionService } from "./gen/dragoman/v1/sessions_pb";
import { VocabularyService } from "./gen/dragoman/v1/vocabulary_pb";

/** Session affinity key for the edge: every call about a session carries its id. */
export const SESSION_HEADER = "x-dragoman-session";

export class Api {
  readonly auth: Client<typeof AuthService>;
  readonly sessions: Client<typeof SessionService>;
  readonly conversation: Client<typeof ConversationService>;
  readonly vocabularies: Client<typeof VocabularyService>;
  readonly recordings: Client<typeof RecordingService>;
  /** Operators only (admin.html); the edge routes it only with admin_api. */
  readonly admin: Client<typeof AdminService>;
  userId = "";
  sessionId = "";
  private tokens: TokenPair | undefined;
  private refreshing: Promise<void> | undefined;

  constructor(baseUrl: string) {
    const transport = createGrpcWebTransport({
      baseUrl,
      useBinaryFormat: true,
      interceptors: [this.credentials],
    });
    this.auth = createClient(AuthService, transport);
    this.sessions = createClient(SessionService, transport);
    this.conversation = createClient(ConversationService, transport);
    this.vocabularies = createClient(VocabularyService, transport);
    this.recordings = createClient(RecordingService, transport);
    this.admin = createClient(AdminService, transport);
  }

  get signedIn(): boolean {
    return this.tokens !== undefined;
  }

  /** The name this browser gives its logins (ListDevices shows it). */
  deviceName = "";

  async register(username: string, email: string, password: string, language: string): Promise<void> {
    const reply = await this.auth.register({
      username, email, password, preferredLanguageCode: language, deviceName: this.deviceName,
    });
    this.userId = reply.userId;
    this.tokens = reply.tokens;
  }

  async login(username: string, password: string): Promise<void> {
    const reply = await this.auth.login({ username, password, deviceName: this.deviceName });
    this.userId = reply.userId;
    this.tokens = reply.tokens;
  }

  /** Finishes a provider sign-in (the state and code it sent back); on the second call of a
   * link to an existing account, the state and that account's password. Whether it created
   * the account. */
  async finishSignIn(state: string, code: string, password = ""): Promise<boolean> {
    const reply = await this.auth.finishSignIn({ state, code, password, deviceName: this.deviceName });
    this.userId = reply.userId;
    this.tokens = reply.tokens;
    return reply.created;
  }

  /** New tokens from the refresh token; concurrent callers share one refresh. */
  refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const refreshToken = this.tokens?.refreshToken;
        if (!refreshToken) throw new ConnectError("not signed in", Code.Unauthenticated);
        this.tokens = (await this.auth.refreshToken({ refreshToken })).tokens;
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  /** Adds the access token and the session key; a unary call refused with
   * UNAUTHENTICATED (expired token) is retried once after a refresh. */
  private readonly credentials: Interceptor = (next) => async (req) => {
    const decorate = () => {
      if (this.tokens?.accessToken) req.header.set("authorization", `Bearer ${this.tokens.accessToken}`);
      if (this.sessionId) req.header.set(SESSION_HEADER, this.sessionId);
    };
    decorate();
    try {
      return await next(req);
    } catch (e) {
      const refreshable = !req.stream && req.service.typeName !== AuthService.typeName && this.tokens;
      if (!refreshable || ConnectError.from(e).code !== Code.Unauthenticated) throw e;
      await this.refresh();
      decorate();
      return await next(req);
    }
  };
}

export function describeError(e: unknown): string {
  const err = ConnectError.from(e);
  return err.rawMessage || Code[err.code] || String(e);
}
