// One post: the card, a reply composer, its replies and who likes it.

import {api, query} from './api.js';
import {fill, h, pager, userLink} from './dom.js';
import {card, composer, list} from './posts.js';

export async function render(root, [id], app) {
    const post = await api('GET', '/v1/posts/' + id);
    const replies = list(app, '/v1/posts/' + id + '/replies',
                         {empty: 'No replies yet.'});

    fill(root,
         h('h1', null, 'Post'),
         card(post, app, {onRemoved: () => history.back()}),
         composer(app, {replyTo: post.share_of ? post.share_of.id : id,
                        label: 'Your reply',
                        onPosted: replies.add}),
         h('h2', null, 'Replies'),
         replies.el,
         h('h2', null, 'Liked by'),
         people(app, '/v1/posts/' + (post.share_of || post).id + '/likes',
                'Nobody yet.'));
    await replies.load();
}

// a list of users from a list endpoint, with paging
export function people(app, path, empty) {
    const ul = h('ul', {class: 'people'});
    const note = h('p', {class: 'empty', hidden: true}, empty);
    const more = pager(async (cursor) => {
        const r = await api('GET', path + query({max_id: cursor}));
        for (const u of r.items) {
            ul.append(h('li', null, userLink(u),
                        u.bio && h('span', {class: 'bio'}, ' — ' + u.bio)));
        }
        note.hidden = ul.children.length > 0;
        return r.next_cursor;
    });

    more.button.hidden = false;
    more.button.click();
    return h('div', null, ul, note, more.button);
}
