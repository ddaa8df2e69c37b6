// Headless Chromium (Debian's package) driven by puppeteer-core: no
// browser download, a fresh profile per run, no background connections
// (this machine's network is closed), the DevTools protocol over a pipe
// (no port).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

export const BASE = process.env.SOCIAL_BASE_URL || 'http://127.0.0.1:8080';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 20000;

// waits poll on a timer: the default (animation frames) stalls in a
// background tab, which renders no frames
export const POLL = {polling: 100};

export async function launch() {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'social-chromium-'));
    const browser = await puppeteer.launch({
        executablePath: CHROMIUM,
        headless: true,
        pipe: true,
        protocolTimeout: 60000,
        userDataDir: profile,
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic',
               '--no-first-run', '--disable-background-networking',
               '--disable-component-update', '--disable-sync',
               '--disable-dev-shm-usage'],
    });
    const close = browser.close.bind(browser);
    browser.close = async () => {
        await close();
        fs.rmSync(profile, {recursive: true, force: true});
    };
    return browser;
}

// A page in a context of its own (its own storage: another person).
// page.problems collects console errors (a CSP refusal is one), page
// errors and failed requests of the page's own files; page.urls every
// URL it requested (WebSockets aside).
export async function person(browser, {width = 1000, height = 800,
                                       context = null} = {}) {
    const ctx = context || await browser.createBrowserContext();
    const page = await ctx.newPage();

    // the browser's own reports of failed connections (nginx restarting)
    // and of API error statuses are not the page's problems
    const network = /^Failed to load resource|^WebSocket connection to .* failed/;

    page.problems = [];
    page.on('console', (m) => {
        if (m.type() === 'error' && !network.test(m.text())) {
            page.problems.push('console: ' + m.text());
        }
    });
    page.on('pageerror', (e) => page.problems.push('error: ' + e.message));
    page.urls = [];
    page.on('request', (r) => page.urls.push(r.url()));
    page.on('dialog', (d) => d.accept());
    page.setDefaultTimeout(TIMEOUT);
    await page.setViewport({width, height});
    page.context = ctx;
    return page;
}

export async function open(page, hash = '') {
    await page.goto(BASE + '/' + hash, {waitUntil: 'load'});
}

export async function go(page, hash) {
    await page.evaluate((h) => {
        location.hash = h;
    }, hash);
}

// types into an emptied field; no click, so it works in a background tab
// too (a click waits for the element to be scrolled into view, and a
// background tab renders no frames)
export async function type(page, selector, text) {
    const el = await page.waitForSelector(selector);
    await el.evaluate((e) => {
        e.value = '';
        e.focus();
    });
    await el.type(text);
}

// focuses a control and presses Enter (the keyboard, not the mouse)
export async function press(page, selector) {
    const el = await page.waitForSelector(selector);
    await el.focus();
    await page.keyboard.press('Enter');
}

// signs up through the form and waits for the home feed
export async function signup(page, username, password = 'correct horse') {
    await open(page, '#/signup');
    await type(page, 'input[name=username]', username);
    await type(page, 'input[name=email]', username + '@example.com');
    await type(page, 'input[name=password]', password);
    await type(page, 'input[name=display_name]', 'Ms ' + username);
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => location.hash === '#/' &&
        document.querySelector('h1')?.textContent === 'Home', POLL);
}

// waits for a selector whose text contains `text`; returns the element
export async function waitText(page, selector, text, timeout = TIMEOUT) {
    const handle = await page.waitForFunction((s, t) =>
        [...document.querySelectorAll(s)]
            .find((e) => e.textContent.includes(t)),
        {...POLL, timeout}, selector, text);
    return handle.asElement();
}

export async function session(page) {
    return page.evaluate(() =>
        JSON.parse(localStorage.getItem('ngx_social.session')));
}

// a request to the API outside the browser, as the page's user
export async function api(token, method, url, body, headers = {}) {
    const res = await fetch(BASE + url, {
        method,
        headers: {
            ...(token ? {Authorization: 'Bearer ' + token} : {}),
            ...(body ? {'Content-Type': 'application/json'} : {}),
            ...headers,
        },
        body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    return {status: res.status, headers: res.headers,
            body: text ? JSON.parse(text) : null};
}
