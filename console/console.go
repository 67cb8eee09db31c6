// Package console holds Herald's admin console: a web page served at /_/
// that signs in with the admin key and talks to Herald only through the
// public HTTP API. It is plain ES modules and CSS, embedded in the binary,
// with no build step: what is in ui/ is what the browser runs.
package console

import (
	"embed"
	"io/fs"
)

//go:embed ui
var files embed.FS

// Files returns the console's files, rooted at its index.html.
func Files() fs.FS {
	sub, err := fs.Sub(files, "ui")
	if err != nil {
		panic(err) // ui is embedded above: it always exists
	}
	return sub
}
