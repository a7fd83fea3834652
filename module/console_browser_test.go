package module_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// browser is the path of Chromium. Without one the browser test is
// skipped, unless CODEMIE_WEBHOOKS_BROWSER_TEST=require (as in CI, which
// installs it): then it fails.
func browser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CODEMIE_WEBHOOKS_BROWSER_TEST") == "require" {
		t.Fatal("no Chromium found, and CODEMIE_WEBHOOKS_BROWSER_TEST=require")
	}
	t.Skip("no Chromium found (apt-get install chromium)")
	return ""
}

// consoleSite is a site with the webhooks and, behind basic_auth, the
// console at /ops/webhooks/, as the README shows.
func consoleSite(redisAddr, apiURL, hash string) string {
	return asyncSite(redisAddr, apiURL, "") + fmt.Sprintf(`
	handle_path /ops/webhooks/* {
		basic_auth {
			ops %s
		}
		codemie_webhooks_console
	}`, hash)
}

// TestConsoleInTheBrowser loads the console in headless Chromium against a
// running Caddy with real Redis: a delivery sent a moment before appears
// live, a dead letter is opened and replayed, and the replay is seen
// delivered. With CODEMIE_WEBHOOKS_SCREENSHOT=<file> it saves a
// screenshot of the console there (docs/console.png).
func TestConsoleInTheBrowser(t *testing.T) {
	exe := browser(t)
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	for _, id := range []string{"review", "triage", "docs-sync"} {
		addWebhook(t, r, id, "workflow", "wf-"+id)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("ops-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	c := testenv.StartCaddy(t, consoleSite(r.Addr, api.URL, string(hash)))
	console := c.URL + "/ops/webhooks/"
	if status, _, _ := c.Do(t, http.MethodGet, "/ops/webhooks/", ""); status != http.StatusUnauthorized {
		t.Fatalf("the console without credentials: %d, want 401", status)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.WindowSize(1280, 800), chromedp.NoSandbox)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	tab, cancelTab := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	defer cancelTab()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		start := time.Now()
		stepCtx, cancel := context.WithTimeout(tab, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(stepCtx, steps...); err != nil {
			if png, err := chromedp.Run(tab, chromedp.CaptureScreenshot()); err == nil {
				_ = os.WriteFile("/tmp/console-fail.png", png, 0o644)
			}
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: %v", what, time.Since(start))
	}
	poll := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(30*time.Second))
	}
	visible := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.WaitVisible(chromedp.CSS(sel)) }
	click := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:ops-password"))
	// The first run starts the browser, which lives as long as that run's
	// context: tab itself, not a step's.
	if err := chromedp.Do(tab, chromedp.EmulateViewport(1280, 800), chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
		return err
	})); err != nil {
		t.Fatalf("starting the browser: %v", err)
	}
	go func() { // delete's confirm(), should the page ask
		for _, err := range chromedp.Events(tab, page.JavascriptDialogOpening) {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(tab, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	do("opening the console", chromedp.Navigate(console), poll(`document.querySelector('#live').textContent === 'live'`))

	// A delivery sent now appears, live, and is seen dispatched.
	if status, _, _ := postSigned(t, c, "review", "d-live", `{"action":"opened"}`); status != 200 {
		t.Fatal(status)
	}
	do("seeing the delivery live", visible(`#deliveries-body tr[data-delivery-id="d-live"][data-outcome="dispatched"]`))

	// Some traffic of every kind, for the screenshot.
	for i := range 6 {
		postSigned(t, c, []string{"review", "triage", "docs-sync"}[i%3], fmt.Sprint("d-", i), `{"action":"opened"}`)
	}
	postSigned(t, c, "triage", "d-1", `{"action":"opened"}`) // a duplicate
	c.Post(t, testenv.WebhooksPath+"triage", `{}`, "X-Hub-Signature-256: sha256=00", "X-GitHub-Delivery: d-forged")

	// A delivery CodeMie refuses is a dead letter; replayed once CodeMie
	// takes it, it is delivered.
	api.FailWith(func(testenv.Call) int { return http.StatusNotFound })
	if status, _, _ := postSigned(t, c, "docs-sync", "d-dead", `{"action":"closed"}`); status != 200 {
		t.Fatal(status)
	}
	do("seeing it die", visible(`#deliveries-body tr[data-delivery-id="d-dead"][data-outcome="dead"]`))
	api.FailWith(nil)
	do("opening the dead letter",
		click(`#tab-dead`),
		visible(`#dead-body tr[data-delivery-id="d-dead"]`),
		click(`#dead-body tr[data-delivery-id="d-dead"]`),
		visible(`#replay`))
	do("replaying it", click(`#replay`), poll(`document.querySelector('#status').textContent.startsWith('replayed')`))
	testenv.Eventually(t, "the replay to be delivered", func() bool { return api.Succeeded()["d-dead"] == 1 })
	do("back to the deliveries", click(`#tab-deliveries`))
	do("seeing the replay delivered",
		visible(`#deliveries-body tr[data-delivery-id="d-dead"][data-outcome="dispatched"]`))

	if path := os.Getenv("CODEMIE_WEBHOOKS_SCREENSHOT"); path != "" {
		// Loaded afresh: the page reads the log, the chart and the
		// summary as a visitor's first look does.
		do("reloading the console", chromedp.Navigate(console), poll(`document.querySelector('#live').textContent === 'live'`),
			visible(`#deliveries-body tr[data-delivery-id="d-dead"][data-outcome="dispatched"]`),
			chromedp.Sleep(time.Second)) // a picture, not a check: let the page settle
		png, err := chromedp.Run(tab, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if !filepath.IsAbs(path) {
			path = filepath.Join("..", path) // relative to the repository, not to module/
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
