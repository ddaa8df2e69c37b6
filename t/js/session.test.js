// The web client's session (t/081-web-session.t, access tokens of a few
// seconds): it keeps working across access-token expiry, two tabs of one
// session refresh one at a time (a rotated refresh token presented again
// would end the session), a password change keeps the page signed in, a
// session ended elsewhere sends the page to the login form with the
// reason, and logging out in one tab logs out the other.

import {POLL, api, go, launch, open, person, press, session, signup, type,
        waitText} from './browser.js';
import {is, ok, run} from './tap.js';

const TTL = Number(process.env.SOCIAL_JWT_TTL || 4) * 1000;
const name = 'carol_' + process.pid % 100000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function alerts(page) {
    return page.$$eval('#alerts .alert', (l) => l.map((e) => e.textContent));
}

async function post(page, text) {
    await go(page, '#/');
    await type(page, '.composer textarea', text);
    await page.keyboard.down('Control');
    await page.keyboard.press('Enter');           // Ctrl+Enter posts
    await page.keyboard.up('Control');
    await waitText(page, '.post .text', text);
}

await run(async () => {
    const browser = await launch();
    const one = await person(browser);
    const two = await person(browser, {context: one.context});  // a tab

    try {
        await signup(one, name);
        await open(two, '#/');
        await waitText(two, 'h1', 'Home');
        const first = await session(one);
        is(first.lifetime, TTL, 'the access token lives ' + TTL + ' ms here');

        // both tabs act after the access token expired
        await sleep(TTL + 1000);
        await Promise.all([post(one, 'after expiry, tab one'),
                           post(two, 'after expiry, tab two')]);
        const second = await session(one);
        ok(second.refresh_token !== first.refresh_token &&
           second.access_token !== first.access_token,
           'the access token was refreshed and the refresh token rotated');
        is((await alerts(one)).concat(await alerts(two)).length, 0,
           'two tabs refreshed without an error (one at a time)');

        await sleep(TTL + 1000);
        await post(one, 'after a second expiry');
        const third = await session(one);
        ok(third.refresh_token !== second.refresh_token,
           'the rotated token refreshed again: the session lives on');

        // a password change revokes every refresh token: the page signs
        // in again with the new password
        await go(one, '#/settings');
        await type(one, 'input[name=current_password]', 'correct horse');
        await type(one, 'input[name=password]', 'battery staple');
        const changed = one.waitForResponse((r) =>
            r.request().method() === 'PATCH' &&
            r.url().endsWith('/v1/users/me'));
        await one.keyboard.press('Enter');
        await changed;
        // the other tab's token is due just then: its refresh waits for
        // the new pair (the old refresh token is revoked by now)
        const during = await two.evaluate(async () => {
            const key = 'ngx_social.session';
            const s = JSON.parse(localStorage.getItem(key));
            localStorage.setItem(key, JSON.stringify({...s,
                                                      expires_at: 0}));
            const {api} = await import(location.origin + '/assets/api.js');
            return (await api('GET', '/v1/users/me')).username;
        });
        is(during, name, 'a tab refreshing during the change gets the new ' +
           'pair (the session goes on)');
        await waitText(one, '.saved', 'Password changed');
        const before = await session(one);
        await sleep(TTL + 1000);
        await post(one, 'after the password change');
        const now = await session(one);
        ok(now.refresh_token !== before.refresh_token,
           'after a password change the page keeps working (and refreshing)');

        // the rotated refresh token presented again (stolen, say) ends the
        // session: the page says so and asks to log in
        const stolen = await fetch(new URL('/oauth/token', one.url()), {
            method: 'POST',
            body: new URLSearchParams({grant_type: 'refresh_token',
                                       refresh_token: before.refresh_token}),
        });
        is(stolen.status, 400, 'a rotated refresh token is refused');
        is((await api(now.access_token, 'GET', '/v1/users/me')).status, 200,
           '(the access token itself still works until it expires)');
        await sleep(TTL + 1000);
        await go(one, '#/u/' + name);
        await one.waitForFunction(() => location.hash === '#/login', POLL);
        const said = await alerts(one);
        ok(said.some((t) => t.includes('session ended')),
           'the ended session sends the page to the login form, saying why',
           said);

        // log in again in one tab, then log out in the other
        await type(one, 'input[name=username]', name);
        await type(one, 'input[name=password]', 'battery staple');
        await one.keyboard.press('Enter');
        await waitText(one, 'h1', 'Home');
        await open(two, '#/');
        await waitText(two, 'h1', 'Home');
        const last = await session(two);
        await press(two, '#logout');
        await one.waitForFunction(() => location.hash === '#/login', POLL);
        ok(true, 'logging out in one tab logs out the other');
        is((await api(last.access_token, 'GET', '/v1/users/me')).status, 401,
           'logging out revoked the access token');

        ok(one.problems.length + two.problems.length === 0,
           'no error in the consoles', ...one.problems, ...two.problems);
    } finally {
        await browser.close();
    }
});
