// CodeMie webhooks console. All URLs are relative to the page (<base>/).
// Server data goes into the DOM only via textContent/attributes, never innerHTML.
'use strict';
(() => {
const $ = (s) => document.querySelector(s);
const MAX_ROWS = 500, PAGE = 100;
const TOKEN = ($('meta[name="csrf-token"]') || {content: ''}).content;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) {
    const v = attrs[k];
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of kids) if (c != null) e.append(c); // strings become text nodes
  return e;
}
function svg(tag, attrs) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  return e;
}
const td = (text, cls, title) => el('td', {class: cls, title: title || null, text: text == null ? '' : String(text)});
const setText = (sel, v) => { $(sel).textContent = v; };
const pad = (n, w = 2) => String(n).padStart(w, '0');
const num = (v) => v != null && v !== '' && isFinite(v);

function toDate(v) {
  if (v == null || v === '') return null;
  if (typeof v === 'number' || /^\d+(\.\d+)?$/.test(v)) return new Date(v < 1e11 ? v * 1000 : +v);
  const d = new Date(v);
  return isNaN(d) ? null : d;
}
const recDate = (r) => toDate(r.time) || (/^\d+-/.test(r.id || '') ? new Date(parseInt(r.id, 10)) : null);
const clock = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
const stamp = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(d)}`;
const fmtInt = (n) => (num(n) ? Number(n).toLocaleString('en-US') : '—');
function fmtSecs(s) {
  if (!num(s)) return '—';
  s = Math.max(0, +s);
  const m = Math.floor(s / 60), h = Math.floor(s / 3600), d = Math.floor(s / 86400);
  if (s < 10) return Math.round(s * 10) / 10 + 's';
  if (s < 60) return Math.round(s) + 's';
  if (s < 3600) return `${m}m ${pad(Math.floor(s % 60))}s`;
  if (s < 86400) return `${h}h ${pad(m % 60)}m`;
  return h % 24 ? `${d}d ${h % 24}h` : `${d}d`;
}
function fmtMs(ms) {
  if (!num(ms)) return '';
  ms = +ms;
  return ms < 1 ? ms.toFixed(2) + ' ms' : ms < 10 ? ms.toFixed(1) + ' ms' : ms < 1000 ? Math.round(ms) + ' ms' : fmtSecs(ms / 1000);
}
function fmtBytes(b) {
  if (!num(b) || +b === 0) return '';
  return b < 1024 ? b + ' B' : b < 1048576 ? (b / 1024).toFixed(b < 10240 ? 1 : 0) + ' KB' : (b / 1048576).toFixed(1) + ' MB';
}
function cmpId(a, b) { // record ids "ms-seq", "u" before those of unauthenticated requests (the newer at the same ms-seq)
  const [am, as] = String(a).replace(/^u/, '').split('-'), [bm, bs] = String(b).replace(/^u/, '').split('-');
  return (am - bm) || ((+as || 0) - (+bs || 0)) || (a < b ? -1 : a > b ? 1 : 0);
}
const badge = (o) => el('span', {class: 'badge outcome-' + (/^[a-z_]+$/.test(o || '') ? o : 'unknown'), text: o || '?'});
function statusText(r) {
  const a = r.status ? String(r.status) : '';
  return r.codemie_status ? `${a || '–'} / ${r.codemie_status}` : a;
}

// ---- status line + HTTP
let statusTimer = 0;
function setStatus(msg, err) {
  const s = $('#status');
  clearTimeout(statusTimer);
  s.textContent = s.title = msg || '';
  s.className = err ? 'err' : msg ? 'ok' : '';
  if (msg && !err) statusTimer = setTimeout(() => setStatus(''), 15000);
}
const fail = (what, e) => setStatus(`${what}: ${(e && e.message) || e}`, true);
async function request(url, init) {
  const res = await fetch(url, init), text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { if (res.ok) throw new Error('invalid JSON from ' + url.split('?')[0]); }
  if (!res.ok) throw new Error((data && typeof data.error === 'string' && data.error) || `HTTP ${res.status} ${res.statusText}`.trim());
  return data || {};
}
const getJSON = (url) => request(url, {credentials: 'same-origin', headers: {'Accept': 'application/json'}});
const postJSON = (url) => request(url, {method: 'POST', headers: {'X-CSRF-Token': TOKEN}, credentials: 'same-origin'});

function whLink(id) { // a webhook id that filters the deliveries table
  const b = el('button', {type: 'button', class: 'link mono', title: 'Show deliveries of ' + id, text: id || '—'});
  b.addEventListener('click', () => { $('#filter-webhook').value = id || ''; showTab('deliveries'); applyFilters(); });
  return b;
}

// ---- summary
let lastDead;
function renderSummary(s) {
  const q = s && s.queue, lg = s && s.log;
  for (const k of ['length', 'pending', 'retrying', 'dead']) setText('#q-' + k, q ? fmtInt(q[k]) : '—');
  setText('#q-oldest', q && q.oldest_age_seconds > 0 ? fmtSecs(q.oldest_age_seconds) : '—');
  $('#q-dead').classList.toggle('bad', !!(q && q.dead > 0));
  $('#q-retrying').classList.toggle('warn', !!(q && q.retrying > 0));
  $('#q-mode').hidden = !s || !!q;
  $('.waiting').hidden = !q;
  setText('#log-length', lg ? fmtInt(lg.length) : '—');
  setText('#log-limits', lg ? `max ${lg.max_entries ? fmtInt(lg.max_entries) : '∞'} · ${lg.max_age_seconds ? fmtSecs(lg.max_age_seconds) : '∞'}` : '');
  const ol = $('#q-webhooks');
  const ws = ((q && q.webhooks) || []).filter((w) => w && w.waiting > 0).sort((a, b) => b.waiting - a.waiting).slice(0, 6);
  ol.replaceChildren(...ws.map((w) => el('li', null, whLink(w.webhook_id), el('b', {text: fmtInt(w.waiting)}),
    el('span', {class: 'muted', title: 'oldest waiting', text: fmtSecs(w.oldest_age_seconds)}))));
  if (!ws.length) ol.append(el('li', {class: 'muted', text: 'nothing waiting'}));
  setText('#dead-count', q && q.dead ? fmtInt(q.dead) : '');
  const dead = q ? q.dead : null;
  if (lastDead !== undefined && dead !== lastDead && tab === 'dead') loadDead(false);
  lastDead = dead;
}
async function loadSummary() {
  try { renderSummary(await getJSON('api/summary')); } catch (e) { fail('Loading summary', e); }
}

// ---- chart: one row per webhook, 60 bars of inline SVG scaled to the overall max
function renderChart(d) {
  const box = $('#chart'), whs = (d && d.webhooks) || [];
  let max = 0;
  for (const w of whs) for (const v of w.buckets || []) max = Math.max(max, v);
  setText('#chart-note', whs.length ? `· top ${whs.length} · peak ${fmtInt(max)}/bucket` : '');
  if (!whs.length) return box.replaceChildren(el('p', {class: 'muted', text: 'No records in the last hour.'}));
  const bs = (d.bucket_seconds || 60) * 1000, from = +d.from || 0, H = 14;
  box.replaceChildren(...whs.map((w) => {
    const b = w.buckets || [], step = 180 / Math.max(b.length, 1);
    const s = svg('svg', {viewBox: `0 0 180 ${H}`, preserveAspectRatio: 'none', class: 'spark', role: 'img',
      'aria-label': `${w.webhook_id}: ${w.total} records in the last hour`});
    s.append(svg('rect', {x: 0, y: H - 0.5, width: 180, height: 0.5, class: 'base'}));
    b.forEach((v, i) => {
      if (!(v > 0)) return;
      const h = Math.max(1, (v / max) * H), at = new Date(from + i * bs);
      const r = svg('rect', {x: (i * step).toFixed(2), y: (H - h).toFixed(2), width: (step * 0.75).toFixed(2), height: h.toFixed(2)});
      const t = svg('title', {});
      t.textContent = `${pad(at.getHours())}:${pad(at.getMinutes())} · ${v}`;
      r.append(t);
      s.append(r);
    });
    return el('div', {class: 'crow'}, whLink(w.webhook_id), el('span', {class: 'num', text: fmtInt(w.total)}), s);
  }), el('div', {class: 'crow axis', 'aria-hidden': 'true'}, el('span'), el('span'),
    el('span', {class: 'ends'}, el('span', {text: '−60 min'}), el('span', {text: 'now'}))));
}
async function loadCounts() {
  try { renderChart(await getJSON('api/counts')); } catch (e) { fail('Loading counts', e); }
}

// ---- tabs
let tab = 'deliveries';
function showTab(name) {
  const changed = tab !== name;
  tab = name;
  for (const n of ['deliveries', 'dead']) {
    const b = $('#tab-' + n), on = n === name;
    b.setAttribute('aria-selected', String(on));
    b.tabIndex = on ? 0 : -1;
    $('#' + n).hidden = !on;
  }
  if (name === 'dead' && changed) loadDead(false);
}

// ---- deliveries
const recMap = new Map(), dbody = $('#deliveries-body');
let delNext = '', delSince = null, delGen = 0, delLoading = false, curQuery = null, curKey = null;
function recordRow(r) {
  const tr = el('tr', {tabindex: '0'}), d = recDate(r);
  Object.assign(tr.dataset, {recordId: r.id, deliveryId: r.delivery_id || '', webhookId: r.webhook_id || '', outcome: r.outcome || ''});
  tr.append(td(d ? clock(d) : '', 'mono', d && stamp(d)), td(r.webhook_id, 'mono', r.webhook_id),
    td(r.delivery_id, 'mono', r.delivery_id), el('td', null, badge(r.outcome)),
    td(r.reason, null, r.step ? 'step: ' + r.step : r.reason), td(statusText(r), 'num'), td(r.attempts || '', 'num'),
    td(fmtMs(r.duration_ms), 'num', r.age_ms && 'age ' + fmtMs(r.age_ms)), td(fmtBytes(r.body_bytes), 'num'));
  return tr;
}
function filterParams() {
  const p = new URLSearchParams(), w = $('#filter-webhook').value.trim(), o = $('#filter-outcome').value;
  if (w) p.set('webhook', w);
  if (o) p.set('outcome', o);
  return p;
}
function pageParams(count) {
  const p = filterParams();
  if (delSince != null) p.set('since', String(delSince));
  p.set('count', String(count));
  return p;
}
function updateDelUi() {
  const n = dbody.rows.length;
  $('#deliveries-empty').hidden = n > 0 || delLoading;
  $('#older').disabled = !delNext || delLoading;
  setText('#del-info', delLoading ? 'loading…' : `${n} record${n === 1 ? '' : 's'}${delNext || !n ? '' : ' · end of log'}`);
}
async function loadDeliveries(reset) {
  let count = PAGE;
  if (reset) {
    const v = $('#filter-since').value;
    delSince = v === 'all' ? null : Date.now() - v * 1000;
    delGen++;
    delNext = '';
    recMap.clear();
    dbody.replaceChildren();
  } else {
    if (!delNext || delLoading) return;
    count = Math.min(PAGE, MAX_ROWS - dbody.rows.length);
    if (count <= 0) return setStatus(`The table keeps at most ${MAX_ROWS} rows: narrow the filters to see older records.`);
  }
  const gen = delGen, p = pageParams(count);
  if (!reset) p.set('before', delNext);
  delLoading = true;
  updateDelUi();
  try {
    const d = await getJSON('api/deliveries?' + p);
    if (gen !== delGen) return;
    const frag = document.createDocumentFragment();
    for (const r of d.records || []) {
      if (!r || !r.id || recMap.has(r.id)) continue;
      recMap.set(r.id, r);
      frag.append(recordRow(r));
    }
    dbody.append(frag);
    delNext = d.next || '';
  } catch (e) {
    if (gen === delGen) fail('Loading deliveries', e);
  } finally {
    if (gen === delGen) { delLoading = false; updateDelUi(); }
  }
}
// New record: insert at its place (newest first), dedupe by id, keep at most MAX_ROWS rows.
function insertRecord(r) {
  if (!r || !r.id || recMap.has(r.id)) return;
  const rd = recDate(r);
  if (delSince != null && rd && rd < delSince) return;
  const ref = Array.prototype.find.call(dbody.rows, (row) => cmpId(row.dataset.recordId, r.id) < 0) || null;
  if (!ref && delNext) return; // older than the loaded window: "Load older" brings it
  const tr = recordRow(r);
  recMap.set(r.id, r);
  dbody.insertBefore(tr, ref);
  tr.classList.add('new');
  setTimeout(() => tr.classList.remove('new'), 3000);
  if (dbody.rows.length > MAX_ROWS) {
    while (dbody.rows.length > MAX_ROWS) { recMap.delete(dbody.lastElementChild.dataset.recordId); dbody.lastElementChild.remove(); }
    delNext = dbody.lastElementChild.dataset.recordId;
  }
  updateDelUi();
}
async function mergeLatest() { // after (re)connecting: fetch what the stream may have missed
  const gen = delGen;
  try {
    const d = await getJSON('api/deliveries?' + pageParams(PAGE));
    if (gen === delGen && !delLoading) (d.records || []).slice().reverse().forEach(insertRecord);
  } catch (e) { /* the live indicator already says so */ }
}
function onDelivery(r) {
  insertRecord(r);
  if (detail && detail.list && detail.delivery && r.delivery_id === detail.delivery && (r.webhook_id || '') === detail.webhook) {
    addTimeline(detail.list, r, detail);
  }
}
let filterTimer = 0;
function applyFilters() {
  clearTimeout(filterTimer);
  const q = filterParams().toString(), key = q + '|' + $('#filter-since').value;
  if (key === curKey) return;
  curKey = key;
  loadDeliveries(true);
  if (q !== curQuery) openEvents();
}

// ---- live events
let es = null, esTimer = 0;
function setLive(on) {
  const l = $('#live');
  l.textContent = on ? 'live' : 'reconnecting';
  l.className = on ? 'on' : '';
}
function openEvents() {
  if (es) es.close();
  clearTimeout(esTimer);
  curQuery = filterParams().toString();
  const src = es = new EventSource('api/events' + (curQuery ? '?' + curQuery : ''));
  const mine = (f) => (ev) => { if (es === src) f(ev); };
  setLive(false);
  src.onopen = mine(() => { setLive(true); mergeLatest(); });
  src.onerror = mine(() => {
    setLive(false); // EventSource retries by itself unless the server refused the stream
    if (src.readyState === 2) esTimer = setTimeout(mine(openEvents), 5000);
  });
  const parse = (f) => mine((ev) => { let v; try { v = JSON.parse(ev.data); } catch (e) { return; } f(v); });
  src.addEventListener('delivery', parse(onDelivery));
  src.addEventListener('summary', parse(renderSummary));
}

// ---- dead letters
const deadMap = new Map(), xbody = $('#dead-body');
let deadNext = '', deadGen = 0;
function deadRow(e) {
  const tr = el('tr', {tabindex: '0'}), d = toDate(e.dead_at);
  Object.assign(tr.dataset, {entryId: e.id, deliveryId: e.delivery_id || '', webhookId: e.webhook_id || ''});
  tr.append(td(d ? stamp(d).slice(5, 19) : e.dead_at, 'mono', d && stamp(d)), td(e.webhook_id, 'mono', e.webhook_id),
    td(e.delivery_id, 'mono', e.delivery_id), td(e.attempts || '', 'num'), td(e.last_status || '', 'num'),
    td(e.last_step), td(e.last_reason, null, e.last_reason));
  return tr;
}
const findDeadRow = (id) => Array.prototype.find.call(xbody.rows, (r) => r.dataset.entryId === id);
async function loadDead(more) {
  if (more && !deadNext) return;
  const gen = ++deadGen, p = new URLSearchParams();
  if (more) p.set('after', deadNext);
  p.set('count', String(PAGE));
  setText('#dead-info', 'loading…');
  try {
    const d = await getJSON('api/dead?' + p);
    if (gen !== deadGen) return;
    if (!more) { xbody.replaceChildren(); deadMap.clear(); }
    for (const e of d.entries || []) {
      if (!e || !e.id || deadMap.has(e.id)) continue;
      deadMap.set(e.id, e);
      xbody.append(deadRow(e));
    }
    deadNext = d.next || '';
    const sel = detail && detail.kind === 'dead' && findDeadRow(detail.id);
    if (sel) sel.classList.add('sel');
  } catch (e) {
    if (gen === deadGen) fail('Loading dead letters', e);
  }
  if (gen !== deadGen) return;
  const n = xbody.rows.length;
  $('#dead-empty').hidden = n > 0;
  $('#dead-more').hidden = !deadNext;
  setText('#dead-info', `${n} shown · oldest first`);
}
async function deadAction(id, action, btns) {
  btns.forEach((b) => { b.disabled = true; });
  try {
    const d = await postJSON(`api/dead/${encodeURIComponent(id)}/${action}`);
    const verb = action === 'replay' ? 'replayed' : 'deleted';
    setStatus(d[verb] === 0 ? `nothing ${verb}: ${id} no longer exists` : `${verb} ${id}`);
    const row = findDeadRow(id);
    if (row) row.remove();
    deadMap.delete(id);
    if (detail && detail.id === id) closeDetail();
    loadDead(false);
    loadSummary();
  } catch (e) {
    fail(`${action} ${id}`, e);
    btns.forEach((b) => { b.disabled = false; });
  }
}

// ---- detail panel
let detail = null, detailFrom = null;
const LABELS = {codemie_status: 'CodeMie status', duration_ms: 'duration', age_ms: 'age', body_bytes: 'body size', entry: 'queue entry'};
const str = (v) => (typeof v === 'object' ? JSON.stringify(v) : String(v));
function fmtField(k, v) {
  const d = (k === 'time' || k.endsWith('_at')) && toDate(v);
  return d ? stamp(d) : k.endsWith('_ms') && num(v) ? fmtMs(v) : k === 'body_bytes' && num(v) ? fmtInt(v) + ' B' : str(v);
}
function fieldList(o, skip) { // every field, in the server's order
  const dl = el('dl', {class: 'kv'});
  for (const k in o) {
    const v = o[k];
    if (skip.includes(k) || v == null || v === '' || v === 0) continue;
    dl.append(el('dt', {text: LABELS[k] || k.replace(/_/g, ' ')}), el('dd', {title: str(v), text: fmtField(k, v)}));
  }
  return dl;
}
function openDetail(title, ctx, tr) {
  detail = ctx;
  detailFrom = tr;
  for (const r of document.querySelectorAll('tr.sel')) r.classList.remove('sel');
  tr.classList.add('sel');
  $('#detail').hidden = false;
  setText('#detail-title', title);
  const b = $('#detail-body');
  b.replaceChildren();
  b.scrollTop = 0;
  $('#detail-close').focus({preventScroll: true});
  return b;
}
function closeDetail() {
  $('#detail').hidden = true;
  detail = null;
  for (const r of document.querySelectorAll('tr.sel')) r.classList.remove('sel');
  if (detailFrom && detailFrom.isConnected) detailFrom.focus({preventScroll: true});
  detailFrom = null;
}
function addTimeline(list, r, ctx) {
  if (!r || !r.id || ctx.ids.has(r.id)) return;
  ctx.ids.add(r.id);
  const d = recDate(r);
  if (!ctx.t0 && d) ctx.t0 = d;
  const rel = d && d - ctx.t0 > 0 ? '+' + fmtMs(d - ctx.t0) : null;
  const li = el('li', null,
    el('div', {class: 'tl-head'}, el('span', {class: 'mono', text: d ? stamp(d) : r.time || ''}), badge(r.outcome),
      el('span', {text: r.reason || ''}), rel && el('span', {class: 'muted', text: rel})),
    fieldList(r, ['preview', 'time', 'outcome', 'reason']),
    r.preview ? el('pre', {class: 'preview', text: str(r.preview)}) : null);
  li.dataset.recordId = r.id;
  list.append(li);
}
// Timeline of one delivery: every record for it, oldest first.
async function fillTimeline(list, ctx, fallback) {
  ctx.list = list;
  ctx.ids = new Set();
  list.replaceChildren(el('li', {class: 'muted', text: 'Loading…'}));
  let recs = fallback;
  if (ctx.delivery) {
    const p = new URLSearchParams({delivery: ctx.delivery});
    if (ctx.webhook) p.set('webhook', ctx.webhook);
    p.set('since', '0');
    try {
      const d = await getJSON('api/deliveries?' + p);
      if (d.records && d.records.length) recs = d.records;
    } catch (e) {
      if (detail === ctx) fail('Loading timeline', e);
    }
    if (detail !== ctx) return;
  }
  list.replaceChildren();
  recs.slice().sort((a, b) => cmpId(a.id, b.id)).forEach((r) => addTimeline(list, r, ctx));
  if (!list.children.length) list.append(el('li', {class: 'muted', text: 'No records in the log for this delivery.'}));
}
function openDelivery(tr) {
  const r = recMap.get(tr.dataset.recordId);
  if (!r) return;
  const ctx = {kind: 'delivery', webhook: r.webhook_id || '', delivery: r.delivery_id || ''};
  const b = openDetail('Delivery ' + (r.delivery_id || '(no id)'), ctx, tr), list = el('ol', {class: 'timeline'});
  b.append(el('p', {class: 'meta'}, 'Webhook ', el('code', {text: r.webhook_id || '—'}), ' · timeline, oldest first'), list);
  fillTimeline(list, ctx, [r]);
}
function openDead(tr) {
  const e = deadMap.get(tr.dataset.entryId);
  if (!e) return;
  const ctx = {kind: 'dead', id: e.id, webhook: e.webhook_id || '', delivery: e.delivery_id || ''};
  const b = openDetail('Dead letter ' + e.id, ctx, tr);
  const replay = el('button', {type: 'button', id: 'replay', class: 'primary', text: 'Replay'});
  const del = el('button', {type: 'button', id: 'delete', class: 'danger', text: 'Delete'});
  replay.addEventListener('click', () => deadAction(e.id, 'replay', [replay, del]));
  del.addEventListener('click', () => {
    if (confirm(`Delete dead letter ${e.id}? This cannot be undone.`)) deadAction(e.id, 'delete', [replay, del]);
  });
  const h = e.headers && typeof e.headers === 'object' ? e.headers : {};
  const keys = Object.keys(h).sort((a, c) => a.toLowerCase().localeCompare(c.toLowerCase()));
  b.append(el('div', {class: 'actions'}, replay, del), fieldList(e, ['headers']), el('h3', {text: `Headers (${keys.length})`}));
  if (keys.length) {
    b.append(el('table', {class: 'hdrs'}, ...keys.map((k) => el('tr', null, el('th', {scope: 'row', text: k}),
      el('td', {text: Array.isArray(h[k]) ? h[k].join(', ') : str(h[k])})))));
  }
  if (e.delivery_id) {
    const list = el('ol', {class: 'timeline'});
    b.append(el('h3', {text: 'Delivery timeline'}), list);
    fillTimeline(list, ctx, []);
  }
}

// ---- wiring
for (const [tbody, open] of [[dbody, openDelivery], [xbody, openDead]]) {
  tbody.addEventListener('click', (ev) => { const tr = ev.target.closest('tr'); if (tr && tbody.contains(tr)) open(tr); });
  tbody.addEventListener('keydown', (ev) => {
    if ((ev.key === 'Enter' || ev.key === ' ') && ev.target.tagName === 'TR') { ev.preventDefault(); open(ev.target); }
  });
}
$('#tab-deliveries').addEventListener('click', () => showTab('deliveries'));
$('#tab-dead').addEventListener('click', () => showTab('dead'));
$('.tabs').addEventListener('keydown', (ev) => {
  if (ev.key !== 'ArrowLeft' && ev.key !== 'ArrowRight') return;
  showTab(tab === 'dead' ? 'deliveries' : 'dead');
  $('#tab-' + tab).focus();
});
$('#filters').addEventListener('submit', (ev) => { ev.preventDefault(); applyFilters(); });
$('#filter-webhook').addEventListener('input', () => { clearTimeout(filterTimer); filterTimer = setTimeout(applyFilters, 400); });
for (const id of ['#filter-webhook', '#filter-outcome', '#filter-since']) $(id).addEventListener('change', applyFilters);
$('#older').addEventListener('click', () => loadDeliveries(false));
$('#dead-refresh').addEventListener('click', () => { loadDead(false); loadSummary(); });
$('#dead-more').addEventListener('click', () => loadDead(true));
$('#detail-close').addEventListener('click', closeDetail);
document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape' && !$('#detail').hidden) closeDetail(); });

loadSummary();
loadCounts();
applyFilters(); // first page of deliveries + opens the event stream
setInterval(() => { loadCounts(); if (!es || es.readyState !== 1) loadSummary(); }, 30000);
})();
