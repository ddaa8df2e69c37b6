package Test::Nginx::Socket;

# A small, clean-room runner for the Test::Nginx::Socket block format:
#
#   use Test::Nginx::Socket 'no_plan';    # or: plan tests => ...
#   run_tests();
#   __DATA__
#   === TEST 1: title
#   --- config
#   location = /t { return 200 "hi\n"; }
#   --- request
#   GET /t
#   --- response_body
#   hi
#
# Blocks are parsed by Test::Base (filters, ONLY/SKIP/LAST), as upstream
# does. Process and configuration handling is in Test::Nginx::Util; the
# intended behaviour is described in shared/BUILD-AND-TEST-NOTES.md, 2.3-2.5.

use strict;
use warnings;

use Test::Base ();
use Test::More ();
use Test::LongString ();
use Digest::MD5 ();
use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use List::Util qw(shuffle);
use POSIX ();
use Socket qw(SHUT_RD SHUT_WR SHUT_RDWR);
use Time::HiRes qw(sleep time);

use Test::Nginx::Util qw(:all);

our $VERSION = '0.01';

# Test::Base gives the block parser; Spiffy's import (through Test::Base's)
# exports our @EXPORT plus Test::Base's and Test::More's functions.
our @ISA = ('Test::Base');

BEGIN {
    Test::More->import(import => [qw(note explain done_testing BAIL_OUT subtest isnt new_ok)]);
}

our @EXPORT = qw(
    run_tests run_test repeat_each no_shuffle master_on master_off
    master_process_enabled workers worker_connections log_level timeout
    no_root_location env_to_nginx add_block_preprocessor add_cleanup_handler
    check_accum_error_log server_addr server_port server_port_for_client
    html_dir server_root no_long_string bail_out
    note explain done_testing BAIL_OUT subtest new_ok
);

sub import {
    my $class = shift;
    unshift @_, $class;
    goto &Test::Base::import;
}

# ----------------------------------------------------------------- blocks

# The first value of a section, or undef.
sub sec {
    my ($block, $name) = @_;
    my $v = $block->{$name};
    return ref $v eq 'ARRAY' ? $v->[0] : $v;
}

sub has { exists $_[0]->{ $_[1] } }

# Element $i of an array-valued expectation, or the scalar itself.
sub pick {
    my ($v, $i) = @_;
    return ref $v eq 'ARRAY' ? $v->[$i] : $v;
}

sub secs {
    my $v = shift;
    return undef unless defined $v;
    return $1 / 1000 if $v =~ /^\s*([\d.]+)\s*ms\s*$/;
    return $1 if $v =~ /^\s*([\d.]+)\s*s?\s*$/;
    return $v;
}

my $Builder = Test::More->builder;

sub run_tests {
    check_nginx_binary();
    for my $v (qw(TEST_NGINX_USE_HUP TEST_NGINX_CHECK_LEAK TEST_NGINX_USE_STAP)) {
        Test::More::diag("$v is not supported by the bundled runner; ignored") if $ENV{$v};
    }
    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        run_test($block);
    }
    stop_nginx() unless $ENV{TEST_NGINX_NO_CLEAN};
}

sub run_test {
    my $block = shift;
    my $name = $block->name;

    if (has($block, 'http2') || has($block, 'curl')) {
        Test::More::fail("$name - '--- http2'/'--- curl' is not supported by this runner");
        return;
    }
    if (my ($n, $why) = skip_count($block)) {
        $Builder->skip("$name - $why") for 1 .. $n;
        return;
    }
    my $todo = sec($block, 'todo');
    if (defined $todo) {
        my ($reason) = $todo =~ /^\s*(?:\d+\s*:\s*)?(.*?)\s*$/s;
        $Builder->todo_start("$name - $reason");
    }
    eval { run_block($block, $name); 1 } or do {
        my $err = $@;
        $Builder->todo_end if defined $todo;
        die $err;
    };
    $Builder->todo_end if defined $todo;
}

# skip_nginx "N: < 1.2.3" and skip_eval "N: perl-expr".
sub skip_count {
    my $block = shift;
    my $sn = sec($block, 'skip_nginx');
    if (defined $sn) {
        my ($n, $op, $ver, $why) =
            $sn =~ /^\s*(\d+)\s*:\s*([<>]=?|==|!=)\s*(\d+\.\d+\.\d+)\s*(.*)$/s
            or bail_out("$block->{name}[0]: bad skip_nginx value '$sn'");
        my ($have, $want) = map { Test::Nginx::Util::version_num($_) } nginx_version(), $ver;
        my %cmp = ('<' => $have < $want, '<=' => $have <= $want, '>' => $have > $want,
                   '>=' => $have >= $want, '==' => $have == $want, '!=' => $have != $want);
        return ($n, "skipped: nginx " . nginx_version() . " $op $ver" . ($why ? " $why" : ''))
            if $cmp{$op};
    }
    my $se = sec($block, 'skip_eval');
    if (defined $se) {
        my ($n, $code) = $se =~ /^\s*(\d+)\s*:\s*(.*)$/s
            or bail_out("$block->{name}[0]: bad skip_eval value '$se'");
        my $r = eval "package main; $code";
        bail_out("skip_eval failed: $@") if $@;
        return ($n, "skipped by skip_eval") if $r;
    }
    return;
}

sub run_block {
    my ($block, $name) = @_;
    new_block_env();
    # all TEST_NGINX_RAND_PORT_<n> of the block get fixed now
    for my $v (values %$block) {
        for my $s (ref $v eq 'ARRAY' ? @$v : $v) {
            next if !defined $s || ref $s;
            Test::Nginx::Util::env_value($_) for $s =~ /\$(TEST_NGINX_RAND_PORT_\d+)/g;
        }
    }

    my $log_file = has($block, 'error_log_file')
        ? expand_env(sec($block, 'error_log_file')) : $ErrLogFile;
    my $start_pos;

    if (defined sec($block, 'config')) {
        my %c = map { $_ => sec($block, $_) }
            qw(http_config config main_config post_main_config user_files);
        my $ll = sec($block, 'log_level');
        $ll =~ s/^\s+|\s+$//g if defined $ll;
        $c{log_level} = $ll;
        $c{must_die} = has($block, 'must_die');
        my $size_before = log_size($log_file);
        my ($up, $status) = restart_nginx(%c);
        # a restart starts a fresh error log; the first check reads it all
        $start_pos = $log_file eq $ErrLogFile && $up != 2 ? 0 : $size_before;
        if (has($block, 'must_die')) {
            check_must_die($block, $name, $up, $status, $log_file, $start_pos);
            return;
        }
    } else {
        if (!nginx_alive()) {
            my $last = last_conf();
            bail_out("$name: no '--- config' section and no nginx running "
                . "(the first block run needs a config)") unless $last;
            Test::More::diag("$name: nginx is not running; restarting it with the previous config");
            restart_nginx(%$last);
            $start_pos = 0;
        } else {
            $start_pos = log_size($log_file);
        }
    }

    my $init = sec($block, 'init');
    if (defined $init) {
        my $ok = ref $init eq 'CODE' ? eval { $init->(); 1 }
                                     : eval "package main; $init; 1";
        Test::More::fail("$name - init failed: $@") unless $ok;
    }

    my $pos = $start_pos;
    my $acc_pos = log_size($AccLogFile);
    for my $rep (0 .. $RepeatEach - 1) {
        my $rep_pos = $CheckAccumErrLog ? $start_pos : $pos;
        ($pos, $acc_pos) = run_repeat($block, $name, $rep, $log_file, $rep_pos, $acc_pos);
    }
    append_block_log($name, $start_pos) if $log_file eq $ErrLogFile;

    if (!nginx_alive()) {
        my $st = nginx_died_status();
        if (defined $st && ($st & 127)) {
            Test::More::fail("$name - nginx " . Test::Nginx::Util::describe_status($st));
        } elsif (defined $st) {
            Test::More::diag("$name - nginx exited (" . Test::Nginx::Util::describe_status($st) . ")");
        }
    }
}

sub check_must_die {
    my ($block, $name, $up, $status, $log_file, $pos) = @_;
    if ($up) {
        Test::More::fail("$name - nginx started although must_die was given");
        stop_nginx();
    } else {
        my $want = sec($block, 'must_die');
        if (defined $want && $want =~ /^\s*(\d+)\s*$/ && !($status & 127)
            && ($status >> 8) != $1)
        {
            Test::More::fail("$name - nginx exit code " . ($status >> 8) . ", expected $1");
        }
    }
    my ($lines) = read_log_lines($log_file, $pos);
    check_log_patterns($block, $name, '', $lines);
}

# --------------------------------------------------------------- requests

# One repetition: the requests, then wait, tcp mock checks and the logs.
sub run_repeat {
    my ($block, $name, $rep, $log_file, $log_pos, $acc_pos) = @_;
    my $timeout = secs(sec($block, 'timeout')) // $Timeout;
    my $wait = secs(sec($block, 'wait'));
    my $mock = has($block, 'tcp_listen') ? start_tcp_mock($block, $name, $timeout) : undef;

    my @exchanges = build_exchanges($block);
    if (!@exchanges && !has($block, 'ignore_response')
        && grep { /^(?:response_|raw_response_|error_code)/ && has($block, $_) } keys %$block)
    {
        Test::More::fail("$name - response checks given but no request section");
    }
    my $nreq = 0;
    $nreq += scalar @{ $_->{methods} } for @exchanges;
    my $i = 0;
    for my $ex (@exchanges) {
        my $res = http_exchange($ex, $block, $timeout);
        my $abort = has($block, 'abort');
        if ($res->{error}) {
            Test::More::fail("$name - $res->{error}");
        } elsif ($res->{timed_out} && !$abort) {
            Test::More::fail("$name - client socket timed out ($res->{timed_out})");
        }
        my @resps = split_responses($res->{data}, $ex);
        for my $r (@resps) {
            my $tag = $nreq > 1 || $RepeatEach > 1 ? " (repeat $rep, req $i)" : '';
            check_response($block, "$name -", $tag, $r, $i, $nreq,
                $abort || $res->{timed_out});
            $i++;
        }
        sleep $wait if $wait;
    }

    check_tcp_mock($block, $name, $mock) if $mock;

    my ($lines, $new_pos) = read_block_log($block, $log_file, $log_pos);
    my $tag = $RepeatEach > 1 ? " (repeat $rep)" : '';
    check_log_patterns($block, $name, $tag, $lines, $rep, sub {
        ($lines, $new_pos) = read_log_lines($log_file, $log_pos);
        $lines;
    });
    my $new_acc = $acc_pos;
    if (has($block, 'access_log') || has($block, 'no_access_log')) {
        (my $acc, $new_acc) = read_log_lines($AccLogFile, $acc_pos);
        check_patterns($block, "$name -", $tag, $acc, 'access_log', 'access.log', 1);
        check_patterns($block, "$name -", $tag, $acc, 'no_access_log', 'access.log', 0);
    } else {
        $new_acc = log_size($AccLogFile);
    }
    return ($new_pos, $new_acc);
}

sub read_block_log {
    my ($block, $file, $pos) = @_;
    # lines of the log phase may land just after the response
    sleep $Sleep * 3 if grep { has($block, $_) } qw(error_log no_error_log grep_error_log);
    read_log_lines($file, $pos);
}

# Parses "METHOD [URI [HTTP/x.y]]\nbody".
sub parse_request_text {
    my $text = shift // '';
    $text =~ s/\A(?:[ \t]*(?:#[^\n]*)?\r?\n)+//;
    my ($first, $body) = split /\r?\n/, $text, 2;
    $first //= '';
    $first =~ s/^\s+|\s+$//g;
    my ($method, $uri, $ver);
    if ($first =~ m{^(\S+)\s+(.*?)\s+(HTTP/\d+(?:\.\d+)?)$}) {
        ($method, $uri, $ver) = ($1, $2, $3);
    } else {
        ($method, $uri) = split /\s+/, $first, 2;
    }
    return ($method // 'GET', (defined $uri && length $uri) ? $uri : '/',
        $ver // 'HTTP/1.1', $body // '');
}

sub header_lines {
    my $mh = shift;
    return () unless defined $mh;
    my @h;
    for my $l (split /\r?\n/, $mh) {
        next if $l =~ /^\s*#/ || $l !~ /\S/;
        $l =~ s/\s+$//;
        push @h, $l;
    }
    @h;
}

# Builds the bytes of one request from the "request" text.
sub build_request {
    my ($text, $more, $connection) = @_;
    $text //= '';
    utf8::encode($text) if $text =~ /[^\x00-\xff]/;
    my ($method, $uri, $ver, $body) = parse_request_text($text);
    return ("$method $uri\r\n", $method, 0) if $ver eq 'HTTP/0.9';
    my @h = header_lines($more);
    my $has = sub { my $re = shift; grep { /^$re\s*:/i } @h };
    my $chunked = grep { /^transfer-encoding\s*:.*chunked/i } @h;
    # a chunked body keeps its trailing CRLFs
    $body =~ s/\A\s+//;
    $body =~ s/\s+\z// unless $chunked;
    my @all;
    push @all, 'Host: localhost' unless $has->('host');
    push @all, "Connection: $connection" unless $has->('connection');
    push @all, @h;
    push @all, 'Content-Length: ' . length($body)
        if length $body && !$chunked && !$has->('content-length');
    # the suite asked for a kept-alive connection: stop at the response's end
    my $keepalive = $has->('connection') && !grep { /^connection\s*:\s*close/i } @h;
    return ("$method $uri $ver\r\n" . join('', map { "$_\r\n" } @all) . "\r\n" . $body,
        $method, $keepalive);
}

# The block's requests, as a list of connections:
# { chunks => [bytes...], methods => [METHOD per response], pipelined => 0|1,
#   keepalive => 0|1 }
sub build_exchanges {
    my $block = shift;
    my $more = sec($block, 'more_headers');
    if (has($block, 'raw_request')) {
        my $raw = sec($block, 'raw_request');
        my @chunks = ref $raw eq 'ARRAY' ? @$raw : ($raw);
        for (@chunks) { utf8::encode($_) if defined && /[^\x00-\xff]/ }
        my ($m) = ($chunks[0] // '') =~ /^\s*(\S+)/;
        return ({ chunks => \@chunks, methods => [ $m // 'GET' ],
                  delay => secs(sec($block, 'raw_request_middle_delay')) });
    }
    if (has($block, 'pipelined_requests')) {
        my $reqs = expand_value(sec($block, 'pipelined_requests'));
        $reqs = [$reqs] unless ref $reqs eq 'ARRAY';
        my ($data, @methods) = ('');
        for my $i (0 .. $#$reqs) {
            my ($bytes, $m) = build_request($reqs->[$i], pick($more, $i),
                $i == $#$reqs ? 'close' : 'keep-alive');
            $data .= $bytes;
            push @methods, $m;
        }
        return ({ chunks => [$data], methods => \@methods, pipelined => 1 });
    }
    return () unless has($block, 'request');
    my $req = sec($block, 'request');
    my @reqs = ref $req eq 'ARRAY' ? @$req : ($req);
    my @ex;
    for my $i (0 .. $#reqs) {
        my ($bytes, $m, $ka) = build_request($reqs[$i], pick($more, $i), 'close');
        push @ex, { chunks => [$bytes], methods => [$m], keepalive => $ka };
    }
    return @ex;
}

# Sends the chunks on a new connection and reads until the server closes.
sub http_exchange {
    my ($ex, $block, $timeout) = @_;
    local $SIG{PIPE} = 'IGNORE';
    my %r = (data => '');
    my $sock = IO::Socket::INET->new(PeerAddr => $ServerAddr,
        PeerPort => $ServerPortForClient, Proto => 'tcp', Timeout => $timeout);
    if (!$sock) {
        $r{error} = "cannot connect to $ServerAddr:$ServerPortForClient: $!";
        return \%r;
    }
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);
    my @chunks = @{ $ex->{chunks} };
    WRITE: for my $ci (0 .. $#chunks) {
        sleep $ex->{delay} if $ci && $ex->{delay};
        my $buf = $chunks[$ci] // '';
        while (length $buf) {
            if (!$sel->can_write($timeout)) { $r{timed_out} = 'write'; last WRITE }
            my $n = syswrite($sock, $buf);
            if (!defined $n) {
                next if $!{EAGAIN} || $!{EINTR};
                last WRITE;    # the server closed early; read its answer
            }
            substr($buf, 0, $n, '');
        }
    }
    if (has($block, 'shutdown')) {
        my $how = sec($block, 'shutdown');
        $how = SHUT_WR unless defined $how && $how =~ /^\s*([012])\s*$/;
        shutdown($sock, $how);
    }
    while (!$r{timed_out}) {
        if (!$sel->can_read($timeout)) { $r{timed_out} = 'read'; last }
        my $n = sysread($sock, my $got, 65536);
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EINTR};
            last;    # e.g. ECONNRESET: keep what we have
        }
        last if $n == 0;
        $r{data} .= $got;
        last if $ex->{keepalive} && response_complete($r{data}, $ex->{methods}[0]);
    }
    close $sock;
    return \%r;
}

# ---------------------------------------------------------------- responses

sub no_body_status { my $s = shift; $s =~ /^1\d\d$/ || $s eq '204' || $s eq '304' }

# Splits the bytes read from one connection into responses. The last (or
# only) response gets everything that is left, as when reading to close.
sub split_responses {
    my ($data, $ex) = @_;
    my @methods = @{ $ex->{methods} };
    my ($pos, @out) = (0);
    for my $i (0 .. $#methods) {
        my $last = $i == $#methods;
        my ($r, $next) = parse_response($data, $pos, $methods[$i], !$ex->{pipelined} || $last);
        push @out, $r;
        $pos = $next;
    }
    return @out;
}

sub parse_response {
    my ($data, $pos, $method, $to_end) = @_;
    my %r = (status => '', headers => [], raw_headers => '', body => '');
    my $rest = substr($data, $pos);
    if ($rest !~ m{\AHTTP/\d+(?:\.\d+)?[ \t]+(\d{3})}) {
        $r{body} = $rest;
        $r{no_status_line} = 1;
        return (\%r, length $data);
    }
    my $hend = $rest =~ /\r?\n\r?\n/ ? $+[0] : length $rest;
    my $head = substr($rest, 0, $hend);
    $r{raw_headers} = $head;
    my @lines = split /\r?\n/, $head;
    my $status_line = shift @lines;
    ($r{status}) = $status_line =~ m{^HTTP/\S+[ \t]+(\d{3})};
    for my $l (@lines) {
        if ($l =~ /^[ \t]+(.*?)\s*$/ && @{ $r{headers} }) {
            $r{headers}[-1][1] .= " $1";
        } elsif ($l =~ /^([^:]+?)[ \t]*:[ \t]*(.*?)[ \t]*$/) {
            push @{ $r{headers} }, [ $1, $2 ];
        }
    }
    my $bpos = $pos + $hend;
    my $te = header_value(\%r, 'Transfer-Encoding') // '';
    my $cl = header_value(\%r, 'Content-Length');
    if (uc($method) eq 'HEAD' || no_body_status($r{status})) {
        return (\%r, $to_end ? length $data : $bpos);
    }
    if ($te =~ /chunked/i) {
        my ($body, $end, $err) = dechunk($data, $bpos);
        $r{body} = $body;
        $r{chunk_error} = $err;
        return (\%r, $to_end ? length $data : $end);
    }
    if ($to_end || !defined $cl || $cl !~ /^\d+$/) {
        $r{body} = substr($data, $bpos);
        return (\%r, length $data);
    }
    $r{body} = substr($data, $bpos, $cl);
    return (\%r, $bpos + length $r{body});
}

# Decodes a chunked body at $pos: (body, end position, error or undef).
sub dechunk {
    my ($data, $pos) = @_;
    my $body = '';
    while (1) {
        my $nl = index($data, "\n", $pos);
        return ($body, length $data, 'truncated chunk size line') if $nl < 0;
        my $line = substr($data, $pos, $nl - $pos);
        my ($hex) = $line =~ /^\s*([0-9a-fA-F]+)\s*(?:;.*)?\r?$/
            or return ($body, $nl + 1, "bad chunk size line '$line'");
        my $size = hex $hex;
        $pos = $nl + 1;
        if ($size == 0) {    # trailers end with an empty line
            while ((my $e = index($data, "\n", $pos)) >= 0) {
                my $t = substr($data, $pos, $e - $pos);
                $pos = $e + 1;
                last if $t =~ /^\r?$/;
            }
            return ($body, $pos, undef);
        }
        if ($pos + $size > length $data) {
            return ($body . substr($data, $pos), length $data, 'truncated chunk data');
        }
        $body .= substr($data, $pos, $size);
        $pos += $size;
        if (substr($data, $pos, 2) eq "\r\n") { $pos += 2 }
        elsif (substr($data, $pos, 1) eq "\n") { $pos += 1 }
        else { return ($body, $pos, 'no CRLF after chunk data') }
    }
}

# Has $data a whole response (by Content-Length or the last chunk)?
sub response_complete {
    my ($data, $method) = @_;
    return 0 unless $data =~ /\r?\n\r?\n/;
    my ($r, $end) = parse_response($data, 0, $method, 0);
    return 1 if uc($method) eq 'HEAD' || no_body_status($r->{status});
    my $te = header_value($r, 'Transfer-Encoding') // '';
    if ($te =~ /chunked/i) {
        my (undef, undef, $err) = dechunk($data, length $r->{raw_headers});
        return !$err;
    }
    my $cl = header_value($r, 'Content-Length');
    return defined $cl && $cl =~ /^\d+$/ && length($data) - length($r->{raw_headers}) >= $cl;
}

# All values of a header, joined with ", "; undef if absent.
sub header_value {
    my ($r, $name) = @_;
    my @v = map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $r->{headers} };
    return @v ? join(', ', @v) : undef;
}

sub as_regex {
    my $v = shift;
    return $v if ref $v eq 'Regexp';
    return qr/$v/s;
}

sub server_port_subst {
    my $s = shift;
    return $s if !defined $s || ref $s;
    $s =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
    $s =~ s/\$ServerPort\b/$ServerPort/g;
    $s;
}

sub is_body {
    my ($got, $want, $desc) = @_;
    return Test::Base::is($got, $want, $desc) if $NoLongString;
    return Test::LongString::is_string($got, $want, $desc);
}

sub apply_body_filters {
    my ($block, $body) = @_;
    my $f = sec($block, 'response_body_filters');
    return $body unless defined $f;
    my %builtin = (uc => sub { uc shift }, lc => sub { lc shift },
                   md5_hex => \&Digest::MD5::md5_hex, length => sub { length shift });
    for my $one (ref $f eq 'ARRAY' ? @$f : ref $f ? ($f) : split ' ', $f) {
        my $code = ref $one eq 'CODE' ? $one
            : main->can($one) || $builtin{$one}
            || bail_out("unknown response_body_filters entry '$one'");
        $body = $code->($body);
    }
    $body;
}

# The assertions for one response, in upstream's order.
sub check_response {
    my ($block, $pre, $tag, $r, $i, $nreq, $partial_ok) = @_;
    return if has($block, 'ignore_response');

    # 1. status
    if (has($block, 'error_code_like')) {
        Test::More::like($r->{status}, as_regex(pick(sec($block, 'error_code_like'), $i)),
            "$pre status code ok$tag");
    } else {
        my $want = has($block, 'error_code') ? pick(sec($block, 'error_code'), $i) : 200;
        $want = '' unless defined $want;
        $want =~ s/^\s+|\s+$//g;
        Test::More::is($r->{status}, $want, "$pre status code ok$tag");
    }

    # 2. raw headers
    for my $s (qw(raw_response_headers_like raw_response_headers_unlike)) {
        next unless has($block, $s);
        my $re = pick(sec($block, $s), $i);
        next unless defined $re;
        my $f = $s =~ /unlike/ ? \&Test::More::unlike : \&Test::More::like;
        $f->($r->{raw_headers}, as_regex($re), "$pre $s$tag");
    }

    # 3. headers
    if (has($block, 'response_headers')) {
        my $spec = pick(sec($block, 'response_headers'), $i);
        for my $l (header_lines($spec)) {
            if ($l =~ /^\s*!\s*(\S+?)\s*:?\s*$/) {
                my $v = header_value($r, $1);
                Test::More::ok(!defined $v, "$pre header $1 not present$tag")
                    or Test::More::diag("  got: $1: $v");
            } elsif ($l =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/) {
                Test::More::is(header_value($r, $1) // '', server_port_subst($2),
                    "$pre header $1 ok$tag");
            }
        }
    }
    if (has($block, 'response_headers_like')) {
        my $spec = pick(sec($block, 'response_headers_like'), $i);
        for my $l (header_lines($spec)) {
            next unless $l =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/;
            Test::More::like(header_value($r, $1) // '', qr/^(?:$2)$/s,
                "$pre header $1 like ok$tag");
        }
    }

    # 4. body
    if ($r->{chunk_error} && !$partial_ok) {
        Test::More::fail("$pre invalid chunked body received: $r->{chunk_error}$tag");
    }
    my $body = apply_body_filters($block, $r->{body});
    if (has($block, 'response_body')) {
        my $want = pick(expand_value(sec($block, 'response_body')), $i);
        if (ref $want eq 'Regexp') {
            Test::More::like($body, $want, "$pre response_body - like$tag");
        } elsif (defined $want) {
            is_body($body, server_port_subst($want), "$pre response_body - response is expected$tag");
        }
    }
    for my $s (qw(response_body_like response_body_unlike)) {
        next unless has($block, $s);
        my $re = pick(sec($block, $s), $i);
        next unless defined $re;
        my $f = $s =~ /unlike/ ? \&Test::More::unlike : \&Test::More::like;
        $f->($body, as_regex(server_port_subst($re)), "$pre $s - response is expected$tag");
    }
}

# ---------------------------------------------------------------- log checks

# Patterns of a log section: each non-empty line, or an eval'd list/regex.
sub patterns {
    my $v = shift;
    return () unless defined $v;
    return @$v if ref $v eq 'ARRAY';
    return ($v) if ref $v;
    return grep { /\S/ } split /\n/, $v;
}

sub line_matches {
    my ($pat, $line) = @_;
    return ref $pat eq 'Regexp' ? $line =~ $pat : index($line, $pat) >= 0;
}

sub check_patterns {
    my ($block, $pre, $tag, $lines, $sec, $file, $want, $reread) = @_;
    return $lines unless has($block, $sec);
    my @pats = patterns(sec($block, $sec));
    if ($want && $reread) {
        # give late lines a short grace period before a pattern is missing
        my $deadline = time + 0.5;
        while (time < $deadline) {
            my $missing = grep { my $p = $_; !grep { line_matches($p, $_) } @$lines } @pats;
            last unless $missing;
            sleep 0.05;
            $lines = $reread->();
        }
    }
    for my $p (@pats) {
        my ($hit) = grep { line_matches($p, $_) } @$lines;
        if ($want) {
            Test::More::ok(defined $hit, "$pre pattern \"$p\" matches a line in $file$tag");
        } else {
            Test::More::ok(!defined $hit, "$pre pattern \"$p\" should not match any line in $file$tag")
                or Test::More::diag("  matched: $hit");
        }
    }
    return $lines;    # re-read ones, if any
}

sub check_log_patterns {
    my ($block, $name, $tag, $lines, $rep, $reread) = @_;
    my $pre = "$name -";
    my @all = (patterns(sec($block, 'error_log')), patterns(sec($block, 'no_error_log')));
    for my $l (@$lines) {
        if ($l =~ /Assertion .* failed/) {
            Test::More::fail("$pre assertion failed in the error log: $l");
        } elsif ($l =~ /\[(?:alert|crit|emerg)\]/ && !grep { line_matches($_, $l) } @all) {
            chomp(my $c = $l);
            Test::More::diag("WARNING: $name - $c");
        }
    }
    $lines = check_patterns($block, $pre, $tag, $lines, 'error_log', 'error.log', 1, $reread);
    check_patterns($block, $pre, $tag, $lines, 'no_error_log', 'error.log', 0);

    if (has($block, 'grep_error_log')) {
        my $pat = sec($block, 'grep_error_log');
        my $re = ref $pat eq 'Regexp' ? $pat : qr/\Q$pat\E/;
        my $got = '';
        for my $l (@$lines) {
            while ($l =~ /$re/g) {
                $got .= "$&\n";
                last if !length $&;
            }
        }
        my $want = expand_value(sec($block, 'grep_error_log_out'));
        $want = $want->[$rep // 0] if ref $want eq 'ARRAY';
        if (ref $want eq 'Regexp') {
            Test::More::like($got, $want, "$pre grep_error_log_out$tag");
        } else {
            is_body($got, $want // '', "$pre grep_error_log_out$tag");
        }
    }
}

# ----------------------------------------------------------------- tcp mock

# tcp_listen: accept one connection, read the query, send tcp_reply.
sub start_tcp_mock {
    my ($block, $name, $timeout) = @_;
    my $target = expand_env(sec($block, 'tcp_listen'));
    $target =~ s/^\s+|\s+$//g;
    my $srv = $target =~ /^\d+$/
        ? IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $target,
                                Proto => 'tcp', Listen => 5, ReuseAddr => 1)
        : do { unlink $target; IO::Socket::UNIX->new(Local => $target, Listen => 5) };
    bail_out("$name: tcp_listen cannot listen on $target: $!") unless $srv;

    my $query = sec($block, 'tcp_query');
    my $qlen  = sec($block, 'tcp_query_len');
    $qlen = length $query if !defined $qlen && defined $query && !ref $query;
    my $reply = expand_value(sec($block, 'tcp_reply'));
    my $delay = secs(sec($block, 'tcp_reply_delay'));
    pipe(my $rd, my $wr) or bail_out("pipe: $!");
    my $pid = fork // bail_out("fork: $!");
    if (!$pid) {
        close $rd;
        local $SIG{PIPE} = 'IGNORE';
        my $wait = $timeout + ($delay // 0) + 1;
        my $c;
        if (IO::Select->new($srv)->can_read($wait)) { $c = $srv->accept }
        my $got = '';
        if ($c) {
            my $sel = IO::Select->new($c);
            while ($sel->can_read($timeout)) {
                my $n = sysread($c, my $buf, 65536);
                last unless $n;
                $got .= $buf;
                last if !defined $qlen || length $got >= $qlen;
            }
            sleep $delay if $delay;
            if (defined $reply) {
                my @parts = ref $reply eq 'ARRAY' ? @$reply : ($reply);
                for my $k (0 .. $#parts) {
                    sleep $Sleep if $k;
                    syswrite($c, $parts[$k]) if defined $parts[$k];
                }
            }
        }
        syswrite($wr, $got);
        close $wr;
        if ($c) {
            shutdown($c, SHUT_WR) if has($block, 'tcp_shutdown');
            sleep 3600 if has($block, 'tcp_no_close');    # until killed
        }
        POSIX::_exit(0);
    }
    close $wr;
    close $srv;
    return { pid => $pid, rd => $rd };
}

sub check_tcp_mock {
    my ($block, $name, $mock) = @_;
    my $want_q = has($block, 'tcp_query') || has($block, 'tcp_query_len');
    my $got = '';
    if ($want_q) {
        my $sel = IO::Select->new($mock->{rd});
        while ($sel->can_read($Timeout)) {
            my $n = sysread($mock->{rd}, my $buf, 65536);
            last unless $n;
            $got .= $buf;
        }
    }
    kill 'KILL', $mock->{pid};
    waitpid($mock->{pid}, 0);
    close $mock->{rd};
    if (has($block, 'tcp_query')) {
        my $q = sec($block, 'tcp_query');
        if (ref $q eq 'Regexp') { Test::More::like($got, $q, "$name - tcp_query ok") }
        else { is_body($got, $q, "$name - tcp_query ok") }
    }
    if (has($block, 'tcp_query_len')) {
        Test::More::is(length $got, sec($block, 'tcp_query_len'), "$name - TCP query length ok");
    }
}

1;

__END__

=head1 NAME

Test::Nginx::Socket - bundled clean-room runner for Test::Nginx block files

=head1 SUPPORTED

Sections: config, http_config, main_config, post_main_config, user_files,
log_level, init, request (eval array), more_headers (array),
pipelined_requests, raw_request (array of chunks) + raw_request_middle_delay,
error_code (array), error_code_like, response_body (array, regex),
response_body_like, response_body_unlike, response_body_filters,
response_headers (C<!Name> = absent), response_headers_like,
raw_response_headers_like/_unlike, ignore_response, timeout, abort, shutdown,
wait, error_log, no_error_log, grep_error_log(_out), access_log,
no_access_log, error_log_file, must_die, skip_nginx, skip_eval, todo,
tcp_listen/tcp_reply/tcp_reply_delay/tcp_query/tcp_query_len/tcp_shutdown/
tcp_no_close, and Test::Base's ONLY, SKIP, LAST.

Not supported: http2, curl (the block fails), udp_*, TEST_NGINX_USE_HUP,
TEST_NGINX_CHECK_LEAK (ignored with a note).

=head1 DIFFERENCES FROM UPSTREAM (on purpose)

=over

=item * nginx runs with C<daemon off> as the runner's child and is reaped
with waitpid (QUIT, then TERM, then KILL), so restarts cost no zombie wait.

=item * It listens on 127.0.0.1:PORT only, not on all interfaces.

=item * A failed start bails out at once with the error log tail, instead of
retrying for about 30 s. A port already in use also bails out at once.

=item * Readiness is "pid file written and port in LISTEN state" (read from
/proc/net/tcp), so no probe connection shows up in the error log.

=item * A missing C<error_log> pattern is re-checked for up to 0.5 s before
it fails, for lines nginx writes just after the response.

=item * C<response_headers_like> anchors the whole pattern: C<^(?:re)$>.

=back

=cut
