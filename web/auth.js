// Sign up and log in (the OAuth2 password grant).

import {api, login as signIn} from './api.js';
import {field, fill, form, h} from './dom.js';

export function login(root) {
    fill(root,
         h('h1', null, 'Log in'),
         form({class: 'card', 'aria-label': 'Log in'}, [
             field('Username or email', {name: 'username', required: true,
                                         autocomplete: 'username'}),
             field('Password', {name: 'password', type: 'password',
                                required: true,
                                autocomplete: 'current-password'}),
             h('button', {type: 'submit'}, 'Log in'),
         ], async (f) => {
             await signIn(f.elements.username.value, f.elements.password.value);
             location.hash = '#/';
         }),
         h('p', null, 'New here? ', h('a', {href: '#/signup'}, 'Sign up')));
    root.querySelector('input').focus();
}

export function signup(root) {
    fill(root,
         h('h1', null, 'Sign up'),
         form({class: 'card', 'aria-label': 'Sign up'}, [
             field('Username (3-30 letters, digits, _)',
                   {name: 'username', required: true, minlength: 3,
                    maxlength: 30, pattern: '[A-Za-z0-9_]+',
                    autocomplete: 'username'}),
             field('Email', {name: 'email', type: 'email', required: true,
                             autocomplete: 'email'}),
             field('Password (8 or more characters)',
                   {name: 'password', type: 'password', required: true,
                    minlength: 8, autocomplete: 'new-password'}),
             field('Display name (optional)',
                   {name: 'display_name', maxlength: 100,
                    autocomplete: 'name'}),
             h('button', {type: 'submit'}, 'Sign up'),
         ], async (f) => {
             const v = (name) => f.elements[name].value;
             const body = {username: v('username'), email: v('email'),
                           password: v('password')};
             if (v('display_name')) {
                 body.display_name = v('display_name');
             }
             await api('POST', '/v1/users', body);
             await signIn(body.username, body.password);
             location.hash = '#/';
         }),
         h('p', null, 'Have an account? ', h('a', {href: '#/login'}, 'Log in')));
    root.querySelector('input').focus();
}
