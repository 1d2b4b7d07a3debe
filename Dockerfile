# syntax=docker/dockerfile:1
# meshca's container image: a static binary on an empty base, run as a
# non-root numeric user (the chart's pod security context expects 65532).
# Build: make image (docker build with VERSION and COMMIT from git), or
#        docker build --build-arg VERSION=v1.2.3 --build-arg COMMIT=$(git rev-parse HEAD) -t meshca:v1.2.3 .
# `meshca version` in the image prints VERSION and COMMIT (without them:
# dev, and commit unknown, since .git is not in the build context).
# With the stepca issuer backend (~58 MB more):
#        docker build --build-arg GO_TAGS=stepca -t meshca:dev-stepca .

ARG GO_VERSION=1.26.8

# The build stage runs on the builder's platform and cross-compiles, so
# multi-platform builds (docker buildx --platform) need no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Dependencies first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
ARG GO_TAGS=""
# The release (e.g. v1.2.3; the chart's appVersion) and its git commit.
ARG VERSION=dev
ARG COMMIT=""
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -tags "$GO_TAGS" -ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" -o /out/meshca ./cmd/meshca

# scratch: no shell, no package manager, no CA certificates. meshca needs
# none: it trusts the API server through the service account's ca.crt and
# its own CA for everything else.
FROM scratch
COPY --from=build /out/meshca /meshca
USER 65532:65532
ENTRYPOINT ["/meshca"]
