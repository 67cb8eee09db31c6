package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/require"

	"github.com/herald-dev/herald/app"
	"github.com/herald-dev/herald/app/apptest"
	"github.com/herald-dev/herald/database"
	"github.com/herald-dev/herald/database/dbtest"
)

const schema = `
resources:
  - name: products
    fields:
      - {name: sku, type: string, required: true, unique: true, filterable: true, validations: [{rule: pattern, value: "^[A-Z0-9-]{3,32}$"}]}
      - {name: title, type: string, required: true, sortable: true, filterable: true}
      - {name: price, type: number, required: true, sortable: true, filterable: true, validations: [{rule: min, value: 0}]}
      - {name: active, type: boolean, default: true, filterable: true}
      - {name: released_at, type: datetime}
      - {name: note, type: string}
  - name: notes
    fields:
      - {name: body, type: text}
`

// The XSS probe: stored in a record and answered by the webhook receiver.
// Rendered as HTML it would add an img element and set window.__xss.
const probe = `<img src=x onerror="window.__xss=1">`

// chromium finds the browser, or skips the test (fails it in CI, which
// sets HERALD_REQUIRE_BROWSER and installs Debian's chromium).
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("HERALD_REQUIRE_BROWSER") != "" {
		t.Fatal("HERALD_REQUIRE_BROWSER is set but no chromium is installed (apt-get install chromium)")
	}
	t.Skip("no chromium on PATH: the console's browser tests need Debian's chromium (apt-get install chromium); CI installs it")
	return ""
}

// browser drives one headless Chromium tab.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T, width, height int) *browser {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(width, height),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx}
	// The first call starts the browser: no timeout on it (it would stop
	// the browser), the test's own deadline bounds it.
	// Record any Content-Security-Policy violation from the first script
	// on, and answer confirm() dialogs (rotate, delete) with yes.
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
window.confirm = () => true;
window.__fetches = 0;
const fetch0 = window.fetch;
window.fetch = (...args) => { window.__fetches += 1; return fetch0(...args); };`}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

func (b *browser) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.fail(err)
	}
}

// fail reports err with what the page showed.
func (b *browser) fail(err error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	url, _ := chromedp.Run(ctx, chromedp.Location())
	b.t.Fatalf("%v\npage %s shows:\n%s", err, url, text)
}

// wait polls a JavaScript expression until it is truthy.
func (b *browser) wait(what, expr string, timeout time.Duration) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(timeout))); err != nil {
		b.fail(fmt.Errorf("waiting for %s (%s): %w", what, expr, err))
	}
}

// eval evaluates a JavaScript expression into a T.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.fail(err)
	}
	return v
}

// click clicks the first visible element an XPath query finds.
func (b *browser) click(xpath string) {
	b.t.Helper()
	b.run(chromedp.Click(chromedp.Search(xpath)))
}

// go_ follows the console's link to a page.
func (b *browser) go_(hash string) {
	b.t.Helper()
	b.run(chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[href=%q]`, hash))))
}

// fill replaces the value of the control matched by the CSS selector by
// typing text.
func (b *browser) fill(sel, text string) {
	b.t.Helper()
	b.run(chromedp.WaitVisible(chromedp.CSS(sel))) // pages render when their data came
	if !eval[bool](b, fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.value = ''; return true; })()`, sel)) {
		b.fail(fmt.Errorf("no %s to fill in", sel))
	}
	b.run(chromedp.SendKeys(chromedp.CSS(sel), text))
}

// choose sets a control's value as a user would (input and change
// events): for selects, and for the pickers whose typing depends on the
// locale.
func (b *browser) choose(sel, value string) {
	b.t.Helper()
	b.run(chromedp.WaitVisible(chromedp.CSS(sel)))
	if !eval[bool](b, fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = %q;
  e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true}));
  return e.value === %q; })()`, sel, value, value)) {
		b.fail(fmt.Errorf("%s did not take the value %q", sel, value))
	}
}

func button(text string) string { return fmt.Sprintf(`//button[normalize-space()=%q]`, text) }

// unlabelled lists the form controls on the page without a label.
const unlabelled = `[...document.querySelectorAll('input, select, textarea')]
  .filter((e) => e.type !== 'hidden' && e.labels.length === 0 && !e.getAttribute('aria-label'))
  .map((e) => e.name || e.id || e.outerHTML.slice(0, 60))`

func (b *browser) checkLabels(where string) {
	b.t.Helper()
	missing := eval[[]string](b, unlabelled)
	require.Empty(b.t, missing, "form controls without a label on %s", where)
}

// inert checks that nothing the page rendered from untrusted data became
// markup: no img element and no script ran.
func (b *browser) inert(where string) {
	b.t.Helper()
	got := eval[struct {
		Images int      `json:"images"`
		XSS    any      `json:"xss"`
		CSP    []string `json:"csp"`
	}](b, `({images: document.querySelectorAll('img').length, xss: window.__xss ?? null, csp: window.__csp || []})`)
	require.Zero(b.t, got.Images, "an img element on %s: untrusted data was rendered as HTML", where)
	require.Nil(b.t, got.XSS, "the probe's script ran on %s", where)
	require.Empty(b.t, got.CSP, "Content-Security-Policy violations on %s", where)
}

// receiver is a webhook endpoint that records what it gets and answers
// with the XSS probe as HTML.
type receiver struct {
	mu  sync.Mutex
	ids []string
	srv *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		r.mu.Lock()
		r.ids = append(r.ids, req.Header.Get("webhook-id"))
		r.mu.Unlock()
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, probe)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

func TestConsoleHeaders(t *testing.T) {
	env := apptest.Start(t, database.SQLite, schema)
	for _, path := range []string{"/_/", "/_/js/main.js", "/_/console.css"} {
		resp, err := env.Server.Client().Get(env.Server.URL + path)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		csp := resp.Header.Get("Content-Security-Policy")
		require.Contains(t, csp, "script-src 'self'", path)
		require.NotContains(t, csp, "unsafe-inline", path)
		require.Contains(t, csp, "frame-ancestors 'none'", path)
		require.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"), path)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), path)
	}
	for _, path := range []string{"/_/js/nothing.js", "/_/js/", "/_/js", "/_/../go.mod", "/_/%2e%2e/go.mod"} {
		resp, err := env.Server.Client().Get(env.Server.URL + path)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode, path)
		require.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"), path)
	}
	// A reload revalidates: the file's ETag answers 304.
	first := env.Do("GET", "/_/js/main.js", nil, "")
	tag := first.Header.Get("ETag")
	require.Regexp(t, `^"[0-9a-f]{24}"$`, tag)
	require.Equal(t, http.StatusNotModified, env.Do("GET", "/_/js/main.js", nil, "", "If-None-Match", tag).Status)
	require.Equal(t, http.StatusOK, env.Do("GET", "/_/js/api.js", nil, "", "If-None-Match", tag).Status, "another file, another tag")
	require.Equal(t, http.StatusOK, env.Do("HEAD", "/_/", nil, "").Status)
	// /_ leads to the console.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(env.Server.URL + "/_")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, "/_/", resp.Header.Get("Location"))
	require.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))
	// The page has no inline script or style for the policy to allow.
	r := env.Do("GET", "/_/", nil, "")
	require.NotRegexp(t, `<script(?:\s[^>]*)?>\s*[^<\s]`, string(r.Body), "inline script in index.html")
	require.NotContains(t, string(r.Body), "style=", "inline style in index.html")
}

// TestConsole drives the console in headless Chromium through what a new
// user does: sign in (a wrong key first), create a record through the
// form (an invalid one first), see its event arrive live and open its
// diff, edit it, read its history, register a webhook against a real
// receiver, follow its delivery log, redeliver, ping, pause, rotate, reload
// and resume the live log, import a schema with a destructive plan, and
// use it at a phone's width.
func TestConsole(t *testing.T) {
	chromium(t)
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			env := apptest.Start(t, kind, schema, func(c *app.Config) { c.WebhookAllowPrivate = true })
			rec := newReceiver(t)
			b := newBrowser(t, 1280, 900)
			shots := t.TempDir()
			if os.Getenv("HERALD_UPDATE_SCREENSHOTS") != "" && kind == database.SQLite {
				shots = filepath.Join("..", "docs")
			}
			screenshot := func(name string) {
				png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
				require.NoError(t, err)
				require.Greater(t, len(png), 1000)
				require.Equal(t, "\x89PNG", string(png[:4]))
				require.NoError(t, os.WriteFile(filepath.Join(shots, name), png, 0o644))
			}

			// Sign in, by keyboard: the key field has the focus.
			b.run(chromedp.Navigate(env.Server.URL+"/_/"), chromedp.WaitVisible(chromedp.ID("admin-key")))
			b.wait("the key field to have the focus", `document.activeElement && document.activeElement.id === 'admin-key'`, 5*time.Second)
			b.checkLabels("the sign-in form")
			b.run(chromedp.SendKeys(chromedp.ID("admin-key"), "not-the-admin-key-0000"+kb.Enter))
			b.wait("a clear message for a wrong key", `document.getElementById('signin-error').textContent.includes('refused (401)')`, 5*time.Second)
			b.fill("#admin-key", apptest.AdminKey+kb.Enter)
			b.wait("the resources page", `document.querySelector('h1')?.textContent === 'Resources'`, 5*time.Second)
			stored := eval[struct {
				Key    string `json:"key"`
				Cookie string `json:"cookie"`
				URL    string `json:"url"`
			}](b, `({key: sessionStorage.getItem('herald.adminKey'), cookie: document.cookie, url: location.href})`)
			require.Equal(t, apptest.AdminKey, stored.Key, "the key is kept in session storage")
			require.Empty(t, stored.Cookie)
			require.NotContains(t, stored.URL, apptest.AdminKey)
			b.wait("the schema's fields", `document.body.innerText.includes('^[A-Z0-9-]{3,32}$')`, 5*time.Second)

			// The live log is connected.
			b.go_("#/events")
			b.wait("the live stream", `document.querySelector('.status')?.dataset.state === 'open'`, 10*time.Second)

			// Create through the form: invalid first, the errors next to the fields.
			b.go_("#/records")
			b.wait("the products table", `document.querySelector('h1')?.textContent === 'Records of products'`, 5*time.Second)
			b.click(button("New record"))
			b.run(chromedp.WaitVisible(chromedp.CSS("form.record-form")))
			b.checkLabels("the record form")
			b.fill(`form.record-form [name="sku"]`, "bad")
			b.fill(`form.record-form [name="title"]`, probe)
			b.fill(`form.record-form [name="price"]`, "-1")
			b.click(button("Create"))
			fieldError := func(name, text string) string {
				return fmt.Sprintf(`(() => { const i = document.querySelector('form.record-form [name=%q]');
  const e = document.getElementById(i.id + '-error');
  return i.getAttribute('aria-invalid') === 'true' && i.getAttribute('aria-describedby').includes(e.id) && !e.hidden && e.textContent.includes(%q); })()`, name, text)
			}
			b.wait("the sku error next to sku", fieldError("sku", "must match"), 5*time.Second)
			b.wait("the price error next to price", fieldError("price", "at least 0"), 5*time.Second)
			require.Zero(t, len(env.Admin("GET", "/v1/products", nil).JSON()["data"].([]any)), "the invalid form created nothing")
			b.fill(`form.record-form [name="sku"]`, "ABC-1")
			b.fill(`form.record-form [name="price"]`, "5")
			b.click(button("Create"))
			b.wait("the created toast", `document.getElementById('toast').textContent.startsWith('Created ')`, 5*time.Second)
			id := eval[string](b, `document.getElementById('toast').textContent.slice('Created '.length, -1)`)
			require.Len(t, id, 36, "the new record's id")
			b.wait("the title shown as text in the table", fmt.Sprintf(`[...document.querySelectorAll('table.records td')].some((td) => td.textContent === %q)`, probe), 5*time.Second)
			b.inert("the records table")

			// Its created event is in the live log within a second.
			b.go_("#/events")
			row := fmt.Sprintf(`[...document.querySelectorAll('table.events tbody tr')].find((tr) => tr.textContent.includes(%%q) && tr.querySelector('span[title=%q]'))`, id)
			b.wait("the created event in the live log", fmt.Sprintf(row, "products.created"), 10*time.Second)
			// It arrived within a second of the commit: the page notes when
			// each event came, the record when it was created (one clock).
			arrived, err := time.Parse(time.RFC3339Nano, eval[string](b, fmt.Sprintf(
				`JSON.parse(sessionStorage.getItem('herald.live.log')).find((e) => e.resourceId === %q && e.eventType === 'products.created').receivedAt`, id)))
			require.NoError(t, err)
			committed, err := time.Parse(time.RFC3339Nano, env.Admin("GET", "/v1/products/"+id, nil).JSON()["created_at"].(string))
			require.NoError(t, err)
			require.Less(t, arrived.Sub(committed), time.Second, "the created event reached the live log %v after the commit", arrived.Sub(committed))
			screenshot("console-events.png")

			// Edit through the form; the update's diff.
			b.go_("#/records")
			b.click(fmt.Sprintf(`//button[@aria-label=%q]`, "Edit "+id))
			b.run(chromedp.WaitVisible(chromedp.CSS("form.record-form")))
			b.wait("the form filled in", `document.querySelector('form.record-form [name="price"]').value === '5'`, 5*time.Second)
			b.fill(`form.record-form [name="price"]`, "7.5")
			b.click(button("Save"))
			b.wait("the saved toast", fmt.Sprintf(`document.getElementById('toast').textContent === 'Saved %s.'`, id), 5*time.Second)
			require.EqualValues(t, 7.5, env.Admin("GET", "/v1/products/"+id, nil).JSON()["price"])
			b.go_("#/events")
			b.wait("the updated event", fmt.Sprintf(row, "products.updated"), 5*time.Second)
			b.click(`//table[contains(@class,'events')]//a[normalize-space()='products.updated']`)
			b.wait("the diff", `document.querySelector('table.diff')`, 5*time.Second)
			diff := eval[map[string][]string](b, `Object.fromEntries([...document.querySelectorAll('table.diff tbody tr')].map((tr) => [tr.cells[0].textContent, [...tr.cells].slice(1).map((c) => c.textContent)]))`)
			require.Equal(t, []string{"changed", "5", "7.5"}, diff["price"])
			require.Equal(t, []string{"unchanged", probe, probe}, diff["title"])
			b.inert("the event's diff")
			screenshot("console-diff.png")

			// The record's history, newest first.
			b.click(`//dd/a[contains(@href,'#/records/products/')]`)
			b.wait("the history timeline", `document.querySelectorAll('ol.timeline > li').length === 2`, 5*time.Second)
			timeline := eval[[]string](b, `[...document.querySelectorAll('ol.timeline > li a')].map((a) => a.textContent)`)
			require.Equal(t, []string{"products.updated", "products.created"}, timeline)

			// An edit sends only what the reader changed: a datetime with
			// microseconds and an empty string are kept as they are.
			other := env.Admin("POST", "/v1/products", map[string]any{"sku": "KEEP-1", "title": "keep", "price": 1,
				"released_at": "2026-01-02T03:04:05.123456Z", "note": ""})
			require.Equal(t, http.StatusCreated, other.Status, "%s", other.Body)
			otherID := other.JSON()["id"].(string)
			b.go_("#/records")
			b.click(fmt.Sprintf(`//button[@aria-label=%q]`, "Edit "+otherID))
			b.wait("the form filled in", `document.querySelector('form.record-form [name="price"]')?.value === '1'`, 5*time.Second)
			b.fill(`form.record-form [name="price"]`, "2")
			b.click(button("Save"))
			b.wait("the saved toast", fmt.Sprintf(`document.getElementById('toast').textContent === 'Saved %s.'`, otherID), 5*time.Second)
			kept := env.Admin("GET", "/v1/products/"+otherID, nil).JSON()
			require.EqualValues(t, 2, kept["price"])
			require.Equal(t, "2026-01-02T03:04:05.123456Z", kept["released_at"])
			require.Equal(t, "", kept["note"])
			// A filter narrows the table (sent as sku__eq).
			b.choose(`form.filters select`, "sku")
			b.fill(`form.filters input`, "KEEP-1")
			b.run(chromedp.Click(chromedp.Search(`//form[contains(@class,'filters')]//button[normalize-space()='Add filter']`)))
			b.wait("only the filtered record", fmt.Sprintf(`document.querySelectorAll('table.records tbody tr').length === 1 && document.querySelector('table.records tbody a[title=%q]')`, otherID), 5*time.Second)
			// Delete (the confirm() is answered yes): gone from the API.
			b.click(fmt.Sprintf(`//button[@aria-label=%q]`, "Delete "+otherID))
			b.wait("the deleted toast", fmt.Sprintf(`document.getElementById('toast').textContent === 'Deleted %s.'`, otherID), 5*time.Second)
			require.Equal(t, http.StatusNotFound, env.Admin("GET", "/v1/products/"+otherID, nil).Status)
			b.wait("the table without it", `document.querySelector('table.records') === null`, 5*time.Second)

			// Register a webhook: a bad URL first, the error next to it.
			b.go_("#/webhooks")
			b.go_("#/webhooks/new")
			b.run(chromedp.WaitVisible(chromedp.CSS(`[name="url"]`)))
			b.checkLabels("the webhook form")
			b.fill(`[name="name"]`, "shop")
			b.fill(`[name="url"]`, "not a url")
			b.run(chromedp.SetValue(chromedp.CSS(`select[name="resource"]`), "products"))
			b.click(button("Register"))
			b.wait("the url error next to url", `document.querySelector('[name="url"]').getAttribute('aria-invalid') === 'true' && !document.getElementById(document.querySelector('[name="url"]').id + '-error').hidden`, 5*time.Second)
			b.fill(`[name="url"]`, rec.srv.URL+"/hook")
			b.click(button("Register"))
			b.wait("the secret, shown once", `document.querySelector('.secret input')?.value.startsWith('whsec_')`, 5*time.Second)
			secret := eval[string](b, `document.querySelector('.secret input').value`)
			b.click(`//a[contains(., 'delivery log')]`)
			b.wait("the webhook page", `document.querySelector('h1')?.textContent === 'Webhook shop'`, 5*time.Second)
			require.NotContains(t, eval[string](b, `document.body.innerText`), secret, "the secret is not shown again")

			// A change is delivered; the log shows the attempt.
			require.Equal(t, http.StatusOK, env.Admin("PATCH", "/v1/products/"+id, map[string]any{"price": 9}).Status)
			delivered := `[...document.querySelectorAll('details[data-delivery-id]')].find((d) => d.querySelector('summary').textContent.includes('products.updated') && d.querySelector('.badge').textContent === 'succeeded')`
			b.wait("the succeeded delivery", delivered, 20*time.Second)
			b.click(`//details[@data-delivery-id]/summary[contains(., 'products.updated')]`)
			b.wait("the attempt: status 200, latency and the response as text",
				fmt.Sprintf(`(() => { const d = %s; return d.open && d.querySelector('.attempt-status').textContent === '200' && d.querySelector('pre.excerpt').textContent === %q; })()`, delivered, probe), 5*time.Second)
			b.inert("the delivery log")
			require.Len(t, rec.got(), 1)
			b.click(`//details[@data-delivery-id][contains(summary, 'products.updated')]//button[normalize-space()='Redeliver']`)
			require.Eventually(t, func() bool { return len(rec.got()) == 2 }, 20*time.Second, 50*time.Millisecond, "the redelivery reaches the receiver")
			require.Equal(t, rec.got()[0], rec.got()[1], "a redelivery carries the same webhook-id")
			b.wait("two attempts in the open log", fmt.Sprintf(`(() => { const d = %s; return d && d.open && d.querySelectorAll('table.attempts tbody tr').length === 2; })()`, delivered), 20*time.Second)

			// Ping, pause and resume, rotate.
			b.click(button("Send a test ping"))
			b.wait("the ping's delivery", `[...document.querySelectorAll('details[data-delivery-id]')].some((d) => d.textContent.includes('webhook.ping') && d.querySelector('.badge').textContent === 'succeeded')`, 20*time.Second)
			b.click(button("Pause"))
			b.wait("paused", `document.querySelector('dd.state')?.textContent === 'paused'`, 5*time.Second)
			require.Equal(t, true, webhook(t, env)["paused"])
			b.click(button("Resume"))
			b.wait("active", `document.querySelector('dd.state')?.textContent === 'active'`, 5*time.Second)
			// Edit: only the changed key is sent.
			b.click(button("Edit"))
			b.run(chromedp.WaitVisible(chromedp.CSS(`form [name="name"]`)))
			b.fill(`form [name="name"]`, "shop-renamed")
			b.click(button("Save"))
			b.wait("the renamed webhook", `document.querySelector('h1')?.textContent === 'Webhook shop-renamed'`, 5*time.Second)
			renamed := webhook(t, env)
			require.Equal(t, "shop-renamed", renamed["name"])
			require.Equal(t, rec.srv.URL+"/hook", renamed["url"])
			b.click(button("Rotate the secret"))
			b.wait("the new secret", fmt.Sprintf(`document.querySelector('.secret input')?.value.startsWith('whsec_') && document.querySelector('.secret input').value !== %q`, secret), 5*time.Second)

			// A reload resumes the live log from the last id seen: an event
			// committed while the page was away shows up, and the log kept.
			b.run(chromedp.Navigate("about:blank"))
			away := env.Admin("POST", "/v1/products", map[string]any{"sku": "AWAY-1", "title": "made while away", "price": 1})
			require.Equal(t, http.StatusCreated, away.Status)
			awayID := away.JSON()["id"].(string)
			b.run(chromedp.Navigate(env.Server.URL + "/_/#/events"))
			b.wait("the event committed while away", fmt.Sprintf(`[...document.querySelectorAll('table.events tbody tr')].some((tr) => tr.querySelector('span[title=%q]'))`, awayID), 10*time.Second)
			b.wait("the events seen before", fmt.Sprintf(row, "products.created"), 5*time.Second)
			b.checkLabels("the live log")
			// The type filter: only updates are listed.
			b.choose(`form.filters select:nth-of-type(2)`, "updated")
			b.wait("only updated events", `(() => { const rows = [...document.querySelectorAll('table.events tbody tr')]; return rows.length > 0 && rows.every((tr) => tr.textContent.includes('.updated')); })()`, 5*time.Second)
			b.choose(`form.filters select:nth-of-type(2)`, "")

			// Import: the plan first, destructive steps confirmed.
			b.go_("#/resources")
			b.checkLabels("the resources page")
			next := strings.Replace(schema, "  - name: notes\n    fields:\n      - {name: body, type: text}\n", "", 1)
			next = strings.Replace(next, "{name: active, type: boolean, default: true, filterable: true}",
				"{name: active, type: boolean, default: true, filterable: true}\n      - {name: stock, type: integer, default: 0}", 1)
			b.fill(`textarea`, next)
			b.click(button("Preview the plan"))
			b.wait("the plan", `document.querySelector('table.plan') && document.querySelector('table.plan tr.destructive')`, 10*time.Second)
			plan := eval[[]string](b, `[...document.querySelectorAll('table.plan tbody tr')].map((tr) => [...tr.cells].map((c) => c.textContent).join(' '))`)
			require.Contains(t, strings.Join(plan, "\n"), "dropResource notes")
			require.Contains(t, strings.Join(plan, "\n"), "addField products stock additive")
			require.Equal(t, 200, env.Admin("GET", "/v1/notes", nil).Status, "the preview applied nothing")
			b.click(button("Apply this plan"))
			b.wait("the refusal to apply unconfirmed", `document.getElementById('toast').textContent.includes('confirm')`, 5*time.Second)
			require.Equal(t, 200, env.Admin("GET", "/v1/notes", nil).Status)
			b.click(`//p[contains(@class,'warn')]/input[@type='checkbox']`)
			b.click(button("Apply this plan"))
			b.wait("the applied toast", `document.getElementById('toast').textContent.includes('applied')`, 10*time.Second)
			require.Equal(t, 404, env.Admin("GET", "/v1/notes", nil).Status)
			b.wait("the new field listed", `[...document.querySelectorAll('th')].some((th) => th.textContent === 'stock')`, 5*time.Second)

			// A phone's width: no page-wide horizontal scrolling.
			b.run(chromedp.EmulateViewport(390, 844))
			for _, hash := range []string{"#/records/products", "#/events", "#/resources", "#/webhooks"} {
				b.run(chromedp.Navigate(env.Server.URL + "/_/" + hash))
				b.wait("the page at a phone's width "+hash, `document.querySelector('h1') && !document.querySelector('main > p.muted:only-child')`, 5*time.Second)
				fits := eval[bool](b, `document.documentElement.scrollWidth <= window.innerWidth + 1`)
				require.True(t, fits, "%s overflows a phone's width", hash)
			}
			b.inert("the last page")
			b.run(chromedp.EmulateViewport(1280, 900))

			// Signing out on a page that refreshes stops it: no call is made
			// after, and the sign-in form stays as it is.
			b.run(chromedp.Navigate(env.Server.URL + "/_/#/webhooks/" + webhook(t, env)["id"].(string)))
			b.wait("the delivery log", `document.querySelector('details[data-delivery-id]')`, 10*time.Second)
			b.click(button("Sign out"))
			b.wait("the sign-in form", `document.getElementById('signin-error')?.textContent === 'Signed out.'`, 5*time.Second)
			calls, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`(() => { const n = window.__fetches;
  return new Promise((ok) => setTimeout(() => ok(window.__fetches - n), 4500)); })()`, chromedp.EvalAwaitPromise))
			require.NoError(t, err)
			require.Zero(t, calls, "calls made in the 4.5 s after signing out (the delivery log refreshes every 2 s)")
			require.Equal(t, "Signed out.", eval[string](b, `document.getElementById('signin-error').textContent`))
			require.Empty(t, eval[string](b, `sessionStorage.getItem('herald.adminKey') || ''`))

			// A key Herald stops accepting mid-session leads back to sign-in.
			b.fill("#admin-key", apptest.AdminKey+kb.Enter)
			b.wait("signed in again", `document.querySelector('h1')?.textContent === 'Resources'`, 5*time.Second)
			require.True(t, eval[bool](b, `(sessionStorage.setItem('herald.adminKey', 'a-key-that-was-revoked-0000'), true)`))
			b.go_("#/webhooks")
			b.wait("the sign-in form with a clear message", `document.getElementById('signin-error')?.textContent.includes('no longer accepts the key')`, 5*time.Second)
			require.True(t, eval[bool](b, `document.querySelector('#nav').hidden`))
		})
	}
}

// webhook is the one registered webhook, as the API answers it.
func webhook(t *testing.T, env *apptest.Env) map[string]any {
	r := env.Admin("GET", "/v1/_webhooks", nil)
	var body struct {
		Data []map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &body))
	require.Len(t, body.Data, 1)
	return body.Data[0]
}

// TestConsoleDemoSchema uses the console on the schema `go run .` serves
// (herald.yaml): every field type gets its control, a customer with a
// date and an enum and an order with relations (offered from the targets'
// records), a datetime and a note are created through the forms, a JSON
// field is edited (a bad value first, refused next to the field), and the
// classifications are listed.
func TestConsoleDemoSchema(t *testing.T) {
	chromium(t)
	demo, err := os.ReadFile(filepath.Join("..", "herald.yaml"))
	require.NoError(t, err)
	env := apptest.Start(t, database.SQLite, string(demo))
	b := newBrowser(t, 1280, 900)
	b.run(chromedp.Navigate(env.Server.URL+"/_/"), chromedp.WaitVisible(chromedp.ID("admin-key")))
	b.run(chromedp.SendKeys(chromedp.ID("admin-key"), apptest.AdminKey+kb.Enter))
	b.wait("the resources page", `document.querySelector('h1')?.textContent === 'Resources'`, 5*time.Second)
	b.wait("the classifications", `document.body.innerText.includes('is_adult') && document.body.innerText.includes('is_open')`, 5*time.Second)
	product := env.Admin("POST", "/v1/products", map[string]any{"sku": "MUG-1", "title": "Mug", "price": 9.5})
	require.Equal(t, http.StatusCreated, product.Status, "%s", product.Body)
	productID := product.JSON()["id"].(string)

	setValue := func(name, value string) {
		t.Helper()
		b.choose(fmt.Sprintf(`form.record-form [name=%q]`, name), value)
	}
	controlType := func(name string) string {
		return eval[string](b, fmt.Sprintf(`(() => { const e = document.querySelector('form.record-form [name=%q]'); return e.tagName.toLowerCase() + (e.type ? ':' + e.type : ''); })()`, name))
	}
	newRecord := func(resource string) {
		t.Helper()
		b.run(chromedp.Navigate(env.Server.URL + "/_/#/records/" + resource))
		b.wait("the "+resource+" table", fmt.Sprintf(`document.querySelector('h1')?.textContent === 'Records of %s'`, resource), 5*time.Second)
		b.click(button("New record"))
		b.run(chromedp.WaitVisible(chromedp.CSS("form.record-form")))
		b.checkLabels("the " + resource + " form")
	}
	created := func(resource string) map[string]any {
		t.Helper()
		require.True(t, eval[bool](b, `(document.getElementById('toast').textContent = '', true)`), "an earlier toast cleared")
		b.click(button("Create"))
		b.wait("the created toast", `document.getElementById('toast').textContent.startsWith('Created ')`, 5*time.Second)
		id := eval[string](b, `document.getElementById('toast').textContent.slice('Created '.length, -1)`)
		r := env.Admin("GET", "/v1/"+resource+"/"+id, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		return r.JSON()
	}

	newRecord("customers")
	require.Equal(t, "input:email", controlType("email"))
	require.Equal(t, "select:select-one", controlType("tier"))
	require.Equal(t, "input:date", controlType("birth_date"))
	b.fill(`form.record-form [name="name"]`, "Ada")
	b.fill(`form.record-form [name="email"]`, "ada@example.com")
	setValue("tier", "pro")
	setValue("birth_date", "1990-05-17")
	customer := created("customers")
	require.Equal(t, "pro", customer["tier"])
	require.Equal(t, "1990-05-17", customer["birth_date"])

	newRecord("orders")
	require.Equal(t, "input:text", controlType("customer_id"))
	require.Equal(t, "input:datetime-local", controlType("placed_at"))
	require.Equal(t, "textarea:textarea", controlType("note"))
	b.wait("the customers offered for customer_id", fmt.Sprintf(`(() => { const e = document.querySelector('form.record-form [name="customer_id"]');
  return [...e.list.options].some((o) => o.value === %q && o.label === 'Ada'); })()`, customer["id"]), 5*time.Second)
	b.fill(`form.record-form [name="customer_id"]`, customer["id"].(string))
	b.fill(`form.record-form [name="product_id"]`, productID)
	b.fill(`form.record-form [name="quantity"]`, "2")
	setValue("placed_at", "2026-12-01T10:30:15")
	b.fill(`form.record-form [name="note"]`, "leave at the door")
	order := created("orders")
	require.Equal(t, customer["id"], order["customer_id"])
	require.EqualValues(t, 2, order["quantity"])
	require.Equal(t, "pending", order["status"], "the default")
	local := eval[string](b, `new Date('2026-12-01T10:30:15').toISOString()`)
	want, err := time.Parse(time.RFC3339Nano, local)
	require.NoError(t, err)
	got, err := time.Parse(time.RFC3339Nano, order["placed_at"].(string))
	require.NoError(t, err)
	require.True(t, want.Equal(got), "placed_at %v, want %v (the picker's local time)", got, want)

	// A JSON field: bad JSON is refused next to it, good JSON is stored.
	b.run(chromedp.Navigate(env.Server.URL + "/_/#/records/products"))
	b.click(fmt.Sprintf(`//button[@aria-label=%q]`, "Edit "+productID))
	b.run(chromedp.WaitVisible(chromedp.CSS(`form.record-form [name="attributes"]`)))
	require.Equal(t, "textarea:textarea", controlType("attributes"))
	b.fill(`form.record-form [name="attributes"]`, `{"color": red}`)
	b.click(button("Save"))
	b.wait("the JSON error next to attributes", `(() => { const i = document.querySelector('form.record-form [name="attributes"]');
  const e = document.getElementById(i.id + '-error'); return !e.hidden && e.textContent.includes('not valid JSON'); })()`, 5*time.Second)
	b.fill(`form.record-form [name="attributes"]`, `{"color": "red", "sizes": [1, 2]}`)
	b.click(button("Save"))
	b.wait("the saved toast", fmt.Sprintf(`document.getElementById('toast').textContent === 'Saved %s.'`, productID), 5*time.Second)
	stored := env.Admin("GET", "/v1/products/"+productID, nil).JSON()
	require.Equal(t, map[string]any{"color": "red", "sizes": []any{1.0, 2.0}}, stored["attributes"])
	require.EqualValues(t, 9.5, stored["price"], "untouched")
	b.inert("the demo's pages")
}
