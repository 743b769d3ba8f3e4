# syntax=docker/dockerfile:1
#
# pullgate's webhook image: one static Go binary on distroless (no shell, no package
# manager, CA certificates for registry TLS), running as the image's nonroot user 65532.
#
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" -t pullgate:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=v0.1.0 ...
#
# The builder runs on the build machine's platform and cross-compiles for the target's
# (CGO is off, so nothing needs the target's C toolchain).

# golang:1.26 is the newest 1.26.x, at least the go.mod's 1.26.8. GOTOOLCHAIN=local keeps
# that Go from fetching another toolchain.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly
WORKDIR /src

# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download

COPY . .
# The version is the last input, so a new one relinks but does not re-download.
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS="${TARGETOS}" GOARCH="${TARGETARCH}" \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/webhook ./cmd/webhook

# kubectl-pullgate, the kubectl plugin, from the same sources with the same flags (`make
# build-plugin`). It is not in the webhook's image; export it for any platform with
#   docker buildx build --target plugin --platform darwin/arm64 --build-arg VERSION=v0.1.0 \
#     --output type=local,dest=dist .
# (`make release-plugin` builds the krew archives and manifest without Docker.)
FROM build AS plugin-build
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS="${TARGETOS}" GOARCH="${TARGETARCH}" \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/kubectl-pullgate ./cmd/kubectl-pullgate

FROM scratch AS plugin
COPY --from=plugin-build /out/kubectl-pullgate /kubectl-pullgate

# gcr.io/distroless/static-debian12:nonroot, pinned by digest (a multi-platform index).
# To update: crane digest gcr.io/distroless/static-debian12:nonroot
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
ARG VERSION=dev
LABEL org.opencontainers.image.title="pullgate" \
      org.opencontainers.image.description="Admission webhook that stops pods whose images cannot be pulled" \
      org.opencontainers.image.source="https://github.com/pullgate/pullgate" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/webhook /webhook
# Numeric, so that runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
# 9443 webhook (HTTPS), 8080 metrics, 8081 /healthz and /readyz.
EXPOSE 9443 8080 8081
ENTRYPOINT ["/webhook"]
