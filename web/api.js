// The HTTP API: requests with the session's bearer token, the OAuth2
// password and refresh grants, and the session kept in localStorage.
//
// Tokens travel only in the Authorization header and in the bodies of
// /oauth requests, never in a URL (the stream's ?access_token= is the one
// exception the contract makes, stream.js).  A refresh token rotates on
// every use and presenting a rotated one ends the whole session, so tabs
// sharing the session refresh one at a time (a Web Lock) and a tab that
// waited takes the pair the other tab stored.

const STORE = 'ngx_social.session';

// refresh this long before the access token expires: 30 s, or a quarter
// of a shorter lifetime
function early(s) {
    return Math.min(30 * 1000, s.lifetime / 4);
}

export class ApiError extends Error {
    constructor(status, body, requestId) {
        const e = body && body.error;
        let code, message, fields;

        if (e && typeof e === 'object') {
            ({code, message, fields} = e);
        } else if (typeof e === 'string') {
            code = e;                           // OAuth (RFC 6749 5.2)
            message = body.error_description || e;
        } else {
            code = 'http_' + status;
            message = 'The server answered ' + status;
        }
        super(message);
        this.status = status;
        this.code = code;
        this.fields = fields;
        this.requestId = requestId;
    }
}

function offline(err) {
    const e = new ApiError(0, {error: {code: 'network',
        message: 'The server cannot be reached (' + err.message + ')'}});
    e.cause = err;
    return e;
}

// ------------------------------------------------------------- session

const listeners = new Set();

export const session = {
    get() {
        try {
            return JSON.parse(localStorage.getItem(STORE));
        } catch {
            return null;
        }
    },

    save(s) {
        localStorage.setItem(STORE, JSON.stringify(s));
    },

    clear(reason) {
        localStorage.removeItem(STORE);
        for (const f of listeners) {
            f(reason);
        }
    },

    // f(reason) when the session ends (logout, revoked, another tab)
    onEnd(f) {
        listeners.add(f);
    },
};

window.addEventListener('storage', (ev) => {
    if (ev.key === STORE && ev.newValue === null) {
        for (const f of listeners) {
            f('You logged out in another tab.');
        }
    }
});

function stored(tokens, user) {
    return {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        expires_at: Date.now() + tokens.expires_in * 1000,
        lifetime: tokens.expires_in * 1000,
        user,
    };
}

// ---------------------------------------------------------------- OAuth

async function grant(params) {
    let res;

    try {
        res = await fetch('/oauth/token', {
            method: 'POST',
            headers: {'Content-Type': 'application/x-www-form-urlencoded'},
            body: new URLSearchParams(params),
            cache: 'no-store',
        });
    } catch (err) {
        throw offline(err);
    }
    const body = await res.json().catch(() => null);
    if (!res.ok) {
        throw new ApiError(res.status, body, res.headers.get('X-Request-Id'));
    }
    return body;
}

export async function login(username, password) {
    const tokens = await grant({grant_type: 'password', username, password});
    session.save(stored(tokens, null));
    const me = await api('GET', '/v1/users/me');
    session.save({...session.get(), user: me});
    return me;
}

// Changes the password and signs in again with the new one.  The change
// revokes every refresh token and voids the access tokens issued up to
// its second, so it holds the refresh lock until the new pair is stored:
// a refresh or a refused request meanwhile, in any tab, waits and takes
// the new pair instead of ending the session with a revoked token.
export async function changePassword(current, password) {
    const token = await accessToken();
    const user = me();

    await withLock(async () => {
        const revoked = session.get().refresh_token;

        await answer(await send('PATCH', '/v1/users/me',
                                {password, current_password: current},
                                {}, token));
        // the next second: a token issued in the change's is void
        await sleep(1100);
        const tokens = await grant({grant_type: 'password',
                                    username: user.username, password});
        session.save(stored(tokens, user));
        await replaced(revoked);
    });
}

export async function logout() {
    const s = session.get();

    if (s) {
        // revoking the refresh token ends its family; the access token
        // stops working at once too
        await Promise.allSettled([
            fetch('/oauth/revoke', {method: 'POST',
                body: new URLSearchParams({token: s.refresh_token})}),
            fetch('/oauth/revoke', {method: 'POST',
                body: new URLSearchParams({token: s.access_token})}),
        ]);
    }
    session.clear('You are logged out.');
}

function withLock(f) {
    if (navigator.locks) {
        return navigator.locks.request(STORE, f);
    }
    return f();
}

// localStorage reaches the other tabs a little after the lock is
// released, so a tab that replaced the refresh token also holds, for 10
// s, a lock named after the old one: a tab that still reads the old token
// sees it and waits for the new pair instead of presenting a rotated (or
// revoked) token, which would end the session.
const REPLACED = STORE + '.replaced ';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function mark(token) {
    const hash = await crypto.subtle.digest('SHA-256',
                                            new TextEncoder().encode(token));
    return REPLACED + Array.from(new Uint8Array(hash).slice(0, 8),
        (b) => b.toString(16).padStart(2, '0')).join('');
}

async function replaced(token) {
    if (!navigator.locks) {
        return;
    }
    const name = await mark(token);
    await new Promise((held) => {
        navigator.locks.request(name, () => {
            held();
            return sleep(10000);
        });
    });
}

// the session with the new pair, when another tab replaced s's refresh
// token (null otherwise)
async function replacement(s) {
    if (!navigator.locks) {
        return null;
    }
    const name = await mark(s.refresh_token);
    const {held} = await navigator.locks.query();

    if (held.some((l) => l.name === name)) {
        for (let i = 0; i < 200; i++) {
            const now = session.get();
            if (now && now.refresh_token !== s.refresh_token) {
                return now;
            }
            await sleep(50);
        }
    }
    return null;
}

// A new token pair for the session, unless another tab refreshed since
// `stale` (the access token that was refused or about to expire).
let refreshing = null;

function refresh(stale) {
    refreshing ??= withLock(async () => {
        const s = session.get();

        if (!s) {
            throw new ApiError(401, {error: {code: 'unauthorized',
                                             message: 'Please log in.'}});
        }
        if (s.access_token !== stale &&
            s.expires_at - Date.now() > early(s)) {
            return s;
        }
        const other = await replacement(s);
        if (other) {
            return other;
        }
        try {
            const tokens = await grant({grant_type: 'refresh_token',
                                        refresh_token: s.refresh_token});
            const next = stored(tokens, s.user);
            session.save(next);
            await replaced(s.refresh_token);
            return next;
        } catch (err) {
            if (err.status === 400 || err.status === 401) {
                session.clear('Your session ended: please log in again.');
            }
            throw err;
        }
    }).finally(() => {
        refreshing = null;
    });
    return refreshing;
}

// the access token, refreshed first when it is about to expire
export async function accessToken() {
    let s = session.get();

    if (s && s.expires_at - Date.now() < early(s)) {
        s = await refresh(s.access_token);
    }
    return s && s.access_token;
}

export function me() {
    const s = session.get();
    return s && s.user;
}

export function setMe(user) {
    session.save({...session.get(), user});
}

// --------------------------------------------------------------- requests

// api('POST', '/v1/posts', {text}, {'Idempotency-Key': k}) -> JSON or null
export async function api(method, path, body, headers) {
    const token = await accessToken();
    let res = await send(method, path, body, headers, token);

    if (res.status === 401 && token) {
        // expired early or revoked: one refresh, one retry
        const s = await refresh(token);
        res = await send(method, path, body, headers, s.access_token);
    }
    return answer(res);
}

// an answer's JSON (null for 204), or its error thrown
async function answer(res) {
    if (res.status === 204) {
        return null;
    }
    const json = await res.json().catch(() => null);
    if (!res.ok) {
        throw new ApiError(res.status, json, res.headers.get('X-Request-Id'));
    }
    return json;
}

async function send(method, path, body, headers, token) {
    const h = {...headers};

    if (token) {
        h.Authorization = 'Bearer ' + token;
    }
    if (body !== undefined) {
        h['Content-Type'] = 'application/json';
    }
    try {
        return await fetch(path, {
            method,
            headers: h,
            body: body === undefined ? undefined : JSON.stringify(body),
            cache: 'no-store',
        });
    } catch (err) {
        throw offline(err);
    }
}

// a query string from the defined values: query({limit: 20, max_id})
export function query(params) {
    const q = new URLSearchParams();

    for (const [k, v] of Object.entries(params)) {
        if (v !== undefined && v !== null) {
            q.set(k, v);
        }
    }
    const s = q.toString();
    return s ? '?' + s : '';
}

// a key for one write that may be retried (Idempotency-Key)
export function newKey() {
    if (crypto.randomUUID) {
        return crypto.randomUUID();
    }
    return Array.from(crypto.getRandomValues(new Uint8Array(16)),
                      (b) => b.toString(16).padStart(2, '0')).join('');
}
