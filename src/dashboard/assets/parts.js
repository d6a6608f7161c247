// Pieces every view uses: status badges (told by text and symbol, not colour alone),
// times, a pager, a sparkline, data loading that follows `generation`, and live events.

import { html, Component, useState, useEffect, useRef, useCallback, useMemo } from './preact-htm.js';
import { store, on, throttle } from './live.js';

export { html };

const SYMBOLS = {
  online: '●', busy: '◐', offline: '○',
  queued: '…', assigned: '→', running: '▶', done: '✓', failed: '✕', cancelled: '⊘',
  open: '!', resolved: '✓', pending: '?',
  approved: '✓', denied: '✕', expired: '⌛', active: '●', used: '✓', revoked: '⊘',
};

/** A status in words with a symbol; `text` replaces the words where the status is implied. */
export function Status({ value, text }) {
  const name = value ?? 'unknown';
  return html`<span class=${`status s-${name}`}><span aria-hidden="true">${SYMBOLS[name] ?? '•'}</span> ${text ?? name}</span>`;
}

/** "3 min ago", with the exact time on hover. */
// One formatter for every timestamp: making one per call (toLocaleString) costs more than
// the rest of a row's render.
const EXACT = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

export function Ago({ at }) {
  if (!at) return html`<span class="muted">—</span>`;
  return html`<time datetime=${at} title=${EXACT.format(new Date(at))}>${ago(at)}</time>`;
}

export function ago(at) {
  const seconds = Math.round((Date.now() - new Date(at).getTime()) / 1000);
  if (seconds < 5) return 'just now';
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export function money(usd) {
  return usd == null ? '—' : `$${Number(usd).toFixed(2)}`;
}

/**
 * Loads with `loader` now, whenever `deps` change, and after every full reload. Only the
 * latest load's answer is kept, so an older one landing late never replaces newer data. An
 * event that arrives while a load is in flight may be missing from its answer: the view
 * calls `missed()`, and the data is loaded once more when that load ends. Event handlers read
 * `latest()`, not `data`: an answer that has landed but is not rendered yet is already there.
 */
export function useLoad(loader, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const flight = useRef({ seq: 0, loading: false, again: false });
  // The newest data, ahead of the render that will show it.
  const current = useRef(null);
  const latest = useRef(loader);
  latest.current = loader;
  const generation = store.generation;
  const load = useCallback(() => {
    const seq = ++flight.current.seq;
    flight.current.loading = true;
    flight.current.again = false;
    setState((s) => (s.loading ? s : { ...s, loading: true }));
    latest.current().then(
      (data) => {
        if (seq !== flight.current.seq) return;
        current.current = data;
        setState({ data, error: null, loading: false });
      },
      (error) => seq === flight.current.seq && setState((s) => ({ data: s.data, error, loading: false })),
    ).finally(() => {
      if (seq !== flight.current.seq) return;
      flight.current.loading = false;
      if (flight.current.again) load();
    });
  }, []);
  useEffect(() => {
    load();
    // Leaving (or changing what is shown) makes any answer still on its way stale.
    return () => { flight.current.seq += 1; };
  }, [...deps, generation]);
  const update = (change) => {
    current.current = change(current.current);
    setState((s) => ({ ...s, data: current.current }));
  };
  const missed = () => {
    if (flight.current.loading) flight.current.again = true;
  };
  return { ...state, update, reload: load, missed, latest: () => current.current };
}

/** Subscribes `handler` to events while the component is shown. */
export function useEvents(names, handler) {
  const latest = useRef(handler);
  latest.current = handler;
  useEffect(() => on(names, (data, name) => latest.current(data, name)), [names.join()]);
}

/**
 * A table row that re-renders only when its object changes (lists replace the objects that
 * change and keep the others) or the clock ticks (its "n min ago" moves on).
 */
export class Row extends Component {
  shouldComponentUpdate(next) {
    return next.item !== this.props.item || next.tick !== this.props.tick;
  }

  render({ item, view }) {
    return view(item);
  }
}

/** A number that goes up every `ms`, for rows showing relative times. */
export function useClock(ms = 15000) {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const timer = setInterval(() => setTick((t) => t + 1), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return tick;
}

/** A stable function that runs the latest `task` at most once per `ms`. */
export function useThrottled(task, ms) {
  const latest = useRef(task);
  latest.current = task;
  return useMemo(() => throttle(() => latest.current(), ms), [ms]);
}

/** An event's row is at least as new as the one shown (so a late event never rolls back). */
export function newer(event, row) {
  return !row?.updated_at || !event.updated_at || event.updated_at >= row.updated_at;
}

export function Pager({ offset, limit, shown, total, onPage }) {
  const last = total != null ? offset + shown >= total : shown < limit;
  return html`<nav class="pager" aria-label="Pages">
    <button type="button" disabled=${offset === 0} onClick=${() => onPage(Math.max(0, offset - limit))}>‹ Newer</button>
    <span>${shown ? `${offset + 1}–${offset + shown}` : 'none'}${total != null ? ` of ${total}` : ''}</span>
    <button type="button" disabled=${last} onClick=${() => onPage(offset + limit)}>Older ›</button>
  </nav>`;
}

export function ErrorNote({ error }) {
  return error ? html`<p class="error" role="alert">${error.message}</p>` : null;
}

/** A small line chart of one or two series, drawn in SVG. */
export function Sparkline({ series, label }) {
  const width = 240;
  const height = 48;
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const points = (values) => values
    .map((v, i) => `${(i / Math.max(1, values.length - 1)) * width},${height - (v / max) * (height - 4) - 2}`)
    .join(' ');
  return html`<svg class="sparkline" viewBox=${`0 0 ${width} ${height}`} role="img" aria-label=${label}>
    ${series.map((s) => html`<polyline class=${s.className} points=${points(s.values)} />`)}
  </svg>`;
}

/** A select bound to a filter value; '' means "any". */
export function Choice({ label, value, options, onChange }) {
  return html`<label class="filter">${label}
    <select value=${value} onChange=${(e) => onChange(e.target.value)}>
      <option value="">any</option>
      ${options.map((o) => html`<option value=${o}>${o}</option>`)}
    </select>
  </label>`;
}

export function TextFilter({ label, value, onChange }) {
  return html`<label class="filter">${label}
    <input type="search" value=${value} onChange=${(e) => onChange(e.target.value.trim())} />
  </label>`;
}

/** A button that runs an API call, shows it is busy, and reports a refusal. */
export function Action({ label, run, className = '', confirm: question }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const click = async () => {
    if (question && !window.confirm(question)) return;
    setBusy(true);
    setError(null);
    try { await run(); } catch (e) { setError(e); } finally { setBusy(false); }
  };
  return html`<span class="action">
    <button type="button" class=${className} disabled=${busy} onClick=${click}>${label}</button>
    ${error && html`<span class="error" role="alert">${error.message}</span>`}
  </span>`;
}
