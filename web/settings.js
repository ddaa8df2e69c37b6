// The profile's display name and bio, and the password.

import {api, changePassword, setMe} from './api.js';
import {field, fill, form, h} from './dom.js';

export function render(root, _params, app) {
    const user = app.me();
    const saved = h('p', {class: 'saved', role: 'status'});

    fill(root,
         h('h1', null, 'Settings'),
         form({class: 'card', 'aria-label': 'Profile'}, [
             h('h2', null, 'Profile'),
             field('Display name', {name: 'display_name', maxlength: 100,
                                    value: user.display_name}),
             field('Bio', {name: 'bio', rows: 4, maxlength: 500},
                   'textarea'),
             h('button', {type: 'submit'}, 'Save'),
         ], async (f) => {
             setMe(await api('PATCH', '/v1/users/me', {
                 display_name: f.elements.display_name.value,
                 bio: f.elements.bio.value,
             }));
             fill(saved, 'Profile saved.');
         }),
         form({class: 'card', 'aria-label': 'Password'}, [
             h('h2', null, 'Password'),
             field('Current password', {name: 'current_password',
                                        type: 'password', required: true,
                                        autocomplete: 'current-password'}),
             field('New password (8 or more characters)',
                   {name: 'password', type: 'password', required: true,
                    minlength: 8, autocomplete: 'new-password'}),
             h('button', {type: 'submit'}, 'Change password'),
         ], async (f) => {
             await changePassword(f.elements.current_password.value,
                                  f.elements.password.value);
             f.reset();
             fill(saved, 'Password changed; other sessions were logged out.');
         }),
         saved);
    root.querySelector('textarea').value = user.bio || '';
}
