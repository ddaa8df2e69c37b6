package Social::Node;

# Runs a node script of t/js/ (browser tests, the OpenAPI check) against
# the nginx that Social::Test started, and turns its "ok - ..." and
# "not ok - ..." lines into this test's own results ("# " lines are
# diagnostics).  The script may ask for "control: stop" and "control:
# start" (nginx stopped, started again with the same options) and waits for
# "done" on its stdin.  The script's exit status is a result too.

use strict;
use warnings;

use Exporter 'import';
use IO::Handle;
use IPC::Open2 qw(open2);
use Test::More ();

use Social::Test qw(start_nginx stop_nginx nginx_port);

our @EXPORT = qw(node_test node_ready);

my $JS = "$ENV{TEST_NGINX_CONF_DIR}/../t/js";

# whether the npm packages (./build.sh deps) and Chromium are there
sub node_ready {
    my (%o) = @_;
    return 'node is not installed' unless _which('node');
    return 'the npm packages are not installed (./build.sh deps)'
        unless -d "$JS/node_modules";
    return 'chromium is not installed (./build.sh deps)'
        if $o{browser} && !-x ($ENV{CHROMIUM} || '/usr/bin/chromium');
    return '';
}

# node_test('web.test.js', nginx => { start_nginx options }, env => {})
sub node_test {
    my ($script, %o) = @_;
    my %nginx = %{ $o{nginx} || {} };

    local %ENV = (%ENV, %{ $o{env} || {} },
                  SOCIAL_BASE_URL => 'http://127.0.0.1:' . nginx_port());

    my $pid = open2(my $out, my $in, 'node', "$JS/$script");
    $in->autoflush(1);

    while (my $line = <$out>) {
        chomp $line;
        if ($line =~ /^(not )?ok - (.*)$/) {
            Test::More::ok(!$1, $2);
        } elsif ($line =~ /^#   (.*)$/) {
            Test::More::diag($1);           # the detail of a failure
        } elsif ($line =~ /^# (.*)$/) {
            Test::More::note($1);
        } elsif ($line =~ /^control: (stop|start)$/) {
            my $err = eval {
                $1 eq 'stop' ? stop_nginx() : start_nginx(%nginx);
                1;
            } ? 'done' : "failed: $@";
            $err =~ s/\n/ /g;
            print {$in} "$err\n";
        } else {
            Test::More::diag($line);
        }
    }

    close $in;
    waitpid($pid, 0);
    Test::More::is($? >> 8, 0, "$script exited with status 0");
}

sub _which {
    my ($cmd) = @_;
    return grep { -x "$_/$cmd" } split /:/, $ENV{PATH} || '';
}

1;
