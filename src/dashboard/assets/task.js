// One task: what it asks and answers (for those allowed to read it), a live console of
// its streamed output, its dependencies, its provenance chain with the hub's verdict, and
// the buttons the caller's role allows.

import { html, useState, useRef, useEffect } from './preact-htm.js';
import { api } from './api.js';
import { store, can } from './live.js';
import { Ago, Status, ErrorNote, Action, useLoad, useEvents, useThrottled, newer, money } from './parts.js';

/** Chunks (and characters) kept in the console; older ones scroll away so memory stays flat. */
const CONSOLE_CHUNKS = 5000;
const CONSOLE_CHARS = 2_000_000;
const TASK_EVENTS = ['task_queued', 'task_assigned', 'task_updated'];
/** Provenance links listed (every stream chunk adds one: a long run has thousands). */
const SHOWN_LINKS = 50;
const FINISHED = ['done', 'failed', 'cancelled'];

function Console({ id }) {
  // Chunks by sequence number: the newest stored ones first, then each task_stream event.
  // Events that arrive while the stored ones load wait in that load's own buffer and are
  // merged, once, by seq; a load for another task (or before a reload) is dropped.
  const [chunks, setChunks] = useState([]);
  const [error, setError] = useState(null);
  const loading = useRef(null);
  const view = useRef(null);
  useEffect(() => {
    const run = { buffer: [] };
    loading.current = run;
    setChunks([]);
    setError(null);
    api(`/api/tasks/${id}/stream`, { query: { limit: 2000, latest: true } }).then(
      (stored) => {
        if (loading.current !== run) return;
        loading.current = null;
        setChunks(merge(merge([], stored.chunks), run.buffer));
      },
      (e) => {
        if (loading.current !== run) return;
        loading.current = null;
        setError(e);
      },
    );
    return () => { if (loading.current === run) loading.current = null; };
  }, [id, store.generation]);
  useEvents(['task_stream'], (event) => {
    if (String(event.task_id) !== String(id)) return;
    if (loading.current) loading.current.buffer.push(event);
    else setChunks((list) => merge(list, [event]));
  });
  useEffect(() => {
    const box = view.current;
    // Follow the tail unless the reader has scrolled up.
    if (box && box.scrollHeight - box.scrollTop - box.clientHeight < 80) box.scrollTop = box.scrollHeight;
  }, [chunks]);
  return html`<section aria-labelledby="console-title">
    <h2 id="console-title">Console</h2>
    <${ErrorNote} error=${error} />
    ${chunks[0]?.seq > 0 && html`<p class="muted">${chunks[0].seq} earlier chunks are not shown.</p>`}
    <pre class="console" ref=${view} data-testid="console" tabindex="0" aria-labelledby="console-title">${chunks.length
      ? chunks.map((c) => c.chunk).join('')
      : html`<span class="muted">No output streamed yet.</span>`}</pre>
  </section>`;
}

/** `list` with the chunks of `more` it does not have yet, in order, bounded in count and size. */
function merge(list, more) {
  const last = list.length ? list[list.length - 1].seq : -1;
  const fresh = more.filter((c) => c.seq > last).sort((a, b) => a.seq - b.seq);
  if (!fresh.length) return list;
  const kept = [...list, ...fresh].slice(-CONSOLE_CHUNKS);
  let size = 0;
  let from = kept.length;
  while (from > 0 && size + kept[from - 1].chunk.length <= CONSOLE_CHARS) size += kept[--from].chunk.length;
  return kept.slice(Math.min(from, kept.length - 1));
}

function Dependencies({ task }) {
  const deps = useLoad(() => (task.depends_on.length ? api(`/api/tasks/${task.id}/deps`) : Promise.resolve({ dependencies: [] })), [task.id]);
  useEvents(TASK_EVENTS, (event) => {
    if (!task.depends_on.includes(event.id)) return;
    deps.missed();
    if (deps.latest()?.dependencies.some((d) => d.id === event.id)) {
      deps.update((d) => ({ ...d, dependencies: d.dependencies.map((x) => (x.id === event.id ? { ...x, status: event.status, assigned_to: event.assigned_to } : x)) }));
    }
  });
  const list = deps.data?.dependencies ?? [];
  if (!list.length) return null;
  return html`<section><h2>Depends on</h2><ul class="plain">
    ${list.map((d) => html`<li key=${d.id}><a href=${`#/tasks/${d.id}`}>#${d.id} ${d.title}</a> <${Status} value=${d.status} /></li>`)}
  </ul></section>`;
}

function Provenance({ id, updatedAt }) {
  const chain = useLoad(() => api(`/api/tasks/${id}/provenance`, { query: { last: SHOWN_LINKS } }), [id, updatedAt]);
  const data = chain.data;
  return html`<section aria-labelledby="provenance-title">
    <h2 id="provenance-title">Provenance</h2>
    <${ErrorNote} error=${chain.error} />
    ${data && html`<p data-testid="provenance-verdict">${data.valid
      ? html`<${Status} value="done" text="chain valid" />`
      : html`<${Status} value="failed" text="chain broken" /> at link ${data.broken?.seq}: ${data.broken?.reason ?? ''}`}${' · '}${data.count} links</p>
    ${data.count > data.chain.length && html`<p class="muted">The latest ${data.chain.length} links; ${data.count - data.chain.length} earlier ones were checked but are not listed.</p>`}
    <table class="grid compact"><thead><tr><th>#</th><th>Change</th><th>By</th><th>When</th><th>Hash</th></tr></thead><tbody>
      ${data.chain.map((l) => html`<tr key=${l.seq}><td>${l.seq}</td><td>${l.action}</td><td>${l.actor}</td><td><${Ago} at=${l.created_at} /></td><td><code title=${l.hash}>${l.hash.slice(0, 12)}…</code></td></tr>`)}
    </tbody></table>`}
  </section>`;
}

function Controls({ task, onChanged }) {
  const me = store.me;
  const [to, setTo] = useState('');
  const finished = FINISHED.includes(task.status);
  const oversees = me.kind !== 'token';
  const mayCancel = can('tasks:update') && !finished
    && (oversees || task.created_by === me.name || task.assigned_to === me.name);
  const mayHandOff = can('tasks:update') && !finished && (oversees || task.assigned_to === me.name);
  const mayVerify = me.kind === 'master' && task.status === 'done' && !task.verified;
  if (!mayCancel && !mayHandOff && !mayVerify) return null;
  const act = (path, method, body) => async () => onChanged(await api(path, { method, body }));
  return html`<div class="controls">
    ${mayCancel && html`<${Action} label="Cancel task" className="danger" confirm=${`Cancel task ${task.id}?`}
      run=${act(`/api/tasks/${task.id}`, 'PUT', { status: 'cancelled', reason: 'cancelled from the dashboard' })} />`}
    ${mayHandOff && html`<form class="inline" onSubmit=${(e) => { e.preventDefault(); e.target.querySelector('button')?.click(); }}>
      <label>Hand off to <input value=${to} onInput=${(e) => setTo(e.target.value.trim())} placeholder="agent id" required /></label>
      <${Action} label="Hand off" run=${async () => { await act(`/api/tasks/${task.id}/handoff`, 'POST', { to })(); setTo(''); }} />
    </form>`}
    ${mayVerify && html`<${Action} label="Mark verified" run=${act(`/api/tasks/${task.id}/verify`, 'POST')} />`}
  </div>`;
}

/** The task's own budget and watchdogs (issue 17), as facts; nothing when it has none. */
function limits(t) {
  const budget = [
    t.max_cost_usd != null && `${money(t.max_cost_usd)}`,
    t.max_tokens != null && `${t.max_tokens} tokens`,
  ].filter(Boolean);
  const watch = [
    t.schedule_timeout_seconds != null &&
      `escalated after ${t.schedule_timeout_seconds} s unclaimed${t.fail_on_schedule_timeout ? ', then failed' : ''}`,
    t.progress_timeout_seconds != null && `stuck after ${t.progress_timeout_seconds} s without progress`,
  ].filter(Boolean);
  return html`
    ${budget.length > 0 && html`<dt>Budget</dt><dd data-testid="budget">${budget.join(' · ')}, then cancelled</dd>`}
    ${watch.length > 0 && html`<dt>Watchdogs</dt><dd data-testid="watchdogs">${watch.join(' · ')}</dd>`}`;
}

export function TaskPage({ id }) {
  const task = useLoad(() => api(`/api/tasks/${encodeURIComponent(id)}`), [id]);
  const refresh = useThrottled(() => task.reload(), 500);
  useEvents(TASK_EVENTS, (event) => {
    if (String(event.id) !== String(id)) return;
    task.missed();
    if (newer(event, task.latest())) task.update((t) => (t ? { ...t, ...event } : t));
    // The event carries no output: re-read the whole task once it has one.
    if (event.has_output || FINISHED.includes(event.status)) refresh();
  });
  // While another task loads, the previous one's data is not this page's.
  const t = task.data && String(task.data.id) === String(id) ? task.data : null;
  if (task.error && !t) return html`<${ErrorNote} error=${task.error} />`;
  if (!t) return html`<p class="boot">Loading task ${id}…</p>`;
  return html`<article aria-labelledby="task-title" data-testid="task">
    <div class="heading">
      <h1 id="task-title">#${t.id} ${t.title}</h1>
      <span data-testid="task-status"><${Status} value=${t.status} /></span>
      ${t.verified && html`<span class="tag">verified</span>`}
    </div>
    <dl class="facts">
      <dt>Capability</dt><dd><code>${t.required_capability}</code></dd>
      <dt>Agent</dt><dd>${t.assigned_to ? html`<a href=${`#/agents/${encodeURIComponent(t.assigned_to)}`}>${t.assigned_to}</a>` : '—'}</dd>
      <dt>Created</dt><dd><${Ago} at=${t.created_at} /> by ${t.created_by}</dd>
      <dt>Priority</dt><dd>${t.priority} (${t.urgency})</dd>
      <dt>Attempts</dt><dd>${t.attempts}</dd>
      ${t.reason && html`<dt>Reason</dt><dd>${t.reason}</dd>`}
      ${t.pipeline_id && html`<dt>Pipeline</dt><dd><a href=${`#/pipelines/${t.pipeline_id}`}>${t.pipeline_id}</a></dd>`}
      ${t.cost_usd != null && html`<dt>Cost</dt><dd>${money(t.cost_usd)} · ${t.tokens_in ?? 0} in / ${t.tokens_out ?? 0} out</dd>`}
      ${limits(t)}
    </dl>
    <${Controls} task=${t} onChanged=${(changed) => task.update((now) => ({ ...now, ...changed }))} />
    <section><h2>Prompt</h2><pre class="text" data-testid="prompt">${t.prompt}</pre></section>
    ${t.output != null && html`<section><h2>Output</h2><pre class="text" data-testid="output">${t.output}</pre></section>`}
    <${Console} id=${t.id} />
    <${Dependencies} task=${t} />
    ${store.me.kind === 'master' && html`<${Provenance} id=${t.id} updatedAt=${t.updated_at} />`}
  </article>`;
}
