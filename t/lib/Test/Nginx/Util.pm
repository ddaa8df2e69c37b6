package Test::Nginx::Util;

# Helpers for the bundled Test::Nginx::Socket runner: settings, environment
# expansion, the servroot tree, nginx.conf, the nginx process and the logs.
#
# Written from scratch to follow the behaviour of the upstream Test::Nginx
# (see shared/BUILD-AND-TEST-NOTES.md, section 2). Deliberate differences:
#   - nginx runs with "daemon off" as our own child and is reaped with
#     waitpid, so a restart costs milliseconds instead of a zombie wait;
#   - it listens on 127.0.0.1 only (a numeric port becomes 127.0.0.1:PORT);
#   - a failed start bails out at once with the error log tail (no 30 s retry).

use strict;
use warnings;

use Cwd ();
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use File::Spec;
use IO::Socket::INET;
use POSIX ();
use Test::More ();
use Time::HiRes qw(sleep time);

our @EXPORT_OK = qw(
    repeat_each no_shuffle master_on master_off master_process_enabled
    workers worker_connections log_level timeout no_root_location
    env_to_nginx add_block_preprocessor add_cleanup_handler
    check_accum_error_log no_long_string bail_out
    server_port server_port_for_client server_addr html_dir server_root
    expand_env expand_value new_block_env check_nginx_binary nginx_version
    restart_nginx stop_nginx nginx_alive nginx_died_status last_conf
    log_size read_log_lines append_block_log
    $ServerAddr $ServerPort $ServerPortForClient $ServRoot $HtmlDir $LogDir
    $ConfDir $ConfFile $ErrLogFile $AccLogFile $PidFile $NginxBinary
    $RepeatEach $NoShuffle $Timeout $Sleep $NoLongString $CheckAccumErrLog
    @BlockPreprocessors $Verbose $UseValgrind
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

# ---------------------------------------------------------------- settings

our $NginxBinary = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $NginxVersion;                  # "1.22.1", filled by check_nginx_binary
our $ServerAddr = '127.0.0.1';
our ($ServerPort, $ServerPortForClient, $ServRoot);

if ($ENV{TEST_NGINX_RANDOMIZE}) {
    # like upstream: a random free port and t/servroot_PORT
    $ServerPort = $ServerPortForClient = free_port();
    $ServRoot = File::Spec->catdir(Cwd::cwd(), 't', "servroot_$ServerPort");
    $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;
} else {
    $ServerPort = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
    $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ENV{TEST_NGINX_PORT}
        || ($ServerPort =~ /(\d+)\s*$/ ? $1 : 1984);
    $ServRoot = $ENV{TEST_NGINX_SERVROOT}
        || File::Spec->catdir(Cwd::cwd(), 't', 'servroot');
    $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort
        unless defined $ENV{TEST_NGINX_SERVER_PORT};
}
$ServRoot = File::Spec->rel2abs($ServRoot);
$ServRoot =~ s{/+$}{};
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

our $ConfDir    = "$ServRoot/conf";
our $HtmlDir    = "$ServRoot/html";
our $LogDir     = "$ServRoot/logs";
our $ConfFile   = "$ConfDir/nginx.conf";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $PidFile    = "$LogDir/nginx.pid";

our $RepeatEach        = 1;
our $NoShuffle         = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $MasterProcess     = lc($ENV{TEST_NGINX_MASTER_PROCESS} || 'off') eq 'on' ? 'on' : 'off';
our $Workers           = 1;
our $WorkerConnections = 64;
our $LogLevel          = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $Timeout           = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $Sleep             = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $NoRootLocation    = 0;
our @EnvToNginx;
our @BlockPreprocessors;
our @CleanupHandlers;
our $CheckAccumErrLog  = 0;
our $NoLongString      = 0;
our $UseValgrind       = $ENV{TEST_NGINX_USE_VALGRIND};
our $NoClean           = $ENV{TEST_NGINX_NO_CLEAN};
our $FastShutdown      = $ENV{TEST_NGINX_FAST_SHUTDOWN};
our $Verbose           = $ENV{TEST_NGINX_VERBOSE};
our $ForceRestart      = $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} // 1;

# ------------------------------------------------------ functions suites call

sub repeat_each { $RepeatEach = shift if @_; $RepeatEach }
sub no_shuffle { $NoShuffle = 1 }
sub master_on { $MasterProcess = 'on' }
sub master_off { $MasterProcess = 'off' }
sub master_process_enabled {
    $MasterProcess = $_[0] ? 'on' : 'off' if @_;
    $MasterProcess eq 'on';
}
sub workers { $Workers = shift if @_; $Workers }
sub worker_connections { $WorkerConnections = shift if @_; $WorkerConnections }
sub log_level { $LogLevel = shift if @_; $LogLevel }
sub timeout { $Timeout = shift if @_; $Timeout }
sub no_root_location { $NoRootLocation = 1 }
sub env_to_nginx { push @EnvToNginx, @_ }
sub add_block_preprocessor { push @BlockPreprocessors, @_ }
sub add_cleanup_handler { push @CleanupHandlers, @_ }
sub check_accum_error_log { $CheckAccumErrLog = 1 }
sub no_long_string { $NoLongString = 1 }
sub server_addr { $ServerAddr }
sub server_port { $ServerPort }
sub server_port_for_client { $ServerPortForClient }
sub html_dir { $HtmlDir }
sub server_root { $ServRoot }
sub nginx_version { $NginxVersion }

sub bail_out {
    my $msg = join '', @_;
    stop_nginx();
    Test::More::BAIL_OUT($msg);    # exits
}

sub verbose { Test::More::diag(@_) if $Verbose }

# --------------------------------------------------------- $TEST_NGINX_* vars

my %RandPortOwned;    # TEST_NGINX_RAND_PORT_<n> values this lib assigned

# Called at the start of every block: fresh random ports.
sub new_block_env {
    delete $ENV{$_} for keys %RandPortOwned;
    %RandPortOwned = ();
}

sub env_value {
    my $name = shift;
    if (!defined $ENV{$name} && $name =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
        $ENV{$name} = free_port();
        $RandPortOwned{$name} = 1;
    }
    bail_out("No environment variable \$$name defined (referenced in the test)")
        unless defined $ENV{$name};
    $ENV{$name};
}

sub expand_env {
    my $s = shift;
    return $s if !defined $s || ref $s;
    $s =~ s/\$(TEST_NGINX_[A-Z0-9_]+)/env_value($1)/ge;
    $s;
}

# Like expand_env but walks array refs; regexes and code refs stay as they are.
sub expand_value {
    my $v = shift;
    return [ map { expand_value($_) } @$v ] if ref $v eq 'ARRAY';
    expand_env($v);
}

sub free_port {
    for (1 .. 20) {
        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1,
        ) or next;
        my $p = $s->sockport;
        close $s;
        next if defined $ServerPortForClient && $p == $ServerPortForClient;
        return $p;
    }
    die "cannot find a free TCP port\n";
}

# ------------------------------------------------------------- nginx binary

sub capture {
    my @cmd = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if (!$pid) {
        open STDERR, '>&', \*STDOUT;
        { no warnings q(exec); exec { $cmd[0] } @cmd; }
        print "exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($?, $out);
}

# Runs "nginx -V" once; bails out if it fails.
sub check_nginx_binary {
    return if defined $NginxVersion;
    my ($st, $out) = capture($NginxBinary, '-V');
    bail_out("'$NginxBinary -V' failed (status $st): $out") if $st;
    ($NginxVersion) = $out =~ m{nginx version: \S+?/(\d+\.\d+\.\d+)};
    $NginxVersion //= '0.0.0';
    verbose("nginx binary $NginxBinary, version $NginxVersion");
}

sub version_num {
    my @p = split /\./, shift;
    ($p[0] // 0) * 1_000_000 + ($p[1] // 0) * 1000 + ($p[2] // 0);
}

# ------------------------------------------------------------ servroot/conf

# Removes what a previous run created. Anything else in the servroot is
# left alone and stops the run, so a wrong TEST_NGINX_SERVROOT does no harm.
sub clean_servroot {
    return unless -e $ServRoot;
    opendir my $dh, $ServRoot or bail_out("cannot open servroot $ServRoot: $!");
    my @other;
    for my $e (grep { !/^\.\.?$/ } readdir $dh) {
        if ($e =~ /^(?:conf|logs|html|cache)$/ || $e =~ /_(?:temp|cache)$/) {
            remove_tree("$ServRoot/$e", { error => \my $err });
            bail_out("cannot remove $ServRoot/$e") if @$err;
        } else {
            push @other, $e;
        }
    }
    closedir $dh;
    bail_out("servroot $ServRoot has unexpected content (@other); "
        . "remove it or set TEST_NGINX_SERVROOT") if @other;
}

sub write_file {
    my ($path, $content) = @_;
    make_path(dirname($path));
    open my $fh, '>:raw', $path or bail_out("cannot write $path: $!");
    print $fh $content;
    close $fh or bail_out("cannot write $path: $!");
}

# user_files: ">>> path" lines followed by the content, or (eval) an array
# of [path, content] pairs. Relative paths are under the html dir.
sub write_user_files {
    my $spec = shift;
    return unless defined $spec;
    my @files;
    if (ref $spec eq 'ARRAY') {
        @files = map { [ $_->[0], $_->[1] // '' ] } @$spec;
    } else {
        for my $line (split /^/, $spec) {
            if ($line =~ /^>>>\s*(\S+)\s*$/) {
                push @files, [ $1, '' ];
            } elsif (@files) {
                $files[-1][1] .= $line;
            } elsif ($line =~ /\S/) {
                bail_out("user_files: content before the first '>>> file' line");
            }
        }
    }
    for my $f (@files) {
        my $path = File::Spec->file_name_is_absolute($f->[0])
            ? $f->[0] : "$HtmlDir/$f->[0]";
        write_file($path, $f->[1]);
    }
}

sub listen_directive {
    $ServerPort =~ /^\d+$/ ? "$ServerAddr:$ServerPort" : $ServerPort;
}

sub build_conf {
    my (%c) = @_;    # http_config config main_config post_main_config log_level
    my $master = $UseValgrind ? 'off' : $MasterProcess;
    my $level  = $c{log_level} // $LogLevel;
    my $modules = join '', map { "load_module $_;\n" }
        split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} // '');
    my $env = join '', map { "env $_;\n" }
        qw(LD_PRELOAD LD_LIBRARY_PATH ASAN_OPTIONS), @EnvToNginx;
    my $root_loc = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_
    my $user = '';
    if ($> == 0) {
        $user = 'user ' . ($ENV{TEST_NGINX_WORKER_USER} || 'root') . ";\n";
    }
    my $use = $ENV{TEST_NGINX_EVENT_TYPE} ? "    use $ENV{TEST_NGINX_EVENT_TYPE};\n" : '';
    my $listen = listen_directive();

    # "daemon off" on purpose: nginx stays our child (see the header comment).
    return <<"_EOC_";
worker_processes  $Workers;
daemon off;
master_process $master;
error_log $ErrLogFile $level;
pid $PidFile;
$env
$modules
$c{main_config}

http {
    access_log $AccLogFile;
    client_body_temp_path $ServRoot/client_body_temp;
    fastcgi_temp_path $ServRoot/fastcgi_temp;
    proxy_temp_path $ServRoot/proxy_temp;
    uwsgi_temp_path $ServRoot/uwsgi_temp;
    scgi_temp_path $ServRoot/scgi_temp;
    default_type text/plain;
    keepalive_timeout 68000ms;

$c{http_config}

    server {
        listen $listen;
        server_name localhost;
        client_max_body_size 30M;

$c{config}

$root_loc    }
}

$c{post_main_config}

events {
    accept_mutex off;
    worker_connections $WorkerConnections;
$use}
$user
_EOC_
}

# ---------------------------------------------------------- nginx process

our $NginxPid;          # our child (nginx itself, or valgrind running it)
our $NginxDied;         # wait status of an nginx that exited by itself
our $LastConfKey;       # conf + user_files of the running nginx
our $LastConf;          # arguments of the last successful start

sub last_conf { $LastConf }

# Is something listening on the port? Reads /proc/net/tcp{,6} so that the
# probe does not leave a connection in nginx's error log; falls back to a
# connect() where /proc is not available.
sub port_listening {
    my $port = shift;
    my $hex = sprintf '%04X', $port;
    my $seen_proc = 0;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $f or next;
        $seen_proc = 1;
        while (<$fh>) {
            my @f = split ' ';
            return 1 if @f > 3 && $f[3] eq '0A' && $f[1] =~ /:$hex$/i;
        }
    }
    return 0 if $seen_proc;
    my $s = IO::Socket::INET->new(PeerAddr => $ServerAddr, PeerPort => $port,
        Proto => 'tcp', Timeout => 0.5);
    return $s ? 1 : 0;
}

# Did our nginx exit on its own? Reaps it if so.
sub nginx_alive {
    return 0 unless $NginxPid;
    my $r = waitpid($NginxPid, POSIX::WNOHANG());
    return 1 if $r == 0;
    $NginxDied = $?;
    undef $NginxPid;
    return 0;
}

sub nginx_died_status { my $s = $NginxDied; undef $NginxDied; $s }

sub reap_within {
    my ($pid, $secs) = @_;
    my $deadline = time + $secs;
    while (1) {
        my $r = waitpid($pid, POSIX::WNOHANG());
        return 1 if $r == $pid || $r < 0;
        return 0 if time >= $deadline;
        sleep 0.005;
    }
}

sub stop_nginx {
    local $?;
    my $pid = $NginxPid or return;
    undef $NginxPid;
    undef $LastConfKey;
    my $sig = $FastShutdown ? 'TERM' : 'QUIT';
    my $limit = $UseValgrind ? 30 : $Timeout;
    verbose("stopping nginx $pid with $sig");
    kill $sig, $pid;
    return if reap_within($pid, $limit);
    Test::More::diag("WARNING: nginx (pid $pid) did not exit ${limit}s after $sig; sending TERM");
    kill 'TERM', $pid;
    return if reap_within($pid, 1);
    Test::More::diag("WARNING: nginx (pid $pid) ignored TERM; sending KILL");
    kill 'KILL', -$pid, $pid;    # its process group: workers too
    waitpid($pid, 0);
}

# A stale nginx from an earlier run of this servroot (TEST_NGINX_NO_CLEAN,
# or a killed prove) may still hold the port: stop it by its pid file.
sub kill_stale_nginx {
    open my $fh, '<', $PidFile or return;
    my ($pid) = (<$fh> // '') =~ /(\d+)/;
    return unless $pid && kill 0, $pid;
    open my $c, '<', "/proc/$pid/cmdline" or return;
    my $cmd = <$c> // '';
    return unless $cmd =~ /nginx|valgrind/;
    Test::More::diag("stopping stale nginx (pid $pid) from $PidFile");
    kill 'QUIT', $pid;
    for (1 .. 300) { last unless running($pid); sleep 0.01 }
    kill 'KILL', $pid if running($pid);
}

# Alive and not a zombie (an orphan can stay a zombie for a while).
sub running {
    my $pid = shift;
    return 0 unless kill 0, $pid;
    open my $fh, '<', "/proc/$pid/stat" or return 1;
    my ($state) = (<$fh> // '') =~ /\)\s+(\S)/;
    return !defined $state || $state ne 'Z';
}

sub error_log_tail {
    my $n = shift || 15;
    open my $fh, '<', $ErrLogFile or return "(no error log at $ErrLogFile)";
    my @l = <$fh>;
    @l = grep { !/\[debug\]/ } @l;
    my $s = @l > $n ? $n : scalar @l;
    join '', @l[ -$s .. -1 ];
}

sub describe_status {
    my $st = shift;
    return "killed by signal " . ($st & 127) if $st & 127;
    return "exit code " . ($st >> 8);
}

# (Re)starts nginx for a block. %c: the conf sections, user_files,
# must_die. Returns 1 when nginx was (re)started, 2 when the running one
# was kept; for must_die returns (0, status) when it died. A start failure
# without must_die bails out at once.
sub restart_nginx {
    my (%c) = @_;
    my %parts = map { $_ => expand_env($c{$_} // '') }
        qw(http_config config main_config post_main_config);
    $parts{log_level} = $c{log_level};
    my $conf  = build_conf(%parts);
    my $files = expand_value($c{user_files});
    my $key   = join "\0", $conf, ref $files ? map { @$_ } @$files : $files // '';

    if (!$ForceRestart && !$c{must_die} && defined $LastConfKey
        && $LastConfKey eq $key && nginx_alive())
    {
        return 2;    # TEST_NGINX_FORCE_RESTART_ON_TEST=0 and nothing changed
    }

    stop_nginx();
    if (port_listening($ServerPortForClient)) {
        kill_stale_nginx();
        sleep 0.05;
        bail_out("port $ServerPortForClient is already in use by another process; "
            . "set TEST_NGINX_PORT to a free port")
            if port_listening($ServerPortForClient);
    }

    clean_servroot();
    make_path($ServRoot, $ConfDir, $LogDir, $HtmlDir);
    write_file("$HtmlDir/index.html",
        "<html><head><title>It works!</title></head><body>It works!</body></html>\n");
    write_user_files($files);
    write_file($ConfFile, $conf);

    my @cmd = ($NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile);
    push @cmd, '-e', $ErrLogFile if version_num($NginxVersion // '0') >= version_num('1.19.5');
    if ($UseValgrind) {
        # nginx keeps its pools to the end of the process by design:
        # "possibly lost" blocks are its own, not leaks
        my @vg = qw(valgrind -q --tool=memcheck --vgdb=no --leak-check=full
            --show-possibly-lost=no --num-callers=30 --error-exitcode=0);
        my $supp = $ENV{TEST_NGINX_VALGRIND_SUPPRESS};
        $supp = 'valgrind.suppress' if !defined $supp && -f 'valgrind.suppress';
        push @vg, "--suppressions=$supp" if defined $supp && -f $supp;
        if (my $dir = $ENV{TEST_NGINX_VALGRIND_LOGDIR}) {
            make_path($dir);
            push @vg, "--log-file=$dir/vg.%p.log";
        }
        unshift @cmd, @vg;
    }
    verbose("starting: @cmd");

    undef $NginxDied;
    my $pid = fork // bail_out("fork failed: $!");
    if (!$pid) {
        setpgrp(0, 0);    # own group, so a final KILL reaches the workers
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';    # never hold prove's TAP pipe
        open STDERR, '>>', "$LogDir/nginx.stderr" if $NoClean;
        $ENV{LD_PRELOAD} = $ENV{TEST_NGINX_LD_PRELOAD} if $ENV{TEST_NGINX_LD_PRELOAD};
        { no warnings q(exec); exec { $cmd[0] } @cmd; }
        print STDERR "cannot exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }
    $NginxPid = $pid;

    # Wait until the port listens, or nginx exits, or we give up.
    my $limit = $UseValgrind ? 60 : 10;
    my $deadline = time + $limit;
    while (1) {
        if (!nginx_alive()) {
            my $st = nginx_died_status();
            return (0, $st) if $c{must_die};
            bail_out("nginx failed to start (" . describe_status($st) . "), "
                . "conf $ConfFile; error log tail:\n" . error_log_tail());
        }
        # the pid file comes after the listening sockets and the whole config
        last if -s $PidFile && port_listening($ServerPortForClient);
        if (time >= $deadline) {
            bail_out("nginx did not listen on port $ServerPortForClient within ${limit}s; "
                . "error log tail:\n" . error_log_tail());
        }
        sleep 0.01;
    }
    $LastConfKey = $key;
    $LastConf = \%c;
    return 1;
}

# ------------------------------------------------------------------- logs

sub log_size { -s $_[0] // 0 }

# Lines appended to $file since byte $pos: (\@lines, $new_pos).
sub read_log_lines {
    my ($file, $pos) = @_;
    open my $fh, '<:raw', $file or return ([], $pos);
    my $size = -s $fh;
    $pos = 0 if $pos > $size;    # the file was recreated
    seek $fh, $pos, 0;
    my @lines = <$fh>;
    return (\@lines, tell $fh);
}

# TEST_NGINX_ERROR_LOG: keep every block's log lines in one file.
sub append_block_log {
    my ($name, $from) = @_;
    my $dest = $ENV{TEST_NGINX_ERROR_LOG} or return;
    my ($lines) = read_log_lines($ErrLogFile, $from);
    open my $out, '>>', $dest or return;
    print $out "=== $0 $name\n", @$lines;
    close $out;
}

# ---------------------------------------------------------------- cleanup

my $MainPid = $$;

sub cleanup {
    return unless $$ == $MainPid;
    local $?;
    for my $h (@CleanupHandlers) { eval { $h->() } }
    @CleanupHandlers = ();
    stop_nginx() unless $NoClean;
}

# Let an interrupted run stop nginx via END.
for my $sig (qw(INT TERM HUP)) {
    next if defined $SIG{$sig} && $SIG{$sig} ne '' && $SIG{$sig} ne 'DEFAULT';
    my $code = 128 + { INT => 2, TERM => 15, HUP => 1 }->{$sig};
    $SIG{$sig} = sub { cleanup(); POSIX::_exit($code) };
}

END { cleanup() }

1;
