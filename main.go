// Command herald serves a REST API for the resources declared in
// herald.yaml, with every committed write recorded as an event.
package main

import (
	"context"
	_ "embed"
	"fmt"
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
	cfg, err := app.LoadConfig(os.Args[1:], os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, cfg, app.Options{OpenAPI: openapiDoc}); err != nil {
		fmt.Fprintln(os.Stderr, "herald:", err)
		os.Exit(1)
	}
}
