// One conversation: its messages (older pages on request), live messages
// and typing indicators from the stream, the read marker (moved when a
// message is shown), "Seen by" from the others' markers, and the members
// of a group.

import {api, newKey, query} from './api.js';
import {field, fill, form, h, pager, report, time, userLink} from './dom.js';
import {resolve, title} from './chats.js';

const TYPING_SEND = 1000;   // send a typing signal at most this often
const TYPING_SHOW = 5000;   // show "is typing" this long after a signal

export async function render(root, [id], app) {
    let conv = await api('GET', '/v1/conversations/' + id);
    const me = app.me().id;
    const ol = h('ol', {class: 'messages', 'aria-live': 'polite',
                        'aria-label': 'Messages'});
    const typing = h('p', {class: 'typing', 'aria-live': 'polite'});
    const seen = h('p', {class: 'seen'});
    const members = h('div', {class: 'members'});
    const heading = h('h1');
    const ids = new Set();
    const typists = new Map();      // user id -> timer
    const markers = new Map();      // user id -> message id they read
    let newest = null, marked = null, key = newKey(), lastTyping = 0;

    function name(userId) {
        const m = conv.members.find((x) => x.id === userId);
        return m ? m.display_name : 'someone';
    }

    function message(m) {
        ids.add(m.id);
        if (newest === null || BigInt(m.id) > BigInt(newest)) {
            newest = m.id;
        }
        return h('li', {class: m.sender_id === me ? 'mine' : 'theirs',
                        dataset: {id: m.id}},
                 h('strong', {class: 'sender'}, name(m.sender_id)), ' ',
                 time(m.created_at),
                 h('p', {class: 'text'}, m.text));
    }

    async function page(cursor) {
        const r = await api('GET', '/v1/conversations/' + id + '/messages' +
                            query({max_id: cursor}));
        // newest first: shown oldest at the top
        for (const m of r.items) {
            if (!ids.has(m.id)) {
                ol.prepend(message(m));
            }
        }
        return r.next_cursor;
    }

    const older = pager(page);
    older.button.textContent = 'Load older messages';

    // the read marker follows what is shown while the page is visible
    async function markRead() {
        if (newest === null || newest === marked ||
            document.visibilityState !== 'visible') {
            return;
        }
        marked = newest;
        await api('POST', '/v1/conversations/' + id + '/read',
                  {message_id: newest});
        // reading also marks the conversation's notification read
        await app.countUnread();
    }

    function showSeen() {
        const names = [...markers]
            .filter(([u, m]) => u !== me && newest !== null &&
                                BigInt(m) >= BigInt(newest))
            .map(([u]) => name(u));
        fill(seen, names.length ? 'Seen by ' + names.join(', ') : '');
    }

    function showTyping() {
        const names = [...typists.keys()].map(name);
        fill(typing, names.length === 0 ? ''
             : names.join(', ') + (names.length === 1 ? ' is' : ' are') +
               ' typing…');
    }

    function stopTyping(userId) {
        clearTimeout(typists.get(userId));
        typists.delete(userId);
        showTyping();
    }

    function showMembers() {
        const admin = conv.members.some((m) => m.id === me &&
                                                m.role === 'admin');
        fill(heading, title(conv, app));
        if (conv.kind !== 'group') {
            fill(members, h('p', null, 'Direct conversation with ',
                            conv.members.filter((m) => m.id !== me)
                                .map((m) => userLink(m))));
            return;
        }
        fill(members,
             h('h2', null, 'Members'),
             h('ul', {class: 'people'}, conv.members.map((m) =>
                 h('li', null, userLink(m),
                   m.role === 'admin' && h('span', {class: 'tag'}, 'admin'),
                   admin && m.id !== me &&
                       h('button', {type: 'button', class: 'small',
                                    onclick: () => remove(m.id)},
                         'Remove ' + m.username)))),
             admin && form({'aria-label': 'Add members'}, [
                 field('Add members (usernames)', {name: 'add',
                                                   required: true}),
                 h('button', {type: 'submit'}, 'Add'),
             ], async (f) => {
                 conv = await api('POST', '/v1/conversations/' + id +
                                  '/members',
                                  {user_ids: await resolve(f.elements.add.value,
                                                           'add')});
                 showMembers();
             }),
             h('button', {type: 'button', class: 'leave',
                          onclick: () => remove(me)}, 'Leave the group'));
    }

    async function remove(userId) {
        try {
            await api('DELETE', '/v1/conversations/' + id + '/members/' +
                      userId);
            if (userId === me) {
                location.hash = '#/chats';
                return;
            }
            conv = await api('GET', '/v1/conversations/' + id);
            showMembers();
        } catch (err) {
            report(err);
        }
    }

    const composer = form({class: 'composer', 'aria-label': 'New message'}, [
        h('label', {for: 'message-text'}, 'Message'),
        h('textarea', {id: 'message-text', name: 'text', rows: 2,
                       required: true, maxlength: 40000,
                       placeholder: 'Message (Enter sends, Shift+Enter ' +
                                    'a new line)'}),
        h('div', {class: 'row'}, h('button', {type: 'submit'}, 'Send')),
    ], async (f) => {
        const m = await api('POST', '/v1/conversations/' + id + '/messages',
                            {text: f.elements.text.value},
                            {'Idempotency-Key': key});
        key = newKey();
        f.reset();
        if (!ids.has(m.id)) {
            ol.append(message(m));
        }
        showSeen();
        await markRead();
    });

    const text = composer.elements.text;
    text.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
            ev.preventDefault();
            composer.requestSubmit();
        }
    });
    text.addEventListener('input', () => {
        if (text.value && Date.now() - lastTyping > TYPING_SEND &&
            app.stream.typing(id)) {
            lastTyping = Date.now();
        }
    });

    showMembers();
    fill(root, h('p', {class: 'back'}, h('a', {href: '#/chats'}, '← Chats')),
         heading, older.button, ol, typing, seen, composer, members);

    async function reload() {
        ol.replaceChildren();
        ids.clear();
        older.set(await page(null));
        showSeen();
        await markRead();
    }

    app.listen(app.stream, 'event', (ev) => {
        const {event, data} = ev.detail;

        if (data.conversation_id !== id) {
            return;
        }
        if (event === 'message.created' && !ids.has(data.id)) {
            ol.append(message(data));
            stopTyping(data.sender_id);
            showSeen();
            markRead().catch(report);
            if (!conv.members.some((m) => m.id === data.sender_id)) {
                // a member who joined since: names come with the members
                api('GET', '/v1/conversations/' + id)
                    .then((c) => {
                        conv = c;
                        showMembers();
                    }, report);
            }
        } else if (event === 'typing' && data.user_id !== me) {
            clearTimeout(typists.get(data.user_id));
            typists.set(data.user_id, setTimeout(() => stopTyping(data.user_id),
                                                 TYPING_SHOW));
            showTyping();
        } else if (event === 'conversation.read') {
            markers.set(data.user_id, data.message_id);
            showSeen();
        }
    });
    app.listen(app.stream, 'reset', () => reload().catch(report));
    app.listen(document, 'visibilitychange', () => markRead().catch(report));
    app.cleanups.push(() => typists.forEach(clearTimeout));

    await reload();
    text.focus();
}
