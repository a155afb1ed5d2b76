import { api, ApiError, ApiKey, User } from '../api';
import { Ctx, errorText, fmtDate, render, title } from '../app';
import { h, put } from '../dom';
import { t } from '../i18n';

const HUMAN = ['admin', 'operator', 'viewer'];
const KEY_ROLES = ['agent', 'worker', 'viewer', 'operator'];

export async function adminPage(ctx: Ctx): Promise<void> {
  const [users, keys] = await Promise.all([api.get<User[]>('/users'), api.get<ApiKey[]>('/api-keys')]);
  const msg = h('p', { class: 'error', role: 'alert' });
  const refresh = () => void render();

  const email = h('input', { id: 'u-email', type: 'email', required: true });
  const fullName = h('input', { id: 'u-name' });
  const urole = h('select', { id: 'u-role' }, HUMAN.map((r) => h('option', { value: r, selected: r === 'viewer' }, t(`role.${r}`))));
  const pw = h('input', { id: 'u-password', type: 'password', autocomplete: 'new-password', minlength: '10', required: true });
  const uerr = h('p', { class: 'field-error', id: 'u-error' });
  const userForm = h('form', {
    class: 'card inline', 'aria-label': t('admin.addUser'),
    onsubmit: async (e: Event) => {
      e.preventDefault();
      try {
        await api.post<User>('/users', { email: email.value, full_name: fullName.value || null, role: urole.value, password: pw.value });
        refresh();
      } catch (x) { uerr.textContent = x instanceof ApiError && Object.keys(x.fields).length ? Object.entries(x.fields).map(([k, v]) => `${k}: ${v}`).join('; ') : errorText(x); }
    },
  }, h('h2', null, t('admin.addUser')), h('label', { for: 'u-email' }, t('signin.email')), email, h('label', { for: 'u-name' }, t('admin.fullName')), fullName,
  h('label', { for: 'u-role' }, t('admin.role')), urole, h('label', { for: 'u-password' }, t('signin.password')), pw,
  h('button', { type: 'submit' }, t('action.create')), uerr);

  const userRows = users.map((u) => {
    const sel = h('select', { 'aria-label': t('admin.roleOf', { name: u.email }), disabled: u.id === ctx.me.user.id,
      onchange: async () => { try { await api.patch<User>(`/users/${u.id}`, { role: sel.value }); refresh(); } catch (x) { msg.textContent = errorText(x); } } },
    HUMAN.map((r) => h('option', { value: r, selected: r === u.role }, t(`role.${r}`))));
    return h('tr', null, h('td', null, u.email), h('td', null, u.full_name || '—'), h('td', null, sel),
      h('td', null, u.is_active ? t('common.yes') : t('common.no')), h('td', null, fmtDate(u.created_at)),
      h('td', null, u.id === ctx.me.user.id ? t('admin.you') : h('button', { type: 'button', onclick: async () => {
        try { await api.patch<User>(`/users/${u.id}`, { is_active: !u.is_active }); refresh(); } catch (x) { msg.textContent = errorText(x); }
      } }, u.is_active ? t('admin.deactivate') : t('admin.activate'))));
  });

  const kname = h('input', { id: 'k-name', required: true });
  const krole = h('select', { id: 'k-role' }, KEY_ROLES.map((r) => h('option', { value: r }, t(`role.${r}`))));
  const secret = h('div', { 'aria-live': 'polite' });
  const keyForm = h('form', {
    class: 'card inline', 'aria-label': t('admin.addKey'),
    onsubmit: async (e: Event) => {
      e.preventDefault();
      try {
        const k = await api.post<ApiKey>('/api-keys', { name: kname.value, role: krole.value });
        secret.replaceChildren(h('p', { class: 'notice', 'data-testid': 'new-key' }, t('admin.keyOnce'), ' ', h('code', null, k.key || '')));
      } catch (x) { secret.replaceChildren(h('p', { class: 'error' }, errorText(x))); }
    },
  }, h('h2', null, t('admin.addKey')), h('label', { for: 'k-name' }, t('field.name')), kname, h('label', { for: 'k-role' }, t('admin.role')), krole,
  h('button', { type: 'submit' }, t('action.create')), secret);

  put(ctx.main, title(t('admin.title')), msg,
    h('section', { class: 'card' }, h('h2', null, t('admin.users')),
      h('table', { class: 'table', 'data-testid': 'user-list' }, h('thead', null, h('tr', null, ['signin.email', 'admin.fullName', 'admin.role', 'admin.active', 'field.created', ''].map((k) => h('th', null, k ? t(k) : '')))),
        h('tbody', null, userRows))),
    userForm,
    h('section', { class: 'card' }, h('h2', null, t('admin.keys')),
      h('table', { class: 'table', 'data-testid': 'key-list' }, h('thead', null, h('tr', null, ['field.name', 'admin.role', 'admin.prefix', 'field.created', 'admin.lastUsed', ''].map((k) => h('th', null, k ? t(k) : '')))),
        h('tbody', null, keys.map((k) => h('tr', { class: k.revoked_at ? 'revoked' : '' }, h('td', null, k.name), h('td', null, t(`role.${k.role}`)), h('td', null, h('code', null, k.prefix)),
          h('td', null, fmtDate(k.created_at)), h('td', null, fmtDate(k.last_used_at)),
          h('td', null, k.revoked_at ? t('admin.revoked') : h('button', { type: 'button', class: 'danger', onclick: async () => {
            if (!window.confirm(t('confirm.revoke', { name: k.name }))) return;
            try { await api.del<ApiKey>(`/api-keys/${k.id}`); refresh(); } catch (x) { msg.textContent = errorText(x); }
          } }, t('admin.revoke')))))))),
    keyForm);
}
