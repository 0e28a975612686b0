// The cluster dashboard: a subscriber of the stats channel (sys:stats), where every
// server instance publishes its numbers each second (see server/stats_channel.py).
//
// The page keeps each instance's latest report; every report that arrives adds one
// point of cluster totals (the sum over instances heard from recently), so a history
// replay on load and live reports draw the same way. An instance not heard from for
// three of its intervals is shown as gone and left out of the totals.
(() => {
  'use strict';

  const WINDOW_S = 120; // seconds of charts kept
  const HISTORY_LIMIT = 300; // reports fetched on load to draw the last minutes at once
  const GONE_AFTER = 3; // intervals without a report
  const FORGET_AFTER_MS = 60000;
  const CHART_HEIGHT = 180;
  const $ = (id) => document.getElementById(id);
  const channel = document.body.dataset.statsChannel || 'sys:stats';
  const wsURL = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/connection/websocket`;

  const nodes = new Map(); // id -> {s: report, at: performance.now() when it arrived}
  const points = { t: [], in: [], out: [], conns: [], subs: [], latMax: [], latAvg: [] };
  let lastT = 0;

  // Reports ----------------------------------------------------------------------

  const NUMBERS = ['ts', 'interval', 'uptime', 'connections', 'subscriptions', 'channels',
    'messages_in_per_sec', 'messages_out_per_sec', 'seq'];

  function valid(s) {
    return s && typeof s === 'object' && typeof s.id === 'string' &&
      NUMBERS.every((k) => typeof s[k] === 'number' && Number.isFinite(s[k])) && s.interval > 0 &&
      (s.fanout_latency_ms === null || typeof s.fanout_latency_ms === 'number');
  }

  function liveAt(t) {
    return [...nodes.values()].filter((n) => t - n.s.ts <= GONE_AFTER * n.s.interval);
  }

  function liveNow() {
    const now = performance.now();
    return [...nodes.values()].filter((n) => now - n.at <= GONE_AFTER * n.s.interval * 1000);
  }

  function sum(list, key) {
    return list.reduce((acc, n) => acc + n.s[key], 0);
  }

  function ingest(s, at) {
    const prev = nodes.get(s.id);
    if (prev && prev.s.seq >= s.seq) return;
    nodes.set(s.id, { s, at });
    const t = Math.max(s.ts, lastT);
    lastT = t;
    const live = liveAt(t);
    const lat = live.map((n) => n.s.fanout_latency_ms).filter((v) => v !== null);
    points.t.push(t);
    points.in.push(sum(live, 'messages_in_per_sec'));
    points.out.push(sum(live, 'messages_out_per_sec'));
    points.conns.push(sum(live, 'connections'));
    points.subs.push(sum(live, 'subscriptions'));
    points.latMax.push(lat.length ? Math.max(...lat) : null);
    points.latAvg.push(lat.length ? lat.reduce((a, b) => a + b, 0) / lat.length : null);
    let drop = 0;
    while (drop < points.t.length && points.t[drop] < t - WINDOW_S) drop += 1;
    if (drop) for (const key of Object.keys(points)) points[key].splice(0, drop);
  }

  // Drawing ----------------------------------------------------------------------

  const fmt1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const fmt0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const ms = (v) => (v === null || v === undefined ? '–' : `${v < 10 ? v.toFixed(2) : fmt1.format(v)}`);

  function duration(seconds) {
    if (seconds < 90) return `${Math.round(seconds)} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    return `${fmt1.format(seconds / 3600)} h`;
  }

  function chart(id, series) {
    const el = $(id);
    const opts = {
      width: Math.max(el.clientWidth, 200),
      height: CHART_HEIGHT,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max * 1.1, 1)] } },
      axes: [{ stroke: 'currentColor' }, { stroke: 'currentColor', size: 48 }],
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      series: [{}, ...series.map(([label, stroke, style]) => ({ label, stroke, width: 2, spanGaps: false, ...style }))],
    };
    const plot = new uPlot(opts, [[], ...series.map(() => [])], el);
    let width = el.clientWidth;
    new ResizeObserver(() => {
      if (el.clientWidth !== width && el.clientWidth > 0) {
        width = el.clientWidth;
        plot.setSize({ width, height: CHART_HEIGHT });
      }
    }).observe(el);
    return { el, plot };
  }

  const charts = [
    [chart('c-messages', [['in/s', '#2563eb'], ['out/s', '#16a34a']]), ['in', 'out']],
    // Often equal (one subscription per connection): connections wide and solid,
    // subscriptions dashed on top, so both stay visible when they overlap.
    [chart('c-clients', [['connections', '#9333ea', { width: 4 }], ['subscriptions', '#ea580c', { dash: [6, 6] }]]), ['conns', 'subs']],
    [chart('c-latency', [['max', '#dc2626'], ['avg', '#0891b2']]), ['latMax', 'latAvg']],
  ];

  function cell(text) {
    const td = document.createElement('td');
    td.textContent = text;
    return td;
  }

  function drawNow() {
    for (const [{ el, plot }, keys] of charts) {
      plot.setData([points.t.slice(), ...keys.map((k) => points[k].slice())]);
      el.dataset.points = String(points.t.length);
    }
    const now = performance.now();
    for (const [id, n] of nodes) if (now - n.at > FORGET_AFTER_MS) nodes.delete(id);
    const live = liveNow();
    const lat = live.map((n) => n.s.fanout_latency_ms).filter((v) => v !== null);
    $('t-instances').textContent = fmt0.format(live.length);
    $('t-connections').textContent = fmt0.format(sum(live, 'connections'));
    $('t-subscriptions').textContent = fmt0.format(sum(live, 'subscriptions'));
    $('t-channels').textContent = fmt0.format(sum(live, 'channels'));
    $('t-in').textContent = fmt1.format(sum(live, 'messages_in_per_sec'));
    $('t-out').textContent = fmt1.format(sum(live, 'messages_out_per_sec'));
    $('t-latency').textContent = lat.length ? `${ms(Math.max(...lat))} ms` : '–';
    const rows = [...nodes.values()]
      .sort((a, b) => a.s.node.localeCompare(b.s.node) || a.s.id.localeCompare(b.s.id))
      .map((n) => {
        const tr = document.createElement('tr');
        if (!live.includes(n)) tr.className = 'gone';
        tr.dataset.node = n.s.node;
        tr.append(
          cell(String(n.s.node)), cell(fmt0.format(n.s.connections)), cell(fmt0.format(n.s.subscriptions)),
          cell(fmt0.format(n.s.channels)), cell(fmt1.format(n.s.messages_in_per_sec)),
          cell(fmt1.format(n.s.messages_out_per_sec)), cell(ms(n.s.fanout_latency_ms)), cell(duration(n.s.uptime)),
        );
        return tr;
      });
    $('nodes').replaceChildren(...rows);
    $('no-nodes').hidden = rows.length > 0;
  }

  let drawScheduled = false;
  function draw() {
    if (drawScheduled) return;
    drawScheduled = true;
    requestAnimationFrame(() => {
      drawScheduled = false;
      drawNow();
    });
  }

  // Connection -------------------------------------------------------------------

  function setStatus(state, text) {
    $('status').dataset.state = state;
    $('status').textContent = text;
  }

  function notice(text) {
    $('notice').dataset.kind = 'warn';
    $('notice').textContent = text;
    $('notice').hidden = false;
  }

  $('channel').textContent = channel;
  let pending = []; // live reports that arrived before the history replay
  let replayed = false;

  const client = new Centrifuge(wsURL, { name: 'wsfan-dashboard', maxReconnectDelay: 5000 });
  client.on('connecting', () => setStatus('connecting', 'connecting…'));
  client.on('connected', () => setStatus('connected', 'live'));
  client.on('disconnected', (ctx) => setStatus('disconnected', `offline: ${ctx.reason}`));
  client.on('error', (ctx) => console.warn('connection:', ctx.error && ctx.error.message));

  const sub = client.newSubscription(channel);
  sub.on('publication', (ctx) => {
    if (!valid(ctx.data)) return;
    if (!replayed) {
      pending.push(ctx.data);
      return;
    }
    ingest(ctx.data, performance.now());
    draw();
  });
  sub.on('subscribed', () => {
    if (replayed) return;
    sub.history({ limit: HISTORY_LIMIT, reverse: true })
      .then((result) => result.publications.map((p) => p.data).filter(valid))
      .catch((err) => {
        console.warn('stats history:', err && err.message);
        return [];
      })
      .then((history) => {
        const all = history.concat(pending).sort((a, b) => a.ts - b.ts);
        const newest = all.length ? all[all.length - 1].ts : 0;
        const now = performance.now();
        for (const s of all) ingest(s, now - (newest - s.ts) * 1000);
        pending = [];
        replayed = true;
        draw();
      });
  });
  sub.on('error', (ctx) => console.warn('subscription:', ctx.error && ctx.error.message));
  sub.on('unsubscribed', (ctx) => {
    if (ctx.code !== 0) notice(`Not receiving stats: ${ctx.reason}`);
  });
  sub.subscribe();
  client.connect();
  setInterval(draw, 1000);
})();
