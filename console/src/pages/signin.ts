import { api, ApiError, ConsoleSession } from '../api';
import { clear, h } from '../dom';
import { getLang, setLang, t } from '../i18n';

export function signIn(root: HTMLElement, notice: string, done: (s: ConsoleSession) => void): void {
  document.title = `${t('signin.title')} · ${t('app.title')}`;
  const email = h('input', { id: 'email', name: 'username', type: 'email', autocomplete: 'username', required: true });
  const password = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const msg = h('p', { class: 'error', role: 'alert', 'data-testid': 'signin-error' });
  const button = h('button', { type: 'submit' }, t('signin.submit'));
  const form = h('form', {
    class: 'card signin', 'aria-labelledby': 'signin-title',
    onsubmit: async (e: Event) => {
      e.preventDefault();
      msg.textContent = '';
      button.disabled = true;
      try {
        const s = await api.form<ConsoleSession>('/console/login', new URLSearchParams({ username: email.value, password: password.value }));
        done(s);
      } catch (err) {
        msg.textContent = err instanceof ApiError && err.status === 400 ? t('signin.wrong')
          : err instanceof ApiError && err.status === 429 ? t('signin.throttled')
            : err instanceof ApiError ? err.message : String(err);
        password.select();
      } finally {
        button.disabled = false;
      }
    },
  },
  h('h1', { id: 'signin-title' }, t('app.title')),
  notice ? h('p', { class: 'notice', role: 'status', 'data-testid': 'signin-notice' }, notice) : null,
  h('label', { for: 'email' }, t('signin.email')), email,
  h('label', { for: 'password' }, t('signin.password')), password,
  msg, button,
  h('button', { type: 'button', class: 'link', onclick: () => { setLang(getLang() === 'en' ? 'zh' : 'en'); signIn(root, notice, done); } },
    getLang() === 'en' ? '中文' : 'English'));
  clear(root, h('main', { id: 'main', class: 'center' }, form));
  email.focus();
}
