# The restore drill: writes, ./build.sh backup, more writes, the API
# stopped, ./build.sh restore: the API serves exactly what it served at
# the backup (profiles, counters, posts, likes, feeds, notifications,
# conversations), though Redis was emptied: all of it is rebuilt from
# PostgreSQL.  A truncated backup, one of another schema version, a
# missing file or an API still running: a clear error, and the database
# is untouched.  A restore into an empty instance (a fresh machine)
# starts PostgreSQL and brings the same state back.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use JSON::PP;
use Test::More;
use Social::Run;
use Social::Test;

my $dumps = run_dir() . '/dumps';
my $file = "$dumps/drill.dump";
my $json = JSON::PP->new->canonical;

# what the API shows the users: every read of the drill's state
sub state_of {
    my ($users, $post, $conv) = @_;
    my %s;
    for my $who (sort keys %$users) {
        my $u = $users->{$who};
        my $auth = $u->{auth};
        $s{"$who me"} = [api('GET', '/v1/users/me', undef, $auth)]->[1];
        $s{"$who profile"} = [api('GET', "/v1/users/$u->{id}")]->[1];
        $s{"$who feed"} = [api('GET', '/v1/feed', undef, $auth)]->[1];
        $s{"$who posts"} =
            [api('GET', "/v1/users/$u->{id}/posts", undef, $auth)]->[1];
        $s{"$who followers"} =
            [api('GET', "/v1/users/$u->{id}/followers")]->[1];
        $s{"$who notifications"} =
            [api('GET', '/v1/notifications', undef, $auth)]->[1];
        $s{"$who conversations"} =
            [api('GET', '/v1/conversations', undef, $auth)]->[1];
        $s{"$who post"} =
            [api('GET', "/v1/posts/$post->{id}", undef, $auth)]->[1];
    }
    $s{replies} = [api('GET', "/v1/posts/$post->{id}/replies")]->[1];
    $s{messages} = [api('GET', "/v1/conversations/$conv->{id}/messages",
                        undef, $users->{ann}{auth})]->[1];
    return \%s;
}

sub restore {
    my ($what, @env) = @_;
    return build_sh(@env, 'restore', $what);
}

fresh_run();
mkdir $dumps or die $!;
start_nginx();

my ($ann, $bob, $cat) = map { new_user($_) } qw(bk_ann bk_bob bk_cat);
api('POST', "/v1/users/$ann->{id}/follow", undef, $_->{auth}) for $bob, $cat;
my (undef, $post) = api('POST', '/v1/posts',
    { text => "before the backup, \@$bob->{name}" }, $ann->{auth});
api('POST', '/v1/posts', { text => 'a second one' }, $ann->{auth});
api('POST', "/v1/posts/$post->{id}/like", undef, $_->{auth}) for $bob, $cat;
api('POST', '/v1/posts', { text => 'a reply', reply_to_id => $post->{id} },
    $bob->{auth});
api('POST', "/v1/posts/$post->{id}/share", undef, $cat->{auth});
my (undef, $conv) = api('POST', '/v1/conversations',
    { member_ids => [$bob->{id}] }, $ann->{auth});
api('POST', "/v1/conversations/$conv->{id}/messages", { text => 'hi bob' },
    $ann->{auth});
my %users = (ann => $ann, bob => $bob, cat => $cat);
my $before = state_of(\%users, $post, $conv);
is(scalar @{ $before->{'bob feed'}{items} }, 3,
   "bob's feed: ann's two posts and his reply");

my ($rc, $out) = build_sh('backup', $file);
is($rc, 0, 'backup') or diag $out;
like($out, qr/backup \Q$file\E: \S+ \((\d+) bytes\), taken at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, schema version \d+/,
     'its size and time printed');
ok(-s $file, 'written');
is(sprintf('%o', (stat $file)[2] & 0777), '600', 'the owner\'s only');

# more writes: a new user, posts, a follow, an unlike, a message
my $dan = new_user('bk_dan');
api('POST', "/v1/users/$ann->{id}/follow", undef, $dan->{auth});
my (undef, $later) = api('POST', '/v1/posts', { text => 'after the backup' },
                         $ann->{auth});
api('DELETE', "/v1/posts/$post->{id}/like", undef, $bob->{auth});
api('POST', "/v1/users/$cat->{id}/follow", undef, $bob->{auth});
api('POST', "/v1/conversations/$conv->{id}/messages", { text => 'later' },
    $bob->{auth});
isnt($json->encode(state_of(\%users, $post, $conv)), $json->encode($before),
     'the state moved on');

subtest 'refused, the database untouched' => sub {
    ($rc, $out) = restore($file);
    isnt($rc, 0, 'while the API runs');
    like($out, qr/database social is in use .*stop the API first/,
         'says so');
    stop_nginx();

    open my $in, '<:raw', $file or die $!;
    read $in, my $head, (-s $file) / 2;
    close $in;
    open my $cut, '>:raw', "$dumps/cut.dump" or die $!;
    print {$cut} $head;
    close $cut;
    ($rc, $out) = restore("$dumps/cut.dump");
    isnt($rc, 0, 'a truncated backup');
    like($out, qr/truncated or damaged|cut short/, 'says so');

    psql('DROP DATABASE IF EXISTS social_future');
    psql('CREATE DATABASE social_future');
    system("psql -X -q -h 127.0.0.1 -p $ENV{TEST_NGINX_PG_PORT} -U social "
           . "-d social_future -c \"CREATE TABLE schema_migrations (version "
           . "integer PRIMARY KEY, name text NOT NULL, applied_at "
           . "timestamptz NOT NULL DEFAULT now()); INSERT INTO "
           . "schema_migrations VALUES (99, '0099_future')\" && "
           . "pg_dump -h 127.0.0.1 -p $ENV{TEST_NGINX_PG_PORT} -U social "
           . "-d social_future -Fc -f $dumps/future.dump") == 0 or die;
    psql('DROP DATABASE social_future');
    ($rc, $out) = restore("$dumps/future.dump");
    isnt($rc, 0, 'a backup of another schema version');
    like($out, qr/is of schema version 99, this build's schema is version \d+/,
         'says so');

    ($rc, $out) = restore("$dumps/none.dump");
    isnt($rc, 0, 'a missing file');
    like($out, qr/no readable backup file/, 'says so');

    is(psql("SELECT count(*) FROM posts WHERE id = $later->{id}"), 1,
       'the database still has the later writes');
};

($rc, $out) = restore($file);
is($rc, 0, 'restore') or diag $out;
is(redis_cli('--scan', '--pattern', 'social:*'), '',
   'Redis holds nothing of the application');
start_nginx();
my $after = state_of(\%users, $post, $conv);
is_deeply($after, $before, 'the API serves exactly the backed-up state');
is((api('GET', "/v1/posts/$later->{id}"))[0], 404, 'a later post is gone');
is((api('GET', "/v1/users/$dan->{id}"))[0], 404, 'a later user too');
my (undef, $again) = api('POST', '/v1/posts', { text => 'after the restore' },
                         $ann->{auth});
my (undef, $feed) = api('GET', '/v1/feed', undef, $bob->{auth});
is($feed->{items}[0]{id}, $again->{id}, 'and takes writes again');
stop_nginx();

my $port = $ENV{TEST_NGINX_PG_PORT} + 2;
my %empty = (SOCIAL_RUN_DIR => run_dir() . '/empty', SOCIAL_PG_PORT => $port,
             SOCIAL_REDIS_PORT => $ENV{TEST_NGINX_REDIS_PORT} + 2);
my $stopped;
END { build_sh(\%empty, 'stop') if !$stopped && -d $empty{SOCIAL_RUN_DIR} }

subtest 'into an empty instance' => sub {
    ($rc, $out) = restore($file, \%empty);
    is($rc, 0, 'restore on a machine with nothing running') or diag $out;
    local $ENV{TEST_NGINX_PG_PORT} = $port;
    is(psql("SELECT count(*) FROM posts WHERE author_id = $ann->{id}"), 2,
       'the posts of the backup');
    ($rc, $out) = build_sh(\%empty, 'stop');
    $stopped = is($rc, 0, 'stopped');
};

done_testing();
