// Two hub processes on one PostgreSQL database (the server `.ci/with-postgres` starts):
// the dashboard says which process it talks to, keeps showing live changes through a
// follower, and follows the follower when it takes over from a killed leader.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Hub, MASTER, launch, open, signInWithToken, finish, view } from './support.js';

const server = process.env.M3SHD_TEST_POSTGRES;
let leader;
let follower;
let browser;

before(async () => {
  assert.ok(server, 'M3SHD_TEST_POSTGRES names a PostgreSQL server (.ci/browser starts one through .ci/with-postgres)');
  const database = `m3shd_browser_${process.pid}`;
  execFileSync('psql', ['-q', `${server}/postgres`, '-c', `CREATE DATABASE ${database}`]);
  const shared = { M3SHDUP_DATABASE_URL: `${server}/${database}` };
  leader = await Hub.start(shared);
  follower = await Hub.start(shared);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await follower?.close();
  await leader?.close();
});

test('the header tells leader from follower, and a follower becomes the leader when the leader is killed', async () => {
  const led = await open(browser, leader);
  await signInWithToken(led, MASTER);
  const epoch = (await leader.api('/api/health')).epoch;
  await led.locator('.process[data-role="leader"]').getByText(`leader · epoch ${epoch}`).waitFor();
  await finish(led, 'processes-leader');

  const page = await open(browser, follower);
  await signInWithToken(page, MASTER);
  await page.locator('.process[data-role="follower"]').getByText('follower').waitFor();
  // A change made through the follower reaches its page live, relayed from the leader.
  await view(page, 'Tasks').click();
  await page.locator('.connection.c-live').waitFor();
  const task = await follower.task({ title: 'Through the follower', prompt: 'p', required_capability: 'nobody-has-this' });
  await page.locator(`[data-task="${task.id}"]`).getByText('Through the follower').waitFor({ timeout: 2000 });

  // The leader dies; the follower takes over and its page says so without a reload.
  await leader.stop('SIGKILL');
  await page.locator('.process[data-role="leader"]').waitFor({ timeout: 10000 });
  const now = (await follower.api('/api/health')).epoch;
  assert.ok(now > epoch, `a new epoch: ${now} after ${epoch}`);
  await page.locator('.process').getByText(`leader · epoch ${now}`).waitFor();
  const later = await follower.task({ title: 'After the takeover', prompt: 'p', required_capability: 'nobody-has-this' });
  await page.locator(`[data-task="${later.id}"]`).getByText('After the takeover').waitFor({ timeout: 2000 });
  // What the follower could not forward while the leadership changed hands got a 503.
  await finish(page, 'processes-takeover', { allow: [/Failed to load resource/] });
});
