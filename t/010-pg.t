# The PostgreSQL adapter: parameters, pool and queue, timeouts, aborted
# clients, lost connections and a PostgreSQL outage, through the test
# module's /t/pg/ routes on the drop-in configuration.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(time sleep);
use Social::Test;

binmode Test::More->builder->$_, ":encoding(UTF-8)" for qw(output failure_output todo_output);

sub backends {
    return psql("SELECT count(*) FROM pg_stat_activity "
                . "WHERE application_name = 'ngx_social'");
}

sub burst {
    my ($n) = @_;
    my @st = parallel($n, sub { (api('GET', '/t/pg/sleep?s=0'))[0] });
    return scalar grep { $_ == 200 } @st;
}

start_nginx(replace => {
    'social_pg_pool_size 8' => 'social_pg_pool_size 2',
    'social_pg_pipeline_depth 16' => 'social_pg_pipeline_depth 1',
    'social_pg_queue_size 1024' => 'social_pg_queue_size 4',
    'social_pg_queue_timeout 2s' => 'social_pg_queue_timeout 5s',
    'social_pg_query_timeout 5s' => 'social_pg_query_timeout 1500ms',
});

subtest 'parameters of every type round-trip as data' => sub {
    my $evil = "x'); DROP TABLE users; -- \\\" \$1 \x{e9}\x{1F600}";
    my ($st, $j) = api('POST', '/t/pg/echo', {
        bigint => '9223372036854775807', text => $evil, bool => JSON::PP::true,
        int => -42, ts => '2026-11-25T10:00:00.123Z', float => 1.5,
        null => undef,
    });
    is($st, 200, 'status');
    is($j->{bigint}, '9223372036854775807', 'bigint');
    is($j->{text}, $evil, 'text with quotes, escapes and non-ASCII');
    ok($j->{bool}, 'boolean');
    is($j->{int}, -42, 'integer');
    is($j->{ts}, '2026-11-25T10:00:00.123Z', 'timestamptz');
    is($j->{float}, 1.5, 'float');
    ok(exists $j->{null} && !defined $j->{null}, 'NULL');
    is(psql("SELECT count(*) FROM pg_tables WHERE tablename = 'users'"), 1,
       'the table is still there');

    ($st, $j) = api('POST', '/t/pg/echo', { bigint => 'not a number' });
    is($st, 404, 'a malformed id is 404');
};

subtest 'more requests than connections queue, past the queue 503' => sub {
    my @st = parallel(6, sub { (api('GET', '/t/pg/sleep?s=0.5'))[0] });
    is_deeply([sort @st], [(200) x 6], '2 run, 4 wait and then run');

    my $t0 = time;
    @st = parallel(10, sub {
        my ($st, $j) = api('GET', '/t/pg/sleep?s=1');
        return [$st, $st == 503 ? $j->{error}{code} : ''];
    });
    my @ok = grep { $_->[0] == 200 } @st;
    my @refused = grep { $_->[0] == 503 } @st;
    is(scalar @ok, 6, '6 served (2 running + 4 queued)');
    is(scalar @refused, 4, '4 refused');
    is($refused[0][1], 'unavailable', 'with the contract error code');
};

subtest 'a query past its timeout answers 503 and the pool recovers' => sub {
    my $t0 = time;
    my ($st, $j) = api('GET', '/t/pg/sleep?s=5');
    my $took = time - $t0;
    is($st, 503, 'status');
    is($j->{error}{code}, 'unavailable', 'unavailable');
    ok($took < 3, "answered at the timeout, not at the end ($took s)");
    ok(wait_until(sub { backends() == 2 }, 5), 'the connection is replaced');
    is(burst(6), 6, 'a burst the size of pool and queue is served');
};

subtest 'clients that go away mid-query leave the pool whole' => sub {
    error_log_mark();
    for (1 .. 6) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . nginx_port())
            or die "connect: $!";
        print {$s} "GET /t/pg/sleep?s=0.3 HTTP/1.1\r\nHost: x\r\n\r\n";
        close $s;
    }
    ok(wait_until(sub {
        psql("SELECT count(*) FROM pg_stat_activity WHERE application_name "
             . "= 'ngx_social' AND state = 'active'") == 0 }, 5),
       'the abandoned queries ended');
    is(burst(6), 6, 'a burst the size of pool and queue is served');
    is(backends(), 2, 'still exactly pool-size connections');
    ok(!grep({ /\[(error|alert|crit)\]/ } error_log_since()),
       'nothing went wrong on the way');
};

subtest 'a transaction commits both rows or neither' => sub {
    my $u = 'tx' . int(rand(1e9));
    my ($st) = api('POST', '/t/pg/tx', { username => $u, email => "$u\@x" });
    is($st, 201, 'committed');
    is((api('GET', "/t/pg/user?username=${u}_2"))[0], 200, 'second row');

    my $v = 'tx' . int(rand(1e9));
    ($st) = api('POST', '/t/pg/tx',
                { username => $v, email => "$v\@x", fail => JSON::PP::true });
    is($st, 409, 'the second insert conflicts');
    is((api('GET', "/t/pg/user?username=$v"))[0], 404,
       'the first insert was rolled back');
    is(psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
            . "'ngx_social' AND state LIKE 'idle in transaction%'"), 0,
       'no connection left inside a transaction');
};

subtest 'terminated backends are replaced' => sub {
    psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
         . "WHERE application_name = 'ngx_social'");
    ok(wait_until(sub { backends() == 2 }, 5), 'reconnected');
    is(burst(6), 6, 'requests succeed');
};

subtest 'PostgreSQL down: fast 503; back up: recovery without restart' => sub {
    pg_server('stop');
    my @res = parallel(4, sub {
        my $t0 = time;
        my ($st, $j) = api('GET', '/t/pg/sleep?s=0');
        return [$st, time - $t0];
    });
    is_deeply([map { $_->[0] } @res], [(503) x 4], 'every request 503');
    ok(!grep({ $_->[1] > 2 } @res), 'each within the timeout');

    my ($st, $j) = api('GET', '/readyz');
    is($st, 503, '/readyz is 503');
    is($j->{postgresql}, 'down', 'and names PostgreSQL');
    is((api('GET', '/healthz'))[0], 200, '/healthz stays 200');

    pg_server('start');
    ok(wait_until(sub { (api('GET', '/t/pg/sleep?s=0'))[0] == 200 }, 10),
       'served again once PostgreSQL is back');
    ok(wait_until(sub { backends() == 2 }, 10), 'both connections back');
    is(burst(6), 6, 'and under concurrency');
    ($st, $j) = api('GET', '/readyz');
    is($st, 200, '/readyz is 200 again');
    is($j->{postgresql}, 'ok', 'PostgreSQL ok');
};

subtest 'pool figures on /metrics' => sub {
    my ($st, undef, $h, $text) = api('GET', '/metrics');
    is($st, 200, 'status');
    like($h->{'content-type'}, qr{^text/plain; version=0\.0\.4}, 'type');
    my %v;
    for my $line (split /\n/, $text) {
        next if $line =~ /^# (HELP|TYPE) [a-z_]+ .+$/;
        like($line, qr/^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})?
                        \ (\d+(\.\d+)?|\+Inf)$/x,
             "exposition line: $line");
        my ($k, $n) = $line =~ /^(\S+) (\S+)$/;
        $v{$k} = $n;
    }
    ok($v{social_pg_queries_total} > 50, 'queries counted');
    ok($v{social_pg_timeouts_total} >= 1, 'the timeout counted');
    ok($v{social_pg_rejected_total} >= 4, 'the refusals counted');
    ok($v{social_pg_reconnects_total} >= 1, 'the reconnects counted');
    is($v{'social_pg_connections{state="idle"}'}
       + $v{'social_pg_connections{state="busy"}'}, 2, 'two connections');
};

stop_nginx();

# pipelined: many requests' statements on one connection
start_nginx(replace => {
    'social_pg_pool_size 8' => 'social_pg_pool_size 1',
    'social_pg_pipeline_depth 16' => 'social_pg_pipeline_depth 8',
});

subtest 'pipelined statements each reach their own request' => sub {
    my @res = parallel(24, sub {
        my $i = shift;
        my ($st, $j) = api('POST', '/t/pg/echo', { text => "req $i", int => $i });
        return [$st, $j->{text}, $j->{int}];
    });
    is_deeply(\@res, [map { [200, "req $_", $_] } 0 .. 23],
              'every reply matches its request');
};

subtest 'a failing statement does not spoil its neighbours' => sub {
    my @res = parallel(24, sub {
        my $i = shift;
        my $bad = $i % 3 == 0;
        my ($st, $j) = api('POST', '/t/pg/echo',
                           { bigint => $bad ? 'x' : "$i", text => "t$i" });
        return [$st, $bad ? undef : $j->{bigint}];
    });
    is_deeply(\@res,
              [map { $_ % 3 == 0 ? [404, undef] : [200, "$_"] } 0 .. 23],
              'bad ids are 404, the others answer their own data');
};

subtest 'writes are acknowledged only once committed' => sub {
    my @names = map { 'pl' . int(rand(1e9)) . "_$_" } 0 .. 9;
    my @res = parallel(10, sub {
        my $i = shift;
        my $u = $names[$i];
        # every other one conflicts on its second insert and rolls back
        return (api('POST', '/t/pg/tx', { username => $u, email => "$u\@x",
                                          fail => $i % 2 ? JSON::PP::true
                                                         : JSON::PP::false }))[0];
    });
    is_deeply(\@res, [map { $_ % 2 ? 409 : 201 } 0 .. 9], 'statuses');
    for my $i (0 .. 9) {
        my $want = $i % 2 ? 404 : 200;
        is((api('GET', "/t/pg/user?username=$names[$i]"))[0], $want,
           "row of request $i " . ($i % 2 ? 'absent' : 'present'));
    }
    is(psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
            . "'ngx_social' AND state LIKE 'idle in transaction%'"), 0,
       'no connection left inside a transaction');
};

stop_nginx();

# a replica: read-only statements go there, writes to the primary
psql("DROP DATABASE IF EXISTS social_replica");
psql("CREATE DATABASE social_replica TEMPLATE social");
system("psql -X -q -h 127.0.0.1 -p $ENV{TEST_NGINX_PG_PORT} -U social "
       . "-d social_replica -c \"INSERT INTO users (username, email) "
       . "VALUES ('only_on_replica', 'r\@x')\"") == 0 or die;

start_nginx(http => "social_pg_replica_conninfo \"host=127.0.0.1 "
                    . "port=$ENV{TEST_NGINX_PG_PORT} dbname=social_replica "
                    . "user=social\";");

subtest 'read-only statements run on the replica' => sub {
    ok(wait_until(sub {
        (api('GET', '/t/pg/user?username=only_on_replica'))[0] == 200 }, 5),
       'a read sees the replica');
    my $u = 'rp' . int(rand(1e9));
    is((api('POST', '/t/pg/tx', { username => $u, email => "$u\@x" }))[0],
       201, 'a write');
    is(psql("SELECT count(*) FROM users WHERE username = '$u'"), 1,
       'went to the primary');
};

stop_nginx();
psql("DROP DATABASE social_replica");
done_testing();
