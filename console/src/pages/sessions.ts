import { api, Avatar, SessionDetail, SessionPage, ToolCall, Turn, url } from '../api';
import { Ctx, fmtDate, fmtSec, title } from '../app';
import { clear, h, put } from '../dom';
import { t } from '../i18n';

const PAGE = 25;
export const OUTCOMES = ['completed', 'abandoned', 'escalated', 'escalated_handled', 'escalated_unanswered', 'failed'];
// Stages in the order they happen within a turn (LiveKit's per-message metrics, seconds).
export const STAGES = ['end_of_turn_delay', 'transcription_delay', 'on_user_turn_completed_delay', 'llm_node_ttft', 'tts_node_ttfb',
  'playback_latency'];
// Figures that overlap the stages above (not drawn as a segment of their own): the end-to-end total is the
// dashed frame; the LLM's first sentence includes its first token.
const OVERLAPPING = new Set(['e2e_latency', 'llm_node_ttfs']);

function filtersFromHash(): Record<string, string> {
  const q = location.hash.split('?')[1] || '';
  return Object.fromEntries(new URLSearchParams(q));
}

export async function sessionsPage(ctx: Ctx): Promise<void> {
  const f = filtersFromHash();
  const avatars = await api.get<Avatar[]>('/avatars');
  const since = h('input', { id: 's-since', type: 'date', value: f.since || '' });
  const until = h('input', { id: 's-until', type: 'date', value: f.until || '' });
  const avatar = h('select', { id: 's-avatar' }, h('option', { value: '' }, t('common.any')),
    avatars.map((a) => h('option', { value: a.id, selected: f.avatar_id === a.id }, a.name)));
  const outcome = h('select', { id: 's-outcome' }, h('option', { value: '' }, t('common.any')),
    OUTCOMES.map((o) => h('option', { value: o, selected: f.outcome === o }, t(`outcome.${o}`))));
  const escalated = h('select', { id: 's-escalated' }, h('option', { value: '' }, t('common.any')),
    h('option', { value: 'true', selected: f.escalated === 'true' }, t('common.yes')),
    h('option', { value: 'false', selected: f.escalated === 'false' }, t('common.no')));
  const room = h('input', { id: 's-room', value: f.room || '' });
  const offset = Number(f.offset || 0);
  const query = {
    since: f.since ? `${f.since}T00:00:00Z` : '', until: f.until ? `${f.until}T23:59:59Z` : '',
    avatar_id: f.avatar_id, outcome: f.outcome, escalated: f.escalated, room: f.room,
  };
  const go = (extra: Record<string, string> = {}) => {
    const p = new URLSearchParams();
    const vals: Record<string, string> = { since: since.value, until: until.value, avatar_id: avatar.value, outcome: outcome.value,
      escalated: escalated.value, room: room.value, ...extra };
    for (const [k, v] of Object.entries(vals)) if (v) p.set(k, v);
    location.hash = `#/sessions${p.toString() ? `?${p}` : ''}`;
  };
  const page = await api.get<SessionPage>('/sessions', { query: { ...query, limit: PAGE, offset } });
  const names = new Map(avatars.map((a) => [a.id, a.name]));
  const lbl = (id: string, text: string, ctl: HTMLElement) => h('div', { class: 'field' }, h('label', { for: id }, text), ctl);
  put(ctx.main, 
    title(t('sessions.title'), h('a', { class: 'button', href: url('/sessions/export', { ...query, format: 'csv' }), download: 'sessions.csv' }, t('sessions.export'))),
    h('form', { class: 'card filters', 'aria-label': t('sessions.filters'), onsubmit: (e: Event) => { e.preventDefault(); go(); } },
      lbl('s-since', t('sessions.since'), since), lbl('s-until', t('sessions.until'), until), lbl('s-avatar', t('sessions.avatar'), avatar),
      lbl('s-outcome', t('sessions.outcome'), outcome), lbl('s-escalated', t('sessions.escalated'), escalated), lbl('s-room', t('sessions.room'), room),
      h('button', { type: 'submit' }, t('sessions.apply'))),
    h('p', { class: 'muted', 'data-testid': 'session-total' }, t('sessions.total', { n: page.total })),
    page.items.length ? h('table', { class: 'table', 'data-testid': 'session-list' },
      h('thead', null, h('tr', null, ['sessions.started', 'sessions.avatar', 'sessions.room', 'sessions.outcome', 'sessions.escalated', 'sessions.duration']
        .map((k) => h('th', { scope: 'col' }, t(k))))),
      h('tbody', null, page.items.map((s) => h('tr', null,
        h('td', null, h('a', { href: `#/sessions/${s.id}` }, fmtDate(s.started_at))),
        h('td', null, s.avatar_id ? names.get(s.avatar_id) || s.avatar_id.slice(0, 8) : '—'),
        h('td', null, s.room || '—'),
        h('td', null, s.outcome ? t(`outcome.${s.outcome}`) : t('outcome.open')),
        h('td', null, s.escalated ? t('common.yes') : t('common.no')),
        h('td', null, s.ended_at ? fmtSec((Date.parse(s.ended_at) - Date.parse(s.started_at)) / 1000) : '—')))))
      : h('p', { class: 'empty' }, t('sessions.none')),
    h('div', { class: 'actions' },
      offset > 0 ? h('button', { type: 'button', onclick: () => go({ offset: String(Math.max(0, offset - PAGE)) }) }, t('common.prev')) : null,
      offset + PAGE < page.total ? h('button', { type: 'button', onclick: () => go({ offset: String(offset + PAGE) }) }, t('common.next')) : null));
}

function citationText(c: unknown): string {
  if (typeof c === 'string') return c;
  if (c && typeof c === 'object') {
    const o = c as Record<string, unknown>;
    return [o.source || o.doc, o.title, o.chunk !== undefined ? `#${o.chunk}` : ''].filter(Boolean).join(' · ') || JSON.stringify(c);
  }
  return String(c);
}

export function waterfall(turns: Turn[]): HTMLElement {
  const rows = turns.filter((x) => Object.keys(x.latency || {}).length);
  const order = (k: string) => { const i = STAGES.indexOf(k); return i < 0 ? STAGES.length : i; };
  const parts = rows.map((turn) => Object.entries(turn.latency).filter(([k, v]) => !OVERLAPPING.has(k) && typeof v === 'number')
    .sort((a, b) => order(a[0]) - order(b[0])));
  const totals = rows.map((turn, i) => Math.max(parts[i].reduce((s, [, v]) => s + v, 0), turn.latency.e2e_latency || 0));
  const max = Math.max(0.001, ...totals);
  const seen = new Set<string>();
  const body = rows.map((turn, i) => {
    let at = 0;
    const track = h('div', { class: 'track' });
    if (turn.latency.e2e_latency) {
      const e2e = h('div', { class: 'e2e', title: `${t('stage.e2e_latency')}: ${fmtSec(turn.latency.e2e_latency)}` });
      e2e.style.width = `${(turn.latency.e2e_latency / max) * 100}%`;
      track.append(e2e);
      seen.add('e2e_latency');
    }
    for (const [k, v] of parts[i]) {
      seen.add(k);
      const seg = h('div', { class: `seg stage-${STAGES.includes(k) ? k : 'other'}`, 'data-stage': k, title: `${stageName(k)}: ${fmtSec(v)}` });
      seg.style.left = `${(at / max) * 100}%`;
      seg.style.width = `${Math.max(0.5, (v / max) * 100)}%`;
      at += v;
      track.append(seg);
    }
    const summary = parts[i].map(([k, v]) => `${stageName(k)} ${fmtSec(v)}`).join(', ');
    return h('li', { class: 'wf-row', 'aria-label': `${t('sessions.turn')} ${turn.seq}: ${summary}` },
      h('span', { class: 'wf-label' }, `#${turn.seq} ${t(`speaker.${turn.speaker}`)}`), track,
      h('span', { class: 'wf-total' }, fmtSec(totals[i])));
  });
  return h('section', { class: 'card', 'aria-labelledby': 'wf-title', 'data-testid': 'waterfall' },
    h('h2', { id: 'wf-title' }, t('sessions.waterfall')),
    rows.length ? h('ol', { class: 'waterfall' }, body) : h('p', { class: 'empty' }, t('sessions.noLatency')),
    h('ul', { class: 'legend' }, [...seen].map((k) => h('li', null, h('span', { class: `swatch ${k === 'e2e_latency' ? 'e2e' : `stage-${STAGES.includes(k) ? k : 'other'}`}` }), stageName(k)))));
}

export function stageName(k: string): string {
  const key = `stage.${k}`;
  const s = t(key);
  return s === key ? k : s;
}

/** A tool call's arguments as "key: value" pairs (redacted by the server before storage). */
function toolArguments(c: ToolCall): string {
  const pairs = Object.entries(c.arguments || {}).filter(([, v]) => v !== '' && v !== null && v !== undefined)
    .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`);
  return pairs.length ? ` — ${pairs.join('; ')}` : '';
}

export async function sessionPage(ctx: Ctx): Promise<void> {
  const s = await api.get<SessionDetail>(`/sessions/${ctx.params[0]}`);
  const facts: [string, string][] = [
    ['sessions.started', fmtDate(s.started_at)], ['sessions.ended', fmtDate(s.ended_at)],
    ['sessions.outcome', s.outcome ? t(`outcome.${s.outcome}`) : t('outcome.open')],
    ['sessions.escalated', s.escalated ? `${t('common.yes')}${s.escalation_reason ? ` — ${s.escalation_reason}` : ''}` : t('common.no')],
    ['sessions.room', s.room || '—'], ['sessions.caller', s.caller_identity || '—'],
    ['sessions.redactions', String(s.redaction_findings ?? '—')],
  ];
  clear(ctx.main, title(t('sessions.one'), h('a', { href: '#/sessions' }, t('action.back'))),
    h('dl', { class: 'card facts' }, facts.map(([k, v]) => [h('dt', null, t(k)), h('dd', null, v)])),
    s.summary ? h('section', { class: 'card' }, h('h2', null, t('sessions.summary')), h('p', null, s.summary)) : null,
    h('section', { class: 'card', 'aria-labelledby': 'tr-title' }, h('h2', { id: 'tr-title' }, t('sessions.transcript')),
      h('p', { class: 'muted' }, t('sessions.redactedNote')),
      h('ol', { class: 'transcript', 'data-testid': 'transcript' }, s.turns.map((turn) => h('li', { class: `turn ${turn.speaker}` },
        h('div', { class: 'who' }, t(`speaker.${turn.speaker}`), turn.language ? h('span', { class: 'muted' }, ` · ${turn.language}`) : null,
          turn.interrupted ? h('span', { class: 'badge st-pending' }, t('sessions.interrupted')) : null),
        h('p', { class: 'text' }, turn.text),
        turn.citations.length ? h('ul', { class: 'citations', 'aria-label': t('sessions.citations') },
          turn.citations.map((c) => h('li', null, citationText(c)))) : null,
        turn.tool_calls?.length ? h('ul', { class: 'tool-calls', 'aria-label': t('sessions.toolCalls'), 'data-testid': 'tool-calls' },
          turn.tool_calls.map((c) => h('li', null, h('code', null, c.name), toolArguments(c)))) : null)))),
    waterfall(s.turns));
}
