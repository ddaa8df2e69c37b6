// A profile: the user, follow and message buttons, the user's posts; the
// followers and following lists.

import {api} from './api.js';
import {fill, h, report} from './dom.js';
import {people} from './post.js';
import {list} from './posts.js';

export async function render(root, [name], app) {
    const user = await api('GET', '/v1/users/@' + name);
    const self = user.id === app.me().id;
    const posts = list(app, '/v1/users/' + user.id + '/posts',
                       {empty: 'No posts yet.'});
    const followers = h('a', {href: '#/u/' + user.username + '/followers'});
    const actions = h('p', {class: 'actions'});

    function counts(u) {
        fill(followers, h('strong', null, String(u.followers_count)),
             ' followers');
    }

    if (!self) {
        const following = (await app.following()).has(user.id);
        const follow = h('button', {type: 'button', class: 'follow',
                                    'aria-pressed': String(following)},
                         following ? 'Following' : 'Follow');

        follow.addEventListener('click', async () => {
            const on = follow.getAttribute('aria-pressed') !== 'true';
            follow.disabled = true;
            try {
                const r = await app.follow(user.id, on);
                follow.setAttribute('aria-pressed', String(r.following));
                fill(follow, r.following ? 'Following' : 'Follow');
                fill(followedBy, r.followed_by ? 'Follows you' : '');
                counts(await api('GET', '/v1/users/' + user.id));
            } catch (err) {
                report(err);
            } finally {
                follow.disabled = false;
            }
        });

        const message = h('button', {type: 'button', class: 'message'},
                          'Message');
        message.addEventListener('click', async () => {
            try {
                const c = await api('POST', '/v1/conversations',
                                    {member_ids: [user.id]});
                location.hash = '#/c/' + c.id;
            } catch (err) {
                report(err);
            }
        });
        const followedBy = h('span', {class: 'tag'});
        fill(actions, follow, ' ', message, ' ', followedBy);
    }

    counts(user);
    fill(root,
         h('header', {class: 'profile'},
           h('h1', null, user.display_name),
           h('p', {class: 'handle'}, '@' + user.username),
           user.bio && h('p', {class: 'bio'}, user.bio),
           h('p', {class: 'stats'}, followers, ' · ',
             h('a', {href: '#/u/' + user.username + '/following'},
               h('strong', null, String(user.following_count)),
               ' following'), ' · ',
             h('strong', null, String(user.posts_count)), ' posts'),
           actions,
           self && h('p', null, h('a', {href: '#/settings'},
                                  'Edit profile'))),
         h('h2', null, 'Posts'),
         posts.el);
    await posts.load();
}

export async function connections(root, [name, which], app) {
    const user = await api('GET', '/v1/users/@' + name);
    fill(root,
         h('h1', null, (which === 'followers' ? 'Followers of '
                                               : 'Followed by ') +
           user.display_name),
         h('p', null, h('a', {href: '#/u/' + user.username},
                        'Back to @' + user.username)),
         people(app, '/v1/users/' + user.id + '/' + which,
                'Nobody yet.'));
}
