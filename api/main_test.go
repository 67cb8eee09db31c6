package api_test

import (
	"testing"

	"github.com/herald-dev/herald/database/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }
