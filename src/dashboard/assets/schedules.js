// Schedules: templates that dispatch themselves on a cron expression, with their next runs,
// pause and resume for their owners, and what each recent occurrence did.

import { html, useState } from './preact-htm.js';
import { api } from './api.js';
import { can } from './live.js';
import { Ago, ErrorNote, Action, useLoad } from './parts.js';

const path = (id, what) => `/api/templates/${encodeURIComponent(id)}/${what}`;

/** The last occurrences of one template: the task each made, or why it was skipped. */
function History({ id }) {
  const list = useLoad(() => api(path(id, 'occurrences'), { query: { limit: 10 } }), [id]);
  const rows = list.data?.occurrences ?? [];
  return html`<div class="history" data-testid=${`history-${id}`}>
    <${ErrorNote} error=${list.error} />
    ${!list.loading && !rows.length && html`<p class="muted">No occurrence yet.</p>`}
    <ul>${rows.map((o) => html`<li key=${o.occurrence_at}>
      <${Ago} at=${o.occurrence_at} />${' · '}
      ${o.task_id != null ? html`<a href=${`#/tasks/${o.task_id}`}>task #${o.task_id}</a>` : html`skipped: ${o.detail}`}
    </li>`)}</ul>
  </div>`;
}

function Row({ template, onChanged }) {
  const [open, setOpen] = useState(false);
  const s = template.schedule;
  const toggle = async () => {
    const body = { cron: s.cron, time_zone: s.time_zone, catch_up: s.catch_up, paused: !s.paused };
    onChanged(await api(path(template.id, 'schedule'), { method: 'PUT', body }));
  };
  return html`<tr data-template=${template.id}>
      <td>${template.name}</td>
      <td><code>${s.cron}</code> (${s.time_zone})${s.catch_up ? ' · catches up' : ''}</td>
      <td>${s.paused ? html`<span class="tag">paused</span>` : html`<span data-testid="next-run">${s.next_runs[0] ?? '—'}</span>`}</td>
      <td>
        ${can('admin:templates') && html`<${Action} label=${s.paused ? 'Resume' : 'Pause'} run=${toggle} />`}
        <button type="button" onClick=${() => setOpen(!open)} aria-expanded=${open}>History</button>
      </td>
    </tr>
    ${open && html`<tr><td colspan="4"><${History} id=${template.id} /></td></tr>`}`;
}

export function Schedules() {
  const templates = useLoad(() => api('/api/templates', { query: { limit: 500 } }), []);
  const list = (templates.data?.templates ?? []).filter((t) => t.schedule);
  const changed = (next) => templates.update((all) => ({
    ...all,
    templates: all.templates.map((t) => (t.id === next.id ? next : t)),
  }));
  return html`<section aria-labelledby="schedules-title">
    <div class="heading"><h1 id="schedules-title">Schedules</h1></div>
    <${ErrorNote} error=${templates.error} />
    <table class="grid" data-testid="schedules">
      <thead><tr><th>Template</th><th>When</th><th>Next run</th><th></th></tr></thead>
      <tbody>${list.map((t) => html`<${Row} key=${t.id} template=${t} onChanged=${changed} />`)}</tbody>
    </table>
    ${!templates.loading && !list.length && html`<p class="muted">No template has a schedule. Give one with <code>PUT /api/templates/{id}/schedule</code>.</p>`}
  </section>`;
}
