package main

import (
	"fmt"
	"strings"

	"github.com/herald-dev/herald/app"
)

// variant is one Herald configuration to measure. Each variant runs on its
// own fresh database with the same sequence of measurements, so rows of
// different variants in one run are comparable; the table's ratio column
// divides each row's req/s by the first listed variant's.
type variant struct {
	// name is what -variants selects and the table shows.
	name string
	// about is shown in -help.
	about string
	// apply changes the configuration after the bench has filled in the
	// database, schema, admin key and SQLite sync setting. nil changes
	// nothing.
	apply func(*app.Config)
	// schema replaces benchSchema when set.
	schema string
}

// variants lists every variant -variants may name. To compare a setting,
// add an entry that toggles it, for example
//
//	{name: "events-off", about: "...", apply: func(c *app.Config) { c.Events = false }},
//
// and run with -variants default,events-off.
func variants() []variant {
	return []variant{
		{name: "default", about: "configuration as loaded from defaults (event capture on)"},
		{name: "events-off", about: "event capture off (no GORM plugin, no position lock): what capture costs",
			apply: func(c *app.Config) { c.DisableEvents = true }},
		{name: "classify-2", about: "two classifications on items (one compares a datetime with now): what classification costs",
			schema: classifySchema},
	}
}

func lookupVariant(name string) (variant, bool) {
	for _, v := range variants() {
		if v.name == name {
			return v, true
		}
	}
	return variant{}, false
}

// variantHelp lists the variants for -help.
func variantHelp() string {
	var b strings.Builder
	for _, v := range variants() {
		fmt.Fprintf(&b, "  %s: %s\n", v.name, v.about)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func variantNames() []string {
	var names []string
	for _, v := range variants() {
		names = append(names, v.name)
	}
	return names
}

// classifySchema is benchSchema with two classifications: every create
// records two more events (null to x) and two outcomes.
const classifySchema = benchSchema + `    classifications:
      pricey: "price != null && price >= 50"
      fresh_active: "status == 'active' && created_at + duration('720h') > now"
`
