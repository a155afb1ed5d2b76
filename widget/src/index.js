// dh-widget: talk to a digital human from any web page (floating button) or a kiosk screen.
//
//   <script src="https://HOST/widget/dh-widget.js" data-avatar="AVATAR_ID" async></script>
//
// Options (data-* attributes of the script tag; the kiosk page also reads its query string,
// except the backend URL):
//   data-url            the deployment (admin backend) base URL; default: where this script came from
//   data-avatar         the avatar id (required)
//   data-mode           "button" (floating button, default) | "kiosk" (full screen, idle screen)
//   data-title          heading shown in the call panel (default: the avatar's name)
//   data-label          launcher text (default "Talk to us")
//   data-idle-timeout   kiosk: end a call after this many seconds without speech or touch (default 60)
//   data-reset-delay    kiosk: back to the idle screen this many seconds after a call (default 6)
//   data-voice-start    kiosk: "true" (default) starts a call when someone speaks near the kiosk
//   data-voice-threshold kiosk: level in dBFS that counts as speech (default -42)
//   data-role           "operator": the page of a colleague taking over a call (admin/static/operator.html,
//                       ?handoff=ID): accepts the handoff with the console's session, joins that room,
//                       plays the caller's voice as well as the assistant's
//                       "test": the console's test call (admin/static/test-call.html, ?avatar=ID): the avatar
//                       is read and the token minted with the console's session (POST /api/v1/console/test-call)
//
// Only standard browser APIs (getUserMedia, WebRTC, fetch, custom elements, shadow DOM).
import {
  ConnectionState,
  DisconnectReason,
  ParticipantKind,
  Room,
  RoomEvent,
  Track,
  createLocalAudioTrack,
} from 'livekit-client';
import css from './widget.css';

const VERSION = '0.1.0';
const ON_BEHALF = 'lk.publish_on_behalf';
const AGENT_STATE = 'lk.agent.state';
const TOPIC = 'lk.transcription';
const STATE_LABELS = {
  initializing: 'Getting ready…',
  idle: 'Listening',
  listening: 'Listening',
  thinking: 'Thinking…',
  speaking: 'Speaking',
};

class UserError extends Error {
  constructor(kind, message, retryable = true) {
    super(message);
    this.kind = kind;
    this.retryable = retryable;
  }
}

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c) node.append(c);
  return node;
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function micErrorMessage(err) {
  const name = err && err.name;
  if (name === 'NotAllowedError' || name === 'SecurityError' || name === 'PermissionDeniedError') {
    return 'Microphone access was refused. Allow the microphone for this site (the icon in the address bar), then press Start again.';
  }
  if (name === 'NotFoundError' || name === 'DevicesNotFoundError' || name === 'OverconstrainedError') {
    return 'No microphone was found. Plug one in or choose another, then press Start again.';
  }
  if (name === 'NotReadableError' || name === 'AbortError') {
    return 'The microphone is busy in another program. Close it there, then press Start again.';
  }
  return 'The microphone could not be started. Check it, then press Start again.';
}

export class DHWidget {
  constructor(config) {
    this.config = config;
    this.kiosk = config.mode === 'kiosk';
    this.operator = config.role === 'operator';
    this.test = config.role === 'test';
    this.room = null;
    this.micTrack = null;
    this.deviceId = undefined;
    this.muted = false;
    this.state = 'idle'; // idle | connecting | in-call | reconnecting | ended | error
    this.agentState = '';
    this.seenStates = new Set(); // agent states seen during the current call
    this.stateLog = []; // [state, ms] for the page and tests
    this.captions = []; // {id, who, text, final, t}
    this.metrics = {};
    this.frames = 0;
    this.ending = false;
    this.callSeq = 0;
    this.avatarInfo = { name: config.title || 'Assistant', portrait: config.defaultPortrait };
    this._timers = new Set();
    this._build();
    this._loadAvatar();
    if (this.kiosk) this._enterIdle();
  }

  // ---------------------------------------------------------------- UI
  _build() {
    const host = el('div', { 'data-dh-widget': VERSION });
    this.host = host;
    const root = host.attachShadow({ mode: 'open' });
    this.root = root;
    // A constructed style sheet is not inline CSS, so pages with a strict CSP accept it.
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(css);
      root.adoptedStyleSheets = [sheet];
    } catch {
      root.append(el('style', { text: css }));
    }
    const wrap = el('div', { class: `dh ${this.kiosk ? 'dh-kiosk' : 'dh-embed'}` });
    root.append(wrap);

    this.launcherImg = el('img', { alt: '', src: this.avatarInfo.portrait });
    this.launcher = el(
      'button',
      { class: 'dh-launcher', type: 'button', part: 'launcher', 'aria-haspopup': 'dialog',
        'aria-label': `${this.config.label} — start a voice and video call`, onclick: () => this.open(true) },
      this.launcherImg,
      el('span', { text: this.config.label }),
    );

    this.titleEl = el('h2', { class: 'dh-title', id: 'dh-title', text: this.avatarInfo.name });
    this.stateEl = el('span', { class: 'dh-state', 'data-state': '', text: '' });
    this.closeBtn = el('button', {
      class: 'dh-icon-btn', type: 'button', 'aria-label': 'End the call and close', text: '×',
      onclick: () => this.close(),
    });
    const header = el('div', { class: 'dh-header' }, this.titleEl, this.stateEl, this.kiosk ? null : this.closeBtn);

    this.video = el('video', {
      class: 'dh-video', autoplay: true, playsinline: true, muted: true,
      'aria-label': 'Video of the assistant', hidden: true,
    });
    this.video.muted = true;
    this.portrait = el('img', { class: 'dh-portrait', alt: 'Portrait of the assistant', src: this.avatarInfo.portrait });
    this.notice = el('div', { class: 'dh-notice', role: 'alert', hidden: true });
    this.captionsEl = el('ol', { class: 'dh-captions', role: 'log', 'aria-live': 'polite', 'aria-label': 'Live captions' });
    this.audioSink = el('div', { hidden: true });
    this.idleEl = this.kiosk ? this._buildIdle() : null;
    const stage = el('div', { class: 'dh-stage' }, this.portrait, this.video, this.notice, this.captionsEl,
      this.audioSink);

    this.startBtn = el('button', { class: 'dh-btn dh-primary', type: 'button', text: 'Start call',
      onclick: () => this.start() });
    this.muteBtn = el('button', { class: 'dh-btn', type: 'button', 'aria-pressed': 'false', text: 'Mute',
      'aria-label': 'Mute microphone', disabled: true, onclick: () => this.toggleMute() });
    this.endBtn = el('button', { class: 'dh-btn dh-danger', type: 'button', text: 'End call', disabled: true,
      onclick: () => this.end('user') });
    this.micSelect = el('select', { 'aria-label': 'Microphone', onchange: (e) => this.selectMic(e.target.value) },
      el('option', { value: '', text: 'Default microphone' }));
    const micLabel = el('label', { class: 'dh-mic' }, el('span', { text: 'Mic' }), this.micSelect);
    const controls = el('div', { class: 'dh-controls' }, this.startBtn, this.muteBtn, this.endBtn, micLabel);

    this.panel = el('div', { class: 'dh-panel', role: 'dialog', 'aria-labelledby': 'dh-title', hidden: !this.kiosk },
      header, stage, controls, this.idleEl);
    this.panel.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && !this.kiosk) { e.stopPropagation(); this.close(); }
    });
    // Escape also works when focus fell back to the page (a button it was on got disabled).
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && !this.kiosk && !this.panel.hidden && (document.activeElement === document.body
        || document.activeElement === this.host)) this.close();
    });
    this.panel.addEventListener('pointerdown', () => this._activity());
    wrap.append(this.kiosk ? null : this.launcher, this.panel);
    (document.body || document.documentElement).append(host);
    this._setState('idle');
  }

  _buildIdle() {
    this.idleImg = el('img', { alt: '', src: this.avatarInfo.portrait });
    this.idleTitle = el('div', { class: 'dh-idle-title', text: this.avatarInfo.name });
    const hint = this.config.voiceStart ? 'Touch the screen or say “hello” to start' : 'Touch the screen to start';
    return el('button', {
      class: 'dh-idle', type: 'button', 'aria-label': `Start a call with ${this.avatarInfo.name}`,
      onclick: () => { this._fullscreen(); this.start(); },
    }, this.idleImg, this.idleTitle, el('div', { class: 'dh-idle-cta', text: 'Touch to talk' }),
    el('div', { class: 'dh-idle-hint', text: hint }));
  }

  async _loadAvatar() {
    const { url, avatar } = this.config;
    if (this.operator) {
      this.avatarInfo.name = this.config.title || 'Caller waiting';
      if (this.titleEl) this.titleEl.textContent = this.avatarInfo.name;
      if (!this.config.handoff) this._notice('error', 'This page is missing the call to take over (?handoff=ID).');
      return;
    }
    if (!avatar) {
      this._notice('error', 'This page is missing the assistant id (data-avatar).');
      return;
    }
    if (this.test) return this._loadTestAvatar();
    try {
      const r = await fetch(`${url}/api/v1/widget/avatars/${encodeURIComponent(avatar)}`);
      if (!r.ok) return;
      const info = await r.json();
      this.avatarInfo.name = this.config.title || info.name || this.avatarInfo.name;
      if (info.portrait_url) this.avatarInfo.portrait = info.portrait_url;
      this.titleEl.textContent = this.avatarInfo.name;
      for (const img of [this.launcherImg, this.portrait, this.idleImg]) if (img) img.src = this.avatarInfo.portrait;
      if (this.idleTitle) this.idleTitle.textContent = this.avatarInfo.name;
    } catch {
      /* the idle screen keeps the default portrait; start() reports the outage */
    }
  }

  async _loadTestAvatar() {
    // the console's test call: the avatar as the signed-in console user may read it (any avatar state)
    const { url, avatar } = this.config;
    let r;
    try {
      r = await fetch(`${url}/api/v1/avatars/${encodeURIComponent(avatar)}`, { credentials: 'same-origin' });
    } catch {
      return; /* start() reports the outage */
    }
    if (r.status === 401) return this._notice('error', 'Sign in to the console first, then open this page again.');
    if (r.status === 404) return this._notice('error', 'There is no such avatar in your organisation.');
    if (!r.ok) return;
    const info = await r.json();
    this.avatarInfo.name = `${this.config.title || 'Test call'}: ${info.name}`;
    this.titleEl.textContent = this.avatarInfo.name;
    if (info.portrait_sha256) {
      this.avatarInfo.portrait = `${url}/api/v1/avatars/${encodeURIComponent(avatar)}/portrait?v=${info.portrait_sha256.slice(0, 12)}`;
      for (const img of [this.launcherImg, this.portrait]) if (img) img.src = this.avatarInfo.portrait;
    }
    if (info.status !== 'ready') this._notice('error', `This avatar is not ready yet (${info.status}); try it once its portrait is prepared.`);
  }

  _notice(kind, text, action) {
    if (!text) {
      this.notice.hidden = true;
      this.notice.replaceChildren();
      return;
    }
    this.notice.dataset.kind = kind;
    this.notice.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    this.notice.replaceChildren(el('div', { text }));
    if (action) this.notice.append(el('button', { class: 'dh-btn dh-primary', type: 'button', text: action.label,
      onclick: action.run }));
    this.notice.hidden = false;
    const actionBtn = this.notice.querySelector('button');
    if (actionBtn && kind === 'error' && !this.panel.hidden) actionBtn.focus();
  }

  _setState(state) {
    this.state = state;
    this.stateLog.push([state, Math.round(performance.now())]);
    if (this.stateLog.length > 100) this.stateLog.shift();
    this.host.dataset.state = state;
    const inCall = state === 'connecting' || state === 'in-call' || state === 'reconnecting';
    this.startBtn.hidden = inCall;
    this.startBtn.disabled = inCall;
    this.endBtn.disabled = !inCall;
    this.muteBtn.disabled = state !== 'in-call';
    if (!inCall) this._setAgentState('');
    if (state === 'connecting') this._setAgentState('initializing', 'Connecting…');
    if (state === 'reconnecting') this._setAgentState('initializing', 'Reconnecting…');
    this.host.dispatchEvent(new CustomEvent('dh-state', { detail: { state } }));
  }

  _setAgentState(s, label) {
    this.agentState = s;
    if (s) this.seenStates.add(s);
    this.stateEl.dataset.state = s;
    this.stateEl.textContent = label || STATE_LABELS[s] || '';
    this.host.dataset.agentState = s;
  }

  _fullscreen() {
    const d = document.documentElement;
    if (this.kiosk && !document.fullscreenElement && d.requestFullscreen) d.requestFullscreen().catch(() => {});
  }

  open(startCall) {
    this.panel.hidden = false;
    this.launcher.hidden = true;
    this.metrics.click = performance.now();
    if (startCall && this.state !== 'in-call' && this.state !== 'connecting') this.start(this.metrics.click, 'click');
    (this.state === 'idle' ? this.startBtn : this.endBtn).focus();
  }

  async close() {
    await this.end('user');
    if (this.kiosk) return;
    this.panel.hidden = true;
    this.launcher.hidden = false;
    this.launcher.focus();
  }

  // ---------------------------------------------------------------- the call
  async start(clickAt, how = 'touch') {
    if (this.state === 'connecting' || this.state === 'in-call' || this.state === 'reconnecting') return;
    const seq = ++this.callSeq;
    this._stopVoiceStart();
    this._clearTimers();
    this.metrics = { click: clickAt ?? performance.now(), how };
    this.frames = 0;
    this.seenStates = new Set();
    this.captions = [];
    this.captionsEl.replaceChildren();
    this.ending = false;
    if (this.idleEl) this.idleEl.hidden = true;
    this._notice('');
    this._setState('connecting');
    try {
      this.micTrack = await this._openMic();
      this.metrics.mic = performance.now();
      this._listDevices();
      const grant = await this._fetchToken();
      this.metrics.token = performance.now();
      this.grant = grant;
      if (seq !== this.callSeq) { await this._dropMic(); return undefined; }
      await this._connect(grant);
      if (seq !== this.callSeq) { await this._teardown(); return undefined; }
      this.metrics.connected = performance.now();
      this._setState('in-call');
      this._activity();
      this._waitForAgent(seq);
      if (this.kiosk) this._watchInactivity(seq);
    } catch (err) {
      if (seq !== this.callSeq) return;
      await this._teardown();
      const msg = err instanceof UserError ? err.message
        : 'The call service is not answering right now. Please try again in a few minutes.';
      this._fail(msg, err && err.retryable !== false);
      console.warn('[dh-widget] call failed:', err);
    }
  }

  async _openMic() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new UserError('mic', 'This browser cannot use a microphone on this page (it needs a secure https page).', false);
    }
    try {
      return await createLocalAudioTrack({
        deviceId: this.deviceId || undefined, echoCancellation: true, noiseSuppression: true, autoGainControl: true,
      });
    } catch (err) {
      throw new UserError('mic', micErrorMessage(err));
    }
  }

  // A POST with the console's browser session (cookie) and its CSRF double-submit header. `failures` maps a
  // status to the caller's own error (a function of the response); any other failure is the service's.
  async _consolePost(path, body, failures) {
    const csrf = (document.cookie.match(/(?:^|;\s*)dh_csrf=([^;]+)/) || [])[1] || '';
    const headers = { 'X-CSRF-Token': decodeURIComponent(csrf) };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let r;
    try {
      r = await fetch(`${this.config.url}${path}`, {
        method: 'POST', credentials: 'same-origin', headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new UserError('service', 'The service cannot be reached. Check the connection, then try again.');
    }
    if (r.status === 401) throw new UserError('auth', 'Sign in to the console first, then open this page again.', false);
    if (failures[r.status]) throw await failures[r.status](r);
    if (!r.ok) throw new UserError('service', 'The service is unavailable right now. Please try again.');
    return r.json();
  }

  _acceptHandoff() {
    return this._consolePost(`/api/v1/handoffs/${encodeURIComponent(this.config.handoff || '')}/accept`, undefined, {
      403: () => new UserError('auth', 'Your role may not take calls over; ask an admin.', false),
      404: () => new UserError('config', 'There is no such call in your organisation.', false),
      409: () => new UserError('taken', 'Someone else has taken this call, or the caller is no longer waiting.', false),
    });
  }

  _testToken() {
    return this._consolePost('/api/v1/console/test-call', { avatar_id: this.config.avatar }, {
      403: () => new UserError('auth', 'Your role may not make test calls; ask an admin or operator.', false),
      404: () => new UserError('config', 'There is no such avatar in your organisation.', false),
      409: async (r) => {
        const detail = await r.json().then((b) => b.detail, () => '');
        return new UserError('config', typeof detail === 'string' && detail ? detail : 'This avatar is not ready yet.', false);
      },
      429: (r) => {
        const wait = parseInt(r.headers.get('Retry-After') || '60', 10);
        return new UserError('busy', `Too many calls. Please try again in ${wait} seconds.`);
      },
    });
  }

  async _fetchToken() {
    if (this.operator) return this._acceptHandoff();
    if (this.test) return this._testToken();
    let r;
    try {
      r = await fetch(`${this.config.url}/api/v1/widget/token`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ avatar_id: this.config.avatar }),
      });
    } catch {
      throw new UserError('service', 'The service cannot be reached. Check the internet connection, then try again.');
    }
    if (r.status === 429) {
      const wait = parseInt(r.headers.get('Retry-After') || '60', 10);
      throw new UserError('busy', `Too many calls from this connection. Please try again in ${wait} seconds.`);
    }
    if (r.status === 404) throw new UserError('config', 'This assistant is not available on this site.', false);
    if (!r.ok) throw new UserError('service', 'The service is unavailable right now. Please try again in a few minutes.');
    return r.json();
  }

  _newRoom() {
    const room = new Room({ adaptiveStream: false, dynacast: false, disconnectOnPageLeave: true });
    room
      .on(RoomEvent.TrackSubscribed, (track, pub, p) => this._onTrack(track, p))
      .on(RoomEvent.TrackUnsubscribed, (track) => {
        for (const e of track.detach()) if (e !== this.video) e.remove();
      })
      .on(RoomEvent.ParticipantConnected, (p) => this._onParticipant(p))
      .on(RoomEvent.ParticipantAttributesChanged, (_c, p) => this._onParticipant(p))
      .on(RoomEvent.ParticipantDisconnected, (p) => this._onParticipantLeft(p))
      .on(RoomEvent.Reconnecting, () => this._onReconnecting())
      .on(RoomEvent.SignalReconnecting, () => this._onReconnecting())
      .on(RoomEvent.Reconnected, () => this._onReconnected())
      .on(RoomEvent.Disconnected, (reason) => this._onDisconnected(room, reason))
      .on(RoomEvent.AudioPlaybackStatusChanged, () => this._checkAudioPlayback())
      .on(RoomEvent.MediaDevicesChanged, () => this._listDevices());
    room.registerTextStreamHandler(TOPIC, (reader, info) => this._onTranscription(reader, info));
    return room;
  }

  async _connect(grant) {
    const room = this._newRoom();
    this.room = room;
    try {
      await room.connect(grant.server_url, grant.token, { autoSubscribe: true });
    } catch (err) {
      throw new UserError('service', 'The call service is not answering right now. Please try again in a few minutes.');
    }
    await room.localParticipant.publishTrack(this.micTrack, { source: Track.Source.Microphone, dtx: false });
    if (this.muted) await this.micTrack.mute();
    room.startAudio().catch(() => {});
    this._checkAudioPlayback();
    for (const p of room.remoteParticipants.values()) this._onParticipant(p);
  }

  _checkAudioPlayback() {
    if (!this.room || this.room.canPlaybackAudio) {
      if (this.notice.dataset.kind === 'audio') this._notice('');
      return;
    }
    this._notice('audio', 'Your browser paused the sound.', {
      label: 'Play sound', run: () => this.room && this.room.startAudio().then(() => this._notice('')),
    });
  }

  _isAvatar(p) { return !!(p && p.attributes && p.attributes[ON_BEHALF]); }
  _isAgent(p) { return !!p && !this._isAvatar(p) && (p.kind === ParticipantKind.AGENT || AGENT_STATE in (p.attributes || {})); }

  _onParticipant(p) {
    if (this._isAgent(p)) {
      this.agentIdentity = p.identity;
      this.metrics.agent = this.metrics.agent || performance.now();
      const s = p.attributes[AGENT_STATE];
      if (s && this.state === 'in-call') {
        if (s !== this.agentState && (s === 'speaking' || s === 'thinking')) this._activity();
        this._setAgentState(s);
      }
    }
  }

  _onParticipantLeft(p) {
    if (p.identity !== this.agentIdentity || this.ending) return;
    // A full reconnect drops every remote participant and adds them back: wait a moment.
    const room = this.room;
    const seq = this.callSeq;
    this._timer(() => {
      if (seq !== this.callSeq || this.ending || room !== this.room) return;
      if (room.state !== ConnectionState.Connected) return;
      if ([...room.remoteParticipants.values()].some((x) => this._isAgent(x))) return;
      this.end('agent-left');
    }, 5000);
  }

  _onTrack(track, p) {
    const fromAssistant = this._isAvatar(p) || this._isAgent(p);
    if (!fromAssistant) {
      if (this.operator && track.kind === Track.Kind.Audio) {
        // a colleague hears the caller too
        const audio = track.attach();
        audio.dataset.from = 'caller';
        this.audioSink.append(audio);
      }
      return;
    }
    if (track.kind === Track.Kind.Video) {
      // the avatar's face (published by the avatar worker on the agent's behalf)
      track.attach(this.video);
      this.video.hidden = false;
      this.metrics.videoTrack = performance.now();
      this._countFrames();
    } else if (track.kind === Track.Kind.Audio) {
      // prefer the avatar's lip-synced audio; the agent's own only when no avatar is there
      const audio = track.attach();
      audio.dataset.from = this._isAvatar(p) ? 'avatar' : 'agent';
      this.audioSink.append(audio);
    }
  }

  _countFrames() {
    const v = this.video;
    const first = () => {
      if (!this.metrics.firstFrame) {
        this.metrics.firstFrame = performance.now();
        this.metrics.clickToFirstFrameMs = Math.round(this.metrics.firstFrame - this.metrics.click);
        this.portrait.hidden = true;
        this.host.dispatchEvent(new CustomEvent('dh-first-frame', { detail: { ms: this.metrics.clickToFirstFrameMs } }));
      }
    };
    if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) {
      if (this._rvfc) return;
      this._rvfc = true;
      const onFrame = () => {
        this.frames += 1;
        first();
        if (this.state !== 'idle' && this.state !== 'ended' && this.state !== 'error') v.requestVideoFrameCallback(onFrame);
        else this._rvfc = false;
      };
      v.requestVideoFrameCallback(onFrame);
    } else {
      // Firefox before 132: 'playing' marks the first frame; timeupdate approximates the rest
      v.addEventListener('playing', first, { once: true });
      v.addEventListener('timeupdate', () => { this.frames += 1; });
    }
  }

  _onTranscription(reader, info) {
    const attrs = reader.info.attributes || {};
    const id = attrs['lk.segment_id'] || reader.info.id;
    const localId = this.room && this.room.localParticipant.identity;
    const localTracks = this.room ? [...this.room.localParticipant.trackPublications.keys()] : [];
    const who = info.identity === localId || localTracks.includes(attrs['lk.transcribed_track_id']) ? 'you' : 'agent';
    const final = attrs['lk.transcription_final'] === 'true';
    let text = '';
    const decode = (chunk) => {
      // the agent may wrap each piece as a JSON TimedString line; plain text otherwise
      const trimmed = chunk.trim();
      if (trimmed.startsWith('{')) {
        try {
          return trimmed.split('\n').map((l) => JSON.parse(l).text || '').join('');
        } catch { /* plain text that starts with a brace */ }
      }
      return chunk;
    };
    (async () => {
      try {
        for await (const chunk of reader) {
          text += decode(chunk);
          this._caption(id, who, text, false);
        }
        const endAttrs = reader.info.attributes || {};
        this._caption(id, who, text, final || endAttrs['lk.transcription_final'] === 'true' || who === 'agent');
      } catch (err) {
        console.warn('[dh-widget] transcription stream failed', err);
      }
    })();
  }

  _caption(id, who, text, final) {
    text = text.trim();
    if (!text) return;
    if (who === 'you') this._activity();
    let c = this.captions.find((x) => x.id === id && x.who === who);
    if (!c) {
      c = { id, who, text, final, t: performance.now() };
      this.captions.push(c);
      c.li = el('li', { 'data-who': who });
      this.captionsEl.append(c.li);
      while (this.captionsEl.children.length > 12) this.captionsEl.firstElementChild.remove();
    }
    c.text = text;
    c.final = final;
    c.li.dataset.final = String(final);
    c.li.replaceChildren(el('b', { text: who === 'you' ? 'You:' : `${this.avatarInfo.name}:` }), text);
    this.captionsEl.scrollTop = this.captionsEl.scrollHeight;
  }

  _waitForAgent(seq) {
    this._timer(() => {
      if (seq !== this.callSeq || this.state !== 'in-call') return;
      if (!this.agentIdentity) {
        this.callSeq += 1;
        this._teardown().then(() => this._fail(
          'The assistant is not answering right now. Please try again in a few minutes.', true));
      }
    }, this.config.agentTimeout * 1000);
  }

  // ---------------------------------------------------------------- network drops
  _onReconnecting() {
    if (this.ending || !this.room) return;
    this._setState('reconnecting');
    this._notice('info', 'The connection dropped. Reconnecting…');
  }

  _onReconnected() {
    if (this.ending) return;
    this._setState('in-call');
    this._notice('');
    const agent = this.agentIdentity && this.room && this.room.remoteParticipants.get(this.agentIdentity);
    if (agent) this._onParticipant(agent);
  }

  async _onDisconnected(room, reason) {
    if (room !== this.room || this.ending) return;
    // LiveKit's own resume and reconnect have given up: join the same room again with the
    // same token while it is valid (the agent waits for us), else start a new call.
    const gone = reason === DisconnectReason.ROOM_DELETED || reason === DisconnectReason.PARTICIPANT_REMOVED
      || reason === DisconnectReason.ROOM_CLOSED || reason === DisconnectReason.DUPLICATE_IDENTITY;
    if (gone) {
      await this._teardown();
      this._ended('The call has ended.');
      return;
    }
    this._setState('reconnecting');
    const seq = this.callSeq;
    for (let attempt = 1; attempt <= 6 && seq === this.callSeq && !this.ending; attempt += 1) {
      this._notice('info', `The connection dropped. Reconnecting (attempt ${attempt})…`);
      await Promise.race([sleep(Math.min(8000, 1000 * 2 ** (attempt - 1))), this._online()]);
      if (seq !== this.callSeq || this.ending) return;
      try {
        const expired = !this.grant || Date.parse(this.grant.expires_at) - Date.now() < 20000;
        if (expired) break;
        const old = this.room;
        old.removeAllListeners();
        this.agentIdentity = undefined;
        if (this.micTrack) await old.localParticipant.unpublishTrack(this.micTrack, false).catch(() => {});
        await this._connect(this.grant);
        this._setState('in-call');
        this._notice('');
        this._waitForAgent(seq);
        this.metrics.reconnects = (this.metrics.reconnects || 0) + 1;
        this.metrics.framesAtRejoin = this.frames;
        return;
      } catch (err) {
        console.warn('[dh-widget] rejoin failed', err);
      }
    }
    if (seq !== this.callSeq || this.ending) return;
    await this._teardown();
    this._fail('The connection was lost.', true, 'Call again');
  }

  _online() {
    return new Promise((resolve) => window.addEventListener('online', resolve, { once: true }));
  }

  // ---------------------------------------------------------------- controls
  async toggleMute() {
    if (!this.micTrack) return;
    this.muted = !this.muted;
    if (this.muted) await this.micTrack.mute();
    else await this.micTrack.unmute();
    this.muteBtn.setAttribute('aria-pressed', String(this.muted));
    this.muteBtn.textContent = this.muted ? 'Unmute' : 'Mute';
    this.muteBtn.setAttribute('aria-label', this.muted ? 'Unmute microphone' : 'Mute microphone');
  }

  async selectMic(deviceId) {
    this.deviceId = deviceId || undefined;
    if (this.micTrack) {
      try {
        await this.micTrack.restartTrack({ deviceId: this.deviceId, echoCancellation: true, noiseSuppression: true });
      } catch (err) {
        this._notice('error', micErrorMessage(err));
      }
    }
  }

  async _listDevices() {
    try {
      const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'audioinput');
      const current = this.deviceId || '';
      this.micSelect.replaceChildren(el('option', { value: '', text: 'Default microphone' }),
        ...devices.filter((d) => d.deviceId && d.deviceId !== 'default').map((d, i) => el('option', {
          value: d.deviceId, text: d.label || `Microphone ${i + 1}`, selected: d.deviceId === current,
        })));
    } catch { /* no device list: the default microphone is used */ }
  }

  async end(reason = 'user') {
    if (this.state === 'idle' || this.state === 'ended' || this.state === 'error') {
      if (reason === 'user' && this.kiosk) this._enterIdle();
      return;
    }
    this.ending = true;
    this.callSeq += 1;
    this.metrics.endReason = reason;
    await this._teardown();
    const messages = {
      inactive: 'The call ended after a quiet while.',
      'agent-left': 'The assistant has ended the call. Thank you!',
    };
    this._ended(messages[reason] || 'The call has ended. Thank you!');
  }

  _ended(message) {
    this._setState('ended');
    this._notice('info', message);
    if (this.kiosk) this._timer(() => this._enterIdle(), this.config.resetDelay * 1000);
  }

  _fail(message, retryable, label = 'Try again') {
    this._setState('error');
    this._notice('error', message, retryable ? { label, run: () => this.start() } : null);
    if (this.kiosk) this._timer(() => this._enterIdle(), Math.max(10, this.config.resetDelay * 2) * 1000);
  }

  async _dropMic() {
    if (this.micTrack) {
      this.micTrack.stop();
      this.micTrack = null;
    }
  }

  async _teardown() {
    this._clearTimers();
    const room = this.room;
    this.room = null;
    this.agentIdentity = undefined;
    if (room) {
      room.removeAllListeners();
      try {
        await room.disconnect(true);
      } catch { /* already gone */ }
    }
    await this._dropMic();
    this.audioSink.replaceChildren();
    this.video.srcObject = null;
    this.video.hidden = true;
    this.portrait.hidden = false;
    this._rvfc = false;
  }

  // ---------------------------------------------------------------- kiosk
  _timer(fn, ms) {
    const id = setTimeout(() => { this._timers.delete(id); fn(); }, ms);
    this._timers.add(id);
    return id;
  }

  _clearTimers() {
    for (const id of this._timers) clearTimeout(id);
    this._timers.clear();
    if (this._inactivity) clearInterval(this._inactivity);
    this._inactivity = null;
  }

  _activity() { this.lastActivity = performance.now(); }

  _watchInactivity(seq) {
    this._inactivity = setInterval(() => {
      if (seq !== this.callSeq || this.state === 'ended' || this.state === 'error' || this.state === 'idle') return;
      if (this.agentState === 'speaking' || this.agentState === 'thinking') this._activity();
      if (performance.now() - this.lastActivity > this.config.idleTimeout * 1000) this.end('inactive');
    }, 1000);
  }

  _enterIdle() {
    this._clearTimers();
    this._notice('');
    this.captions = [];
    this.captionsEl.replaceChildren();
    this._setState('idle');
    if (this.idleEl) this.idleEl.hidden = false;
    if (this.kiosk && this.config.voiceStart) this._startVoiceStart();
  }

  async _startVoiceStart() {
    // Listen for someone speaking near the kiosk; start the call when the level stays up.
    this._stopVoiceStart();
    const token = {};
    this._voice = token;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } });
      if (this._voice !== token) { stream.getTracks().forEach((t) => t.stop()); return; }
      const Ctx = window.AudioContext || window.webkitAudioContext;
      const ctx = new Ctx();
      const analyser = ctx.createAnalyser();
      analyser.fftSize = 1024;
      ctx.createMediaStreamSource(stream).connect(analyser);
      const buf = new Float32Array(analyser.fftSize);
      let loudSince = 0;
      token.stop = () => { stream.getTracks().forEach((t) => t.stop()); ctx.close().catch(() => {}); clearInterval(token.iv); };
      token.iv = setInterval(() => {
        if (ctx.state === 'suspended') ctx.resume().catch(() => {});
        analyser.getFloatTimeDomainData(buf);
        let sum = 0;
        for (let i = 0; i < buf.length; i += 1) sum += buf[i] * buf[i];
        const db = 10 * Math.log10(sum / buf.length + 1e-12);
        const now = performance.now();
        if (db > this.config.voiceThreshold) {
          loudSince = loudSince || now;
          if (now - loudSince > 250 && this.state === 'idle') {
            this.start(undefined, 'voice');
          }
        } else loudSince = 0;
      }, 50);
    } catch {
      /* no microphone permission while idle: touch still starts a call */
    }
  }

  _stopVoiceStart() {
    if (this._voice && this._voice.stop) this._voice.stop();
    this._voice = null;
  }
}

function readConfig(script) {
  const ds = (script && script.dataset) || {};
  const params = new URLSearchParams(window.location.search);
  const mode = ds.mode || (params.get('mode') === 'kiosk' ? 'kiosk' : 'button');
  const fromScript = script && script.src ? new URL(script.src, window.location.href) : new URL(window.location.href);
  const q = (k) => (mode === 'kiosk' ? params.get(k) : null);
  const num = (v, d) => (v != null && v !== '' && !Number.isNaN(Number(v)) ? Number(v) : d);
  // The backend is the page's data-url or where this script came from, never the query string:
  // a link to kiosk.html?url=https://evil must not send the kiosk's calls elsewhere.
  const url = (ds.url || fromScript.origin).replace(/\/+$/, '');
  const widgetBase = new URL('.', fromScript).href;
  const role = ds.role === 'operator' || ds.role === 'test' ? ds.role : 'caller';
  return {
    mode,
    role,
    handoff: role === 'operator' ? params.get('handoff') : null,
    url,
    avatar: (role === 'test' ? params.get('avatar') : q('avatar')) || ds.avatar || '',
    title: q('title') || ds.title || '',
    label: ds.label || 'Talk to us',
    idleTimeout: num(q('idle') ?? ds.idleTimeout, 60),
    resetDelay: num(q('reset') ?? ds.resetDelay, 6),
    agentTimeout: num(ds.agentTimeout, 25),
    voiceStart: (q('voice') ?? ds.voiceStart ?? 'true') !== 'false',
    voiceThreshold: num(q('threshold') ?? ds.voiceThreshold, -42),
    defaultPortrait: `${widgetBase}portrait.jpg`,
  };
}

const currentScript = document.currentScript
  || document.querySelector('script[src*="dh-widget"][data-avatar], script[src*="dh-widget"]');
const config = readConfig(currentScript);
const boot = () => {
  const widget = new DHWidget(config);
  window.dhWidget = widget; // for the page and for tests
  window.dispatchEvent(new CustomEvent('dh-widget-ready', { detail: widget }));
};
if (document.body) boot();
else document.addEventListener('DOMContentLoaded', boot, { once: true });
