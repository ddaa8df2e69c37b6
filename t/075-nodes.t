# Two nodes: ./build.sh run --nodes 2 configures two nginx nodes on
# consecutive ports sharing one PostgreSQL and one Redis.  A user writes
# on node 1; a follower's stream on node 2 gets the events (a mention, a
# message), the follower's feed on node 2 shows the post at once, and a
# rate limit counts the requests of both nodes together.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use Test::More;
use Social::Run;
use Social::Stream;
use Social::Test qw(forget_limits);

sub user {
    my ($prefix) = @_;
    my $name = substr(sprintf('%s%d_%d', $prefix, $$, int rand 1e6), 0, 30);
    my ($st, $u) = node_api(1, 'POST', '/v1/users', { username => $name,
        email => "$name\@example.com", password => 'correct horse' });
    die "register: $st" unless $st == 201;
    my (undef, $t) = node_api(2, 'POST', '/oauth/token', {
        grant_type => 'password', username => $name,
        password => 'correct horse' });
    return { id => $u->{id}, name => $name, token => $t->{access_token} };
}

fresh_run();
my ($rc, $out) = build_sh('run', '--nodes', 2, '--check');
is($rc, 0, 'run --nodes 2 --check') or diag $out;
like($out, qr/node 2: \S+node2\/nginx\.conf\.new is valid/, 'two nodes');
start_nodes(2);
is((node_api($_, 'GET', '/readyz'))[0], 200, "node $_ is ready") for 1, 2;

my $alice = user('na');
my $bob = user('nb');
is((node_api(2, 'POST', "/v1/users/$alice->{id}/follow", undef, $bob->{token}))[0],
   200, 'b follows a (node 2)');

my $ws = Social::Stream->ws(token => $bob->{token}, port => node_port(2));
is($ws->status, 101, 'b\'s stream on node 2');

my ($st, $post) = node_api(1, 'POST', '/v1/posts',
                           { text => "hello \@$bob->{name}" }, $alice->{token});
is($st, 201, 'a posts on node 1, mentioning b');
my ($st2, $feed) = node_api(2, 'GET', '/v1/feed', undef, $bob->{token});
is($feed->{items}[0]{id}, $post->{id}, 'b\'s feed on node 2 shows it at once');
my $ev = $ws->event(5);
is($ev && $ev->{event}, 'notification.created',
   'b\'s stream on node 2 gets the mention');

(undef, my $conv) = node_api(1, 'POST', '/v1/conversations',
                             { member_ids => [$bob->{id}] }, $alice->{token});
node_api(1, 'POST', "/v1/conversations/$conv->{id}/messages",
         { text => 'across nodes' }, $alice->{token});
my @ev = grep { $_->{event} eq 'message.created' } $ws->events(1);
is($ev[0] && $ev[0]{data}{text}, 'across nodes',
   "and a's message sent on node 1");
$ws->close;

subtest 'one rate limit across both nodes' => sub {
    forget_limits();
    # the login limit (10 a minute, a burst of 10) per client address
    my ($admitted, @refused) = (0);
    for my $i (0 .. 23) {
        my $n = 1 + $i % 2;
        my ($s) = node_api($n, 'POST', '/oauth/token', {
            grant_type => 'password', username => $alice->{name},
            password => 'wrong horse' });
        if ($s == 429) {
            push @refused, $n;
        } else {
            $admitted++;
        }
    }
    is($admitted, 10, 'ten admitted in all, not ten per node');
    ok((grep { $_ == 1 } @refused) && (grep { $_ == 2 } @refused),
       'then both nodes refuse');
    forget_limits();
};

stop_nodes();
done_testing();
