// Dashboard figures for BENCHMARKS.md (not a test: run by hand).
//
//   node tests/browser/bench.js paint   # 1,000 agents and 100,000 tasks: first meaningful
//                                       # paint of the overview and the tasks view, then the
//                                       # longest frame while 200 events/s arrive
//   node tests/browser/bench.js heap [minutes]   # JS heap while 50 events/s arrive (default 60)
//
// M3SHD_BIN picks the hub binary (the release build for `paint`).

import { Hub, MASTER, launch } from './support.js';

const mode = process.argv[2] ?? 'paint';
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
const median = (list) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)];

/** `total` calls of `make(i)`, `parallel` at a time. */
async function many(total, parallel, make) {
  let next = 0;
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < total) await make(next++);
  }));
}

/** Calls `make(i)` `perSecond` times a second for `seconds` seconds. */
async function paced(perSecond, seconds, make) {
  const started = Date.now();
  let sent = 0;
  const pending = [];
  while (Date.now() - started < seconds * 1000) {
    const due = Math.floor(((Date.now() - started) / 1000) * perSecond);
    while (sent < due) pending.push(make(sent++));
    await sleep(5);
  }
  await Promise.all(pending);
  return sent;
}

async function signedInPage(browser, hub) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  await context.addInitScript((token) => sessionStorage.setItem('m3shd.token', token), MASTER);
  return context.newPage();
}

/** Milliseconds from navigation start until `selector` is visible. */
async function paint(page, url, selector) {
  await page.goto('about:blank');
  await page.goto(url);
  await page.waitForSelector(selector);
  return page.evaluate(() => performance.now());
}

/** The functions that took the most time in a CPU profile (PROFILE=1). */
function printProfile(profile) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  profile.samples.forEach((id, i) => {
    const { functionName, url, lineNumber } = nodes.get(id).callFrame;
    const key = `${functionName || '(anonymous)'} ${url.split('/').pop()}:${lineNumber}`;
    self.set(key, (self.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  for (const [key, micros] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
    console.log(`  ${(micros / 1000).toFixed(0).padStart(6)} ms  ${key}`);
  }
}

async function paintBench() {
  const hub = await Hub.start();
  const browser = await launch();
  try {
    console.log('seeding 1,000 agents and 100,000 tasks…');
    let t = Date.now();
    await many(1000, 16, (i) => hub.agent(`bench-${String(i).padStart(4, '0')}`, ['bench', `cap-${i % 10}`], 4));
    await many(100000, 64, (i) => hub.task({ title: `bench task ${i}`, prompt: 'p', required_capability: i % 2 ? 'bench' : `unserved-${i % 7}` }));
    console.log(`seeded in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    const page = await signedInPage(browser, hub);
    const overview = [];
    const tasks = [];
    for (let run = 0; run < 7; run++) {
      overview.push(await paint(page, `${hub.base}/#/`, '[data-testid="overview"] .figure strong'));
      tasks.push(await paint(page, `${hub.base}/#/tasks`, '[data-testid="tasks"] tbody tr'));
    }
    console.log(`first meaningful paint, overview: median ${median(overview).toFixed(0)} ms (runs: ${overview.map((v) => v.toFixed(0)).join(', ')})`);
    console.log(`first meaningful paint, tasks:    median ${median(tasks).toFixed(0)} ms (runs: ${tasks.map((v) => v.toFixed(0)).join(', ')})`);

    // Frames while 200 events/s arrive on the tasks view (task creates: task_queued and the
    // dispatcher's task_assigned events).
    await page.goto(`${hub.base}/#/tasks`);
    await page.waitForSelector('[data-testid="tasks"] tbody tr');
    await page.locator('.connection.c-live').waitFor();
    await page.evaluate(() => {
      // Main-thread tasks over 50 ms (the page's own work), beside the gaps between frames
      // (which also grow when the hub and this generator take the machine's two cores).
      window.longTasks_ = [];
      new PerformanceObserver((list) => window.longTasks_.push(...list.getEntries().map((e) => e.duration)))
        .observe({ type: 'longtask' });
      window.frames_ = [];
      let last = performance.now();
      const tick = (now) => { window.frames_.push(now - last); last = now; requestAnimationFrame(tick); };
      requestAnimationFrame(tick);
    });
    const before = await page.evaluate(() => window.frames_.length);
    const cdp = process.env.PROFILE ? await page.context().newCDPSession(page) : null;
    if (cdp) {
      await cdp.send('Profiler.enable');
      await cdp.send('Profiler.start');
    }
    t = Date.now();
    const sent = await paced(200, 20, (i) => hub.task({ title: `live ${i}`, prompt: 'p', required_capability: `unserved-${i % 7}` }));
    const seconds = (Date.now() - t) / 1000;
    const frames = (await page.evaluate(() => window.frames_)).slice(before);
    const slow = frames.filter((f) => f > 50);
    const longTasks = await page.evaluate(() => window.longTasks_);
    if (cdp) printProfile((await cdp.send('Profiler.stop')).profile);
    console.log(`under ${(sent / seconds).toFixed(0)} task creates/s for ${seconds.toFixed(0)} s: ${frames.length} frames, longest ${Math.max(...frames).toFixed(1)} ms, median ${median(frames).toFixed(1)} ms, ${slow.length} over 50 ms; main-thread tasks over 50 ms: ${longTasks.length}${longTasks.length ? `, longest ${Math.max(...longTasks).toFixed(0)} ms` : ''}`);
  } finally {
    await browser.close();
    await hub.close();
  }
}

async function heapBench(minutes) {
  const hub = await Hub.start();
  const browser = await launch();
  try {
    await hub.agent('heap-agent', ['heap'], 1);
    // The agent stays alive (and keeps its task) for the whole run.
    const alive = setInterval(() => hub.api('/api/agents/heap-agent/heartbeat', { method: 'POST', body: {} }).catch(() => {}), 15000);
    const running = await hub.task({ title: 'console under load', prompt: 'p', required_capability: 'heap' });
    await hub.api(`/api/tasks/${running.id}`, { method: 'PUT', body: { status: 'running' } });
    const page = await signedInPage(browser, hub);
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    // Two views side by side in one page would not be what a wall screen shows: switch
    // between the task list and the running task's console every minute.
    await page.goto(`${hub.base}/#/tasks`);
    await page.locator('.connection.c-live').waitFor();
    const heap = async () => {
      await cdp.send('HeapProfiler.collectGarbage');
      const { metrics } = await cdp.send('Performance.getMetrics');
      return metrics.find((m) => m.name === 'JSHeapUsedSize').value / 1048576;
    };
    const samples = [];
    for (let minute = 0; minute < minutes; minute++) {
      await page.goto(`${hub.base}/#/${minute % 2 ? `tasks/${running.id}` : 'tasks'}`);
      // 50 events/s: 25 task creates (task_queued) and 25 console chunks (task_stream).
      await paced(25, 60, async (i) => {
        await hub.task({ title: `heap ${minute}-${i}`, prompt: 'p', required_capability: 'unserved' });
        await hub.api(`/api/tasks/${running.id}/stream`, { method: 'POST', body: { chunk: `minute ${minute} line ${i}\n` } });
      });
      const used = await heap();
      samples.push(used);
      console.log(`minute ${minute + 1}: JS heap ${used.toFixed(2)} MiB after GC`);
    }
    const first = median(samples.slice(0, 5));
    const last = median(samples.slice(-5));
    clearInterval(alive);
    console.log(`JS heap: median of the first 5 minutes ${first.toFixed(2)} MiB, of the last 5 ${last.toFixed(2)} MiB (ratio ${(last / first).toFixed(2)})`);
  } finally {
    await browser.close();
    await hub.close();
  }
}

if (mode === 'paint') await paintBench();
else if (mode === 'heap') await heapBench(Number(process.argv[3] ?? 60));
else throw new Error(`unknown mode ${mode}: paint or heap`);
