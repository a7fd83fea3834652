package body

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name          string
		limit, budget int64
		body          string
		want          error
	}{
		{"fits", 100, 1 << 20, strings.Repeat("x", 100), nil},
		{"empty", 100, 1 << 20, "", nil},
		{"one byte over the limit", 100, 1 << 20, strings.Repeat("x", 101), ErrTooLarge},
		{"over the budget", 1 << 20, firstBody + 10, strings.Repeat("x", 2*firstBody), ErrBudget},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(tc.limit, tc.budget, 0)
			req := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
			bp, err := r.Read(httptest.NewRecorder(), req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Read: %v, want %v", err, tc.want)
			}
			if err == nil && string(*bp) != tc.body {
				t.Errorf("read %d bytes, want %d", len(*bp), len(tc.body))
			}
			if bytes, _ := InFlight(); bytes <= 0 && err == nil {
				t.Errorf("a held body takes %d bytes of the budget", bytes)
			}
			r.Release(bp)
			if r.used.Load() != 0 {
				t.Errorf("after Release, %d bytes of the budget are still taken", r.used.Load())
			}
		})
	}
}
