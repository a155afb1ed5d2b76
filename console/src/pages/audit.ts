import { api, AuditEntry } from '../api';
import { Ctx, fmtDate, title } from '../app';
import { h, put } from '../dom';
import { t } from '../i18n';

interface Verify { ok: boolean; entries: number; broken_at_seq?: number; reason?: string }

export async function auditPage(ctx: Ctx): Promise<void> {
  const [verify, first] = await Promise.all([api.get<Verify>('/audit/verify'), api.get<AuditEntry[]>('/audit', { query: { limit: 100 } })]);
  const tbody = h('tbody');
  const more = h('button', { type: 'button', hidden: first.length < 100 }, t('common.more'));
  let last = 0;
  const add = (rows: AuditEntry[]) => {
    for (const e of rows) {
      last = e.seq;
      tbody.append(h('tr', null, h('td', null, String(e.seq)), h('td', null, fmtDate(e.at)),
        h('td', null, `${e.actor_type}${e.actor_id ? ` ${e.actor_id.slice(0, 8)}` : ''}`), h('td', null, e.action),
        h('td', null, `${e.resource}${e.resource_id ? ` ${e.resource_id.slice(0, 8)}` : ''}`), h('td', null, e.client_ip || '—'),
        h('td', null, h('code', { title: e.hash }, e.hash.slice(0, 12)))));
    }
  };
  add(first);
  more.addEventListener('click', async () => {
    const rows = await api.get<AuditEntry[]>('/audit', { query: { after_seq: last, limit: 100 } });
    add(rows);
    more.hidden = rows.length < 100;
  });
  const detail = verify.ok ? t('audit.ok', { n: verify.entries })
    : t('audit.broken', { seq: String(verify.broken_at_seq ?? '?'), reason: verify.reason || '' });
  put(ctx.main, title(t('audit.title')),
    h('p', { class: `card verify ${verify.ok ? 'ok' : 'error'}`, role: 'status', 'data-testid': 'audit-verify', 'data-ok': String(verify.ok) }, detail),
    h('table', { class: 'table', 'data-testid': 'audit-list' },
      h('thead', null, h('tr', null, ['audit.seq', 'audit.at', 'audit.actor', 'audit.action', 'audit.resource', 'audit.ip', 'audit.hash'].map((k) => h('th', { scope: 'col' }, t(k))))),
      tbody), more);
}
