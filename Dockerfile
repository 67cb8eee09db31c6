# Herald: a static, cgo-free binary on a small base image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /herald . && mkdir /data

FROM gcr.io/distroless/static-debian12:nonroot
# /data belongs to the nonroot user, so the default SQLite file can be
# created there when no HERALD_DATABASE_URL is given.
COPY --from=build --chown=65532:65532 /data /data
WORKDIR /data
COPY --from=build /herald /herald
COPY --chown=65532:65532 herald.yaml /data/herald.yaml
ENV HERALD_ADDR=:8080
EXPOSE 8080
# `herald healthcheck` GETs /readyz on the port of HERALD_ADDR and exits 0
# on 200, 1 otherwise. Exec form: distroless has no shell.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/herald", "healthcheck"]
ENTRYPOINT ["/herald"]
