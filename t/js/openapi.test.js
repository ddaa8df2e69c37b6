// docs/openapi.yaml against the running server (t/090-openapi.t): every
// operation of the document is called, successes and errors, and every
// answer must match the document; so must the stream's events, over
// WebSocket and SSE.  The checker is shown to refuse answers that
// disagree, and the document to cover every endpoint of the contract.

import fs from 'node:fs';
import path from 'node:path';
import {check, compact, doc, exercised, FILE, isCompact, loose,
        metaErrors, operations, template, validate} from './openapi.js';
import {is, note, ok, run} from './tap.js';
import {handshake, http, sse, websocket} from './wire.js';

const tag = process.pid % 100000;

// calls the API, checks the answer against the document, returns the JSON
async function call(method, url, o = {}, want = undefined) {
    const answer = await http(method, url, o);
    const problems = check(method, url, answer);
    const name = method + ' ' + (template(url) || url) + ' ' +
                 (o.what ? '(' + o.what + ') ' : '') + '-> ' + answer.status;

    ok(problems.length === 0 && (want === undefined ||
                                 answer.status === want),
       name + ' matches docs/openapi.yaml',
       ...(want !== undefined && answer.status !== want
           ? ['want status ' + want] : []),
       ...problems, answer.body.slice(0, 500));
    answer.json = answer.body && answer.headers['content-type']
        ?.startsWith('application/json') ? JSON.parse(answer.body) : null;
    return answer;
}

async function signup(name) {
    const u = await call('POST', '/v1/users', {json: {
        username: name, email: name + '@example.com',
        password: 'correct horse'}}, 201);
    const t = await call('POST', '/oauth/token', {form: {
        grant_type: 'password', username: name,
        password: 'correct horse'}}, 200);
    return {...u.json, token: t.json.access_token,
            refresh: t.json.refresh_token};
}

await run(async () => {
    const meta = metaErrors();
    ok(meta.length === 0, 'docs/openapi.yaml is a valid OpenAPI 3.1 document',
       ...meta.slice(0, 10));
    is(doc.openapi, '3.1.0', 'it says OpenAPI 3.1.0');

    contract();
    refuses();

    const [a, b] = await users();
    const post = await posts(a, b);
    const conv = await chat(a, b, post);
    await stream(a, b, conv);
    await nginxErrors(a);
    await limits();

    // docs/API.md promises compact JSON: every route's answers and the
    // stream's events (chat's, written by PostgreSQL, made so by nginx)
    const places = [...loose];
    ok(places.length === 0,
       'every JSON answer and stream event is compact (docs/API.md)',
       ...places);

    const missing = [];
    for (const op of operations()) {
        if (![...exercised].some((e) => e.startsWith(op + ' 2') ||
                                        e.startsWith(op + ' 1'))) {
            missing.push(op);
        }
    }
    ok(missing.length === 0,
       'every operation of the document was answered with success',
       ...missing);
    note('statuses exercised: ' + exercised.size);
});

// every row "| METHOD /path |" of the contract has an operation here
function contract() {
    const file = path.join(path.dirname(FILE), '..', '..', 'shared',
                           'API.md');
    if (!fs.existsSync(file)) {
        note('no ../shared/API.md here: the contract is not compared');
        return;
    }
    const shape = (p) => p.replace(/\{[^}]+\}/g, '{}');
    const ours = new Set(operations().map((o) => {
        const [m, p] = o.split(' ');
        return m + ' ' + shape(p);
    }));
    const rows = fs.readFileSync(file, 'utf8')
        .matchAll(/^\| (GET|POST|PUT|PATCH|DELETE) ([^|]+?) \|/gm);
    const lacking = [];
    let n = 0;

    for (const [, method, cell] of rows) {
        // "/v1/users/{id}/followers, /following (auth)": two paths
        let last = '';
        for (let p of cell.replace(/\s*\(.*\)$/, '').split(/,\s*/)) {
            if (last && p.split('/').length === 2) {
                p = last.replace(/\/[^/]+$/, '') + p;
            }
            last = p;
            n++;
            if (!ours.has(method.toLowerCase() + ' ' + shape(p))) {
                lacking.push(method + ' ' + p);
            }
        }
    }
    ok(n > 30 && lacking.length === 0,
       'every endpoint of the contract (' + n + ' rows) is documented',
       ...lacking);
}

// the checker refuses what disagrees with the document
function refuses() {
    const post = {
        id: '1', author: {id: '2', username: 'someone', display_name: 'S'},
        text: 'hello', created_at: '2026-01-01T00:00:00.000Z',
        reply_to_id: null, share_of: null, likes_count: 0, shares_count: 0,
        replies_count: 0, liked: false, shared: false,
    };
    const answer = (status, body, extra = {}) => ({
        status, body: JSON.stringify(body),
        headers: {'content-type': 'application/json; charset=utf-8',
                  'x-request-id': 'abc', ...extra},
    });
    const cases = [
        ['a post without "liked"', answer(200, {...post, liked: undefined})],
        ['a post with a field more', answer(200, {...post, views: 3})],
        ['a numeric id', answer(200, {...post, id: 1})],
        ['a timestamp without milliseconds',
         answer(200, {...post, created_at: '2026-01-01T00:00:00Z'})],
        ['an undocumented status', answer(302, post)],
        ['no X-Request-Id', {...answer(200, post), headers: {
            'content-type': 'application/json; charset=utf-8'}}],
        ['an error of another shape', answer(404, {error: 'not_found'})],
        ['fields on a 404', answer(404, {error: {
            code: 'not_found', message: 'x', request_id: 'abc',
            fields: {id: 'x'}}})],
    ];
    ok(check('GET', '/v1/posts/1', answer(200, post)).length === 0,
       'the checker passes a good post');
    for (const [what, a] of cases) {
        ok(check('GET', '/v1/posts/1', a).length > 0,
           'the checker refuses ' + what);
    }
    ok(!isCompact(JSON.stringify(post, null, 1)) &&
       isCompact(JSON.stringify(post)), 'spaced JSON is told from compact');
}

async function users() {
    await call('GET', '/healthz', {}, 200);
    await call('GET', '/readyz', {}, 200);
    await call('GET', '/metrics', {}, 200);

    const a = await signup('oa_a_' + tag);
    const b = await signup('oa_b_' + tag);
    await call('POST', '/v1/users', {what: 'taken', json: {
        username: a.username, email: 'x' + a.email,
        password: 'correct horse'}}, 409);
    await call('POST', '/v1/users', {what: 'invalid', json: {
        username: 'x', email: 'nope', password: 'short'}}, 422);
    await call('POST', '/v1/users', {what: 'malformed', raw: '{"a":',
        headers: {'Content-Type': 'application/json'}}, 400);
    await call('POST', '/v1/users', {what: 'too large',
        raw: 'x'.repeat(1024 * 1024 + 1),
        headers: {'Content-Type': 'application/json'}}, 413);

    const r = await call('POST', '/oauth/token', {what: 'refresh', form: {
        grant_type: 'refresh_token', refresh_token: a.refresh}}, 200);
    a.token = r.json.access_token;
    await call('POST', '/oauth/token', {what: 'wrong password', form: {
        grant_type: 'password', username: a.username,
        password: 'wrong password'}}, 400);
    await call('POST', '/oauth/token', {what: 'JSON', json: {
        grant_type: 'nonsense'}}, 400);
    const spare = await call('POST', '/oauth/token', {what: 'spare', form: {
        grant_type: 'password', username: b.username,
        password: 'correct horse'}}, 200);
    await call('POST', '/oauth/revoke', {form: {
        token: spare.json.refresh_token}}, 200);
    await call('POST', '/oauth/revoke', {what: 'no token', form: {}}, 400);

    await call('GET', '/v1/users/me', {token: a.token}, 200);
    await call('GET', '/v1/users/me', {what: 'no token'}, 401);
    await call('GET', '/v1/users/me', {what: 'bad token', token: 'x.y.z'},
               401);
    await call('PATCH', '/v1/users/me', {token: a.token, json: {
        display_name: 'Ann', bio: 'Writes <b>HTML</b> & "quotes"'}}, 200);
    await call('PATCH', '/v1/users/me', {what: 'bio too long',
        token: a.token, json: {bio: 'x'.repeat(501)}}, 422);
    await call('PATCH', '/v1/users/me', {what: 'not an object',
        token: a.token, json: [1]}, 422);

    await call('GET', '/v1/users/' + a.id, {}, 200);
    await call('GET', '/v1/users/@' + b.username, {token: a.token}, 200);
    await call('GET', '/v1/users/@nobody_' + tag, {}, 404);
    await call('POST', '/v1/users/' + b.id + '/follow', {token: a.token},
               200);
    await call('POST', '/v1/users/' + a.id + '/follow', {token: b.token},
               200);
    await call('POST', '/v1/users/' + a.id + '/follow', {what: 'oneself',
        token: a.token}, 422);
    await call('DELETE', '/v1/users/' + b.id + '/follow', {token: a.token},
               200);
    await call('POST', '/v1/users/' + b.id + '/follow', {token: a.token},
               200);
    await call('GET', '/v1/users/' + a.id + '/followers?limit=1', {}, 200);
    await call('GET', '/v1/users/' + a.id + '/following', {}, 200);
    await call('GET', '/v1/users/' + a.id + '/following?limit=0',
               {what: 'limit=0'}, 422);
    return [a, b];
}

async function posts(a, b) {
    const key = {'Idempotency-Key': 'oa-' + tag};
    const p = await call('POST', '/v1/posts', {token: a.token, headers: key,
        json: {text: 'Hello @' + b.username + ' <img src=x> ✓'}}, 201);
    const again = await call('POST', '/v1/posts', {what: 'same key',
        token: a.token, headers: key, json: {text: 'other'}}, 201);
    is(again.body, p.body, 'a repeated Idempotency-Key answers the first body');
    await call('POST', '/v1/posts', {what: 'long key', token: a.token,
        headers: {'Idempotency-Key': 'k'.repeat(65)}, json: {text: 'x'}},
        422);
    await call('POST', '/v1/posts', {what: 'no token', json: {text: 'x'}},
               401);
    await call('POST', '/v1/posts', {what: 'empty', token: a.token,
        json: {text: ''}}, 422);
    const id = p.json.id;

    await call('POST', '/v1/posts', {what: 'reply', token: b.token,
        json: {text: 'a reply', reply_to_id: id}}, 201);
    await call('GET', '/v1/posts/' + id, {}, 200);
    await call('GET', '/v1/posts/' + id, {token: b.token}, 200);
    await call('GET', '/v1/posts/1', {}, 404);
    await call('POST', '/v1/posts/' + id + '/like', {token: b.token}, 200);
    await call('DELETE', '/v1/posts/' + id + '/like', {token: b.token}, 200);
    await call('POST', '/v1/posts/' + id + '/like', {token: b.token}, 200);
    await call('POST', '/v1/posts/' + id + '/share', {token: b.token}, 201);
    await call('POST', '/v1/posts/' + id + '/share', {token: b.token}, 200);
    await call('DELETE', '/v1/posts/' + id + '/share', {token: b.token},
               204);
    await call('POST', '/v1/posts/' + id + '/share', {token: b.token}, 201);
    await call('GET', '/v1/posts/' + id + '/replies', {}, 200);
    await call('GET', '/v1/posts/' + id + '/likes', {}, 200);
    await call('GET', '/v1/users/' + a.id + '/posts', {token: b.token},
               200);
    await call('GET', '/v1/users/@' + b.username + '/posts?limit=1', {},
               200);
    await call('GET', '/v1/feed', {token: a.token}, 200);
    await call('GET', '/v1/feed?limit=1', {token: b.token}, 200);
    await call('GET', '/v1/feed?since_id=' + id, {token: b.token}, 200);
    await call('GET', '/v1/feed?max_id=x', {what: 'bad cursor',
        token: b.token}, 422);

    const n = await call('GET', '/v1/notifications', {token: a.token}, 200);
    await call('GET', '/v1/notifications?limit=1', {token: a.token}, 200);
    await call('POST', '/v1/notifications/read', {token: a.token,
        json: {up_to_id: n.json.items[0].id}}, 204);
    await call('POST', '/v1/notifications/read', {what: 'no id',
        token: a.token, json: {}}, 422);

    const doomed = await call('POST', '/v1/posts', {what: 'to delete',
        token: a.token, json: {text: 'soon gone'}}, 201);
    await call('DELETE', '/v1/posts/' + doomed.json.id, {what: 'not mine',
        token: b.token}, 403);
    await call('DELETE', '/v1/posts/' + doomed.json.id, {token: a.token},
               204);
    await call('GET', '/v1/posts/' + doomed.json.id, {what: 'deleted'}, 404);
    return id;
}

async function chat(a, b) {
    const c = await call('POST', '/v1/conversations', {token: a.token,
        json: {member_ids: [b.id]}}, 201);
    await call('POST', '/v1/conversations', {what: 'again', token: b.token,
        json: {member_ids: [a.id]}}, 200);
    const g = await call('POST', '/v1/conversations', {what: 'group',
        token: a.token, json: {member_ids: [b.id], title: 'Group ' + tag}},
        201);
    await call('POST', '/v1/conversations', {what: 'nobody',
        token: a.token, json: {member_ids: []}}, 422);
    const gid = g.json.id;
    const id = c.json.id;

    const m = await call('POST', '/v1/conversations/' + id + '/messages', {
        token: a.token, headers: {'Idempotency-Key': 'm-' + tag},
        json: {text: 'hi <b>there</b>'}}, 201);
    await call('POST', '/v1/conversations/' + id + '/messages', {
        what: 'empty', token: a.token, json: {text: ''}}, 422);
    await call('GET', '/v1/conversations', {token: b.token}, 200);
    await call('GET', '/v1/conversations?limit=1', {token: a.token}, 200);
    await call('GET', '/v1/conversations/' + id, {token: b.token}, 200);
    await call('GET', '/v1/conversations/' + id + '/messages',
               {token: b.token}, 200);
    await call('POST', '/v1/conversations/' + id + '/read', {token: b.token,
        json: {message_id: m.json.id}}, 204);
    await call('POST', '/v1/conversations/' + id + '/read', {what: 'bad id',
        token: b.token, json: {message_id: 'x'}}, 422);

    const outsider = await signup('oa_c_' + tag);
    await call('GET', '/v1/conversations/' + id, {what: 'not a member',
        token: outsider.token}, 404);
    await call('POST', '/v1/conversations/' + gid + '/members', {
        token: a.token, json: {user_ids: [outsider.id]}}, 200);
    await call('POST', '/v1/conversations/' + gid + '/members', {
        what: 'not admin', token: b.token, json: {user_ids: [b.id]}}, 403);
    await call('DELETE', '/v1/conversations/' + gid + '/members/' + a.id, {
        what: 'not admin', token: b.token}, 403);
    await call('DELETE', '/v1/conversations/' + gid + '/members/' +
               outsider.id, {token: a.token}, 204);
    await call('GET', '/v1/conversations/' + gid + '/messages?limit=1',
               {token: b.token}, 200);
    return id;
}

// the stream's events over WebSocket and SSE against the event schemas
async function stream(a, b, cid) {
    const path = '/v1/stream?access_token=' + encodeURIComponent(b.token);
    const hs = await handshake(path);
    const problems = check('GET', '/v1/stream', {...hs, body: ''});
    ok(hs.status === 101 && problems.length === 0,
       'GET /v1/stream (WebSocket) -> 101 matches docs/openapi.yaml',
       hs.status, ...problems);

    const bad = await handshake(path, 'Sec-WebSocket-Version: 8\r\n');
    const body = await new Promise((resolve) => {
        let text = bad.rest.toString();
        bad.socket.on('data', (d) => {
            text += d;
        });
        bad.socket.on('end', () => resolve(text));
        setTimeout(() => resolve(text), 2000);
    });
    bad.socket.destroy();
    const len = Number(bad.headers['content-length']);
    const problems426 = check('GET', '/v1/stream',
                              {...bad, body: body.slice(0, len)});
    ok(bad.status === 426 && problems426.length === 0,
       'GET /v1/stream (WebSocket version 8) -> 426 matches the document',
       bad.status, ...problems426);
    await call('GET', '/v1/stream', {what: 'no token',
        headers: {Accept: 'text/event-stream'}}, 401);
    await call('GET', '/v1/stream?since=x', {what: 'bad since',
        token: b.token, headers: {Accept: 'text/event-stream'}}, 422);

    const ws = websocket(hs);
    const events = sse('/v1/stream', b.token);
    const es = await events;
    const sseProblems = check('GET', '/v1/stream', {...es, body: ''});
    ok(es.status === 200 && sseProblems.length === 0,
       'GET /v1/stream (SSE) -> 200 matches docs/openapi.yaml',
       ...sseProblems);

    // a's typing (a WebSocket of a's), a message, a read marker, a like
    const hsA = await handshake('/v1/stream?access_token=' +
                                encodeURIComponent(a.token));
    const wsA = websocket(hsA);
    const signal = {type: 'typing', conversation_id: cid};
    ok(validate('/components/schemas/TypingSignal', signal).length === 0,
       'the typing signal sent matches TypingSignal');
    await new Promise((resolve) => setTimeout(resolve, 200));
    wsA.send(JSON.stringify(signal));
    const m = await call('POST', '/v1/conversations/' + cid + '/messages', {
        what: 'for the stream', token: a.token, json: {text: 'live'}}, 201);
    await call('POST', '/v1/conversations/' + cid + '/read', {
        what: 'for the stream', token: a.token,
        json: {message_id: m.json.id}}, 204);

    const seen = {ws: new Set(), sse: new Set()};
    const want = ['typing', 'message.created', 'conversation.read'];
    for (let i = 0; i < 20 && !want.every((e) => seen.ws.has(e)); i++) {
        const text = await ws.next();
        const ev = JSON.parse(text);
        seen.ws.add(ev.event);
        const p = validate('/components/schemas/WebSocketEvent', ev);
        compact('a WebSocket event', text);
        ok(p.length === 0,
           'a WebSocket ' + ev.event + ' event matches WebSocketEvent',
           ...p, text);
    }
    for (let i = 0; i < 20 && !want.every((e) => seen.sse.has(e)); i++) {
        const ev = await es.next();
        const json = JSON.parse(ev.data);
        seen.sse.add(json.event);
        const p = validate('/components/schemas/ServerSentEvent', json);
        const idOk = ['typing', 'stream.reset'].includes(json.event)
            ? ev.id === undefined : /^[0-9]+$/.test(ev.id || '');
        ok(p.length === 0 && idOk,
           'an SSE ' + json.event + ' event matches ServerSentEvent',
           ...p, ev);
    }
    ok(want.every((e) => seen.ws.has(e) && seen.sse.has(e)),
       'typing, message.created and conversation.read came on both',
       [...seen.ws], [...seen.sse]);

    // a notification (a's like of b's post) and a stream.reset
    const bp = await call('POST', '/v1/posts', {what: 'by b', token: b.token,
        json: {text: 'like me'}}, 201);
    await call('POST', '/v1/posts/' + bp.json.id + '/like', {
        what: 'for the stream', token: a.token}, 200);
    for (let i = 0; i < 10; i++) {
        const text = await ws.next();
        const ev = JSON.parse(text);
        if (ev.event === 'notification.created') {
            const p = validate('/components/schemas/WebSocketEvent', ev);
            ok(p.length === 0, 'a notification.created event matches',
               ...p, text);
            break;
        }
    }
    const old = await handshake(path + '&since=1');
    const reset = websocket(old);
    const first = JSON.parse(await reset.next());
    ok(first.event === 'stream.reset' &&
       validate('/components/schemas/WebSocketEvent', first).length === 0,
       'a since= the server never issued starts with stream.reset', first);

    for (const s of [ws, wsA, reset]) {
        s.close();
    }
    es.close();
}

// nginx's own errors (unknown paths, wrong methods) are in the shape too
async function nginxErrors(a) {
    for (const [method, url, status] of [['GET', '/v1/nope', 404],
                                         ['PUT', '/v1/feed', 405],
                                         ['GET', '/assets/nope.js', 404]]) {
        const r = await http(method, url, {token: a.token});
        const p = validate('/components/schemas/Error', JSON.parse(r.body));
        ok(r.status === status && p.length === 0 &&
           JSON.parse(r.body).error.request_id === r.headers['x-request-id'],
           method + ' ' + url + ' -> ' + status + ' is an Error', ...p,
           r.body);
    }
}

// the login limit (10 a minute): the 429 and its headers
async function limits() {
    let r;
    for (let i = 0; i < 30; i++) {
        r = await http('POST', '/oauth/token', {form: {
            grant_type: 'password', username: 'nobody_' + tag,
            password: 'wrong password'}});
        if (r.status === 429) {
            break;
        }
        check('POST', '/oauth/token', r);
    }
    const p = check('POST', '/oauth/token', r);
    ok(r.status === 429 && p.length === 0,
       'POST /oauth/token -> 429 matches docs/openapi.yaml', ...p, r.body);
}
