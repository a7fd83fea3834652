package module

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/codemie-edge/caddy-webhooks/internal/delivery"
)

func init() {
	caddy.RegisterModule(Admin{})
}

// Admin is the admin API of the delivery queue, on Caddy's admin endpoint:
//
//	GET    /codemie-webhooks/stats                  queue length, pending, retrying, dead, oldest age
//	GET    /codemie-webhooks/dead[?after=<id>&count=<n>]  dead letters, oldest first, without bodies
//	POST   /codemie-webhooks/dead/<id>/replay       put one back in the queue
//	POST   /codemie-webhooks/dead/replay-all        put back all those there when called
//	DELETE /codemie-webhooks/dead/<id>              drop one for good
//
// The deliveries console is not here: Caddy's admin endpoint refuses a
// browser's navigation (its cross-origin protection), so the console is a
// handler a site mounts (Console).
// When several handlers use different key prefixes, ?queue=<key prefix>
// names the queue.
type Admin struct{}

// CaddyModule returns the Caddy module information.
func (Admin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.codemie_webhooks",
		New: func() caddy.Module { return new(Admin) },
	}
}

// Routes implements caddy.AdminRouter.
func (a Admin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: adminPrefix, Handler: caddy.AdminHandlerFunc(a.serve)}}
}

const adminPrefix = "/codemie-webhooks/"

func (a Admin) serve(w http.ResponseWriter, r *http.Request) error {
	q, err := queues.get(r.URL.Query().Get("queue"))
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: err}
	}
	path := strings.TrimPrefix(r.URL.Path, adminPrefix)
	switch {
	case path == "stats":
		return a.stats(w, r, q)
	case path == "dead":
		return a.dead(w, r, q)
	case path == "dead/replay-all":
		if err := need(r, http.MethodPost); err != nil {
			return err
		}
		replayed, unreadable, err := q.ReplayAll(r.Context())
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
		}
		return writeAdmin(w, map[string]int{"replayed": replayed, "unreadable": unreadable})
	case strings.HasPrefix(path, "dead/"):
		return a.deadLetter(w, r, q, strings.TrimPrefix(path, "dead/"))
	}
	return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no such resource: %s", r.URL.Path)}
}

func (Admin) stats(w http.ResponseWriter, r *http.Request, q *delivery.Queue) error {
	if err := need(r, http.MethodGet); err != nil {
		return err
	}
	s, err := q.Stats(r.Context())
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	}
	return writeAdmin(w, s)
}

func (Admin) dead(w http.ResponseWriter, r *http.Request, q *delivery.Queue) error {
	if err := need(r, http.MethodGet); err != nil {
		return err
	}
	after, count, err := delivery.DeadPage(r.URL.Query().Get("after"), r.URL.Query().Get("count"))
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	}
	letters, next, err := q.DeadLetters(r.Context(), after, count)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	}
	return writeAdmin(w, struct {
		Entries []delivery.DeadLetter `json:"entries"`
		Next    string                `json:"next,omitempty"`
	}{letters, next})
}

// deadLetter serves dead/<id> (DELETE) and dead/<id>/replay (POST).
func (Admin) deadLetter(w http.ResponseWriter, r *http.Request, q *delivery.Queue, rest string) error {
	id, action, _ := strings.Cut(rest, "/")
	if !delivery.ValidEntryID(id) || (action != "" && action != "replay") {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no such resource: %s", r.URL.Path)}
	}
	var err error
	if action == "replay" {
		if err := need(r, http.MethodPost); err != nil {
			return err
		}
		err = q.Replay(r.Context(), id)
	} else {
		if err := need(r, http.MethodDelete); err != nil {
			return err
		}
		err = q.DeleteDead(r.Context(), id)
	}
	switch {
	case errors.Is(err, delivery.ErrNoSuchEntry):
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: err}
	case errors.Is(err, delivery.ErrUnreadable):
		return caddy.APIError{HTTPStatus: http.StatusUnprocessableEntity, Err: err}
	case err != nil:
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func need(r *http.Request, method string) error {
	if r.Method != method {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed, use %s", r.Method, method)}
	}
	return nil
}

func writeAdmin(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

// Interface guards
var _ caddy.AdminRouter = (*Admin)(nil)
