package Social::Test;

# Flow tests: start nginx with the real drop-in configuration
# (conf/social.conf, its ports pointed at the test servers), then drive it
# with requests whose inputs depend on earlier answers (tokens, ids),
# concurrently when the test needs it.  Block-format suites use
# Test::Nginx::Socket instead; this is for what that format cannot express.

use strict;
use warnings;

use Exporter 'import';
use File::Path qw(make_path remove_tree);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Test::More ();
use Time::HiRes qw(sleep time);

our @EXPORT = qw(start_nginx stop_nginx reload_nginx api api_raw parallel
                 wait_until psql redis_cli redis_calls redis_calls_until
                 error_log_since
                 error_log_mark
                 nginx_port nginx_pid pg_server new_user forget_limits);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my ($pid, $root, $port, $conf_text, $log_mark);

sub nginx_port { $port }
sub nginx_pid { $pid }

sub _root_dir {
    my $base = $ENV{TEST_NGINX_SERVROOT} || "$ENV{PWD}/t/servroot";
    return "$base-flow";
}

# start_nginx(workers => 2, replace => { 'from' => 'to' }, http => '...',
#             server => '...')
sub start_nginx {
    my %o = @_;

    $root = _root_dir();
    $port = $ENV{TEST_NGINX_PORT} || 1984;

    remove_tree($root);
    make_path("$root/logs", "$root/tmp", "$root/conf");
    # the web client's files, under the prefix as ./build.sh run has them
    symlink("$ENV{TEST_NGINX_CONF_DIR}/../web", "$root/web")
        or die "symlink web: $!";

    my $social = _read("$ENV{TEST_NGINX_CONF_DIR}/social.conf");

    # the test servers' ports in place of those of ./build.sh run
    $social =~ s/listen 127\.0\.0\.1:8080/listen 127.0.0.1:$port/g;
    $social =~ s/port=15432/port=$ENV{TEST_NGINX_PG_PORT}/g;
    $social =~ s/(dbname=social user=social)"/$1 $ENV{TEST_NGINX_PG_SSL}"/g
        if $ENV{TEST_NGINX_PG_SSL};
    $social =~ s/127\.0\.0\.1:16379/127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT}/g;
    $social =~ s{ keys/}{ $ENV{TEST_NGINX_KEYS_DIR}/}g;

    # rate limits only where a test is about them
    $social =~ s/^social_limit .*\n//mg unless $o{limits};

    my %replace = %{ $o{replace} || {} };

    for my $from (sort keys %replace) {
        my $n = ($social =~ s/\Q$from\E/$replace{$from}/g);
        die "conf/social.conf has no '$from'\n" unless $n;
    }

    if ($o{server}) {
        $social =~ s/(\n\s*location \/ \{)/\n$o{server}$1/
            or die "conf/social.conf has no location /\n";
    }

    _write("$root/conf/social.conf", $social);

    my $workers = $o{workers} || 1;
    my $master = $workers > 1 ? 'on' : 'off';
    my $modules = join '',
        map { "load_module $_;\n" } split ' ', $ENV{TEST_NGINX_LOAD_MODULES};

    $conf_text = <<"EOF";
${modules}worker_processes $workers;
master_process $master;
daemon off;
pid $root/logs/nginx.pid;
error_log $root/logs/error.log info;
events { worker_connections 1024; }
http {
    access_log $root/logs/access.log;
    client_body_temp_path $root/tmp/body;
    proxy_temp_path $root/tmp/proxy;
    fastcgi_temp_path $root/tmp/fastcgi;
    uwsgi_temp_path $root/tmp/uwsgi;
    scgi_temp_path $root/tmp/scgi;
@{[ $o{http} || '' ]}
    include $root/conf/social.conf;
}
EOF
    _write("$root/conf/nginx.conf", $conf_text);

    my @cmd = ($ENV{TEST_NGINX_BINARY} || 'nginx', '-p', "$root/",
               '-c', "$root/conf/nginx.conf");

    if ($ENV{TEST_NGINX_USE_VALGRIND}) {
        my $logdir = $ENV{TEST_NGINX_VALGRIND_LOGDIR};
        my @vg = ('valgrind', '-q', '--tool=memcheck', '--vgdb=no',
                  '--leak-check=full',
                  '--show-possibly-lost=no', '--num-callers=30',
                  '--trace-children=yes');
        push @vg, "--log-file=$logdir/vg.%p.log" if $logdir;
        my $supp = $ENV{TEST_NGINX_VALGRIND_SUPPRESS};
        push @vg, "--suppressions=$supp" if $supp && -f $supp;
        unshift @cmd, @vg;
    }

    $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', "$root/logs/stdout.log";
        open STDERR, '>', "$root/logs/stderr.log";
        exec @cmd or POSIX::_exit(127);
    }

    my $limit = $ENV{TEST_NGINX_USE_VALGRIND} ? 60 : 10;
    my $ok = wait_until(sub {
        return 0 if waitpid($pid, POSIX::WNOHANG()) == $pid;
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                      Timeout => 1);
        return $s ? 1 : 0;
    }, $limit);

    unless ($ok) {
        my $log = -f "$root/logs/error.log" ? _read("$root/logs/error.log")
                                              : '';
        my $err = _read("$root/logs/stderr.log");
        $pid = undef;
        die "nginx did not start:\n$err$log";
    }

    # the workers connect to PostgreSQL and Redis as they start; a test
    # that keeps one of them away only gets /healthz
    wait_until(sub { (api('GET', '/readyz'))[0] == 200 },
               $o{unready} ? 0 : $limit)
        or wait_until(sub { (api('GET', '/healthz'))[0] == 200 }, $limit);
    error_log_mark();
    return $port;
}

sub stop_nginx {
    return unless $pid;
    kill 'QUIT', $pid;
    my $deadline = time + ($ENV{TEST_NGINX_USE_VALGRIND} ? 60 : 5);
    while (time < $deadline) {
        last if waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.05;
    }
    if (kill 0, $pid) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }
    $pid = undef;

    # a crash or an alert anywhere in the run fails the test
    my @bad = grep { /\[(alert|crit|emerg)\]|exited on signal/ }
              split /\n/, _read("$root/logs/error.log");
    Test::More::ok(!@bad, 'no alert, crit or crash in the error log')
        or Test::More::diag(join "\n", @bad);

    unless (Test::More->builder->is_passing) {
        my @log = grep { !/\[info\]/ }
                  split /\n/, _read("$root/logs/error.log");
        splice @log, 0, -40 if @log > 40;
        Test::More::diag("error log (last lines):\n" . join "\n", @log);
    }
}

sub reload_nginx {
    kill 'HUP', $pid;
}

END { stop_nginx() if $pid }

# api(METHOD, PATH, BODY?, HEADERS?) -> (status, decoded JSON or undef,
# headers, raw body).  BODY: a reference is sent as JSON, a string as is.
sub api {
    my ($method, $path, $body, $headers) = @_;
    my $r = api_raw($method, $path, $body, $headers);
    my $json = eval { length $r->{content}
                      ? $JSON->decode($r->{content}) : undef };
    return ($r->{status}, $json, $r->{headers}, $r->{content});
}

sub api_raw {
    my ($method, $path, $body, $headers) = @_;
    my %h = %{ $headers || {} };
    my %args = (headers => \%h);
    if (defined $body) {
        if (ref $body) {
            $args{content} = $JSON->encode($body);
            $h{'Content-Type'} //= 'application/json';
        } else {
            $args{content} = $body;
        }
    }
    my $http = HTTP::Tiny->new(timeout => 15, keep_alive => 0);
    return $http->request($method, "http://127.0.0.1:$port$path", \%args);
}

# new_user('name') registers a user with a unique name and signs it in:
# { id, name, token, auth => { Authorization => 'Bearer ...' } }
my $users = 0;

sub new_user {
    my ($prefix) = @_;
    my $name = sprintf '%s_%d_%d', $prefix, $$ % 100000, ++$users;
    $name = substr $name, 0, 30;
    my ($st, $j) = api('POST', '/v1/users', { username => $name,
        email => "$name\@example.com", password => 'correct horse' });
    die "register $name: $st\n" unless $st == 201;
    my ($st2, $t) = api('POST', '/oauth/token', { grant_type => 'password',
        username => $name, password => 'correct horse' });
    die "sign in $name: $st2\n" unless $st2 == 200;
    return { id => $j->{id}, name => $name, token => $t->{access_token},
             auth => { Authorization => "Bearer $t->{access_token}" } };
}

# parallel(N, sub { my $i = shift; ...; return SCALAR_OR_REF })
# runs N children at once and returns their results in order.
sub parallel {
    my ($n, $code) = @_;
    my (@kids, @res);
    for my $i (0 .. $n - 1) {
        pipe(my $r, my $w) or die "pipe: $!";
        my $kid = fork() // die "fork: $!";
        if ($kid == 0) {
            close $r;
            my $v = eval { $code->($i) };
            $v = { died => "$@" } if $@;
            print {$w} $JSON->encode($v);
            close $w;
            POSIX::_exit(0);
        }
        close $w;
        push @kids, [$kid, $r];
    }
    for my $k (@kids) {
        my ($kid, $r) = @$k;
        local $/;
        my $out = <$r>;
        close $r;
        waitpid($kid, 0);
        push @res, length($out // '') ? $JSON->decode($out) : undef;
    }
    return @res;
}

# polls until the code returns true or the time is up
sub wait_until {
    my ($code, $seconds) = @_;
    my $deadline = time + ($seconds // 5);
    while (time < $deadline) {
        my $v = $code->();
        return $v if $v;
        sleep 0.05;
    }
    return 0;
}

sub psql {
    my ($sql) = @_;
    local $ENV{PGOPTIONS} = '-c client_min_messages=warning';
    open my $fh, '-|', 'psql', '-X', '-q', '-h', '127.0.0.1', '-p',
        $ENV{TEST_NGINX_PG_PORT}, '-U', 'social', '-d', 'social', '-tA',
        '-v', 'ON_ERROR_STOP=1', '-c', $sql
        or die "psql: $!";
    local $/;
    my $out = <$fh> // '';
    close $fh or die "psql failed ($sql): $out";
    $out =~ s/\s+\z//;
    return $out;
}

# pg_server('stop' | 'start'): the suite's own PostgreSQL, for outage tests
sub pg_server {
    my ($what) = @_;
    my @ctl = ('runuser', '-u', 'postgres', '--',
               '/usr/lib/postgresql/15/bin/pg_ctl', '-D',
               $ENV{TEST_NGINX_PG_DATA}, '-w', '-t', '30');
    my @cmd = $what eq 'stop'
        ? (@ctl, '-m', 'fast', 'stop')
        : (@ctl, '-l', $ENV{TEST_NGINX_PG_LOG}, '-o', $ENV{TEST_NGINX_PG_OPTS},
           'start');
    system(join(' ', map { "'$_'" } @cmd) . ' >/dev/null 2>&1') == 0
        or die "pg_ctl $what failed";
}

sub redis_cli {
    my @args = @_;
    my $port = $ENV{TEST_NGINX_REDIS_PORT};
    open my $fh, '-|', 'redis-cli', '-p', $port, @args
        or die "redis-cli: $!";
    local $/;
    my $out = <$fh> // '';
    close $fh;
    $out =~ s/\s+\z//;
    return $out;
}

# the commands Redis ran while $code ran: { command => calls }
sub redis_calls {
    my ($code) = @_;
    redis_cli('CONFIG', 'RESETSTAT');
    $code->();
    my %calls;
    for (split /\n/, redis_cli('INFO', 'commandstats')) {
        $calls{$1} = $2 if /^cmdstat_([\w|]+):calls=(\d+),/;
    }
    delete $calls{'config|resetstat'};
    return \%calls;
}

# redis_calls($code) until they are %$want, at most $tries times: the
# last ones.  Each worker keeps copies of what it read, and which worker
# a request goes to is the kernel's choice: a few rounds give both theirs
sub redis_calls_until {
    my ($code, $want, $tries) = @_;
    my $flat = sub {
        my ($h) = @_;
        return join ',', map { "$_=$h->{$_}" } sort keys %$h;
    };
    my $got;
    for (1 .. ($tries || 5)) {
        $got = redis_calls($code);
        last if $flat->($got) eq $flat->($want);
    }
    return $got;
}

# every rate limit bucket in Redis goes (those other suites left)
sub forget_limits {
    redis_cli('EVAL', "for _, k in ipairs(redis.call('KEYS', 'social:rl:*'))"
              . " do redis.call('DEL', k) end", 0);
}

# error log lines written since the last mark
sub error_log_mark {
    $log_mark = -s "$root/logs/error.log" || 0;
}

sub error_log_since {
    open my $fh, '<', "$root/logs/error.log" or return ();
    seek $fh, $log_mark, 0;
    my @lines = <$fh>;
    close $fh;
    return @lines;
}

sub _read {
    my ($file) = @_;
    open my $fh, '<', $file or return '';
    local $/;
    my $s = <$fh>;
    close $fh;
    return $s;
}

sub _write {
    my ($file, $text) = @_;
    open my $fh, '>', $file or die "$file: $!";
    print {$fh} $text;
    close $fh;
}

1;
