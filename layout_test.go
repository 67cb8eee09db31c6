package main

import (
	"bufio"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// allowed is Herald's package graph (README "Layout", STYLE "Packages"):
// each package, by its path in the module ("" is main.go's), and the
// Herald packages its non-test files may import. Dependencies point one
// way: models at the bottom; auth and database; resources and events side
// by side (neither imports the other); the event log's consumers
// (classify, webhooks, realtime); the HTTP API; app, which wires them;
// main. A new package or a new edge is added here on purpose, and checked
// against the rules below.
var allowed = map[string][]string{
	"models":    {},
	"auth":      {},
	"database":  {},
	"resources": {"auth", "database", "models"},
	"events":    {"database", "models"},
	"classify":  {"database", "events", "resources"},
	"webhooks":  {"database", "events", "models", "resources"},
	"realtime":  {"events", "models"},
	"api":       {"auth", "database", "events", "models", "realtime", "resources", "webhooks"},
	"console":   {},
	"app":       {"api", "auth", "classify", "console", "database", "events", "models", "realtime", "resources", "webhooks"},
	"":          {"app"},
	"bench":     {"app", "database"},

	"examples/webhook-receiver": {},

	// Test helpers (STYLE 2: subpackages, never production code).
	"database/dbtest": {"database"},
	"app/apptest":     {"app", "database", "database/dbtest"},
}

// forbidden are the rules the graph keeps, whatever the table says: a
// package never imports the ones listed, for the reason given.
var forbidden = []struct {
	pkg, why string
	not      []string
}{
	{"models", "models is a leaf: stored types and sentinel errors",
		[]string{"auth", "database", "resources", "events", "classify", "webhooks", "realtime", "api", "app"}},
	{"events", "events knows nothing of its consumers (they use it through a small interface)",
		[]string{"resources", "classify", "webhooks", "realtime", "api", "app"}},
	{"resources", "resources knows nothing of events: what a reader sees of an event is events.Redact, which asks resources.View",
		[]string{"events", "classify", "webhooks", "realtime", "api", "app"}},
	{"webhooks", "a consumer of events is served by api, not the reverse", []string{"api", "app"}},
	{"realtime", "a consumer of events is served by api, not the reverse", []string{"api", "app"}},
}

// echo is the HTTP framework: only api imports it, outside main packages
// and test helpers (STYLE 1).
const echo = "github.com/labstack/echo/v4"

// TestLayout reads the imports of every Herald package (the non-test
// files of each directory, whatever their build constraints, parsed with
// go/parser: no toolchain or x/tools needed) and fails on an import the
// graph above does not allow, on echo outside api, and on a table that
// breaks its own rules.
func TestLayout(t *testing.T) {
	t.Parallel()
	module := modulePath(t)
	pkgs := heraldPackages(t, module)
	for _, p := range pkgs {
		want, ok := allowed[p.path]
		if !ok {
			t.Errorf("package %q is not in layout_test.go's table: add it with the Herald packages it may import", p.path)
			continue
		}
		for _, imp := range p.imports {
			if imp == echo || strings.HasPrefix(imp, echo+"/") {
				if p.path != "api" && !p.main && !isTestHelper(p.path) {
					t.Errorf("%s imports %s: only api imports echo", p.display(), imp)
				}
				continue
			}
			dep, ok := strings.CutPrefix(imp, module+"/")
			if !ok {
				continue
			}
			if !slices.Contains(want, dep) {
				t.Errorf("%s imports %s, which layout_test.go does not allow%s", p.display(), dep, reason(p.path, dep))
			}
		}
	}
	for path, deps := range allowed {
		if !slices.ContainsFunc(pkgs, func(p pkg) bool { return p.path == path }) {
			t.Errorf("layout_test.go names package %q, which does not exist", path)
		}
		for _, dep := range deps {
			if r := reason(path, dep); r != "" {
				t.Errorf("layout_test.go lets %q import %s%s", path, dep, r)
			}
		}
	}
}

// reason is why pkg must not import dep (": ..."), or "".
func reason(pkg, dep string) string {
	for _, r := range forbidden {
		if r.pkg == pkg && slices.Contains(r.not, dep) {
			return ": " + r.why
		}
	}
	return ""
}

// isTestHelper tells a test helper package (resources/resourcestest).
func isTestHelper(path string) bool {
	return strings.HasSuffix(filepath.Base(path), "test")
}

type pkg struct {
	path    string // in the module; "" for the root
	main    bool
	imports []string
}

func (p pkg) display() string {
	if p.path == "" {
		return "the root package"
	}
	return p.path
}

// modulePath reads the module's path from go.mod.
func modulePath(t *testing.T) string {
	t.Helper()
	f, err := os.Open("go.mod")
	if err != nil {
		t.Fatalf("layout: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(m), `"`)
		}
	}
	t.Fatalf("layout: no module line in go.mod")
	return ""
}

// heraldPackages lists the module's packages and the imports of their
// non-test files, skipping testdata, hidden directories and nested
// modules, as the go command does.
func heraldPackages(t *testing.T, module string) []pkg {
	t.Helper()
	byDir := map[string]*pkg{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != "." && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); path != "." && err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(path))
		if dir == "." {
			dir = ""
		}
		p := byDir[dir]
		if p == nil {
			p = &pkg{path: dir}
			byDir[dir] = p
		}
		p.main = p.main || f.Name.Name == "main"
		for _, is := range f.Imports {
			imp, err := strconv.Unquote(is.Path.Value)
			if err != nil {
				return err
			}
			if !slices.Contains(p.imports, imp) {
				p.imports = append(p.imports, imp)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("layout: %v", err)
	}
	if len(byDir) == 0 || byDir[""] == nil {
		t.Fatalf("layout: no packages found under the module root (%s)", module)
	}
	out := make([]pkg, 0, len(byDir))
	for _, p := range byDir {
		slices.Sort(p.imports)
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b pkg) int { return strings.Compare(a.path, b.path) })
	return out
}
