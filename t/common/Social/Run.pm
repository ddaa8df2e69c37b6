package Social::Run;

# What ./build.sh does for an operator, under test: build_sh() runs a
# build.sh command with SOCIAL_RUN_DIR and the ports pointed at this
# suite (its PostgreSQL and Redis; HTTP from TEST_NGINX_PORT + 300, HTTPS
# from + 310), and start_nodes() starts the nginx nodes that
# "./build.sh run ... --check" configured, as run would start them
# (daemon, master, the configuration it wrote).
#
#   my ($rc, $out) = build_sh('run', '--nodes', 2, '--check');
#   start_nodes(2);                 # each answers /readyz
#   node_port(2)                    # HTTP port of node 2
#   my ($st, $json, $headers) = node_api(2, 'GET', '/v1/feed', undef, $tok);
#   stop_nodes();                   # fails the test on an alert or crash

use strict;
use warnings;

use Exporter 'import';
use File::Path qw(make_path remove_tree);
use HTTP::Tiny;
use JSON::PP;
use POSIX ();
use Test::More ();
use Time::HiRes qw(sleep time);

our @EXPORT = qw(build_sh fresh_run run_dir node_port https_port start_nodes
                 stop_nodes node_pid node_api);

my $dir = ($ENV{TEST_NGINX_SERVROOT} || "$ENV{PWD}/t/servroot") . '-run';
my $base = ($ENV{TEST_NGINX_PORT} || 1984) + 300;
my $build = "$ENV{TEST_NGINX_CONF_DIR}/../build.sh";
my @started;

sub run_dir { $dir }
sub node_port { $base + $_[0] - 1 }
sub https_port { $base + 10 + $_[0] - 1 }

sub _dir { $_[0] == 1 ? $dir : "$dir/node$_[0]" }

my $JSON = JSON::PP->new->utf8->canonical;

# node_api(NODE, METHOD, PATH, BODY?, TOKEN?) -> (status, JSON, headers);
# BODY a reference, sent as JSON
sub node_api {
    my ($n, $method, $path, $body, $token) = @_;
    my %args = (headers => {});
    $args{headers}{Authorization} = "Bearer $token" if $token;
    if ($body) {
        $args{content} = $JSON->encode($body);
        $args{headers}{'Content-Type'} = 'application/json';
    }
    my $r = HTTP::Tiny->new(timeout => 10, keep_alive => 0)->request(
        $method, 'http://127.0.0.1:' . node_port($n) . $path, \%args);
    return ($r->{status}, eval { $JSON->decode($r->{content}) },
            $r->{headers});
}

# build_sh(ARGS...) -> (exit code, stdout and stderr); env => {...} first
# to change the environment of this call
sub build_sh {
    my %env = (SOCIAL_RUN_DIR => $dir, SOCIAL_HTTP_PORT => $base,
               SOCIAL_HTTPS_PORT => $base + 10,
               SOCIAL_PG_PORT => $ENV{TEST_NGINX_PG_PORT},
               SOCIAL_REDIS_PORT => $ENV{TEST_NGINX_REDIS_PORT});
    if (@_ && ref $_[0] eq 'HASH') {
        my $more = shift;
        @env{ keys %$more } = values %$more;
    }
    my @args = @_;
    local @ENV{ keys %env } = values %env;
    my $pid = open my $fh, '-|' // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec 'bash', $build, @args or POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

# the run folder from scratch; the suite's certificate as the run's (so
# that the suite's TLS PostgreSQL is verified against the run's CA)
sub fresh_run {
    remove_tree($dir);
    make_path("$dir/tls");
    for my $f (qw(ca.crt server.crt server.key)) {
        system('cp', "$ENV{TEST_NGINX_TLS_DIR}/$f", "$dir/tls/$f") == 0
            or die "cp $f";
    }
}

sub node_pid {
    my ($n) = @_;
    open my $fh, '<', _dir($n) . '/nginx.pid' or return undef;
    my $pid = <$fh>;
    close $fh;
    chomp $pid if defined $pid;
    return $pid;
}

# the nodes configured by "run --check", started from that configuration
sub start_nodes {
    my ($n) = @_;
    for my $i (1 .. $n) {
        my $d = _dir($i);
        for my $f (qw(nginx.conf social.conf)) {
            open my $in, '<', "$d/$f.new" or die "$d/$f.new: $!";
            my $text = do { local $/; <$in> };
            close $in;
            $text =~ s/social\.conf\.new;/social.conf;/;
            open my $out, '>', "$d/$f" or die $!;
            print {$out} $text;
            close $out;
            unlink "$d/$f.new";
        }
        system($ENV{TEST_NGINX_BINARY} || 'nginx', '-p', "$d/", '-c',
               "$d/nginx.conf") == 0 or die "nginx of node $i did not start";
        push @started, $i;
    }
    my $http = HTTP::Tiny->new(timeout => 2);
    for my $i (1 .. $n) {
        my $deadline = time + 10;
        while (time < $deadline) {
            last if $http->get('http://127.0.0.1:' . node_port($i)
                               . '/readyz')->{status} == 200;
            sleep 0.05;
        }
    }
}

sub stop_nodes {
    for my $i (@started) {
        my $pid = node_pid($i) or next;
        kill 'QUIT', $pid;
        my $deadline = time + 10;
        while (time < $deadline && kill 0, $pid) {
            sleep 0.05;
        }
        kill 'KILL', $pid if kill 0, $pid;
        open my $fh, '<', _dir($i) . '/logs/error.log' or next;
        my @bad = grep { /\[(alert|crit|emerg)\]|exited on signal/ } <$fh>;
        close $fh;
        Test::More::ok(!@bad, "node $i: no alert, crit or crash")
            or Test::More::diag(join '', @bad);
    }
    @started = ();
}

END { stop_nodes() if @started }

1;
