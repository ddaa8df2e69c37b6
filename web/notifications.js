// Notifications, newest first; opening the list marks them read, and new
// ones arrive over the stream while it is open.

import {api, query} from './api.js';
import {fill, h, pager, report, time, userLink} from './dom.js';

const WHAT = {
    follow: 'followed you',
    like: 'liked your post',
    share: 'shared your post',
    reply: 'replied to your post',
    mention: 'mentioned you',
    message: 'sent you a message',
};

function item(n) {
    const target = n.conversation_id ? '#/c/' + n.conversation_id
                 : n.post_id ? '#/p/' + n.post_id
                 : '#/u/' + n.actor.username;

    return h('li', {class: n.read ? 'read' : 'unread',
                    dataset: {id: n.id, type: n.type}},
             userLink(n.actor), ' ',
             h('a', {href: target}, WHAT[n.type] || n.type), ' · ',
             time(n.created_at));
}

export async function render(root, _params, app) {
    const ul = h('ul', {class: 'notifications', 'aria-live': 'polite'});
    const note = h('p', {class: 'empty', hidden: true}, 'Nothing yet.');
    const ids = new Set();
    let newest = null;

    function add(n, top) {
        if (ids.has(n.id)) {
            return;
        }
        ids.add(n.id);
        if (top) {
            ul.prepend(item(n));
        } else {
            ul.append(item(n));
        }
        if (newest === null || BigInt(n.id) > BigInt(newest)) {
            newest = n.id;
        }
        note.hidden = true;
    }

    // everything up to the newest shown is read; the badge follows
    async function markRead() {
        if (newest !== null) {
            await api('POST', '/v1/notifications/read', {up_to_id: newest});
        }
        await app.countUnread();
    }

    async function page(cursor) {
        const r = await api('GET', '/v1/notifications' +
                            query({max_id: cursor}));
        r.items.forEach((n) => add(n, false));
        note.hidden = ids.size > 0;
        return r.next_cursor;
    }

    const more = pager(page);

    async function reload() {
        ul.replaceChildren();
        ids.clear();
        more.set(await page(null));
        await markRead();
    }

    fill(root, h('h1', null, 'Notifications'), ul, note, more.button);

    app.listen(app.stream, 'event', (ev) => {
        if (ev.detail.event === 'notification.created') {
            add(ev.detail.data, true);
            markRead().catch(report);
        }
    });
    app.listen(app.stream, 'reset', () => reload().catch(report));
    await reload();
}
