// Agents: a paged, filterable table kept live by agent events (and re-read, at most every
// two seconds, while task events move their loads or an operator changes or adds an agent),
// and, for those who manage agents, a form that creates one (seed 004).

import { html, useState, useMemo } from './preact-htm.js';
import { api } from './api.js';
import { store, can } from './live.js';
import { Ago, Status, Pager, ErrorNote, Choice, Row, useClock, useLoad, useEvents, useThrottled } from './parts.js';

const PAGE = 100;
export const AGENT_EVENTS = ['agent_registered', 'agent_status'];
/** An operator created or changed an agent: re-read rather than patch (the event is partial). */
export const MANAGED_EVENTS = ['agent_created', 'agent_updated'];
const LOAD_EVENTS = ['task_assigned', 'task_updated'];
export const STATUSES = ['online', 'busy', 'offline', 'idle', 'error'];
/** A new agent's name: letters, digits, `.`, `_`, `-`, not only digits (the hub's rule). */
const NAME_PATTERN = '[A-Za-z0-9._\\-]*[A-Za-z._\\-][A-Za-z0-9._\\-]*';

export function Load({ agent }) {
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
    <td><${TaskCounts} stats=${a.taskStats} /></td>
    <td class="activity">${a.last_activity ?? html`<span class="muted">—</span>`}</td>
    <td><${Ago} at=${a.last_heartbeat} /></td>
    <td><${Reputation} entry=${a.reputation} /></td>
  </tr>`;
}

/** Seed 004's taskStats: what the agent holds now, and what it has finished. */
export function TaskCounts({ stats }) {
  if (!stats) return html`<span class="muted">—</span>`;
  return html`<span title=${`${stats.total} in all: ${stats.assigned} assigned, ${stats.in_progress} running, ${stats.completed} done`}>
    ${stats.assigned + stats.in_progress} open · ${stats.completed} done</span>`;
}

/** Success rate over every capability, and rank (from the master's leaderboard). */
function Reputation({ entry }) {
  if (!entry) return html`<span class="muted">—</span>`;
  const finished = entry.successes + entry.failures;
  return html`<span title=${`${entry.successes} succeeded, ${entry.failures} failed, ${entry.verifications} verified`}>
    ${finished ? `${Math.round(entry.success_rate * 100)} %` : 'new'} · #${entry.rank}</span>`;
}

/** Applies an agent event to a list of agents shown: new status or new registration. */
export function applyAgentEvent(list, event) {
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
  useEvents(MANAGED_EVENTS, () => refresh());
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
      <${Choice} label="Status" value=${status} options=${STATUSES}
        onChange=${(v) => { setStatus(v); setOffset(0); }} />
    </div>
    ${can('agents:manage') && html`<${NewAgent} onCreated=${() => agents.reload()} />`}
    <${ErrorNote} error=${agents.error} />
    <table class="grid" data-testid="agents">
      <thead><tr><th>Agent</th><th>Status</th><th>Role</th><th>Capabilities</th><th>Load</th><th>Tasks</th><th>Activity</th><th>Last seen</th><th>Reputation</th></tr></thead>
      <tbody>
        ${list.map((a) => html`<${Row} key=${a.agent_id} item=${a} tick=${tick} view=${agentRow} />`)}
      </tbody>
    </table>
    ${!agents.loading && !list.length && html`<p class="muted">No agents${status ? ` are ${status}` : ' have registered yet'}.</p>`}
    <${Pager} offset=${offset} limit=${PAGE} shown=${list.length} total=${agents.data?.total} onPage=${setOffset} />
  </section>`;
}

/** Seed 004's create: a name, a role, and optionally a template and capabilities. */
function NewAgent({ onCreated }) {
  const [open, setOpen] = useState(false);
  const [error, setError] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const text = (name) => String(form.get(name) ?? '').trim() || undefined;
    const capabilities = text('capabilities')?.split(/[\s,]+/).filter(Boolean);
    setError(null);
    try {
      await api('/api/agents', {
        method: 'POST',
        body: { name: text('name'), role: text('role'), template: text('template'), capabilities, soul_content: text('soul'), status: text('status') },
      });
      e.target.reset();
      setOpen(false);
      onCreated();
    } catch (failure) { setError(failure); }
  };
  if (!open) return html`<p><button type="button" onClick=${() => setOpen(true)}>New agent</button></p>`;
  return html`<form class="panel-form" onSubmit=${submit} aria-label="New agent">
    <label>Name <input name="name" required pattern=${NAME_PATTERN} maxlength="64" /></label>
    <label>Role <input name="role" placeholder="from the template, if one is chosen" /></label>
    <label>Template <input name="template" placeholder="developer, reviewer, researcher…" /></label>
    <label>Capabilities <input name="capabilities" placeholder="research, git" /></label>
    <label>Status <select name="status"><option value="">not set</option>${STATUSES.map((s) => html`<option>${s}</option>`)}</select></label>
    <label class="wide">Soul <textarea name="soul" rows="3"></textarea></label>
    <${ErrorNote} error=${error} />
    <div class="buttons">
      <button type="button" onClick=${() => setOpen(false)}>Cancel</button>
      <button type="submit">Create agent</button>
    </div>
  </form>`;
}
