// demo only: copy ?avatar= into the one tag a real site would write by hand (a file, not an
// inline script, so the page runs under the admin's Content-Security-Policy: script-src 'self')
const s = document.createElement('script');
s.src = 'dh-widget.js';
s.async = true;
s.dataset.avatar = new URLSearchParams(location.search).get('avatar') || '';
s.dataset.label = 'Talk to our assistant';
document.body.append(s);
