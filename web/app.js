// The page: routes (#/...), the navigation with its live badges, the
// stream, and what the views share (the signed-in user, a user cache, the
// set of followed users).

import {api, logout, me, query, session} from './api.js';
import {fill, h, report} from './dom.js';
import {Stream} from './stream.js';
import * as auth from './auth.js';
import * as chats from './chats.js';
import * as conversation from './conversation.js';
import * as feed from './feed.js';
import * as notifications from './notifications.js';
import * as post from './post.js';
import * as profile from './profile.js';
import * as settings from './settings.js';

const ROUTES = [
    [/^\/?$/, feed.render],
    [/^\/login$/, auth.login],
    [/^\/signup$/, auth.signup],
    [/^\/u\/([A-Za-z0-9_]+)$/, profile.render],
    [/^\/u\/([A-Za-z0-9_]+)\/(followers|following)$/, profile.connections],
    [/^\/p\/(\d+)$/, post.render],
    [/^\/notifications$/, notifications.render],
    [/^\/chats$/, chats.render],
    [/^\/c\/(\d+)$/, conversation.render],
    [/^\/settings$/, settings.render],
];

const PUBLIC = new Set([auth.login, auth.signup]);

// ------------------------------------------------------------ the app

const app = {
    stream: null,
    unread: 0,              // unread notifications (badge)
    chatUnread: 0,          // unread messages (badge)
    users: new Map(),       // id -> Promise of the public view
    followingIds: null,     // Promise of a Set of the ids I follow
    cleanups: [],

    me,

    // listen(target, type, f) until the view changes
    listen(target, type, f) {
        target.addEventListener(type, f);
        this.cleanups.push(() => target.removeEventListener(type, f));
    },

    every(ms, f) {
        const t = setInterval(f, ms);
        this.cleanups.push(() => clearInterval(t));
    },

    user(id) {
        if (!this.users.has(id)) {
            const p = api('GET', '/v1/users/' + id);
            p.catch(() => this.users.delete(id));
            this.users.set(id, p);
        }
        return this.users.get(id);
    },

    // the ids of the users I follow: paged once, then kept by follow()
    following() {
        this.followingIds ??= (async () => {
            const ids = new Set();
            let cursor = null;
            do {
                const page = await api('GET', '/v1/users/' + me().id +
                    '/following' + query({limit: 100, max_id: cursor}));
                page.items.forEach((u) => ids.add(u.id));
                cursor = page.next_cursor;
            } while (cursor);
            return ids;
        })();
        this.followingIds.catch(() => {
            this.followingIds = null;
        });
        return this.followingIds;
    },

    async follow(id, on) {
        const r = await api(on ? 'POST' : 'DELETE',
                            '/v1/users/' + id + '/follow');
        const ids = await this.following();
        if (r.following) {
            ids.add(id);
        } else {
            ids.delete(id);
        }
        return r;
    },

    setUnread(n) {
        this.unread = Math.max(0, n);
        badge('notif-badge', this.unread);
    },

    async countUnread() {
        const page = await api('GET', '/v1/notifications?limit=100');
        page.items.forEach((n) => this.seen.add(n.id));
        this.setUnread(page.items.filter((n) => !n.read).length);
    },

    async countChatUnread() {
        const page = await api('GET', '/v1/conversations?limit=100');
        this.chatUnread = page.items.reduce((n, c) => n + c.unread_count, 0);
        badge('chat-badge', this.chatUnread);
        return page;
    },
};

function badge(id, n) {
    const el = document.getElementById(id);
    el.hidden = n === 0;
    fill(el, h('span', {class: 'visually-hidden'}, ', unread: '),
         n > 99 ? '99+' : String(n));
    el.dataset.count = String(n);
}

// --------------------------------------------------------- the stream

let chatCount = null;

function chatChanged() {
    // a burst of messages is counted once
    clearTimeout(chatCount);
    chatCount = setTimeout(() => app.countChatUnread().catch(report), 300);
}

function startStream() {
    const stream = new Stream();
    const status = document.getElementById('stream-status');

    app.stream = stream;
    app.seen = new Set();

    stream.addEventListener('state', (ev) => {
        const labels = {open: 'live', connecting: 'connecting…',
                        reconnecting: 'reconnecting…', closed: 'offline'};
        status.dataset.state = ev.detail;
        status.dataset.transport = stream.transport;
        status.dataset.failures = String(stream.failures);
        status.textContent = labels[ev.detail];
        status.title = ev.detail === 'open'
            ? 'Live updates (' + stream.transport + ')' : '';
    });

    stream.addEventListener('event', (ev) => {
        const {event, data} = ev.detail;

        if (event === 'notification.created' && !app.seen.has(data.id)) {
            app.seen.add(data.id);
            if (!data.read) {
                app.setUnread(app.unread + 1);
            }
        }
        if (event === 'message.created' || event === 'conversation.read') {
            chatChanged();
        }
    });

    stream.addEventListener('reset', () => {
        app.countUnread().catch(report);
        chatChanged();
    });

    stream.start();
    app.countUnread().catch(report);
    chatChanged();
}

// ------------------------------------------------------------ routing

async function route() {
    const path = location.hash.replace(/^#/, '') || '/';
    const main = document.getElementById('main');
    let view = null, params = [];

    for (const f of app.cleanups.splice(0)) {
        f();
    }

    if (path === '/me' && me()) {
        location.replace('#/u/' + me().username);
        return;
    }
    for (const [re, f] of ROUTES) {
        const m = path.match(re);
        if (m) {
            view = f;
            params = m.slice(1);
            break;
        }
    }
    if (!me() && !PUBLIC.has(view)) {
        location.replace('#/login');
        return;
    }
    if (me() && PUBLIC.has(view)) {
        location.replace('#/');
        return;
    }

    nav();
    const root = h('section', {class: 'view'});
    fill(main, root);
    if (!view) {
        fill(root, h('h1', null, 'Not found'),
             h('p', null, h('a', {href: '#/'}, 'Home')));
        return;
    }
    try {
        await view(root, params, app);
    } catch (err) {
        if (me()) {             // else the end of the session was said
            report(err);
        }
    }
}

function nav() {
    const user = me();
    document.getElementById('nav').hidden = !user;
    if (user) {
        document.getElementById('nav-profile').href = '#/u/' + user.username;
        if (!app.stream) {
            startStream();
        }
    }
    for (const a of document.querySelectorAll('#nav a')) {
        const here = location.hash === a.getAttribute('href') ||
                     (a.getAttribute('href') === '#/' && !location.hash);
        if (here) {
            a.setAttribute('aria-current', 'page');
        } else {
            a.removeAttribute('aria-current');
        }
    }
}

// the session ended (logged out, refresh refused, another tab)
session.onEnd((reason) => {
    if (app.stream) {
        app.stream.stop();
        app.stream = null;
    }
    app.users.clear();
    app.followingIds = null;
    app.setUnread(0);
    badge('chat-badge', 0);
    report({message: reason});
    if (location.hash === '#/login') {
        route();
    } else {
        location.hash = '#/login';
    }
});

document.getElementById('logout').addEventListener('click', () => {
    logout().catch(report);
});

window.addEventListener('hashchange', () => {
    route();
    document.getElementById('main').focus({preventScroll: true});
});

window.addEventListener('unhandledrejection', (ev) => report(ev.reason));

route();
