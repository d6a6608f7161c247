// Tasks: a paged list, newest first, kept live by task events: a new task appears at the
// top of the first page, a row shown changes in place, and anything else that now matches
// the filters is picked up by a re-read (at most one every two seconds).

import { html, useState, useEffect } from './preact-htm.js';
import { api } from './api.js';
import { Ago, Status, Pager, ErrorNote, Choice, TextFilter, Row, useClock, useLoad, useEvents, useThrottled, newer } from './parts.js';

const PAGE = 50;
export const STATUSES = ['queued', 'assigned', 'running', 'done', 'failed', 'cancelled'];
const TASK_EVENTS = ['task_queued', 'task_assigned', 'task_updated'];

function matches(task, filters) {
  return (!filters.status || task.status === filters.status)
    && (!filters.capability || task.required_capability === filters.capability)
    && (!filters.assigned_to || task.assigned_to === filters.assigned_to);
}

function taskRow(t) {
  return html`<tr data-task=${t.id}>
    <td><a href=${`#/tasks/${t.id}`}>${t.id}</a></td>
    <td class="title"><a href=${`#/tasks/${t.id}`}>${t.title}</a>${t.pipeline_id ? html` <a class="tag" href=${`#/pipelines/${t.pipeline_id}`}>pipeline ${t.pipeline_id}</a>` : ''}</td>
    <td><${Status} value=${t.status} />${t.reason ? html` <span class="muted" title=${t.reason}>(${t.reason.slice(0, 40)})</span>` : ''}</td>
    <td><code>${t.required_capability}</code></td>
    <td>${t.assigned_to ? html`<a href=${`#/agents/${encodeURIComponent(t.assigned_to)}`}>${t.assigned_to}</a>` : html`<span class="muted">—</span>`}</td>
    <td><${Ago} at=${t.created_at} /></td>
    <td><${Ago} at=${t.updated_at} /></td>
  </tr>`;
}

/** The list of tasks matching `filters`, paged, live. */
export function TaskTable({ filters }) {
  const [offset, setOffset] = useState(0);
  const tick = useClock();
  const key = JSON.stringify(filters);
  useEffect(() => setOffset(0), [key]);
  const tasks = useLoad(
    () => api('/api/tasks', { query: { ...filters, limit: PAGE, offset, compact: true } }),
    [key, offset],
  );
  const refresh = useThrottled(() => tasks.reload(), 2000);
  useEvents(TASK_EVENTS, (event, name) => {
    tasks.missed();
    const list = tasks.latest()?.tasks;
    if (!list) return;
    const shown = list.find((t) => t.id === event.id);
    if (shown) {
      if (newer(event, shown)) {
        const row = { ...shown, ...event };
        // A row that no longer matches the filters leaves the list (its status changed).
        tasks.update((d) => ({
          ...d,
          tasks: matches(row, filters) ? d.tasks.map((t) => (t.id === event.id ? row : t)) : d.tasks.filter((t) => t.id !== event.id),
        }));
      }
    } else if (offset === 0 && matches(event, filters)) {
      if (name === 'task_queued' && (!list.length || event.id > list[0].id)) {
        const row = { ...event, created_at: event.updated_at };
        tasks.update((d) => ({ ...d, tasks: [row, ...d.tasks].slice(0, PAGE), count: Math.min(PAGE, d.count + 1) }));
      } else {
        refresh();
      }
    }
  });
  const list = tasks.data?.tasks ?? [];
  return html`<div>
    <${ErrorNote} error=${tasks.error} />
    <table class="grid" data-testid="tasks">
      <thead><tr><th>#</th><th>Title</th><th>Status</th><th>Capability</th><th>Agent</th><th>Age</th><th>Updated</th></tr></thead>
      <tbody>
        ${list.map((t) => html`<${Row} key=${t.id} item=${t} tick=${tick} view=${taskRow} />`)}
      </tbody>
    </table>
    ${!tasks.loading && !list.length && html`<p class="muted">No tasks match.</p>`}
    <${Pager} offset=${offset} limit=${PAGE} shown=${list.length} onPage=${setOffset} />
  </div>`;
}

export function Tasks() {
  const [status, setStatus] = useState('');
  const [capability, setCapability] = useState('');
  const [agent, setAgent] = useState('');
  return html`<section aria-labelledby="tasks-title">
    <div class="heading">
      <h1 id="tasks-title">Tasks</h1>
      <${Choice} label="Status" value=${status} options=${STATUSES} onChange=${setStatus} />
      <${TextFilter} label="Capability" value=${capability} onChange=${setCapability} />
      <${TextFilter} label="Agent" value=${agent} onChange=${setAgent} />
    </div>
    <${TaskTable} filters=${{ status, capability, assigned_to: agent }} />
  </section>`;
}
