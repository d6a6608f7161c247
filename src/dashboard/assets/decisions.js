// Decisions waiting on people. Each kind of decision is one section in SECTIONS: open
// escalations today; tool-call approvals and agent onboarding requests join the list as
// the hub learns them.

import { html, useState } from './preact-htm.js';
import { api } from './api.js';
import { can } from './live.js';
import { Ago, Status, ErrorNote, Action, useLoad, useEvents } from './parts.js';

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

const SECTIONS = [
  { needs: 'escalations:read', view: Escalations },
];

export function Decisions() {
  return html`<section aria-labelledby="decisions-title">
    <div class="heading"><h1 id="decisions-title">Decisions</h1></div>
    ${SECTIONS.filter((s) => can(s.needs)).map((s) => html`<${s.view} />`)}
  </section>`;
}
