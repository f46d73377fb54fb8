// The page's entry point: the hash router, the header (who is logged in, log out), the
// toasts, and the footer's node info.
//
// Routes: #/ (list, ?status=), #/auctions/<id>, #/new, #/login, #/operator. Each view
// module exports mount(root, ctx) and returns a cleanup function that stops its timers
// and connections when the user navigates away.

import { h, mountChildren } from './format.js';
import { api, session, onSessionChange, clearSession, ApiError } from './api.js';
import * as listView from './views/list.js';
import * as auctionView from './views/auction.js';
import * as createView from './views/create.js';
import * as loginView from './views/login.js';
import * as operatorView from './views/operator.js';

const root = document.getElementById('app');
let cleanup = null;
let currentNav = null;

const routes = [
  { re: /^\/?$/, nav: 'list', view: listView, title: 'Auctions' },
  { re: /^\/auctions\/(\d+)\/?$/, nav: 'list', view: auctionView, title: 'Auction', params: ['id'] },
  { re: /^\/new\/?$/, nav: 'create', view: createView, title: 'New auction' },
  { re: /^\/login\/?$/, nav: 'login', view: loginView, title: 'Log in' },
  { re: /^\/operator\/?$/, nav: 'operator', view: operatorView, title: 'Operator' },
];

function parseHash() {
  const raw = decodeURIComponent(location.hash.replace(/^#/, '')) || '/';
  const [path, query = ''] = raw.split('?');
  return { path, query: new URLSearchParams(query) };
}

export function navigate(hash, { replace = false } = {}) {
  if (replace) {
    history.replaceState(null, '', hash);
    route();
  } else if (location.hash === hash) {
    route();
  } else {
    location.hash = hash;
  }
}

// ---------------------------------------------------------------- toasts

const toastBox = document.getElementById('toasts');

export function toast(message, kind = 'info', ms = 5000) {
  const el = h('div', { class: ['toast', `toast-${kind}`] }, message);
  const close = h('button', { class: 'toast-close', type: 'button', 'aria-label': 'Dismiss' }, '×');
  close.addEventListener('click', () => el.remove());
  el.appendChild(close);
  toastBox.appendChild(el);
  setTimeout(() => el.remove(), ms);
}

// ---------------------------------------------------------------- header

const accountArea = document.getElementById('account-area');

function renderAccount() {
  const acct = session.token ? session.account : null;
  // The whoami element holds the account name and nothing else (the avatar initial is
  // drawn by CSS from data-initial), so its text is exactly the name.
  const whoami = h('span', {
    class: 'whoami',
    'data-testid': 'whoami',
    hidden: !acct,
    title: acct ? `Logged in as ${acct.name} · roles: ${(acct.roles ?? []).join(', ') || 'none'}` : null,
    'data-initial': acct ? (acct.name || '?').slice(0, 1).toUpperCase() : null,
  }, acct ? acct.name : '');
  const items = acct ? [h('span', { class: 'visually-hidden' }, 'Logged in as'), whoami] : [whoami];
  if (acct) {
    items.push(h('a', { href: '#/login', class: 'btn btn-small btn-ghost', 'data-nav': 'login', title: 'Log in with another token' }, 'Switch'));
    const logout = h('button', { type: 'button', class: 'btn btn-small', id: 'logout-button' }, 'Log out');
    logout.addEventListener('click', () => {
      clearSession('logout');
      toast('Logged out. The token was removed from this tab.', 'info');
    });
    items.push(logout);
  } else {
    items.push(h('a', { href: '#/login', class: 'btn btn-small btn-primary', 'data-nav': 'login' }, 'Log in'));
  }
  mountChildren(accountArea, items);
  markNav();
}

function markNav() {
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === currentNav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

onSessionChange((s, reason) => {
  renderAccount();
  if (reason === 'expired') {
    toast('Your token is no longer valid (rotated or disabled). Log in again.', 'error', 8000);
  }
  // Views that depend on who is logged in re-render.
  if (reason !== 'login') route();
});

// ---------------------------------------------------------------- router

function route() {
  const { path, query } = parseHash();
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      console.error(e);
    }
    cleanup = null;
  }
  const match = routes.map((r) => ({ r, m: r.re.exec(path) })).find((x) => x.m);
  root.replaceChildren();
  root.className = 'page';
  if (!match) {
    currentNav = null;
    markNav();
    document.title = 'Not found · Gavel';
    root.appendChild(
      h('section', { class: 'empty-state' },
        h('h1', null, 'Page not found'),
        h('p', null, 'There is nothing at this address.'),
        h('a', { href: '#/', class: 'btn btn-primary' }, 'See all auctions')),
    );
    return;
  }
  const { r, m } = match;
  const params = {};
  (r.params ?? []).forEach((name, i) => {
    params[name] = m[i + 1];
  });
  currentNav = r.nav;
  markNav();
  document.title = `${r.title} · Gavel`;
  try {
    cleanup = r.view.mount(root, { params, query, navigate, toast, setTitle: (t) => (document.title = `${t} · Gavel`) }) ?? null;
  } catch (e) {
    console.error(e);
    root.replaceChildren(h('div', { class: 'notice notice-error', role: 'alert' }, `This page failed to load: ${e.message}`));
  }
  // Move focus to the new page for keyboard and screen reader users (not on first load).
  if (routedOnce) {
    const heading = root.querySelector('h1');
    (heading ?? root).setAttribute('tabindex', '-1');
    (heading ?? root).focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
  routedOnce = true;
}
let routedOnce = false;

window.addEventListener('hashchange', route);

document.getElementById('skip-link')?.addEventListener('click', (e) => {
  e.preventDefault();
  const target = root.querySelector('h1') ?? root;
  target.setAttribute('tabindex', '-1');
  target.focus();
});

// ---------------------------------------------------------------- start

async function revalidateSession() {
  if (!session.token) return;
  try {
    const acct = await api.account(session.token);
    if (acct && acct.name) {
      session.account = acct;
      try {
        sessionStorage.setItem('gavel.account', JSON.stringify(acct));
      } catch {
        /* ignore */
      }
      renderAccount();
    }
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      clearSession('expired');
    }
    // Any other failure (network, an older node without the route): keep the session.
  }
}

async function nodeInfo() {
  const el = document.getElementById('node-info');
  try {
    const c = await api.cluster();
    el.textContent = `served by node ${c.node_id} (${c.role}) · cluster ${c.cluster_name}`;
  } catch {
    el.textContent = '';
  }
}

renderAccount();
route();
revalidateSession();
nodeInfo();
