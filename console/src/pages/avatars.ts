import { api, Avatar, url, Voices } from '../api';
import { Ctx, errorText, fmtDate, role, statusBadge, title } from '../app';
import { clear, h, nextId, put } from '../dom';
import { t } from '../i18n';

const ENGINES = ['simple', 'portrait', 'flashtalk'];

export async function avatarsPage(ctx: Ctx): Promise<void> {
  const editor = role.canEdit(ctx.me);
  const list = h('div', { class: 'grid', 'data-testid': 'avatar-list' });
  const status = h('p', { class: 'error', role: 'alert' });
  put(ctx.main, title(t('avatars.title')), editor ? createForm() : null, status, list);
  let timer = 0;
  ctx.onLeave(() => window.clearTimeout(timer));

  async function load(background = false): Promise<void> {
    const avatars = await api.get<Avatar[]>('/avatars', { background });
    clear(list, avatars.length ? avatars.map(card) : h('p', { class: 'empty' }, t('avatars.none')));
    if (avatars.some((a) => a.status === 'pending' || a.status === 'running')) {
      window.clearTimeout(timer);
      timer = window.setTimeout(() => { load(true).catch((e) => { status.textContent = errorText(e); }); }, 1000);
    }
  }

  function createForm(): HTMLElement {
    const name = h('input', { id: 'avatar-name', required: true, maxlength: '200' });
    const err = h('p', { class: 'field-error', id: 'avatar-create-error' });
    const engine = h('select', { id: 'avatar-engine' }, ENGINES.map((e) => h('option', { value: e, selected: e === 'portrait' }, t(`engine.${e}`))));
    // the English voices this deployment has (GET /voices); the first option is the deployment's default
    const voice = h('select', { id: 'avatar-voice', 'data-testid': 'avatar-voice' }, h('option', { value: '' }, t('avatars.voiceHint')));
    api.get<Voices>('/voices', { background: true })
      .then((v) => { for (const name of v.en) voice.append(h('option', { value: name }, name)); })
      .catch((x) => { err.textContent = errorText(x); });
    return h('form', {
      class: 'card inline', 'aria-label': t('avatars.create'),
      onsubmit: async (e: Event) => {
        e.preventDefault();
        err.textContent = '';
        try {
          await api.post<Avatar>('/avatars', { name: name.value, engine: engine.value, voice: voice.value || null });
          name.value = '';
          await load();
        } catch (x) { err.textContent = errorText(x); }
      },
    },
    h('h2', null, t('avatars.create')),
    h('label', { for: 'avatar-name' }, t('field.name')), name,
    h('label', { for: 'avatar-engine' }, t('avatars.engine')), engine,
    h('label', { for: 'avatar-voice' }, t('avatars.voice')), voice,
    h('button', { type: 'submit' }, t('action.create')), err);
  }

  // the prepared face saying a sentence (rendered by the call's own path when the avatar was prepared)
  function preview(a: Avatar): HTMLElement | null {
    const p = a.prep_metadata?.preview as { status?: string; detail?: string } | undefined;
    if (a.status !== 'ready' || !p) return null;
    if (p.status !== 'ready') return h('p', { class: 'muted', 'data-testid': 'no-preview' }, t('avatars.noPreview', { why: p.detail ?? p.status ?? '' }));
    return h('video', {
      class: 'preview', controls: '', preload: 'metadata', playsinline: '', 'data-testid': 'avatar-preview',
      'aria-label': t('avatars.previewOf', { name: a.name }),
      src: url(`/avatars/${a.id}/preview`, { v: a.updated_at }),  // a new preparation, a new clip
    });
  }

  function card(a: Avatar): HTMLElement {
    const fileId = nextId('portrait');
    const msg = h('p', { class: 'field-error', role: 'alert' });
    const busy = a.status === 'pending' || a.status === 'running';
    return h('article', { class: 'card avatar', 'data-avatar-id': a.id, 'aria-label': a.name },
      a.portrait_sha256
        ? h('img', { class: 'portrait', alt: t('avatars.portraitOf', { name: a.name }), src: url(`/avatars/${a.id}/portrait`, { v: a.portrait_sha256.slice(0, 12) }) })
        : h('div', { class: 'portrait empty' }, t('avatars.noPortrait')),
      preview(a),
      h('h2', null, a.name),
      h('p', null, t(`engine.${a.engine}`), a.voice ? ` · ${a.voice}` : '', ' · ', `${a.width}×${a.height} @ ${a.fps} fps`),
      h('p', null, statusBadge(a.status), ' ',
        busy ? h('progress', { max: '1', value: String(a.progress), 'aria-label': t('avatars.progress') }) : null,
        busy ? ` ${Math.round(a.progress * 100)}%` : ''),
      a.status_detail ? h('p', { class: a.status === 'failed' ? 'error' : 'muted', 'data-testid': 'status-detail', role: a.status === 'failed' ? 'alert' : null }, a.status_detail) : null,
      h('p', { class: 'muted' }, t('field.created'), ' ', fmtDate(a.created_at)),
      // a test call: the widget on a page of its own, with a caller's token minted for this avatar
      editor ? (a.status === 'ready'
        ? h('p', null, h('a', { class: 'button primary', href: `/test-call.html?avatar=${encodeURIComponent(a.id)}`, target: '_blank',
          rel: 'noopener', 'data-testid': 'test-call', 'aria-label': t('avatars.testCallLabel', { name: a.name }) }, t('avatars.testCall')))
        : h('p', { class: 'muted', 'data-testid': 'test-call-unavailable' }, t('avatars.testCallNotReady'))) : null,
      editor ? h('div', { class: 'actions' },
        h('label', { for: fileId, class: 'button' }, t('avatars.upload')),
        h('input', {
          id: fileId, type: 'file', class: 'visually-hidden', accept: 'image/png,image/jpeg,image/webp', 'data-testid': 'portrait-input',
          onchange: async (e: Event) => {
            const f = (e.target as HTMLInputElement).files?.[0];
            if (!f) return;
            const form = new FormData();
            form.append('file', f);
            msg.textContent = t('avatars.uploading');
            try { await api.upload<Avatar>(`/avatars/${a.id}/portrait`, form); await load(); } catch (x) { msg.textContent = errorText(x); }
          },
        }),
        a.portrait_sha256 && !busy ? h('button', { type: 'button', onclick: async () => {
          try { await api.post<Avatar>(`/avatars/${a.id}/prepare`); await load(); } catch (x) { msg.textContent = errorText(x); }
        } }, t('avatars.prepare')) : null,
        h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!window.confirm(t('confirm.delete', { name: a.name }))) return;
          try { await api.del(`/avatars/${a.id}`); await load(); } catch (x) { msg.textContent = errorText(x); }
        } }, t('action.delete'))) : null,
      msg);
  }

  await load();
}
