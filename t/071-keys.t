# Secrets at rest: the token keys of ./build.sh run live in .run/keys
# (mode 700, files 600), outside conf/ and the repository.
# ./build.sh rotate-keys adds a key, makes it the one that signs and
# reloads nginx gracefully (same master, no restart): tokens of the old
# key stay valid, new ones carry the new kid; retire-key drops the old
# key.  A missing or exposed key file stops run with a clear message
# before anything starts.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use File::Copy qw(copy);
use File::Path qw(remove_tree);
use JSON::PP;
use MIME::Base64 qw(decode_base64);
use Test::More;
use Social::Run;
use Social::Test qw(forget_limits);

my $json = JSON::PP->new->utf8;

sub api { node_api(1, @_) }

sub token {
    my ($name) = @_;
    my ($st, $t) = api('POST', '/oauth/token', { grant_type => 'password',
        username => $name, password => 'correct horse' });
    return $t->{access_token};
}

sub kid {
    my ($part) = split /\./, $_[0];
    $part =~ tr/-_/+\//;
    return $json->decode(decode_base64($part))->{kid};
}

sub mode { sprintf '%o', (stat $_[0])[2] & 07777 }

forget_limits();
fresh_run();
my ($rc, $out) = build_sh('run', '--check');
is($rc, 0, 'run --check') or diag $out;
my $keys = run_dir() . '/keys';
is(mode($keys), '700', 'the key folder is the owner\'s only');
is(mode("$keys/main.key"), '600', 'so is the key file');
start_nodes(1);
my $master = node_pid(1);

my $name = 'rk' . $$ . int(rand(1e6));
my ($st) = api('POST', '/v1/users', { username => $name,
    email => "$name\@example.com", password => 'correct horse' });
is($st, 201, 'a user');
my $old = token($name);
is(kid($old), 'main', 'its token is signed with "main"');

($rc, $out) = build_sh('rotate-keys');
is($rc, 0, 'rotate-keys') or diag $out;
my ($kid) = $out =~ /^(k\d{14}\S*)$/m;
ok($kid, "a new key id ($kid)");
is(mode("$keys/$kid.key"), '600', 'its file is the owner\'s only');
is(node_pid(1), $master, 'the same nginx master: reloaded, not restarted');

my $new = token($name);
is(kid($new), $kid, 'a new token carries the new kid');
is((api('GET', '/v1/users/me', undef, $new))[0], 200, 'and is valid');
is((api('GET', '/v1/users/me', undef, $old))[0], 200,
   'the old token stays valid');

($rc, $out) = build_sh('retire-key', $kid);
isnt($rc, 0, 'the signing key cannot be retired');
like($out, qr/signs new tokens: rotate-keys first/, 'says so');

($rc, $out) = build_sh('retire-key', 'main');
is($rc, 0, 'retire-key main') or diag $out;
ok(!-e "$keys/main.key", 'its file is gone');
is((api('GET', '/v1/users/me', undef, $old))[0], 401,
   'its tokens are refused');
is((api('GET', '/v1/users/me', undef, $new))[0], 200,
   'the new key\'s are not');
stop_nodes();

subtest 'a missing or exposed key file: a clear error, nothing started' => sub {
    my $saved = "$keys/$kid.key.saved";
    copy("$keys/$kid.key", $saved) or die $!;

    unlink "$keys/$kid.key";
    ($rc, $out) = build_sh('run', '--check');
    isnt($rc, 0, 'the signing key\'s file is missing');
    like($out, qr/the signing key "$kid" has no key file/, 'says so');

    copy($saved, "$keys/$kid.key") or die $!;
    chmod 0644, "$keys/$kid.key";
    ($rc, $out) = build_sh('run', '--check');
    isnt($rc, 0, 'a key file others can read');
    like($out, qr/readable by group or others \(mode 644\)/, 'says so');

    chmod 0600, "$keys/$kid.key";
    open my $fh, '>', "$keys/short.key" or die $!;
    print {$fh} "too short\n";
    close $fh;
    chmod 0600, "$keys/short.key";
    ($rc, $out) = build_sh('run', '--check');
    isnt($rc, 0, 'a key too short');
    like($out, qr/short\.key is too short/, 'says so');
    unlink "$keys/short.key", $saved;

    ok(!-e run_dir() . '/nginx.conf.new', 'no configuration written');
    ok(!-e run_dir() . '/nginx.pid' || !-s run_dir() . '/nginx.pid',
       'no nginx started');
};

done_testing();
