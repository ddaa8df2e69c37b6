# The Redis adapter under concurrency and failures, with two workers:
# pipelining of many requests at once, pub/sub between workers, shared
# subscriptions, clients that go away, CLIENT KILL of the adapter's
# connections, and a Redis that is stopped and started again.
#
# What a static block cannot do runs in "--- init" (after nginx started,
# before the block's request) through the helpers below; they talk HTTP to
# a second server with "reuseport" (so connections spread over the workers)
# and RESP to Redis, and only ever wait with bounded polls.

use Test::Nginx::Socket 'no_plan';

use File::Temp ();
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes ();

master_on();
workers(2);
worker_connections(1024);
no_shuffle();

our $Json = JSON::PP->new->utf8->canonical;

# valgrind runs everything many times slower
our $Slow = $ENV{TEST_NGINX_USE_VALGRIND} ? 10 : 1;

# "reuseport" spreads connections over the workers, but a runner that
# drops the master under valgrind would leave the second socket unserved
our $ReusePort = $ENV{TEST_NGINX_USE_VALGRIND} ? '' : ' reuseport';
$ENV{TEST_NGINX_REDIS_LIVE_OPT} = $ReusePort;

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1) or die "no free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

$ENV{TEST_NGINX_REDIS_LIVE_PORT} = free_port();
$ENV{TEST_NGINX_REDIS_TMP_PORT} = free_port();

our ($TmpRedisPid, $TmpRedisDir);

END {
    stop_tmp_redis();
    system('rm', '-rf', $TmpRedisDir) if $TmpRedisDir;
}

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value('http_config', <<'_EOC_');
    social_redis_address 127.0.0.1:$TEST_NGINX_REDIS_PORT;

    server {
        listen 127.0.0.1:$TEST_NGINX_REDIS_LIVE_PORT$TEST_NGINX_REDIS_LIVE_OPT;
        location /t/ { social_api; }
    }
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value('config', "location /t/ { social_api; }\n");
    }

    if (!defined $block->no_error_log) {
        $block->set_value('no_error_log', "[alert]\n[crit]\n[emerg]\n");
    }
});


# ------------------------------------------------------------------ HTTP

sub http_send {
    my ($method, $path, $body) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ENV{TEST_NGINX_REDIS_LIVE_PORT},
                                  Timeout => 5 * $Slow)
        or die "cannot connect to nginx: $!";
    my $data = defined $body ? $Json->encode($body) : '';
    my $req = "$method $path HTTP/1.1\r\nHost: localhost\r\n"
              . "Connection: close\r\n";
    $req .= "Content-Length: " . length($data) . "\r\n" if length $data;
    $s->syswrite("$req\r\n$data");
    $s->blocking(0);
    return { sock => $s, buf => '', start => Time::HiRes::time() };
}

# reads what is there; true once the server closed the connection
sub http_poll {
    my ($h) = @_;
    return 1 if $h->{done};
    while (1) {
        my $n = sysread($h->{sock}, my $chunk, 65536);
        if (!defined $n) {
            return 0 if $!{EAGAIN} || $!{EWOULDBLOCK};
            $n = 0;
        }
        if ($n == 0) {
            $h->{done} = 1;
            $h->{elapsed} = Time::HiRes::time() - $h->{start};
            close $h->{sock};
            return 1;
        }
        $h->{buf} .= $chunk;
    }
}

# (status, decoded JSON body) of a finished exchange
sub http_result {
    my ($h) = @_;
    my ($head, $body) = split /\r\n\r\n/, $h->{buf}, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d{3})};
    my $json = eval { $Json->decode($body // '') };
    return ($status // 0, $json);
}

sub http_wait {
    my ($h, $secs) = @_;
    my $deadline = Time::HiRes::time() + $secs * $Slow;
    my $sel = IO::Select->new($h->{sock});
    until (http_poll($h)) {
        my $left = $deadline - Time::HiRes::time();
        return (0, undef) if $left <= 0;
        $sel->can_read($left);
    }
    return http_result($h);
}

sub http {
    my ($method, $path, $body) = @_;
    return http_wait(http_send($method, $path, $body), 10);
}

sub cmd {
    my (@argv) = @_;
    return http('POST', '/t/redis/cmd', { argv => \@argv });
}

# all requests at once, each on its own connection; results in order
sub http_many {
    my ($reqs, $secs) = @_;
    my @h = map { http_send(@$_) } @$reqs;
    my $deadline = Time::HiRes::time() + $secs * $Slow;
    while (grep { !$_->{done} } @h) {
        my $left = $deadline - Time::HiRes::time();
        last if $left <= 0;
        IO::Select->new(map { $_->{sock} } grep { !$_->{done} } @h)
            ->can_read($left);
        http_poll($_) for grep { !$_->{done} } @h;
    }
    return map { [ $_->{done} ? http_result($_) : (0, undef) ] } @h;
}

sub wait_until {
    my ($secs, $cond) = @_;
    my $deadline = Time::HiRes::time() + $secs * $Slow;
    while (1) {
        my $ok = $cond->();
        return $ok if $ok;
        return 0 if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.02);
    }
}

# ----------------------------------------------------------------- Redis

sub redis {
    my ($port, @args) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Timeout => 3)
        or return undef;
    $s->syswrite(join '', '*', scalar @args, "\r\n",
                 map { '$' . length($_) . "\r\n$_\r\n" } @args);
    my $reply = redis_read($s);
    close $s;
    return $reply;
}

sub redis_read {
    my ($s) = @_;
    my $line = <$s>;
    return undef unless defined $line;
    $line =~ s/\r\n$//;
    my ($t, $v) = (substr($line, 0, 1), substr($line, 1));
    return $v if $t eq '+' || $t eq ':';
    return "ERROR: $v" if $t eq '-';
    if ($t eq '$') {
        return undef if $v < 0;
        read($s, my $data, $v + 2);
        return substr($data, 0, $v);
    }
    return [ map { redis_read($s) } 1 .. $v ] if $t eq '*';
    return undef;
}

sub numsub {
    my ($port, $channel) = @_;
    my $r = redis($port, 'PUBSUB', 'NUMSUB', $channel);
    return ref $r ? $r->[1] : -1;
}

sub start_tmp_redis {
    my ($port) = @_;
    $TmpRedisDir //= File::Temp::tempdir('t031-redis.XXXXXX', TMPDIR => 1);
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        {
            no warnings 'exec';
            exec 'redis-server', '--port', $port, '--bind', '127.0.0.1',
                '--save', '', '--appendonly', 'no', '--dir', $TmpRedisDir,
                '--daemonize', 'no';
        }
        POSIX::_exit(127);
    }
    $TmpRedisPid = $pid;
    return wait_until(5, sub { (redis($port, 'PING') // '') eq 'PONG' });
}

sub stop_tmp_redis {
    return unless $TmpRedisPid;
    kill 'TERM', $TmpRedisPid;
    waitpid($TmpRedisPid, 0);
    undef $TmpRedisPid;
}

# ----------------------------------------------------------------- nginx

# the workers our requests reach: all of them with "reuseport", else the
# one that answers (the kernel may favour one)
sub worker_pids {
    return all_worker_pids() if $ReusePort;
    my ($st, $j) = http('GET', '/t/redis/status');
    return $st == 200 ? ($j->{pid}) : all_worker_pids();
}

sub slurp {
    my ($file) = @_;
    open my $fh, '<', $file or return '';
    local $/;
    return <$fh> // '';
}

# the worker processes, once all that nginx.conf asks for are running
# (nginx itself when it runs without a master)
sub all_worker_pids {
    my $root = $ENV{TEST_NGINX_SERVER_ROOT};
    my $conf = slurp("$root/conf/nginx.conf");
    my ($want) = $conf =~ /^\s*worker_processes\s+(\d+)/m;
    my ($master_on) = $conf =~ /^\s*master_process\s+on\b/m;
    my @pids;

    wait_until(10, sub {
        my ($master) = slurp("$root/logs/nginx.pid") =~ /(\d+)/ or return 0;

        if (!$master_on) {
            @pids = ($master);
            return 1;
        }

        @pids = ();
        for my $stat (glob '/proc/[0-9]*/stat') {
            my ($pid, $ppid) = slurp($stat) =~ /^(\d+) \(.*\) \S+ (\d+)/
                or next;
            push @pids, $pid if $ppid == $master;
        }
        return @pids == ($want // 1);
    });

    return @pids;
}


# every worker's latest /t/redis/status, keyed by pid
our %Status;

sub poll_status {
    my ($st, $j) = http('GET', '/t/redis/status');
    $Status{ $j->{pid} } = $j if $st == 200 && $j;
    return $j;
}

# true once every worker answered its status with cond true
sub all_workers {
    my ($secs, $cond) = @_;
    my @pids = worker_pids();
    %Status = ();
    return wait_until($secs, sub {
        poll_status();
        my @seen = grep { $Status{$_} && $cond->($Status{$_}) } @pids;
        return @seen == @pids;
    });
}

sub wait_ready {
    my ($secs) = @_;
    ok(all_workers($secs // 10, sub { $_[0]{connected} && $_[0]{subscriber} }),
       'every worker is connected to Redis');
}

sub wait_listeners {
    my ($n) = @_;
    my @pids = worker_pids();
    ok(wait_until(10, sub {
        poll_status();
        my $sum = 0;
        $sum += $Status{$_} ? $Status{$_}{listeners} : 0 for @pids;
        return $sum == $n;
    }), "$n listeners are registered");
}

sub listen_start {
    my ($channel, %o) = @_;
    my $q = "channel=$channel&timeout=" . ($o{timeout} // 20000);
    $q .= '&pattern=1' if $o{pattern};
    $q .= '&foreign=1' if $o{foreign};
    return http_send('GET', "/t/redis/listen?$q");
}

sub token { join '-', @_, $$, int(rand(1e9)) }

# ----------------------------------------------------------------- tests

sub check_pipelining {
    wait_ready();

    my $n = $ENV{TEST_NGINX_USE_VALGRIND} ? 60 : 300;
    my (@set, %value);

    for my $i (0 .. $n - 1) {
        $value{$i} = token("v$i") . "\0\r\n" . ('x' x ($i % 7 * 100));
        push @set, [ 'POST', '/t/redis/multi',
                     { commands => [ [ 'DEL', "t031:c:$i" ],
                                     [ 'SET', "t031:k:$i", $value{$i} ] ] } ];
    }

    my @res = http_many(\@set, 30);
    is(scalar(grep { $_->[0] == 200 } @res), $n, "$n concurrent writes");

    my (@mixed, @want);
    for my $i (0 .. $n - 1) {
        my $k = $i % 4;
        if ($k == 0) {
            push @mixed, [ 'POST', '/t/redis/cmd',
                           { argv => [ 'GET', "t031:k:$i" ] } ];
            push @want, $value{$i};
        } elsif ($k == 1) {
            my $t = token("echo$i");
            push @mixed, [ 'POST', '/t/redis/cmd', { argv => [ 'ECHO', $t ] } ];
            push @want, $t;
        } elsif ($k == 2) {
            push @mixed, [ 'POST', '/t/redis/multi',
                           { commands => [ [ 'INCRBY', "t031:c:$i", $i ],
                                           [ 'GET', "t031:k:$i" ] ] } ];
            push @want, [ $i, $value{$i} ];
        } else {
            push @mixed, [ 'POST', '/t/redis/eval',
                           { keys => [ "t031:c:$i" ], args => [ "a$i" ] } ];
            push @want, [ "t031:c:$i", "a$i", 1 ];
        }
    }

    @res = http_many(\@mixed, 30);

    my ($ok, @bad) = (0);
    for my $i (0 .. $n - 1) {
        my ($st, $j) = @{ $res[$i] };
        if ($st == 200 && $j && $Json->encode([ $j->{reply} ])
                                 eq $Json->encode([ $want[$i] ]))
        {
            $ok++;
        } else {
            push @bad, $i;
        }
    }
    is($ok, $n, "$n concurrent mixed requests each got their own reply")
        or diag("first wrong: request $bad[0]: "
                . $Json->encode($res[ $bad[0] ]));

    ok(all_workers(10, sub { $_[0]{pending} == 0 }),
       'nothing pending afterwards');
}

sub check_cross_worker {
    wait_ready();

    my @pids = worker_pids();
    my $two = @pids > 1 && $ReusePort;
    my $ch = token('t031:x');

    # with two workers the listener ignores its own worker's messages
    my $l = listen_start($ch, foreign => $two);
    wait_listeners(1);

    my (%publishers, $answered);
    for (1 .. 100) {
        my ($st, $j) = http('POST', '/t/redis/publish',
                            { channel => $ch, self => JSON::PP::true });
        $publishers{ $j->{pid} }++ if $st == 200;
        my ($lst) = http_wait($l, 0.05 / $Slow);
        if ($lst) { $answered = 1; last }
    }

    ok($answered, 'the listener got a message');
    my ($st, $j) = http_result($l);
    is($st, 200, 'listener status');
    like($j->{message}, qr/^\d+$/, 'the message is the publisher pid');
    ok($publishers{ $j->{message} }, 'published by one of our requests');

    if ($two) {
        isnt($j->{message}, $j->{pid},
             'published in one worker, received in the other');
    }

    ok(wait_until(5, sub { numsub($ENV{TEST_NGINX_REDIS_PORT}, $ch) == 0 }),
       'answered listener unsubscribed');
}

sub check_shared_subscription {
    wait_ready();

    my $ch = token('t031:s');
    my @l = map { listen_start($ch) } 1 .. 6;
    push @l, listen_start("$ch*", pattern => 1);
    wait_listeners(7);

    my @pids = worker_pids();
    my $subs = numsub($ENV{TEST_NGINX_REDIS_PORT}, $ch);
    ok($subs >= 1 && $subs <= @pids,
       "one Redis subscription per worker at most ($subs)");
    ok(!grep({ $Status{$_}{channels} > 2 } @pids),
       'listeners share a channel in the worker');

    my ($st, $j) = http('POST', '/t/redis/publish',
                        { channel => $ch, message => "to all\0of you" });
    is($st, 200, 'published');

    my @got = map { [ http_wait($_, 10) ] } @l;
    is(scalar(grep { $_->[0] == 200 && $_->[1]{message} eq "to all\0of you"
                     && $_->[1]{channel} eq $ch } @got),
       7, 'every listener got the message, pattern listener included');

    ok(wait_until(5, sub {
           numsub($ENV{TEST_NGINX_REDIS_PORT}, $ch) == 0
           && redis($ENV{TEST_NGINX_REDIS_PORT}, 'PUBSUB', 'NUMPAT') == 0
       }), 'the last listener of each worker unsubscribed');
    ok(all_workers(5, sub { $_[0]{channels} == 0 && $_[0]{listeners} == 0 }),
       'no channel left in the workers');
}

sub check_client_gone {
    wait_ready();

    my $ch = token('t031:gone');
    my $l = listen_start($ch);
    wait_listeners(1);
    ok(wait_until(5, sub { numsub($ENV{TEST_NGINX_REDIS_PORT}, $ch) == 1 }),
       'subscribed');

    close $l->{sock};

    ok(wait_until(5, sub { numsub($ENV{TEST_NGINX_REDIS_PORT}, $ch) == 0 }),
       'the listener of a client that left is unsubscribed');
    wait_listeners(0);

    # a command in flight (BLPOP blocks for 1 s) when its client leaves
    my $key = token('t031:blpop');
    my $h = http_send('POST', '/t/redis/cmd',
                      { argv => [ 'BLPOP', $key, 1 ] });
    ok(wait_until(5, sub {
           (redis($ENV{TEST_NGINX_REDIS_PORT}, 'CLIENT', 'LIST') // '')
               =~ /cmd=blpop/
       }), 'the command is in flight');
    close $h->{sock};

    my ($st, $j) = cmd('ECHO', 'still here');
    is($st, 200, 'the worker serves requests');
    is($j->{reply}, 'still here', 'with their own reply');

    ok(all_workers(5 + 1, sub { $_[0]{pending} == 0 }),
       'the late reply was consumed and dropped');
}

sub check_client_kill {
    wait_ready();

    my $port = $ENV{TEST_NGINX_REDIS_PORT};
    my $ch = token('t031:kill');
    my $l = listen_start($ch);
    wait_listeners(1);
    ok(wait_until(5, sub { numsub($port, $ch) == 1 }), 'subscribed');

    my $pubsub = redis($port, qw(CLIENT KILL TYPE pubsub));
    my $normal = redis($port, qw(CLIENT KILL TYPE normal));
    ok($pubsub >= 1, "killed the subscriber connections ($pubsub)");
    ok($normal >= 1, "killed the command connections ($normal)");

    my @res = map { [ cmd('ECHO', "after kill $_") ] } 1 .. 10;
    is(scalar(grep { $_->[0] == 200
                     && $_->[1]{reply} =~ /^after kill \d+$/ } @res),
       10, 'the next requests succeed');

    ok(wait_until(5, sub { numsub($port, $ch) == 1 }),
       'the subscription is back');

    my ($st, $j) = http('POST', '/t/redis/publish',
                        { channel => $ch, message => 'after kill' });
    is($j->{receivers}, 1, 'one subscriber');

    ($st, $j) = http_wait($l, 10);
    is($st, 200, 'the listener survived the kill');
    is($j->{message}, 'after kill', 'and got the message');
    ok($j->{resyncs} >= 1, 'after its resync callback');

    ok(all_workers(5, sub { $_[0]{reconnects} >= 1 && $_[0]{connected} }),
       'every worker reconnected');
}

sub check_outage {
    my $port = $ENV{TEST_NGINX_REDIS_TMP_PORT};

    ok(start_tmp_redis($port), 'a Redis of our own is up');
    wait_ready(15);

    my ($st, $j) = cmd('SET', 't031:outage', 'before');
    is($st, 200, 'a command works');

    my $ch = token('t031:outage');
    my $l = listen_start($ch);
    wait_listeners(1);
    ok(wait_until(5, sub { numsub($port, $ch) == 1 }), 'subscribed');

    stop_tmp_redis();

    my @res = map { [ cmd('GET', 't031:outage') ] } 1 .. 10;
    is(scalar(grep { $_->[0] == 503
                     && $_->[1]{error}{code} eq 'redis_unavailable' } @res),
       10, 'Redis down: every request fails with a clear error');

    my @times = map { my $h = http_send('POST', '/t/redis/cmd',
                                        { argv => ['PING'] });
                      http_wait($h, 10);
                      $h->{elapsed} // 99 } 1 .. 10;
    my ($max) = sort { $b <=> $a } @times;
    ok($max < 0.5 * $Slow, "and fast (slowest ${max}s)");

    ok(all_workers(5, sub { !$_[0]{connected} && !$_[0]{subscriber} }),
       'the workers know Redis is down');

    ok(start_tmp_redis($port), 'Redis is started again');

    # the backoff is at most 5 s
    ok(wait_until(15, sub { (cmd('PING'))[0] == 200 }),
       'commands work again without restarting nginx');
    wait_ready(15);

    ($st, $j) = cmd('SET', 't031:outage', 'after');
    is($j->{reply}{status}, 'OK', 'writes work');
    ($st, $j) = cmd('GET', 't031:outage');
    is($j->{reply}, 'after', 'reads work');

    ok(wait_until(10, sub { numsub($port, $ch) == 1 }),
       'the listener is subscribed again');
    http('POST', '/t/redis/publish', { channel => $ch, message => 'back' });
    ($st, $j) = http_wait($l, 10);
    is($st, 200, 'the listener survived the outage');
    is($j->{message}, 'back', 'and got the message');
    ok($j->{resyncs} >= 1, 'after its resync callback');
}

run_tests();

__DATA__

=== TEST 1: every reply reaches its own request under concurrency
--- init
main::check_pipelining();
--- request
GET /t/redis/status
--- response_body_like: "pending":0,
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: pub/sub between workers
--- init
main::check_cross_worker();
--- request
GET /t/redis/status
--- response_body_like: "listeners":0\}
--- no_error_log
[error]
[alert]
[crit]



=== TEST 3: local listeners share one subscription; the last one unsubscribes
--- init
main::check_shared_subscription();
--- request
GET /t/redis/status
--- response_body_like: "channels":0,
--- no_error_log
[error]
[alert]
[crit]



=== TEST 4: clients that go away while waiting leave nothing behind
--- http_config
    social_redis_address 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    social_redis_command_timeout 5s;

    server {
        listen 127.0.0.1:$TEST_NGINX_REDIS_LIVE_PORT$TEST_NGINX_REDIS_LIVE_OPT;
        location /t/ { social_api; }
    }
--- init
main::check_client_gone();
--- request
GET /t/redis/status
--- response_body_like: "pending":0,
--- error_log
client prematurely closed connection
--- no_error_log
[error]
[alert]
[crit]



=== TEST 5: CLIENT KILL of the adapter's connections
--- init
main::check_client_kill();
--- request
POST /t/redis/cmd
{"argv": ["PING"]}
--- response_body chomp
{"reply":{"status":"PONG"}}
--- error_log
lost: Server closed the connection



=== TEST 6: Redis stopped and started again, nginx keeps running
--- http_config
    social_redis_address 127.0.0.1:$TEST_NGINX_REDIS_TMP_PORT;

    server {
        listen 127.0.0.1:$TEST_NGINX_REDIS_LIVE_PORT$TEST_NGINX_REDIS_LIVE_OPT;
        location /t/ { social_api; }
    }
--- init
main::check_outage();
--- request
GET /t/redis/status
--- response_body_like: "connected":true
--- error_log
lost: Server closed the connection
failed: Connection refused
is back
