import {
  BarController, BarElement, CategoryScale, Chart, ChartConfiguration, Legend, LinearScale, LineController, LineElement,
  PointElement, Tooltip,
} from 'chart.js';
import { api, Insights, Stats } from '../api';
import { Ctx, fmtSec, title } from '../app';
import { h, put } from '../dom';
import { t } from '../i18n';
import { stageName, STAGES } from './sessions';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, LineController, LineElement, PointElement, Legend, Tooltip);

const COLORS = ['#2563eb', '#16a34a', '#d97706', '#9333ea', '#dc2626', '#0891b2', '#4b5563'];

function chartCard(id: string, heading: string, config: ChartConfiguration, points: number, table: HTMLElement, charts: Chart[]): HTMLElement {
  const canvas = h('canvas', { id, role: 'img', 'aria-label': heading, 'data-points': String(points) });
  const card = h('section', { class: 'card chart', 'aria-labelledby': `${id}-t` }, h('h2', { id: `${id}-t` }, heading),
    h('div', { class: 'chart-box' }, canvas), h('details', null, h('summary', null, t('insights.asTable')), table));
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

  const rate = stats.escalation_rate === null ? '—' : `${Math.round(stats.escalation_rate * 100)}%`;
  put(ctx.main, title(t('insights.title')),
    h('div', { class: 'kpis' },
      h('div', { class: 'card kpi' }, h('span', null, t('insights.sessions')), h('strong', { 'data-testid': 'kpi-sessions' }, String(stats.sessions))),
      h('div', { class: 'card kpi' }, h('span', null, t('insights.escalationRate')), h('strong', null, rate)),
      Object.entries(stats.outcomes).map(([o, n]) => h('div', { class: 'card kpi' }, h('span', null, t(`outcome.${o}`)), h('strong', null, String(n))))),
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
      }, trendStages.length, trendTable, charts)));
}
