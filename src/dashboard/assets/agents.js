// Agents: a paged, filterable table kept live by agent events (and re-read, at most every
// two seconds, while task events move their loads), and a page per agent.

import { html, useState, useMemo } from './preact-htm.js';
import { api } from './api.js';
import { store, can } from './live.js';
import { Ago, Status, Pager, ErrorNote, Choice, Action, Row, useClock, useLoad, useEvents, useThrottled } from './parts.js';
import { TaskTable } from './tasks.js';

const PAGE = 100;
const AGENT_EVENTS = ['agent_registered', 'agent_status'];
const LOAD_EVENTS = ['task_assigned', 'task_updated'];

function Load({ agent }) {
  const share = agent.max_concurrent > 0 ? Math.min(1, agent.load / agent.max_concurrent) : 0;
  return html`<span class="load" title=${`${agent.load} of ${agent.max_concurrent} slots taken`}>
    <meter min="0" max="1" high="0.99" value=${share} aria-label="Slots taken"></meter> ${agent.load}/${agent.max_concurrent}
  </span>`;
}

function agentRow(a) {
  return html`<tr data-agent=${a.agent_id}>
    <td><a href=${`#/agents/${encodeURIComponent(a.agent_id)}`}>${a.agent_id}</a>${a.machine ? html` <span class="muted">${a.machine}</span>` : ''}</td>
    <td><${Status} value=${a.status} /></td>
    <td>${a.role ?? html`<span class="muted">—</span>`}</td>
    <td class="caps">${a.capabilities.map((c) => html`<code>${c}</code> `)}</td>
    <td><${Load} agent=${a} /></td>
    <td><${Ago} at=${a.last_heartbeat} /></td>
    <td><${Reputation} entry=${a.reputation} /></td>
  </tr>`;
}

/** Success rate over every capability, and rank (from the master's leaderboard). */
function Reputation({ entry }) {
  if (!entry) return html`<span class="muted">—</span>`;
  const finished = entry.successes + entry.failures;
  return html`<span title=${`${entry.successes} succeeded, ${entry.failures} failed, ${entry.verifications} verified`}>
    ${finished ? `${Math.round(entry.success_rate * 100)} %` : 'new'} · #${entry.rank}</span>`;
}

/** Applies an agent event to a list of agents shown: new status or new registration. */
function applyAgentEvent(list, event) {
  return list.map((a) => (a.agent_id === event.agent_id ? { ...a, ...event, last_heartbeat: event.at ?? a.last_heartbeat } : a));
}

export function Agents() {
  const [status, setStatus] = useState('');
  const [offset, setOffset] = useState(0);
  const tick = useClock();
  const agents = useLoad(() => api('/api/agents', { query: { status, limit: PAGE, offset } }), [status, offset]);
  const refresh = useThrottled(() => agents.reload(), 2000);
  useEvents(AGENT_EVENTS, (event, name) => {
    const shown = agents.latest()?.agents.some((a) => a.agent_id === event.agent_id);
    if (shown || name === 'agent_registered') agents.missed();
    if (shown) agents.update((d) => ({ ...d, agents: applyAgentEvent(d.agents, event) }));
    else if (name === 'agent_registered') refresh();
  });
  // A task moving changes its agent's load: re-read the page when that agent is on it (or,
  // for a task back in the queue, whose event no longer names it, when it may be).
  useEvents(LOAD_EVENTS, (event) => {
    if (!event.assigned_to || agents.latest()?.agents.some((a) => a.agent_id === event.assigned_to)) refresh();
  });
  // Reputation comes from the leaderboard, which only the master token may read.
  const master = store.me.kind === 'master';
  const board = useLoad(() => (master ? api('/api/admin/reputation/leaderboard') : Promise.resolve(null)), [master]);
  const refreshBoard = useThrottled(() => board.reload(), 5000);
  useEvents(['task_updated'], (event) => { if (master && ['done', 'failed'].includes(event.status)) refreshBoard(); });
  const list = useMemo(() => {
    const ranks = new Map((board.data?.leaderboard ?? []).map((entry) => [entry.agent_id, entry]));
    return (agents.data?.agents ?? []).map((a) => (ranks.has(a.agent_id) ? { ...a, reputation: ranks.get(a.agent_id) } : a));
  }, [agents.data, board.data]);
  return html`<section aria-labelledby="agents-title">
    <div class="heading">
      <h1 id="agents-title">Agents</h1>
      <${Choice} label="Status" value=${status} options=${['online', 'busy', 'offline']}
        onChange=${(v) => { setStatus(v); setOffset(0); }} />
    </div>
    <${ErrorNote} error=${agents.error} />
    <table class="grid" data-testid="agents">
      <thead><tr><th>Agent</th><th>Status</th><th>Role</th><th>Capabilities</th><th>Load</th><th>Last seen</th><th>Reputation</th></tr></thead>
      <tbody>
        ${list.map((a) => html`<${Row} key=${a.agent_id} item=${a} tick=${tick} view=${agentRow} />`)}
      </tbody>
    </table>
    ${!agents.loading && !list.length && html`<p class="muted">No agents${status ? ` are ${status}` : ' have registered yet'}.</p>`}
    <${Pager} offset=${offset} limit=${PAGE} shown=${list.length} total=${agents.data?.total} onPage=${setOffset} />
  </section>`;
}

/** One agent, looked up page by page in the list (the read every role with agents:read has). */
async function findAgent(id) {
  for (let offset = 0; ; offset += 200) {
    const page = await api('/api/agents', { query: { limit: 200, offset } });
    const found = page.agents.find((a) => a.agent_id === id);
    if (found) return found;
    if (offset + page.agents.length >= page.total || !page.agents.length) return null;
  }
}

export function AgentPage({ id }) {
  const agent = useLoad(() => findAgent(id), [id]);
  const reputation = useLoad(() => api(`/api/agents/${encodeURIComponent(id)}/reputation`).catch(() => null), [id]);
  const [deleted, setDeleted] = useState(false);
  useEvents(AGENT_EVENTS, (event) => {
    if (event.agent_id !== id) return;
    agent.missed();
    agent.update((a) => (a ? applyAgentEvent([a], event)[0] : a));
  });
  if (deleted) return html`<p>Agent ${id} was removed. <a href="#/agents">Back to the agents</a>.</p>`;
  const a = agent.data;
  return html`<section aria-labelledby="agent-title">
    <div class="heading">
      <h1 id="agent-title">${id}</h1>
      ${a && html`<${Status} value=${a.status} />`}
      <span class="spacer" />
      ${a && can('agents:delete') && html`<${Action} label="Delete agent" className="danger"
        confirm=${`Remove agent ${id}? Its tasks go back to the queue.`}
        run=${async () => { await api(`/api/agents/${encodeURIComponent(id)}`, { method: 'DELETE' }); setDeleted(true); }} />`}
    </div>
    <${ErrorNote} error=${agent.error} />
    ${agent.data === null && !agent.loading && html`<p class="muted">No agent ${id} is registered.</p>`}
    ${a && html`<dl class="facts">
      <dt>Name</dt><dd>${a.name}</dd>
      <dt>Machine</dt><dd>${a.machine ?? '—'}</dd>
      <dt>Capabilities</dt><dd>${a.capabilities.map((c) => html`<code>${c}</code> `)}</dd>
      ${a.excluded?.length ? html`<dt>Excluded</dt><dd>${a.excluded.map((c) => html`<code>${c}</code> `)}</dd>` : ''}
      <dt>Load</dt><dd><${Load} agent=${a} /></dd>
      <dt>Last seen</dt><dd><${Ago} at=${a.last_heartbeat} /></dd>
      <dt>Registered</dt><dd><${Ago} at=${a.registered_at} /></dd>
    </dl>`}
    ${reputation.data?.capabilities?.length > 0 && html`<h2>Reputation</h2>
      <table class="grid compact"><thead><tr><th>Capability</th><th>Score</th><th>Succeeded</th><th>Failed</th><th>Verified</th></tr></thead><tbody>
        ${reputation.data.capabilities.map((r) => html`<tr key=${r.capability}>
          <td><code>${r.capability}</code></td><td>${Number(r.score).toFixed(2)}</td>
          <td>${r.successes}</td><td>${r.failures}</td><td>${r.verifications}</td></tr>`)}
      </tbody></table>`}
    ${can('tasks:read') && html`<h2>Its tasks</h2><${TaskTable} filters=${{ assigned_to: id }} />`}
  </section>`;
}
