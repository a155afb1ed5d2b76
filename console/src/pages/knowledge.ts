import { AgentAnswer, api, Chunk, Doc, KnowledgeBase, Persona, SearchOut } from '../api';
import { Ctx, errorText, fmtDate, role, statusBadge, title } from '../app';
import { clear, h, put } from '../dom';
import { t } from '../i18n';

export async function knowledgePage(ctx: Ctx): Promise<void> {
  const kbs = await api.get<KnowledgeBase[]>('/knowledge-bases');
  const name = h('input', { id: 'kb-name', maxlength: '200', required: true });
  const lang = h('select', { id: 'kb-lang' }, h('option', { value: 'en' }, t('lang.en')), h('option', { value: 'zh' }, t('lang.zh')));
  const err = h('p', { class: 'field-error' });
  put(ctx.main, title(t('knowledge.title')),
    role.canEdit(ctx.me) ? h('form', {
      class: 'card inline', 'aria-label': t('knowledge.create'),
      onsubmit: async (e: Event) => {
        e.preventDefault();
        try {
          const kb = await api.post<KnowledgeBase>('/knowledge-bases', { name: name.value, language: lang.value });
          location.hash = `#/knowledge/${kb.id}`;
        } catch (x) { err.textContent = errorText(x); }
      },
    }, h('h2', null, t('knowledge.create')), h('label', { for: 'kb-name' }, t('field.name')), name,
    h('label', { for: 'kb-lang' }, t('field.language')), lang, h('button', { type: 'submit' }, t('action.create')), err) : null,
    kbs.length ? h('table', { class: 'table', 'data-testid': 'kb-list' },
      h('thead', null, h('tr', null, h('th', null, t('field.name')), h('th', null, t('field.language')), h('th', null, t('knowledge.indexed')), h('th', null, t('field.updated')))),
      h('tbody', null, kbs.map((kb) => h('tr', null, h('td', null, h('a', { href: `#/knowledge/${kb.id}` }, kb.name)),
        h('td', null, kb.language), h('td', null, String(kb.index_chunks)), h('td', null, fmtDate(kb.index_updated_at))))))
      : h('p', { class: 'empty' }, t('knowledge.none')));
}

export async function knowledgeBasePage(ctx: Ctx): Promise<void> {
  const kbId = ctx.params[0];
  const kb = await api.get<KnowledgeBase>(`/knowledge-bases/${kbId}`);
  const docsBox = h('div', { 'data-testid': 'documents' });
  const chunksBox = h('section', { class: 'card', 'aria-live': 'polite' });
  const msg = h('p', { class: 'field-error', role: 'alert' });
  let timer = 0;
  ctx.onLeave(() => window.clearTimeout(timer));

  async function load(background = false): Promise<void> {
    const docs = await api.get<Doc[]>(`/knowledge-bases/${kbId}/documents`, { background });
    clear(docsBox, docs.length ? h('table', { class: 'table' },
      h('thead', null, h('tr', null, h('th', null, t('knowledge.file')), h('th', null, t('field.status')), h('th', null, t('knowledge.chunks')), h('th', null, t('field.created')), h('th', null, ''))),
      h('tbody', null, docs.map((d) => h('tr', { 'data-doc': d.filename },
        h('td', null, d.filename, h('span', { class: 'muted' }, ` ${Math.ceil(d.size_bytes / 1024)} KB`)),
        h('td', null, statusBadge(d.status),
          d.status === 'running' || d.status === 'pending' ? h('progress', { max: '1', value: String(d.progress), 'aria-label': t('avatars.progress') }) : null,
          d.status_detail ? h('span', { class: d.status === 'failed' ? 'error' : 'muted' }, ` ${d.status_detail}`) : null),
        h('td', null, String(d.chunk_count)),
        h('td', null, fmtDate(d.created_at)),
        h('td', null, h('button', { type: 'button', onclick: () => void showChunks(d) }, t('knowledge.showChunks'))))))) : h('p', { class: 'empty' }, t('knowledge.noDocs')));
    if (docs.some((d) => d.status === 'pending' || d.status === 'running')) {
      timer = window.setTimeout(() => { load(true).catch((e) => { msg.textContent = errorText(e); }); }, 1000);
    }
  }

  async function showChunks(d: Doc): Promise<void> {
    const chunks = await api.get<Chunk[]>(`/documents/${d.id}/chunks`);
    clear(chunksBox, h('h2', null, t('knowledge.chunksOf', { name: d.filename })),
      h('ol', { class: 'chunks' }, chunks.map((c) => h('li', null, h('pre', null, c.text),
        h('span', { class: 'muted' }, c.embedded ? t('knowledge.embedded') : t('knowledge.notEmbedded'))))));
    chunksBox.querySelector('h2')?.setAttribute('tabindex', '-1');
    (chunksBox.querySelector('h2') as HTMLElement | null)?.focus();
  }

  const fileIn = h('input', { id: 'doc-file', type: 'file', accept: '.txt,.md,.markdown,.html,.htm,.pdf,.yaml,.yml', 'data-testid': 'doc-input' });
  const upload = role.canEdit(ctx.me) ? h('form', {
    class: 'card inline', 'aria-label': t('knowledge.upload'),
    onsubmit: async (e: Event) => {
      e.preventDefault();
      const f = fileIn.files?.[0];
      if (!f) { msg.textContent = t('knowledge.pickFile'); return; }
      const form = new FormData();
      form.append('file', f);
      msg.textContent = '';
      try { await api.upload<Doc>(`/knowledge-bases/${kbId}/documents`, form); fileIn.value = ''; await load(); } catch (x) { msg.textContent = errorText(x); }
    },
  }, h('h2', null, t('knowledge.upload')), h('label', { for: 'doc-file' }, t('knowledge.file')), fileIn,
  h('button', { type: 'submit' }, t('action.upload')), msg) : null;

  // "try a question": what retrieval returns, and what the agent would answer (the call's own policy on
  // this knowledge base, spoken by the chosen persona; tools it would call are listed, not run)
  const personas = await api.get<Persona[]>('/personas');
  const linked = personas.find((p) => p.knowledge_base_id === kbId);
  const personaIn = h('select', { id: 'try-persona', 'aria-describedby': 'try-persona-hint' },
    personas.map((p) => h('option', { value: p.id, selected: p.id === linked?.id }, p.name)),
    h('option', { value: '', selected: !linked }, t('knowledge.defaultPersona')));
  const q = h('input', { id: 'try-q', type: 'search', required: true, placeholder: t('knowledge.tryHint') });
  const results = h('div', { 'data-testid': 'try-results', 'aria-live': 'polite' });
  const answerBox = h('section', { class: 'answer', 'data-testid': 'try-answer', 'aria-live': 'polite', 'aria-labelledby': 'try-answer-h' });
  const submit = h('button', { type: 'submit' }, t('knowledge.ask'));

  function showAnswer(a: AgentAnswer): void {
    clear(answerBox, h('h3', { id: 'try-answer-h' }, t('knowledge.wouldAnswer', { name: a.persona.name })),
      h('blockquote', { class: 'said', lang: a.language === 'zh' ? 'zh-CN' : a.language, 'data-testid': 'answer-text' },
        a.answer || t('knowledge.saysNothing')),
      h('p', null, h('span', { class: `badge dec-${a.decision}`, 'data-testid': 'answer-decision', 'data-decision': a.decision },
        t(`decision.${a.decision}`)), ' ',
        h('span', { class: 'muted' }, a.policy === 'grounded-llm' ? t('knowledge.byLlm', { model: a.model }) : t('knowledge.byTemplates'),
          ` · ${t('knowledge.took', { s: a.seconds.toFixed(2) })}`)),
      a.tool_calls.length ? h('p', { 'data-testid': 'answer-tools' }, t('knowledge.wouldCall'), ' ',
        a.tool_calls.map((c, i) => [i ? ', ' : '', h('code', null, c.name), c.arguments.reason ? ` (${String(c.arguments.reason)})` : ''])) : null,
      h('h4', null, t('knowledge.cites')),
      a.citations.length ? h('ol', { class: 'hits', 'data-testid': 'answer-citations' }, a.citations.map((c) => h('li', { class: 'relevant' },
        h('strong', null, [c.source, c.title].filter(Boolean).join(' · ') || c.chunk_id),
        c.score !== null ? h('span', { class: 'muted' }, ` ${t('knowledge.score')} ${c.score}`) : null,
        c.text ? h('p', null, c.text) : null)))
        : h('p', { class: 'empty', 'data-testid': 'answer-no-citations' }, t('knowledge.citesNothing')),
      a.passages === 0 ? h('p', { class: 'notice' }, t('knowledge.noIndex')) : null,
      a.note ? h('p', { class: 'muted', 'data-testid': 'answer-note' }, a.note) : null);
  }

  const tryBox = h('form', {
    class: 'card', 'aria-label': t('knowledge.try'),
    onsubmit: async (e: Event) => {
      e.preventDefault();
      const question = q.value;
      submit.disabled = true;
      clear(answerBox, h('p', { class: 'muted', 'data-testid': 'answer-working' }, t('knowledge.working')));
      clear(results);
      const retrieval = api.post<SearchOut>(`/knowledge-bases/${kbId}/search`, { query: question, k: 3 }).then((out) => {
        clear(results, h('h3', null, t('knowledge.retrieval')), h('p', { class: 'muted' }, t(`knowledge.method.${out.method}`)),
          out.hits.length ? h('ol', { class: 'hits' }, out.hits.map((hit) => h('li', { class: hit.relevant ? 'relevant' : 'weak' },
            h('strong', null, hit.title || hit.source), ' ',
            h('span', { class: `badge ${hit.relevant ? 'st-ready' : 'st-pending'}` }, hit.relevant ? t('knowledge.relevant') : t('knowledge.weak')),
            h('span', { class: 'muted' }, ` ${t('knowledge.score')} ${hit.score}`),
            h('p', null, hit.text)))) : h('p', { class: 'empty' }, t('knowledge.noHits')));
      }).catch((x) => { clear(results, h('p', { class: 'error' }, errorText(x))); });
      const answer = api.post<AgentAnswer>(`/knowledge-bases/${kbId}/answer`, { question, persona_id: personaIn.value || null })
        .then(showAnswer).catch((x) => { clear(answerBox, h('p', { class: 'error' }, errorText(x))); });
      await Promise.all([retrieval, answer]);
      submit.disabled = false;
    },
  }, h('h2', null, t('knowledge.try')),
  h('div', { class: 'field' }, h('label', { for: 'try-q' }, t('knowledge.question')), q),
  h('div', { class: 'field' }, h('label', { for: 'try-persona' }, t('knowledge.persona')), personaIn,
    h('p', { class: 'hint', id: 'try-persona-hint' }, t('knowledge.personaHint'))),
  submit, h('div', { class: 'try' }, answerBox, results));

  put(ctx.main, title(kb.name, h('a', { href: '#/knowledge' }, t('action.back'))),
    h('p', { class: 'muted' }, t('knowledge.indexInfo', { n: kb.index_chunks, at: fmtDate(kb.index_updated_at) })),
    upload, h('section', { class: 'card' }, h('h2', null, t('knowledge.documents')), docsBox), tryBox, chunksBox);
  await load();
}
