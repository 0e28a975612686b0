// The admin page (/admin): a client of the server HTTP API and nothing else.
//
// Every call is `POST /api/<method>` with the operator's key in the X-API-Key
// header, so the page can do exactly what the key may do (its scopes), no more.
// The key lives in this tab's sessionStorage (never in a URL, never logged);
// "forget key" removes it, and so does the server refusing it (401).
//
// Everything shown (channel names, presence, publications, node names) comes from
// clients or other servers: it is rendered with textContent only, never as HTML.
(() => {
  'use strict';

  const STORAGE_KEY = 'wsfan.admin.apiKey';
  const HISTORY_LIMIT = 20; // publications shown, newest first
  const MAX_LIMIT = 10000; // channels shown at most, whatever the operator asks
  const $ = (id) => document.getElementById(id);
  const fmt0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const fmt1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

  let channel = null; // the channel open in the channel panel
  let generation = 0; // bumped when the key goes: answers to earlier calls are dropped

  // The key ------------------------------------------------------------------------

  function storedKey() {
    try {
      return sessionStorage.getItem(STORAGE_KEY) || '';
    } catch (err) {
      return ''; // storage disabled: the page cannot keep a key
    }
  }

  function storeKey(key) {
    sessionStorage.setItem(STORAGE_KEY, key);
  }

  function dropKey() {
    try {
      sessionStorage.removeItem(STORAGE_KEY);
    } catch (err) {
      // nothing was kept
    }
  }

  // The API --------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status; // HTTP status; 200 for a method's own error, 0 for no answer
    }
  }

  function describe(error) {
    if (!error || typeof error !== 'object') return '';
    const code = typeof error.code === 'number' ? `error ${error.code}` : 'error';
    return typeof error.message === 'string' && error.message ? `${code}: ${error.message}` : code;
  }

  // The method's result; ApiError with what went wrong. A 401 forgets the key.
  async function api(method, params, key = storedKey()) {
    let response;
    try {
      response = await fetch(`/api/${method}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-API-Key': key },
        body: JSON.stringify(params || {}),
        cache: 'no-store',
        credentials: 'omit',
        redirect: 'error',
        referrerPolicy: 'no-referrer',
      });
    } catch (err) {
      throw new ApiError(`${method}: the server did not answer`, 0);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    const error = body && typeof body === 'object' ? body.error : null;
    if (response.status === 401) {
      if (key === storedKey()) refused();
      throw new ApiError('The server refused this API key (401).', 401);
    }
    if (!response.ok) {
      const why = describe(error);
      throw new ApiError(`${method}: HTTP ${response.status}${why ? ` (${why})` : ''}`, response.status);
    }
    if (error) throw new ApiError(`${method}: ${describe(error)}`, 200);
    if (!body || typeof body.result !== 'object' || body.result === null) {
      throw new ApiError(`${method}: unexpected answer`, response.status);
    }
    return body.result;
  }

  // Output ---------------------------------------------------------------------------

  function setStatus(state, text) {
    $('status').dataset.state = state;
    $('status').textContent = text;
  }

  function notice(text) {
    $('notice').textContent = text;
    $('notice').dataset.kind = 'warn';
    $('notice').hidden = !text;
  }

  // kind: "ok", "warn" or "" (hides the line)
  function result(id, kind, text) {
    const el = $(id);
    el.dataset.kind = kind;
    el.textContent = text;
    el.hidden = !kind;
  }

  function fail(id, err) {
    if (err instanceof ApiError && err.status === 401) return; // said once, by refused()
    result(id, 'warn', err instanceof Error ? err.message : String(err));
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function json(value) {
    try {
      const text = JSON.stringify(value, null, 2);
      return text === undefined ? String(value) : text;
    } catch (err) {
      return String(value);
    }
  }

  const count = (v) => (typeof v === 'number' && Number.isFinite(v) ? fmt0.format(v) : '–');
  const text = (v) => (v === undefined || v === null ? '' : String(v));

  function duration(seconds) {
    if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return '–';
    if (seconds < 90) return `${Math.round(seconds)} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    return `${fmt1.format(seconds / 3600)} h`;
  }

  function button(label, onClick) {
    const b = el('button', 'link', label);
    b.type = 'button';
    b.addEventListener('click', onClick);
    return b;
  }

  // Runs `work` with the form's buttons disabled, so one click is one request.
  async function busy(form, work) {
    const buttons = form.querySelectorAll('button');
    for (const b of buttons) b.disabled = true;
    try {
      await work();
    } finally {
      for (const b of buttons) b.disabled = false;
    }
  }

  function comparePlain(a, b) {
    return a < b ? -1 : a > b ? 1 : 0; // by code unit, as the server sorts
  }

  // Nodes ----------------------------------------------------------------------------

  async function loadNodes() {
    result('nodes-result', '', '');
    const gen = generation;
    try {
      const { nodes } = await api('info', {});
      if (gen !== generation) return;
      const rows = (Array.isArray(nodes) ? nodes : []).map((n) => {
        const tr = el('tr');
        tr.append(
          el('td', 'name', text(n.name)), el('td', 'uid', text(n.uid)), el('td', '', text(n.version)),
          el('td', '', count(n.num_clients)), el('td', '', count(n.num_users)),
          el('td', '', count(n.num_subs)), el('td', '', count(n.num_channels)), el('td', '', duration(n.uptime)),
        );
        return tr;
      });
      $('nodes').replaceChildren(...rows);
      result('nodes-result', 'ok', `${rows.length} node${rows.length === 1 ? '' : 's'}.`);
    } catch (err) {
      if (gen === generation) fail('nodes-result', err);
    }
  }

  // Channels ---------------------------------------------------------------------------

  function wantedLimit() {
    const limit = Number($('limit').value);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      throw new Error(`Limit: a whole number from 1 to ${MAX_LIMIT}.`);
    }
    return limit;
  }

  async function loadChannels() {
    result('channels-result', '', '');
    let limit;
    try {
      limit = wantedLimit();
    } catch (err) {
      fail('channels-result', err);
      return;
    }
    const pattern = $('pattern').value;
    const gen = generation;
    try {
      const answer = await api('channels', pattern ? { pattern } : {});
      if (gen !== generation) return;
      const all = Object.entries(answer.channels || {}).sort(([a], [b]) => comparePlain(a, b));
      const rows = all.slice(0, limit).map(([name, info]) => {
        const tr = el('tr');
        tr.dataset.channel = name;
        const open = button('open', () => openChannel(name));
        open.setAttribute('aria-label', `open channel ${name}`);
        const action = el('td');
        action.append(open);
        tr.append(el('td', 'name', name), el('td', '', count(info && info.num_clients)), action);
        return tr;
      });
      $('channels').replaceChildren(...rows);
      const cut = all.length > limit ? ` (the first ${fmt0.format(limit)} shown: the page applies the limit)` : '';
      result('channels-result', 'ok', `${fmt0.format(all.length)} channel${all.length === 1 ? '' : 's'}${cut}.`);
    } catch (err) {
      if (gen === generation) fail('channels-result', err);
    }
  }

  // A channel: presence, history, publish ----------------------------------------------

  function openChannel(name) {
    channel = name;
    $('channel-name').textContent = name;
    $('unsubscribe-channel').value = name;
    $('presence').replaceChildren();
    $('history').replaceChildren();
    result('publish-result', '', '');
    $('channel-panel').hidden = false;
    $('channel-panel').scrollIntoView({ block: 'start' });
    return refreshChannel();
  }

  function refreshChannel() {
    return Promise.all([loadPresence(), loadHistory()]);
  }

  async function userAction(method, info, resultId) {
    const params = { user: text(info.user), client: text(info.client) };
    if (method === 'unsubscribe') params.channel = channel;
    try {
      await api(method, params);
      const who = params.user ? `user ${params.user}, client ${params.client}` : `client ${params.client}`;
      result(resultId, 'ok', `${method === 'disconnect' ? 'Disconnect' : 'Unsubscribe'} sent (${who}).`);
    } catch (err) {
      fail(resultId, err);
    }
  }

  function presenceEntry(info) {
    const li = el('li', 'entry');
    li.dataset.client = text(info.client);
    const head = el('div', 'entry-head');
    head.append(
      el('span', 'who', info.user ? `user ${text(info.user)}` : 'anonymous'),
      el('span', 'meta', `client ${text(info.client)}`),
    );
    li.append(head);
    if (info.conn_info !== undefined) li.append(el('pre', 'data conn-info', json(info.conn_info)));
    if (info.chan_info !== undefined) li.append(el('pre', 'data chan-info', json(info.chan_info)));
    const actions = el('div', 'entry-actions');
    actions.append(
      button('disconnect', () => userAction('disconnect', info, 'presence-result')),
      button('unsubscribe', () => userAction('unsubscribe', info, 'presence-result')),
    );
    li.append(actions);
    return li;
  }

  async function loadPresence() {
    const name = channel;
    result('presence-result', '', '');
    try {
      const answer = await api('presence', { channel: name });
      if (name !== channel) return;
      const entries = Object.values(answer.presence || {})
        .filter((info) => info && typeof info === 'object')
        .sort((a, b) => comparePlain(text(a.user), text(b.user)) || comparePlain(text(a.client), text(b.client)));
      $('presence').replaceChildren(...entries.map(presenceEntry));
      result('presence-result', 'ok', `${entries.length} client${entries.length === 1 ? '' : 's'} subscribed.`);
    } catch (err) {
      if (name === channel) fail('presence-result', err);
    }
  }

  function historyEntry(pub) {
    const li = el('li', 'entry');
    li.dataset.offset = text(pub.offset);
    const head = el('div', 'entry-head');
    head.append(el('span', 'who', pub.offset ? `#${text(pub.offset)}` : 'publication'));
    if (pub.info && typeof pub.info === 'object') {
      head.append(el('span', 'meta', pub.info.user ? `by user ${text(pub.info.user)}` : `by client ${text(pub.info.client)}`));
    }
    li.append(head, el('pre', 'data', json(pub.data)));
    if (pub.tags && typeof pub.tags === 'object') li.append(el('pre', 'data tags', json(pub.tags)));
    return li;
  }

  async function loadHistory() {
    const name = channel;
    result('history-result', '', '');
    try {
      const answer = await api('history', { channel: name, limit: HISTORY_LIMIT, reverse: true });
      if (name !== channel) return;
      const pubs = Array.isArray(answer.publications) ? answer.publications : [];
      $('history').replaceChildren(...pubs.filter((p) => p && typeof p === 'object').map(historyEntry));
      const where = answer.offset !== undefined ? ` Stream position: offset ${text(answer.offset)}, epoch ${text(answer.epoch)}.` : '';
      result('history-result', 'ok', `${pubs.length} publication${pubs.length === 1 ? '' : 's'} shown.${where}`);
    } catch (err) {
      if (name === channel) fail('history-result', err);
    }
  }

  async function publish() {
    result('publish-result', '', '');
    const raw = $('publish-data').value;
    let data;
    try {
      if (!raw.trim()) throw new Error('type some JSON, e.g. {"text": "hello"}');
      data = JSON.parse(raw);
    } catch (err) {
      result('publish-result', 'warn', `Not sent: the data is not valid JSON (${err.message}).`);
      return;
    }
    const name = channel;
    try {
      const answer = await api('publish', { channel: name, data });
      const at = answer.offset ? ` at offset ${text(answer.offset)}` : ' (the channel keeps no history)';
      result('publish-result', 'ok', `Published${at}.`);
      if (name === channel) await loadHistory();
    } catch (err) {
      fail('publish-result', err);
    }
  }

  // Users ------------------------------------------------------------------------------

  async function targetForm(method, prefix) {
    const id = `${prefix}-result`;
    result(id, '', '');
    const params = { user: $(`${prefix}-user`).value.trim(), client: $(`${prefix}-client`).value.trim() };
    if (!params.user && !params.client) {
      result(id, 'warn', 'Name a user, or a client id (an anonymous connection).');
      return;
    }
    if (method === 'unsubscribe') params.channel = $('unsubscribe-channel').value;
    try {
      await api(method, params);
      result(id, 'ok', `Sent to every node; it acts on the connections it holds.`);
    } catch (err) {
      fail(id, err);
    }
  }

  // The key's life -----------------------------------------------------------------------

  function clearAll() {
    generation += 1;
    channel = null;
    for (const id of ['nodes', 'channels', 'presence', 'history']) $(id).replaceChildren();
    for (const id of ['nodes-result', 'channels-result', 'presence-result', 'history-result',
      'publish-result', 'disconnect-result', 'unsubscribe-result']) result(id, '', '');
    $('channel-panel').hidden = true;
    $('channel-name').textContent = '';
  }

  function showKeyForm() {
    clearAll();
    $('console').hidden = true;
    $('key-set').hidden = true;
    $('key-form').hidden = false;
    setStatus('idle', 'no key');
  }

  function showConsole() {
    notice('');
    $('key-form').hidden = true;
    $('key-set').hidden = false;
    $('console').hidden = false;
    setStatus('connected', 'key in use');
    loadNodes();
    loadChannels();
  }

  function refused() {
    dropKey();
    showKeyForm();
    notice('The server refused the API key (401): enter a valid one.');
  }

  $('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const key = $('key').value.trim();
    if (!key) return;
    busy($('key-form'), async () => {
      notice('');
      try {
        await api('info', {}, key);
      } catch (err) {
        // 403: a known key without the `info` scope; it may still do the rest.
        if (err.status !== 403) {
          notice(err.status === 401 ? 'The server refused this API key (401).' : err.message);
          return;
        }
      }
      $('key').value = '';
      try {
        storeKey(key);
      } catch (err) {
        notice('This browser does not let the page keep the key (session storage is off).');
        return;
      }
      showConsole();
    });
  });

  $('forget').addEventListener('click', () => {
    dropKey();
    showKeyForm();
    notice('');
  });

  $('nodes-refresh').addEventListener('click', loadNodes);
  $('channels-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy($('channels-form'), loadChannels);
  });
  $('open-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const name = $('open-name').value;
    if (name) openChannel(name);
  });
  $('channel-refresh').addEventListener('click', refreshChannel);
  $('publish-form').addEventListener('submit', (event) => {
    event.preventDefault();
    if (channel !== null) busy($('publish-form'), publish);
  });
  $('disconnect-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy($('disconnect-form'), () => targetForm('disconnect', 'disconnect'));
  });
  $('unsubscribe-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy($('unsubscribe-form'), () => targetForm('unsubscribe', 'unsubscribe'));
  });

  if (storedKey()) showConsole();
  else showKeyForm();
})();
