// #/login: log in with an account token. The token is checked with GET /v1/account
// (which names its account) and kept in sessionStorage only: it is gone when the tab
// closes, and never written to localStorage or a cookie.

import { h, formatMoney, formatDateTime } from '../format.js';
import { api, session, setSession, clearSession, ApiError } from '../api.js';

export function mount(root, { navigate, toast }) {
  const input = h('input', {
    id: 'token-input',
    name: 'token',
    type: 'password',
    autocomplete: 'off',
    autocapitalize: 'off',
    spellcheck: 'false',
    required: true,
    placeholder: 'gvl_…',
    'aria-describedby': 'token-help login-error',
    class: 'input mono',
  });
  const show = h('button', { type: 'button', class: 'btn btn-ghost btn-small input-addon', 'aria-pressed': 'false', 'aria-controls': 'token-input' }, 'Show');
  show.addEventListener('click', () => {
    const visible = input.type === 'text';
    input.type = visible ? 'password' : 'text';
    show.textContent = visible ? 'Show' : 'Hide';
    show.setAttribute('aria-pressed', String(!visible));
    input.focus();
  });
  const error = h('p', { class: 'field-error', id: 'login-error', 'data-testid': 'login-error', role: 'alert' });
  const button = h('button', { type: 'submit', id: 'login-button', class: 'btn btn-primary btn-block' }, 'Log in');

  const form = h('form', { class: 'stack', id: 'login-form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'token-input' }, 'Account token'),
      h('div', { class: 'input-group' }, input, show),
      h('p', { class: 'hint', id: 'token-help' },
        'The token an admin gave you when your account was created (it starts with gvl_). It stays in this browser tab only and is forgotten when you close it.'),
      error),
    button);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    input.removeAttribute('aria-invalid');
    const token = input.value.trim().replace(/^Bearer\s+/i, '');
    if (!token) {
      error.textContent = 'Paste your account token.';
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    button.disabled = true;
    button.textContent = 'Checking…';
    try {
      const account = await api.account(token);
      if (!account?.name) throw new ApiError(500, 'bad_answer', 'The node did not name the account.');
      if (account.disabled) throw new ApiError(401, 'unauthenticated', 'This account is disabled.');
      setSession(token, account);
      input.value = '';
      toast(`Logged in as ${account.name}.`, 'success');
      navigate('#/');
    } catch (err) {
      let msg;
      if (err instanceof ApiError && err.status === 401) msg = 'That token is not valid: it is unknown, rotated or disabled.';
      else if (err instanceof ApiError && err.status === 404 && err.code === 'not_found') msg = 'This node cannot check tokens (GET /v1/account is missing: the node is older than the page).';
      else msg = err.message || String(err);
      error.textContent = msg;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    } finally {
      button.disabled = false;
      button.textContent = 'Log in';
    }
  });

  const cards = [];
  if (session.token && session.account) {
    const a = session.account;
    const logout = h('button', { type: 'button', class: 'btn' }, 'Log out');
    logout.addEventListener('click', () => clearSession('logout'));
    cards.push(
      h('section', { class: 'card stack', 'aria-labelledby': 'current-account' },
        h('h2', { id: 'current-account' }, 'Current account'),
        h('dl', { class: 'kv' },
          h('dt', null, 'Name'), h('dd', null, a.name),
          h('dt', null, 'Roles'), h('dd', null, (a.roles ?? []).join(', ') || 'none'),
          h('dt', null, 'Budget'), h('dd', { class: 'num' }, a.budget == null ? 'unlimited' : formatMoney(a.budget)),
          h('dt', null, 'At stake now'), h('dd', { class: 'num' }, a.exposure == null ? '—' : formatMoney(a.exposure)),
          h('dt', null, 'Signed bids'), h('dd', null, a.public_key ? 'required (this page cannot sign; use the CLI)' : 'not required'),
          h('dt', null, 'Since'), h('dd', null, formatDateTime(a.created_at))),
        h('div', { class: 'row' }, logout)),
    );
  }

  root.appendChild(
    h('div', { class: 'narrow stack-lg' },
      h('h1', null, session.token ? 'Switch account' : 'Log in'),
      h('section', { class: 'card' }, form),
      cards,
      session.token ? null : h('section', { class: 'card stack muted small', 'aria-label': 'About tokens' },
        h('p', null, h('strong', null, 'No token yet? '), 'An admin creates accounts (a seller to sell, a bidder to bid) and hands out each token once. Lost it? The admin can issue a new one; the old one stops working at once.'),
        h('p', null, 'You can browse auctions and watch them live without logging in.')),
    ),
  );
  input.focus();
  return () => {};
}
