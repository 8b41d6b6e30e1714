# syntax=docker/dockerfile:1
#
# One image with every Sluice binary: the five services (the gateway among
# them), the sluice CLI, the demo app and load generator, and httpcheck (the
# healthcheck probe: the final image has no shell, curl or wget).
#
#   docker build -t sluice:dev --build-arg VERSION=$(git describe --always --dirty) .
#   docker run --rm sluice:dev sluice-orchestrator --help
#
# There is no ENTRYPOINT: the command names the binary, and every binary is
# on PATH. The working directory is /sluice, with the binaries in
# /sluice/bin, so the examples' pod templates (command: bin/demoapp) run
# unchanged under sluice-replicas --platform local.

ARG GO_VERSION=1.26
# VERSION is what the binaries' --version prints; pass
# --build-arg VERSION=$(git describe --always --dirty). Without it they
# print "unknown": .git is not in the build context (.dockerignore).
ARG VERSION=

FROM golang:${GO_VERSION} AS build
ARG VERSION
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# Static binaries (no cgo, no libc), reproducible paths, no debug info.
ENV CGO_ENABLED=0
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w -X github.com/sluicehq/sluice/internal/buildinfo.version=${VERSION}" -o /out/bin/ ./cmd/... ./examples/... ./deploy/compose/httpcheck
# The state directory must exist, owned by the non-root user, so that a
# named volume mounted there starts out writable.
RUN mkdir -p /out/state

# distroless/static: CA certificates, tzdata, /etc/passwd with "nonroot"
# (65532), nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bin/ /sluice/bin/
COPY --from=build --chown=65532:65532 /out/state/ /var/lib/sluice/
ENV PATH=/sluice/bin:/usr/local/bin:/usr/bin:/bin
WORKDIR /sluice
USER 65532:65532
# --http-listen's default; Docker Compose sets HTTP_LISTEN=:9091 so that
# 8080 is free for the local proxy. 3100 is sluice-gateway's --listen: the
# HTTP API and the dashboard.
EXPOSE 8080 3100
