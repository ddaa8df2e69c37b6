// The live stream, GET /v1/stream: a WebSocket, or Server-Sent Events
// where WebSockets do not get through.
//
// Browsers cannot set headers on either, so the access token travels as
// ?access_token= (the only token in a URL; the server never logs it).
// Every reconnect passes ?since=<the last stream_id seen>, so the events
// sent while the page was disconnected (nginx restarted, the network
// dropped) arrive first, in order; "stream.reset" says they could not all
// be kept, and the page fetches its state again.  Reconnects back off
// from 0.5 s to 15 s.
//
// Events: 'event' (detail: {event, data, stream_id}), 'reset' (refetch),
// 'state' (detail: 'connecting' | 'open' | 'reconnecting' | 'closed').

import {accessToken, api} from './api.js';

const DELAYS = [500, 1000, 2000, 4000, 8000, 15000];

// an event's JSON (anything else is delivered as nothing)
function parse(data) {
    try {
        return JSON.parse(data);
    } catch {
        return {};
    }
}

export class Stream extends EventTarget {
    constructor() {
        super();
        this.state = 'closed';
        this.transport = 'websocket';
        this.lastId = null;         // the newest stream_id seen (a string)
        this.failures = 0;          // connection attempts failed in a row
        this.wsRefused = 0;         // WebSocket failures while HTTP works
        this.conn = null;
        this.timer = null;
        this.online = () => this.state === 'reconnecting' && this.now();
        window.addEventListener('online', this.online);
    }

    start() {
        if (this.state === 'closed') {
            this.connect();
        }
    }

    stop() {
        clearTimeout(this.timer);
        window.removeEventListener('online', this.online);
        if (this.conn) {
            this.conn.close();
            this.conn = null;
        }
        this.setState('closed');
    }

    // {"type":"typing"} reaches the other members (WebSocket only)
    typing(conversationId) {
        if (this.transport !== 'websocket' || this.state !== 'open') {
            return false;
        }
        this.conn.send(JSON.stringify({type: 'typing',
                                       conversation_id: conversationId}));
        return true;
    }

    setState(state) {
        this.state = state;
        this.dispatchEvent(new CustomEvent('state', {detail: state}));
    }

    now() {
        clearTimeout(this.timer);
        this.connect();
    }

    async url() {
        const token = await accessToken();
        const q = new URLSearchParams({access_token: token});

        if (this.lastId !== null) {
            q.set('since', this.lastId);
        }
        return '/v1/stream?' + q;
    }

    async connect() {
        let url;

        this.setState(this.failures ? 'reconnecting' : 'connecting');
        try {
            url = await this.url();
        } catch {
            return this.retry(false);
        }
        if (this.state === 'closed') {
            return;
        }
        if (this.transport === 'websocket') {
            this.openWebSocket(url);
        } else {
            this.openEventSource(url);
        }
    }

    openWebSocket(url) {
        const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
        let ws;

        try {
            ws = new WebSocket(scheme + location.host + url);
        } catch {
            this.transport = 'sse';
            return this.connect();
        }
        ws.onclose = this.attach(ws, (msg) => msg.stream_id);
    }

    openEventSource(url) {
        const es = new EventSource(url);

        // an event without an id: line keeps the previous lastEventId
        const lost = this.attach(es, (msg, ev) =>
            msg.event === 'typing' || msg.event === 'stream.reset'
                ? undefined : ev.lastEventId);

        es.onerror = () => {
            // EventSource would reconnect by itself with a stale token in
            // its URL: reconnect here instead, with a fresh one
            es.close();
            lost();
        };
    }

    // conn: a WebSocket or an EventSource; id(msg, ev): an event's stream
    // id.  Returns what to call when the connection ends.
    attach(conn, id) {
        let opened = false;

        this.conn = conn;
        conn.onopen = () => {
            opened = true;
            this.opened();
        };
        conn.onmessage = (ev) => {
            const msg = parse(ev.data);
            this.deliver(msg, id(msg, ev));
        };
        return () => {
            if (this.conn === conn) {
                this.conn = null;
                this.retry(opened);
            }
        };
    }

    opened() {
        this.failures = 0;
        this.wsRefused = 0;
        this.setState('open');
    }

    deliver(msg, id) {
        if (!msg.event) {
            return;
        }
        if (msg.event === 'stream.reset') {
            this.dispatchEvent(new CustomEvent('reset'));
            return;
        }
        if (id) {
            // ids may pass 2^53: compare them as BigInts; drop repeats
            if (this.lastId !== null && BigInt(id) <= BigInt(this.lastId)) {
                return;
            }
            this.lastId = id;
        }
        this.dispatchEvent(new CustomEvent('event', {detail: msg}));
    }

    async retry(wasOpen) {
        if (this.state === 'closed') {
            return;
        }
        if (!wasOpen) {
            this.failures++;
            await this.diagnose();
        }
        if (this.state === 'closed') {
            return;
        }
        const delay = wasOpen ? DELAYS[0]
                              : DELAYS[Math.min(this.failures,
                                                DELAYS.length - 1)];
        this.setState('reconnecting');
        this.timer = setTimeout(() => this.connect(),
                                delay * (1 + Math.random() / 4));
    }

    // A WebSocket that never opened while the API answers (the token is
    // good: a 401 would have refreshed it) is blocked on the way, e.g. by
    // a proxy: after two such failures, Server-Sent Events instead.
    async diagnose() {
        if (this.transport !== 'websocket') {
            return;
        }
        try {
            await api('GET', '/v1/users/me');
        } catch {
            return;
        }
        if (++this.wsRefused >= 2) {
            this.transport = 'sse';
        }
    }
}
