package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
)

// maxPages bounds how many pages a listing reads, so that an API that
// keeps announcing more pages cannot keep a sync going for ever.
const maxPages = 10_000

// maxListing bounds a listing's answers, every page's together, in bytes:
// an API that keeps announcing more pages, each as large as allowed, would
// otherwise grow the memory by each page until the last.
const maxListing = 64 << 20

// Source reads CodeMie's webhook settings from its settings API, as an
// admin: GET /v1/settings/project?filters={"type":"Webhook"}&page=N&per_page=M.
type Source struct {
	// BaseURL is the CodeMie API's base, such as http://codemie-api:8080.
	BaseURL *url.URL
	// Tokens authorizes the listing (a bearer token, or an OAuth2 client).
	Tokens dispatch.Tokens
	// Client sends the requests.
	Client *http.Client
	// PerPage is how many settings one page asks for. Default: 100.
	PerPage int
}

// listing is one page of the settings API's answer.
type listing struct {
	Data       []Setting `json:"data"`
	Pagination struct {
		Page    int `json:"page"`
		PerPage int `json:"per_page"`
		Total   int `json:"total"`
		Pages   int `json:"pages"`
	} `json:"pagination"`
}

// Settings reads every page, from page 0, and returns every webhook
// setting; or an error, and nothing, when any page fails.
func (s *Source) Settings(ctx context.Context) ([]Setting, error) {
	perPage := s.PerPage
	if perPage <= 0 {
		perPage = 100
	}
	var all []Setting
	total, budget := -1, int64(maxListing)
	for page := 0; page < maxPages; page++ {
		l, n, err := s.page(ctx, page, perPage, budget)
		if err != nil {
			return nil, err
		}
		budget -= n
		if total >= 0 && l.Pagination.Total != total {
			// Settings were created or deleted while we read: offset
			// pages may then skip one, which would be deleted here.
			return nil, fmt.Errorf("listing CodeMie's webhook settings: the total changed from %d to %d while reading; try again", total, l.Pagination.Total)
		}
		total = l.Pagination.Total
		all = append(all, l.Data...)
		if len(l.Data) == 0 || page+1 >= l.Pagination.Pages {
			return all, complete(all, total)
		}
	}
	return nil, fmt.Errorf("listing CodeMie's webhook settings: more than %d pages", maxPages)
}

// complete checks that a listing holds every setting it announces, each
// once: a setting missing from it would be deleted.
func complete(all []Setting, total int) error {
	if len(all) != total {
		return fmt.Errorf("listing CodeMie's webhook settings: read %d settings of the %d announced; nothing was written", len(all), total)
	}
	seen := make(map[string]bool, len(all))
	for _, s := range all {
		if seen[s.ID] {
			return fmt.Errorf("listing CodeMie's webhook settings: setting %s is listed twice (the listing moved while being read); nothing was written", s.ID)
		}
		seen[s.ID] = true
	}
	return nil
}

// page reads one page of the listing, at most budget bytes of it, and
// says how many bytes it read. A 401 drops the token it sent.
func (s *Source) page(ctx context.Context, page, perPage int, budget int64) (l listing, read int64, err error) {
	q := url.Values{"filters": {`{"type":"Webhook"}`}, "page": {strconv.Itoa(page)}, "per_page": {strconv.Itoa(perPage)}}
	u := *s.BaseURL
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/settings/project"
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return listing{}, 0, fmt.Errorf("listing CodeMie's webhook settings: %v", err)
	}
	req.Header.Set("Accept", "application/json")
	var token string
	if s.Tokens != nil {
		token, err = s.Tokens.Token(ctx, "")
		if err != nil {
			return listing{}, 0, fmt.Errorf("listing CodeMie's webhook settings: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Auth-Request-Access-Token", token)
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return listing{}, 0, fmt.Errorf("listing CodeMie's webhook settings, page %d: %s", page, dispatch.NetworkReason(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if resp.StatusCode == http.StatusUnauthorized && s.Tokens != nil {
			s.Tokens.Invalidate("", token) // the next sync fetches a new one
		}
		return listing{}, 0, fmt.Errorf("listing CodeMie's webhook settings, page %d: CodeMie answered %d", page, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, budget+1))
	switch {
	case err != nil:
		return listing{}, 0, fmt.Errorf("listing CodeMie's webhook settings, page %d: %s", page, dispatch.NetworkReason(err))
	case int64(len(body)) > budget:
		return listing{}, 0, fmt.Errorf("listing CodeMie's webhook settings, page %d: the listing is larger than %d bytes; nothing was written", page, maxListing)
	}
	if err := decodeJSON(body, &l); err != nil {
		return listing{}, 0, fmt.Errorf("listing CodeMie's webhook settings, page %d: the answer is not the settings listing: %v", page, err)
	}
	return l, int64(len(body)), nil
}

// ParseExport reads an export of CodeMie's webhook settings: the settings
// API's answer ({"data":[...],"pagination":...}), or a list of settings
// rows.
func ParseExport(data []byte) ([]Setting, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '[' {
		var rows []Setting
		if err := decodeJSON(data, &rows); err != nil {
			return nil, fmt.Errorf("reading the settings rows: %v", err)
		}
		return rows, nil
	}
	var l listing
	if err := decodeJSON(data, &l); err != nil {
		return nil, fmt.Errorf("reading the settings listing: %v", err)
	}
	if l.Data == nil {
		return nil, errors.New(`reading the settings listing: no "data" array`)
	}
	if l.Pagination.Total > len(l.Data) {
		// One page of several: what the other pages hold would be deleted.
		return nil, fmt.Errorf("reading the settings listing: it is page %d of %d, with %d of %d settings; export every setting (per_page of at least the total)",
			l.Pagination.Page, l.Pagination.Pages, len(l.Data), l.Pagination.Total)
	}
	return l.Data, nil
}

// decodeJSON decodes with numbers kept as json.Number.
func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}
