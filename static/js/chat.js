// The chat demo: one room is one channel "<namespace>:<room>" on the official SDK.
//
// Messages are publications {type: "msg", name, text, ts}; any other object with a
// string `text` shows as a message too, and every other publication as its JSON. The page sends its name
// as the connect data ({name}); the server's connecting hook (examples/chat_app.py,
// loaded by `make run`) makes it the connection's info, so messages, presence and
// join/leave name people by their connection's info, then by their user (a
// token's), then as guest-<client id>. A message's own `name` is only a fallback
// (a server without the hook, or history from before it).
// Recovery is the SDK's: a recoverable subscription resubscribes after a reconnect
// from its last offset; when the server cannot give back what was missed, the page
// says so and reloads the latest history instead.
// Transports: WebSocket first; where it cannot connect (a proxy or firewall that
// blocks it, a browser without it) the SDK falls back to HTTP streaming, then SSE,
// both on this page's origin (their later commands go to its /emulation). The
// status line names the transport in use.
(() => {
  'use strict';

  const HISTORY_LIMIT = 50;
  const NAME_MAX = 32;
  const $ = (id) => document.getElementById(id);
  const namespace = document.body.dataset.namespace || 'chat';
  const params = new URLSearchParams(location.search);
  const token = params.get('token') || ''; // from `python run.py token USER`; '' is anonymous
  const wsURL = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/connection/websocket`;
  const TRANSPORTS = [
    { transport: 'websocket', endpoint: wsURL },
    { transport: 'http_stream', endpoint: '/connection/http_stream' },
    { transport: 'sse', endpoint: '/connection/sse' },
  ];
  const TRANSPORT_NAMES = { websocket: 'WebSocket', http_stream: 'HTTP streaming', sse: 'SSE' };

  let client = null;
  let sub = null;
  let myName = '';
  let everConnected = false;
  let recovering = null; // {count} while recovered publications are being delivered
  const myClients = new Set(); // our own client ids, one per connection
  let currentClient = '';
  let currentTransport = ''; // the SDK's name of the transport connected over
  const present = new Map(); // client id -> ClientInfo
  const shown = new Set(); // offsets rendered (current epoch)

  // Status and notices ---------------------------------------------------------

  // `transport`: the SDK's name of the transport in use, shown while connected.
  function setStatus(state, text, transport = '') {
    const el = $('status');
    el.dataset.state = state;
    el.dataset.transport = transport;
    el.textContent = text;
    if (transport) {
      const via = document.createElement('span');
      via.className = 'via';
      via.textContent = ` · ${TRANSPORT_NAMES[transport] || transport}`;
      el.append(via);
    }
  }

  function setOnline() {
    setStatus('connected', 'online', currentTransport);
  }

  let noticeTimer = 0;
  function notice(kind, text) {
    const el = $('notice');
    el.dataset.kind = kind;
    el.textContent = text;
    el.hidden = false;
    clearTimeout(noticeTimer);
    if (kind === 'info') noticeTimer = setTimeout(() => { el.hidden = true; }, 6000);
  }

  function cleanName(value) {
    return String(value || '').trim().slice(0, NAME_MAX);
  }

  // The name the server gave a connection (ClientInfo: the SDK's `connInfo`, or
  // `conn_info` as presence has it).
  function connName(info) {
    const connInfo = info.connInfo || info.conn_info;
    return connInfo && typeof connInfo === 'object' ? cleanName(connInfo.name) : '';
  }

  function nameOf(info, fallback) {
    if (!info) return cleanName(fallback) || 'server';
    return connName(info) || cleanName(fallback) || cleanName(info.user) || `guest-${String(info.client).slice(0, 4)}`;
  }

  // Messages -------------------------------------------------------------------

  function nearBottom(list) {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  }

  function insert(li, offset) {
    const list = $('messages');
    const stick = nearBottom(list);
    li.dataset.offset = offset ? String(offset) : '';
    let before = null;
    if (offset) {
      for (const other of list.children) {
        const o = Number(other.dataset.offset);
        if (o && o > offset) { before = other; break; }
      }
    }
    list.insertBefore(li, before);
    if (stick || !before) list.scrollTop = list.scrollHeight;
  }

  function systemLine(text, offset) {
    const li = document.createElement('li');
    li.className = 'system';
    li.textContent = text;
    insert(li, offset);
  }

  function timeText(ms) {
    const d = typeof ms === 'number' && Number.isFinite(ms) ? new Date(ms) : new Date();
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  // The text of a message-shaped publication: the page's own {type: "msg", text}, or
  // any object with a string `text` (what the README publishes); null otherwise.
  function messageText(data) {
    if (!data || typeof data !== 'object' || Array.isArray(data)) return null;
    if (data.type === 'msg') return String(data.text || '');
    if (data.type === undefined && typeof data.text === 'string') return data.text;
    return null;
  }

  // Any other publication (a number, a string, an object of another shape, from the
  // server API or another program) is shown as its JSON. Always through textContent:
  // the data is whatever a publisher sent.
  function rawText(data) {
    try {
      const json = JSON.stringify(data);
      return json === undefined ? String(data) : json;
    } catch (err) {
      return String(data);
    }
  }

  function render(pub) {
    const data = pub.data;
    if (pub.offset) {
      if (shown.has(pub.offset)) return;
      shown.add(pub.offset);
    }
    const message = messageText(data);
    const li = document.createElement('li');
    li.className = message === null ? 'msg raw' : 'msg';
    if (pub.info && myClients.has(pub.info.client)) li.classList.add('mine');
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = nameOf(pub.info, data && typeof data === 'object' ? data.name : '');
    const time = document.createElement('time');
    time.textContent = timeText(data && typeof data === 'object' ? data.ts : undefined);
    const text = document.createElement(message === null ? 'code' : 'span');
    text.className = 'text';
    text.textContent = message === null ? rawText(data) : message;
    li.append(who, time, text);
    insert(li, pub.offset);
  }

  function clearMessages() {
    $('messages').replaceChildren();
    shown.clear();
  }

  async function loadHistory() {
    const result = await sub.history({ limit: HISTORY_LIMIT, reverse: true });
    for (const pub of result.publications.slice().reverse()) render(pub);
  }

  // Presence -------------------------------------------------------------------

  function renderPresence() {
    const counts = new Map();
    const mine = new Set();
    for (const [id, info] of present) {
      // Our earlier connections linger in presence until their entries expire on a
      // server that died; they are us, not someone else.
      if (myClients.has(id) && id !== currentClient) continue;
      const name = nameOf(info);
      counts.set(name, (counts.get(name) || 0) + 1);
      if (myClients.has(id)) mine.add(name);
    }
    const items = [...counts.keys()].sort((a, b) => a.localeCompare(b)).map((name) => {
      const li = document.createElement('li');
      li.textContent = name + (counts.get(name) > 1 ? ` ×${counts.get(name)}` : '');
      li.dataset.name = name;
      if (mine.has(name)) li.classList.add('me');
      return li;
    });
    $('presence').replaceChildren(...items);
    $('count').textContent = String(counts.size);
  }

  async function loadPresence() {
    try {
      const result = await sub.presence();
      present.clear();
      for (const [id, info] of Object.entries(result.clients)) present.set(id, info);
      renderPresence();
    } catch (err) {
      console.warn('presence unavailable:', err && err.message);
    }
  }

  // Subscription events ----------------------------------------------------------

  async function onSubscribed(ctx) {
    setOnline();
    if (ctx.wasRecovering && !ctx.recovered) {
      notice('warn', 'Reconnected, but the messages missed meanwhile could not be recovered; showing the latest history instead.');
      clearMessages();
      await loadHistory();
    } else if (ctx.wasRecovering) {
      // The recovered publications are delivered right after this event.
      recovering = { count: 0 };
      setTimeout(() => {
        const n = recovering ? recovering.count : 0;
        recovering = null;
        notice('info', n ? `Reconnected and recovered ${n} missed message${n === 1 ? '' : 's'}.` : 'Reconnected; nothing was missed.');
      }, 0);
    } else {
      clearMessages();
      await loadHistory();
    }
    await loadPresence();
  }

  // "<name> joined" and "<name> left" only when no other connection here has that
  // name (a second tab, a reconnect), by the names the server gave.
  function othersNamed(name, client) {
    return [...present].some(([id, info]) => id !== client && nameOf(info) === name);
  }

  function onJoin(ctx) {
    const name = nameOf(ctx.info);
    if (!othersNamed(name, ctx.info.client)) systemLine(`${name} joined`, 0);
    present.set(ctx.info.client, ctx.info);
    renderPresence();
  }

  function onLeave(ctx) {
    const name = nameOf(ctx.info);
    present.delete(ctx.info.client);
    if (!othersNamed(name, ctx.info.client)) systemLine(`${name} left`, 0);
    renderPresence();
  }

  function report(what) {
    return (err) => {
      console.warn(what, err);
      notice('warn', `${what}: ${(err && err.message) || 'failed'}`);
    };
  }

  // Joining and leaving ----------------------------------------------------------

  function join(name, room) {
    myName = name;
    everConnected = false;
    present.clear();
    clearMessages();
    $('room-title').textContent = `#${room}`;
    $('join').hidden = true;
    $('chat').hidden = false;
    $('notice').hidden = true;

    // `data` is sent with every connect: the server's hook names us from it.
    client = new Centrifuge(TRANSPORTS, { token, data: { name }, name: 'wsfan-chat', maxReconnectDelay: 5000 });
    client.on('connecting', () => setStatus('connecting', everConnected ? 'reconnecting…' : 'connecting…'));
    client.on('connected', (ctx) => {
      everConnected = true;
      myClients.add(ctx.client);
      currentClient = ctx.client;
      currentTransport = ctx.transport;
      setOnline();
    });
    client.on('disconnected', (ctx) => setStatus('disconnected', `offline: ${ctx.reason}`));
    client.on('error', (ctx) => console.warn('connection:', ctx.error && ctx.error.message));

    sub = client.newSubscription(`${namespace}:${room}`, { recoverable: true, positioned: true, joinLeave: true });
    sub.on('subscribed', (ctx) => onSubscribed(ctx).catch(report('Could not load the room')));
    sub.on('publication', (ctx) => {
      if (recovering) recovering.count += 1;
      render(ctx);
    });
    sub.on('join', onJoin);
    sub.on('leave', onLeave);
    sub.on('error', (ctx) => console.warn('subscription:', ctx.error && ctx.error.message));
    sub.on('unsubscribed', (ctx) => {
      if (ctx.code !== 0) notice('warn', `Left the room: ${ctx.reason}`);
    });
    sub.subscribe();
    client.connect();
  }

  function leave() {
    if (client) client.disconnect();
    client = null;
    sub = null;
    history.replaceState(null, '', location.pathname + location.search);
    $('chat').hidden = true;
    $('join').hidden = false;
    setStatus('idle', 'not connected');
  }

  function cleanRoom(value) {
    return String(value || '').trim().replace(/[^A-Za-z0-9_.-]+/g, '-').slice(0, 64);
  }

  $('name').value = cleanName(localStorage.getItem('wsfan.name')) || `guest${Math.floor(Math.random() * 9000 + 1000)}`;
  $('room').value = cleanRoom(decodeURIComponent(location.hash.slice(1))) || 'lobby';

  $('join').addEventListener('submit', (event) => {
    event.preventDefault();
    const name = cleanName($('name').value);
    const room = cleanRoom($('room').value);
    if (!name || !room) return;
    localStorage.setItem('wsfan.name', name);
    history.replaceState(null, '', `#${encodeURIComponent(room)}`);
    join(name, room);
    $('text').focus();
  });

  $('leave').addEventListener('click', leave);

  $('send').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('text');
    const text = input.value.trim();
    if (!text || !sub) return;
    sub.publish({ type: 'msg', name: myName, text, ts: Date.now() })
      .then(() => { input.value = ''; })
      .catch(report('Not sent'));
  });
})();
