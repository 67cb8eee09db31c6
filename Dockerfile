# Herald: a static, cgo-free binary on a small base image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /herald .

FROM gcr.io/distroless/static-debian12:nonroot
WORKDIR /data
COPY --from=build /herald /herald
COPY herald.yaml /data/herald.yaml
ENV HERALD_ADDR=:8080
EXPOSE 8080
ENTRYPOINT ["/herald"]
