// The admin API client. Every call names its path literally (api.get('/avatars/${id}') ...):
// tests/console/test_console_api.py reads these calls and checks each method and path against
// the backend's OpenAPI document, so the console and the API cannot drift apart.
export const PREFIX = '/api/v1';

export class ApiError extends Error {
  status: number;
  fields: Record<string, string>;
  constructor(status: number, message: string, fields: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.fields = fields;
  }
}

type Query = Record<string, string | number | boolean | null | undefined>;
interface Options { query?: Query; background?: boolean }

let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(fn: () => void): void { onUnauthorized = fn; }

export function csrfToken(): string {
  const m = document.cookie.match(/(?:^|;\s*)dh_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : '';
}

export function url(path: string, query?: Query): string {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== '') qs.set(k, String(v));
  const s = qs.toString();
  return PREFIX + path + (s ? `?${s}` : '');
}

// 422 bodies: [{loc: ['body', 'settings', 'escalation', 0, 'reason'], msg}] -> {'settings.escalation.0.reason': msg}
function fieldErrors(detail: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!Array.isArray(detail)) return out;
  for (const e of detail as { loc?: unknown[]; msg?: string }[]) {
    const loc = (e.loc || []).filter((p, i) => !(i === 0 && (p === 'body' || p === 'query')));
    const key = loc.join('.');
    if (!(key in out)) out[key] = String(e.msg || '').replace(/^Value error, /, '');
  }
  return out;
}

async function request<T>(method: string, path: string, body?: BodyInit | null, opts: Options = {}, json = false): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken();
  if (json) headers['Content-Type'] = 'application/json';
  if (opts.background) headers['X-Console-Background'] = '1';
  let res: Response;
  try {
    res = await fetch(url(path, opts.query), { method, headers, body, credentials: 'same-origin' });
  } catch {
    throw new ApiError(0, 'network');
  }
  if (res.status === 204) return undefined as T;
  const data = res.headers.get('content-type')?.includes('json') ? await res.json() : await res.text();
  if (!res.ok) {
    const detail = (data && typeof data === 'object') ? (data as { detail?: unknown }).detail : data;
    if (res.status === 401 && path !== '/console/login') onUnauthorized();
    const fields = fieldErrors(detail);
    const msg = typeof detail === 'string' ? detail : Object.values(fields)[0] || `HTTP ${res.status}`;
    throw new ApiError(res.status, msg, fields);
  }
  return data as T;
}

export const api = {
  get: <T>(path: string, opts?: Options) => request<T>('GET', path, null, opts),
  post: <T>(path: string, body?: unknown, opts?: Options) => request<T>('POST', path, body === undefined ? null : JSON.stringify(body), opts, body !== undefined),
  patch: <T>(path: string, body: unknown, opts?: Options) => request<T>('PATCH', path, JSON.stringify(body), opts, true),
  del: <T>(path: string, opts?: Options) => request<T>('DELETE', path, null, opts),
  // multipart (file uploads) and url-encoded forms (sign-in) are POSTs too
  upload: <T>(path: string, form: FormData, opts?: Options) => request<T>('POST', path, form, opts),
  form: <T>(path: string, form: URLSearchParams, opts?: Options) => request<T>('POST', path, form, opts),
  // server-sent events (a GET; same origin, so the session cookie goes with it); EventSource reconnects by itself
  stream: (path: string, opts?: Options) => new EventSource(url(path, opts?.query)),
};

// --- response shapes (the backend's schemas) -------------------------------------------------
export interface User { id: string; tenant_id: string; email: string; full_name: string | null; role: string; is_active: boolean; created_at: string }
export interface Tenant { id: string; name: string; slug: string; is_active: boolean; created_at: string }
// tenant: the organisation the console acts on (a platform administrator's choice, else the user's own)
export interface ConsoleSession { user: User; is_superuser: boolean; csrf_token: string; idle_timeout_seconds: number; tenant: Tenant }
export interface Avatar {
  id: string; name: string; engine: string; voice: string | null; persona_id: string | null; status: string;
  status_detail: string | null; progress: number; portrait_sha256: string | null; prep_metadata: Record<string, unknown>;
  created_at: string; updated_at: string; width: number; height: number; fps: number;
}
// checked: false when the admin has no models folder (any well-formed name is then accepted; the agent checks it)
export interface Voices { en: string[]; zh: string[]; checked: boolean }
export interface Topic { name: string; keywords: Record<string, string[]>; reply?: Record<string, string>; examples?: Record<string, string[]> }
export interface Rule { reason: string; keywords: Record<string, string[]>; examples?: Record<string, string[]> }
export interface PersonaSettings {
  tone?: string; greeting?: Record<string, string>; allowed_topics?: string[]; forbidden_topics?: Topic[];
  escalation?: Rule[]; [k: string]: unknown;
}
export interface Persona {
  id: string; name: string; language: string; instructions: string; greeting: string | null; disclosure: string | null;
  knowledge_base_id: string | null; settings: PersonaSettings; updated_at: string;
}
export interface KnowledgeBase { id: string; name: string; description: string | null; language: string; index_chunks: number; index_updated_at: string | null }
export interface Doc { id: string; filename: string; status: string; status_detail: string | null; progress: number; chunk_count: number; size_bytes: number; created_at: string }
export interface Chunk { ordinal: number; text: string; meta: Record<string, unknown>; embedded: boolean }
export interface SearchOut { method: string; hits: { text: string; title: string; source: string; score: number; relevant: boolean }[] }
export interface AgentAnswer {
  answer: string; decision: string; language: string; policy: string; model: string; passages: number; note: string | null; seconds: number;
  citations: { chunk_id: string; source: string; title: string; score: number | null; text: string }[];
  tool_calls: { name: string; arguments: Record<string, unknown> }[]; persona: { id: string | null; name: string };
}
export interface Turn {
  id: string; seq: number; speaker: string; text: string; language: string | null; interrupted: boolean;
  citations: unknown[]; tool_calls: ToolCall[]; latency: Record<string, number>; started_at: string | null;
}
/** A tool the agent called about a caller's turn (names and redacted arguments, as the call recorded them). */
export interface ToolCall { name: string; arguments: Record<string, unknown> }
export interface Session {
  id: string; avatar_id: string | null; room: string | null; caller_identity: string | null; started_at: string;
  ended_at: string | null; outcome: string | null; escalated: boolean; escalation_reason: string | null;
  summary: string | null; redaction_findings: number | null; meta: Record<string, unknown>;
}
export interface SessionDetail extends Session { turns: Turn[] }
export interface SessionPage { items: Session[]; total: number; limit: number; offset: number }
export interface Stats { sessions: number; outcomes: Record<string, number>; escalation_rate: number | null; latency: Record<string, { count: number; p50: number; p95: number }> }
export interface Unanswered { key: string; count: number; text: string; last_at: string | null }
export interface Insights {
  days: string[]; calls: number[]; escalated: number[]; outcomes: Record<string, number[]>; escalation_rate: (number | null)[];
  latency: Record<string, { p50: (number | null)[]; p95: (number | null)[] }>; unanswered: Unanswered[]; unanswered_total: number;
}
export interface HandoffTurn { speaker: string; text: string; at: string | null }
export interface Handoff {
  id: string; session_id: string; room: string | null; status: string; reason: string | null; summary: string | null;
  requested_at: string; accepted_at: string | null; accepted_by: string | null; accepted_by_name?: string | null; operator_joined_at: string | null;
  ended_at: string | null; waiting_seconds: number; avatar_id: string | null; caller_identity: string | null; transcript: HandoffTurn[];
}
export interface HandoffAccept { server_url: string; token: string; room: string; identity: string; expires_at: string; handoff: Handoff }
export interface AuditEntry { seq: number; at: string; actor_type: string; actor_id: string | null; action: string; resource: string; resource_id: string | null; client_ip: string | null; hash: string }
export interface ApiKey { id: string; name: string; role: string; prefix: string; created_at: string; last_used_at: string | null; revoked_at: string | null; key?: string }
