package webhook

import (
	"testing"

	"github.com/meshca/meshca/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
