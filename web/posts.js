// A post as a card (with its like, share, reply and delete controls), the
// composer, and a list of posts with cursor paging.

import {api, newKey, query} from './api.js';
import {fill, form, h, length, pager, report, richText, time,
        userLink} from './dom.js';

// card(post, app, {onRemoved}): a share shows its original, which its
// like and share buttons act on (as the API does)
export function card(post, app, opts = {}) {
    const el = h('article', {class: 'post', dataset: {id: post.id}});
    const original = post.share_of || post;
    const mine = post.author.id === app.me().id;

    const likeButton = h('button', {type: 'button', class: 'like'});
    const shareButton = h('button', {type: 'button', class: 'share'});
    const counts = h('span', {class: 'counts'});

    function show(p) {
        fill(likeButton, p.liked ? '♥ Liked' : '♡ Like');
        likeButton.setAttribute('aria-pressed', String(p.liked));
        fill(shareButton, p.shared ? '↻ Shared' : '↻ Share');
        shareButton.setAttribute('aria-pressed', String(p.shared));
        fill(counts,
             h('a', {href: '#/p/' + p.id, class: 'likes-count',
                     title: 'Who likes this'},
               plural(p.likes_count, 'like')),
             ' · ', plural(p.shares_count, 'share'),
             ' · ', plural(p.replies_count, 'reply', 'replies'));
        el.dataset.likes = String(p.likes_count);
    }

    likeButton.addEventListener('click', () => act(async () => {
        const r = await api(original.liked ? 'DELETE' : 'POST',
                            '/v1/posts/' + original.id + '/like');
        original.liked = r.liked;
        original.likes_count = r.likes_count;
    }));

    shareButton.addEventListener('click', () => act(async () => {
        if (original.shared) {
            await api('DELETE', '/v1/posts/' + original.id + '/share');
            if (post.share_of && mine) {
                el.remove();
                opts.onRemoved?.(post);
                return;
            }
        } else {
            const share = await api('POST',
                                    '/v1/posts/' + original.id + '/share');
            opts.onShared?.(share);
        }
        Object.assign(original,
                      await api('GET', '/v1/posts/' + original.id));
    }));

    async function act(f) {
        likeButton.disabled = shareButton.disabled = true;
        try {
            await f();
            show(original);
        } catch (err) {
            report(err);
        } finally {
            likeButton.disabled = shareButton.disabled = false;
        }
    }

    const del = mine && h('button', {type: 'button', class: 'delete',
        onclick: async () => {
            if (!confirm(post.share_of ? 'Remove this share?'
                                       : 'Delete this post?')) {
                return;
            }
            try {
                await api('DELETE', '/v1/posts/' + post.id);
                el.remove();
                opts.onRemoved?.(post);
            } catch (err) {
                report(err);
            }
        }}, 'Delete');

    fill(el,
         post.share_of && h('p', {class: 'shared-by'}, '↻ ',
                            userLink(post.author), ' shared'),
         h('header', null, userLink(original.author), ' · ',
           h('a', {href: '#/p/' + original.id, class: 'permalink'},
             time(original.created_at))),
         original.reply_to_id &&
             h('p', {class: 'reply-to'},
               h('a', {href: '#/p/' + original.reply_to_id},
                 '↳ in reply to a post')),
         h('p', {class: 'text'}, richText(original.text)),
         h('footer', null,
           h('a', {href: '#/p/' + original.id, class: 'reply button'},
             'Reply'),
           likeButton, shareButton, del, counts));
    show(original);
    return el;
}

function plural(n, one, many) {
    return n + ' ' + (n === 1 ? one : many || one + 's');
}

// The composer: onPosted(post) after the 201.  One Idempotency-Key per
// draft, so a retry after a lost answer does not post twice.
export function composer(app, {replyTo, label, onPosted}) {
    let key = newKey();
    const counter = h('span', {class: 'counter', 'aria-live': 'polite'},
                      '0 / 5000');
    const id = 'compose-' + (replyTo || 'new');

    const el = form({class: 'composer', 'aria-label': label}, [
        h('label', {for: id}, label),
        h('textarea', {id, name: 'text', rows: 3, required: true,
                       maxlength: 20000, placeholder: label}),
        h('div', {class: 'row'}, counter,
          h('button', {type: 'submit'}, replyTo ? 'Reply' : 'Post')),
    ], async (f) => {
        const body = {text: f.elements.text.value};
        if (replyTo) {
            body.reply_to_id = replyTo;
        }
        const post = await api('POST', '/v1/posts', body,
                               {'Idempotency-Key': key});
        key = newKey();
        f.reset();
        counter.textContent = '0 / 5000';
        onPosted(post);
    });

    const text = el.elements.text;
    text.addEventListener('input', () => {
        const n = length(text.value);
        counter.textContent = n + ' / 5000';
        counter.classList.toggle('over', n > 5000);
    });
    text.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
            el.requestSubmit();
        }
    });
    return el;
}

// A list of posts from a list endpoint, newest first, "Load more" for
// older pages; add(post) puts a new one on top (once).
export function list(app, path, {empty} = {}) {
    const items = h('div', {class: 'posts'});
    const ids = new Set();
    const note = h('p', {class: 'empty'}, empty || 'Nothing here yet.');
    const more = pager(async (cursor) => page(cursor));

    function make(p) {
        ids.add(p.id);
        return card(p, app, {
            onRemoved: () => ids.delete(p.id),
            onShared: (share) => path === '/v1/feed' && add(share),
        });
    }

    function add(p) {
        if (!ids.has(p.id)) {
            items.prepend(make(p));
            note.hidden = true;
        }
    }

    async function page(cursor) {
        const r = await api('GET', path + query({max_id: cursor}));
        for (const p of r.items) {
            if (!ids.has(p.id)) {
                items.append(make(p));
            }
        }
        note.hidden = ids.size > 0;
        return r.next_cursor;
    }

    return {
        el: h('div', null, items, note, more.button),
        add,
        newest: () => items.firstElementChild?.dataset.id,
        async load() {
            items.replaceChildren();
            ids.clear();
            more.set(await page(null));
        },
    };
}
