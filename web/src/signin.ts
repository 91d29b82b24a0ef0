// Sign-in with OpenID Connect providers (docs/accounts.md): the page sends the user to the
// provider's authorization URL and reads `code` and `state` when the provider sends them back.

/** sessionStorage key of the state this tab sent to a provider, to know the redirect back is ours. */
export const STATE_KEY = "dragoman.signin.state";

/** What the provider sent back in this page's URL, if it is the answer to this tab's sign-in. */
export interface Returned {
  state: string;
  code: string;
  /** The provider's refusal (`error`, e.g. access_denied), when the user did not sign in. */
  error: string;
}

/** Reads the provider's answer from `url`: undefined when the URL carries none, or one whose
 * state is not the one this tab sent (a forged or stale link). */
export function returned(url: URL, sentState: string | null): Returned | undefined {
  const state = url.searchParams.get("state");
  const code = url.searchParams.get("code") ?? "";
  const error = url.searchParams.get("error") ?? "";
  if (!state || (!code && !error) || state !== sentState) return undefined;
  return { state, code, error };
}

/** Where the provider sends the user back: this page, without query or fragment. */
export function redirectUri(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/** The URL to show once the answer is read: the same page without the provider's parameters. */
export function withoutAnswer(url: URL): string {
  const clean = new URL(url);
  for (const name of ["code", "state", "error", "error_description", "iss", "session_state", "scope"]) {
    clean.searchParams.delete(name);
  }
  return clean.toString();
}
