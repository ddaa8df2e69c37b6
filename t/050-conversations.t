# Conversations: the single direct conversation of a pair (201, then 200;
# one under concurrent creation), groups with an admin, the list by
# activity with last_message and unread_count, members added by admins
# only (at most 500), members removed (an admin anyone, a member itself;
# the longest-standing member inherits the last admin's role), and 404
# for non-members everywhere.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use Test::More;
use Social::Test;

my $run = int(rand(1e6));

start_nginx(workers => 2);

my ($ann, $bob, $cat, $dan) = map { new_user($_) } qw(ann bob cat dan);

subtest 'a pair has one direct conversation' => sub {
    my ($st, $j) = api('POST', '/v1/conversations',
                       { member_ids => [$bob->{id}] }, $ann->{auth});
    is($st, 201, 'created: 201');
    is($j->{kind}, 'direct', 'direct');
    is($j->{title}, undef, 'no title');
    is($j->{unread_count}, 0, 'unread_count 0');
    is($j->{last_message}, undef, 'no last message');
    like($j->{created_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
         'created_at');
    is_deeply([sort map { $_->{id} } @{ $j->{members} }],
              [sort $ann->{id}, $bob->{id}], 'both members');
    ok(!grep({ $_->{role} ne 'member' } @{ $j->{members} }),
       'no admin in a direct conversation');
    is_deeply([sort keys %{ $j->{members}[0] }],
              [qw(display_name id role username)], 'member fields');

    my ($st2, $j2) = api('POST', '/v1/conversations',
                         { member_ids => [$ann->{id}, "$ann->{id}"] },
                         $bob->{auth});
    is($st2, 200, 'the other side asks: 200');
    is($j2->{id}, $j->{id}, 'the same conversation');

    ($st2, $j2) = api('POST', '/v1/conversations',
                      { member_ids => [$bob->{id}, $ann->{id}] },
                      $ann->{auth});
    is($st2, 200, 'naming oneself too: still the direct one');
    is($j2->{id}, $j->{id}, 'the same conversation');
};

subtest 'concurrent creation of a direct conversation yields one' => sub {
    my @res = parallel(8, sub {
        my $i = shift;
        my ($from, $to) = $i % 2 ? ($cat, $dan) : ($dan, $cat);
        my ($st, $j) = api('POST', '/v1/conversations',
                           { member_ids => [$to->{id}] }, $from->{auth});
        return [$st, $j->{id}];
    });
    my %ids = map { $_->[1] => 1 } @res;
    is(scalar keys %ids, 1, 'one conversation id');
    is(scalar(grep { $_->[0] == 201 } @res), 1, 'one 201');
    is(scalar(grep { $_->[0] == 200 } @res), 7, 'seven 200');
    my ($id) = keys %ids;
    is(psql("SELECT count(*) FROM conversation_members "
            . "WHERE conversation_id = $id"), 2, 'two members');
};

my $group;

subtest 'groups' => sub {
    my ($st, $j) = api('POST', '/v1/conversations',
                       { member_ids => [$bob->{id}, $cat->{id}],
                         title => "Caf\x{e9} \x{1F600}" }, $ann->{auth});
    is($st, 201, 'created: 201');
    is($j->{kind}, 'group', 'a group');
    is($j->{title}, "Caf\x{e9} \x{1F600}", 'the title, exactly');
    my %role = map { $_->{id} => $_->{role} } @{ $j->{members} };
    is($role{ $ann->{id} }, 'admin', 'the creator is admin');
    is($role{ $bob->{id} }, 'member', 'the others are members');
    $group = $j->{id};

    ($st, $j) = api('POST', '/v1/conversations',
                    { member_ids => [$bob->{id}], title => 'two' },
                    $ann->{auth});
    is($st, 201, 'one other member with a title is a group');
    is($j->{kind}, 'group', 'a group');
};

subtest 'validation' => sub {
    my @cases = (
        [{}, 'member_ids', 'missing member_ids'],
        [{ member_ids => 'x' }, 'member_ids', 'not an array'],
        [{ member_ids => [] }, 'member_ids', 'empty'],
        [{ member_ids => [$ann->{id}] }, 'member_ids', 'only oneself'],
        [{ member_ids => ['abc'] }, 'member_ids', 'not an id'],
        [{ member_ids => ['999999999999'] }, 'member_ids', 'unknown user'],
        [{ member_ids => [$bob->{id}, '999999999999'] }, 'member_ids',
         'unknown user in a group'],
        [{ member_ids => [map { $_ * 7 + 1 } 1 .. 500] }, 'member_ids',
         'more than 500 members'],
        [{ member_ids => [$bob->{id}], title => 'x' x 201 }, 'title',
         'title over 200 characters'],
        [{ member_ids => [$bob->{id}], title => 5 }, 'title',
         'title not a string'],
    );
    for my $c (@cases) {
        my ($st, $j) = api('POST', '/v1/conversations', $c->[0],
                           $ann->{auth});
        is($st, 422, "$c->[2]: 422");
        is($j->{error}{code}, 'validation_failed', 'validation_failed');
        ok($j->{error}{fields}{ $c->[1] }, "fields.$c->[1]");
    }
    my ($st) = api('POST', '/v1/conversations',
                   { member_ids => [$bob->{id}], title => 'x' x 200 },
                   $ann->{auth});
    is($st, 201, 'a title of 200 characters is fine');
    ($st) = api('POST', '/v1/conversations', '[1]', $ann->{auth});
    is($st, 422, 'not an object: 422');
    ($st) = api('POST', '/v1/conversations', '{', $ann->{auth});
    is($st, 400, 'malformed JSON: 400');
    ($st) = api('POST', '/v1/conversations', { member_ids => [$bob->{id}] });
    is($st, 401, 'without a token: 401');
    is(psql("SELECT count(*) FROM conversations c WHERE NOT EXISTS "
            . "(SELECT 1 FROM conversation_members m "
            . "WHERE m.conversation_id = c.id)"), 0,
       'nothing half-created');
};

subtest 'get: members only, 404 for anyone else' => sub {
    my ($st, $j) = api('GET', "/v1/conversations/$group", undef,
                       $bob->{auth});
    is($st, 200, 'a member: 200');
    is($j->{id}, $group, 'the conversation');
    ($st, $j) = api('GET', "/v1/conversations/$group", undef, $dan->{auth});
    is($st, 404, 'a non-member: 404');
    is($j->{error}{code}, 'not_found', 'not_found');
    for my $bad ('999999999999', 'abc', '0', '99999999999999999999') {
        ($st) = api('GET', "/v1/conversations/$bad", undef, $ann->{auth});
        is($st, 404, "$bad: 404");
    }
    ($st) = api('GET', "/v1/conversations/$group");
    is($st, 401, 'without a token: 401');
    ($st) = api('PUT', "/v1/conversations/$group", undef, $ann->{auth});
    is($st, 405, 'PUT: 405');
};

subtest 'members: admins add, 500 at most' => sub {
    my ($st, $j) = api('POST', "/v1/conversations/$group/members",
                       { user_ids => [$dan->{id}] }, $bob->{auth});
    is($st, 403, 'a member cannot add: 403');
    is($j->{error}{code}, 'forbidden', 'forbidden');
    ($st) = api('POST', "/v1/conversations/$group/members",
                { user_ids => [$ann->{id}] }, $dan->{auth});
    is($st, 404, 'a non-member: 404');
    ($st, $j) = api('POST', "/v1/conversations/$group/members",
                    { user_ids => [$dan->{id}, $bob->{id}] }, $ann->{auth});
    is($st, 200, 'the admin adds: 200');
    is(scalar @{ $j->{members} }, 4, 'four members (bob only once)');
    ($st, $j) = api('POST', "/v1/conversations/$group/members",
                    { user_ids => ['999999999999'] }, $ann->{auth});
    is($st, 422, 'an unknown user: 422');
    ok($j->{error}{fields}{user_ids}, 'fields.user_ids');
    ($st) = api('POST', "/v1/conversations/$group/members",
                { user_ids => [] }, $ann->{auth});
    is($st, 422, 'nobody: 422');

    # fill the group to 500 with rows made in SQL, then one more
    psql("INSERT INTO users (username, email) SELECT 'cvf${run}_' || g, "
         . "'cvf${run}_' || g || '\@example.com' FROM generate_series(1, 497) g");
    my $ids = psql("SELECT string_agg(id::text, ',') FROM users "
                   . "WHERE username LIKE 'cvf${run}\\_%'");
    my @fill = split /,/, $ids;
    ($st) = api('POST', "/v1/conversations/$group/members",
                { user_ids => [@fill[0 .. 495]] }, $ann->{auth});
    is($st, 200, 'up to 500: 200');
    ($st, $j) = api('POST', "/v1/conversations/$group/members",
                    { user_ids => [$fill[496]] }, $ann->{auth});
    is($st, 422, 'the 501st: 422');
    is(psql("SELECT count(*) FROM conversation_members "
            . "WHERE conversation_id = $group"), 500, 'still 500');
    psql("DELETE FROM conversation_members WHERE conversation_id = $group "
         . "AND user_id IN ($ids)");

    my ($direct) = (api('POST', '/v1/conversations',
                        { member_ids => [$bob->{id}] }, $ann->{auth}))[1];
    ($st) = api('POST', "/v1/conversations/$direct->{id}/members",
                { user_ids => [$cat->{id}] }, $ann->{auth});
    is($st, 403, 'a direct conversation keeps its two members: 403');
    ($st) = api('DELETE', "/v1/conversations/$direct->{id}/members/"
                . $ann->{id}, undef, $ann->{auth});
    is($st, 403, 'and cannot be left: 403');
};

subtest 'members: removal and the last admin' => sub {
    my ($st, $j) = api('DELETE', "/v1/conversations/$group/members/"
                       . $cat->{id}, undef, $bob->{auth});
    is($st, 403, 'a member removes only itself: 403');
    ($st) = api('DELETE', "/v1/conversations/$group/members/$dan->{id}",
                undef, $dan->{auth});
    is($st, 204, 'a member leaves: 204');
    ($st) = api('GET', "/v1/conversations/$group", undef, $dan->{auth});
    is($st, 404, 'and no longer sees it');
    ($st) = api('DELETE', "/v1/conversations/$group/members/$dan->{id}",
                undef, $ann->{auth});
    is($st, 404, 'removing a non-member: 404');
    ($st) = api('DELETE', "/v1/conversations/$group/members/abc",
                undef, $ann->{auth});
    is($st, 404, 'a user id that is no id: 404');
    ($st) = api('DELETE', "/v1/conversations/$group/members/$bob->{id}",
                undef, $dan->{auth});
    is($st, 404, 'a non-member: 404');

    ($st) = api('DELETE', "/v1/conversations/$group/members/$ann->{id}",
                undef, $ann->{auth});
    is($st, 204, 'the only admin leaves: 204');
    ($st, $j) = api('GET', "/v1/conversations/$group", undef, $bob->{auth});
    my %role = map { $_->{id} => $_->{role} } @{ $j->{members} };
    is($role{ $bob->{id} }, 'admin',
       'the longest-standing member became admin');
    is($role{ $cat->{id} }, 'member', 'the other stays a member');

    ($st) = api('DELETE', "/v1/conversations/$group/members/$cat->{id}",
                undef, $bob->{auth});
    is($st, 204, 'the new admin removes someone: 204');
    ($st) = api('DELETE', "/v1/conversations/$group/members/$bob->{id}",
                undef, $bob->{auth});
    is($st, 204, 'the last member leaves: 204');
    is(psql("SELECT count(*) FROM conversations WHERE id = $group"), 0,
       'the empty conversation is gone');
};

subtest 'the list: mine, by last activity, unread counts' => sub {
    my $u = new_user('lister');
    my @c;
    for my $other ($ann, $bob, $cat) {
        my (undef, $j) = api('POST', '/v1/conversations',
                             { member_ids => [$other->{id}] }, $u->{auth});
        push @c, $j->{id};
    }
    my ($st, $j) = api('GET', '/v1/conversations', undef, $u->{auth});
    is($st, 200, 'listed: 200');
    is_deeply([map { $_->{id} } @{ $j->{items} }], [reverse @c],
              'newest first');

    # a message moves a conversation to the top
    my (undef, $m) = api('POST', "/v1/conversations/$c[0]/messages",
                         { text => 'hello' }, $ann->{auth});
    api('POST', "/v1/conversations/$c[0]/messages", { text => 'again' },
        $ann->{auth});
    (undef, $j) = api('GET', '/v1/conversations', undef, $u->{auth});
    is($j->{items}[0]{id}, $c[0], 'the most recent activity first');
    is($j->{items}[0]{last_message}{text}, 'again', 'with last_message');
    is($j->{items}[0]{unread_count}, 2, 'and the exact unread count');
    is($j->{items}[1]{unread_count}, 0, 'others have none');

    (undef, $j) = api('GET', '/v1/conversations?limit=2', undef, $u->{auth});
    is(scalar @{ $j->{items} }, 2, 'limit=2');
    ok($j->{next_cursor}, 'a next cursor');
    my (undef, $j2) = api('GET', "/v1/conversations?limit=2&max_id="
                          . $j->{next_cursor}, undef, $u->{auth});
    is_deeply([map { $_->{id} } @{ $j2->{items} }], [$c[1]],
              'the next page holds the rest');
    is($j2->{next_cursor}, undef, 'the last page has no cursor');
    for my $q ('limit=0', 'limit=x', 'max_id=abc') {
        ($st) = api('GET', "/v1/conversations?$q", undef, $u->{auth});
        is($st, 422, "$q: 422");
    }
    ($st, $j) = api('GET', '/v1/conversations', undef, $dan->{auth});
    ok(!grep({ my $i = $_->{id}; grep { $_ eq $i } @c } @{ $j->{items} }),
       "someone else's conversations are not listed");
};

stop_nginx();
done_testing();
