package api_test

import "github.com/herald-dev/herald/database/dbtest"

var kinds = dbtest.Kinds
