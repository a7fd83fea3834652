package module_test

import (
	"os"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// TestMain lets this test binary also serve as the Caddy process that the
// crash tests start and kill.
func TestMain(m *testing.M) {
	testenv.RunCaddyIfAsked()
	os.Exit(m.Run())
}
