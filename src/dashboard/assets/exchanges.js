// Exchanges (seed 003): each MESS exchange with its registration switch, its executors and
// its requests (newest first), for people who hold admin:agents.

import { html, useState } from './preact-htm.js';
import { api } from './api.js';
import { Ago, Status, ErrorNote, Action, useLoad } from './parts.js';

const base = (id) => `/api/v1/exchanges/${encodeURIComponent(id)}`;
// A request's status, in the colours of the task underneath it.
const TASK_STATUS = { pending: 'queued', claimed: 'assigned', completed: 'done', failed: 'failed', cancelled: 'cancelled' };

function Exchange({ exchange, onChanged }) {
  const requests = useLoad(() => api(`${base(exchange.exchange_id)}/requests`, { query: { limit: 50 } }), [exchange.exchange_id]);
  const executors = useLoad(() => api(`${base(exchange.exchange_id)}/executors`), [exchange.exchange_id]);
  const toggle = async () => onChanged(await api(`/api/admin/exchanges/${encodeURIComponent(exchange.exchange_id)}`, {
    method: 'PATCH', body: { open_registration: !exchange.open_registration },
  }));
  const threads = requests.data?.threads ?? [];
  return html`<section class="card" data-exchange=${exchange.exchange_id} aria-label=${`Exchange ${exchange.exchange_id}`}>
    <h2>${exchange.exchange_id}</h2>
    <p>Registration is <strong data-testid="registration">${exchange.open_registration ? 'open' : 'closed'}</strong>.
      ${' '}<${Action} label=${exchange.open_registration ? 'Close registration' : 'Open registration'} run=${toggle} /></p>
    <${ErrorNote} error=${requests.error || executors.error} />
    <h3>Executors</h3>
    <ul data-testid="executors">${(executors.data?.executors ?? []).map((e) => html`<li key=${e.id}>
      <strong>${e.display_name}</strong> (${e.id}) · ${e.capabilities.join(', ') || 'no capabilities'} · seen <${Ago} at=${e.last_seen} /></li>`)}</ul>
    <h3>Requests</h3>
    <table class="grid" data-testid="requests">
      <thead><tr><th>Ref</th><th>Intent</th><th>Status</th><th>By</th><th>Executor</th><th>Priority</th><th>Created</th></tr></thead>
      <tbody>${threads.map((t) => html`<tr key=${t.ref}>
        <td><code>${t.ref}</code></td><td>${t.intent}</td>
        <td><${Status} value=${TASK_STATUS[t.status] ?? t.status} text=${t.status} /></td>
        <td>${t.requestor_id}</td><td>${t.executor_id ?? '—'}</td><td>${t.priority}</td><td><${Ago} at=${t.created_at} /></td>
      </tr>`)}</tbody>
    </table>
    ${!requests.loading && !threads.length && html`<p class="muted">No requests yet.</p>`}
  </section>`;
}

export function Exchanges() {
  const list = useLoad(() => api('/api/admin/exchanges'), []);
  const exchanges = list.data?.exchanges ?? [];
  const changed = (next) => list.update((all) => ({
    exchanges: all.exchanges.map((e) => (e.exchange_id === next.exchange_id ? next : e)),
  }));
  return html`<section aria-labelledby="exchanges-title">
    <div class="heading"><h1 id="exchanges-title">Exchanges</h1></div>
    <${ErrorNote} error=${list.error} />
    ${exchanges.map((e) => html`<${Exchange} key=${e.exchange_id} exchange=${e} onChanged=${changed} />`)}
    ${!list.loading && !exchanges.length && html`<p class="muted">No exchange yet. Create one with <code>POST /api/admin/exchanges</code>.</p>`}
  </section>`;
}
