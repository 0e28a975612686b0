// A test harness for test_sdk_fallback.py, added to a page of the server that
// already loads the vendored SDK (the chat page at /, before anyone joins: a real
// document of the server's own origin, as a browser's network rules expect).
'use strict';
// window.harness: one Centrifuge client of the official SDK, driven from Python
// through page.evaluate. Every event it sees is recorded in harness.events
// (plain objects, so Python can read them); calls return what the SDK returns,
// or reject once harness.timeoutMs passed (page.evaluate itself waits forever).
window.harness = (() => {
  const harness = { timeoutMs: 10000 };
  const within = (what, promise) => Promise.race([promise, new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error(`${what}: nothing within ${harness.timeoutMs} ms`)), harness.timeoutMs);
  })]);
  const events = { connected: [], disconnected: [], errors: [], subscribed: [], publications: [] };
  let client = null;
  const subs = new Map();

  // `transports`: the SDK's list of {transport, endpoint}; `options`: its options
  // (emulationEndpoint, data, reconnect delays). Resolves on the first `connected`.
  function connect(transports, options) {
    client = new Centrifuge(transports, options);
    client.on('disconnected', (ctx) => events.disconnected.push(ctx));
    client.on('error', (ctx) => events.errors.push({
      type: ctx.type, transport: ctx.transport || '', message: (ctx.error && ctx.error.message) || '',
    }));
    const first = new Promise((resolve) => {
      client.on('connected', (ctx) => {
        events.connected.push(ctx);
        resolve(ctx);
      });
    });
    client.connect();
    return within('connect', first);
  }

  // A recoverable, positioned subscription with join/leave; resolves on its first
  // `subscribed` (later ones, after a reconnect, are recorded too).
  function subscribe(channel) {
    const sub = client.newSubscription(channel, { recoverable: true, positioned: true, joinLeave: true });
    subs.set(channel, sub);
    sub.on('publication', (ctx) => events.publications.push({
      channel, data: ctx.data, offset: ctx.offset, info: ctx.info || null,
    }));
    sub.on('error', (ctx) => events.errors.push({
      type: 'subscription', transport: '', message: (ctx.error && ctx.error.message) || '',
    }));
    const first = new Promise((resolve) => {
      sub.on('subscribed', (ctx) => {
        events.subscribed.push(ctx);
        resolve(ctx);
      });
    });
    sub.subscribe();
    return within(`subscribe ${channel}`, first);
  }

  const sub = (channel) => subs.get(channel);
  return Object.assign(harness, {
    events,
    connect,
    subscribe,
    state: () => client.state,
    publish: (channel, data) => within('publish', sub(channel).publish(data)),
    presence: (channel) => within('presence', sub(channel).presence()),
    history: (channel, options) => within('history', sub(channel).history(options)),
    received: (channel) => events.publications.filter((p) => p.channel === channel).map((p) => p.data),
  });
})();
