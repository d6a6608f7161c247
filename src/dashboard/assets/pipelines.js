// Pipelines: a live list, and each pipeline's dependency graph drawn in SVG with every
// member coloured (and labelled) by its live status.

import { html, useState } from './preact-htm.js';
import { api } from './api.js';
import { store, can } from './live.js';
import { Ago, Status, Pager, ErrorNote, Action, useLoad, useEvents, useThrottled } from './parts.js';

const PAGE = 50;
const TASK_EVENTS = ['task_queued', 'task_assigned', 'task_updated'];

export function Pipelines() {
  const [offset, setOffset] = useState(0);
  const pipelines = useLoad(() => api('/api/pipelines', { query: { limit: PAGE, offset } }), [offset]);
  const refresh = useThrottled(() => pipelines.reload(), 2000);
  useEvents(['pipeline_finished', ...TASK_EVENTS], (event, name) => {
    const list = pipelines.latest()?.pipelines ?? [];
    const id = name === 'pipeline_finished' ? (event.pipeline_id ?? event.id) : event.pipeline_id;
    if (id == null) return;
    pipelines.missed();
    if (list.some((p) => p.id === id) ? name === 'pipeline_finished' : offset === 0) refresh();
  });
  const list = pipelines.data?.pipelines ?? [];
  return html`<section aria-labelledby="pipelines-title">
    <div class="heading"><h1 id="pipelines-title">Pipelines</h1></div>
    <${ErrorNote} error=${pipelines.error} />
    <table class="grid" data-testid="pipelines">
      <thead><tr><th>#</th><th>Name</th><th>Status</th><th>By</th><th>Created</th><th>Finished</th></tr></thead>
      <tbody>${list.map((p) => html`<tr key=${p.id}>
        <td><a href=${`#/pipelines/${p.id}`}>${p.id}</a></td>
        <td><a href=${`#/pipelines/${p.id}`}>${p.name}</a></td>
        <td><${Status} value=${p.status} /></td>
        <td>${p.created_by}</td>
        <td><${Ago} at=${p.created_at} /></td>
        <td><${Ago} at=${p.completed_at} /></td>
      </tr>`)}</tbody>
    </table>
    ${!pipelines.loading && !list.length && html`<p class="muted">No pipelines yet.</p>`}
    <${Pager} offset=${offset} limit=${PAGE} shown=${list.length} onPage=${setOffset} />
  </section>`;
}

const NODE = { width: 190, height: 46, columnGap: 70, rowGap: 18, margin: 10 };

/** Columns by depth (a member sits one column right of its deepest dependency). */
export function layout(members) {
  const depth = new Map();
  for (const m of [...members].sort((a, b) => a.index - b.index)) {
    depth.set(m.id, m.depends_on.reduce((d, dep) => Math.max(d, (depth.get(dep) ?? 0) + 1), 0));
  }
  const rows = new Map();
  const place = new Map();
  for (const m of [...members].sort((a, b) => a.index - b.index)) {
    const column = depth.get(m.id);
    const row = rows.get(column) ?? 0;
    rows.set(column, row + 1);
    place.set(m.id, {
      x: NODE.margin + column * (NODE.width + NODE.columnGap),
      y: NODE.margin + row * (NODE.height + NODE.rowGap),
    });
  }
  const columns = Math.max(0, ...depth.values()) + 1;
  const height = Math.max(1, ...rows.values());
  return {
    place,
    width: NODE.margin * 2 + columns * NODE.width + (columns - 1) * NODE.columnGap,
    height: NODE.margin * 2 + height * NODE.height + (height - 1) * NODE.rowGap,
  };
}

function Graph({ members }) {
  const { place, width, height } = layout(members);
  const edges = members.flatMap((m) => m.depends_on.filter((d) => place.has(d)).map((d) => [place.get(d), place.get(m.id)]));
  return html`<svg class="dag" viewBox=${`0 0 ${width} ${height}`} width=${width} height=${height}
      role="group" aria-label="Pipeline dependency graph" data-testid="dag">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
      <path d="M0,0 L10,5 L0,10 z" class="arrowhead" /></marker></defs>
    ${edges.map(([from, to]) => {
      const x1 = from.x + NODE.width; const y1 = from.y + NODE.height / 2;
      const x2 = to.x; const y2 = to.y + NODE.height / 2;
      const bend = NODE.columnGap / 2;
      return html`<path class="edge" marker-end="url(#arrow)" d=${`M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`} />`;
    })}
    ${members.map((m) => {
      const { x, y } = place.get(m.id);
      return html`<a href=${`#/tasks/${m.id}`} key=${m.id} aria-label=${`Task ${m.id}, ${m.title}: ${m.status}`}>
        <g class=${`node s-${m.status}`} data-task=${m.id} data-status=${m.status}>
          <rect x=${x} y=${y} width=${NODE.width} height=${NODE.height} rx="6" />
          <text x=${x + 10} y=${y + 19} class="node-title">${m.title.length > 24 ? `${m.title.slice(0, 23)}…` : m.title}</text>
          <text x=${x + 10} y=${y + 36} class="node-status">#${m.id} · ${m.status}${m.assigned_to ? ` · ${m.assigned_to}` : ''}</text>
        </g>
      </a>`;
    })}
  </svg>`;
}

/** Cancels every unfinished member (dependents first): its creator, or someone overseeing
 * the mesh, with tasks:update. Members' events then update the graph. */
function CancelPipeline({ pipeline, onCancelled }) {
  const me = store.me;
  const may = can('tasks:update') && pipeline.status === 'running'
    && (me.kind !== 'token' || pipeline.created_by === me.name);
  if (!may) return null;
  const cancel = async () => {
    await api(`/api/pipelines/${pipeline.id}/cancel`, { method: 'POST' });
    onCancelled();
  };
  return html`<div class="controls">
    <${Action} label="Cancel pipeline" className="danger" confirm=${`Cancel every unfinished task of pipeline ${pipeline.id}?`} run=${cancel} />
  </div>`;
}

export function PipelinePage({ id }) {
  const pipeline = useLoad(() => api(`/api/pipelines/${encodeURIComponent(id)}`), [id]);
  useEvents(TASK_EVENTS, (event) => {
    if (String(event.pipeline_id) !== String(id)) return;
    pipeline.missed();
    if (!pipeline.latest()?.tasks.some((m) => m.id === event.id)) return;
    pipeline.update((p) => ({
      ...p,
      tasks: p.tasks.map((m) => (m.id === event.id
        ? { ...m, status: event.status, assigned_to: event.assigned_to, reason: event.reason, attempts: event.attempts }
        : m)),
    }));
  });
  useEvents(['pipeline_finished'], (event) => {
    if (String(event.pipeline_id ?? event.id) === String(id)) pipeline.update((p) => p && { ...p, status: event.status });
  });
  const p = pipeline.data;
  if (pipeline.error && !p) return html`<${ErrorNote} error=${pipeline.error} />`;
  if (!p) return html`<p class="boot">Loading pipeline ${id}…</p>`;
  return html`<section aria-labelledby="pipeline-title">
    <div class="heading">
      <h1 id="pipeline-title">Pipeline ${p.id}: ${p.name}</h1>
      <span data-testid="pipeline-status"><${Status} value=${p.status} /></span>
    </div>
    <${CancelPipeline} pipeline=${p} onCancelled=${() => pipeline.reload()} />
    <p class="muted">${p.count} tasks, created by ${p.created_by} <${Ago} at=${p.created_at} />.</p>
    <div class="dag-frame" tabindex="0" aria-label="The dependency graph (scrolls)"><${Graph} members=${p.tasks} /></div>
    <ul class="plain legend-list">
      ${p.tasks.map((m) => html`<li key=${m.id}><a href=${`#/tasks/${m.id}`}>#${m.id} ${m.title}</a> <${Status} value=${m.status} />${m.reason ? html` <span class="muted">${m.reason}</span>` : ''}</li>`)}
    </ul>
  </section>`;
}
