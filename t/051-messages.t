# Messages: send (text of 1-10000 characters, counted as code points),
# history newest first with cursors, Idempotency-Key (a repeat answers
# the first response, concurrent repeats create one message), read
# markers that never move backwards with the unread count following,
# coalesced "message" notifications for direct conversations only, and
# 404 for non-members reading and writing alike.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use Test::More;
use Social::Test;

my $run = int(rand(1e6));

sub unread {
    my ($u, $c) = @_;
    my (undef, $j) = api('GET', "/v1/conversations/$c", undef, $u->{auth});
    return $j->{unread_count};
}

start_nginx(workers => 2);

my ($ann, $bob, $eve) = map { new_user($_) } qw(ann bob eve);
my (undef, $direct) = api('POST', '/v1/conversations',
                          { member_ids => [$bob->{id}] }, $ann->{auth});
my $c = $direct->{id};

subtest 'send and read back' => sub {
    my $text = "h\x{e9}llo \x{1F600} \x{4E16}\x{754C} e\x{301}";
    my ($st, $m) = api('POST', "/v1/conversations/$c/messages",
                       { text => $text }, $ann->{auth});
    is($st, 201, 'sent: 201');
    is_deeply([sort keys %$m],
              [qw(conversation_id created_at id sender_id text)],
              'the Message fields');
    is($m->{text}, $text, 'the text, exactly');
    is($m->{sender_id}, $ann->{id}, 'sender_id');
    is($m->{conversation_id}, $c, 'conversation_id');
    is(psql("SELECT text FROM messages WHERE id = $m->{id}") ne '', 1,
       'stored in PostgreSQL');

    my ($st2, $h) = api('GET', "/v1/conversations/$c/messages", undef,
                        $bob->{auth});
    is($st2, 200, 'history: 200');
    is_deeply($h->{items}[0], $m, 'the same message');
};

subtest 'compact JSON, the text kept exactly' => sub {
    # what compaction must not touch: spaces, quotes, escapes and JSON
    # punctuation inside the text
    my $text = qq{ a "b" : c , [ {x} ] \\" \t\n end };
    my ($st, $m, undef, $raw) = api('POST', "/v1/conversations/$c/messages",
                                    { text => $text }, $ann->{auth});
    is($st, 201, 'sent');
    is($m->{text}, $text, 'the text, exactly');
    unlike($raw =~ s/"text":"(?:[^"\\]|\\.)*"//r, qr/\s/,
           'the message: no whitespace outside the text');
    my (undef, undef, undef, $list) = api('GET',
        "/v1/conversations/$c/messages?limit=1", undef, $bob->{auth});
    like($list, qr/^\{"items":\[\{"id":"\d+","conversation_id":/,
         'the history is compact');
    my (undef, undef, undef, $conv) = api('GET', "/v1/conversations/$c",
                                          undef, $bob->{auth});
    unlike($conv =~ s/"(?:[^"\\]|\\.)*"//gr, qr/\s/,
           'the conversation: no whitespace outside strings');
};

subtest 'validation' => sub {
    my @ok = ("\x{1F600}" x 10000, 'x');
    for my $t (@ok) {
        my ($st) = api('POST', "/v1/conversations/$c/messages",
                       { text => $t }, $ann->{auth});
        is($st, 201, length($t) . ' characters: 201');
    }
    my @bad = ([{}, 'missing'], [{ text => '' }, 'empty'],
               [{ text => 'x' x 10001 }, '10001 characters'],
               [{ text => 5 }, 'not a string'],
               [{ text => "a\x{0}b" }, 'with NUL']);
    for my $b (@bad) {
        my ($st, $j) = api('POST', "/v1/conversations/$c/messages", $b->[0],
                           $ann->{auth});
        is($st, 422, "$b->[1]: 422");
        ok($j->{error}{fields}{text}, 'fields.text');
    }
    my ($st) = api('POST', "/v1/conversations/$c/messages", 'nope',
                   $ann->{auth});
    is($st, 400, 'malformed JSON: 400');
    ($st) = api('POST', "/v1/conversations/$c/messages", { text => 'x' });
    is($st, 401, 'without a token: 401');
};

subtest 'non-members get 404 for reading and writing' => sub {
    my $before = psql("SELECT count(*) FROM messages "
                      . "WHERE conversation_id = $c");
    my ($st, $j) = api('POST', "/v1/conversations/$c/messages",
                       { text => 'intruder' }, $eve->{auth});
    is($st, 404, 'send: 404');
    is($j->{error}{code}, 'not_found', 'not_found');
    ($st) = api('POST', "/v1/conversations/$c/messages", { text => 'x' },
                { %{ $eve->{auth} }, 'Idempotency-Key' => 'k1' });
    is($st, 404, 'send with a key: 404');
    is(psql("SELECT count(*) FROM idempotency_keys WHERE user_id = "
            . "$eve->{id}"), 0, 'the refused attempt is not remembered');
    ($st) = api('GET', "/v1/conversations/$c/messages", undef, $eve->{auth});
    is($st, 404, 'history: 404');
    ($st) = api('POST', "/v1/conversations/$c/read", { message_id => '1' },
                $eve->{auth});
    is($st, 404, 'read: 404');
    for my $bad ('999999999999', 'abc') {
        ($st) = api('POST', "/v1/conversations/$bad/messages",
                    { text => 'x' }, $ann->{auth});
        is($st, 404, "send to $bad: 404");
        ($st) = api('GET', "/v1/conversations/$bad/messages", undef,
                    $ann->{auth});
        is($st, 404, "history of $bad: 404");
    }
    is(psql("SELECT count(*) FROM messages WHERE conversation_id = $c"),
       $before, 'nothing stored');
};

subtest 'Idempotency-Key' => sub {
    my $h = { %{ $ann->{auth} }, 'Idempotency-Key' => "key-$run" };
    my ($st, $m, undef, $raw) = api('POST', "/v1/conversations/$c/messages",
                                    { text => 'once' }, $h);
    is($st, 201, 'first: 201');
    my ($st2, undef, undef, $raw2) = api('POST',
        "/v1/conversations/$c/messages", { text => 'once' }, $h);
    is($st2, 201, 'repeat: 201');
    is($raw2, $raw, 'the same body');
    is(psql("SELECT count(*) FROM messages WHERE text = 'once' "
            . "AND conversation_id = $c"), 1, 'one message');

    my ($st3) = api('POST', "/v1/conversations/$c/messages",
                    { text => 'once' },
                    { %{ $bob->{auth} }, 'Idempotency-Key' => "key-$run" });
    is($st3, 201, "another user's same key is another message");

    my $ck = { %{ $ann->{auth} }, 'Idempotency-Key' => "conc-$run" };
    my @res = parallel(8, sub {
        my ($s, $j) = api('POST', "/v1/conversations/$c/messages",
                          { text => 'concurrent' }, $ck);
        return [$s, $j->{id}];
    });
    my %ids = map { $_->[1] // 'none' => 1 } @res;
    is_deeply([map { $_->[0] } @res], [(201) x 8], 'every repeat: 201');
    is(scalar keys %ids, 1, 'the same message for all');
    is(psql("SELECT count(*) FROM messages WHERE text = 'concurrent'"), 1,
       'one message stored');

    ($st) = api('POST', "/v1/conversations/$c/messages", { text => 'x' },
                { %{ $ann->{auth} }, 'Idempotency-Key' => 'k' x 65 });
    is($st, 422, 'a key over 64 bytes: 422');
};

subtest 'history: newest first, cursors' => sub {
    my (undef, $g) = api('POST', '/v1/conversations',
                         { member_ids => [$bob->{id}], title => 'hist' },
                         $ann->{auth});
    my @ids;
    for my $i (1 .. 5) {
        my (undef, $m) = api('POST', "/v1/conversations/$g->{id}/messages",
                             { text => "m$i" }, $i % 2 ? $ann->{auth}
                                                       : $bob->{auth});
        push @ids, $m->{id};
    }
    my (undef, $p1) = api('GET', "/v1/conversations/$g->{id}/messages"
                          . '?limit=2', undef, $bob->{auth});
    is_deeply([map { $_->{text} } @{ $p1->{items} }], ['m5', 'm4'],
              'newest first');
    my (undef, $p2) = api('GET', "/v1/conversations/$g->{id}/messages"
                          . "?limit=2&max_id=$p1->{next_cursor}", undef,
                          $bob->{auth});
    is_deeply([map { $_->{text} } @{ $p2->{items} }], ['m3', 'm2'],
              'the next page');
    my (undef, $p3) = api('GET', "/v1/conversations/$g->{id}/messages"
                          . "?limit=2&max_id=$p2->{next_cursor}", undef,
                          $bob->{auth});
    is_deeply([map { $_->{text} } @{ $p3->{items} }], ['m1'], 'the last');
    is($p3->{next_cursor}, undef, 'no cursor on the last page');
    my (undef, $s) = api('GET', "/v1/conversations/$g->{id}/messages"
                         . "?since_id=$ids[2]", undef, $bob->{auth});
    is_deeply([map { $_->{text} } @{ $s->{items} }], ['m5', 'm4'],
              'since_id');
    my ($st) = api('GET', "/v1/conversations/$g->{id}/messages?limit=0",
                   undef, $bob->{auth});
    is($st, 422, 'limit=0: 422');
};

subtest 'read markers and unread counts' => sub {
    my (undef, $g) = api('POST', '/v1/conversations',
                         { member_ids => [$bob->{id}], title => 'reads' },
                         $ann->{auth});
    my $gid = $g->{id};
    my @m;
    for my $i (1 .. 4) {
        push @m, (api('POST', "/v1/conversations/$gid/messages",
                      { text => "r$i" }, $ann->{auth}))[1];
    }
    is(unread($bob, $gid), 4, 'four unread');
    is(unread($ann, $gid), 0, "the sender's own are not unread");

    my ($st) = api('POST', "/v1/conversations/$gid/read",
                   { message_id => $m[2]{id} }, $bob->{auth});
    is($st, 204, 'read up to the third: 204');
    is(unread($bob, $gid), 1, 'one unread');
    ($st) = api('POST', "/v1/conversations/$gid/read",
                { message_id => $m[0]{id} }, $bob->{auth});
    is($st, 204, 'an older marker: 204');
    is(unread($bob, $gid), 1, 'the marker did not move back');
    ($st) = api('POST', "/v1/conversations/$gid/read",
                { message_id => $m[3]{id} }, $bob->{auth});
    is(unread($bob, $gid), 0, 'all read');

    my ($st2, $j) = api('POST', "/v1/conversations/$gid/read",
                        { message_id => (api('GET',
                            "/v1/conversations/$c/messages?limit=1", undef,
                            $ann->{auth}))[1]{items}[0]{id} },
                        $bob->{auth});
    is($st2, 422, 'a message of another conversation: 422');
    ok($j->{error}{fields}{message_id}, 'fields.message_id');
    for my $bad ({}, { message_id => 'x' }, { message_id => -1 }) {
        ($st) = api('POST', "/v1/conversations/$gid/read", $bad,
                    $bob->{auth});
        is($st, 422, 'a bad message_id: 422');
    }
};

subtest 'message notifications: direct only, coalesced' => sub {
    my $cat = new_user('cat');
    my $dan = new_user('dan');
    my (undef, $d) = api('POST', '/v1/conversations',
                         { member_ids => [$dan->{id}] }, $cat->{auth});
    my $count = sub {
        psql("SELECT count(*) FROM notifications WHERE user_id = "
             . "$dan->{id} AND type = 'message' AND NOT read");
    };
    my @res = parallel(5, sub {
        (api('POST', "/v1/conversations/$d->{id}/messages",
             { text => "n$_[0]" }, $cat->{auth}))[0];
    });
    is_deeply(\@res, [(201) x 5], 'five messages');
    is($count->(), 1, 'one unread notification for them all');
    is(psql("SELECT count(*) FROM notifications WHERE user_id = "
            . "$cat->{id}"), 0, 'none for the sender');
    is(psql("SELECT actor_id || ':' || conversation_id FROM notifications "
            . "WHERE user_id = $dan->{id}"), "$cat->{id}:$d->{id}",
       'actor and conversation');

    my $last = (api('GET', "/v1/conversations/$d->{id}/messages?limit=1",
                    undef, $dan->{auth}))[1]{items}[0]{id};
    api('POST', "/v1/conversations/$d->{id}/read", { message_id => $last },
        $dan->{auth});
    is($count->(), 0, 'reading the conversation reads the notification');
    api('POST', "/v1/conversations/$d->{id}/messages", { text => 'more' },
        $cat->{auth});
    is($count->(), 1, 'the next message notifies again');

    my (undef, $g) = api('POST', '/v1/conversations',
                         { member_ids => [$dan->{id}, $ann->{id}] },
                         $cat->{auth});
    api('POST', "/v1/conversations/$g->{id}/messages", { text => 'group' },
        $cat->{auth});
    is(psql("SELECT count(*) FROM notifications WHERE conversation_id = "
            . "$g->{id}"), 0, 'groups do not notify');
};

stop_nginx();
done_testing();
