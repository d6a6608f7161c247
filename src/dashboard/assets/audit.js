// The audit log: the latest entries, filtered by actor or action, paged, and the whole log
// (with the same filters) as a JSON Lines download.

import { html, useState } from './preact-htm.js';
import { api, download } from './api.js';
import { Ago, Pager, ErrorNote, TextFilter, Action, useLoad, useEvents, useThrottled } from './parts.js';

const PAGE = 100;

export function Audit() {
  const [actor, setActor] = useState('');
  const [action, setAction] = useState('');
  const [offset, setOffset] = useState(0);
  const filters = { actor, action };
  const audit = useLoad(() => api('/api/admin/audit', { query: { ...filters, limit: PAGE, offset } }), [actor, action, offset]);
  // Every change writes an audit entry; the first page follows along, re-read at most every 2 s.
  const refresh = useThrottled(() => offset === 0 && audit.reload(), 2000);
  useEvents(['task_queued', 'task_updated', 'agent_registered', 'kill_switch', 'escalation_opened', 'escalation_resolved'], refresh);
  const list = audit.data?.entries ?? [];
  const filter = (set) => (value) => { set(value); setOffset(0); };
  return html`<section aria-labelledby="audit-title">
    <div class="heading">
      <h1 id="audit-title">Audit log</h1>
      <${TextFilter} label="Actor" value=${actor} onChange=${filter(setActor)} />
      <${TextFilter} label="Action" value=${action} onChange=${filter(setAction)} />
      <span class="spacer" />
      <${Action} label="Download JSON Lines" run=${() => download('/api/admin/audit/export', filters, 'm3shd-audit.jsonl')} />
    </div>
    <${ErrorNote} error=${audit.error} />
    <table class="grid" data-testid="audit">
      <thead><tr><th>#</th><th>When</th><th>Actor</th><th>Action</th><th>Target</th><th>Detail</th></tr></thead>
      <tbody>${list.map((e) => html`<tr key=${e.id}>
        <td>${e.id}</td><td><${Ago} at=${e.at} /></td><td>${e.actor}</td><td><code>${e.action}</code></td>
        <td>${e.target ?? ''}</td><td class="detail"><code>${e.detail ? JSON.stringify(e.detail) : ''}</code></td>
      </tr>`)}</tbody>
    </table>
    ${!audit.loading && !list.length && html`<p class="muted">No entries match.</p>`}
    <${Pager} offset=${offset} limit=${PAGE} shown=${list.length} onPage=${setOffset} />
  </section>`;
}
