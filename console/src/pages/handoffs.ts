// The live handoff queue: calls waiting for a person. The page loads GET /handoffs?state=open and
// then follows GET /handoffs/stream (server-sent events, one `handoff` event with the whole entry
// each time one changes); there is no polling besides EventSource's own reconnect (after which the
// list is loaded once more, to drop calls that left the queue while the stream was down). Admins and
// operators accept a call (POST /handoffs/{id}/accept) and get the room, their identity and a LiveKit
// URL + token to join it with a LiveKit client; viewers watch. Below the queue, the history: calls that
// left it (handed back, nobody came), from GET /handoffs?state=closed (paged back with `before`), and
// each call that leaves the queue while the page is open is added at the top from the stream.
import { api, Handoff, HandoffAccept } from '../api';
import { Ctx, errorText, fmtDate, role, title } from '../app';
import { Child, h, nextId, put } from '../dom';
import { t } from '../i18n';

const OPEN = ['waiting', 'accepted'];
const HISTORY_PAGE = 25;
type StreamState = 'connecting' | 'live' | 'reconnecting' | 'closed';
interface Entry { h: Handoff; at: number; card: HTMLElement }

export function duration(sec: number): string {
  const s = Math.max(0, Math.floor(sec));
  return s < 60 ? t('handoffs.sec', { s }) : t('handoffs.minSec', { m: Math.floor(s / 60), s: String(s % 60).padStart(2, '0') });
}

// what a card shows, less the waiting time that grows by itself (an unchanged entry is not redrawn)
const shape = (x: Handoff) => JSON.stringify({ ...x, waiting_seconds: x.status === 'waiting' ? 0 : x.waiting_seconds });

async function copy(el: HTMLInputElement | HTMLTextAreaElement, note: HTMLElement): Promise<void> {
  el.select();
  try {
    await navigator.clipboard.writeText(el.value);
    note.textContent = t('handoffs.copied');
  } catch {
    // no clipboard permission (or not a secure context): the old way, else leave the text selected
    el.focus();
    el.select();
    note.textContent = document.execCommand('copy') ? t('handoffs.copied') : t('handoffs.copyFailed');
  }
}

function joinedPanel(a: HandoffAccept): HTMLElement {
  const field = (label: string, copyLabel: string, value: string, key: string, multiline = false): Child[] => {
    const id = nextId('join');
    const attrs = { id, readonly: true, spellcheck: 'false', 'data-focus': key, 'data-testid': `join-${key}` };
    const input = multiline ? h('textarea', { ...attrs, rows: '4', class: 'token' }, value) : h('input', { ...attrs, value });
    const note = h('span', { class: 'ok', role: 'status' });
    return [h('dt', null, h('label', { for: id }, label)),
      h('dd', null, h('div', { class: 'copy' }, input,
        h('button', { type: 'button', 'data-focus': `copy-${key}`, 'aria-label': copyLabel, onclick: () => void copy(input, note) }, t('handoffs.copy')),
        note))];
  };
  return h('section', { class: 'joined notice', 'data-testid': 'handoff-joined', 'aria-label': t('handoffs.yours') },
    h('p', null, h('strong', null, t('handoffs.yours'))),
    h('dl', { class: 'facts' },
      h('dt', null, t('handoffs.room')), h('dd', null, h('code', { 'data-testid': 'join-room' }, a.room)),
      h('dt', null, t('handoffs.identity')), h('dd', null, h('code', { 'data-testid': 'join-identity' }, a.identity)),
      field(t('handoffs.serverUrl'), t('handoffs.copyUrl'), a.server_url, 'url'),
      field(t('handoffs.token'), t('handoffs.copyToken'), a.token, 'token', true)),
    h('p', { class: 'hint' }, t('handoffs.expires', { at: fmtDate(a.expires_at) })),
    h('p', { class: 'hint' }, t('handoffs.joinNote')));
}

export async function handoffsPage(ctx: Ctx): Promise<void> {
  const canTake = role.canEdit(ctx.me);
  const past = (before?: string, background = false) => api.get<Handoff[]>('/handoffs',
    { query: { state: 'closed', limit: HISTORY_PAGE, before, transcript: false }, background });
  const [first, firstPast] = await Promise.all([api.get<Handoff[]>('/handoffs', { query: { state: 'open' } }), past()]);
  const items = new Map<string, Entry>();
  const joined = new Map<string, HandoffAccept>(); // the calls this person accepted on this page
  const errors = new Map<string, string>();
  let ready = false;

  const lists: Record<string, HTMLElement> = {
    waiting: h('div', { class: 'handoffs', 'data-testid': 'handoffs-waiting' }),
    accepted: h('div', { class: 'handoffs', 'data-testid': 'handoffs-taken' }),
  };
  const heads: Record<string, HTMLElement> = { waiting: h('h2', { id: 'hq-waiting' }), accepted: h('h2', { id: 'hq-taken' }) };
  const empties: Record<string, HTMLElement> = {
    waiting: h('p', { class: 'empty', 'data-testid': 'handoffs-none' }, t('handoffs.none')),
    accepted: h('p', { class: 'empty' }, t('handoffs.noneTaken')),
  };
  const streamState = h('span', { class: 'badge live', role: 'status', 'data-testid': 'stream-state' });
  const announcer = h('div', { class: 'visually-hidden', 'aria-live': 'polite', 'data-testid': 'handoff-announce' });
  const announce = (text: string) => { if (ready) announcer.textContent = text; };
  const setState = (s: StreamState) => {
    streamState.dataset.state = s;
    streamState.className = `badge live live-${s}`;
    streamState.textContent = t(`handoffs.stream.${s}`);
  };

  const elapsed = (e: Entry) => (e.h.status === 'waiting' ? e.h.waiting_seconds + (performance.now() - e.at) / 1000 : e.h.waiting_seconds);
  const waitText = (e: Entry) => t(e.h.status === 'waiting' ? 'handoffs.waitingFor' : 'handoffs.waited', { d: duration(elapsed(e)) });

  function card(e: Entry): HTMLElement {
    const x = e.h;
    const room = x.room || '—';
    const tid = nextId('ho');
    const facts: [string, Child][] = [['handoffs.room', h('code', null, room)], ['handoffs.caller', x.caller_identity || '—'],
      ['handoffs.requested', fmtDate(x.requested_at)]];
    if (x.accepted_at) facts.push(['handoffs.acceptedAt', fmtDate(x.accepted_at)]);
    const mine = joined.get(x.id);
    return h('article', { class: `card handoff hs-${x.status}`, 'data-handoff-id': x.id, 'data-status': x.status, 'aria-labelledby': `${tid}-t`, tabindex: '-1' },
      h('div', { class: 'handoff-head' },
        h('h3', { id: `${tid}-t` }, x.reason || t('handoffs.noReason')),
        h('span', { class: `badge hs-${x.status}`, 'data-testid': 'handoff-status' }, t(`handoffs.status.${x.status}`)),
        h('span', { class: 'wait', 'data-testid': 'waiting-for', 'data-seconds': String(Math.floor(elapsed(e))) }, waitText(e))),
      x.status === 'accepted' && x.operator_joined_at ? h('p', { class: 'ok' }, t('handoffs.operatorIn')) : null,
      h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', null, t(k)), h('dd', null, v)]),
        x.summary ? [h('dt', null, t('handoffs.summary')), h('dd', { 'data-testid': 'handoff-summary' }, x.summary)] : null),
      h('h4', null, t('handoffs.transcript')),
      x.transcript.length
        ? h('ol', { class: 'transcript scroll', 'data-testid': 'handoff-transcript', tabindex: '0', 'aria-label': t('handoffs.transcript') },
          x.transcript.map((turn) => h('li', { class: `turn ${turn.speaker}` },
            h('div', { class: 'who' }, t(`speaker.${turn.speaker}`)), h('p', { class: 'text' }, turn.text))))
        : h('p', { class: 'empty' }, t('handoffs.noTranscript')),
      errors.has(x.id) ? h('p', { class: 'error', role: 'alert', 'data-testid': 'handoff-error' }, errors.get(x.id)!) : null,
      canTake && x.status === 'waiting' && !mine ? h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'primary', 'data-focus': 'accept', 'aria-label': t('handoffs.acceptLabel', { room }),
          onclick: (ev: Event) => void accept(x.id, ev.currentTarget as HTMLButtonElement) }, t('handoffs.accept')),
        // or take it in this browser: the operator page accepts and joins with the microphone
        h('a', { class: 'button', href: `/operator.html?handoff=${encodeURIComponent(x.id)}`, target: '_blank',
          rel: 'noopener', 'data-testid': 'handoff-join' }, t('handoffs.joinHere'))) : null,
      mine ? joinedPanel(mine) : null);
  }

  // Moves and redraws keep the keyboard focus where it was (the same control in the redrawn card, else
  // the card, else the page); `want` puts it on a control of a card instead (after Accept: the token).
  function keepFocus(fn: () => void, want?: { id: string; key: string }): void {
    const active = document.activeElement as HTMLElement | null;
    const id = want?.id || active?.closest<HTMLElement>('article[data-handoff-id]')?.dataset.handoffId;
    const key = want?.key || active?.dataset.focus;
    fn();
    if (!id || (!want && document.activeElement === active && document.contains(active))) return;
    const c = items.get(id)?.card;
    const target = (key && c?.querySelector<HTMLElement>(`[data-focus="${key}"]`)) || c || ctx.main;
    target.focus();
  }

  function layout(): void {
    for (const status of OPEN) {
      const list = lists[status];
      const want = [...items.values()].filter((e) => e.h.status === status)
        .sort((a, b) => (a.h.accepted_at || a.h.requested_at).localeCompare(b.h.accepted_at || b.h.requested_at));
      want.forEach((e, i) => { if (list.children[i] !== e.card) list.insertBefore(e.card, list.children[i] || null); });
      heads[status].textContent = t(status === 'waiting' ? 'handoffs.waiting' : 'handoffs.taken', { n: want.length });
      empties[status].hidden = want.length > 0;
    }
  }

  function drop(id: string): void {
    const old = items.get(id);
    if (old) keepFocus(() => { old.card.remove(); items.delete(id); layout(); });
  }

  function upsert(x: Handoff, force = false, focus?: string): void {
    const old = items.get(x.id);
    if (!OPEN.includes(x.status)) { // handed back, or nobody came: out of the live queue, into the history
      addHistory([x]);
      if (!old) return;
      drop(x.id);
      announce(t('handoffs.gone', { room: x.room || '—', status: t(`handoffs.status.${x.status}`) }));
      return;
    }
    if (old && !force && shape(old.h) === shape(x)) {
      old.h = x; // the same entry again (the stream starts with every open one): fresh waiting time only
      old.at = performance.now();
      return;
    }
    const e = { h: x, at: performance.now() } as Entry;
    keepFocus(() => {
      e.card = card(e);
      items.set(x.id, e);
      if (old && old.card.parentNode === lists[x.status]) old.card.replaceWith(e.card);
      else old?.card.remove();
      layout();
      const tr = e.card.querySelector('.transcript');
      if (tr) tr.scrollTop = tr.scrollHeight; // the latest turns in view
    }, focus ? { id: x.id, key: focus } : undefined);
    if (!old && x.status === 'waiting') announce(t('handoffs.new', { reason: x.reason || t('handoffs.noReason') }));
  }

  async function accept(id: string, btn: HTMLButtonElement): Promise<void> {
    btn.disabled = true;
    btn.textContent = t('handoffs.accepting');
    errors.delete(id);
    try {
      const a = await api.post<HandoffAccept>(`/handoffs/${id}/accept`);
      joined.set(id, a);
      upsert(a.handoff, true, 'token');
    } catch (e) {
      errors.set(id, errorText(e)); // e.g. 409: someone else took it; the stream brings the new state
      const cur = items.get(id);
      if (cur) upsert(cur.h, true, 'accept');
    }
  }

  // --- the history: calls that left the queue, newest first -----------------------------------------
  const historyRows = new Map<string, { h: Handoff; row: HTMLTableRowElement }>();
  const historyBody = h('tbody');
  const historyTable = h('table', { class: 'table', 'data-testid': 'handoff-history' },
    h('caption', { class: 'visually-hidden' }, t('handoffs.history')),
    h('thead', null, h('tr', null, ['handoffs.requested', 'handoffs.reasonCol', 'handoffs.outcome', 'handoffs.waitedCol',
      'handoffs.takenBy', 'handoffs.endedAt', 'handoffs.call'].map((k) => h('th', { scope: 'col' }, t(k))))),
    historyBody);
  const historyEmpty = h('p', { class: 'empty', 'data-testid': 'history-none' }, t('handoffs.noHistory'));
  let oldest: string | undefined;
  const more = h('button', { type: 'button', 'data-testid': 'history-more', onclick: () => void loadMore() }, t('common.more'));

  function historyRow(x: Handoff): HTMLTableRowElement {
    return h('tr', { 'data-handoff-id': x.id, 'data-status': x.status },
      h('td', null, fmtDate(x.requested_at)),
      h('td', null, x.reason || t('handoffs.noReason'), x.summary ? h('p', { class: 'hint' }, x.summary) : null),
      h('td', null, h('span', { class: `badge hs-${x.status}`, 'data-testid': 'history-status' }, t(`handoffs.status.${x.status}`))),
      h('td', { 'data-testid': 'history-waited' }, duration(x.waiting_seconds)),
      h('td', { 'data-testid': 'history-taker' }, x.accepted_by_name || (x.accepted_by ? x.accepted_by.slice(0, 8) : '—')),
      h('td', null, fmtDate(x.ended_at)),
      h('td', null, h('a', { href: `#/sessions/${x.session_id}`, 'aria-label': t('handoffs.openCall', { room: x.room || '—' }) },
        x.room || t('handoffs.transcriptLink'))));
  }

  // newest first by the time the caller asked; an entry already listed is redrawn in place
  function addHistory(list: Handoff[]): void {
    for (const x of list) {
      if (OPEN.includes(x.status)) continue;
      const row = historyRow(x);
      const old = historyRows.get(x.id);
      if (old) old.row.replaceWith(row);
      else {
        const next = [...historyRows.values()].filter((e) => e.h.requested_at < x.requested_at)
          .sort((a, b) => b.h.requested_at.localeCompare(a.h.requested_at))[0];
        historyBody.insertBefore(row, next ? next.row : null);
      }
      historyRows.set(x.id, { h: x, row });
    }
    historyEmpty.hidden = historyRows.size > 0;
    historyTable.hidden = historyRows.size === 0;
  }

  function paged(list: Handoff[]): void {
    addHistory(list);
    if (list.length) oldest = list[list.length - 1].requested_at;
    more.hidden = list.length < HISTORY_PAGE;
  }

  async function loadMore(): Promise<void> {
    more.disabled = true;
    try {
      paged(await past(oldest));
    } catch (e) {
      historyEmpty.hidden = false;
      historyEmpty.textContent = errorText(e);
    } finally {
      more.disabled = false;
    }
  }

  function tick(): void {
    for (const e of items.values()) {
      if (e.h.status !== 'waiting') continue;
      const el = e.card.querySelector<HTMLElement>('[data-testid=waiting-for]');
      if (el) { el.textContent = waitText(e); el.dataset.seconds = String(Math.floor(elapsed(e))); }
    }
  }

  async function resync(): Promise<void> {
    try {
      const [open, closed] = await Promise.all([api.get<Handoff[]>('/handoffs', { query: { state: 'open' }, background: true }),
        past(undefined, true)]);
      addHistory(closed); // the calls that left the queue while the stream was down
      const ids = new Set(open.map((x) => x.id));
      for (const id of [...items.keys()]) if (!ids.has(id)) drop(id);
      open.forEach((x) => upsert(x));
    } catch { /* the next reconnect tries again */ }
  }

  first.forEach((x) => upsert(x));
  paged(firstPast);
  put(ctx.main,
    title(t('handoffs.title'), streamState),
    h('p', { class: 'muted' }, t('handoffs.intro')),
    canTake ? null : h('p', { class: 'notice', 'data-testid': 'read-only' }, t('handoffs.readOnly')),
    announcer,
    h('section', { 'aria-labelledby': 'hq-waiting' }, heads.waiting, empties.waiting, lists.waiting),
    h('section', { 'aria-labelledby': 'hq-taken' }, heads.accepted, empties.accepted, lists.accepted),
    h('section', { 'aria-labelledby': 'hq-history' }, h('h2', { id: 'hq-history' }, t('handoffs.history')),
      h('p', { class: 'muted' }, t('handoffs.historyIntro')), historyEmpty, historyTable, h('div', { class: 'actions' }, more)));
  layout();
  ready = true;

  setState('connecting');
  const timer = window.setInterval(tick, 1000);
  const es = api.stream('/handoffs/stream');
  let opened = false;
  ctx.onLeave(() => { es.close(); window.clearInterval(timer); });
  es.addEventListener('open', () => {
    setState('live');
    if (opened) void resync(); // changes while the stream was down
    opened = true;
  });
  es.addEventListener('handoff', (ev) => {
    try { upsert(JSON.parse((ev as MessageEvent<string>).data) as Handoff); } catch { /* not an entry */ }
  });
  es.addEventListener('error', () => {
    if (es.readyState !== EventSource.CLOSED) { setState('reconnecting'); return; }
    setState('closed'); // refused (e.g. the session is over): find out, which shows the sign-in page on 401
    api.get('/console/session', { background: true }).catch(() => {});
  });
}
