// One agent: what it offers and holds, what an operator set (role, status, config, soul),
// its pending messages and its conversations, and the controls the caller's role allows:
// set its status, wake it, message it, delete it (seed 004); for its owner (admin:agents),
// its lifecycle state and a new runtime credential (seed 002).

import { html, useState } from './preact-htm.js';
import { api } from './api.js';
import { store, can } from './live.js';
import { Ago, Status, ErrorNote, Action, useLoad, useEvents, useThrottled } from './parts.js';
import { AGENT_EVENTS, MANAGED_EVENTS, STATUSES, Load, TaskCounts, applyAgentEvent } from './agents.js';
import { TaskTable } from './tasks.js';

const INBOX_EVENTS = ['agent_message', 'agent_wake'];

function path(id, rest = '') {
  return `/api/agents/${encodeURIComponent(id)}${rest}`;
}

/** Operator controls: set a status (idle, error and offline hold new work back), wake. */
function Controls({ agent, onChanged }) {
  const [status, setStatus] = useState(agent.status);
  const [reason, setReason] = useState('');
  const held = ['idle', 'error', 'offline'].includes(agent.status) && agent.presence !== 'offline';
  return html`<div class="controls">
    <form class="inline" onSubmit=${(e) => { e.preventDefault(); e.target.querySelector('button')?.click(); }}>
      <label>Status <select value=${status} onChange=${(e) => setStatus(e.target.value)}>
        ${STATUSES.map((s) => html`<option value=${s}>${s}</option>`)}
      </select></label>
      <${Action} label="Set status" run=${async () => {
        const { agent: changed } = await api(path(agent.agent_id), { method: 'PUT', body: { status } });
        onChanged(changed);
      }} />
    </form>
    <form class="inline" onSubmit=${(e) => { e.preventDefault(); e.target.querySelector('button')?.click(); }}>
      <label>Reason <input value=${reason} onInput=${(e) => setReason(e.target.value)} placeholder=${held ? 'why it should work again' : 'optional'} /></label>
      <${Action} label="Wake" run=${async () => {
        const { agent: changed } = await api(path(agent.agent_id, '/wake'), { method: 'POST', body: { reason: reason.trim() || undefined } });
        setReason('');
        onChanged(changed);
      }} />
    </form>
  </div>`;
}

const STATES = ['ACTIVE', 'PAUSED', 'SUSPENDED', 'BANNED'];
const STATE_EFFECTS = {
  ACTIVE: 'takes work as usual',
  PAUSED: 'keeps its credentials but gets no new work',
  SUSPENDED: 'its credentials are refused everywhere but its own profile',
  BANNED: 'its credentials are refused everywhere',
};

/** Seed 002's state select; keyed by the agent's state so it starts from the current one. */
function StateForm({ agent, onChanged }) {
  const [state, setState] = useState(agent.state ?? 'ACTIVE');
  const harsh = state === 'SUSPENDED' || state === 'BANNED';
  return html`<form class="inline" onSubmit=${(e) => { e.preventDefault(); e.target.querySelector('button')?.click(); }}>
    <label>State <select value=${state} onChange=${(e) => setState(e.target.value)}>
      ${STATES.map((s) => html`<option value=${s}>${s}</option>`)}
    </select></label>
    <${Action} label="Set state" confirm=${harsh ? `Make ${agent.agent_id} ${state}? ${STATE_EFFECTS[state]}.` : undefined} run=${async () => {
      const answer = await api(`/api/v1/agents/${encodeURIComponent(agent.agent_id)}`, { method: 'PATCH', body: { status: state } });
      onChanged(answer.status);
    }} />
  </form>`;
}

/** The owner's controls (admin:agents): the agent's lifecycle state, and a new runtime
 * credential, shown once (the old one stops working at once). */
function OwnerControls({ agent, onState }) {
  const [rotated, setRotated] = useState(null);
  const id = agent.agent_id;
  return html`<div role="group" aria-label="Owner controls">
    <div class="controls">
      <span>State <strong data-testid="agent-state">${agent.state ?? '—'}</strong> <span class="muted">(${STATE_EFFECTS[agent.state] ?? 'unknown'})</span></span>
      <${StateForm} key=${agent.state} agent=${agent} onChanged=${onState} />
      <${Action} label="Rotate credential"
        confirm=${`Give ${id} a new runtime credential? The current one stops working at once; the agent needs the new one (or its recovery credential).`}
        run=${async () => {
          setRotated(null);
          setRotated(await api(`/api/v1/agents/${encodeURIComponent(id)}/rotate-credential`, { method: 'POST' }));
        }} />
    </div>
    <div aria-live="polite">${rotated && html`<div class="card issued" data-testid="runtime-credential">
      <p><strong>Copy this runtime credential now: it is shown only once</strong> (version ${rotated.credentialVersion}).
        Give it to the agent; the one it had no longer works.</p>
      <p><code class="secret">${rotated.runtimeCredential}</code></p>
    </div>`}</div>
  </div>`;
}

function MessageForm({ id, onSent }) {
  const [content, setContent] = useState('');
  const [type, setType] = useState('request');
  return html`<form class="inline" aria-label="Send a message" onSubmit=${(e) => { e.preventDefault(); e.target.querySelector('button')?.click(); }}>
    <label>Message <input value=${content} onInput=${(e) => setContent(e.target.value)} required maxlength="8000" /></label>
    <label>Type <input value=${type} onInput=${(e) => setType(e.target.value)} size="10" /></label>
    <${Action} label="Send" run=${async () => {
      await api('/api/agents/message', { method: 'POST', body: { from: store.me.name, to: id, content, type: type.trim() || undefined } });
      setContent('');
      onSent();
    }} />
  </form>`;
}

function MessageList({ messages, testid }) {
  if (!messages.length) return html`<p class="muted" data-testid=${testid}>None.</p>`;
  return html`<ul class="plain messages" data-testid=${testid}>
    ${messages.map((m) => html`<li key=${m.id} data-message=${m.id}>
      <strong>${m.from}</strong> → ${m.to} <span class="tag">${m.type ?? 'message'}</span> <${Ago} at=${m.created_at} />
      <div class="text">${m.content}</div>
    </li>`)}
  </ul>`;
}

/** Unread messages and the conversation history, kept live by inbox events. */
function Inbox({ id }) {
  // The agent's own token would receive (consume) its messages by polling; only overseers peek.
  const peeks = can('agents:read') && !(store.me.kind === 'token' && store.me.name === id);
  const pending = useLoad(() => (peeks ? api(path(id, '/heartbeat'), { query: { limit: 1 } }) : Promise.resolve(null)), [id, peeks]);
  const comms = useLoad(() => api('/api/agents/comms', { query: { agent: id, limit: 50 } }), [id]);
  const refresh = useThrottled(() => { pending.reload(); comms.reload(); }, 500);
  useEvents(INBOX_EVENTS, (event) => {
    if (event.to !== id && event.from !== id) return;
    pending.missed();
    comms.missed();
    refresh();
  });
  return html`<section aria-labelledby="inbox-title">
    <h2 id="inbox-title">Messages</h2>
    ${can('messages:write') && html`<${MessageForm} id=${id} onSent=${refresh} />`}
    <${ErrorNote} error=${comms.error ?? pending.error} />
    ${pending.data && html`<h3>Unread (${pending.data.messages.length})</h3><${MessageList} messages=${pending.data.messages} testid="unread" />`}
    <h3>Conversations</h3>
    <${MessageList} messages=${comms.data?.messages ?? []} testid="comms" />
  </section>`;
}

export function AgentPage({ id }) {
  const agent = useLoad(() => api(path(id)).then((d) => d.agent, (e) => { if (e.status === 404) return null; throw e; }), [id]);
  const reputation = useLoad(() => api(path(id, '/reputation')).catch(() => null), [id]);
  const [deleted, setDeleted] = useState(false);
  const refresh = useThrottled(() => agent.reload(), 1000);
  useEvents(AGENT_EVENTS, (event) => {
    if (event.agent_id !== id) return;
    agent.missed();
    agent.update((a) => (a ? applyAgentEvent([a], event)[0] : a));
  });
  useEvents(MANAGED_EVENTS, (event) => { if (event.agent_id === id) refresh(); });
  if (deleted) return html`<p>Agent ${id} was removed. <a href="#/agents">Back to the agents</a>.</p>`;
  const a = agent.data;
  // The agent shown before stays until this one loads: its credential must not be rotated here.
  const owned = a?.agent_id === id && can('admin:agents');
  return html`<section aria-labelledby="agent-title">
    <div class="heading">
      <h1 id="agent-title">${id}</h1>
      ${a && html`<${Status} value=${a.status} />`}
      <span class="spacer" />
      ${a && can('agents:delete') && html`<${Action} label="Delete agent" className="danger"
        confirm=${`Remove agent ${id}? Its tasks go back to the queue.`}
        run=${async () => { await api(path(id), { method: 'DELETE' }); setDeleted(true); }} />`}
    </div>
    <${ErrorNote} error=${agent.error} />
    ${agent.data === null && !agent.loading && html`<p class="muted">No agent ${id} is registered.</p>`}
    ${a && can('agents:manage') && html`<${Controls} key=${a.updated_at} agent=${a} onChanged=${(changed) => agent.update(() => changed)} />`}
    ${owned && html`<${OwnerControls} key=${id} agent=${a}
      onState=${(state) => agent.update((x) => (x ? { ...x, state } : x))} />`}
    ${a && html`<dl class="facts">
      <dt>Id</dt><dd>${a.id}</dd>
      <dt>Name</dt><dd>${a.name}</dd>
      <dt>Role</dt><dd>${a.role ?? '—'}</dd>
      <dt>Presence</dt><dd><${Status} value=${a.presence} /></dd>
      <dt>Machine</dt><dd>${a.machine ?? '—'}</dd>
      <dt>Capabilities</dt><dd>${a.capabilities.map((c) => html`<code>${c}</code> `)}</dd>
      ${a.excluded?.length ? html`<dt>Excluded</dt><dd>${a.excluded.map((c) => html`<code>${c}</code> `)}</dd>` : ''}
      <dt>Load</dt><dd><${Load} agent=${a} /></dd>
      <dt>Tasks</dt><dd><${TaskCounts} stats=${a.taskStats} /></dd>
      <dt>Activity</dt><dd>${a.last_activity ?? '—'}</dd>
      <dt>Last seen</dt><dd><${Ago} at=${a.last_seen} /></dd>
      <dt>Created</dt><dd><${Ago} at=${a.created_at} /></dd>
      ${a.session_key != null ? html`<dt>Session key</dt><dd><code>${a.session_key}</code></dd>` : ''}
    </dl>
    ${Object.keys(a.config ?? {}).length > 0 && html`<h2>Config</h2><pre class="text" data-testid="config">${JSON.stringify(a.config, null, 2)}</pre>`}
    ${a.soul_content != null && html`<h2>Soul</h2><pre class="text" data-testid="soul">${a.soul_content}</pre>`}`}
    ${reputation.data?.capabilities?.length > 0 && html`<h2>Reputation</h2>
      <table class="grid compact"><thead><tr><th>Capability</th><th>Score</th><th>Succeeded</th><th>Failed</th><th>Verified</th></tr></thead><tbody>
        ${reputation.data.capabilities.map((r) => html`<tr key=${r.capability}>
          <td><code>${r.capability}</code></td><td>${Number(r.score).toFixed(2)}</td>
          <td>${r.successes}</td><td>${r.failures}</td><td>${r.verifications}</td></tr>`)}
      </tbody></table>`}
    ${a && can('messages:read') && html`<${Inbox} id=${id} />`}
    ${can('tasks:read') && html`<h2>Its tasks</h2><${TaskTable} filters=${{ assigned_to: id }} />`}
  </section>`;
}
