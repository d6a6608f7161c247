// The real hub and a real browser for the dashboard's tests: `m3shd serve` (the debug
// build) on its own temporary SQLite file and a fixed free loopback port (so a restarted
// hub comes back where the page left it), and Debian's Chromium driven by playwright-core.
// Every page records console errors, page errors and any request to another origin; a
// test ends by checking there were none and by saving a screenshot.

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const ROOT = resolve(import.meta.dirname, '../..');
const BINARY = process.env.M3SHD_BIN ?? join(ROOT, 'target/debug/m3shd');
export const SCREENSHOTS = join(ROOT, 'target/screenshots');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const MASTER = `browser-master-${process.pid}-${Date.now()}`;

function freePort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

export class Hub {
  static async start(env = {}) {
    const hub = new Hub();
    hub.dir = mkdtempSync(join(tmpdir(), 'm3shd-browser-'));
    hub.port = await freePort();
    hub.env = env;
    await hub.boot();
    return hub;
  }

  /** Starts the process (again, after `stop`) on the same database and port. */
  async boot() {
    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      RUST_LOG: 'warn',
      M3SHDUP_TOKEN: MASTER,
      M3SHDUP_ENCRYPT_KEY: 'browser-test-encryption-key',
      M3SHDUP_DATABASE_URL: join(this.dir, 'hub.db'),
      M3SHDUP_BIND: `127.0.0.1:${this.port}`,
      M3SHDUP_SQLITE_SYNCHRONOUS: 'NORMAL',
      M3SHDUP_LOGIN_FAILURE_DELAY_MS: '0',
      ...this.env,
    };
    this.process = spawn(BINARY, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.stderr = '';
    this.process.stderr.on('data', (chunk) => { this.stderr += chunk; });
    this.base = await new Promise((done, fail) => {
      let out = '';
      const timer = setTimeout(() => fail(new Error(`the hub did not start:\n${this.stderr}`)), 60000);
      this.process.stdout.on('data', (chunk) => {
        out += chunk;
        const found = out.match(/^m3shd listening on (\S+)/m);
        if (found) { clearTimeout(timer); done(found[1]); }
      });
      this.process.once('exit', (code) => { clearTimeout(timer); fail(new Error(`the hub exited (${code}):\n${this.stderr}`)); });
    });
  }

  /** SIGTERM (or `signal`), and wait for the process to end. */
  async stop(signal = 'SIGTERM') {
    if (!this.process || this.process.exitCode !== null || this.process.signalCode !== null) return;
    const ended = new Promise((done) => this.process.once('exit', done));
    this.process.kill(signal);
    await ended;
  }

  async close() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A JSON call with the master token (or `token`); throws on an unexpected status. */
  async api(path, { method = 'GET', body, token = MASTER, expect } = {}) {
    const response = await fetch(`${this.base}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    const wanted = expect ?? [200, 201];
    if (!wanted.includes(response.status)) {
      throw new Error(`${method} ${path}: ${response.status} ${text}`);
    }
    return data;
  }

  /** A user account with `role`; returns its password. */
  async user(username, role) {
    const password = `${username}-password-123`;
    await this.api('/api/admin/users', { method: 'POST', body: { username, password, role } });
    return password;
  }

  /** Registers `agentId` with `capabilities` (the master token acts for any agent). */
  async agent(agentId, capabilities, maxConcurrent = 4) {
    return this.api(`/api/agents/${agentId}/register`, {
      method: 'POST',
      body: { name: agentId, capabilities, max_concurrent: maxConcurrent },
    });
  }

  async task(body) {
    return this.api('/api/tasks', { method: 'POST', body });
  }
}

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/** A fresh page at the hub, recording what must never happen. */
export async function open(browser, hub) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (message) => {
    if (message.type() === 'error') page.problems.push(`console error: ${message.text()}`);
  });
  page.on('pageerror', (error) => page.problems.push(`page error: ${error.message}`));
  page.on('request', (request) => {
    const origin = new URL(request.url()).origin;
    if (!request.url().startsWith('data:') && origin !== new URL(hub.base).origin) {
      page.problems.push(`request to another origin: ${request.url()}`);
    }
  });
  await page.goto(`${hub.base}/`);
  return page;
}

/** The link to a view in the navigation bar. */
export function view(page, name) {
  return page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name, exact: true });
}

/** Signs in through the form. */
export async function signIn(page, username, password) {
  await page.getByLabel('Username', { exact: true }).fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

/** Signs in with a pasted token. */
export async function signInWithToken(page, token) {
  await page.getByLabel('Token', { exact: true }).fill(token);
  await page.getByRole('button', { name: 'Use token' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

/** Runs `steps`; when one fails, saves the page as it was and prints what it showed. */
export async function explained(page, name, steps) {
  try {
    await steps();
  } catch (error) {
    mkdirSync(SCREENSHOTS, { recursive: true });
    await page.screenshot({ path: join(SCREENSHOTS, `FAILED-${name}.png`), fullPage: true }).catch(() => {});
    const text = await page.evaluate(() => `${location.href}\n${document.body.innerText}`).catch(() => '(page gone)');
    console.error(`--- ${name} failed; the page showed:\n${text}\n--- problems: ${page.problems.join('; ') || 'none'}`);
    throw error;
  }
}

/** Saves a screenshot and fails on any console error or foreign request the page saw. */
export async function finish(page, name, { allow = [] } = {}) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
  const problems = page.problems.filter((p) => !allow.some((pattern) => pattern.test(p)));
  await page.context().close();
  if (problems.length) throw new Error(`the page had problems:\n${problems.join('\n')}`);
}
