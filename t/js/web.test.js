// The web client in a real browser (t/080-web.t runs this against a test
// nginx): the page's CSP, two people sign up (an API error shown on the
// way), follow each other, see each other's posts without reloading,
// chat live both ways with typing indicators, and the stream comes back
// after nginx restarts with what was sent meanwhile; no token in a URL
// but the stream's.

import {BASE, POLL, api, go, launch, open, person, press, session, signup,
        type, waitText} from './browser.js';
import {control, is, note, ok, run} from './tap.js';

const tag = process.pid % 100000;
const alice = 'alice_' + tag;
const bob = 'bob_' + tag;
const SCREENSHOT = process.env.SOCIAL_SCREENSHOT;

// the page never reloaded since mark(page)
async function mark(page) {
    await page.evaluate(() => {
        window.notReloaded = true;
    });
}

async function notReloaded(page) {
    return page.evaluate(() => window.notReloaded === true);
}

async function streamState(page) {
    return page.$eval('#stream-status', (e) => ({...e.dataset}));
}

function badge(page, id = 'notif-badge') {
    return page.$eval('#' + id, (e) => Number(e.dataset.count || 0));
}

async function waitBadge(page, n, id = 'notif-badge') {
    await page.waitForFunction((i, want) =>
        Number(document.getElementById(i).dataset.count || 0) === want,
        POLL, id, n);
}

// inputs without a label, buttons and links without a name
async function unnamed(page) {
    return page.evaluate(() => [
        ...[...document.querySelectorAll('input, textarea, select')]
            .filter((e) => e.labels.length === 0 &&
                           !e.getAttribute('aria-label'))
            .map((e) => e.outerHTML),
        ...[...document.querySelectorAll('button, a[href]')]
            .filter((e) => !e.hidden && e.textContent.trim() === '' &&
                           !e.getAttribute('aria-label'))
            .map((e) => e.outerHTML),
    ]);
}

async function labelled(page, what) {
    const bad = await unnamed(page);
    ok(bad.length === 0, what + ': every control has a label or a name',
       ...bad);
}

async function waitLive(page) {
    await page.waitForSelector('#stream-status[data-state=open]');
}

async function follow(page, username) {
    await go(page, '#/u/' + username);
    await waitText(page, 'h1', 'Ms ' + username);
    await page.click('button.follow');
    await page.waitForSelector('button.follow[aria-pressed=true]');
}

async function compose(page, text) {
    await type(page, '.composer textarea', text);
    await page.click('.composer button[type=submit]');
    await waitText(page, '.post .text', text);
}

// a post's card in the page, by its exact text
function postText(page, text) {
    return page.waitForFunction((t) =>
        [...document.querySelectorAll('.post .text')]
            .find((e) => e.textContent === t), POLL, text);
}

async function say(page, text) {
    await type(page, '#message-text', text);
    await page.keyboard.press('Enter');
    await waitText(page, '.messages li.mine .text', text);
}

await run(async () => {
    const browser = await launch();
    const a = await person(browser);
    const b = await person(browser, {width: 390, height: 844});   // a phone

    try {
        const only = process.env.SOCIAL_ONLY;   // while developing
        for (const part of [security, accounts, posts, chat, reconnect,
                            sseFallback]) {
            if (!only || only.split(',').includes(part.name)) {
                const start = Date.now();
                await part(a, b, browser);
                note(part.name + ': ' + (Date.now() - start) + ' ms');
            }
        }
        for (const p of [a, b]) {
            const leaks = p.urls.filter((u) => {
                const url = new URL(u);
                return url.pathname !== '/v1/stream' &&
                       /token|eyJ/i.test(url.search + url.hash);
            });
            ok(leaks.length === 0, 'no token in a URL the page of ' +
               (p === a ? alice : bob) + ' requested (the stream aside)',
               ...leaks);
            ok(p.problems.length === 0, 'no error in the console of ' +
               (p === a ? alice : bob) + ' (CSP refusals included)',
               ...p.problems);
        }
    } finally {
        await browser.close();
    }
});

// the page's own protection: a Content-Security-Policy without inline
// script, and no inline script or handler it would have to allow
async function security() {
    const res = await fetch(BASE + '/');
    const csp = res.headers.get('content-security-policy') || '';
    const html = await res.text();
    ok(/script-src 'self'/.test(csp) && /default-src 'none'/.test(csp) &&
       !/unsafe-inline|unsafe-eval/.test(csp),
       'the page is served with a CSP allowing only its own scripts', csp);
    ok(!/<script(?![^>]*\ssrc=)/i.test(html) && !/\son[a-z]+=/i.test(html),
       'the page has no inline script or event handler attribute');
}

async function accounts(a, b) {
    await signup(a, alice);

    // an error of the API is shown with its message and code
    await open(b, '#/signup');
    await type(b, 'input[name=username]', alice);
    await type(b, 'input[name=email]', bob + '@example.com');
    await type(b, 'input[name=password]', 'correct horse');
    await b.keyboard.press('Enter');
    const said = await waitText(b, '#alerts .alert', 'username_taken');
    ok(true, 'a taken username is shown to the person: ' +
       await said.evaluate((e) => e.firstChild.textContent));
    await press(b, '#alerts .alert button.dismiss');     // the keyboard
    await b.waitForSelector('#alerts .alert', {hidden: true});

    await signup(b, bob);
    ok(true, 'both sign up and land on their home feed');

    const s = await session(a);
    ok(s && s.access_token && s.refresh_token && s.user.username === alice,
       'the session holds the token pair and the user', s);
    ok(!a.url().includes(s.access_token) && !a.url().includes('token'),
       'no token in the page URL');

    await follow(a, bob);
    await follow(b, alice);
    ok(true, 'they follow each other from the profiles');
    await waitText(b, '.profile .stats', '1 followers');

    const wide = await b.evaluate(() =>
        document.documentElement.scrollWidth <= window.innerWidth);
    ok(wide, 'a profile fits a phone width (no sideways scrolling)');
    await labelled(b, 'a profile');
}

async function posts(a, b) {
    const hello = 'hello from ' + alice + ', @' + bob;
    const evil = '<img src=x onerror="window.pwned=1">' +
                 '<script>window.pwned=2</script><b>bold?</b>';

    await go(a, '#/');
    await go(b, '#/');
    await waitText(b, 'h1', 'Home');
    await mark(b);
    const bobUnread = await badge(b);
    const aliceUnread = await badge(a);

    await compose(a, hello);
    await postText(b, hello);
    ok(await notReloaded(b),
       "alice's post appears in bob's feed without a reload");
    const link = await b.$$eval('.post .text a', (as) =>
        as.map((x) => x.getAttribute('href')));
    ok(link.includes('#/u/' + bob), 'the mention is a profile link', link);

    // the mention notified bob: his badge counts it, live
    await waitBadge(b, bobUnread + 1);
    ok(await notReloaded(b),
       "bob's unread badge counts the mention without a reload");

    await compose(a, evil);
    const card = await postText(b, evil);
    const inert = await b.evaluate((e) => ({
        text: e.textContent,
        elements: e.querySelectorAll('img, script, b').length,
        pwned: window.pwned,
    }), card);
    ok(inert.elements === 0 && inert.pwned === undefined &&
       inert.text === evil,
       'a post of HTML shows its characters and runs nothing', inert);

    // like, reply and share from bob; alice's badge counts them live
    const first = await b.waitForFunction((t) =>
        [...document.querySelectorAll('.post')]
            .find((e) => e.querySelector('.text').textContent === t),
        POLL, hello);
    const like = await first.asElement().$('button.like');
    await like.click();
    await b.waitForFunction((e) => e.dataset.likes === '1', POLL,
                            first.asElement());
    await waitBadge(a, aliceUnread + 1);
    ok(true, "bob's like reaches alice's badge live");

    const share = await first.asElement().$('button.share');
    await share.click();
    await b.waitForFunction((e) =>
        e.querySelector('button.share').getAttribute('aria-pressed') ===
        'true', POLL, first.asElement());
    await waitText(b, '.post .shared-by', bob);
    ok(true, 'bob shares it; his share shows in his feed');

    const postId = await b.evaluate((e) => e.dataset.id, first.asElement());
    await go(b, '#/p/' + postId);
    await type(b, '.composer textarea', 'a reply from ' + bob);
    await b.click('.composer button[type=submit]');
    await waitText(b, '.posts .post .text', 'a reply from ' + bob);
    await waitText(b, 'ul.people', 'Ms ' + bob);
    ok(true, 'bob replies on the post page, which lists who likes it');

    await waitBadge(a, aliceUnread + 3);
    await go(a, '#/notifications');
    await waitText(a, '.notifications li', 'replied to your post');
    await a.waitForSelector('#notif-badge[hidden]');
    const kinds = await a.$$eval('.notifications li', (l) =>
        l.map((e) => e.dataset.type));
    ok(['reply', 'share', 'like'].every((k) => kinds.includes(k)),
       'alice sees the like, share and reply; opening them clears the badge',
       kinds);

    // more posts than a page (by someone they do not follow, so their
    // feeds stay as they are): the profile pages with "Load more"
    const carol = 'carol_' + tag;
    await api(null, 'POST', '/v1/users', {username: carol,
        email: carol + '@example.com', password: 'correct horse'});
    const token = (await api(null, 'POST', '/oauth/token', {
        grant_type: 'password', username: carol,
        password: 'correct horse'})).body.access_token;
    for (let i = 1; i <= 21; i++) {
        await api(token, 'POST', '/v1/posts', {text: 'post number ' + i});
    }
    await go(b, '#/u/' + carol);
    await waitText(b, '.post .text', 'post number 21');
    const before = await b.$$eval('.post', (l) => l.length);
    ok(before === 20 && !(await b.$('.more[hidden]')),
       'a profile shows a page of 20 posts and a "Load more"', before);
    await b.click('button.more');
    await postText(b, 'post number 1');
    ok(true, 'the next page follows (cursor paging)');
    await labelled(b, 'a post list');

    // alice deletes a post of hers from her profile
    const typo = 'a post with a tpyo';
    await go(a, '#/');
    await compose(a, typo);
    await go(a, '#/u/' + alice);
    const typoCard = await a.waitForFunction((t) =>
        [...document.querySelectorAll('.post')]
            .find((e) => e.querySelector('.text').textContent === t),
        POLL, typo);
    await (await typoCard.asElement().$('button.delete')).click();
    await a.waitForFunction((t) =>
        ![...document.querySelectorAll('.post .text')]
            .some((e) => e.textContent === t), POLL, typo);
    ok(true, 'alice deletes a post of hers');
}

async function chat(a, b) {
    await waitLive(a);
    await waitLive(b);
    is((await streamState(a)).transport, 'websocket',
       'the stream is a WebSocket');

    await go(b, '#/chats');
    await waitText(b, 'h1', 'Chats');

    // alice opens the direct conversation from bob's profile
    await go(a, '#/u/' + bob);
    await (await a.waitForSelector('button.message')).click();
    await a.waitForSelector('#message-text');
    const cid = a.url().split('#/c/')[1];
    ok(/^\d+$/.test(cid), 'the Message button opens the conversation', cid);
    await say(a, 'hi ' + bob + ', it is ' + alice);

    await b.waitForSelector('#chat-badge:not([hidden])');
    const item = await waitText(b, '.conversations li', 'Ms ' + alice);
    ok(true, "bob's chat list and badge show the new message live");
    await (await item.$('a')).click();
    await waitText(b, '.messages li.theirs .text', 'hi ' + bob);
    await b.waitForSelector('#chat-badge[hidden]');
    ok(true, 'bob reads it; his badge clears');
    await waitText(a, '.seen', 'Seen by Ms ' + bob);
    ok(true, "alice sees bob's read marker");

    // typing both ways, then the message
    await mark(a);
    await mark(b);
    await b.type('#message-text', 'hello ', {delay: 500});
    await waitText(a, '.typing', 'Ms ' + bob + ' is typing');
    ok(true, "alice sees bob's typing indicator");
    await b.type('#message-text', 'back');
    await b.keyboard.press('Enter');
    await waitText(a, '.messages li.theirs .text', 'hello back');
    await a.waitForFunction(() =>
        document.querySelector('.typing').textContent === '', POLL);
    ok(true, "bob's message reaches alice live and ends his indicator");

    // typed as a person does (the server passes on one typing signal per
    // person and conversation every 3 s, so the first may be dropped)
    await a.type('#message-text', 'see you', {delay: 500});
    await waitText(b, '.typing', 'Ms ' + alice + ' is typing');
    await a.keyboard.press('Enter');
    await waitText(b, '.messages li.theirs .text', 'see you');
    ok(await notReloaded(a) && await notReloaded(b),
       'and back to bob, typing indicator first; no page reloaded');

    await labelled(b, 'a conversation');

    // a group: bob starts it from his chat list, alice sees it come
    await go(b, '#/chats');
    await go(a, '#/chats');
    await type(b, 'input[name=usernames]', alice);
    await type(b, 'input[name=title]', 'The ' + tag + ' club');
    await b.keyboard.press('Enter');
    await b.waitForSelector('#message-text');
    await waitText(b, '.members', 'admin');
    await say(b, 'welcome to the club');
    const group = await waitText(a, '.conversations li', 'The ' + tag);
    ok(true, 'bob starts a group; it shows in alice\'s list live');
    await (await group.$('a')).click();
    await waitText(a, '.messages li.theirs .text', 'welcome to the club');
    await say(a, 'thanks');
    await waitText(b, '.messages li.theirs .text', 'thanks');
    ok(true, 'they chat in the group');
    await a.click('button.leave');
    await a.waitForFunction(() => location.hash === '#/chats', POLL);
    ok(true, 'alice leaves the group');
    await go(a, '#/c/' + cid);
    await go(b, '#/c/' + cid);
    await waitText(a, '.messages li .text', 'see you');
    await waitText(b, '.messages li .text', 'see you');

    if (SCREENSHOT) {
        await screenshot(a, b, cid);
    }
    a.cid = cid;
}

// The README's picture: alice's home feed beside bob's phone in the
// conversation, side by side on a page of their screenshots.
async function screenshot(a, b, cid) {
    await go(a, '#/');
    await waitText(a, '.post .text', 'hello from');
    const shots = [await a.screenshot({encoding: 'base64'}),
                   await b.screenshot({encoding: 'base64'})];
    const page = await a.browser().newPage();
    await page.setViewport({width: 1430, height: 844});
    await page.setContent('<body style="margin:0;display:flex;gap:20px;' +
        'align-items:flex-start;background:#d9dee5;padding:0 10px 0 0">' +
        shots.map((s) => '<img src="data:image/png;base64,' + s + '">')
            .join('') + '</body>', {waitUntil: 'load'});
    await page.screenshot({path: SCREENSHOT});
    await page.close();
    await go(a, '#/c/' + cid);
    await waitText(a, '.messages li .text', 'see you');
    note('screenshot: ' + SCREENSHOT);
}

// nginx restarts while alice's page is open; bob sends two messages
// after it is back but before alice's page reconnected: she gets them
// through the reconnect's ?since= replay
async function reconnect(a, b) {
    const token = (await session(b)).access_token;
    const cdp = await a.createCDPSession();
    const sockets = [];

    await cdp.send('Network.enable');
    cdp.on('Network.webSocketCreated', (e) => sockets.push(e.url));
    await mark(a);

    await control('stop');
    await a.waitForFunction(() => {
        const s = document.querySelector('#stream-status').dataset;
        return s.state === 'reconnecting' && Number(s.failures) >= 2;
    }, {...POLL, timeout: 30000});
    ok(true, "alice's page notices and keeps retrying (backing off)");

    await control('start');
    const before = await streamState(a);
    const sent = [];
    for (const text of ['while you were away', 'and one more']) {
        const r = await api(token, 'POST', '/v1/conversations/' + a.cid +
                            '/messages', {text});
        sent.push(r.status);
    }
    const after = await streamState(a);
    is(sent.join(), '201,201', 'bob sends two messages once nginx is back');
    ok(before.state !== 'open' && after.state !== 'open',
       "alice's page was still disconnected while they were sent",
       before, after);

    await waitText(a, '.messages li.theirs .text', 'and one more', 30000);
    const texts = await a.$$eval('.messages li .text',
                                 (l) => l.map((e) => e.textContent));
    const i = texts.indexOf('while you were away');
    ok(i >= 0 && texts[i + 1] === 'and one more',
       'both arrive after the reconnect, in order, without a reload',
       texts);
    ok(await notReloaded(a), 'the page did not reload');
    const again = sockets.filter((u) => /[?&]since=\d+/.test(u));
    ok(again.length > 0, 'the reconnect asked for ?since=<stream_id>',
       sockets.map((u) => u.replace(/access_token=[^&]+/, 'access_token=*')));
    await cdp.detach();
}

// bob on a second device whose WebSocket never gets through (as behind
// a proxy that refuses upgrades): it falls back to Server-Sent Events
async function sseFallback(a, b, browser) {
    const c = await person(browser, {context: b.context});

    await c.evaluateOnNewDocument(() => {
        window.WebSocket = class extends EventTarget {
            constructor() {
                super();
                setTimeout(() => this.onclose?.({code: 1006}), 10);
            }

            send() {}

            close() {}
        };
    });
    await open(c, '#/c/' + a.cid);
    await c.waitForSelector('#stream-status[data-state=open]' +
                            '[data-transport=sse]', {timeout: 30000});
    ok(true, 'without WebSockets the page streams over SSE');

    await say(a, 'over SSE?');
    await waitText(c, '.messages li.theirs .text', 'over SSE?');
    ok(true, 'a message reaches the SSE page live');
    ok(c.problems.length === 0, 'no error in its console', ...c.problems);
    await c.close();
}
