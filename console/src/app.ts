// Console state, router (hash routes) and the page frame (header, navigation, main region).
import { api, ApiError, ConsoleSession, csrfToken, setUnauthorizedHandler, Tenant } from './api';
import { clear, h, nextId } from './dom';
import { getLang, setLang, t } from './i18n';

export interface Ctx {
  me: ConsoleSession;
  params: string[];
  main: HTMLElement;
  // registers a cleanup (timers) run when the page is left
  onLeave: (fn: () => void) => void;
}
type Page = (ctx: Ctx) => Promise<void> | void;
interface Route { pattern: RegExp; page: Page; nav?: string; allowed?: (me: ConsoleSession) => boolean }

export const role = {
  canEdit: (me: ConsoleSession) => me.user.role === 'admin' || me.user.role === 'operator',
  isAdmin: (me: ConsoleSession) => me.user.role === 'admin',
  canAudit: (me: ConsoleSession) => me.user.role === 'admin' || me.user.role === 'viewer',
};

const routes: Route[] = [];
const NAV: { hash: string; label: string; allowed?: (me: ConsoleSession) => boolean }[] = [
  { hash: '#/avatars', label: 'nav.avatars' },
  { hash: '#/personas', label: 'nav.personas' },
  { hash: '#/knowledge', label: 'nav.knowledge' },
  { hash: '#/sessions', label: 'nav.sessions' },
  { hash: '#/handoffs', label: 'nav.handoffs' },
  { hash: '#/insights', label: 'nav.insights' },
  { hash: '#/audit', label: 'nav.audit', allowed: role.canAudit },
  { hash: '#/admin', label: 'nav.admin', allowed: role.isAdmin },
];

export function route(pattern: RegExp, page: Page, allowed?: (me: ConsoleSession) => boolean): void {
  routes.push({ pattern, page, allowed });
}

let me: ConsoleSession | null = null;
let tenants: Tenant[] | null = null; // every organisation (platform administrators only), loaded once per sign-in
let refocusTenant = false; // after a switch the page is drawn again: keep the keyboard on the switcher
let leave: (() => void)[] = [];
let signInPage: (root: HTMLElement, notice: string, done: (s: ConsoleSession) => void) => void = () => {};
let lastActivity = Date.now();
let idleTimer = 0;

export function setSignInPage(fn: typeof signInPage): void { signInPage = fn; }

function runLeave(): void {
  for (const fn of leave) fn();
  leave = [];
}

export function showSignIn(notice = ''): void {
  runLeave();
  me = null;
  tenants = null;
  window.clearInterval(idleTimer);
  const root = document.getElementById('app')!;
  signInPage(root, notice, (s) => {
    me = s;
    startIdleWatch();
    if (!location.hash || location.hash === '#/signin') location.hash = '#/avatars';
    else render();
  });
}

function startIdleWatch(): void {
  lastActivity = Date.now();
  window.clearInterval(idleTimer);
  idleTimer = window.setInterval(() => {
    if (me && Date.now() - lastActivity > me.idle_timeout_seconds * 1000) {
      api.post('/console/logout').catch(() => {});
      showSignIn(t('signin.idle'));
    }
  }, 5000);
}

export async function signOut(): Promise<void> {
  try { await api.post('/console/logout'); } catch { /* the session may already be over */ }
  showSignIn(t('signin.signedOut'));
}

// A platform administrator's organisation switcher: a labelled select and a button (a form, so the keyboard's
// arrow keys move through the list without switching each time). The server keeps the choice in the session
// (POST /console/tenant); the current page is then loaded again for the organisation chosen.
function tenantSwitcher(s: ConsoleSession): HTMLElement {
  const id = nextId('tenant');
  const select = h('select', { id, 'data-testid': 'tenant-select' },
    (tenants || [s.tenant]).map((o) => h('option', { value: o.id, selected: o.id === s.tenant.id }, o.name)));
  const status = h('span', { class: 'error', role: 'status' });
  // acting on an organisation other than one's own is marked (the select's frame)
  const form = h('form', { class: s.tenant.id === s.user.tenant_id ? 'tenant' : 'tenant elsewhere', 'data-testid': 'tenant-switch', 'aria-label': t('tenant.switcher'),
    onsubmit: async (e: Event) => {
      e.preventDefault();
      if (!me || select.value === me.tenant.id) return;
      try {
        me = await api.post<ConsoleSession>('/console/tenant', { tenant_id: select.value });
      } catch (err) {
        status.textContent = errorText(err);
        return;
      }
      const section = (location.hash || '#/avatars').split(/[/?]/).slice(0, 2).join('/'); // a detail page was the other organisation's
      refocusTenant = true;
      if (section !== location.hash) location.hash = section; // hashchange renders
      else await render();
    } },
  h('label', { for: id }, t('tenant.label')), select,
  h('button', { type: 'submit', 'data-testid': 'tenant-go' }, t('tenant.switch')), status);
  if (!tenants) {
    api.get<Tenant[]>('/tenants').then((list) => {
      tenants = list;
      clear(select, list.map((o) => h('option', { value: o.id, selected: o.id === s.tenant.id }, o.name)));
    }).catch((err) => { status.textContent = errorText(err); });
  }
  return form;
}

function header(s: ConsoleSession, current: string): HTMLElement {
  const links = NAV.filter((n) => !n.allowed || n.allowed(s)).map((n) =>
    h('li', null, h('a', { href: n.hash, 'aria-current': current.startsWith(n.hash) ? 'page' : null }, t(n.label))));
  return h('header', { class: 'top' },
    h('a', { class: 'skip', href: '#main', onclick: (e: Event) => { e.preventDefault(); document.getElementById('main')?.focus(); } }, t('nav.skip')),
    h('span', { class: 'brand' }, t('app.title')),
    h('nav', { 'aria-label': t('nav.label') }, h('ul', null, links)),
    h('div', { class: 'who' },
      s.is_superuser ? tenantSwitcher(s) : null,
      h('button', { type: 'button', class: 'lang', 'data-testid': 'lang-toggle', 'aria-label': t('lang.switch'),
        onclick: () => { setLang(getLang() === 'en' ? 'zh' : 'en'); render(); } }, getLang() === 'en' ? '中文' : 'English'),
      h('span', { class: 'user', 'data-testid': 'whoami' }, s.user.email, ' ', h('span', { class: `badge role-${s.user.role}` }, t(`role.${s.user.role}`))),
      h('button', { type: 'button', 'data-testid': 'sign-out', onclick: () => void signOut() }, t('nav.signOut'))));
}

export async function render(): Promise<void> {
  if (!me) return showSignIn();
  runLeave();
  const hash = location.hash || '#/avatars';
  const path = hash.slice(1);
  const root = document.getElementById('app')!;
  const main = h('main', { id: 'main', tabindex: '-1' });
  clear(root, header(me, hash), main);
  if (refocusTenant) {
    refocusTenant = false;
    root.querySelector<HTMLSelectElement>('[data-testid=tenant-select]')?.focus();
  }
  document.documentElement.lang = getLang() === 'zh' ? 'zh-CN' : 'en';
  const found = routes.map((r) => ({ r, m: path.match(r.pattern) })).find((x) => x.m);
  if (!found) { location.hash = '#/avatars'; return; }
  if (found.r.allowed && !found.r.allowed(me)) {
    clear(main, h('p', { class: 'error', role: 'alert' }, t('error.forbiddenPage')));
    return;
  }
  const ctx: Ctx = { me, params: found.m!.slice(1), main, onLeave: (fn) => leave.push(fn) };
  try {
    await found.r.page(ctx);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    main.append(h('p', { class: 'error', role: 'alert' }, errorText(e)));
  }
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 0) return t('error.network');
    if (e.status === 403) return `${t('error.forbidden')} ${e.message}`;
    return e.message;
  }
  return String(e);
}

export async function start(): Promise<void> {
  setUnauthorizedHandler(() => { if (me) showSignIn(t('signin.expired')); });
  for (const ev of ['keydown', 'pointerdown']) document.addEventListener(ev, () => { lastActivity = Date.now(); }, true);
  window.addEventListener('hashchange', () => { if (me) void render(); });
  // no CSRF cookie means no session: show the sign-in form without asking (no 401 in the console)
  if (!csrfToken()) { showSignIn(); return; }
  try {
    me = await api.get<ConsoleSession>('/console/session');
    startIdleWatch();
    await render();
  } catch {
    showSignIn();
  }
}

// formatting helpers shared by the pages
export function fmtDate(iso: string | null | undefined): string {
  if (!iso) return '—';
  return new Date(iso).toLocaleString(getLang() === 'zh' ? 'zh-CN' : 'en-GB', { dateStyle: 'medium', timeStyle: 'short' });
}
export function fmtSec(v: number | null | undefined): string {
  return v === null || v === undefined ? '—' : `${v.toFixed(2)} s`;
}
export function statusBadge(status: string): HTMLElement {
  return h('span', { class: `badge st-${status}`, 'data-status': status }, t(`status.${status}`));
}
export function title(text: string, ...extra: (Node | string)[]): HTMLElement {
  document.title = `${text} · ${t('app.title')}`;
  return h('div', { class: 'page-head' }, h('h1', null, text), ...extra);
}
