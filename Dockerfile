# The deployable image: Debian 12, the packaged nginx and our modules,
# running as the unprivileged user "social" (uid 10001).  Each build step
# is a ./build.sh command, the same one a developer runs (t/074-manifests.t
# checks it): the first stage compiles the modules against Debian's
# nginx-dev and lays out the files with ./build.sh install; the second
# installs only what runs them and copies that layout in.
#
#   docker build -t ngx-social .
#
# The configuration is the production profile (conf/profiles/): TLS on
# 8443 (HTTP/2, wss:// for the stream), plain 8080 for /healthz, /readyz,
# /metrics and redirects.  What the pod mounts (deploy/k8s/):
#   /etc/ngx-social/keys/      keys.conf and the key files (a Secret)
#   /etc/ngx-social/secrets/   connections.conf: PostgreSQL and Redis
#   /etc/ngx-social/tls/       tls.crt, tls.key (a kubernetes.io/tls Secret)
# and the ConfigMap may replace nginx.conf and social.conf.

FROM debian:12-slim AS build
WORKDIR /src
COPY build.sh ./
RUN ./build.sh deps --build
COPY conf/ conf/
COPY ngx_social_core/ ngx_social_core/
COPY ngx_social_gateway/ ngx_social_gateway/
COPY ngx_social_users/ ngx_social_users/
COPY ngx_social_posts/ ngx_social_posts/
COPY ngx_social_chat/ ngx_social_chat/
RUN ./build.sh build
RUN ./build.sh install /out --profile production

FROM debian:12-slim
COPY build.sh /usr/local/lib/ngx-social/build.sh
RUN /usr/local/lib/ngx-social/build.sh deps --runtime \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /var/lib/ngx-social social
COPY --from=build /out/ /
RUN chown -R social:social /var/lib/ngx-social
USER 10001:10001
EXPOSE 8080 8443
STOPSIGNAL SIGQUIT
ENTRYPOINT ["nginx", "-e", "stderr", "-p", "/var/lib/ngx-social/", \
            "-c", "/etc/ngx-social/nginx.conf", "-g", "daemon off;"]
