// Decisions waiting on people. Each kind of decision is one section in SECTIONS: tool-call
// approvals a holder waits for, and open escalations. New agents asking to join have a view
// of their own (onboarding.js).

import { html, useState } from './preact-htm.js';
import { api } from './api.js';
import { can } from './live.js';
import { Ago, Status, ErrorNote, Action, useLoad, useEvents, useThrottled } from './parts.js';

function Escalations() {
  const open = useLoad(() => api('/api/escalations', { query: { status: 'open', limit: 200 } }), []);
  useEvents(['escalation_opened', 'escalation_resolved'], (event, name) => {
    open.missed();
    open.update((d) => {
      if (!d) return d;
      const rest = d.escalations.filter((e) => e.id !== event.id);
      return { ...d, escalations: name === 'escalation_opened' ? [event, ...rest] : rest };
    });
  });
  const list = open.data?.escalations ?? [];
  return html`<section aria-labelledby="escalations-title" data-testid="escalations">
    <h2 id="escalations-title">Open escalations <span class="count">${list.length}</span></h2>
    <${ErrorNote} error=${open.error} />
    ${!open.loading && !list.length && html`<p class="muted">Nothing is escalated.</p>`}
    <ul class="cards">
      ${list.map((e) => html`<${Escalation} key=${e.id} escalation=${e}
        onResolved=${() => open.update((d) => ({ ...d, escalations: d.escalations.filter((x) => x.id !== e.id) }))} />`)}
    </ul>
  </section>`;
}

function Escalation({ escalation: e, onResolved }) {
  const [resolution, setResolution] = useState('');
  return html`<li class="card">
    <p><${Status} value="open" /> <strong>${e.reason}</strong></p>
    <p class="muted">
      ${e.task_id != null && html`task <a href=${`#/tasks/${e.task_id}`}>#${e.task_id}</a> · `}
      ${e.agent_id && html`agent <a href=${`#/agents/${encodeURIComponent(e.agent_id)}`}>${e.agent_id}</a> · `}
      raised by ${e.created_by} <${Ago} at=${e.created_at} />
    </p>
    ${can('escalations:resolve') && html`<form class="inline" onSubmit=${(ev) => { ev.preventDefault(); ev.target.querySelector('button')?.click(); }}>
      <label>Resolution <input value=${resolution} onInput=${(ev) => setResolution(ev.target.value)} /></label>
      <${Action} label="Resolve" run=${async () => {
        await api(`/api/escalations/${e.id}/resolve`, { method: 'POST', body: { resolution: resolution || undefined } });
        onResolved();
      }} />
    </form>`}
  </li>`;
}

/** Tool calls waiting for a person: allow or deny each (approvals:decide), live. */
function Approvals() {
  const pending = useLoad(() => api('/api/approvals', { query: { status: 'pending', limit: 100 } }), []);
  // A request's event leaves out its input (events never carry one): re-read the list.
  const refresh = useThrottled(() => pending.reload(), 300);
  useEvents(['approval_requested'], () => { pending.missed(); refresh(); });
  useEvents(['approval_decided'], (event) => {
    pending.missed();
    pending.update((d) => (d ? { ...d, approvals: d.approvals.filter((a) => a.id !== event.id) } : d));
  });
  const list = pending.data?.approvals ?? [];
  const gone = (id) => pending.update((d) => ({ ...d, approvals: d.approvals.filter((a) => a.id !== id) }));
  return html`<section aria-labelledby="approvals-title" data-testid="approvals">
    <h2 id="approvals-title">Waiting for approval <span class="count">${list.length}</span></h2>
    <${ErrorNote} error=${pending.error} />
    ${!pending.loading && !list.length && html`<p class="muted">No tool call waits for a decision.</p>`}
    <ul class="cards">${list.map((a) => html`<${Approval} key=${a.id} approval=${a} onDecided=${() => gone(a.id)} />`)}</ul>
  </section>`;
}

function Approval({ approval: a, onDecided }) {
  const [note, setNote] = useState('');
  const decide = (decision) => async () => {
    await api(`/api/approvals/${a.id}`, { method: 'POST', body: { decision, note: note.trim() || undefined } });
    onDecided();
  };
  return html`<li class="card" data-approval=${a.id}>
    <p><${Status} value="pending" /> <strong><code>${a.tool}</code></strong> ${a.reason && html`— ${a.reason}`}</p>
    ${a.input && html`<pre class="text">${a.input}</pre>`}
    <p class="muted">task <a href=${`#/tasks/${a.task_id}`}>#${a.task_id}</a> · asked by
      <a href=${`#/agents/${encodeURIComponent(a.agent_id)}`}>${a.agent_id}</a> <${Ago} at=${a.created_at} />
      · denied unless decided by <time datetime=${a.expires_at}>${new Date(a.expires_at).toLocaleTimeString()}</time></p>
    ${can('approvals:decide') && html`<form class="inline" onSubmit=${(ev) => ev.preventDefault()}>
      <label>Note <input value=${note} onInput=${(ev) => setNote(ev.target.value)} /></label>
      <${Action} label="Allow" run=${decide('allow')} />
      <${Action} label="Deny" className="danger" run=${decide('deny')} />
    </form>`}
  </li>`;
}

const SECTIONS = [
  { needs: 'tasks:read', view: Approvals },
  { needs: 'escalations:read', view: Escalations },
];

export function Decisions() {
  return html`<section aria-labelledby="decisions-title">
    <div class="heading"><h1 id="decisions-title">Decisions</h1></div>
    ${SECTIONS.filter((s) => can(s.needs)).map((s) => html`<${s.view} />`)}
  </section>`;
}
