// The dashboard in headless Chromium against the real hub: what a person at the console
// would check. Each test saves a screenshot under target/screenshots/ and fails on any
// console error or request to another origin.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Hub, MASTER, SCREENSHOTS, launch, open, signIn, signInWithToken, finish, view, explained } from './support.js';

let hub;
let browser;

before(async () => {
  hub = await Hub.start({ M3SHDUP_SSE_KEEPALIVE_SECONDS: '5' });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await hub?.close();
});

test('a viewer sees the mesh but no kill-switch or task buttons; an admin sees the kill switch', async () => {
  const viewerPassword = await hub.user('vera', 'viewer');
  const adminPassword = await hub.user('ada', 'admin');
  const task = await hub.task({ title: 'Viewer can read this', prompt: 'look only', required_capability: 'nobody-has-this' });

  const viewer = await open(browser, hub);
  await signIn(viewer, 'vera', viewerPassword);
  await viewer.getByText('vera · viewer').waitFor();
  assert.equal(await viewer.getByRole('button', { name: /kill switch/i }).count(), 0);
  await viewer.goto(`${hub.base}/#/tasks/${task.id}`);
  await viewer.getByTestId('prompt').getByText('look only').waitFor();
  assert.equal(await viewer.getByRole('button', { name: 'Cancel task' }).count(), 0);
  assert.equal(await view(viewer, 'Audit').count(), 0, 'a viewer has no audit view');
  await finish(viewer, 'signin-viewer');

  const admin = await open(browser, hub);
  await signIn(admin, 'ada', adminPassword);
  await admin.getByRole('button', { name: 'Kill switch…' }).waitFor();
  await view(admin, 'Audit').waitFor();
  await admin.getByTestId('overview').waitFor();
  await finish(admin, 'signin-admin');

  // An operator may act on any task from the console; the API agrees.
  const operatorPassword = await hub.user('otto', 'operator');
  const operator = await open(browser, hub);
  await signIn(operator, 'otto', operatorPassword);
  assert.equal(await operator.getByRole('button', { name: /kill switch/i }).count(), 0);
  await operator.goto(`${hub.base}/#/tasks/${task.id}`);
  operator.once('dialog', (dialog) => dialog.accept());
  await operator.getByRole('button', { name: 'Cancel task' }).click();
  await operator.getByTestId('task-status').getByText('cancelled').waitFor();
  assert.equal((await hub.api(`/api/tasks/${task.id}`)).status, 'cancelled');
  await finish(operator, 'signin-operator');
});

test('a task created through the API appears in the list within a second, without a reload', async () => {
  const page = await open(browser, hub);
  await signInWithToken(page, MASTER);
  await view(page, 'Tasks').click();
  await page.getByTestId('tasks').waitFor();
  await page.locator('.connection.c-live').waitFor();
  const task = await hub.task({ title: 'Appears live', prompt: 'p', required_capability: 'nobody-has-this' });
  await page.locator(`[data-task="${task.id}"]`).getByText('Appears live').waitFor({ timeout: 1000 });
  await finish(page, 'task-appears-live');
});

test('the console shows chunks streamed to a running task as they arrive', async () => {
  await hub.agent('streamer', ['console-demo'], 1);
  const task = await hub.task({ title: 'Streams output', prompt: 'count', required_capability: 'console-demo' });
  const page = await open(browser, hub);
  await signInWithToken(page, MASTER);
  await page.goto(`${hub.base}/#/tasks/${task.id}`);
  await page.getByTestId('task-status').getByText('assigned').waitFor();
  await page.locator('.connection.c-live').waitFor();
  await hub.api(`/api/tasks/${task.id}`, { method: 'PUT', body: { status: 'running' } });
  await page.getByTestId('task-status').getByText('running').waitFor();
  await hub.api(`/api/tasks/${task.id}/stream`, { method: 'POST', body: { chunk: 'line one\n' } });
  await page.getByTestId('console').getByText('line one').waitFor({ timeout: 5000 });
  await hub.api(`/api/tasks/${task.id}/stream`, { method: 'POST', body: { chunk: 'line two\n' } });
  await page.getByTestId('console').getByText('line two').waitFor({ timeout: 5000 });
  assert.equal(await page.getByTestId('console').innerText(), 'line one\nline two\n');
  await hub.api(`/api/tasks/${task.id}`, { method: 'PUT', body: { status: 'done', output: 'counted' } });
  await page.getByTestId('output').getByText('counted').waitFor();
  await finish(page, 'console');
});

test('a task shows its budget and watchdogs, and is seen cancelled live once it spends past the budget', async () => {
  await hub.agent('spender', ['budget-demo'], 1);
  const task = await hub.task({
    title: 'Bounded spend', prompt: 'spend', required_capability: 'budget-demo',
    max_cost_usd: 0.5, max_tokens: 5000, progress_timeout_seconds: 600,
  });
  const page = await open(browser, hub);
  await signInWithToken(page, MASTER);
  await page.goto(`${hub.base}/#/tasks/${task.id}`);
  await page.getByTestId('budget').getByText('$0.50 · 5000 tokens, then cancelled').waitFor();
  await page.getByTestId('watchdogs').getByText('stuck after 600 s without progress').waitFor();
  await page.locator('.connection.c-live').waitFor();
  await hub.api(`/api/tasks/${task.id}`, { method: 'PUT', body: { status: 'running' } });
  await hub.api(`/api/tasks/${task.id}/stream`, { method: 'POST', body: { chunk: 'spending\n', cost_usd: 0.75 } });
  await page.getByTestId('task-status').getByText('cancelled').waitFor({ timeout: 5000 });
  await page.getByText('budget_exceeded').waitFor();
  await finish(page, 'task-budget');
});

test('the overview lists federation peers with the results still owed to them, and retention', async () => {
  await hub.api('/api/admin/peers', { method: 'POST', body: { name: 'hub-far', url: 'http://127.0.0.1:9', token: 'a-shared-secret-for-the-far-hub' } });
  const page = await open(browser, hub);
  await signInWithToken(page, MASTER);
  await page.getByTestId('overview').waitFor();
  await page.getByTestId('peers').getByText('hub-far').waitFor();
  await page.getByTestId('peers').getByText('never pinged · 0 results waiting').waitFor();
  // Retention is off unless configured: the card says every task is kept.
  await page.getByTestId('retention').getByText('Off: every task is kept.').waitFor();
  await finish(page, 'overview-peers');
});

test('a scheduled template shows its next run and is paused and resumed from the Schedules view', async () => {
  const template = await hub.api('/api/templates', {
    method: 'POST',
    body: { name: 'weekly report', title: 'Weekly report', prompt: 'report', required_capability: 'nobody-has-this', schedule: { cron: '0 9 * * 1', time_zone: 'Europe/Paris' } },
  });
  const page = await open(browser, hub);
  await signInWithToken(page, MASTER);
  await view(page, 'Schedules').click();
  const row = page.locator(`[data-template="${template.id}"]`);
  await row.getByText('0 9 * * 1').waitFor();
  assert.equal(await row.getByTestId('next-run').innerText(), template.schedule.next_runs[0]);
  await row.getByRole('button', { name: 'Pause' }).click();
  await row.getByText('paused').waitFor();
  assert.equal((await hub.api(`/api/templates/${template.id}`)).schedule.paused, true);
  await row.getByRole('button', { name: 'Resume' }).click();
  await row.getByTestId('next-run').waitFor();
  await row.getByRole('button', { name: 'History' }).click();
  await page.getByTestId(`history-${template.id}`).getByText('No occurrence yet.').waitFor();
  await finish(page, 'schedules');
});

test('an admin sees an exchange with its executors and requests, and closes its registration', async () => {
  await hub.api('/api/admin/exchanges', { method: 'POST', body: { exchange_id: 'porch', open_registration: true } });
  const phone = await hub.api('/api/v1/exchanges/porch/register', { method: 'POST', body: { executor_id: 'porch-phone', display_name: 'Porch Phone', capabilities: ['photo:capture'] } });
  assert.ok(phone.api_key.startsWith('mess_porch_'));
  const asked = await hub.api('/api/v1/exchanges/porch/requests', { method: 'POST', body: { intent: 'Is a parcel at the door?', priority: 'high' } });
  const page = await open(browser, hub);
  await signInWithToken(page, MASTER);
  await view(page, 'Exchanges').click();
  const card = page.locator('[data-exchange="porch"]');
  await card.getByTestId('executors').getByText('Porch Phone').waitFor();
  await card.getByTestId('requests').getByText(asked.ref).waitFor();
  await card.getByTestId('requests').getByText('Is a parcel at the door?').waitFor();
  await card.getByRole('button', { name: 'Close registration' }).click();
  await card.getByTestId('registration').getByText('closed').waitFor();
  const exchanges = await hub.api('/api/admin/exchanges');
  assert.equal(exchanges.exchanges.find((e) => e.exchange_id === 'porch').open_registration, false);
  await finish(page, 'exchanges');
});

test('engaging the kill switch from the UI shows the banner and the API reports it', async (t) => {
  // Whatever happens here, later tests need a hub that takes work.
  t.after(() => hub.api('/api/admin/kill-switch', { method: 'DELETE' }));
  // A second console, already open on another view, learns of it from the stream.
  const other = await open(browser, hub);
  await signInWithToken(other, MASTER);
  await view(other, 'Agents').click();
  await other.locator('.connection.c-live').waitFor();
  const page = await open(browser, hub);
  await signInWithToken(page, MASTER);
  await page.getByRole('button', { name: 'Kill switch…' }).click();
  await page.getByLabel('Reason').fill('runaway spend on the research agents');
  await page.getByRole('button', { name: 'Engage kill switch' }).click();
  const banner = page.locator('.kill-banner');
  await banner.getByText('runaway spend on the research agents').waitFor();
  // The overview's own card agrees with the banner at once.
  await page.getByRole('region', { name: 'Kill switch' }).getByText('engaged').waitFor({ timeout: 1000 });
  const state = await hub.api('/api/admin/kill-switch');
  assert.equal(state.active, true);
  assert.equal(state.reason, 'runaway spend on the research agents');
  await other.locator('.kill-banner').getByText('runaway spend on the research agents').waitFor();
  await page.screenshot({ path: `${SCREENSHOTS}/kill-switch-engaged.png`, fullPage: true });
  // Released from the other console: the first one's banner goes, live.
  await other.getByRole('button', { name: 'Release kill switch' }).click();
  await other.locator('.kill-banner').waitFor({ state: 'detached' });
  await page.locator('.kill-banner').waitFor({ state: 'detached' });
  await finish(page, 'kill-switch-released-elsewhere');
  assert.equal((await hub.api('/api/admin/kill-switch')).active, false);
  await finish(other, 'kill-switch-released');
});

test("a pipeline's DAG colours change as its members finish", async () => {
  await hub.agent('piper', ['dag-demo'], 4);
  const created = await hub.api('/api/pipelines', {
    method: 'POST',
    body: {
      name: 'fan-in',
      tasks: [
        { title: 'fetch a', prompt: 'a', required_capability: 'dag-demo' },
        { title: 'fetch b', prompt: 'b', required_capability: 'dag-demo' },
        { title: 'merge', prompt: 'm', required_capability: 'dag-demo', depends_on: [0, 1] },
      ],
    },
  });
  const [a, b, merge] = created.tasks.map((t) => t.id);
  const page = await open(browser, hub);
  await signInWithToken(page, MASTER);
  await page.goto(`${hub.base}/#/pipelines/${created.pipeline_id}`);
  const node = (id) => page.getByTestId('dag').locator(`[data-task="${id}"]`);
  await node(merge).waitFor();
  await page.locator('.connection.c-live').waitFor();
  assert.equal(await node(merge).getAttribute('data-status'), 'queued');
  const fill = async (id) => node(id).evaluate((g) => getComputedStyle(g.querySelector('rect')).fill);
  const queuedFill = await fill(merge);
  for (const id of [a, b]) {
    await hub.api(`/api/tasks/${id}`, { method: 'PUT', body: { status: 'done', output: 'ok' } });
    await page.waitForFunction((task) => document.querySelector(`[data-testid="dag"] [data-task="${task}"]`)?.getAttribute('data-status') === 'done', id);
  }
  assert.notEqual(await fill(a), queuedFill, 'a finished member is drawn in another colour');
  await page.waitForFunction((task) => document.querySelector(`[data-testid="dag"] [data-task="${task}"]`)?.getAttribute('data-status') === 'assigned', merge);
  await finish(page, 'pipeline-dag');
});

test('cancelling a pipeline from its page cancels every unfinished member, live', async () => {
  const created = await hub.api('/api/pipelines', {
    method: 'POST',
    body: {
      name: 'to cancel',
      tasks: [
        { title: 'first', prompt: 'a', required_capability: 'nobody-serves-this' },
        { title: 'second', prompt: 'b', required_capability: 'nobody-serves-this', depends_on: 0 },
      ],
    },
  });
  const ids = created.tasks.map((t) => t.id);
  const page = await open(browser, hub);
  await signInWithToken(page, MASTER);
  await page.goto(`${hub.base}/#/pipelines/${created.pipeline_id}`);
  await page.locator('.connection.c-live').waitFor();
  page.once('dialog', (dialog) => dialog.accept());
  await page.getByRole('button', { name: 'Cancel pipeline' }).click();
  for (const id of ids) {
    await page.waitForFunction((task) => document.querySelector(`[data-testid="dag"] [data-task="${task}"]`)?.getAttribute('data-status') === 'cancelled', id);
  }
  await page.getByTestId('pipeline-status').getByText('cancelled').waitFor();
  const shown = await hub.api(`/api/pipelines/${created.pipeline_id}`);
  assert.equal(shown.status, 'cancelled');
  assert.equal(await page.getByRole('button', { name: 'Cancel pipeline' }).count(), 0, 'a finished pipeline has no cancel button');
  await finish(page, 'pipeline-cancel');
});

test('after the hub restarts the page reconnects and shows what changed meanwhile', async (t) => {
  const page = await open(browser, hub);
  await explained(page, 'reconnected', async () => {
    await signInWithToken(page, MASTER);
    await view(page, 'Tasks').click();
    await page.locator('.connection.c-live').waitFor();
    // An event first, so the page resumes with Last-Event-ID and the hub must say `resync`.
    const before = await hub.task({ title: 'Made before the restart', prompt: 'p', required_capability: 'nobody-has-this' });
    await page.locator(`[data-task="${before.id}"]`).waitFor({ timeout: 10000 });
    await hub.stop();
    await page.locator('.connection.c-reconnecting').waitFor();
    // Back with a ring of two events, and more changes than that before the page returns:
    // the earliest can only be shown by the reload the hub's `resync` asks for.
    const reloads = [];
    page.on('request', (request) => { if (new URL(request.url()).pathname === '/api/tasks') reloads.push(request.url()); });
    hub.env.M3SHDUP_EVENT_RING_SIZE = '2';
    t.after(() => { delete hub.env.M3SHDUP_EVENT_RING_SIZE; });
    await hub.boot();
    const away = [];
    for (let n = 0; n < 4; n++) {
      away.push(await hub.task({ title: `Made while the page was away ${n}`, prompt: 'p', required_capability: 'nobody-has-this' }));
    }
    await hub.api(`/api/tasks/${before.id}`, { method: 'PUT', body: { status: 'cancelled' } });
    await page.locator('.connection.c-live').waitFor({ timeout: 15000 });
    for (const task of away) {
      await page.locator(`[data-task="${task.id}"]`).waitFor({ timeout: 10000 });
      assert.equal(await page.locator(`[data-task="${task.id}"]`).count(), 1, 'shown once');
    }
    await page.locator(`[data-task="${before.id}"]`).getByText('cancelled').waitFor();
    assert.ok(reloads.length >= 1, 'the page reloaded its list after the gap');
  });
  await finish(page, 'reconnected', { allow: [/ERR_CONNECTION_REFUSED|net::ERR_|Failed to load resource/] });
});

test('the agents table shows an agent joining, taking work and its reputation, live', async () => {
  const page = await open(browser, hub);
  await signInWithToken(page, MASTER);
  await view(page, 'Agents').click();
  await page.getByTestId('agents').waitFor();
  await page.locator('.connection.c-live').waitFor();
  await hub.agent('joiner', ['join-demo'], 1);
  const row = page.locator('[data-agent="joiner"]');
  await row.getByText('online').waitFor({ timeout: 10000 });
  const task = await hub.task({ title: 'Fills the only slot', prompt: 'p', required_capability: 'join-demo' });
  await row.getByText('busy').waitFor({ timeout: 10000 });
  await row.getByText('1/1').waitFor();
  await hub.api(`/api/tasks/${task.id}`, { method: 'PUT', body: { status: 'done', output: 'ok' } });
  await row.getByText('100 % · #').waitFor({ timeout: 15000 });
  await row.getByText('online').waitFor();
  await finish(page, 'agents-live');
});

test('an operator creates an agent on hold, wakes it so it takes work, and messages it', async () => {
  const password = await hub.user('opal', 'operator');
  const page = await open(browser, hub);
  await explained(page, 'managed-agent', async () => {
    await signIn(page, 'opal', password);
    await view(page, 'Agents').click();
    await page.getByRole('button', { name: 'New agent' }).click();
    const form = page.getByRole('form', { name: 'New agent' });
    await form.getByLabel('Name').fill('scribe');
    await form.getByLabel('Template').fill('reviewer');
    await form.getByLabel('Status').selectOption('idle');
    await form.getByRole('button', { name: 'Create agent' }).click();
    const row = page.locator('[data-agent="scribe"]');
    await row.getByText('idle').waitFor({ timeout: 10000 });
    await row.getByText('qa').waitFor();

    // On hold, it takes no work even while alive.
    await hub.api('/api/agents/scribe/heartbeat', { method: 'POST' });
    const task = await hub.task({ title: 'Review the parser', prompt: 'p', required_capability: 'review' });
    await row.getByRole('link', { name: 'scribe' }).click();
    await page.getByTestId('soul').getByText('meticulous code reviewer').waitFor();
    assert.equal((await hub.api(`/api/tasks/${task.id}`)).status, 'queued', 'an idle agent gets no task');

    await page.getByLabel('Reason').fill('the review queue is filling up');
    await page.getByRole('button', { name: 'Wake' }).click();
    await page.getByText('1 open · 0 done').waitFor({ timeout: 10000 });
    assert.equal((await hub.api(`/api/tasks/${task.id}`)).assigned_to, 'scribe');
    await page.getByTestId('unread').getByText('the review queue is filling up').waitFor();

    await page.getByLabel('Message', { exact: true }).fill('Please review PR #123');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.getByTestId('comms').getByText('Please review PR #123').waitFor({ timeout: 10000 });
    await page.getByTestId('unread').getByText('Please review PR #123').waitFor();
  });
  await finish(page, 'managed-agent');
});

test('a tool call waiting for approval appears live under Decisions and is allowed there', async () => {
  const password = await hub.user('olga', 'operator');
  await hub.agent('deployer', ['deploy-demo'], 1);
  const task = await hub.task({ title: 'Deploy the release', prompt: 'p', required_capability: 'deploy-demo' });
  await hub.api(`/api/tasks/${task.id}`, { method: 'PUT', body: { status: 'running' } });
  const page = await open(browser, hub);
  await explained(page, 'approvals', async () => {
    await signIn(page, 'olga', password);
    await view(page, 'Decisions').click();
    await page.getByTestId('approvals').getByText('No tool call waits for a decision.').waitFor();
    const asked = await hub.api(`/api/tasks/${task.id}/approvals`, {
      method: 'POST',
      body: { tool: 'kubectl', input: 'kubectl apply -f prod.yaml', reason: 'ship 1.4' },
    });
    const card = page.locator(`[data-approval="${asked.id}"]`);
    await card.getByText('kubectl apply -f prod.yaml').waitFor({ timeout: 10000 });
    await card.getByLabel('Note').fill('checked the diff');
    await card.getByRole('button', { name: 'Allow' }).click();
    await card.waitFor({ state: 'detached', timeout: 10000 });
    const decided = await hub.api(`/api/approvals/${asked.id}`);
    assert.equal(decided.status, 'allowed');
    assert.equal(decided.decided_by, 'user:olga');
    assert.equal(decided.note, 'checked the diff');
  });
  await finish(page, 'approvals');
});

/** A new agent's first step (seed 002), as it would take it: no credentials but the token. */
async function preregister(registrationToken, requestedName) {
  const response = await fetch(`${hub.base}/api/v1/agent-preregistrations`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ registrationToken, requestedName, requestedRuntimeType: 'CLI', bindSecret: `${requestedName}-bind-secret` }),
  });
  assert.equal(response.status, 201, await response.clone().text());
  return response.json();
}

async function poll(deviceCode) {
  return hub.api('/api/v1/agent-preregistrations/poll', { method: 'POST', body: { deviceCode } });
}

test('a new agent asking to join appears live under Onboarding and is approved there; its link denies another', async () => {
  const page = await open(browser, hub);
  await explained(page, 'onboarding', async () => {
    await signInWithToken(page, MASTER);
    await view(page, 'Onboarding').click();
    await page.getByTestId('preregistrations').getByText('No agent is waiting to join.').waitFor();
    await page.locator('.connection.c-live').waitFor();
    // Asked after the page loaded: only the stream can bring it.
    const { registrationToken } = await hub.api('/api/admin/registration-tokens', { method: 'POST', body: { name: 'for the newcomer' } });
    const asked = await preregister(registrationToken, 'newcomer');
    const card = page.getByTestId('preregistrations').locator(`li[data-preregistration="${asked.preregistrationId}"]`);
    await card.getByText('newcomer').waitFor({ timeout: 10000 });
    await card.getByText('CLI').waitFor();
    await card.getByRole('button', { name: 'Approve' }).click();
    await card.waitFor({ state: 'detached', timeout: 10000 });
    await page.getByTestId('settled').locator(`[data-preregistration="${asked.preregistrationId}"]`).getByText('approved').waitFor();
    assert.equal((await poll(asked.device_code)).status, 'approved');

    // The link a second agent prints for its owner: the page cannot know the request before acting.
    const second = await hub.api('/api/admin/registration-tokens', { method: 'POST', body: {} });
    const other = await preregister(second.registrationToken, 'stranger');
    await page.goto(`${hub.base}/approve/${other.verification_code}`);
    assert.equal(new URL(page.url()).hash, `#/onboarding/${other.verification_code}`);
    await page.getByTestId('verification-code').getByText(other.verification_code).waitFor();
    await page.getByRole('button', { name: 'Deny' }).click();
    await page.getByTestId('decision').getByText('denied').waitFor({ timeout: 10000 });
    await page.getByTestId('decision').getByText('stranger').waitFor();
    assert.equal((await poll(other.device_code)).status, 'denied');
  });
  await finish(page, 'onboarding');
});

test('an owner issues and revokes registration tokens in the console, and sets an onboarded agent\'s state and credential', async () => {
  const page = await open(browser, hub);
  await explained(page, 'onboarding-owner', async () => {
    await signInWithToken(page, MASTER);
    await view(page, 'Onboarding').click();
    const form = page.getByRole('form', { name: 'New registration token' });
    await form.getByLabel('Name').fill('for the reviewer');
    await form.getByLabel('Capabilities').fill('review, git');
    await form.getByRole('button', { name: 'Issue token' }).click();
    const raw = (await page.getByTestId('issued-token').locator('code').innerText()).trim();
    assert.match(raw, /^mrt_/);
    const issued = (await hub.api('/api/admin/registration-tokens')).registrationTokens.find((t) => t.name === 'for the reviewer');
    assert.equal(issued.role, 'worker');
    assert.deepEqual(issued.capabilities, ['review', 'git']);
    const spare = page.locator(`[data-token="${issued.id}"]`);
    await spare.getByText('active').waitFor();

    // A second one, revoked before anyone uses it.
    const unused = await hub.api('/api/admin/registration-tokens', { method: 'POST', body: { name: 'never used' } });
    await page.goto(`${hub.base}/#/`);
    await view(page, 'Onboarding').click();
    const row = page.locator(`[data-token="${unused.id}"]`);
    await row.getByRole('button', { name: 'Revoke' }).click();
    await row.getByText('revoked').waitFor();

    // The token from the form brings an agent in.
    const asked = await preregister(raw, 'reviewer-bot');
    await spare.getByText('used').waitFor({ timeout: 10000 });
    await hub.api(`/api/v1/agent-preregistrations/${asked.verification_code}/approve`, { method: 'POST' });
    const joined = await hub.api('/api/v1/agent-auth/finalize-activation', {
      method: 'POST',
      body: { verificationCode: asked.verification_code, deviceCode: asked.device_code, bindSecret: 'reviewer-bot-bind-secret' },
    });

    await page.goto(`${hub.base}/#/agents/reviewer-bot`);
    const owner = page.getByRole('group', { name: 'Owner controls' });
    await owner.getByTestId('agent-state').getByText('ACTIVE').waitFor();
    await owner.getByLabel('State').selectOption('PAUSED');
    await owner.getByRole('button', { name: 'Set state' }).click();
    await owner.getByTestId('agent-state').getByText('PAUSED').waitFor({ timeout: 10000 });
    assert.equal((await hub.api('/api/agents/reviewer-bot')).agent.state, 'PAUSED');

    page.once('dialog', (dialog) => dialog.accept());
    await owner.getByRole('button', { name: 'Rotate credential' }).click();
    const fresh = (await owner.getByTestId('runtime-credential').locator('code').innerText()).trim();
    assert.match(fresh, /^mrm_rt_/);
    await hub.api('/api/tasks', { token: joined.runtimeCredential, expect: [401] });
    await hub.api('/api/tasks', { token: fresh });

    // An agent that joined another way has no runtime credential: the hub's answer is shown.
    await hub.agent('registered-plainly', ['plain-demo'], 1);
    await page.goto(`${hub.base}/#/agents/registered-plainly`);
    await page.locator('dl.facts').getByText('plain-demo').waitFor();
    page.once('dialog', (dialog) => dialog.accept());
    await page.getByRole('button', { name: 'Rotate credential' }).click();
    await page.getByRole('group', { name: 'Owner controls' }).getByRole('alert').getByText('did not join by onboarding').waitFor();
  });
  await finish(page, 'onboarding-owner', { allow: [/status of 404/] });
});
