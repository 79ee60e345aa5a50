// wsauth browser client: a dependency-free ES module, served by the issuer at /static/wsauth.js.
//
//   import { connect } from "/static/wsauth.js";
//   const client = connect({
//     onStatus: (status) => console.log(status.state, status.code, status.reason),
//     onMessage: (message) => console.log(message),
//   });
//   // later: client.stop();
//
// Every connection attempt fetches a fresh single-use token from the issuer
// (same origin, session cookie, header X-WSAuth-CSRF: 1) and offers it to the
// gateway as the subprotocol "wsauth.bearer.<token>" beside "wsauth". What the
// client does when a connection closes depends on the close code
// (docs/reference, close codes):
//
//   1000 normal                   stop
//   4001 revoked (logout)         stop: terminal, never reconnect
//   4002 re-authenticate          reconnect at once with a fresh token
//   anything else (1001, 1006,    reconnect after an exponential backoff with
//   1009, 1011, 4003, ...)        full jitter, capped; reset once a connection
//                                 has stayed open for `stableAfter` ms
//
// and the token endpoint answering 401 or 403 (logged out) stops it too.
//
// Resume tickets: the gateway's welcome carries one ("resume"). The client keeps
// it (and removes it from the welcome handed to onMessage: it is a credential)
// and, after a close other than 1000, 4001 and 4002 and within "resume_ttl"
// seconds, reconnects with the subprotocol "wsauth.resume.<ticket>" instead of
// fetching a token. A ticket is tried once: if that socket closes before it
// opens (a refused or unreachable gateway look alike to a page), the next
// attempt, at once, fetches a fresh token.
//
// Channels given as `channels` are subscribed after every welcome. On a history
// channel the client keeps the offset and epoch of the last message (or of the
// subscribe reply) and subscribes with `since`, so the gateway delivers what was
// published while it was away, in order and once; the reply says
// `recovered: false` with a `reason` when it could not ("epoch_changed": the
// history is gone). `client.positions` holds the positions.
// The token is never logged, never put in a URL, and never handed to callbacks.

/** Close codes of the gateway (the fixed contract of docs/reference). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  REVOKED: 4001,
  REAUTHENTICATE: 4002,
  IDLE: 4003,
});

/** The subprotocol the gateway selects; the token rides in a second, "wsauth.bearer.<token>". */
export const SUBPROTOCOL = "wsauth";
const BEARER_PREFIX = "wsauth.bearer.";
const RESUME_PREFIX = "wsauth.resume.";

/**
 * A connection that lived shorter than this and was closed with 4002 reconnects
 * after a backoff instead of at once, so a gateway whose maximum age is set far
 * too low cannot make clients hammer the issuer.
 */
const MIN_REAUTHENTICATE_AGE_MS = 500;

/**
 * @typedef {"idle" | "connecting" | "open" | "closed" | "stopped"} State
 * "closed": not connected, another attempt follows after `delay` ms.
 * "stopped": not connected, and the client will not try again until start().
 */

/**
 * @typedef {object} Status
 * @property {State} state
 * @property {number} attempt     attempts since the last stable connection (1 = first try)
 * @property {number} [code]      WebSocket close code ("closed" / "stopped" after a close)
 * @property {string} [reason]    close reason, or the issuer's error code (e.g. "not_authenticated")
 * @property {number} [httpStatus] the token endpoint's HTTP status, when it refused
 * @property {number} [delay]     ms until the next attempt ("closed" only)
 */

/**
 * @typedef {object} CloseInfo
 * @property {number} code
 * @property {string} reason
 * @property {boolean} wasClean
 * @property {boolean} willRetry
 * @property {number} [delay]     ms until the next attempt, when willRetry
 */

/**
 * @typedef {object} Options
 * @property {string} [tokenUrl="/ws-token"]  same-origin issuer endpoint that answers {token, expires_in, url}
 * @property {string} [url]          gateway URL; default: the `url` of each token answer
 * @property {(status: Status) => void} [onStatus]   every state change
 * @property {(message: any, event: MessageEvent) => void} [onMessage]
 *           each message, parsed as JSON (the raw data when it is not JSON)
 * @property {(info: CloseInfo) => void} [onClose]   each close of a socket, except by stop()
 * @property {number} [baseDelay=500]    first backoff ceiling, ms
 * @property {number} [maxDelay=30000]   backoff cap, ms
 * @property {number} [stableAfter=10000] ms a connection must stay open to reset the backoff
 * @property {() => number} [random=Math.random]  jitter source (tests)
 * @property {typeof fetch} [fetch]      (tests)
 * @property {typeof WebSocket} [WebSocket]  (tests)
 * @property {string[]} [channels]   subscribed on every connection, recovered by offset
 */

/** The token endpoint refused (401/403: logged out) or failed. */
export class TokenError extends Error {
  /**
   * @param {number} status HTTP status (0: no answer)
   * @param {string} code   the issuer's error code, e.g. "not_authenticated"
   */
  constructor(status, code) {
    super(`token endpoint answered ${status || "nothing"} (${code})`);
    this.name = "TokenError";
    this.status = status;
    this.code = code;
  }

  /** True when retrying cannot help: the session is gone or the request is refused. */
  get terminal() {
    return this.status === 401 || this.status === 403;
  }
}

/** A WebSocket to the wsauth gateway that keeps itself connected with fresh tokens. */
export class WsAuthClient {
  /** @param {Options} [options] */
  constructor(options = {}) {
    this.tokenUrl = options.tokenUrl ?? "/ws-token";
    this.url = options.url;
    this.onStatus = options.onStatus ?? (() => {});
    this.onMessage = options.onMessage ?? (() => {});
    this.onClose = options.onClose ?? (() => {});
    this.baseDelay = options.baseDelay ?? 500;
    this.maxDelay = options.maxDelay ?? 30000;
    this.stableAfter = options.stableAfter ?? 10000;
    this._random = options.random ?? Math.random;
    this._fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;

    /** @type {State} */
    this.state = "idle";
    /** @type {WebSocket | null} */
    this.socket = null;
    this._failures = 0; // consecutive attempts without a stable connection
    this._generation = 0; // bumped by start/stop: callbacks of older attempts are ignored
    this._timer = null;
    this._abort = null;
    this._ticket = null; // {value, url, until}: the resume ticket of the last connection
    /** Issuer requests made, and connections opened with a resume ticket (tests, metrics). */
    this.tokenFetches = 0;
    this.resumes = 0;
    this.channels = [...(options.channels ?? [])];
    /** @type {Map<string, {offset: string, epoch: string}>} last position per channel */
    this.positions = new Map();
    this._commands = 0;
    this._pending = new Map(); // subscribe command id -> channel
  }

  _subscribeAll(socket) {
    for (const channel of this.channels) {
      this._commands += 1;
      const id = `wsauth-${this._commands}`;
      const command = { type: "subscribe", id, channel };
      const position = this.positions.get(channel);
      if (position) command.since = { offset: position.offset, epoch: position.epoch };
      this._pending.set(id, channel);
      socket.send(JSON.stringify(command));
    }
  }

  /** Keep the last position per channel from message frames and subscribe replies. */
  _track(message) {
    if (!message || typeof message.offset !== "string" || typeof message.epoch !== "string") return;
    let channel = null;
    if (message.type === "message") channel = message.channel;
    else if (message.type === "reply") channel = this._pending.get(message.id) ?? null;
    if (typeof channel !== "string") return;
    const known = this.positions.get(channel);
    if (!known || known.epoch !== message.epoch || Number(known.offset) < Number(message.offset)) {
      this.positions.set(channel, { offset: message.offset, epoch: message.epoch });
    }
  }

  /** Connect (again), unless already connecting or open. */
  start() {
    if (this.state === "connecting" || this.state === "open") return;
    this._clearPending(); // "closed": skip the rest of the backoff
    this._generation += 1;
    this._failures = 0;
    this._attempt(this._generation);
  }

  /**
   * Close the socket (if any) and stay disconnected until start().
   * @param {number} [code=1000]  1000 or 3000-4999, as WebSocket.close() allows
   * @param {string} [reason="client stopped"]
   */
  stop(code = CloseCode.NORMAL, reason = "client stopped") {
    this._generation += 1;
    this._clearPending();
    const socket = this.socket;
    this.socket = null;
    if (socket && socket.readyState <= 1 /* CONNECTING or OPEN */) socket.close(code, reason);
    this._setStatus({ state: "stopped", code, reason });
  }

  _clearPending() {
    clearTimeout(this._timer);
    this._timer = null;
    if (this._abort) this._abort.abort();
    this._abort = null;
  }

  /** @param {Partial<Status> & {state: State}} status */
  _setStatus(status) {
    this.state = status.state;
    this._notify(this.onStatus, { attempt: this._failures + 1, ...status });
  }

  /** Call a page callback; its exception is reported, but cannot stall the reconnect logic. */
  _notify(callback, ...args) {
    try {
      callback(...args);
    } catch (error) {
      setTimeout(() => {
        throw error;
      }, 0);
    }
  }

  async _attempt(generation) {
    this._timer = null;
    this._setStatus({ state: "connecting" });
    const ticket = this._ticket;
    this._ticket = null;
    if (ticket && Date.now() < ticket.until) {
      this._open(generation, { url: ticket.url }, ticket.value);
      return;
    }
    let grant;
    try {
      this.tokenFetches += 1;
      grant = await this._fetchToken();
    } catch (error) {
      if (generation !== this._generation) return;
      if (error instanceof TokenError && error.terminal) {
        this._generation += 1;
        this._setStatus({ state: "stopped", reason: error.code, httpStatus: error.status });
      } else {
        const code = error instanceof TokenError ? error.code : "token_fetch_failed";
        this._retry(generation, { reason: code, httpStatus: error.status ?? 0 });
      }
      return;
    }
    if (generation !== this._generation) return;
    this._open(generation, grant);
  }

  /** @returns {Promise<{token: string, url: string, expires_in: number}>} */
  async _fetchToken() {
    const abort = new AbortController();
    this._abort = abort;
    let response;
    try {
      response = await this._fetch(this.tokenUrl, {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: { "X-WSAuth-CSRF": "1" },
        signal: abort.signal,
      });
    } catch {
      throw new TokenError(0, "token_fetch_failed");
    } finally {
      if (this._abort === abort) this._abort = null;
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok || typeof body.token !== "string") {
      throw new TokenError(response.status, body.error || "bad_token_answer");
    }
    return body;
  }

  _open(generation, grant, ticket = null) {
    const url = this.url ?? grant.url;
    const credential = ticket === null ? BEARER_PREFIX + grant.token : RESUME_PREFIX + ticket;
    let socket;
    try {
      socket = new this._WebSocket(url, [SUBPROTOCOL, credential]);
    } catch {
      // A malformed URL or one the page's CSP forbids: retrying will not fix it.
      this._generation += 1;
      this._setStatus({ state: "stopped", reason: "bad_gateway_url" });
      return;
    }
    this.socket = socket;
    let openedAt = null;
    let next = null; // the ticket of this connection's welcome: {value, ttl}

    socket.addEventListener("open", () => {
      if (generation !== this._generation) return;
      if (socket.protocol !== SUBPROTOCOL) {
        // Not a wsauth gateway: it must select "wsauth" and never the token.
        socket.close(CloseCode.NORMAL, "wrong subprotocol");
        return;
      }
      openedAt = Date.now();
      if (ticket !== null) this.resumes += 1;
      this._setStatus({ state: "open" });
    });

    socket.addEventListener("message", (event) => {
      if (generation !== this._generation) return;
      let message = event.data;
      if (typeof message === "string") {
        try {
          message = JSON.parse(message);
        } catch {
          // not JSON: hand over the text as it came
        }
      }
      if (message && message.type === "welcome") {
        if (typeof message.resume === "string") {
          next = { value: message.resume, ttl: Number(message.resume_ttl) || 0 };
          delete message.resume;
          delete message.resume_ttl;
        }
        this._subscribeAll(socket);
      } else {
        this._track(message);
        if (message && message.type === "reply") this._pending.delete(message.id);
      }
      this._notify(this.onMessage, message, event);
    });

    socket.addEventListener("close", (event) => {
      if (generation !== this._generation) return;
      this.socket = null;
      const lived = openedAt === null ? 0 : Date.now() - openedAt;
      if (lived >= this.stableAfter) this._failures = 0;
      const { code, reason, wasClean } = event;
      const terminal = [CloseCode.NORMAL, CloseCode.REVOKED, CloseCode.REAUTHENTICATE];
      if (next && !terminal.includes(code)) {
        this._ticket = { value: next.value, url, until: Date.now() + next.ttl * 1000 };
      }
      if (code === CloseCode.NORMAL || code === CloseCode.REVOKED) {
        this._generation += 1;
        this._notify(this.onClose, { code, reason, wasClean, willRetry: false });
        this._setStatus({ state: "stopped", code, reason });
      } else if (ticket !== null && openedAt === null) {
        // The ticket was refused (or the gateway unreachable): a fresh token, at once.
        this._notify(this.onClose, { code, reason, wasClean, willRetry: true, delay: 0 });
        this._retry(generation, { code, reason }, 0);
      } else if (code === CloseCode.REAUTHENTICATE && lived >= MIN_REAUTHENTICATE_AGE_MS) {
        this._notify(this.onClose, { code, reason, wasClean, willRetry: true, delay: 0 });
        this._retry(generation, { code, reason }, 0);
      } else {
        // 1001, 1006 (also a refused handshake), 1009, 1011, 4003, ...: back off.
        const delay = this._nextDelay();
        this._notify(this.onClose, { code, reason, wasClean, willRetry: true, delay });
        this._retry(generation, { code, reason }, delay);
      }
    });
  }

  /** Full jitter: uniform in [0, min(cap, base * 2^failures)). */
  _nextDelay() {
    const ceiling = Math.min(this.maxDelay, this.baseDelay * 2 ** this._failures);
    this._failures += 1;
    return Math.floor(this._random() * ceiling);
  }

  _retry(generation, status, delay = this._nextDelay()) {
    this._setStatus({ state: "closed", ...status, delay });
    this._timer = setTimeout(() => {
      if (generation === this._generation) this._attempt(generation);
    }, delay);
  }
}

/**
 * Create a client and start connecting.
 * @param {Options} [options]
 * @returns {WsAuthClient}
 */
export function connect(options = {}) {
  const client = new WsAuthClient(options);
  client.start();
  return client;
}
