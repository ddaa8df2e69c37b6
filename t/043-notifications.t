# Notifications: follow, like, share, reply and mention are written with
# the write that caused them, listed newest first, marked read up to an id
# (inclusive, never back), and published to the recipient's event stream
# in Redis for the live streams (social:ev:<user>), whose WebSocket and
# SSE clients get them at once.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use Test::More;
use JSON::PP;
use Social::Stream;
use Social::Test;

start_nginx();

my $me = new_user('nm');
my $you = new_user('ny');

sub notes {
    my ($u, $q) = @_;
    my ($st, $j) = api('GET', '/v1/notifications' . ($q ? "?$q" : ''),
                       undef, $u->{auth});
    die "notifications: $st" unless $st == 200;
    return $j;
}

subtest 'every kind, newest first, with the actor' => sub {
    api('POST', "/v1/users/$me->{id}/follow", undef, $you->{auth});
    my (undef, $p) = api('POST', '/v1/posts', { text => 'mine' },
                         $me->{auth});
    api('POST', "/v1/posts/$p->{id}/like", undef, $you->{auth});
    api('POST', "/v1/posts/$p->{id}/share", undef, $you->{auth});
    my (undef, $r) = api('POST', '/v1/posts',
                         { text => "hi \@$me->{name}",
                           reply_to_id => $p->{id} }, $you->{auth});
    my (undef, $m) = api('POST', '/v1/posts', { text => "\@$me->{name}!" },
                         $you->{auth});
    my $j = notes($me);
    is_deeply([map { $_->{type} } @{ $j->{items} }],
              [qw(mention reply share like follow)], 'the five kinds');
    my %n = map { $_->{type} => $_ } @{ $j->{items} };
    is($n{reply}{post_id}, $r->{id}, 'a reply names the reply');
    is($n{mention}{post_id}, $m->{id}, 'a mention names the post');
    is($n{like}{post_id}, $p->{id}, 'a like names the liked post');
    ok(!exists $n{follow}{post_id}, 'a follow has no post_id');
    is_deeply($n{follow}{actor}, { id => $you->{id}, username => $you->{name},
                                   display_name => $you->{name} }, 'actor');
    ok(!$n{follow}{read}, 'unread');
    like($n{follow}{created_at}, qr/^\d{4}-\d\d-\d\dT[\d:.]+Z$/,
         'created_at');
    is_deeply(notes($you)->{items}, [], 'nothing for the actor');
};

subtest 'read up to an id, inclusive, never back' => sub {
    my @items = @{ notes($me)->{items} };
    my ($st) = api('POST', '/v1/notifications/read',
                   { up_to_id => $items[2]{id} }, $me->{auth});
    is($st, 204, 'marked: 204');
    is_deeply([map { $_->{read} ? 1 : 0 } @{ notes($me)->{items} }],
              [0, 0, 1, 1, 1], 'that one and the older ones');
    ($st) = api('POST', '/v1/notifications/read',
                { up_to_id => $items[4]{id} }, $me->{auth});
    is_deeply([map { $_->{read} ? 1 : 0 } @{ notes($me)->{items} }],
              [0, 0, 1, 1, 1], 'an older mark unreads nothing');
    for my $bad ({}, { up_to_id => 5 }, { up_to_id => 'x' },
                 { up_to_id => '0' }) {
        ($st, my $j) = api('POST', '/v1/notifications/read', $bad,
                           $me->{auth});
        is($st, 422, 'a bad up_to_id: 422');
        ok($j->{error}{fields}{up_to_id}, 'named');
    }
    ($st) = api('POST', '/v1/notifications/read', { up_to_id => '1' });
    is($st, 401, 'anonymous: 401');
};

subtest 'pages' => sub {
    my $j = notes($me, 'limit=2');
    is(scalar @{ $j->{items} }, 2, 'two');
    my $k = notes($me, "limit=10&max_id=$j->{next_cursor}");
    is(scalar @{ $k->{items} }, 3, 'then three');
    is($k->{next_cursor}, undef, 'the end');
    my ($st) = api('GET', '/v1/notifications?max_id=abc', undef, $me->{auth});
    is($st, 422, 'a bad cursor: 422');
};

subtest 'each one is published to the recipient\'s event stream' => sub {
    my $out = redis_cli('XRANGE', "social:ev:$me->{id}", '-', '+');
    my @events = map { decode_json($_) } grep { /^\{/ } split /\n/, $out;
    my %listed = map { $_->{id} => $_ } @{ notes($me)->{items} };
    is(scalar @events, 5, 'five events');
    ok(!grep({ $_->{event} ne 'notification.created' } @events),
       'notification.created');
    is_deeply([sort map { $_->{data}{id} } @events], [sort keys %listed],
              'one per notification');
    my ($e) = grep { $_->{data}{type} eq 'like' } @events;
    delete $listed{ $e->{data}{id} }{read};
    delete $e->{data}{read};
    is_deeply($e->{data}, $listed{ $e->{data}{id} },
              'the same object as listed');
    is(redis_cli('XLEN', "social:ev:$you->{id}"), 0, 'none for the actor');
};

subtest 'live on the recipient\'s streams' => sub {
    my $ws = Social::Stream->ws(token => $you->{token});
    my $sse = Social::Stream->sse(token => $you->{token});
    is_deeply([$ws->status, $sse->status], [101, 200], 'both streams open');
    api('POST', "/v1/users/$you->{id}/follow", undef, $me->{auth});
    my (undef, $p) = api('POST', '/v1/posts', { text => 'yours' },
                         $you->{auth});
    api('POST', "/v1/posts/$p->{id}/like", undef, $me->{auth});
    my @listed = @{ notes($you)->{items} };
    for my $s ([WebSocket => $ws], [SSE => $sse]) {
        my @got = grep { $_->{event} eq 'notification.created' }
            map { $s->[1]->event(5) || () } 1 .. 2;
        is_deeply([map { $_->{data}{type} } @got], [qw(follow like)],
                  "$s->[0]: the follow, then the like");
        is_deeply([map { $_->{data}{id} } @got],
                  [map { $_->{id} } reverse @listed],
                  "$s->[0]: the notifications listed");
        is($got[1]{data}{post_id}, $p->{id}, "$s->[0]: the liked post");
    }
    $_->close for $ws, $sse;
};

stop_nginx();
done_testing();
