import {
  BarController, BarElement, CategoryScale, Chart, ChartConfiguration, Legend, LinearScale, LineController, LineElement,
  PointElement, Tooltip,
} from 'chart.js';
import { api, Insights, Stats } from '../api';
import { Ctx, fmtDate, fmtSec, title } from '../app';
import { h, put } from '../dom';
import { t } from '../i18n';
import { OUTCOMES, stageName, STAGES } from './sessions';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, LineController, LineElement, PointElement, Legend, Tooltip);

const COLORS = ['#2563eb', '#16a34a', '#d97706', '#9333ea', '#dc2626', '#0891b2', '#4b5563'];
const OUTCOME_COLORS: Record<string, string> = {
  completed: '#16a34a', abandoned: '#9ca3af', escalated: '#f59e0b', escalated_handled: '#0891b2',
  escalated_unanswered: '#dc2626', failed: '#7f1d1d', open: '#c4b5fd',
};
const outcomeName = (o: string) => { const k = `outcome.${o}`; const s = t(k); return s === k ? o : s; };
const pct = (v: number | null) => (v === null ? '—' : `${Math.round(v * 100)}%`);
const clip = (s: string, n = 60) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

function chartCard(id: string, heading: string, config: ChartConfiguration, points: number, table: HTMLElement, charts: Chart[],
  hint?: string, height?: number): HTMLElement {
  const canvas = h('canvas', { id, role: 'img', 'aria-label': heading, 'data-points': String(points) });
  const box = h('div', { class: 'chart-box' }, canvas);
  if (height) box.style.height = `${Math.max(280, height)}px`; // a bar per question
  const card = h('section', { class: 'card chart', 'aria-labelledby': `${id}-t` }, h('h2', { id: `${id}-t` }, heading),
    hint ? h('p', { class: 'hint' }, hint) : null, box, h('details', null, h('summary', null, t('insights.asTable')), table));
  queueMicrotask(() => charts.push(new Chart(canvas, config)));
  return card;
}

const order = (k: string) => { const i = STAGES.indexOf(k); return i < 0 ? STAGES.length : i; };

export async function insightsPage(ctx: Ctx): Promise<void> {
  const days = 14;
  const [stats, daily] = await Promise.all([
    api.get<Stats>('/sessions/stats'), api.get<Insights>('/console/insights', { query: { days } })]);
  const charts: Chart[] = [];
  ctx.onLeave(() => charts.forEach((c) => c.destroy()));
  const stages = Object.keys(stats.latency).sort((a, b) => order(a) - order(b) || a.localeCompare(b));
  const base = { animation: false as const, responsive: true, maintainAspectRatio: false };

  const latencyTable = h('table', { class: 'table' }, h('thead', null, h('tr', null, h('th', null, t('insights.stage')), h('th', null, 'p50'), h('th', null, 'p95'), h('th', null, t('insights.count')))),
    h('tbody', null, stages.map((s) => h('tr', null, h('td', null, stageName(s)), h('td', null, fmtSec(stats.latency[s].p50)),
      h('td', null, fmtSec(stats.latency[s].p95)), h('td', null, String(stats.latency[s].count))))));
  const callsTable = h('table', { class: 'table' }, h('thead', null, h('tr', null, h('th', null, t('insights.day')), h('th', null, t('insights.calls')), h('th', null, t('insights.escalatedCalls')))),
    h('tbody', null, daily.days.map((d, i) => h('tr', null, h('td', null, d), h('td', null, String(daily.calls[i])), h('td', null, String(daily.escalated[i]))))));
  const trendStages = Object.keys(daily.latency).sort((a, b) => order(a) - order(b));
  const trendTable = h('table', { class: 'table' }, h('thead', null, h('tr', null, h('th', null, t('insights.day')), trendStages.map((s) => h('th', null, `${stageName(s)} p50 / p95`)))),
    h('tbody', null, daily.days.map((d, i) => h('tr', null, h('td', null, d), trendStages.map((s) => h('td', null, `${fmtSec(daily.latency[s].p50[i])} / ${fmtSec(daily.latency[s].p95[i])}`))))));

  // (a) outcomes per day, stacked, with the escalation rate as a line on its own axis
  const outcomeKeys = [...OUTCOMES, 'open', ...Object.keys(daily.outcomes).filter((o) => o !== 'open' && !OUTCOMES.includes(o))]
    .filter((o) => o in daily.outcomes);
  const outcomesTable = h('table', { class: 'table' }, h('thead', null, h('tr', null, h('th', null, t('insights.day')),
    outcomeKeys.map((o) => h('th', null, outcomeName(o))), h('th', null, t('insights.escalationRate')))),
  h('tbody', null, daily.days.map((d, i) => h('tr', null, h('td', null, d), outcomeKeys.map((o) => h('td', null, String(daily.outcomes[o][i]))),
    h('td', null, pct(daily.escalation_rate[i]))))));
  // (b) what callers asked that the agent had no approved answer for
  const top = daily.unanswered;
  const unansweredTable = h('table', { class: 'table', 'data-testid': 'unanswered-table' },
    h('thead', null, h('tr', null, h('th', null, t('insights.rank')), h('th', null, t('insights.question')), h('th', null, t('insights.times')),
      h('th', null, t('insights.lastAsked')))),
    h('tbody', null, top.map((q, i) => h('tr', { 'data-key': q.key }, h('td', null, String(i + 1)), h('td', null, q.text),
      h('td', null, String(q.count)), h('td', null, fmtDate(q.last_at))))));

  const unansweredCard = top.length ? chartCard('chart-unanswered', t('insights.unanswered', { n: days }), {
    type: 'bar',
    data: { labels: top.map((q) => clip(q.text)), datasets: [
      { label: t('insights.times'), data: top.map((q) => q.count), backgroundColor: '#9333ea' }] },
    options: { ...base, indexAxis: 'y', plugins: { legend: { display: false },
      tooltip: { callbacks: { title: (items) => top[items[0].dataIndex]?.text ?? '' } } },
    scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
  }, top.length, unansweredTable, charts, t('insights.unansweredHint', { n: daily.unanswered_total }), 40 + top.length * 22)
    : h('section', { class: 'card chart', 'aria-labelledby': 'chart-unanswered-t', 'data-testid': 'no-unanswered' },
      h('h2', { id: 'chart-unanswered-t' }, t('insights.unanswered', { n: days })), h('p', { class: 'empty' }, t('insights.noUnanswered')));
  unansweredCard.classList.add('wide');

  const rate = stats.escalation_rate === null ? '—' : `${Math.round(stats.escalation_rate * 100)}%`;
  put(ctx.main, title(t('insights.title')),
    h('div', { class: 'kpis' },
      h('div', { class: 'card kpi' }, h('span', null, t('insights.sessions')), h('strong', { 'data-testid': 'kpi-sessions' }, String(stats.sessions))),
      h('div', { class: 'card kpi' }, h('span', null, t('insights.escalationRate')), h('strong', null, rate)),
      Object.entries(stats.outcomes).map(([o, n]) => h('div', { class: 'card kpi' }, h('span', null, outcomeName(o)), h('strong', null, String(n))))),
    h('div', { class: 'charts' },
      chartCard('chart-latency', t('insights.latency'), {
        type: 'bar',
        data: { labels: stages.map(stageName), datasets: [
          { label: 'p50', data: stages.map((s) => stats.latency[s].p50), backgroundColor: '#60a5fa' },
          { label: 'p95', data: stages.map((s) => stats.latency[s].p95), backgroundColor: '#1d4ed8' }] },
        options: { ...base, scales: { y: { beginAtZero: true, title: { display: true, text: t('insights.seconds') } } } },
      }, stages.length, latencyTable, charts),
      chartCard('chart-calls', t('insights.callsPerDay', { n: days }), {
        type: 'bar',
        data: { labels: daily.days.map((d) => d.slice(5)), datasets: [
          { label: t('insights.calls'), data: daily.calls, backgroundColor: '#16a34a' },
          { label: t('insights.escalatedCalls'), data: daily.escalated, backgroundColor: '#dc2626' }] },
        options: { ...base, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
      }, daily.calls.reduce((a, b) => a + b, 0), callsTable, charts),
      chartCard('chart-trend', t('insights.trend'), {
        type: 'line',
        data: { labels: daily.days.map((d) => d.slice(5)), datasets: trendStages.flatMap((s, i) => [
          { label: `${stageName(s)} p50`, data: daily.latency[s].p50, borderColor: COLORS[i % COLORS.length], backgroundColor: COLORS[i % COLORS.length], spanGaps: true },
          { label: `${stageName(s)} p95`, data: daily.latency[s].p95, borderColor: COLORS[i % COLORS.length], borderDash: [5, 4], backgroundColor: COLORS[i % COLORS.length], spanGaps: true }]) },
        options: { ...base, scales: { y: { beginAtZero: true, title: { display: true, text: t('insights.seconds') } } } },
      }, trendStages.length, trendTable, charts),
      chartCard('chart-outcomes', t('insights.outcomesPerDay', { n: days }), {
        type: 'bar',
        data: { labels: daily.days.map((d) => d.slice(5)), datasets: [
          ...outcomeKeys.map((o) => ({ type: 'bar' as const, label: outcomeName(o), data: daily.outcomes[o], backgroundColor: OUTCOME_COLORS[o] || '#4b5563', stack: 'calls', yAxisID: 'y' })),
          { type: 'line' as const, label: t('insights.escalationRate'), yAxisID: 'rate', borderColor: '#111827', backgroundColor: '#111827', spanGaps: true,
            data: daily.escalation_rate.map((r) => (r === null ? null : Math.round(r * 1000) / 10)) }] },
        options: { ...base, scales: {
          x: { stacked: true },
          y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: t('insights.calls') } },
          rate: { position: 'right', min: 0, max: 100, grid: { drawOnChartArea: false }, title: { display: true, text: t('insights.ratePercent') } } } },
      } as ChartConfiguration, daily.calls.reduce((a, b) => a + b, 0), outcomesTable, charts),
      unansweredCard));
}
