// The node side of t/common/Social/Node.pm: results as "ok - ..." and
// "not ok - ..." lines (with "# " diagnostics) on stdout, which the .t file
// turns into its own TAP; "control: WORD" asks the .t file to act (e.g.
// restart nginx) and waits for its "done" on stdin.

import readline from 'node:readline';

let failed = 0;
const replies = [];
const waiting = [];

const input = readline.createInterface({input: process.stdin});
input.on('line', (line) => {
    const w = waiting.shift();
    if (w) {
        w(line);
    } else {
        replies.push(line);
    }
});

export function ok(cond, name, ...diag) {
    console.log((cond ? 'ok - ' : 'not ok - ') + name);
    if (!cond) {
        failed++;
        for (const d of diag) {
            const text = typeof d === 'string' ? d
                       : JSON.stringify(d, null, 2);
            for (const line of String(text).split('\n')) {
                console.log('#   ' + line);
            }
        }
    }
    return cond;
}

export function is(got, want, name) {
    return ok(got === want, name, 'got:  ' + JSON.stringify(got),
              'want: ' + JSON.stringify(want));
}

export function note(text) {
    console.log('# ' + text);
}

// the .t file acts, then answers "done" (or an error message)
export async function control(word) {
    console.log('control: ' + word);
    const line = replies.shift() ??
                 await new Promise((resolve) => waiting.push(resolve));
    if (line !== 'done') {
        throw new Error('control ' + word + ': ' + line);
    }
}

// runs the test body; a throw is a failure; exits non-zero on failures
export async function run(body) {
    try {
        await body();
    } catch (err) {
        ok(false, 'the test ran to its end', err.stack || String(err));
    }
    input.close();
    process.exitCode = failed ? 1 : 0;
}
