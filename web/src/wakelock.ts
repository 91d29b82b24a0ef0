// The screen stays on while a conversation runs: a phone that dims and locks mid-sentence
// stops the microphone and the others' speech. The browser drops the lock whenever the page is
// hidden, so it is taken again each time the page shows.

/** The part of Navigator used here (tests pass their own). */
export type WakeLockHost = { wakeLock?: Pick<WakeLock, "request"> };

export class ScreenWakeLock {
  private sentinel: WakeLockSentinel | undefined;
  private wanted = false;
  /** Why the last request failed ("" when it did not, or none was made). */
  problem = "";

  constructor(private readonly host: WakeLockHost = navigator, doc: Document | undefined = globalThis.document) {
    doc?.addEventListener("visibilitychange", () => {
      if (this.wanted && doc.visibilityState === "visible" && !this.held) void this.acquire();
    });
  }

  get held(): boolean {
    return this.sentinel !== undefined && !this.sentinel.released;
  }

  /** Keeps the screen on until release(); resolves once the lock is held or refused. */
  hold(): Promise<void> {
    this.wanted = true;
    return this.held ? Promise.resolve() : this.acquire();
  }

  release(): void {
    this.wanted = false;
    const sentinel = this.sentinel;
    this.sentinel = undefined;
    void sentinel?.release().catch(() => {});
  }

  private async acquire(): Promise<void> {
    if (!this.host.wakeLock) {
      this.problem = "this browser has no screen wake lock";
      return;
    }
    try {
      const sentinel = await this.host.wakeLock.request("screen");
      this.problem = "";
      if (!this.wanted) {
        void sentinel.release(); // released while the request was on its way
        return;
      }
      this.sentinel = sentinel;
    } catch (e) {
      // refused (battery saver, hidden page): the conversation goes on, the screen may sleep
      this.problem = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    }
  }
}
