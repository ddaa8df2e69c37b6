# The deployable image and its manifests, without a cluster: every
# manifest in deploy/k8s/ parses and has what the deployment needs (probes
# on /readyz and /healthz, 2 to 10 replicas on CPU, a disruption budget,
# the configuration from the ConfigMap, keys from a Secret, a non-root
# user, PostgreSQL and Redis as external services); the ConfigMap is what
# ./build.sh k8s-config writes today; the Dockerfile's build steps are
# build.sh commands, and the layout they produce (./build.sh install) is
# a configuration nginx accepts.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use File::Path qw(make_path);
use File::Temp qw(tempdir);
use Test::More;
use YAML::XS ();
use Social::Run;

my $root = "$FindBin::Bin/..";
my %kind;

for my $file (glob "$root/deploy/k8s/*.yaml") {
    my @docs = eval { YAML::XS::LoadFile($file) };
    ok(@docs && !$@, "$file parses") or diag $@;
    for my $d (grep { ref } @docs) {
        ok($d->{apiVersion} && $d->{metadata}{name},
           "$d->{kind} $d->{metadata}{name}: apiVersion and name");
        push @{ $kind{ $d->{kind} } }, $d;
    }
}

sub one {
    my ($kind, $name) = @_;
    my ($d) = grep { $_->{metadata}{name} eq $name } @{ $kind{$kind} || [] };
    return $d;
}

my $deploy = one('Deployment', 'ngx-social') or BAIL_OUT('no Deployment');
my $pod = $deploy->{spec}{template}{spec};
my ($c) = @{ $pod->{containers} };
my %labels = %{ $deploy->{spec}{template}{metadata}{labels} };
my %port = map { $_->{name} => $_->{containerPort} } @{ $c->{ports} };

subtest 'Deployment' => sub {
    is_deeply($deploy->{spec}{selector}{matchLabels}, \%labels,
              'selects its pods');
    is($c->{readinessProbe}{httpGet}{path}, '/readyz', 'ready: /readyz');
    is($c->{livenessProbe}{httpGet}{path}, '/healthz', 'alive: /healthz');
    is($port{ $c->{readinessProbe}{httpGet}{port} }, 8080,
       'probes on the plain port (TLS is required elsewhere)');
    is_deeply([sort values %port], [8080, 8443], 'http and https');
    ok($pod->{securityContext}{runAsNonRoot}, 'runs as non-root');
    ok($pod->{securityContext}{runAsUser} > 0, 'a user id');
    ok($c->{resources}{requests}{cpu}, 'a CPU request (the HPA scales on it)');
    is($deploy->{spec}{strategy}{rollingUpdate}{maxUnavailable}, 0,
       'a rollout never goes below the replicas');
    my %vol = map { $_->{name} => $_ } @{ $pod->{volumes} };
    my %mount = map { $_->{mountPath} => $_->{name} } @{ $c->{volumeMounts} };
    is($vol{ $mount{'/etc/ngx-social/nginx.conf'} }{configMap}{name},
       'ngx-social-config', 'nginx.conf from the ConfigMap');
    is($vol{ $mount{'/etc/ngx-social/keys'} }{secret}{secretName},
       'ngx-social-keys', 'the keys from a Secret');
    is(sprintf('%o', $vol{ $mount{'/etc/ngx-social/keys'} }{secret}{defaultMode}),
       '440', 'readable by the pod\'s user and group only (0440)');
    is($vol{ $mount{'/etc/ngx-social/secrets'} }{secret}{secretName},
       'ngx-social-connections', 'PostgreSQL and Redis settings from a Secret');
    is($vol{ $mount{'/etc/ngx-social/tls'} }{secret}{secretName},
       'ngx-social-tls', 'the certificate from a Secret');
};

subtest 'HorizontalPodAutoscaler, PodDisruptionBudget, Service' => sub {
    my $hpa = one('HorizontalPodAutoscaler', 'ngx-social');
    is($hpa->{spec}{scaleTargetRef}{name}, 'ngx-social', 'scales the Deployment');
    is($hpa->{spec}{minReplicas}, 2, 'from 2');
    is($hpa->{spec}{maxReplicas}, 10, 'to 10');
    is($hpa->{spec}{metrics}[0]{resource}{name}, 'cpu', 'on CPU');
    my $pdb = one('PodDisruptionBudget', 'ngx-social');
    is_deeply($pdb->{spec}{selector}{matchLabels}, \%labels, 'PDB: the pods');
    ok($pdb->{spec}{minAvailable} >= 1, 'keeps one at least');
    my $svc = one('Service', 'ngx-social');
    is_deeply($svc->{spec}{selector}, \%labels, 'Service: the pods');
    my %sp = map { $_->{port} => $port{ $_->{targetPort} } }
             @{ $svc->{spec}{ports} };
    is_deeply(\%sp, { 443 => 8443, 80 => 8080 }, '443 and 80 to the pods');
    is($svc->{spec}{externalTrafficPolicy}, 'Local',
       'client addresses kept (limits per address)');
};

subtest 'external PostgreSQL and Redis, Secrets' => sub {
    my %ext = map { $_->{metadata}{name} => $_->{spec} }
              grep { ($_->{spec}{type} // '') eq 'ExternalName' }
              @{ $kind{Service} };
    ok($ext{'ngx-social-postgres'}{externalName}, 'PostgreSQL outside');
    ok($ext{'ngx-social-redis'}{externalName}, 'Redis outside');
    my $conn = one('Secret', 'ngx-social-connections')->{stringData}
                  {'connections.conf'};
    like($conn, qr/host=ngx-social-postgres .*sslmode=verify-full/,
         'PostgreSQL by that name, over verified TLS');
    like($conn, qr/social_redis_address ngx-social-redis:/, 'Redis too');
    my $keys = one('Secret', 'ngx-social-keys')->{stringData};
    like($keys->{'keys.conf'}, qr{^social_jwt_key main /etc/ngx-social/keys/main\.key;$}m,
         'keys.conf names the mounted key file');
    is($keys->{'main.key'}, '', 'and holds no key (created from a file)');
};

subtest 'ConfigMap: what build.sh k8s-config writes' => sub {
    my ($rc, $out) = build_sh('k8s-config');
    is($rc, 0, 'k8s-config');
    open my $fh, '<', "$root/deploy/k8s/configmap.yaml" or die $!;
    my $have = do { local $/; <$fh> };
    close $fh;
    ok($out eq $have, 'deploy/k8s/configmap.yaml is up to date '
       . '(./build.sh k8s-config > deploy/k8s/configmap.yaml)');
    my $cm = one('ConfigMap', 'ngx-social-config');
    like($cm->{data}{'social.conf'},
         qr{^include /etc/ngx-social/keys/keys\.conf;$}m, 'the keys mounted');
};

subtest 'Dockerfile: build.sh steps, Debian 12, non-root' => sub {
    open my $fh, '<', "$root/Dockerfile" or die $!;
    my $text = do { local $/; <$fh> };
    close $fh;
    $text =~ s/\\\n\s*/ /g;
    my @from = $text =~ /^FROM (\S+)/mg;
    is(scalar @from, 2, 'two stages');
    ok(!grep({ !/^debian:12(-slim)?( |$)/ } @from), 'both on Debian 12');
    my (undef, $build, $final) = split /^FROM .*\n/m, $text;
    my @run = $build =~ /^RUN (.*)$/mg;
    is_deeply(\@run, ['./build.sh deps --build', './build.sh build',
                      './build.sh install /out --profile production'],
              'the build stage runs build.sh: deps, build, install');
    like($final, qr{^RUN /usr/local/lib/ngx-social/build\.sh deps --runtime}m,
         'the image installs what runs the modules with build.sh');
    my ($user) = $final =~ /^USER (\d+)/m;
    is($user, $pod->{securityContext}{runAsUser},
       'a non-root user, the one the Deployment runs as');
    like($final, qr{^ENTRYPOINT .*"/etc/ngx-social/nginx\.conf"}m,
         'nginx with the installed configuration');
};

subtest 'the image layout is a valid nginx configuration' => sub {
    my $dir = tempdir(CLEANUP => 1);
    my ($rc, $out) = build_sh('install', $dir);
    is($rc, 0, './build.sh install') or diag $out;
    ok(-f "$dir/usr/lib/nginx/modules/ngx_social_core_module.so", 'modules');
    # what the pod mounts: keys, connections to this suite's servers, a
    # certificate; the image's absolute paths moved under the folder
    make_path("$dir/etc/ngx-social/$_") for qw(keys secrets tls);
    system("cp $ENV{TEST_NGINX_KEYS_DIR}/main.key $dir/etc/ngx-social/keys/"
           . " && cp $ENV{TEST_NGINX_TLS_DIR}/server.crt "
           . "$dir/etc/ngx-social/tls/tls.crt && cp "
           . "$ENV{TEST_NGINX_TLS_DIR}/server.key $dir/etc/ngx-social/tls/tls.key")
        == 0 or die 'cp';
    my %files = (
        'keys/keys.conf' => "social_jwt_key main /etc/ngx-social/keys/main.key;\n",
        'secrets/connections.conf' =>
            "social_pg_conninfo \"host=127.0.0.1 port=$ENV{TEST_NGINX_PG_PORT} "
            . "dbname=social user=social\";\n"
            . "social_redis_address 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};\n");
    for my $f (keys %files) {
        open my $o, '>', "$dir/etc/ngx-social/$f" or die $!;
        print {$o} $files{$f};
        close $o;
    }
    for my $f (glob("$dir/etc/ngx-social/*.conf"),
               glob("$dir/etc/ngx-social/*/*.conf"))
    {
        open my $i, '<', $f or die $!;
        my $t = do { local $/; <$i> };
        close $i;
        $t =~ s{ /tmp/}{ $dir/}g;
        $t =~ s{ /(etc/ngx-social|usr/lib/nginx/modules)/}{ $dir/$1/}g;
        open my $o, '>', $f or die $!;
        print {$o} $t;
        close $o;
    }
    my $t = `$ENV{TEST_NGINX_BINARY} -t -p $dir/var/lib/ngx-social/ -c $dir/etc/ngx-social/nginx.conf 2>&1`;
    like($t, qr/test is successful/, 'nginx -t accepts it') or diag $t;
};

done_testing();
