// The home feed: the composer, the timeline with cursor paging, and new
// posts of followed users shown as they come.
//
// The stream carries messages and notifications, not every post of
// every followed user (that would be a fan-out of every post to every
// open stream), so the feed asks for what is newer than its newest post
// (GET /v1/feed?since_id=) every 5 seconds while the page is visible, at
// once when it becomes visible again, and when the stream says something
// happened (a notification, a reconnect).  New posts go on top.

import {api, query} from './api.js';
import {fill, h, report} from './dom.js';
import {composer, list} from './posts.js';

const POLL = 5000;

export async function render(root, _params, app) {
    const posts = list(app, '/v1/feed',
                       {empty: 'Your feed is empty: post something, or ' +
                               'follow people from their profiles.'});
    const status = h('p', {class: 'visually-hidden', 'aria-live': 'polite'});
    let busy = false;

    async function poll() {
        const newest = posts.newest();
        if (busy || document.visibilityState !== 'visible') {
            return;
        }
        busy = true;
        try {
            if (!newest) {
                await posts.load();
                return;
            }
            const r = await api('GET', '/v1/feed' +
                                query({since_id: newest, limit: 100}));
            if (r.next_cursor) {
                // more than a page is new: start again from the top
                await posts.load();
                return;
            }
            r.items.reverse().forEach(posts.add);
            if (r.items.length) {
                status.textContent = r.items.length + ' new posts';
            }
        } finally {
            busy = false;
        }
    }

    fill(root,
         h('h1', null, 'Home'),
         composer(app, {label: 'What is happening?',
                        onPosted: posts.add}),
         status,
         posts.el);
    await posts.load();

    // a failing poll is shown once, not every 5 seconds
    let failing = false;
    const check = () => poll().then(() => {
        failing = false;
    }, (err) => {
        if (!failing) {
            report(err);
        }
        failing = true;
    });

    app.every(POLL, check);
    app.listen(document, 'visibilitychange', check);
    app.listen(app.stream, 'event', check);
    app.listen(app.stream, 'reset', check);
}
