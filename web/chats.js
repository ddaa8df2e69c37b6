// Conversations: the list by last activity with unread counts, and
// starting one (one username: the direct conversation; several, or a
// title: a group).

import {api, query} from './api.js';
import {field, fill, form, h, pager, report, time} from './dom.js';

export function title(c, app) {
    if (c.title) {
        return c.title;
    }
    const others = c.members.filter((m) => m.id !== app.me().id);
    return others.map((m) => m.display_name).join(', ') || 'Only you';
}

function item(c, app) {
    const last = c.last_message;
    return h('li', {dataset: {id: c.id}},
             h('a', {href: '#/c/' + c.id, class: 'conversation'},
               h('strong', null, title(c, app)),
               c.kind === 'group' && h('span', {class: 'tag'}, 'group'),
               c.unread_count > 0 &&
                   h('span', {class: 'badge',
                              'aria-label': c.unread_count + ' unread'},
                     String(c.unread_count)),
               h('span', {class: 'preview'},
                 last ? last.text.slice(0, 80) : 'No messages yet')),
             time(last ? last.created_at : c.created_at));
}

// the ids of @usernames typed in an input (a 422 on that input if one
// does not exist)
export async function resolve(names, input) {
    const ids = [];
    for (const name of names.split(/[\s,]+/).filter(Boolean)) {
        try {
            ids.push((await api('GET', '/v1/users/@' +
                                encodeURIComponent(name.replace(/^@/, ''))))
                     .id);
        } catch (err) {
            if (err.status === 404) {
                throw {message: 'No user ' + name,
                       fields: {[input]: 'no user ' + name}};
            }
            throw err;
        }
    }
    return ids;
}

export async function render(root, _params, app) {
    const ul = h('ul', {class: 'conversations'});
    const note = h('p', {class: 'empty', hidden: true},
                   'No conversations yet.');

    async function page(cursor) {
        const r = await api('GET', '/v1/conversations' +
                            query({max_id: cursor}));
        if (!cursor) {
            ul.replaceChildren();
        }
        r.items.forEach((c) => ul.append(item(c, app)));
        note.hidden = ul.children.length > 0;
        return r.next_cursor;
    }

    const more = pager(page);
    let timer = null;

    async function reload() {
        more.set(await page(null));
    }

    fill(root,
         h('h1', null, 'Chats'),
         form({class: 'card', 'aria-label': 'Start a conversation'}, [
             h('h2', null, 'Start a conversation'),
             field('Usernames (one for a direct conversation, several ' +
                   'for a group)', {name: 'usernames', required: true,
                                    placeholder: 'alice, bob'}),
             field('Group title (optional)', {name: 'title',
                                              maxlength: 200}),
             h('button', {type: 'submit'}, 'Start'),
         ], async (f) => {
             const body = {member_ids: await resolve(f.elements.usernames.value,
                                                     'usernames')};
             if (f.elements.title.value) {
                 body.title = f.elements.title.value;
             }
             const c = await api('POST', '/v1/conversations', body);
             location.hash = '#/c/' + c.id;
         }),
         ul, note, more.button);

    // new activity moves conversations: fetch the first page again
    function changed() {
        clearTimeout(timer);
        timer = setTimeout(() => reload().catch(report), 300);
    }

    app.listen(app.stream, 'event', (ev) => {
        if (ev.detail.event !== 'typing') {
            changed();
        }
    });
    app.listen(app.stream, 'reset', changed);
    app.cleanups.push(() => clearTimeout(timer));
    await reload();
}
