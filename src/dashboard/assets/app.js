// The dashboard's entry: who is signed in, the route (in the URL's #fragment, so every
// view has an address and the hub serves one page), the frame around every view, and the
// kill switch, which every page shows while it is engaged.

import { html, render, options, useState, useEffect, useRef } from './preact-htm.js';
import { api, credentials, whenSignedOut } from './api.js';
import { store, start, stop, onRender, can, changed, on } from './live.js';
import { Ago, ErrorNote } from './parts.js';
import { SignIn } from './signin.js';
import { Overview } from './overview.js';
import { Agents } from './agents.js';
import { AgentPage } from './agent.js';
import { Tasks } from './tasks.js';
import { TaskPage } from './task.js';
import { Pipelines, PipelinePage } from './pipelines.js';
import { Decisions } from './decisions.js';
import { Audit } from './audit.js';
import { Onboarding, ApprovalPage } from './onboarding.js';
import { Schedules } from './schedules.js';
import { Exchanges } from './exchanges.js';

// However many events arrive, components re-render at most once per animation frame.
options.debounceRendering = (renderNow) => requestAnimationFrame(renderNow);

const VIEWS = [
  { path: '', title: 'Overview', view: Overview },
  { path: 'agents', title: 'Agents', view: Agents, page: AgentPage, needs: 'agents:read' },
  { path: 'tasks', title: 'Tasks', view: Tasks, page: TaskPage, needs: 'tasks:read' },
  { path: 'pipelines', title: 'Pipelines', view: Pipelines, page: PipelinePage, needs: 'tasks:read' },
  { path: 'schedules', title: 'Schedules', view: Schedules, needs: 'tasks:read' },
  { path: 'decisions', title: 'Decisions', view: Decisions, needs: 'escalations:read' },
  { path: 'onboarding', title: 'Onboarding', view: Onboarding, page: ApprovalPage, needs: 'admin:agents' },
  { path: 'exchanges', title: 'Exchanges', view: Exchanges, needs: 'admin:agents' },
  { path: 'audit', title: 'Audit', view: Audit, needs: 'admin:audit' },
];

function route() {
  const [path = '', ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  return { path, id: rest.length ? decodeURIComponent(rest.join('/')) : null };
}

function useRoute() {
  const [current, setCurrent] = useState(route());
  useEffect(() => {
    const follow = () => setCurrent(route());
    addEventListener('hashchange', follow);
    return () => removeEventListener('hashchange', follow);
  }, []);
  return current;
}

/** Re-renders on every coalesced store change. */
function useStore() {
  const [, setTick] = useState(0);
  useEffect(() => onRender(() => setTick((t) => t + 1)), []);
  return store;
}

function Connection({ state }) {
  const text = { live: 'live', reconnecting: 'reconnecting…', connecting: 'connecting…', none: 'no live events for this role' }[state];
  return html`<span class=${`connection c-${state}`} role="status" aria-live="polite">${text}</span>`;
}

function KillSwitchBanner({ killSwitch }) {
  if (!killSwitch?.active) return null;
  return html`<div class="kill-banner" role="alert">
    <strong>Kill switch engaged</strong> by ${killSwitch.by ?? 'unknown'} <${Ago} at=${killSwitch.at} />
    ${killSwitch.reason ? html`: “${killSwitch.reason}”` : ''}. No new work is dispatched.
  </div>`;
}

/** Engage (with a confirmation and a reason) or release; only for admin:kill_switch. */
function KillSwitchControl({ killSwitch }) {
  const dialog = useRef(null);
  const [reason, setReason] = useState('');
  const [error, setError] = useState(null);
  if (!can('admin:kill_switch')) return null;
  const set = async (engage) => {
    setError(null);
    try {
      store.killSwitch = engage
        ? await api('/api/admin/kill-switch', { method: 'POST', body: { reason: reason || undefined } })
        : await api('/api/admin/kill-switch', { method: 'DELETE' });
      changed();
      dialog.current?.close();
      setReason('');
    } catch (e) { setError(e); }
  };
  if (killSwitch?.active) {
    return html`<button type="button" class="kill release" onClick=${() => set(false)}>Release kill switch</button>
      <${ErrorNote} error=${error} />`;
  }
  return html`
    <button type="button" class="kill" onClick=${() => dialog.current.showModal()}>Kill switch…</button>
    <dialog ref=${dialog} class="kill-dialog" aria-labelledby="kill-title">
      <form method="dialog" onSubmit=${(e) => { e.preventDefault(); set(true); }}>
        <h2 id="kill-title">Engage the kill switch?</h2>
        <p>Every new task will be refused and nothing queued will be dispatched until it is released. Running tasks finish.</p>
        <label>Reason <textarea name="reason" required value=${reason} onInput=${(e) => setReason(e.target.value)} /></label>
        <${ErrorNote} error=${error} />
        <div class="buttons">
          <button type="button" onClick=${() => dialog.current.close()}>Cancel</button>
          <button type="submit" class="danger">Engage kill switch</button>
        </div>
      </form>
    </dialog>`;
}

/** Which process of several on one PostgreSQL database answers this page: the leader (and
 *  its epoch), or a follower that forwards to it. Nothing for a hub that runs alone. */
function ProcessRole() {
  const [health, setHealth] = useState(null);
  useEffect(() => {
    const load = () => api('/api/health').then(setHealth, () => {});
    load();
    const every = setInterval(load, 15000);
    // A new leader announces itself: this process may be the one that now leads.
    const off = on(['leader'], load);
    return () => { clearInterval(every); off(); };
  }, []);
  if (!health?.role || (health.role === 'leader' && health.epoch == null)) return null;
  const leads = health.role === 'leader';
  const title = leads
    ? `This process leads the database (leadership epoch ${health.epoch}).`
    : `This process forwards every change to the leader (${health.leader ?? 'none at the moment'}).`;
  return html`<span class="process" data-role=${health.role} title=${title}>${leads ? `leader · epoch ${health.epoch}` : 'follower'}</span>`;
}

function Frame({ me, children, current }) {
  const signOut = async () => {
    if (me.kind === 'session') await api('/api/logout', { method: 'POST' }).catch(() => {});
    credentials.use(null);
    location.hash = '';
    location.reload();
  };
  return html`
    <header class="top">
      <a class="brand" href="#/">m3shd</a>
      <nav aria-label="Views">
        ${VIEWS.filter((v) => !v.needs || can(v.needs)).map((v) => html`
          <a href=${`#/${v.path}`} aria-current=${current.path === v.path ? 'page' : undefined}>${v.title}</a>`)}
      </nav>
      <span class="spacer" />
      <${Connection} state=${store.connection} />
      <${ProcessRole} />
      <${KillSwitchControl} killSwitch=${store.killSwitch} />
      <span class="who" title=${me.permissions.join(', ')}>${me.kind === 'master' ? 'master token' : `${me.name} · ${me.role ?? 'custom permissions'}`}</span>
      <button type="button" onClick=${signOut}>Sign out</button>
    </header>
    <${KillSwitchBanner} killSwitch=${store.killSwitch} />
    <main id="main">${children}</main>`;
}

function App() {
  const state = useStore();
  const current = useRoute();
  const [phase, setPhase] = useState('checking');
  const enter = (me) => { start(me); setPhase('in'); };
  useEffect(() => {
    whenSignedOut(() => { credentials.use(null); stop(); setPhase('out'); });
    api('/api/me').then((me) => (me.kind === 'anonymous' ? setPhase('out') : enter(me)), () => setPhase('out'));
  }, []);
  useEffect(() => {
    const entry = VIEWS.find((v) => v.path === current.path);
    document.title = `${entry?.title ?? 'Not found'} · m3shd`;
  }, [current.path]);
  if (phase === 'checking') return html`<p class="boot">Loading…</p>`;
  if (phase === 'out' || !state.me) return html`<${SignIn} onSignedIn=${enter} />`;
  const entry = VIEWS.find((v) => v.path === current.path);
  let body;
  if (!entry) body = html`<p>No such page. <a href="#/">Back to the overview</a>.</p>`;
  else if (entry.needs && !can(entry.needs)) body = html`<p>Your role cannot see ${entry.title.toLowerCase()}.</p>`;
  else if (current.id && entry.page) body = html`<${entry.page} id=${current.id} />`;
  else body = html`<${entry.view} />`;
  return html`<${Frame} me=${state.me} current=${current}>${body}</${Frame}>`;
}

render(html`<${App} />`, document.getElementById('app'));
