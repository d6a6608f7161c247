// Sign-in: a username and password (the hub sets a Strict HttpOnly session cookie), or a
// pasted API token (kept in this tab only).

import { html, useState } from './preact-htm.js';
import { api, credentials } from './api.js';
import { ErrorNote } from './parts.js';

export function SignIn({ onSignedIn }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const attempt = async (signIn) => {
    setBusy(true);
    setError(null);
    try {
      await signIn();
      const me = await api('/api/me');
      if (me.kind === 'anonymous') throw new Error('the hub did not accept these credentials');
      onSignedIn(me);
    } catch (e) {
      credentials.use(null);
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const withPassword = (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    attempt(() => api('/api/login', {
      method: 'POST',
      body: { username: form.get('username'), password: form.get('password') },
    }));
  };
  const withToken = (event) => {
    event.preventDefault();
    const token = new FormData(event.target).get('token').trim();
    attempt(async () => credentials.use(token));
  };
  return html`<main class="signin">
    <h1>m3shd</h1>
    <p class="muted">Sign in to watch and steer the mesh.</p>
    <form onSubmit=${withPassword} aria-labelledby="password-title">
      <h2 id="password-title">With your account</h2>
      <label>Username <input name="username" autocomplete="username" required /></label>
      <label>Password <input name="password" type="password" autocomplete="current-password" required /></label>
      <button type="submit" disabled=${busy}>Sign in</button>
    </form>
    <form onSubmit=${withToken} aria-labelledby="token-title">
      <h2 id="token-title">With an API token</h2>
      <label>Token <input name="token" type="password" autocomplete="off" required /></label>
      <button type="submit" disabled=${busy}>Use token</button>
    </form>
    <${ErrorNote} error=${error} />
  </main>`;
}
