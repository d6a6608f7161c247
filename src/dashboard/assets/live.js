// The live side of the dashboard: one EventSource on /api/stream, the little state every
// page shares (who is signed in, the kill switch, the overview counts), and rendering
// coalesced to at most one per animation frame however fast events arrive.
//
// Views keep their own data (a page of tasks, a console) and subscribe to the events that
// change it with `on`. After a gap the hub can no longer replay (a restart, or more events
// than its ring holds) it sends `resync`; then `generation` goes up and every view reloads
// what it shows, so nothing is missed and nothing is shown twice.

import { api, streamUrl } from './api.js';

/** Permissions that let a caller read some events (the stream refuses the others). */
const EVENT_READS = ['tasks:read', 'agents:read', 'messages:read'];

export const EVENT_NAMES = [
  'task_queued', 'task_assigned', 'task_updated', 'task_stream',
  'agent_registered', 'agent_status', 'agent_removed', 'agent_created', 'agent_updated',
  'agent_message', 'agent_wake', 'approval_requested', 'approval_decided',
  'pipeline_finished', 'escalation_opened', 'escalation_resolved',
  'preregistration_pending', 'preregistration_decided',
  'kill_switch', 'message', 'resync', 'leader',
];

export const store = {
  me: null,
  /** connecting | live | reconnecting | none (the role may read no events) */
  connection: 'connecting',
  /** Since when the stream has been down (ms), for the banner. */
  downSince: null,
  killSwitch: null,
  overview: null,
  overviewError: null,
  /** True while the overview is on screen: only then do its counts follow the events. */
  overviewShown: false,
  /** Goes up on every full reload; views reload their own data when it changes. */
  generation: 0,
  lastEventId: null,
};

const renders = new Set();
let frameRequested = false;

/**
 * Something in `store` has changed: render once, on the next frame. Views that keep their
 * own data re-render by themselves; this is only for what every page shares.
 */
export function changed() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(() => {
    frameRequested = false;
    for (const render of renders) render();
  });
}

export function onRender(render) {
  renders.add(render);
  return () => renders.delete(render);
}

const handlers = new Map();

/** Calls `handler(data, name)` for each event named in `names`; returns the unsubscribe. */
export function on(names, handler) {
  for (const name of names) {
    if (!handlers.has(name)) handlers.set(name, new Set());
    handlers.get(name).add(handler);
  }
  return () => names.forEach((name) => handlers.get(name)?.delete(handler));
}

/** Runs `task` at most once per `ms`, at the end of each burst of calls. */
export function throttle(task, ms) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => { timer = null; task(); }, ms);
  };
}

// The overview's counts move with almost every event; they are re-read at most once a
// second while events keep coming, rather than recomputed here from partial knowledge.
const refreshOverview = throttle(() => loadOverview(), 1000);

async function loadOverview() {
  try {
    store.overview = await api('/api/overview');
    store.overviewError = null;
    store.killSwitch = store.overview.kill_switch;
  } catch (error) {
    store.overviewError = error;
    // A role without the overview may still hold the kill switch.
    if (can('admin:kill_switch')) {
      store.killSwitch = await api('/api/admin/kill-switch').catch(() => store.killSwitch);
    }
  }
  changed();
}

function deliver(name, raw, lastEventId) {
  let data = null;
  try { data = raw ? JSON.parse(raw) : null; } catch { return; }
  if (lastEventId) store.lastEventId = lastEventId;
  // A new leader may have committed changes whose events the old one never sent.
  const everythingChanged = name === 'resync' || name === 'leader';
  if (everythingChanged) reload();
  if (name === 'kill_switch') {
    store.killSwitch = data;
    changed();
  }
  if (!everythingChanged && store.overviewShown && !['task_stream', 'message', 'agent_message'].includes(name)) refreshOverview();
  for (const handler of handlers.get(name) ?? []) handler(data, name);
}

let source = null;
let retryTimer = null;
let retryDelay = 1000;

/** Opens the stream (closing any earlier one). */
export function connect() {
  disconnect();
  if (!EVENT_READS.some(can)) {
    store.connection = 'none';
    return;
  }
  source = new EventSource(streamUrl());
  let fresh = true;
  source.onopen = () => {
    // A new stream attaches before it opens: what is loaded from now on misses nothing, so
    // every view reloads once. After a drop the browser resumes with Last-Event-ID and the
    // hub replays or says `resync`; without an event id there is nothing to resume from.
    if (fresh || (store.downSince && !store.lastEventId)) reload();
    fresh = false;
    store.connection = 'live';
    store.downSince = null;
    retryDelay = 1000;
    changed();
  };
  source.onerror = () => {
    store.connection = 'reconnecting';
    store.downSince ??= Date.now();
    changed();
    // While CONNECTING the browser retries by itself and resumes with Last-Event-ID. A
    // CLOSED stream was refused outright (the hub answered an error): open a new one,
    // which reloads everything when it opens, since it cannot say where it left off.
    if (source.readyState === EventSource.CLOSED) {
      source = null;
      retryTimer = setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 30000);
    }
  };
  for (const name of EVENT_NAMES) {
    source.addEventListener(name, (event) => deliver(name, event.data, event.lastEventId));
  }
}

export function disconnect() {
  clearTimeout(retryTimer);
  if (source) source.close();
  source = null;
}

/** The overview came on screen: bring its counts up to date and keep them so. */
export function showOverview(shown) {
  store.overviewShown = shown;
  if (shown) loadOverview();
}

/** Reloads everything shown: the shared state here, and (through `generation`) each view. */
export function reload() {
  store.generation += 1;
  loadOverview();
  changed();
}

/** After sign-in: the stream, whose opening loads everything (see `connect`). */
export function start(me) {
  store.me = me;
  connect();
  // Without a stream nothing else would load the shared state.
  if (store.connection === 'none') loadOverview();
}

export function stop() {
  disconnect();
  store.me = null;
  store.overview = null;
  store.killSwitch = null;
  store.connection = 'connecting';
}

export function can(permission) {
  return Boolean(store.me?.permissions?.includes(permission));
}
