// The first screen: the mesh at a glance, from /api/overview, re-read as events arrive.

import { html, useEffect } from './preact-htm.js';
import { api } from './api.js';
import { store, can, showOverview } from './live.js';
import { Sparkline, money, Status, Ago, useLoad } from './parts.js';

function Card({ title, children, href }) {
  return html`<section class="card" aria-label=${title}>
    <h2>${href ? html`<a href=${href}>${title}</a>` : title}</h2>
    ${children}
  </section>`;
}

function Figure({ value, label, className = '' }) {
  return html`<div class=${`figure ${className}`}><strong>${value ?? '—'}</strong><span>${label}</span></div>`;
}

/** Federation peers (admins only): when each was last seen, and the results of tasks it
 * relayed here that still wait in the outbox because it has not taken them. */
function Peers() {
  const status = useLoad(() => api('/api/federation/status'), []);
  useEffect(() => {
    const timer = setInterval(() => status.reload(), 15000);
    return () => clearInterval(timer);
  }, []);
  const peers = status.data?.peers;
  if (!peers?.length) return null;
  return html`<${Card} title="Federation peers">
    <ul class="peers" data-testid="peers">
      ${peers.map((p) => html`<li key=${p.name}>
        <strong>${p.name}</strong>${' · '}${p.last_seen_at ? html`seen <${Ago} at=${p.last_seen_at} />` : 'never pinged'}
        ${' · '}<span class=${p.results_waiting > 0 ? 'error' : ''}>${p.results_waiting} results waiting</span>
      </li>`)}
    </ul>
  </${Card}>`;
}

/** Retention (admins): how long finished tasks are kept, and what the last run archived. */
function Retention({ retention }) {
  const { days, last_run_at: lastRun, last_archived: last, archived_since_start: total, last_error: error } = retention;
  return html`<${Card} title="Retention">
    <p data-testid="retention">${days == null
      ? 'Off: every task is kept.'
      : html`Finished tasks are archived after ${days} days${' · '}${lastRun
        ? html`last run <${Ago} at=${lastRun} />: ${last} archived, ${total} since the hub started`
        : 'no run yet'}`}</p>
    ${error && html`<p class="error">The last run stopped: ${error}</p>`}
  </${Card}>`;
}

export function Overview() {
  useEffect(() => {
    showOverview(true);
    return () => showOverview(false);
  }, []);
  const overview = store.overview;
  if (!overview && store.overviewError) return html`<p>The overview is not for this role (${store.overviewError.message}).</p>`;
  if (!overview) return html`<p class="boot">Loading the overview…</p>`;
  const { agents, tasks, cost } = overview;
  // The switch as the stream last told it (the counts above may be a second old).
  const killSwitch = store.killSwitch ?? overview.kill_switch;
  const minutes = tasks?.per_minute ?? [];
  const lastMinute = minutes[minutes.length - 1];
  const perHour = minutes.reduce((sum, m) => sum + m.created, 0);
  const capShare = cost && cost.cap_usd > 0 ? Math.min(1, cost.today_usd / cost.cap_usd) : 0;
  return html`<div class="overview" data-testid="overview">
    ${agents && html`<${Card} title="Agents" href="#/agents">
      <div class="figures">
        <${Figure} value=${agents.by_status.online} label="online" className="s-online" />
        <${Figure} value=${agents.by_status.busy} label="busy" className="s-busy" />
        <${Figure} value=${agents.by_status.offline} label="offline" className="s-offline" />
      </div>
    </${Card}>`}
    ${tasks && html`<${Card} title="Queue" href="#/tasks">
      <div class="figures">
        <${Figure} value=${tasks.queue_depth} label="queued" />
        <${Figure} value=${tasks.by_status.running ?? 0} label="running" />
        <${Figure} value=${tasks.total} label="tasks in all" />
      </div>
      <ul class="bars" aria-label="Queued by capability">
        ${Object.entries(tasks.queued_by_capability).map(([capability, count]) => html`
          <li><span>${capability}</span><meter min="0" max=${tasks.queue_depth} value=${count} aria-label=${`${capability}: ${count} queued`}></meter><span>${count}</span></li>`)}
      </ul>
    </${Card}>`}
    ${tasks && html`<${Card} title="Tasks per minute">
      <${Sparkline} label="Tasks created and finished per minute over the last hour" series=${[
        { className: 'created', values: minutes.map((m) => m.created) },
        { className: 'finished', values: minutes.map((m) => m.finished) },
      ]} />
      <p class="legend"><span class="created">— created</span>${' '}<span class="finished">┄ finished</span>${' · '}
        ${lastMinute?.created ?? 0} this minute, ${perHour} in the last hour</p>
    </${Card}>`}
    ${cost && html`<${Card} title="Cost today">
      <div class="figures"><${Figure} value=${money(cost.today_usd)} label=${`of ${money(cost.cap_usd)} daily cap`} /></div>
      <meter class="budget" min="0" max="1" low="0.7" high="0.9" optimum="0" value=${capShare}
        aria-label="Share of the daily cap spent"></meter>
      ${cost.cap_reached && html`<p class="error">The daily cap is reached: agents rest until midnight UTC.</p>`}
    </${Card}>`}
    ${tasks && html`<${Card} title="Waiting on people" href=${can('escalations:read') ? '#/decisions' : undefined}>
      <div class="figures">
        <${Figure} value=${tasks.open_escalations} label="open escalations" />
        ${tasks.pending_approvals != null && html`<${Figure} value=${tasks.pending_approvals} label="pending approvals" />`}
      </div>
    </${Card}>`}
    ${overview.retention && html`<${Retention} retention=${overview.retention} />`}
    <${Peers} />
    <${Card} title="Kill switch">
      <p>${killSwitch?.active
        ? html`<${Status} value="failed" text="engaged" />: no new work is dispatched`
        : html`<${Status} value="online" text="released" />: work flows`}</p>
    </${Card}>
  </div>`;
}
