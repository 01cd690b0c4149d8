// Messages from a child process or worker thread, taken by type as the test comes to need them:
// a 'fatal' message, the sender's end, or the deadline fails the wait (with the sender's name and
// whatever context it has, e.g. its stderr), so no test waits forever on a sender that died.
import { until } from './until.js';

export interface InboxMessage {
  type?: unknown;
  error?: unknown;
}

export interface InboxOptions {
  /** Who sends (for error messages). */
  name: string;
  /** Added to error messages (e.g. the sender's stderr so far). */
  context?: () => string;
  /** Why the sender can send no more (e.g. it exited), or null while it can. */
  gone?: () => string | null;
  /** Default time limit of next(), in ms. */
  timeoutMs?: number;
}

export class Inbox<M extends InboxMessage> {
  readonly #messages: M[] = [];
  readonly #options: InboxOptions;

  constructor(options: InboxOptions) {
    this.#options = options;
  }

  /** For the sender's 'message' listener. */
  readonly push = (message: M): void => {
    this.#messages.push(message);
  };

  /** Takes the first message of `type` (earlier ones of other types stay for later calls). */
  async next(type: string, ms = this.#options.timeoutMs ?? 15_000): Promise<M> {
    const { name, context, gone } = this.#options;
    const detail = () => (context === undefined ? '' : `: ${context()}`);
    const index = () => this.#messages.findIndex((m) => m.type === type || m.type === 'fatal');
    let why: string | null = null;
    try {
      await until(() => index() >= 0 || (why = gone?.() ?? null) !== null, `${name}: ${type}`, ms);
    } catch {
      throw new Error(`${name}: no ${type} within ${ms} ms${detail()}`);
    }
    const i = index();
    if (i < 0) throw new Error(`${name} ${why}${detail()}`);
    const [m] = this.#messages.splice(i, 1);
    if (m.type === 'fatal') throw new Error(`${name}: ${String(m.error)}`);
    return m;
  }
}
