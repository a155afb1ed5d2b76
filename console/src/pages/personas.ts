import { api, ApiError, Persona, PersonaSettings, Rule, Topic } from '../api';
import { Ctx, errorText, fmtDate, role, title } from '../app';
import { clear, h, put } from '../dom';
import { t } from '../i18n';

const LANGS = ['en', 'zh'];
const words = (s: string) => s.split(/[,，\n]/).map((w) => w.trim()).filter(Boolean);

export async function personasPage(ctx: Ctx): Promise<void> {
  const editor = role.canEdit(ctx.me);
  const personas = await api.get<Persona[]>('/personas');
  const err = h('p', { class: 'field-error', id: 'persona-create-error' });
  const name = h('input', { id: 'persona-name', maxlength: '200' });
  put(ctx.main, 
    title(t('personas.title')),
    editor ? h('form', {
      class: 'card inline', 'aria-label': t('personas.create'),
      onsubmit: async (e: Event) => {
        e.preventDefault();
        try {
          const p = await api.post<Persona>('/personas', { name: name.value });
          location.hash = `#/personas/${p.id}`;
        } catch (x) { err.textContent = x instanceof ApiError && x.fields.name ? x.fields.name : errorText(x); }
      },
    }, h('h2', null, t('personas.create')), h('label', { for: 'persona-name' }, t('field.name')), name,
    h('button', { type: 'submit' }, t('action.create')), err) : null,
    personas.length ? h('table', { class: 'table', 'data-testid': 'persona-list' },
      h('thead', null, h('tr', null, h('th', null, t('field.name')), h('th', null, t('field.language')), h('th', null, t('personas.greeting')), h('th', null, t('field.updated')))),
      h('tbody', null, personas.map((p) => h('tr', null,
        h('td', null, h('a', { href: `#/personas/${p.id}` }, p.name)), h('td', null, p.language),
        h('td', null, p.settings.greeting?.[p.language] || p.greeting || '—'), h('td', null, fmtDate(p.updated_at))))))
      : h('p', { class: 'empty' }, t('personas.none')));
}

export async function personaPage(ctx: Ctx): Promise<void> {
  const editor = role.canEdit(ctx.me);
  const p = await api.get<Persona>(`/personas/${ctx.params[0]}`);
  const s: PersonaSettings = p.settings || {};
  const errors = new Map<string, HTMLElement>();
  const saved = h('p', { role: 'status', class: 'ok', 'data-testid': 'saved' });
  const formErr = h('p', { class: 'error', role: 'alert' });

  // a labelled control with its error slot; `key` is the API's field path (e.g. settings.tone)
  function field(key: string, label: string, control: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement, hint = ''): HTMLElement {
    const id = `f-${key.replace(/\W/g, '-')}`;
    control.id = id;
    control.disabled = !editor;
    control.setAttribute('data-field', key);
    const e = h('p', { class: 'field-error', id: `${id}-error`, 'data-error-for': key });
    control.setAttribute('aria-describedby', `${id}-error${hint ? ` ${id}-hint` : ''}`);
    errors.set(key, e);
    return h('div', { class: 'field' }, h('label', { for: id }, label), control,
      hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null, e);
  }

  // an error line for a group of fields, e.g. settings.escalation.0.examples (a bad language code)
  function groupError(key: string): HTMLElement {
    const e = h('p', { class: 'field-error', 'data-error-for': key });
    errors.set(key, e);
    return e;
  }

  const nameIn = h('input', { value: p.name, maxlength: '200' });
  const langIn = h('select', null, LANGS.map((l) => h('option', { value: l, selected: p.language === l }, t(`lang.${l}`))));
  const greetings = LANGS.map((l) => h('input', { value: s.greeting?.[l] ?? (l === p.language ? p.greeting || '' : '') }));
  const toneIn = h('input', { value: s.tone || '', placeholder: t('personas.toneHint') });
  const instrIn = h('textarea', { rows: '4' }, p.instructions);
  const allowedIn = h('textarea', { rows: '3' }, (s.allowed_topics || []).join('\n'));
  const topicsBox = h('div', { class: 'rows' });
  const rulesBox = h('div', { class: 'rows' });
  // examples: what a caller might say, one phrase per line per language (matched by meaning); languages
  // the form has no field for are kept as they are
  type Examples = Record<string, string[]>;
  const topics: { name: HTMLInputElement; kw: HTMLInputElement; reply: HTMLInputElement[]; ex: HTMLTextAreaElement[]; examples?: Examples }[] = [];
  const rules: { reason: HTMLInputElement; kw: HTMLInputElement; ex: HTMLTextAreaElement[]; examples?: Examples }[] = [];
  const exampleBoxes = (ex?: Examples) => LANGS.map((l) => h('textarea', { rows: '3' }, (ex?.[l] || []).join('\n')));
  const lines = (s: string) => s.split('\n').map((w) => w.trim()).filter(Boolean);
  function examplesOf(boxes: HTMLTextAreaElement[], old?: Examples): Examples {
    const out: Examples = {};
    for (const [l, v] of Object.entries(old || {})) if (!LANGS.includes(l)) out[l] = v;
    LANGS.forEach((l, j) => { const v = lines(boxes[j].value); if (v.length) out[l] = v; });
    return out;
  }
  const exampleFields = (prefix: string, boxes: HTMLTextAreaElement[]) => [
    LANGS.map((l, j) => field(`${prefix}.examples.${l}`, t('personas.examplesIn', { lang: t(`lang.${l}`) }), boxes[j],
      j === 0 ? t('personas.examplesHint') : '')),
    groupError(`${prefix}.examples`)];

  function addTopic(tp?: Topic): void {
    const i = topics.length;
    const row = { name: h('input', { value: tp?.name || '' }), kw: h('input', { value: Object.values(tp?.keywords || {}).flat().join(', ') }),
      reply: LANGS.map((l) => h('input', { value: tp?.reply?.[l] || '' })), ex: exampleBoxes(tp?.examples), examples: tp?.examples };
    topics.push(row);
    topicsBox.append(h('fieldset', { class: 'row' }, h('legend', null, t('personas.topicN', { n: i + 1 })),
      field(`settings.forbidden_topics.${i}.name`, t('field.name'), row.name),
      field(`settings.forbidden_topics.${i}.keywords`, t('personas.keywords'), row.kw, t('personas.keywordsHint')),
      exampleFields(`settings.forbidden_topics.${i}`, row.ex),
      LANGS.map((l, j) => field(`settings.forbidden_topics.${i}.reply.${l}`, t('personas.replyIn', { lang: t(`lang.${l}`) }), row.reply[j]))));
  }
  function addRule(r?: Rule): void {
    const i = rules.length;
    const row = { reason: h('input', { value: r?.reason || '' }), kw: h('input', { value: Object.values(r?.keywords || {}).flat().join(', ') }),
      ex: exampleBoxes(r?.examples), examples: r?.examples };
    rules.push(row);
    rulesBox.append(h('fieldset', { class: 'row' }, h('legend', null, t('personas.ruleN', { n: i + 1 })),
      field(`settings.escalation.${i}.reason`, t('personas.reason'), row.reason),
      field(`settings.escalation.${i}.keywords`, t('personas.keywords'), row.kw, t('personas.keywordsHint')),
      exampleFields(`settings.escalation.${i}`, row.ex)));
  }
  (s.forbidden_topics || []).forEach(addTopic);
  (s.escalation || []).forEach(addRule);

  const form = h('form', {
    class: 'card form', 'aria-label': t('personas.edit'), novalidate: true,
    onsubmit: async (e: Event) => {
      e.preventDefault();
      for (const el of errors.values()) el.textContent = '';
      for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
      saved.textContent = formErr.textContent = '';
      const greeting: Record<string, string> = {};
      LANGS.forEach((l, j) => { greeting[l] = greetings[j].value; });
      const settings: PersonaSettings = {
        ...s, tone: toneIn.value, greeting, allowed_topics: words(allowedIn.value),
        forbidden_topics: topics.map((r) => {
          const reply: Record<string, string> = {};
          LANGS.forEach((l, j) => { if (r.reply[j].value.trim()) reply[l] = r.reply[j].value.trim(); });
          return { name: r.name.value.trim(), keywords: { any: words(r.kw.value) }, reply, examples: examplesOf(r.ex, r.examples) };
        }),
        escalation: rules.map((r) => ({ reason: r.reason.value.trim(), keywords: { any: words(r.kw.value) }, examples: examplesOf(r.ex, r.examples) })),
      };
      try {
        await api.patch<Persona>(`/personas/${p.id}`, {
          name: nameIn.value, language: langIn.value, instructions: instrIn.value,
          greeting: greeting[langIn.value] || null, settings,
        });
        saved.textContent = t('action.saved');
      } catch (x) {
        if (x instanceof ApiError && Object.keys(x.fields).length) {
          let first: Element | null = null;
          for (const [key, m] of Object.entries(x.fields)) {
            const slot = errors.get(key) || errors.get(key.split('.').slice(0, -1).join('.'));
            if (slot) {
              slot.textContent = m;
              const ctl = form.querySelector(`[data-field="${slot.dataset.errorFor}"]`);
              ctl?.setAttribute('aria-invalid', 'true');
              first = first || ctl;
            } else formErr.textContent = `${key}: ${m}`;
          }
          (first as HTMLElement | null)?.focus();
          formErr.textContent = formErr.textContent || t('personas.fix');
        } else formErr.textContent = errorText(x);
      }
    },
  },
  field('name', t('field.name'), nameIn),
  field('language', t('personas.defaultLanguage'), langIn),
  LANGS.map((l, j) => field(`settings.greeting.${l}`, t('personas.greetingIn', { lang: t(`lang.${l}`) }), greetings[j])),
  field('settings.tone', t('personas.tone'), toneIn),
  field('instructions', t('personas.instructions'), instrIn),
  field('settings.allowed_topics', t('personas.allowed'), allowedIn, t('personas.allowedHint')),
  h('h2', null, t('personas.forbidden')), topicsBox,
  editor ? h('button', { type: 'button', onclick: () => addTopic() }, t('personas.addTopic')) : null,
  h('h2', null, t('personas.escalation')), rulesBox,
  editor ? h('button', { type: 'button', 'data-testid': 'add-rule', onclick: () => addRule() }, t('personas.addRule')) : null,
  errors.get('settings.greeting') ? null : (errors.set('settings.greeting', h('p', { class: 'field-error', 'data-error-for': 'settings.greeting' })), errors.get('settings.greeting')),
  formErr, saved,
  editor ? h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t('action.save'))) : null);

  clear(ctx.main, title(p.name, h('a', { href: '#/personas' }, t('action.back'))),
    editor ? null : h('p', { class: 'notice', 'data-testid': 'read-only' }, t('common.readOnly')), form);
}
