// Command herald serves a REST API for the resources declared in
// herald.yaml, with every committed write recorded as an event. See
// `herald --help`.
package main

import (
	"context"
	_ "embed"
	"os"
	"os/signal"
	"syscall"

	"github.com/herald-dev/herald/app"
)

// openapiDoc is the static API description, the base of GET /v1/_openapi.
//
//go:embed openapi.yaml
var openapiDoc []byte

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, app.Options{OpenAPI: openapiDoc})
	stop()
	os.Exit(code)
}
