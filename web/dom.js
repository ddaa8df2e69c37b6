// DOM helpers.  Every piece of text reaches the page as a text node:
// nothing here (or anywhere in the client) parses a string as HTML.

// h('a', {href: '#/', class: 'x', onclick: fn}, 'text', child, [more])
export function h(tag, attrs, ...children) {
    const el = document.createElement(tag);

    for (const [name, value] of Object.entries(attrs || {})) {
        if (value === undefined || value === null || value === false) {
            continue;
        }
        if (name.startsWith('on')) {
            el.addEventListener(name.slice(2), value);
        } else if (name === 'dataset') {
            Object.assign(el.dataset, value);
        } else {
            el.setAttribute(name, value === true ? '' : String(value));
        }
    }

    append(el, children);
    return el;
}

function append(el, children) {
    for (const c of children) {
        if (c === undefined || c === null || c === false) {
            continue;
        }
        if (Array.isArray(c)) {
            append(el, c);
        } else if (c instanceof Node) {
            el.append(c);
        } else {
            el.append(document.createTextNode(String(c)));
        }
    }
}

// replaces an element's children
export function fill(el, ...children) {
    el.replaceChildren();
    append(el, children);
    return el;
}

// A text with its @mentions as profile links (same rule as the server:
// 3-30 of [A-Za-z0-9_] not inside a word).
const MENTION = /(^|[^A-Za-z0-9_])@([A-Za-z0-9_]{3,30})(?![A-Za-z0-9_])/g;

export function richText(text) {
    const parts = [];
    let last = 0;

    for (const m of text.matchAll(MENTION)) {
        const at = m.index + m[1].length;
        parts.push(text.slice(last, at));
        parts.push(h('a', {href: '#/u/' + m[2]}, '@' + m[2]));
        last = at + 1 + m[2].length;
    }
    parts.push(text.slice(last));
    return parts;
}

const absolute = new Intl.DateTimeFormat(undefined,
                                         {dateStyle: 'medium',
                                          timeStyle: 'short'});
const relative = new Intl.RelativeTimeFormat(undefined, {numeric: 'auto'});

export function time(iso) {
    const t = new Date(iso);
    const s = Math.round((t.getTime() - Date.now()) / 1000);
    let label;

    if (s > -45) {
        label = 'just now';
    } else if (s > -3600) {
        label = relative.format(Math.round(s / 60), 'minute');
    } else if (s > -86400) {
        label = relative.format(Math.round(s / 3600), 'hour');
    } else {
        label = absolute.format(t);
    }
    return h('time', {datetime: iso, title: absolute.format(t)}, label);
}

// code points, as the API counts them
export function length(text) {
    let n = 0;
    for (const _ of text) {
        n++;
    }
    return n;
}

export function userLink(user) {
    return h('a', {href: '#/u/' + user.username, class: 'who'},
             h('strong', null, user.display_name || user.username),
             ' ', h('span', {class: 'handle'}, '@' + user.username));
}

// a "Load more" button that calls load(cursor) until the list ends
export function pager(load) {
    const button = h('button', {type: 'button', class: 'more'}, 'Load more');
    let cursor = null;

    button.addEventListener('click', async () => {
        button.disabled = true;
        try {
            set(await load(cursor));
        } catch (err) {
            report(err);
        } finally {
            button.disabled = false;
        }
    });

    function set(next) {
        cursor = next;
        button.hidden = !next;
    }

    return {button, set};
}

// Shows an error to the person: the API's message, its code and the
// request id (to quote in a bug report).  Nothing is swallowed silently.
export function report(err) {
    const box = document.getElementById('alerts');
    const detail = [err.code, err.requestId && 'request ' + err.requestId]
        .filter(Boolean).join(', ');
    const item = h('div', {class: 'alert'},
                   h('span', null, err.message || String(err)),
                   detail && h('small', null, ' (' + detail + ')'),
                   h('button', {type: 'button', class: 'dismiss',
                                'aria-label': 'Dismiss',
                                onclick: () => item.remove()}, '×'));

    if (err instanceof Error && !err.code) {
        console.error(err);             // a bug of the page: say where
    }
    box.append(item);
    while (box.children.length > 3) {
        box.firstElementChild.remove();
    }
}

// shows 422 fields next to a form's inputs (by name); returns whether
// every field had its input (else the caller shows the whole error)
export function fieldErrors(form, err) {
    const names = Object.keys(err.fields || {});

    for (const el of form.querySelectorAll('.field-error')) {
        el.remove();
    }
    for (const el of form.querySelectorAll('[aria-invalid]')) {
        el.removeAttribute('aria-invalid');
        el.removeAttribute('aria-describedby');
    }
    for (const name of names) {
        const input = form.elements.namedItem(name);
        if (!input) {
            return false;
        }
        input.setAttribute('aria-invalid', 'true');
        input.setAttribute('aria-describedby', input.id + '-error');
        input.after(h('span', {class: 'field-error', id: input.id + '-error'},
                      err.fields[name]));
    }
    return names.length > 0;
}

// a labelled input (or textarea, select): <p><label>..</label><input></p>
let fields = 0;

export function field(label, attrs, tag = 'input') {
    const id = 'f' + ++fields;
    return h('p', {class: 'field'}, h('label', {for: id}, label),
             h(tag, {id, ...attrs}));
}

// a form whose submit runs action(form); errors are shown (fields next to
// their inputs, the rest as an alert) and the submit button is disabled
// meanwhile
export function form(attrs, children, action) {
    const el = h('form', attrs, children);

    el.addEventListener('submit', async (ev) => {
        const submit = el.querySelector('[type=submit]');
        ev.preventDefault();
        if (submit) {
            submit.disabled = true;
        }
        try {
            await action(el);
            fieldErrors(el, {});
        } catch (err) {
            if (!fieldErrors(el, err)) {
                report(err);
            }
        } finally {
            if (submit) {
                submit.disabled = false;
            }
        }
    });
    return el;
}
