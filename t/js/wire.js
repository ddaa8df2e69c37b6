// Requests as they are on the wire, for the OpenAPI check: an HTTP
// request whose answer is kept whole (status, headers, text), a raw
// WebSocket handshake, a small WebSocket client (RFC 6455: masked frames
// out, text frames in) and a Server-Sent Events reader.

import crypto from 'node:crypto';
import net from 'node:net';

export const BASE = process.env.SOCIAL_BASE_URL || 'http://127.0.0.1:8080';
const {hostname, port} = new URL(BASE);

// http('POST', '/v1/posts', {json, form, raw, token, headers})
export async function http(method, path, o = {}) {
    const headers = {...o.headers};
    let body;

    if (o.token) {
        headers.Authorization = 'Bearer ' + o.token;
    }
    if (o.json !== undefined) {
        headers['Content-Type'] = 'application/json';
        body = JSON.stringify(o.json);
    } else if (o.form) {
        body = new URLSearchParams(o.form);
    } else if (o.raw !== undefined) {
        body = o.raw;
    }
    const res = await fetch(BASE + path, {method, headers, body});
    return {
        status: res.status,
        headers: Object.fromEntries(res.headers),
        body: await res.text(),
    };
}

// sends a request as given and reads the answer's head (a WebSocket
// handshake); resolves with {status, headers, socket, rest}
export function raw(request) {
    return new Promise((resolve, reject) => {
        const socket = net.connect(Number(port), hostname);
        let buf = Buffer.alloc(0);

        socket.once('error', reject);
        socket.on('data', function head(chunk) {
            buf = Buffer.concat([buf, chunk]);
            const end = buf.indexOf('\r\n\r\n');
            if (end < 0) {
                return;
            }
            socket.off('data', head);
            const lines = buf.subarray(0, end).toString('latin1')
                .split('\r\n');
            const headers = {};
            for (const l of lines.slice(1)) {
                const i = l.indexOf(':');
                headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
            }
            resolve({status: Number(lines[0].split(' ')[1]), headers, socket,
                     rest: buf.subarray(end + 4)});
        });
        socket.write(request);
    });
}

export function handshake(path, extra = '') {
    const key = crypto.randomBytes(16).toString('base64');
    return raw('GET ' + path + ' HTTP/1.1\r\n' +
               'Host: ' + hostname + ':' + port + '\r\n' +
               'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
               'Sec-WebSocket-Key: ' + key + '\r\n' +
               (extra || 'Sec-WebSocket-Version: 13\r\n') + '\r\n');
}

// A WebSocket on an answered handshake: messages() yields text messages;
// send(text) sends a masked text frame.
export function websocket(hs) {
    const queue = [];
    const waiting = [];
    let buf = hs.rest;

    function frames() {
        for (;;) {
            if (buf.length < 2) {
                return;
            }
            let len = buf[1] & 0x7f, at = 2;
            if (len === 126) {
                if (buf.length < 4) {
                    return;
                }
                len = buf.readUInt16BE(2);
                at = 4;
            } else if (len === 127) {
                if (buf.length < 10) {
                    return;
                }
                len = Number(buf.readBigUInt64BE(2));
                at = 10;
            }
            if (buf.length < at + len) {
                return;
            }
            const opcode = buf[0] & 0x0f;
            const payload = buf.subarray(at, at + len);
            buf = buf.subarray(at + len);
            if (opcode === 1) {
                const text = payload.toString('utf8');
                const w = waiting.shift();
                if (w) {
                    w(text);
                } else {
                    queue.push(text);
                }
            } else if (opcode === 9) {
                send(payload, 0xa);             // pong
            }
        }
    }

    function send(data, opcode = 1) {
        const payload = Buffer.from(data);
        const mask = crypto.randomBytes(4);
        const head = payload.length < 126
            ? Buffer.from([0x80 | opcode, 0x80 | payload.length])
            : Buffer.from([0x80 | opcode, 0x80 | 126,
                           payload.length >> 8, payload.length & 0xff]);
        const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
        hs.socket.write(Buffer.concat([head, mask, masked]));
    }

    hs.socket.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        frames();
    });
    frames();

    return {
        send,
        next(timeout = 10000) {
            if (queue.length) {
                return Promise.resolve(queue.shift());
            }
            return new Promise((resolve, reject) => {
                const t = setTimeout(() => reject(new Error(
                    'no WebSocket message in ' + timeout + ' ms')), timeout);
                waiting.push((text) => {
                    clearTimeout(t);
                    resolve(text);
                });
            });
        },
        close() {
            send(Buffer.from([0x03, 0xe8]), 8);
            hs.socket.end();
        },
    };
}

// Server-Sent Events: {status, headers, next(): {id, data}, close()}
export async function sse(path, token) {
    const abort = new AbortController();
    const res = await fetch(BASE + path, {
        headers: {Accept: 'text/event-stream',
                  ...(token ? {Authorization: 'Bearer ' + token} : {})},
        signal: abort.signal,
    });
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let text = '', pending = null;

    return {
        status: res.status,
        headers: Object.fromEntries(res.headers),
        async next(timeout = 10000) {
            const deadline = Date.now() + timeout;
            for (;;) {
                const end = text.indexOf('\n\n');
                if (end >= 0) {
                    const block = text.slice(0, end);
                    text = text.slice(end + 2);
                    const ev = {};
                    for (const line of block.split('\n')) {
                        if (line.startsWith('id: ')) {
                            ev.id = line.slice(4);
                        } else if (line.startsWith('data: ')) {
                            ev.data = line.slice(6);
                        }
                    }
                    if (ev.data !== undefined) {
                        return ev;
                    }
                    continue;                   // a heartbeat
                }
                // a read outlives a timeout: the next call takes it over
                pending ??= reader.read();
                const chunk = await Promise.race([
                    pending,
                    new Promise((resolve) =>
                        setTimeout(resolve, deadline - Date.now())),
                ]);
                if (!chunk || chunk.done) {
                    throw new Error('no SSE event in ' + timeout + ' ms');
                }
                pending = null;
                text += decoder.decode(chunk.value, {stream: true});
            }
        },
        close() {
            abort.abort();
        },
    };
}
