// wsauth browser client: a dependency-free ES module, served by the issuer at /static/wsauth.js.
//
//   import { connect } from "/static/wsauth.js";
//   const client = connect({
//     onStatus: (status) => console.log(status.state, status.code, status.reason),
//     onMessage: (message) => console.log(message),
//   });
//   // later: client.stop();
//
// Channels and messages to backends (protocol v1, docs/reference/protocol.md):
//
//   await client.subscribe("chat:lobby", (data, message) => show(data));
//   await client.publish("chat:lobby", { text: "hi" });   // needs pub:chat:lobby in the scope
//   await client.send({ order: 42 });                     // to the backends' inbox
//   client.unsubscribe("chat:lobby");
//
// Each command returns a Promise of the gateway's reply; a refusal rejects it with a
// CommandError whose `code` is the reply's error code (e.g. "not_granted"). The client
// re-subscribes its channels after every reconnect, and when the welcome frame carries
// `expires_in` (the gateway's WSAUTH_MAX_CONNECTION_AGE) it re-authenticates in band
// before that deadline: it fetches a fresh token as for a reconnect and sends `refresh`.
// A channel the gateway leaves on its own (a narrower scope after a refresh, or a refused
// re-subscribe) is dropped and reported to `onUnsubscribed(channel, reason)`.
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
//
// Pushes to the user get the same when the gateway keeps their history
// (WSAUTH_HISTORY_USERS): the client keeps the user's position
// (`client.pushPosition`, {offset, epoch}) from the welcome's `push` and from each
// push frame's `offset`/`epoch`, and offers it on every reconnect (ticket or fresh
// token) as one more subprotocol, "wsauth.since.<offset>.<epoch>". The gateway then
// sends the welcome, the missed pushes in order (onMessage, as live ones), then live
// pushes; `onPushRecovered(push)` gets the welcome's `push` when it says whether the
// gap was recovered (`recovered`, `reason`).
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
  TOO_SLOW: 4004,
});

/** The subprotocol the gateway selects; the token rides in a second, "wsauth.bearer.<token>". */
export const SUBPROTOCOL = "wsauth";
const BEARER_PREFIX = "wsauth.bearer.";
const RESUME_PREFIX = "wsauth.resume.";
const SINCE_PREFIX = "wsauth.since.";
// The grammar of a position the gateway accepts back (protocol v1): anything else is
// never offered, since a malformed `wsauth.since.*` is refused with 400.
const OFFSET = /^(0|[1-9][0-9]{0,15})$/;
const EPOCH = /^[A-Za-z0-9_-]{1,32}$/;
// A welcome's push result that leaves the position as it was: the gateway could not tell.
const KEEP_POSITION_REASONS = ["no_history", "redis_unavailable"];

/** {offset, epoch} of a push frame or a welcome's `push`; null when it has none (or a bad one). */
function pushPositionOf(frame) {
  if (frame === null || typeof frame !== "object") return null;
  const { offset, epoch } = frame;
  if (typeof offset !== "string" || !OFFSET.test(offset) || Number(offset) >= 2 ** 53) return null;
  if (typeof epoch !== "string" || !EPOCH.test(epoch)) return null;
  return { offset, epoch };
}

/** The later offset in the same epoch; a new epoch replaces the old. */
function laterPosition(known, seen) {
  if (seen === null) return known;
  if (!known || known.epoch !== seen.epoch || Number(known.offset) < Number(seen.offset)) {
    return seen;
  }
  return known;
}

/**
 * The position to keep after a welcome's `push`. While missed pushes follow the welcome
 * (`recovered: true`, or "history_trimmed": what is left of them), the offered position
 * stays until their frames move it, so a connection lost half-way through offers it
 * again. Otherwise the gateway's position replaces ours (the first one, a new epoch, the
 * true one after "unknown_position"); a history lost with no new position forgets ours.
 */
function welcomePosition(known, push) {
  const { recovered, reason } = push;
  const followed = recovered === true || reason === "history_trimmed";
  if (followed || KEEP_POSITION_REASONS.includes(reason)) return known;
  const position = pushPositionOf(push);
  if (position !== null) return position;
  return recovered === false ? null : known;
}

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
 * @property {(channel: string, reason: string) => void} [onUnsubscribed]
 *           a channel was left without unsubscribe() ("scope_changed", or a re-subscribe's error)
 * @property {(error: Error) => void} [onRefreshError]   an automatic refresh failed (the
 *           gateway then closes with 4002 at the deadline and the client reconnects)
 * @property {number} [refreshAt=0.8]    refresh when this share of `expires_in` has passed
 * @property {number} [baseDelay=500]    first backoff ceiling, ms
 * @property {number} [maxDelay=30000]   backoff cap, ms
 * @property {number} [stableAfter=10000] ms a connection must stay open to reset the backoff
 * @property {() => number} [random=Math.random]  jitter source (tests)
 * @property {typeof fetch} [fetch]      (tests)
 * @property {typeof WebSocket} [WebSocket]  (tests)
 * @property {string[]} [channels]   subscribed on every connection (as subscribe()), recovered by offset
 * @property {(channel: string, reply: object) => void} [onRecovered]  each subscribe reply
 *           that says whether a gap was recovered (`recovered`, `reason`)
 * @property {(push: object) => void} [onPushRecovered]  each welcome's `push` that says
 *           whether the pushes missed since `pushPosition` were recovered (`recovered`, `reason`)
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

/** The gateway refused a command (or the connection went away before its reply). */
export class CommandError extends Error {
  /** @param {string} code  the reply's error code, or "not_connected" / "connection_closed" */
  constructor(code, reply = {}) {
    super(`command refused: ${code}`);
    this.name = "CommandError";
    this.code = code;
    this.reply = reply;
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
    this.onUnsubscribed = options.onUnsubscribed ?? (() => {});
    this.onRefreshError = options.onRefreshError ?? (() => {});
    this.refreshAt = options.refreshAt ?? 0.8;
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
    this._nextId = 0;
    /** @type {Map<number, {resolve: Function, reject: Function}>} replies awaited, by id */
    this._pending = new Map();
    /** @type {Map<string, Set<Function>>} channel -> handlers; kept across reconnects */
    this._channels = new Map();
    for (const channel of options.channels ?? []) this._channels.set(channel, new Set());
    this._refreshTimer = null;
    this._ticket = null; // {value, url, until}: the resume ticket of the last connection
    /** Issuer requests made, and connections opened with a resume ticket (tests, metrics). */
    this.tokenFetches = 0;
    this.resumes = 0;
    /** @type {Map<string, {offset: string, epoch: string}>} last position per channel */
    this.positions = new Map();
    this.onRecovered = options.onRecovered ?? (() => {});
    /** @type {{offset: string, epoch: string} | null} the user's last push position */
    this.pushPosition = null;
    this.onPushRecovered = options.onPushRecovered ?? (() => {});
  }

  /** `subscribe`, with `since` when a position of the channel is known. */
  _subscribeCommand(channel) {
    const command = { type: "subscribe", channel };
    const position = this.positions.get(channel);
    if (position) command.since = { offset: position.offset, epoch: position.epoch };
    return this._command(command).then((reply) => {
      this._track(channel, reply);
      if ("recovered" in reply) this._notify(this.onRecovered, channel, reply);
      return reply;
    });
  }

  /** Keep the last position of `channel` from a message frame or a subscribe reply. */
  _track(channel, frame) {
    const { offset, epoch } = frame;
    if (typeof channel !== "string" || typeof offset !== "string" || typeof epoch !== "string") {
      return;
    }
    const known = this.positions.get(channel);
    if (!known || known.epoch !== epoch || Number(known.offset) < Number(offset)) {
      this.positions.set(channel, { offset, epoch });
    }
  }

  // --- protocol v1 ---------------------------------------------------------------

  /**
   * Subscribe to `channel`; `onMessage(data, message)` gets each of its messages. Resolves
   * once the gateway has subscribed this connection (at once if it already was). While
   * not connected, the channel is remembered and subscribed on the next open.
   * @param {string} channel
   * @param {(data: any, message: object) => void} [onMessage]
   */
  subscribe(channel, onMessage) {
    let handlers = this._channels.get(channel);
    const first = handlers === undefined;
    if (first) {
      handlers = new Set();
      this._channels.set(channel, handlers);
    }
    if (onMessage) handlers.add(onMessage);
    if (!this._isOpen()) return Promise.resolve({ pending: true });
    if (!first) return Promise.resolve({ ok: true });
    return this._subscribeCommand(channel).catch((error) => {
      // A lost connection keeps the channel: it is subscribed again after the reconnect.
      const lost = error.code === "connection_closed" || error.code === "not_connected";
      if (!lost && this._channels.get(channel) === handlers) this._channels.delete(channel);
      throw error;
    });
  }

  /**
   * Stop `onMessage` (or, without it, every handler) getting `channel`; the connection
   * unsubscribes when no handler is left.
   */
  unsubscribe(channel, onMessage) {
    const handlers = this._channels.get(channel);
    if (handlers === undefined) return Promise.resolve({ ok: true });
    if (onMessage) handlers.delete(onMessage);
    if (onMessage && handlers.size > 0) return Promise.resolve({ ok: true });
    this._channels.delete(channel);
    if (!this._isOpen()) return Promise.resolve({ ok: true });
    return this._command({ type: "unsubscribe", channel });
  }

  /** Publish `data` (any JSON value) to `channel`; the scope must grant pub: on it. */
  publish(channel, data) {
    return this._command({ type: "publish", channel, data });
  }

  /** Send `data` (any JSON value) to the backends (the inbox stream). */
  send(data) {
    return this._command({ type: "send", data });
  }

  /**
   * Re-authenticate in band now: a fresh token from the token endpoint, then `refresh`.
   * Resolves with the reply (its `expires_in`); the channels the new scope no longer
   * grants are reported to onUnsubscribed before it resolves.
   */
  async refresh() {
    const generation = this._generation;
    this.tokenFetches += 1;
    const grant = await this._fetchToken();
    if (generation !== this._generation || !this._isOpen()) {
      throw new CommandError("not_connected");
    }
    const reply = await this._command({ type: "refresh", token: grant.token });
    this._scheduleRefresh(reply.expires_in);
    return reply;
  }

  _isOpen() {
    return this.state === "open" && this.socket !== null && this.socket.readyState === 1;
  }

  _command(frame) {
    if (!this._isOpen()) return Promise.reject(new CommandError("not_connected"));
    this._nextId += 1;
    const id = this._nextId;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      this.socket.send(JSON.stringify({ ...frame, id }));
    });
  }

  _onFrame(message) {
    if (message === null || typeof message !== "object") return false;
    if (message.type === "reply" && this._pending.has(message.id)) {
      const { resolve, reject } = this._pending.get(message.id);
      this._pending.delete(message.id);
      if (message.error) reject(new CommandError(message.error, message));
      else resolve(message);
      return true;
    }
    if (message.type === "push") {
      this.pushPosition = laterPosition(this.pushPosition, pushPositionOf(message));
    } else if (message.type === "message") {
      this._track(message.channel, message);
      for (const handler of this._channels.get(message.channel) ?? []) {
        this._notify(handler, message.data, message);
      }
    } else if (message.type === "unsubscribed") {
      this._channels.delete(message.channel);
      this._notify(this.onUnsubscribed, message.channel, message.reason);
    } else if (message.type === "welcome") {
      const push = message.push;
      if (push !== null && typeof push === "object") {
        this.pushPosition = welcomePosition(this.pushPosition, push);
        if ("recovered" in push) this._notify(this.onPushRecovered, push);
      }
      this._scheduleRefresh(message.expires_in);
      this._resubscribe();
    }
    return false;
  }

  _resubscribe() {
    for (const [channel, handlers] of this._channels) {
      this._subscribeCommand(channel).catch((error) => {
        if (error.code === "not_connected" || error.code === "connection_closed") return;
        if (this._channels.get(channel) === handlers) this._channels.delete(channel);
        this._notify(this.onUnsubscribed, channel, error.code);
      });
    }
  }

  _scheduleRefresh(expiresIn) {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    if (typeof expiresIn !== "number" || !(expiresIn > 0)) return;
    const generation = this._generation;
    this._refreshTimer = setTimeout(() => {
      this._refreshTimer = null;
      if (generation !== this._generation || !this._isOpen()) return;
      this.refresh().catch((error) => this._notify(this.onRefreshError, error));
    }, expiresIn * 1000 * this.refreshAt);
  }

  _dropPending(code) {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const { reject } of pending) reject(new CommandError(code));
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
    this._dropPending("connection_closed");
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
    const protocols = [SUBPROTOCOL, credential];
    const since = this.pushPosition;
    if (since) protocols.push(`${SINCE_PREFIX}${since.offset}.${since.epoch}`);
    let socket;
    try {
      socket = new this._WebSocket(url, protocols);
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
      if (message && message.type === "welcome" && typeof message.resume === "string") {
        next = { value: message.resume, ttl: Number(message.resume_ttl) || 0 };
        delete message.resume;
        delete message.resume_ttl;
      }
      if (!this._onFrame(message)) this._notify(this.onMessage, message, event);
    });

    socket.addEventListener("close", (event) => {
      if (generation !== this._generation) return;
      this.socket = null;
      this._dropPending("connection_closed");
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
