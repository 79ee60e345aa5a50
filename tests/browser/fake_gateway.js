// A scripted issuer and gateway for testing /static/wsauth.js in the browser without servers.
//
// run(plans, options) starts a WsAuthClient whose fetch and WebSocket are fakes. Each
// connection attempt takes the next plan:
//   {token: 200}                     the token endpoint answers (default 200; 401, 403, 503, ...)
//   {refuse: true}                   the handshake fails: close 1006, never open
//   {close: 4002, after: 600}        open, send a welcome, close with that code after `after` ms
//   {}                               open and stay open
//   {welcome: {...}, messages: [...]} the welcome to send (default {type, sub}), frames after it
// An attempt with a resume ticket fetches no token: it takes the next plan itself.
// It resolves once `until(status)` is true for a status the client reports (or rejects
// after `timeout` ms), with everything the client did, the welcome `push` results given to
// onPushRecovered (`pushRecovered`) and the client's `pushPosition` at that moment.

import { WsAuthClient } from "/static/wsauth.js";

let tokenCounter = 0;

export function run(plans, { until, timeout = 5000, clientOptions = {}, afterStop = 0 } = {}) {
  // `after`: statuses reported once `until` held (the test's own stop() included).
  const record = {
    statuses: [], after: [], closes: [], messages: [], fetches: [], offered: [], sent: [],
    pushRecovered: [],
  };
  let done = false;
  let planIndex = -1;
  const plan = () => plans[Math.min(planIndex, plans.length - 1)] ?? {};

  async function fakeFetch(url, init) {
    planIndex += 1;
    record.fetches.push({
      url,
      method: init.method,
      credentials: init.credentials,
      csrf: init.headers["X-WSAuth-CSRF"],
    });
    const status = plan().token ?? 200;
    tokenCounter += 1;
    const body = status === 200
      ? { token: `header.payload${tokenCounter}.signature`, expires_in: 30, url: "ws://gateway.test/ws" }
      : { error: status === 401 ? "not_authenticated" : "redis_unavailable" };
    return new Response(JSON.stringify(body), {
      status,
      headers: { "Content-Type": "application/json" },
    });
  }

  class FakeWebSocket extends EventTarget {
    constructor(url, protocols) {
      super();
      this.url = url;
      this.protocol = "";
      this.readyState = 0;
      record.offered.push(protocols);
      if (protocols.some((value) => value.startsWith("wsauth.resume."))) planIndex += 1;
      const current = plan();
      setTimeout(() => {
        if (current.refuse) return this._closed(1006, "");
        this.readyState = 1;
        this.protocol = protocols[0];
        this.dispatchEvent(new Event("open"));
        const welcome = current.welcome ?? { type: "welcome", sub: "alice" };
        for (const frame of [welcome, ...(current.messages ?? [])]) {
          this.dispatchEvent(new MessageEvent("message", { data: JSON.stringify(frame) }));
        }
        if (current.close !== undefined) {
          setTimeout(() => this._closed(current.close, current.reason ?? ""), current.after ?? 0);
        }
      }, 0);
    }

    send(data) {
      record.sent.push(JSON.parse(data));
    }

    close(code = 1000, reason = "") {
      if (this.readyState >= 2) return;
      this.readyState = 2;
      setTimeout(() => this._closed(code, reason), 0);
    }

    _closed(code, reason) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.dispatchEvent(new CloseEvent("close", { code, reason, wasClean: code !== 1006 }));
    }
  }

  return new Promise((resolve, reject) => {
    let client;
    const timer = setTimeout(() => {
      client.stop();
      reject(new Error(`timed out; statuses: ${JSON.stringify(record.statuses)}`));
    }, timeout);
    client = new WsAuthClient({
      baseDelay: 10,
      maxDelay: 80,
      random: () => 0.5,
      ...clientOptions,
      fetch: fakeFetch,
      WebSocket: FakeWebSocket,
      onStatus: (status) => {
        if (done) {
          record.after.push(status);
          return;
        }
        record.statuses.push(status);
        if (!until(status, record)) return;
        done = true;
        clearTimeout(timer);
        const state = client.state;
        const pushPosition = client.pushPosition;
        // afterStop: keep watching a while, to show that nothing else happens.
        setTimeout(() => {
          if (client.state !== "stopped") client.stop();
          resolve({ ...record, state, pushPosition });
        }, afterStop);
      },
      onClose: (info) => record.closes.push(info),
      onMessage: (message) => record.messages.push(message),
      onPushRecovered: (push) => record.pushRecovered.push(push),
    });
    client.start();
  });
}
