# Self-test of the bundled runner (t/lib/Test/Nginx/Socket.pm).
# Runs the fixtures in t/runner/ with perl (one with prove) against the
# stock nginx, and checks their exit codes and TAP. Port 1990 by default
# (TEST_NGINX_RUNNER_PORT), servroots in a temp dir.
use strict;
use warnings;

use Test::More;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Spec;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time);

my $tdir = dirname(abs_path(__FILE__));
my $lib  = "$tdir/lib";
my $fix  = "$tdir/runner";
my $port = $ENV{TEST_NGINX_RUNNER_PORT} || 1990;

sub in_path {
    my $prog = shift;
    for my $d (File::Spec->path, '/usr/sbin', '/usr/local/sbin') {
        return "$d/$prog" if -x "$d/$prog";
    }
    undef;
}

my $nginx = $ENV{TEST_NGINX_BINARY} || in_path('nginx');
plan skip_all => 'no nginx binary found' unless $nginx;

my $tmp = tempdir('nginx-runner-XXXXXX', TMPDIR => 1, CLEANUP => 1);

# Runs one fixture in a clean TEST_NGINX_* environment; returns a hash.
sub run_fixture {
    my ($name, %env) = @_;
    my @cmd = ($^X, "-I$lib", "$fix/$name.t");
    @cmd = ('prove', '-I', $lib, "$fix/$name.t") if delete $env{PROVE};
    my %set = (
        TEST_NGINX_BINARY   => $nginx,
        TEST_NGINX_PORT     => $port,
        TEST_NGINX_SERVROOT => "$tmp/$name",
        %env,
    );
    my $start = time;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if (!$pid) {
        delete $ENV{$_} for grep { /^TEST_NGINX_/ } keys %ENV;
        @ENV{ keys %set } = values %set;
        open STDERR, '>&', \*STDOUT;
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        print "cannot exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }
    local $SIG{ALRM} = sub { kill 'KILL', $pid };
    alarm 50;
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    my $status = $?;
    alarm 0;
    my %r = (rc => $status >> 8, out => $out, secs => time - $start,
             servroot => "$tmp/$name", ok => [], not_ok => []);
    for (split /\n/, $out) {
        push @{ $r{ok} }, $1 if /^ok \d+ - (.*)$/;
        push @{ $r{not_ok} }, $1 if /^not ok \d+ - (.*)$/;
        $r{plan} = $1 if /^1\.\.(\d+)/;
    }
    return \%r;
}

sub port_free {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
        Proto => 'tcp', Timeout => 1);
    return !$s;
}

sub slurp {
    open my $fh, '<', shift or return '';
    local $/;
    <$fh>;
}

sub show { diag($_[0]{out}) }

my $total = time;

subtest 'passing fixture: every section works, repeat_each(2)' => sub {
    my $log = "$tmp/all-errors.log";
    my $r = run_fixture('pass', TEST_NGINX_MY_VAR => 'runner-value',
        TEST_NGINX_ERROR_LOG => $log);
    is($r->{rc}, 0, 'exit code 0') or show($r);
    is_deeply($r->{not_ok}, [], 'no failing assertion');
    ok($r->{plan} && $r->{plan} == @{ $r->{ok} }, "plan matches the $r->{plan} oks");
    cmp_ok(scalar @{ $r->{ok} }, '>=', 150, 'all blocks ran');
    for my $re (qr/TEST 3: .* status code ok \(repeat 1, req 1\)/,
                qr/TEST 5: .* response_body - response is expected \(repeat 0, req 2\)/,
                qr/TEST 15: .* tcp_query ok/,
                qr/TEST 8: .* grep_error_log_out \(repeat 1\)/,
                qr/TEST 2: .* header X-Absent not present/)
    {
        ok((grep { $_ =~ $re } @{ $r->{ok} }), "assertion $re ran");
    }
    my $conf = slurp("$r->{servroot}/conf/nginx.conf");
    like($conf, qr/^\s*listen 127\.0\.0\.1:$port;/m, 'listens on loopback only');
    like($conf, qr/^daemon off;/m, 'daemon off');
    like($conf, qr/^master_process off;/m, 'master off by default');
    like(slurp($log), qr/^=== .*TEST 16/m, 'TEST_NGINX_ERROR_LOG collects the blocks');
    like($r->{out}, qr/^# WARNING: TEST 17: .*\[alert\] 1#1: runner fake alert/m,
        '[alert] lines are reported as warnings');
    ok(port_free(), 'nginx stopped at the end');
    cmp_ok($r->{secs}, '<', 20, sprintf('took %.1fs', $r->{secs}));
};

my %must_fail = (
    fail_status        => qr/^TEST 2: wrong status - status code ok/,
    fail_body          => qr/^TEST 1: wrong body - response_body - response is expected/,
    fail_no_error_log  => qr/pattern "\[error\]" should not match any line in error\.log/,
    fail_header        => qr/^TEST 1: missing header - header X-Missing ok/,
    fail_timeout       => qr/client socket timed out/,
    fail_assert        => qr/assertion failed in the error log: .*Assertion `p != NULL' failed/,
);
for my $name (sort keys %must_fail) {
    subtest "failing fixture: $name" => sub {
        my $r = run_fixture($name);
        isnt($r->{rc}, 0, 'non-zero exit');
        is(scalar @{ $r->{not_ok} }, 1, 'exactly one "not ok"') or show($r);
        like($r->{not_ok}[0] // '', $must_fail{$name}, 'the expected assertion failed');
        ok(port_free(), 'nginx stopped');
    };
}

subtest 'ONLY runs a single block' => sub {
    my $r = run_fixture('only');
    is($r->{rc}, 0, 'exit code 0') or show($r);
    is($r->{plan}, 2, 'blocks() counts only the ONLY block');
    is_deeply([ grep { !/^TEST 2:/ } @{ $r->{ok} } ], [], 'only TEST 2 ran');
    like($r->{out}, qr/I found ONLY/, 'ONLY is reported');
};

subtest 'SKIP drops a block, LAST stops the list' => sub {
    my $r = run_fixture('skip_last');
    is($r->{rc}, 0, 'exit code 0') or show($r);
    is($r->{plan}, 8, 'repeat_each() * 2 * blocks() = 8');
    is(scalar @{ $r->{ok} }, 8, '8 oks');
    is_deeply([ grep { !/^TEST [13]:/ } @{ $r->{ok} } ], [], 'only TEST 1 and TEST 3 ran');
};

subtest 'a config error bails out fast' => sub {
    my $r = run_fixture('config_error');
    isnt($r->{rc}, 0, 'non-zero exit');
    like($r->{out}, qr/^Bail out!.*nginx failed to start/m, 'BAIL_OUT');
    like($r->{out}, qr/unknown directive "no_such_directive_here"/, 'error log tail shown');
    cmp_ok($r->{secs}, '<', 10, sprintf('within %.2fs', $r->{secs}));

    my $p = run_fixture('config_error', PROVE => 1);
    isnt($p->{rc}, 0, 'prove fails too');
    like($p->{out}, qr/Bail ?out/i, 'prove reports the bail out');
};

subtest 'must_die' => sub {
    my $r = run_fixture('must_die');
    is($r->{rc}, 0, 'exit code 0') or show($r);
    is(scalar @{ $r->{ok} }, 3, 'error_log checked, next block ran');
};

subtest 'TEST_NGINX_LOAD_MODULES' => sub {
    my $so = '/nonexistent/ngx_runner_missing_module.so';
    my $r = run_fixture('load_modules', TEST_NGINX_LOAD_MODULES => $so);
    is($r->{rc}, 0, 'nginx died loading the module, as the block expects') or show($r);
    like(slurp("$r->{servroot}/conf/nginx.conf"), qr/^load_module \Q$so\E;\n(?s:.*)^http \{/m,
        'load_module line before http {}');
};

subtest 'undefined $TEST_NGINX_ variable bails out' => sub {
    my $r = run_fixture('undefined_var');
    isnt($r->{rc}, 0, 'non-zero exit');
    like($r->{out}, qr/^Bail out!.*TEST_NGINX_SURELY_UNDEFINED_VAR/m, 'names the variable');
};

subtest 'first block without config bails out' => sub {
    my $r = run_fixture('no_config_first');
    isnt($r->{rc}, 0, 'non-zero exit');
    like($r->{out}, qr/^Bail out!.*config/m, 'BAIL_OUT');
};

subtest 'nginx is stopped when the test script dies' => sub {
    my $r = run_fixture('dies', TEST_NGINX_VERBOSE => 1);
    isnt($r->{rc}, 0, 'non-zero exit');
    like($r->{out}, qr/preprocessor died(?s:.*)stopping nginx \d+/, 'it died, then END stopped nginx');
    ok(port_free(), 'port free again');
    my ($pid) = $r->{out} =~ /stopping nginx (\d+)/;
    ok($pid && !kill(0, $pid), 'nginx process gone');
};

subtest 'master_on, workers, env_to_nginx, counted plan, shuffled' => sub {
    my $r = run_fixture('master');
    is($r->{rc}, 0, 'exit code 0') or show($r);
    is($r->{plan}, 6, 'plan 6');
    is(scalar @{ $r->{ok} }, 6, '6 oks');
    my $conf = slurp("$r->{servroot}/conf/nginx.conf");
    like($conf, qr/^master_process on;/m, 'master on');
    like($conf, qr/^worker_processes\s+2;/m, 'two workers');
    like($conf, qr/^env RUNNER_ENV_VAR;/m, 'env line');
    ok(port_free(), 'master and workers stopped');
    cmp_ok($r->{secs}, '<', 5, sprintf('3 restarts in %.2fs (no zombie wait)', $r->{secs}));
};

subtest 'blocks are shuffled unless TEST_NGINX_NO_SHUFFLE' => sub {
    my $order = sub {
        my %seen;
        join ' ', grep { !$seen{$_}++ } map { /^TEST (\d+):/ ? $1 : () } @{ $_[0]{ok} };
    };
    my $r = run_fixture('shuffle');
    is($r->{rc}, 0, 'exit code 0') or show($r);
    isnt($order->($r), '1 2 3 4 5 6 7 8', 'random order: ' . $order->($r));
    $r = run_fixture('shuffle', TEST_NGINX_NO_SHUFFLE => 1);
    is($order->($r), '1 2 3 4 5 6 7 8', 'file order with TEST_NGINX_NO_SHUFFLE=1');
};

subtest 'a port in use bails out at once' => sub {
    my $busy = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
        Listen => 1, ReuseAddr => 1, Proto => 'tcp');
    plan skip_all => "cannot listen on $port: $!" unless $busy;
    my $r = run_fixture('only');
    close $busy;
    isnt($r->{rc}, 0, 'non-zero exit');
    like($r->{out}, qr/^Bail out!.*already in use/m, 'port in use reported');
    cmp_ok($r->{secs}, '<', 5, 'fast');
};

SKIP: {
    skip 'valgrind not installed', 1 unless in_path('valgrind');
    subtest 'TEST_NGINX_USE_VALGRIND' => sub {
        my $logdir = "$tmp/vg";
        my $supp = "$tmp/test.supp";
        open my $fh, '>', $supp or die $!;
        print $fh "{\n   runner-dummy\n   Memcheck:Leak\n   fun:runner_no_such_function\n}\n";
        close $fh;
        my $r = run_fixture('valgrind', TEST_NGINX_USE_VALGRIND => 1,
            TEST_NGINX_VALGRIND_LOGDIR => $logdir, TEST_NGINX_VALGRIND_SUPPRESS => $supp,
            TEST_NGINX_VERBOSE => 1);
        is($r->{rc}, 0, 'passes under valgrind') or show($r);
        like($r->{out}, qr/starting: valgrind -q --tool=memcheck --vgdb=no --leak-check=full/, 'valgrind command');
        like($r->{out}, qr/--suppressions=\Q$supp\E/, 'suppression file used');
        like($r->{out}, qr/--log-file=\Q$logdir\E\/vg\.%p\.log/, 'log file per pid');
        like(slurp("$r->{servroot}/conf/nginx.conf"), qr/^master_process off;/m,
            'master forced off');
        ok(scalar(() = glob("$logdir/vg.*.log")), 'valgrind log written');
        ok(port_free(), 'stopped');
    };
}

diag(sprintf 'runner self-test took %.1fs', time - $total);
done_testing();
