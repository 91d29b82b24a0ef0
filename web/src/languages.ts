// Language names for people, from the browser's own tables (Intl.DisplayNames).

/** A language's name in itself ("Deutsch"), else the server's English name. */
export function nativeName(code: string, fallback: string): string {
  try {
    const name = new Intl.DisplayNames([code], { type: "language" }).of(code);
    return name ? name.charAt(0).toLocaleUpperCase(code) + name.slice(1) : fallback;
  } catch {
    return fallback;
  }
}

/** A language's name in the reader's language, else its code. */
export function languageName(code: string): string {
  try {
    return new Intl.DisplayNames([globalThis.navigator?.language || "en"], { type: "language" }).of(code) ?? code;
  } catch {
    return code;
  }
}
