// Onboarding (seed 002): new agents asking to join, live, each approved or denied here; the
// page an agent's printed link opens (#/onboarding/<verification code>); and the one-time
// registration tokens a new agent starts with. All of it needs admin:agents.

import { html, useState } from './preact-htm.js';
import { api } from './api.js';
import { Ago, Status, ErrorNote, Action, useLoad, useEvents, useClock, useThrottled } from './parts.js';

const EVENTS = ['preregistration_pending', 'preregistration_decided'];
const ROLES = ['worker', 'mobile', 'commander', 'viewer', 'operator', 'admin'];
const TOKENS = '/api/admin/registration-tokens';
const REQUESTS = '/api/v1/agent-preregistrations';

/** "in 12 min", with the exact time on hover: when something runs out. */
function Until({ at }) {
  const seconds = Math.round((new Date(at).getTime() - Date.now()) / 1000);
  let text;
  if (seconds <= 0) text = 'now';
  else if (seconds < 60) text = `in ${seconds} s`;
  else if (seconds < 3600) text = `in ${Math.floor(seconds / 60)} min`;
  else text = `in ${Math.floor(seconds / 3600)} h`;
  return html`<time datetime=${at} title=${new Date(at).toLocaleString()}>${text}</time>`;
}

// The hub says `expired` only when asked; between reads the clock says it.
function shownStatus(p) {
  return ['pending', 'approved'].includes(p.status) && p.expiresAt && new Date(p.expiresAt) <= Date.now() && !p.agentId
    ? 'expired' : p.status;
}

/** The list with `p` in it, new or replacing its older self; a settled request never goes back to pending. */
function withRequest(list, p) {
  const old = list.find((x) => x.id === p.id);
  if (!old) return [p, ...list];
  if (old.status !== 'pending' && p.status === 'pending') return list;
  return list.map((x) => (x.id === p.id ? p : x));
}

function Skills({ skills, none = 'none' }) {
  return skills?.length ? skills.map((s) => html`<code>${s}</code> `) : html`<span class="muted">${none}</span>`;
}

function PendingRequest({ request: p, onDecided }) {
  const decide = (verb) => async () => onDecided(await api(`${REQUESTS}/${p.id}/${verb}`, { method: 'POST' }));
  return html`<li class="card" data-preregistration=${p.id}>
    <p><${Status} value="pending" /> <strong>${p.requestedName}</strong> <span class="tag">${p.requestedRuntimeType}</span>${p.requestedCategory && html` <span class="tag">${p.requestedCategory}</span>`}</p>
    <p class="muted">skills <${Skills} skills=${p.requestedSkills} /> · asked <${Ago} at=${p.createdAt} /> · expires <${Until} at=${p.expiresAt} /></p>
    <div class="choices">
      <${Action} label="Approve" run=${decide('approve')} />
      <${Action} label="Deny" className="danger" run=${decide('deny')} />
    </div>
  </li>`;
}

function settledRow(p) {
  const status = shownStatus(p);
  return html`<tr key=${p.id} data-preregistration=${p.id}>
    <td>${p.agentId ? html`<a href=${`#/agents/${encodeURIComponent(p.agentId)}`}>${p.requestedName}</a>` : p.requestedName}</td>
    <td><${Status} value=${status} /></td>
    <td>${p.requestedRuntimeType}</td>
    <td>${p.decidedBy ?? html`<span class="muted">—</span>`}</td>
    <td><${Ago} at=${p.decidedAt ?? p.createdAt} /></td>
    <td>${p.agentId ? 'joined' : status === 'approved' ? html`may join until <${Until} at=${p.expiresAt} />` : ''}</td>
  </tr>`;
}

/** Requests to join, kept live by the hub's events: pending ones to decide, settled ones below. */
function Requests() {
  // Ages and expiries move on between events.
  useClock();
  const requests = useLoad(() => api(REQUESTS), []);
  useEvents(EVENTS, (event) => {
    // An event that lands while the list loads may be missing from its answer.
    requests.missed();
    requests.update((d) => (d ? { ...d, preregistrations: withRequest(d.preregistrations, event) } : d));
  });
  const decided = (p) => requests.update((d) => (d ? { ...d, preregistrations: withRequest(d.preregistrations, p) } : d));
  const all = requests.data?.preregistrations ?? [];
  const pending = all.filter((p) => shownStatus(p) === 'pending').sort((a, b) => a.id - b.id);
  const settled = all.filter((p) => shownStatus(p) !== 'pending').sort((a, b) => b.id - a.id);
  return html`<section aria-labelledby="requests-title" data-testid="preregistrations">
    <h2 id="requests-title">Waiting for approval <span class="count">${pending.length}</span></h2>
    <${ErrorNote} error=${requests.error} />
    ${!requests.loading && !pending.length && html`<p class="muted">No agent is waiting to join.</p>`}
    <ul class="cards">${pending.map((p) => html`<${PendingRequest} key=${p.id} request=${p} onDecided=${decided} />`)}</ul>
    ${settled.length > 0 && html`<h3>Settled</h3>
      <table class="grid compact" data-testid="settled">
        <thead><tr><th>Agent</th><th>Status</th><th>Runtime</th><th>Decided by</th><th>When</th><th></th></tr></thead>
        <tbody>${settled.map(settledRow)}</tbody>
      </table>`}
  </section>`;
}

/** The raw token, once: the hub keeps only its hash. */
function IssuedToken({ token }) {
  const [copied, setCopied] = useState(false);
  // The clipboard API exists only on secure origins (https, localhost).
  const copy = navigator.clipboard && (async () => { await navigator.clipboard.writeText(token.registrationToken); setCopied(true); });
  return html`<div class="card issued" data-testid="issued-token">
    <p><strong>Copy this token now: it is shown only once.</strong> Give it to the new agent; it can be used
      once, until <time datetime=${token.expiresAt}>${new Date(token.expiresAt).toLocaleTimeString()}</time> (<${Until} at=${token.expiresAt} />).</p>
    <p><code class="secret">${token.registrationToken}</code>
      ${copy && html` <button type="button" onClick=${copy}>${copied ? 'Copied' : 'Copy'}</button>`}</p>
  </div>`;
}

function NewToken({ onIssued }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const name = String(form.get('name') ?? '').trim() || undefined;
    const capabilities = String(form.get('capabilities') ?? '').split(/[\s,]+/).filter(Boolean);
    setError(null);
    setBusy(true);
    try {
      const issued = await api(TOKENS, { method: 'POST', body: { name, role: form.get('role'), capabilities } });
      e.target.reset();
      onIssued(issued);
    } catch (failure) { setError(failure); } finally { setBusy(false); }
  };
  return html`<form class="panel-form" onSubmit=${submit} aria-label="New registration token">
    <label>Name <input name="name" maxlength="128" placeholder="what it is for" /></label>
    <label>Role <select name="role">${ROLES.map((r) => html`<option selected=${r === 'worker'}>${r}</option>`)}</select></label>
    <label>Capabilities <input name="capabilities" placeholder="default: the skills it asks for" /></label>
    <${ErrorNote} error=${error} />
    <div class="buttons"><button type="submit" disabled=${busy}>Issue token</button></div>
  </form>`;
}

function tokenStatus(t) {
  return t.status === 'active' && new Date(t.expiresAt) <= Date.now() ? 'expired' : t.status;
}

/** One-time registration tokens: issue one (its raw value shown once), see what became of each, revoke. */
function Tokens() {
  // A token expires with no event.
  useClock();
  const tokens = useLoad(() => api(TOKENS), []);
  const [issued, setIssued] = useState(null);
  // A preregistration uses up its token: re-read to show it.
  const refresh = useThrottled(() => tokens.reload(), 1000);
  useEvents(['preregistration_pending'], () => { tokens.missed(); refresh(); });
  const list = tokens.data?.registrationTokens ?? [];
  return html`<section aria-labelledby="tokens-title" data-testid="registration-tokens">
    <h2 id="tokens-title">Registration tokens</h2>
    <p class="muted">A new agent starts with one: it preregisters with it, then waits for an approval above.</p>
    <${NewToken} onIssued=${(t) => { setIssued(t); tokens.reload(); }} />
    <div aria-live="polite">${issued && html`<${IssuedToken} key=${issued.id} token=${issued} />`}</div>
    <${ErrorNote} error=${tokens.error} />
    ${!tokens.loading && !list.length && html`<p class="muted">No registration token was issued yet.</p>`}
    ${list.length > 0 && html`<table class="grid compact">
      <thead><tr><th>#</th><th>Name</th><th>Role</th><th>Capabilities</th><th>Status</th><th>Issued</th><th>Expires</th><th></th></tr></thead>
      <tbody>${list.map((t) => {
        const status = tokenStatus(t);
        return html`<tr key=${t.id} data-token=${t.id}>
          <td>${t.id}</td><td>${t.name ?? html`<span class="muted">—</span>`}</td><td>${t.role}</td>
          <td><${Skills} skills=${t.capabilities} none="its skills" /></td>
          <td><${Status} value=${status} />${t.usedAt ? html` <${Ago} at=${t.usedAt} />` : ''}</td>
          <td>by ${t.createdBy} <${Ago} at=${t.createdAt} /></td>
          <td>${status === 'active' ? html`<${Until} at=${t.expiresAt} />` : html`<span class="muted">—</span>`}</td>
          <td>${status === 'active' && html`<${Action} label="Revoke" run=${async () => {
            await api(`${TOKENS}/${t.id}`, { method: 'DELETE' });
            tokens.reload();
          }} />`}</td>
        </tr>`;
      })}</tbody>
    </table>`}
  </section>`;
}

export function Onboarding() {
  return html`<section aria-labelledby="onboarding-title">
    <div class="heading"><h1 id="onboarding-title">Onboarding</h1></div>
    <${Requests} />
    <${Tokens} />
  </section>`;
}

/**
 * The page behind an agent's verification link. Only the code's hash is stored, so nothing
 * about the request can be shown before acting: it says what approving does, and shows the
 * request once the hub answers.
 */
export function ApprovalPage({ id: code }) {
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const decide = (verb) => async () => {
    setBusy(true);
    setError(null);
    try {
      setResult(await api(`${REQUESTS}/${encodeURIComponent(code)}/${verb}`, { method: 'POST' }));
    } catch (failure) { setError(failure); } finally { setBusy(false); }
  };
  const settled = result && result.status !== 'pending';
  return html`<section aria-labelledby="approval-title" class="approval">
    <div class="heading"><h1 id="approval-title">Approve a new agent</h1></div>
    <p>An agent asked to join this hub and printed this code. Check that it is the code the agent shows.</p>
    <p class="code" data-testid="verification-code"><code>${code}</code></p>
    <p class="muted">Approving lets it finish joining: it becomes an agent with the name it asked for, the role and
      capabilities its registration token grants, and credentials of its own. Denying ends the request; the agent
      has to start again with a new registration token.</p>
    <div class="choices">
      <button type="button" disabled=${busy || settled} onClick=${decide('approve')}>Approve</button>
      <button type="button" class="danger" disabled=${busy || settled} onClick=${decide('deny')}>Deny</button>
    </div>
    <div role="status" aria-live="polite" data-testid="decision">
      ${result && html`<p><${Status} value=${result.status} /> <strong>${result.requestedName}</strong> (${result.requestedRuntimeType}${result.requestedCategory ? `, ${result.requestedCategory}` : ''})
        ${result.decidedBy && html` by ${result.decidedBy}`}
        ${result.status === 'approved' && !result.agentId && html` — it may finish joining until <time datetime=${result.expiresAt}>${new Date(result.expiresAt).toLocaleTimeString()}</time>.`}</p>`}
    </div>
    <${ErrorNote} error=${error} />
    <p><a href="#/onboarding">All requests and registration tokens</a></p>
  </section>`;
}
