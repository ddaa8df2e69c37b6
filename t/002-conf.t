# The drop-in configuration: the stock nginx accepts conf/social.conf with
# the modules loaded, as an operator's nginx.conf would include it.

use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;

my $dir = tempdir(CLEANUP => 1);

# the key social.conf names, under the prefix
mkdir "$dir/keys" or die;
system('cp', "$ENV{TEST_NGINX_KEYS_DIR}/main.key", "$dir/keys/") == 0 or die;
my $modules = join '', map { "load_module $_;\n" }
              grep { !/ngx_social_test_/ }
              split ' ', $ENV{TEST_NGINX_LOAD_MODULES};

open my $fh, '>', "$dir/nginx.conf" or die $!;
print {$fh} <<"EOF2";
${modules}pid $dir/nginx.pid;
error_log $dir/error.log;
events { }
http {
    access_log off;
    client_body_temp_path $dir/body;
    include $ENV{TEST_NGINX_CONF_DIR}/social.conf;
}
EOF2
close $fh;

my $bin = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $out = `$bin -t -q -p $dir/ -c $dir/nginx.conf 2>&1`;
is($?, 0, 'nginx -t accepts conf/social.conf') or diag($out);

my @so = split ' ', $ENV{TEST_NGINX_LOAD_MODULES};
for my $m (qw(core gateway users posts chat)) {
    ok((grep { m{/ngx_social_${m}_module\.so$} } @so),
       "ngx_social_$m is built and loaded");
}

done_testing();
